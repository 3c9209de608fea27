//! unmark's pipeline stages: pixels in, pixels out.
//!
//! Each stage is a pure function over images ([`decode::decode`], [`prescale::prescale`],
//! [`detect::prepare_mask`], [`inpaint::inpaint`], [`encode::compose`] and
//! [`encode::encode`]) wrapped in a [`Stage`] that reads and writes named artifacts. The
//! generic [`Runner`] does the rest once for all stages: it consumes the stage's subject,
//! loads the artifacts, runs the stage on a blocking thread, stores its outputs under
//! deterministic keys, publishes the next step and the job's events, and acks, naks or
//! terminates the message. Every stage emits the same [`telemetry`].
//!
//! ```
//! use unmark_stages::{Raster, Mask, inpaint};
//! use unmark_schemas::params::InpaintParams;
//!
//! // A grey image with a white square "watermark" in the middle.
//! let mut image = Raster::filled(32, 32, 3, 100);
//! let mut mask = Mask::new(32, 32);
//! for y in 12..20 {
//!     for x in 12..20 {
//!         image.pixel_mut(x, y).fill(255);
//!         mask.set(x, y, true);
//!     }
//! }
//! inpaint::inpaint(&mut image, &mask, inpaint::MaskOrigin::Drawn, &InpaintParams::default());
//! assert_eq!(image.pixel(16, 16), [100, 100, 100]);
//! ```

pub mod artifact;
pub mod composite;
pub mod decode;
pub mod detect;
pub mod encode;
pub mod fixtures;
pub mod inpaint;
pub mod prescale;
pub mod profile;
pub mod quality;
mod raster;
mod runner;
pub mod segment;
mod stage;
pub mod synth;
pub mod telemetry;

pub use raster::{Mask, Raster};
pub use runner::{Runner, RunnerConfig};
pub use stage::{Artifacts, Produced, Stage, StageError, StageOutput};

use std::sync::Arc;

/// Every built-in stage of the watermark pipeline, in pipeline order.
pub fn builtin() -> Vec<Arc<dyn Stage>> {
    vec![
        Arc::new(decode::DecodeStage),
        Arc::new(prescale::PrescaleStage),
        Arc::new(detect::DetectStage::default()),
        Arc::new(inpaint::InpaintStage),
        Arc::new(encode::EncodeStage),
    ]
}

/// The stages of the background pipeline that are not also the watermark pipeline's, over
/// `model` (loaded once per worker and shared by the stage's concurrent calls).
pub fn background(model: Arc<segment::SegmentModel>) -> Vec<Arc<dyn Stage>> {
    vec![
        Arc::new(segment::SegmentStage::new(model)),
        Arc::new(composite::CompositeStage),
    ]
}

/// The watermark pipeline's pixel work in one call, without the broker or the blob store:
/// mask preparation, working image, inpainting and compose. For benches and quality checks;
/// services go through the stages.
pub fn remove_watermark_pixels(
    image: &Raster,
    user_mask: &Mask,
    origin: inpaint::MaskOrigin,
    options: &unmark_schemas::params::WatermarkOptions,
) -> Result<Raster, StageError> {
    let mask = detect::prepare_mask(user_mask, image.size(), options.detect.mask_dilate)?;
    let mut out = image.clone();
    match prescale::prescale(image, options.prescale.work_max_side)? {
        None => inpaint::inpaint(&mut out, &mask, origin, &options.inpaint),
        Some(mut work) => {
            let work_mask = detect::working_mask(&mask, work.width, work.height);
            inpaint::inpaint(&mut work, &work_mask, origin, &options.inpaint);
            encode::compose(&mut out, &mask, &work)?;
        }
    }
    Ok(out)
}
