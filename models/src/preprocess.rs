//! rembg's pre- and post-processing for `isnet-general-use`, reproduced exactly so that the
//! two tools give the same mask for the same photo:
//!
//! - in: RGB, Lanczos resize to 1024x1024 (8-bit, as Pillow does), divide by the resized
//!   image's own maximum, subtract the ImageNet mean (0.485, 0.456, 0.406), std 1.0;
//! - out: min-max normalise the probability map, scale to 0..255 truncating (numpy's
//!   `astype(uint8)`), Lanczos resize back to the photo's size.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::ModelError;

/// The per-channel mean rembg subtracts.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];

/// Lanczos3 resize of interleaved 8-bit pixels (1 or 3 channels).
pub fn resize_u8(
    data: &[u8],
    size: (u32, u32),
    channels: usize,
    to: (u32, u32),
) -> Result<Vec<u8>, ModelError> {
    let kind = match channels {
        1 => PixelType::U8,
        3 => PixelType::U8x3,
        n => return Err(ModelError::Input(format!("cannot resize {n} channels"))),
    };
    if size == to {
        return Ok(data.to_vec());
    }
    let fail = |e: &dyn std::fmt::Display| ModelError::Input(format!("resize failed: {e}"));
    let src = ImageRef::new(size.0, size.1, data, kind).map_err(|e| fail(&e))?;
    let mut dst = Image::new(to.0, to.1, kind);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Ok(dst.into_vec())
}

/// rembg's input tensor for one RGB image, planar `[3, side, side]`.
pub fn normalize(rgb: &[u8], size: (u32, u32), side: u32) -> Result<Vec<f32>, ModelError> {
    if rgb.len() != size.0 as usize * size.1 as usize * 3 {
        return Err(ModelError::Input(format!(
            "{} bytes is not a {}x{} RGB image",
            rgb.len(),
            size.0,
            size.1
        )));
    }
    let resized = resize_u8(rgb, size, 3, (side, side))?;
    let max = f32::from(resized.iter().copied().max().unwrap_or(0)).max(1e-6);
    let plane = (side * side) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, px) in resized.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(px[c]) / max - MEAN[c];
        }
    }
    Ok(out)
}

/// rembg's mask from the model's probability map (`side` x `side`), at the photo's size.
pub fn mask_from_prediction(
    pred: &[f32],
    side: u32,
    size: (u32, u32),
) -> Result<Vec<u8>, ModelError> {
    let (lo, hi) = pred
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    let scaled: Vec<u8> = pred
        .iter()
        .map(|&v| {
            // A constant map has no range; rembg divides by zero there, we call it background.
            let n = if range > 0.0 { (v - lo) / range } else { 0.0 };
            (n * 255.0) as u8
        })
        .collect();
    resize_u8(&scaled, (side, side), 1, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_divides_by_the_image_maximum() {
        // A flat image of value 100 everywhere: max is 100, so every value becomes 1 - mean.
        let rgb = vec![100u8; 8 * 6 * 3];
        let t = normalize(&rgb, (8, 6), 4).expect("valid test input");
        assert_eq!(t.len(), 3 * 16);
        assert!((t[0] - (1.0 - MEAN[0])).abs() < 1e-6);
        assert!((t[16] - (1.0 - MEAN[1])).abs() < 1e-6);
        assert!((t[47] - (1.0 - MEAN[2])).abs() < 1e-6);
        assert!(
            normalize(&rgb, (8, 5), 4)
                .expect_err("must fail")
                .to_string()
                .contains("8x5")
        );
    }

    #[test]
    fn masks_are_min_max_scaled_and_truncated() {
        let pred = [0.2f32, 0.4, 0.6, 1.0];
        let m = mask_from_prediction(&pred, 2, (2, 2)).expect("valid test input");
        // (0.4 - 0.2) / 0.8 * 255 = 63.75 -> 63 (truncated, like numpy's astype).
        assert_eq!(m, vec![0, 63, 127, 255]);
        assert_eq!(
            mask_from_prediction(&[0.5; 4], 2, (2, 2)).expect("valid test input"),
            vec![0; 4]
        );
    }
}
