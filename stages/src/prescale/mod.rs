//! `prescale`: the working image the inpainter sees, no larger than `work_max_side`.
//!
//! Resizing uses `fast_image_resize` (SIMD convolution) with a Lanczos3 filter when shrinking
//! and Catmull-Rom when scaling inpainted pixels back up.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use unmark_schemas::params::{self, PrescaleParams};

use crate::artifact;
use crate::{Artifacts, Produced, Raster, Stage, StageError, StageOutput};

/// The working size for an image of `size` so that its longest side is at most `max_side`;
/// `None` when the image already fits.
pub fn working_size(size: (u32, u32), max_side: u32) -> Option<(u32, u32)> {
    let (w, h) = size;
    let longest = w.max(h);
    if longest <= max_side {
        return None;
    }
    Some(scaled_size(size, max_side as f64 / longest as f64))
}

/// `size` scaled by `scale`, each side rounded and at least 1.
pub fn scaled_size((w, h): (u32, u32), scale: f64) -> (u32, u32) {
    let fit = |v: u32| ((v as f64 * scale).round() as u32).max(1);
    (fit(w), fit(h))
}

fn pixel_type(channels: u8) -> Result<PixelType, StageError> {
    Ok(match channels {
        1 => PixelType::U8,
        2 => PixelType::U8x2,
        3 => PixelType::U8x3,
        4 => PixelType::U8x4,
        n => return Err(StageError::internal(format!("cannot resize {n} channels"))),
    })
}

/// Resizes the part `crop = (left, top, width, height)` of `src` (all of it when `None`) to
/// `width` x `height`.
pub fn resize(
    src: &Raster,
    crop: Option<(f64, f64, f64, f64)>,
    width: u32,
    height: u32,
    filter: FilterType,
) -> Result<Raster, StageError> {
    let kind = pixel_type(src.channels)?;
    let fail = |e: &dyn std::fmt::Display| StageError::internal(format!("resize failed: {e}"));
    let source = ImageRef::new(src.width, src.height, &src.data, kind).map_err(|e| fail(&e))?;
    let mut dst = Image::new(width, height, kind);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    if let Some((left, top, w, h)) = crop {
        options = options.crop(left, top, w, h);
    }
    Resizer::new()
        .resize(&source, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    Raster::from_data(width, height, src.channels, dst.into_vec())
        .ok_or_else(|| StageError::internal("resize produced a wrong size"))
}

/// The working image: `None` when `image` already fits in `max_side`.
pub fn prescale(image: &Raster, max_side: u32) -> Result<Option<Raster>, StageError> {
    working_size(image.size(), max_side)
        .map(|(w, h)| resize(image, None, w, h, FilterType::Lanczos3))
        .transpose()
}

/// The `prescale` stage: `image` to `work` (an alias of `image` when no scaling is needed).
#[derive(Debug, Default, Clone, Copy)]
pub struct PrescaleStage;

impl Stage for PrescaleStage {
    fn name(&self) -> &'static str {
        "prescale"
    }

    fn reads(&self) -> &'static [&'static str] {
        &["image"]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        let p: PrescaleParams = params::parse("prescale", params)?;
        p.validate()?;
        let bytes = inputs.require("image")?;
        let header = artifact::read_header(bytes)?;
        if working_size((header.width, header.height), p.work_max_side).is_none() {
            return Ok(StageOutput::default().with("work", Produced::Alias("image")));
        }
        let mut image = artifact::read_image(bytes)?;
        if let Some(work) = prescale(&image.raster, p.work_max_side)? {
            image.raster = work;
        }
        Ok(StageOutput::default().with("work", Produced::Blob(artifact::write_image(&image))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(working_size((2048, 1362), 1024), Some((1024, 681)));
        assert_eq!(working_size((800, 600), 1024), None);
        assert_eq!(working_size((5000, 1), 100), Some((100, 1)));
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let src = Raster::filled(300, 200, 3, 77);
        let out = prescale(&src, 150).expect("resize").expect("scaled");
        assert_eq!(out.size(), (150, 100));
        assert!(out.data.iter().all(|&v| v == 77));
    }
}
