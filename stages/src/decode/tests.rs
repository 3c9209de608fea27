use std::io::Cursor;
use std::time::Instant;

use image::{ImageEncoder, RgbImage, RgbaImage};

use super::*;

const LIMITS: Limits = Limits {
    max_pixels: 50_000_000,
    max_input_bytes: 32 * 1024 * 1024,
};

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]))
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

#[test]
fn every_supported_format_decodes_to_the_same_pixels() {
    let img = gradient(37, 21);
    for format in [
        ImageFormat::Png,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
    ] {
        let decoded = decode(&encode(&img, format), &LIMITS, "image").expect("decode");
        assert_eq!(decoded.raster.size(), (37, 21), "{format:?}");
        assert_eq!(
            decoded.raster.data,
            img.as_raw().as_slice(),
            "{format:?} is lossless"
        );
    }
    let jpeg = decode(&encode(&img, ImageFormat::Jpeg), &LIMITS, "image").expect("jpeg");
    assert_eq!(
        (jpeg.format, jpeg.raster.size()),
        (SourceFormat::Jpeg, (37, 21))
    );
    let gif = decode(&encode(&img, ImageFormat::Gif), &LIMITS, "image").expect("gif");
    assert_eq!(
        (gif.format, gif.raster.size()),
        (SourceFormat::Gif, (37, 21))
    );
}

#[test]
fn alpha_is_kept() {
    let img = RgbaImage::from_fn(4, 4, |x, _| image::Rgba([1, 2, 3, x as u8 * 60]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).expect("encode");
    let decoded = decode(out.get_ref(), &LIMITS, "image").expect("decode");
    assert_eq!(decoded.raster.channels, 4);
    assert_eq!(decoded.raster.pixel(3, 0), [1, 2, 3, 180]);
}

#[test]
fn exif_orientation_is_applied() {
    // Orientation 6: the stored 8x2 image is shown rotated 90 degrees clockwise (2x8).
    let exif: Vec<u8> = [
        &b"MM\x00\x2a\x00\x00\x00\x08"[..],
        &[0, 1],
        &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0],
        &[0, 0, 0, 0],
    ]
    .concat();
    let img = gradient(8, 2);
    let mut out = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut out);
    enc.set_exif_metadata(exif).expect("exif");
    enc.write_image(img.as_raw(), 8, 2, image::ExtendedColorType::Rgb8)
        .expect("encode");
    let decoded = decode(&out, &LIMITS, "image").expect("decode");
    assert_eq!(decoded.raster.size(), (2, 8));
    // Top-left after a clockwise turn is the stored bottom-left.
    assert_eq!(decoded.raster.pixel(0, 0), img.get_pixel(0, 1).0);
}

#[test]
fn text_is_unsupported() {
    let err = decode(b"hello, this is not an image", &LIMITS, "image").expect_err("text");
    assert!(matches!(err, DecodeError::Unsupported(_)), "{err:?}");
    assert!(
        err.to_string().contains("not in a recognised image format"),
        "{err}"
    );
}

#[test]
fn truncated_png_is_corrupt() {
    let png = encode(&gradient(64, 64), ImageFormat::Png);
    let err = decode(&png[..png.len() / 2], &LIMITS, "image").expect_err("truncated");
    assert!(matches!(err, DecodeError::Corrupt(_)), "{err:?}");
}

#[test]
fn a_huge_header_is_refused_before_decoding() {
    let bomb = crate::fixtures::png_claiming(100_000, 100_000);
    let started = Instant::now();
    let err = decode(&bomb, &LIMITS, "image").expect_err("bomb");
    assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("100000x100000"), "{err}");
    // Generous: refusing from the header takes microseconds; decoding would take minutes.
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn byte_limit_is_checked_first() {
    let png = encode(&gradient(8, 8), ImageFormat::Png);
    let small = Limits {
        max_input_bytes: 10,
        ..LIMITS
    };
    let err = decode(&png, &small, "image").expect_err("limit");
    assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
}

#[test]
fn masks_binarize_by_luma_and_alpha() {
    let raster = Raster::from_data(
        4,
        1,
        4,
        vec![
            255, 255, 255, 255, // white, opaque: remove
            255, 255, 255, 0, // white, transparent: keep
            100, 100, 100, 255, // dark: keep
            255, 255, 255, 200, // white, mostly opaque: remove
        ],
    )
    .expect("raster");
    assert_eq!(binarize(&raster).data, [1, 0, 0, 1]);
    let grey = Raster::from_data(3, 1, 1, vec![127, 128, 0]).expect("raster");
    assert_eq!(binarize(&grey).data, [0, 1, 0]);
}
