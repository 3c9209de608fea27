//! `encode`: pastes the inpainted pixels into the full-resolution original, inside the mask
//! only, and encodes the result.
//!
//! Every pixel outside the mask is the decoded input's, bit for bit, so lossless output
//! changes nothing the client did not ask to change.

mod exif;

use fast_image_resize::FilterType;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};
use unmark_schemas::params::{self, EncodeParams, OutputFormat, ReturnKind};

use crate::artifact::{self, DecodedImage, SourceFormat};
use crate::inpaint::bounding_box;
use crate::prescale::resize;
use crate::{Artifacts, Mask, Produced, Raster, Stage, StageError, StageOutput};

pub use exif::reset_orientation;

/// Copies `inpainted` into `original` where `mask` is set. `inpainted` may be smaller (the
/// working image): then only the mask's bounding box is scaled up.
pub fn compose(original: &mut Raster, mask: &Mask, inpainted: &Raster) -> Result<(), StageError> {
    if original.size() != mask.size() || original.channels != inpainted.channels {
        return Err(StageError::internal(
            "compose: image, mask and fill do not match",
        ));
    }
    let Some(bbox) = bounding_box(mask) else {
        return Ok(());
    };
    let c = original.channels as usize;
    if inpainted.size() == original.size() {
        for y in bbox.y0..bbox.y1 {
            for x in bbox.x0..bbox.x1 {
                if mask.get(x, y) {
                    let at = original.offset(x, y);
                    original.data[at..at + c].copy_from_slice(&inpainted.data[at..at + c]);
                }
            }
        }
        return Ok(());
    }
    let sx = inpainted.width as f64 / original.width as f64;
    let sy = inpainted.height as f64 / original.height as f64;
    let crop = (
        bbox.x0 as f64 * sx,
        bbox.y0 as f64 * sy,
        bbox.width() as f64 * sx,
        bbox.height() as f64 * sy,
    );
    let patch = resize(
        inpainted,
        Some(crop),
        bbox.width(),
        bbox.height(),
        FilterType::CatmullRom,
    )?;
    for y in bbox.y0..bbox.y1 {
        for x in bbox.x0..bbox.x1 {
            if mask.get(x, y) {
                let from = patch.offset(x - bbox.x0, y - bbox.y0);
                let at = original.offset(x, y);
                original.data[at..at + c].copy_from_slice(&patch.data[from..from + c]);
            }
        }
    }
    Ok(())
}

/// The output format: the requested one, else the input's where unmark writes it, else PNG.
pub fn output_format(requested: Option<OutputFormat>, source: SourceFormat) -> OutputFormat {
    requested.unwrap_or(match source {
        SourceFormat::Jpeg => OutputFormat::Jpeg,
        SourceFormat::Webp => OutputFormat::Webp,
        _ => OutputFormat::Png,
    })
}

fn color_type(channels: u8) -> ExtendedColorType {
    match channels {
        1 => ExtendedColorType::L8,
        2 => ExtendedColorType::La8,
        3 => ExtendedColorType::Rgb8,
        _ => ExtendedColorType::Rgba8,
    }
}

/// JPEG has no alpha: RGBA is flattened onto white.
fn flatten_on_white(r: &Raster) -> Raster {
    if r.channels != 4 {
        return r.clone();
    }
    let data = r
        .data
        .chunks_exact(4)
        .flat_map(|p| {
            let a = p[3] as u32;
            let over = |v: u8| ((v as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
            [over(p[0]), over(p[1]), over(p[2])]
        })
        .collect();
    Raster {
        width: r.width,
        height: r.height,
        channels: 3,
        data,
    }
}

fn attach(encoder: &mut impl ImageEncoder, image: &DecodedImage, params: &EncodeParams) {
    if let Some(icc) = &image.icc
        && encoder.set_icc_profile(icc.clone()).is_err()
    {
        tracing::warn!("this output format cannot carry the ICC profile");
    }
    if params.keep_metadata
        && let Some(exif) = &image.exif
    {
        let mut exif = exif.clone();
        reset_orientation(&mut exif);
        if encoder.set_exif_metadata(exif).is_err() {
            tracing::warn!("this output format cannot carry EXIF");
        }
    }
}

/// Encodes `image`; returns the bytes and their media type.
pub fn encode(
    image: &DecodedImage,
    params: &EncodeParams,
) -> Result<(Vec<u8>, OutputFormat), StageError> {
    let format = output_format(params.format, image.format);
    let fail = |e: image::ImageError| {
        StageError::internal(format!("encoding {} failed: {e}", format.as_str()))
    };
    let mut out = Vec::new();
    let r = &image.raster;
    match format {
        OutputFormat::Png => {
            let mut enc =
                PngEncoder::new_with_quality(&mut out, CompressionType::Fast, Default::default());
            attach(&mut enc, image, params);
            enc.write_image(&r.data, r.width, r.height, color_type(r.channels))
                .map_err(fail)?;
        }
        OutputFormat::Jpeg => {
            let flat = flatten_on_white(r);
            let mut enc = JpegEncoder::new_with_quality(&mut out, params.quality);
            attach(&mut enc, image, params);
            enc.write_image(
                &flat.data,
                flat.width,
                flat.height,
                color_type(flat.channels),
            )
            .map_err(fail)?;
        }
        OutputFormat::Webp => {
            let mut enc = WebPEncoder::new_lossless(&mut out);
            attach(&mut enc, image, params);
            enc.write_image(&r.data, r.width, r.height, color_type(r.channels))
                .map_err(fail)?;
        }
    }
    Ok((out, format))
}

/// `mask` as a grayscale PNG: 255 where set, 0 elsewhere.
pub fn encode_mask(mask: &Mask) -> Result<Vec<u8>, StageError> {
    let gray: Vec<u8> = mask
        .data
        .iter()
        .map(|&v| if v != 0 { 255 } else { 0 })
        .collect();
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, Default::default())
        .write_image(&gray, mask.width, mask.height, ExtendedColorType::L8)
        .map_err(|e| StageError::internal(format!("encoding the mask failed: {e}")))?;
    Ok(out)
}

/// The `encode` stage: `image` + `mask` + `work_out` to `result`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncodeStage;

impl Stage for EncodeStage {
    fn name(&self) -> &'static str {
        "encode"
    }

    fn reads(&self) -> &'static [&'static str] {
        &["image", "mask", "work_out", "composite"]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        let p: EncodeParams = params::parse("encode", params)?;
        p.validate()?;
        // The background pipeline hands over a finished image.
        if let Some(done) = inputs.optional("composite") {
            let image = artifact::read_image(done)?;
            let (bytes, format) = encode(&image, &p)?;
            let out = StageOutput {
                content_type: Some(format.content_type().to_owned()),
                ..StageOutput::default()
            };
            return Ok(out.with("result", Produced::Blob(bytes.into())));
        }
        let mask = artifact::read_mask(inputs.require("mask")?)?;
        if p.returns == ReturnKind::Mask {
            let bytes = encode_mask(&mask)?;
            let out = StageOutput {
                content_type: Some(OutputFormat::Png.content_type().to_owned()),
                ..StageOutput::default()
            };
            return Ok(out.with("result", Produced::Blob(bytes.into())));
        }
        let mut image = artifact::read_image(inputs.require("image")?)?;
        let fill = artifact::read_image(inputs.require("work_out")?)?;
        compose(&mut image.raster, &mask, &fill.raster)?;
        let (bytes, format) = encode(&image, &p)?;
        let out = StageOutput {
            content_type: Some(format.content_type().to_owned()),
            ..StageOutput::default()
        };
        Ok(out.with("result", Produced::Blob(bytes.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Limits, decode};

    fn image(channels: u8) -> DecodedImage {
        let mut raster = Raster::filled(16, 8, channels, 0);
        for (i, v) in raster.data.iter_mut().enumerate() {
            *v = (i * 7 % 251) as u8;
        }
        DecodedImage {
            raster,
            format: SourceFormat::Png,
            icc: None,
            exif: None,
        }
    }

    const LIMITS: Limits = Limits {
        max_pixels: 1_000_000,
        max_input_bytes: 1 << 20,
    };

    #[test]
    fn lossless_formats_round_trip() {
        for format in [OutputFormat::Png, OutputFormat::Webp] {
            for channels in [3, 4] {
                let img = image(channels);
                let params = EncodeParams {
                    format: Some(format),
                    ..Default::default()
                };
                let (bytes, _) = encode(&img, &params).expect("encode");
                let back = decode(&bytes, &LIMITS, "image").expect("decode");
                assert_eq!(back.raster, img.raster, "{format:?} x {channels}");
            }
        }
    }

    #[test]
    fn icc_profile_is_kept() {
        let mut img = image(3);
        img.icc = Some(b"not really a profile, but bytes all the same".to_vec());
        for format in [OutputFormat::Png, OutputFormat::Jpeg, OutputFormat::Webp] {
            let params = EncodeParams {
                format: Some(format),
                ..Default::default()
            };
            let (bytes, _) = encode(&img, &params).expect("encode");
            let back = decode(&bytes, &LIMITS, "image").expect("decode");
            assert_eq!(back.icc, img.icc, "{format:?}");
        }
    }

    #[test]
    fn default_format_follows_the_input() {
        assert_eq!(output_format(None, SourceFormat::Jpeg), OutputFormat::Jpeg);
        assert_eq!(output_format(None, SourceFormat::Gif), OutputFormat::Png);
        assert_eq!(
            output_format(Some(OutputFormat::Webp), SourceFormat::Jpeg),
            OutputFormat::Webp
        );
    }

    #[test]
    fn compose_touches_only_the_mask_even_when_scaled() {
        let mut original = Raster::filled(40, 40, 3, 10);
        let mut mask = Mask::new(40, 40);
        for y in 10..20 {
            for x in 5..15 {
                mask.set(x, y, true);
            }
        }
        let fill = Raster::filled(20, 20, 3, 200);
        compose(&mut original, &mask, &fill).expect("compose");
        for y in 0..40 {
            for x in 0..40 {
                let want = if mask.get(x, y) { 200 } else { 10 };
                assert_eq!(original.pixel(x, y), [want; 3], "({x},{y})");
            }
        }
    }
}
