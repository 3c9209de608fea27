//! The built-in pipelines, as ordered steps.

use crate::Step;
use crate::background::BackgroundOptions;
use crate::params::{
    PLUGIN_STAGE_PREFIX, PluginCall, PluginRole, PluginStepParams, WatermarkOptions,
};

/// Name of the watermark pipeline.
pub const REMOVE_WATERMARK: &str = "remove-watermark";

/// The stages of the watermark pipeline, in order.
pub const WATERMARK_STAGES: [&str; 5] = ["decode", "prescale", "detect", "inpaint", "encode"];

/// Name of the background-removal pipeline.
pub const REMOVE_BACKGROUND: &str = "remove-background";

/// The stages of the background-removal pipeline, in order.
pub const BACKGROUND_STAGES: [&str; 5] = ["decode", "prescale", "segment", "composite", "encode"];

fn step(stage: &str, params: &impl serde::Serialize) -> Step {
    Step {
        stage: stage.to_owned(),
        params: serde_json::to_value(params).unwrap_or(serde_json::Value::Null),
    }
}

/// The step of a plugin call: stage `plugin.<name>`. The call must be resolved (its
/// `plugin` names a version and its `sha256` is set), or the job fails validation.
pub fn plugin_step(call: &PluginCall, role: PluginRole) -> Step {
    let name = call.plugin.split('@').next().unwrap_or_default();
    step(
        &format!("{PLUGIN_STAGE_PREFIX}{name}"),
        &PluginStepParams {
            plugin: call.plugin.clone(),
            sha256: call.sha256.clone().unwrap_or_default(),
            role,
            params: call.params.clone(),
        },
    )
}

/// decode -> [pre plugins] -> prescale -> [detector plugin] -> detect -> inpaint ->
/// [post plugins] -> encode, with `options` spread over the steps.
pub fn remove_watermark(options: &WatermarkOptions) -> Vec<Step> {
    let plugins = &options.plugins;
    let mut steps = vec![step("decode", &options.decode)];
    steps.extend(plugins.pre.iter().map(|c| plugin_step(c, PluginRole::Pre)));
    steps.push(step("prescale", &options.prescale));
    steps.extend(
        plugins
            .detector
            .iter()
            .map(|c| plugin_step(c, PluginRole::Detector)),
    );
    steps.push(step("detect", &options.detect));
    steps.push(step("inpaint", &options.inpaint));
    steps.extend(
        plugins
            .post
            .iter()
            .map(|c| plugin_step(c, PluginRole::Post)),
    );
    steps.push(step("encode", &options.encode));
    steps
}

/// decode -> prescale -> segment -> composite -> encode, with `options` spread over the steps.
pub fn remove_background(options: &BackgroundOptions) -> Vec<Step> {
    vec![
        step("decode", &options.decode),
        step("prescale", &options.prescale),
        step("segment", &options.segment),
        step("composite", &options.composite),
        step("encode", &options.encode),
    ]
}
