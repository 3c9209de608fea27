//! `segment`: the model stage of the background pipeline. The working image goes through
//! ISNet with rembg's pre- and post-processing; the result is an 8-bit alpha at the working
//! size (`alpha`, a one-channel image artifact).
//!
//! The network lives on one model thread behind a [`Batcher`]: the runner calls the stage
//! for several messages at once (its `concurrency`), each call queues its input, and the
//! model thread runs them as one batch (up to `max_batch`, waiting at most
//! `max_queue_delay`). Pre- and post-processing (resizing) run on the callers' threads, in
//! parallel, outside the batch.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use unmark_models::batch::{BatchConfig, BatchStats, Batcher};
use unmark_models::{Backend, ModelError, Segmenter, preprocess};
use unmark_schemas::FailureReason;
use unmark_schemas::background::SegmentParams;
use unmark_schemas::params;

use crate::artifact::{self, DecodedImage, SourceFormat};
use crate::{Artifacts, Produced, Raster, Stage, StageError, StageOutput};

/// A loaded ISNet behind its batcher, or why there is none.
#[derive(Debug, Clone)]
pub struct SegmentModel {
    state: Result<Loaded, String>,
}

#[derive(Debug, Clone)]
struct Loaded {
    batcher: Batcher<Vec<f32>, Vec<f32>>,
    side: u32,
}

impl SegmentModel {
    /// Loads the weights at `path` on `backend`, runs one warm-up pass at `input_side`
    /// (1024 for the published weights), and starts the model thread.
    pub fn load(
        path: &Path,
        backend: Backend,
        input_side: u32,
        batch: BatchConfig,
    ) -> Result<Self, ModelError> {
        let segmenter = Segmenter::load(path, backend)?.with_input_side(input_side);
        segmenter.warm_up()?;
        Ok(Self::from_segmenter(segmenter, batch))
    }

    /// A model thread for an already loaded network.
    pub fn from_segmenter(segmenter: Segmenter, batch: BatchConfig) -> Self {
        let side = segmenter.input_side();
        let batcher = Batcher::spawn("isnet", batch, move |inputs: Vec<Vec<f32>>| {
            segmenter.predict(&inputs)
        });
        registry()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(("isnet", batcher.clone()));
        Self {
            state: Ok(Loaded { batcher, side }),
        }
    }

    /// No model: every job that needs one fails with `model_unavailable` and `why`.
    pub fn unavailable(why: impl Into<String>) -> Self {
        Self {
            state: Err(why.into()),
        }
    }

    /// Whether a network is loaded.
    pub fn is_loaded(&self) -> bool {
        self.state.is_ok()
    }

    /// The batcher's counters (batch sizes, queue delay), where a model is loaded.
    pub fn stats(&self) -> Option<BatchStats> {
        self.state.as_ref().ok().map(|l| l.batcher.stats())
    }

    /// The 8-bit alpha of an RGB(A) or gray raster, at its size.
    pub fn alpha(&self, image: &Raster) -> Result<Raster, StageError> {
        let loaded = self
            .state
            .as_ref()
            .map_err(|why| StageError::new(FailureReason::ModelUnavailable, why.clone()))?;
        let rgb = to_rgb(image);
        let size = image.size();
        let input = preprocess::normalize(&rgb, size, loaded.side).map_err(internal)?;
        let pred = loaded.batcher.submit(input).map_err(internal)?;
        let mask = preprocess::mask_from_prediction(&pred, loaded.side, size).map_err(internal)?;
        Raster::from_data(size.0, size.1, 1, mask)
            .ok_or_else(|| StageError::internal("the mask came back at the wrong size"))
    }
}

type ModelThread = Batcher<Vec<f32>, Vec<f32>>;

fn registry() -> &'static Mutex<Vec<(&'static str, ModelThread)>> {
    static MODELS: OnceLock<Mutex<Vec<(&'static str, ModelThread)>>> = OnceLock::new();
    MODELS.get_or_init(Default::default)
}

/// The batching counters of every model loaded in this process, by model name (for the
/// metrics endpoint).
pub fn batch_stats() -> Vec<(&'static str, BatchStats)> {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(name, b)| (*name, b.stats()))
        .collect()
}

fn internal(e: ModelError) -> StageError {
    StageError::internal(format!("segmentation failed: {e}"))
}

/// Interleaved RGB of a raster of 1 to 4 channels (alpha dropped, gray repeated).
fn to_rgb(r: &Raster) -> Vec<u8> {
    let c = r.channels as usize;
    if c == 3 {
        return r.data.clone();
    }
    r.data
        .chunks_exact(c)
        .flat_map(|p| if c < 3 { [p[0]; 3] } else { [p[0], p[1], p[2]] })
        .collect()
}

/// The `segment` stage: `work` to `alpha`.
#[derive(Debug, Clone)]
pub struct SegmentStage {
    model: Arc<SegmentModel>,
}

impl SegmentStage {
    /// The stage over a model (loaded or not).
    pub fn new(model: Arc<SegmentModel>) -> Self {
        Self { model }
    }
}

impl Stage for SegmentStage {
    fn name(&self) -> &'static str {
        "segment"
    }

    fn reads(&self) -> &'static [&'static str] {
        &["work"]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        let p: SegmentParams = params::parse("segment", params)?;
        p.validate()?;
        let work = artifact::read_image(inputs.require("work")?)?;
        let alpha = self.model.alpha(&work.raster)?;
        let out = DecodedImage {
            raster: alpha,
            format: SourceFormat::Png,
            icc: None,
            exif: None,
        };
        Ok(StageOutput::default().with("alpha", Produced::Blob(artifact::write_image(&out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_model_jobs_fail_with_model_unavailable() {
        let model =
            SegmentModel::unavailable("no ISNet weights at x.umw: run `unmark models import`");
        let err = model
            .alpha(&Raster::filled(4, 4, 3, 0))
            .expect_err("must fail");
        assert_eq!(err.reason, FailureReason::ModelUnavailable);
        assert!(err.message.contains("unmark models import"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn gray_and_rgba_become_rgb() {
        assert_eq!(to_rgb(&Raster::filled(1, 1, 1, 9)), vec![9, 9, 9]);
        assert_eq!(to_rgb(&Raster::filled(1, 1, 4, 7)), vec![7, 7, 7]);
    }
}
