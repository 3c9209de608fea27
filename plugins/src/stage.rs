//! Plugin steps in the pipeline: one [`PluginStage`] per plugin name, on the subject
//! `unmark.stage.plugin.<name>`, so that a heavy plugin scales on its own workers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use unmark_broker::{BlobStore, Broker};
use unmark_schemas::params::{self, PLUGIN_STAGE_PREFIX, PluginRole, PluginStepParams};
use unmark_schemas::{FailureReason, ParamError};
use unmark_stages::artifact::{self, DecodedImage};
use unmark_stages::encode::compose;
use unmark_stages::{
    Artifacts, Mask, Produced, Raster, Runner, RunnerConfig, Stage, StageError, StageOutput,
};

use crate::{Compiled, Input, PluginError, Registry, RegistryError, Sandbox};

/// The steps of one plugin, whatever their version or role.
pub struct PluginStage {
    plugin: String,
    stage: String,
    registry: Registry,
    sandbox: Arc<Sandbox>,
}

impl PluginStage {
    /// The stage of plugin `name`; modules come from `registry`'s blob store.
    pub fn new(name: &str, registry: Registry, sandbox: Arc<Sandbox>) -> Result<Self, ParamError> {
        params::check_plugin_name(name)?;
        Ok(Self {
            plugin: name.to_owned(),
            stage: format!("{PLUGIN_STAGE_PREFIX}{name}"),
            registry,
            sandbox,
        })
    }

    /// The compiled module of a step: cached by digest, else fetched and checked.
    fn compiled(&self, step: &PluginStepParams) -> Result<Arc<Compiled>, StageError> {
        if let Some(hit) = self.sandbox.cached(&step.sha256) {
            return Ok(hit);
        }
        let version = step.plugin.split_once('@').map_or("", |(_, v)| v);
        // Stages run on the runtime's blocking threads, which may wait on it.
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StageError::internal("plugin stage run outside the async runtime"))?;
        let fetched = runtime.block_on(self.registry.module(&self.plugin, version));
        let bytes = match fetched {
            Ok(bytes) => bytes,
            Err(RegistryError::NotFound(_)) => {
                return Err(StageError::new(
                    FailureReason::PluginFailed,
                    format!("plugin {} is no longer installed", step.plugin),
                ));
            }
            Err(e) => return Err(StageError::internal(e.to_string())),
        };
        self.sandbox
            .load(&step.sha256, &bytes)
            .map_err(|e| failure(&step.plugin, e))
    }
}

/// The job's error for a failed call: "plugin blur@1 exceeded its 2 s CPU budget".
fn failure(plugin: &str, e: PluginError) -> StageError {
    let reason = match e {
        PluginError::Host(_) => FailureReason::Internal,
        PluginError::Param { .. } => FailureReason::InvalidParameter,
        _ => FailureReason::PluginFailed,
    };
    StageError::new(reason, format!("plugin {plugin} {e}"))
}

/// Any raster as RGBA.
fn to_rgba(r: &Raster) -> Vec<u8> {
    let n = r.width as usize * r.height as usize;
    let mut out = Vec::with_capacity(n * 4);
    for px in r.data.chunks_exact(r.channels as usize) {
        match *px {
            [g] => out.extend_from_slice(&[g, g, g, 255]),
            [g, a] => out.extend_from_slice(&[g, g, g, a]),
            [r, g, b] => out.extend_from_slice(&[r, g, b, 255]),
            [r, g, b, a] => out.extend_from_slice(&[r, g, b, a]),
            _ => {}
        }
    }
    out
}

/// RGBA back to `channels` samples per pixel (grey from Rec. 601 luma).
fn from_rgba(rgba: &[u8], width: u32, height: u32, channels: u8) -> Raster {
    let luma = |p: &[u8]| {
        ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]) + 128) >> 8) as u8
    };
    let mut data = Vec::with_capacity(rgba.len() / 4 * channels as usize);
    for p in rgba.chunks_exact(4) {
        match channels {
            1 => data.push(luma(p)),
            2 => data.extend_from_slice(&[luma(p), p[3]]),
            3 => data.extend_from_slice(&p[..3]),
            _ => data.extend_from_slice(p),
        }
    }
    Raster {
        width,
        height,
        channels: channels.clamp(1, 4),
        data,
    }
}

/// A mask as the contract passes it: 255 where masked.
fn mask_bytes(mask: &Mask) -> Vec<u8> {
    mask.data
        .iter()
        .map(|&v| if v != 0 { 255 } else { 0 })
        .collect()
}

impl PluginStage {
    /// One call of the plugin on `raster` (as RGBA), with the job's mask where it has one.
    fn call(
        &self,
        step: &PluginStepParams,
        plugin: &Compiled,
        raster: &Raster,
        mask: Option<&Mask>,
    ) -> Result<Vec<u8>, StageError> {
        let rgba = to_rgba(raster);
        let mask = mask.map(mask_bytes);
        let input = Input {
            rgba: &rgba,
            width: raster.width,
            height: raster.height,
            mask: mask.as_deref(),
            params: &step.params,
        };
        self.sandbox
            .run(plugin, &input)
            .map_err(|e| failure(&step.plugin, e))
    }

    fn filter(
        &self,
        step: &PluginStepParams,
        plugin: &Compiled,
        image: &mut DecodedImage,
        mask: Option<&Mask>,
    ) -> Result<(), StageError> {
        let r = &image.raster;
        let out = self.call(step, plugin, r, mask)?;
        image.raster = from_rgba(&out, r.width, r.height, r.channels);
        Ok(())
    }
}

impl Stage for PluginStage {
    fn name(&self) -> &str {
        &self.stage
    }

    fn reads(&self) -> &'static [&'static str] {
        &["image", "user_mask", "mask", "work_out"]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        let step: PluginStepParams = params::parse(&self.stage, params)?;
        step.validate(&self.plugin)?;
        let plugin = self.compiled(&step)?;
        let mut image = artifact::read_image(inputs.require("image")?)?;
        match step.role {
            PluginRole::Pre => {
                let mask = inputs
                    .optional("user_mask")
                    .map(|b| artifact::read_mask(b))
                    .transpose()?;
                let mask = mask.filter(|m| m.size() == image.raster.size());
                self.filter(&step, &plugin, &mut image, mask.as_ref())?;
                Ok(StageOutput::default()
                    .with("image", Produced::Blob(artifact::write_image(&image))))
            }
            PluginRole::Post => {
                let mask = artifact::read_mask(inputs.require("mask")?)?;
                let fill = artifact::read_image(inputs.require("work_out")?)?;
                compose(&mut image.raster, &mask, &fill.raster)?;
                self.filter(&step, &plugin, &mut image, Some(&mask))?;
                Ok(StageOutput::default()
                    .with("image", Produced::Blob(artifact::write_image(&image)))
                    .with("work_out", Produced::Alias("image")))
            }
            PluginRole::Detector => {
                let r = &image.raster;
                let out = self.call(&step, &plugin, r, None)?;
                let mut mask = Mask {
                    width: r.width,
                    height: r.height,
                    data: out.into_iter().map(|v| u8::from(v != 0)).collect(),
                };
                if let Some(bytes) = inputs.optional("user_mask") {
                    let sent = artifact::read_mask(bytes)?;
                    if sent.size() == mask.size() {
                        for (m, s) in mask.data.iter_mut().zip(&sent.data) {
                            *m |= u8::from(*s != 0);
                        }
                    }
                }
                Ok(StageOutput::default()
                    .with("user_mask", Produced::Blob(artifact::write_mask(&mask))))
            }
        }
    }
}

/// Runs the steps of every installed plugin in this process: starts a runner for each
/// plugin name as soon as it is installed (checked every `every`, or at once on `wake`).
pub async fn supervise(
    registry: Registry,
    sandbox: Arc<Sandbox>,
    broker: Arc<dyn Broker>,
    blobs: BlobStore,
    config: RunnerConfig,
    every: Duration,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut running = BTreeSet::new();
    loop {
        match registry.names().await {
            Ok(names) => {
                for name in names {
                    if running.contains(&name) {
                        continue;
                    }
                    match PluginStage::new(&name, registry.clone(), Arc::clone(&sandbox)) {
                        Ok(stage) => {
                            spawn_runner(stage, broker.clone(), blobs.clone(), config.clone());
                            running.insert(name);
                        }
                        Err(e) => tracing::warn!("skipping plugin {name:?}: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list plugins: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => {}
        }
    }
}

/// Starts the runner of one plugin stage.
pub fn spawn_runner(
    stage: PluginStage,
    broker: Arc<dyn Broker>,
    blobs: BlobStore,
    config: RunnerConfig,
) -> tokio::task::JoinHandle<()> {
    let name = stage.stage.clone();
    tracing::debug!(stage = %name, "plugin stage starting");
    let runner = Runner::new(Arc::new(stage), broker, blobs, config);
    tokio::spawn(async move {
        if let Err(e) = runner.run().await {
            tracing::error!(stage = %name, error = %e, "plugin stage runner stopped");
        }
    })
}
