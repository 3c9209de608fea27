//! The built-in pipelines, as ordered steps.

use crate::Step;
use crate::params::WatermarkOptions;

/// Name of the watermark pipeline.
pub const REMOVE_WATERMARK: &str = "remove-watermark";

/// The stages of the watermark pipeline, in order.
pub const WATERMARK_STAGES: [&str; 5] = ["decode", "prescale", "detect", "inpaint", "encode"];

fn step(stage: &str, params: &impl serde::Serialize) -> Step {
    Step {
        stage: stage.to_owned(),
        params: serde_json::to_value(params).unwrap_or(serde_json::Value::Null),
    }
}

/// decode -> prescale -> detect -> inpaint -> encode, with `options` spread over the steps.
pub fn remove_watermark(options: &WatermarkOptions) -> Vec<Step> {
    vec![
        step("decode", &options.decode),
        step("prescale", &options.prescale),
        step("detect", &options.detect),
        step("inpaint", &options.inpaint),
        step("encode", &options.encode),
    ]
}
