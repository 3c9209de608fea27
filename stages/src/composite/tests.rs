use super::*;

fn photo() -> DecodedImage {
    // Left half red, right half blue, 20x10.
    let mut raster = Raster::filled(20, 10, 3, 0);
    for y in 0..10 {
        for x in 0..20 {
            let px = raster.pixel_mut(x, y);
            if x < 10 {
                px[0] = 200;
            } else {
                px[2] = 200;
            }
        }
    }
    DecodedImage {
        raster,
        format: SourceFormat::Jpeg,
        icc: None,
        exif: None,
    }
}

/// Opaque over the left half (the subject), transparent elsewhere, at half size.
fn alpha() -> Raster {
    let mut a = Raster::filled(10, 5, 1, 0);
    for y in 0..5 {
        for x in 0..5 {
            a.pixel_mut(x, y)[0] = 255;
        }
    }
    a
}

#[test]
fn rgba_keeps_colours_and_takes_the_scaled_alpha() {
    let out =
        composite(&photo(), &alpha(), None, &CompositeParams::default()).expect("valid test input");
    assert_eq!((out.width, out.height, out.channels), (20, 10, 4));
    assert_eq!(out.pixel(2, 5), [200, 0, 0, 255]);
    assert_eq!(out.pixel(17, 5)[3], 0);
}

#[test]
fn mask_mode_returns_one_channel_and_crop_cuts_to_the_subject() {
    let p = CompositeParams {
        mode: BackgroundMode::Mask,
        crop: true,
        crop_margin: 1,
        ..Default::default()
    };
    let out = composite(&photo(), &alpha(), None, &p).expect("valid test input");
    assert_eq!(out.channels, 1);
    // The subject ends at x = 10 (Lanczos rings faintly past it); the box covers it plus the
    // margin.
    assert!(out.width >= 11 && out.width <= 13, "{}", out.width);
    assert_eq!(out.height, 10);
}

#[test]
fn colour_backgrounds_are_opaque_rgb_or_translucent_rgba() {
    let p = CompositeParams {
        bg_color: Some([0, 255, 0, 255]),
        ..Default::default()
    };
    let out = composite(&photo(), &alpha(), None, &p).expect("valid test input");
    assert_eq!(out.channels, 3);
    assert_eq!(out.pixel(17, 5), [0, 255, 0]);
    assert_eq!(out.pixel(2, 5), [200, 0, 0]);
    let p = CompositeParams {
        bg_color: Some([0, 255, 0, 128]),
        ..Default::default()
    };
    let out = composite(&photo(), &alpha(), None, &p).expect("valid test input");
    assert_eq!(out.channels, 4);
    assert_eq!(out.pixel(17, 5), [0, 255, 0, 128]);
}

#[test]
fn background_images_cover_and_blur_keeps_the_subject_out() {
    let bg = Raster::filled(7, 3, 3, 90);
    let out = composite(&photo(), &alpha(), Some(&bg), &CompositeParams::default())
        .expect("valid test input");
    assert_eq!(out.pixel(17, 5), [90, 90, 90]);
    let p = CompositeParams {
        bg_blur: 6,
        ..Default::default()
    };
    let out = composite(&photo(), &alpha(), None, &p).expect("valid test input");
    // The blurred background is made of background pixels only: blue, no red from the
    // subject next to it.
    let px = out.pixel(12, 5);
    assert!(px[0] < 10 && px[2] > 150, "{px:?}");
}
