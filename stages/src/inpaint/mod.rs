//! `inpaint`: fills the masked pixels of the working image.
//!
//! Only crops around each connected mask region (plus a margin of the radius) are processed,
//! never the whole image; crops are independent and run in parallel.

mod regions;
mod restore;
mod telea;

pub use restore::Report as RestoreReport;
pub(crate) use restore::blend_alpha;

use rayon::prelude::*;
use unmark_schemas::params::{self, Engine, InpaintParams};

use crate::artifact;
use crate::{Artifacts, Mask, Produced, Raster, Stage, StageError, StageOutput};

pub use regions::{Rect, bounding_box, components, crops, label};

/// Fills every pixel of `image` where `mask` is set; pixels outside the mask are untouched.
///
/// # Panics
/// Never for a mask of the image's size; the stage checks sizes before calling.
pub fn inpaint(image: &mut Raster, mask: &Mask, origin: MaskOrigin, params: &InpaintParams) {
    inpaint_reported(image, mask, origin, params);
}

/// [`inpaint`], saying what `restore` did with the mask's regions (`None` for `telea`).
pub fn inpaint_reported(
    image: &mut Raster,
    mask: &Mask,
    origin: MaskOrigin,
    params: &InpaintParams,
) -> Option<RestoreReport> {
    debug_assert_eq!(image.size(), mask.size());
    match params.engine {
        Engine::Telea => {
            telea_fill(image, mask, params.radius);
            None
        }
        Engine::Restore => {
            let prior = telea_prior(image, mask, params.radius);
            Some(restore::restore(image, mask, &prior, origin, params.radius))
        }
    }
}

/// Who drew a mask. `restore` fits a loose mask (many pixels inside it far from the mark's
/// opacity) as one mark when it was drawn around one, and region by region when the detector
/// found it: the detector's false parts lie anywhere in the image, each needing a fit of its
/// own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskOrigin {
    /// A client's mask or a `detector` plugin's.
    #[default]
    Drawn,
    /// The built-in detector's ([`crate::detect::auto`]).
    Detected,
}

/// The artifact the detect stage writes when the built-in detector drew the mask (its
/// presence is the message; its bytes are [`DETECTED`]).
pub const DETECTED_ARTIFACT: &str = "detected";
/// The bytes of [`DETECTED_ARTIFACT`].
pub const DETECTED: &[u8] = b"built-in detector";

/// A copy of `image` with the masked pixels filled by Telea's method: the photo's prior under
/// a mark.
pub(crate) fn telea_prior(image: &Raster, mask: &Mask, radius: u32) -> Raster {
    let mut prior = image.clone();
    telea_fill(&mut prior, mask, radius);
    prior
}

/// The `restore` engine for a mark whose shape is known (a placed watermark profile):
/// `covered` marks the pixels the mark covers fully. Returns false, with `image` untouched,
/// when this image does not pin the opacity down well enough to invert.
pub(crate) fn restore_shaped(image: &mut Raster, mask: &Mask, covered: &[bool]) -> bool {
    let prior = telea_prior(image, mask, InpaintParams::default().radius);
    restore::restore_shaped(image, mask, &prior, covered)
}

/// A copy of `image` whose masked pixels within `reach` of the mask's edge are filled by
/// Telea's marching alone (no refinement); the deeper ones keep their values.
pub(crate) fn telea_shallow(image: &Raster, mask: &Mask, radius: u32, reach: f32) -> Raster {
    let mut near = image.clone();
    fill_crops(&mut near, mask, radius, Some(reach));
    near
}

/// Telea's fill of every masked pixel, crop by crop, in parallel.
fn telea_fill(image: &mut Raster, mask: &Mask, radius: u32) {
    fill_crops(image, mask, radius, None);
}

/// Telea's fill of the masked pixels within `reach` of the edge (all with `None`).
fn fill_crops(image: &mut Raster, mask: &Mask, radius: u32, reach: Option<f32>) {
    let window = telea::Window::new(radius);
    // Known pixels up to `radius` away feed the fill, and one more row for gradients.
    let margin = radius + 2;
    let source: &Raster = image;
    let fills: Vec<_> = crops(mask, margin)
        .into_par_iter()
        .map(|rect| telea::fill_crop(source, mask, rect, &window, reach))
        .collect();
    let c = image.channels as usize;
    for (x, y, px) in fills.into_iter().flatten() {
        image.pixel_mut(x, y).copy_from_slice(&px[..c]);
    }
}

/// The `inpaint` stage: `work` + `work_mask` to `work_out`.
#[derive(Debug, Default, Clone, Copy)]
pub struct InpaintStage;

impl Stage for InpaintStage {
    fn name(&self) -> &'static str {
        "inpaint"
    }

    fn reads(&self) -> &'static [&'static str] {
        &["work", "work_mask", DETECTED_ARTIFACT]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        let p: InpaintParams = params::parse("inpaint", params)?;
        p.validate()?;
        let mut work = artifact::read_image(inputs.require("work")?)?;
        let mask = artifact::read_mask(inputs.require("work_mask")?)?;
        if work.raster.size() != mask.size() {
            return Err(StageError::internal(format!(
                "working mask is {}x{} but working image is {}x{}",
                mask.width, mask.height, work.raster.width, work.raster.height
            )));
        }
        let origin = if inputs.optional(DETECTED_ARTIFACT).is_some() {
            MaskOrigin::Detected
        } else {
            MaskOrigin::Drawn
        };
        inpaint(&mut work.raster, &mask, origin, &p);
        Ok(StageOutput::default().with("work_out", Produced::Blob(artifact::write_image(&work))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> Raster {
        let mut r = Raster::filled(w, h, 3, 0);
        for y in 0..h {
            for x in 0..w {
                r.pixel_mut(x, y)
                    .copy_from_slice(&[(x * 4) as u8, (y * 4) as u8, 128]);
            }
        }
        r
    }

    #[test]
    fn outside_the_mask_is_untouched_and_holes_follow_smooth_content() {
        let truth = ramp(60, 50);
        let mut image = truth.clone();
        let mut mask = Mask::new(60, 50);
        for y in 20..28 {
            for x in 25..35 {
                image.pixel_mut(x, y).copy_from_slice(&[255, 0, 255]);
                mask.set(x, y, true);
            }
        }
        inpaint(
            &mut image,
            &mask,
            MaskOrigin::Drawn,
            &InpaintParams::default(),
        );
        for y in 0..50 {
            for x in 0..60 {
                let (got, want) = (image.pixel(x, y), truth.pixel(x, y));
                if mask.get(x, y) {
                    for ch in 0..3 {
                        let err = (got[ch] as i32 - want[ch] as i32).abs();
                        assert!(err <= 12, "({x},{y}) ch {ch}: {got:?} vs {want:?}");
                    }
                } else {
                    assert_eq!(got, want, "({x},{y}) outside the mask changed");
                }
            }
        }
    }

    #[test]
    fn a_mask_touching_the_border_is_filled() {
        let mut image = Raster::filled(20, 20, 4, 50);
        let mut mask = Mask::new(20, 20);
        for y in 0..5 {
            for x in 0..20 {
                image.pixel_mut(x, y).fill(250);
                mask.set(x, y, true);
            }
        }
        inpaint(
            &mut image,
            &mask,
            MaskOrigin::Drawn,
            &InpaintParams {
                radius: 3,
                ..Default::default()
            },
        );
        assert_eq!(image.pixel(10, 0), [50, 50, 50, 50]);
    }
}
