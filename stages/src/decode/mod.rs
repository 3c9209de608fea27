//! `decode`: bytes to pixels, with explicit limits.
//!
//! This is the only place unmark decodes an image; `image::open` and `load_from_memory` are
//! banned by `clippy.toml`. Limits are checked from the header before any pixel is decoded,
//! so a tiny file that claims 100000x100000 is refused at once without allocating.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use unmark_schemas::FailureReason;
use unmark_schemas::params::{self, DecodeParams};

use crate::artifact::{self, DecodedImage, SourceFormat};
use crate::{Artifacts, Mask, Produced, Raster, Stage, StageError, StageOutput};

#[cfg(test)]
mod tests;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not an image format unmark reads.
    #[error("{0}")]
    Unsupported(String),
    /// A format unmark reads, but broken or truncated.
    #[error("{0}")]
    Corrupt(String),
    /// Over a limit.
    #[error("{0}")]
    TooLarge(String),
}

impl From<DecodeError> for StageError {
    fn from(e: DecodeError) -> Self {
        let reason = match e {
            DecodeError::Unsupported(_) => FailureReason::UnsupportedFormat,
            DecodeError::Corrupt(_) => FailureReason::CorruptImage,
            DecodeError::TooLarge(_) => FailureReason::TooLarge,
        };
        StageError::new(reason, e.to_string())
    }
}

/// What the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest image in pixels.
    pub max_pixels: u64,
    /// Largest encoded input in bytes.
    pub max_input_bytes: u64,
}

impl From<&DecodeParams> for Limits {
    fn from(p: &DecodeParams) -> Self {
        Self {
            max_pixels: (p.max_megapixels * 1e6) as u64,
            max_input_bytes: p.max_input_bytes,
        }
    }
}

const SUPPORTED: &str = "PNG, JPEG, WebP, BMP, TIFF or GIF";

fn source_format(format: ImageFormat) -> Option<SourceFormat> {
    Some(match format {
        ImageFormat::Png => SourceFormat::Png,
        ImageFormat::Jpeg => SourceFormat::Jpeg,
        ImageFormat::WebP => SourceFormat::Webp,
        ImageFormat::Bmp => SourceFormat::Bmp,
        ImageFormat::Tiff => SourceFormat::Tiff,
        ImageFormat::Gif => SourceFormat::Gif,
        _ => return None,
    })
}

fn classify(what: &str, format: &str, e: ImageError) -> DecodeError {
    match e {
        ImageError::Limits(l) => {
            DecodeError::TooLarge(format!("{what} is over a decoder limit: {l}"))
        }
        ImageError::Unsupported(u) => {
            DecodeError::Unsupported(format!("{what} uses an unsupported {format} feature: {u}"))
        }
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt(format!("{what} is a truncated {format} file"))
        }
        other => DecodeError::Corrupt(format!("{what} is a corrupt {format} file: {other}")),
    }
}

/// Decodes `bytes` into 8-bit RGB or RGBA with the EXIF orientation applied.
///
/// `what` names the input in messages ("image", "mask").
pub fn decode(bytes: &[u8], limits: &Limits, what: &str) -> Result<DecodedImage, DecodeError> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(DecodeError::TooLarge(format!(
            "{what} is {} bytes but the limit is {} bytes",
            bytes.len(),
            limits.max_input_bytes
        )));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        DecodeError::Unsupported(format!(
            "{what} is not in a recognised image format; expected {SUPPORTED}"
        ))
    })?;
    let name = format!("{format:?}").to_uppercase();
    let source = source_format(format).ok_or_else(|| {
        DecodeError::Unsupported(format!(
            "{what} is a {name} image, which unmark does not read; expected {SUPPORTED}"
        ))
    })?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut image_limits = image::Limits::default();
    // Each side is checked against the pixel budget too: a 1 x 10^9 strip is no better.
    let side = limits.max_pixels.min(u32::MAX as u64) as u32;
    image_limits.max_image_width = Some(side);
    image_limits.max_image_height = Some(side);
    // Header first, with no allocation budget yet: the size check below then names the size.
    image_limits.max_alloc = None;
    reader.limits(image_limits.clone());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| classify(what, &name, e))?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_pixels {
        return Err(DecodeError::TooLarge(format!(
            "{what} is {width}x{height} ({:.1} megapixels) but the limit is {:.1} megapixels",
            pixels as f64 / 1e6,
            limits.max_pixels as f64 / 1e6
        )));
    }
    if pixels == 0 {
        return Err(DecodeError::Corrupt(format!(
            "{what} has no pixels ({width}x{height})"
        )));
    }
    // Room for the decoded RGBA image and the decoder's own buffers.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4 * 3));
    decoder
        .set_limits(image_limits)
        .map_err(|e| classify(what, &name, e))?;
    // Metadata is best effort: a broken ICC chunk must not cost the user the image.
    let icc = decoder.icc_profile().ok().flatten();
    let exif = decoder.exif_metadata().ok().flatten();
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| classify(what, &name, e))?;
    image.apply_orientation(orientation);
    let raster = if image.color().has_alpha() {
        let rgba = image.into_rgba8();
        let (w, h) = rgba.dimensions();
        Raster::from_data(w, h, 4, rgba.into_raw())
    } else {
        let rgb = image.into_rgb8();
        let (w, h) = rgb.dimensions();
        Raster::from_data(w, h, 3, rgb.into_raw())
    }
    .ok_or_else(|| DecodeError::Corrupt(format!("{what} decoded to an inconsistent size")))?;
    Ok(DecodedImage {
        raster,
        format: source,
        icc,
        exif,
    })
}

/// Turns a decoded mask image into a binary mask.
///
/// A pixel is removed where its 8-bit luma, composited over black by its alpha, is above 127:
/// white strokes on a black or transparent canvas both work, and a transparent pixel keeps.
pub fn binarize(mask: &Raster) -> Mask {
    let mut out = Mask::new(mask.width, mask.height);
    let n = mask.channels as usize;
    for (dst, px) in out.data.iter_mut().zip(mask.data.chunks_exact(n)) {
        let (luma, alpha) = match n {
            1 => (px[0] as u32, 255),
            2 => (px[0] as u32, px[1] as u32),
            // Rec. 709 weights, as image's luma conversion uses; integer maths.
            3 => (luma709(px), 255),
            _ => (luma709(px), px[3] as u32),
        };
        *dst = u8::from(luma * alpha > 127 * 255);
    }
    out
}

#[inline]
fn luma709(px: &[u8]) -> u32 {
    (2126 * px[0] as u32 + 7152 * px[1] as u32 + 722 * px[2] as u32 + 5000) / 10000
}

/// The `decode` stage: `input` (and `mask_input`) to `image` (and `user_mask`).
#[derive(Debug, Default, Clone, Copy)]
pub struct DecodeStage;

impl Stage for DecodeStage {
    fn name(&self) -> &'static str {
        "decode"
    }

    fn reads(&self) -> &'static [&'static str] {
        &["input", "mask_input", "background_input"]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        let p: DecodeParams = params::parse("decode", params)?;
        p.validate()?;
        let limits = Limits::from(&p);
        let image = decode(inputs.require("input")?, &limits, "image")?;
        let mut out = StageOutput::default();
        if let Some(mask_bytes) = inputs.optional("mask_input") {
            let mask = decode(mask_bytes, &limits, "mask")?;
            out = out.with(
                "user_mask",
                Produced::Blob(artifact::write_mask(&binarize(&mask.raster))),
            );
        }
        if let Some(bytes) = inputs.optional("background_input") {
            let background = decode(bytes, &limits, "background image")?;
            out = out.with(
                "background",
                Produced::Blob(artifact::write_image(&background)),
            );
        }
        Ok(out.with("image", Produced::Blob(artifact::write_image(&image))))
    }
}
