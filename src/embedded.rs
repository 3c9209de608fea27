//! Wiring a broker, a blob store and stage runners, in embedded or scale-out mode.
//!
//! - Embedded (no `nats.url`): the in-process broker.
//! - Scale-out (`nats.url` set): NATS JetStream.
//!
//! Blobs go where `[blobs]` says (by default `<data_dir>/blobs`, fsync on; S3 for several
//! hosts), except for one-shot CLI runs, which keep them in memory.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;
use unmark_broker::{
    BlobStore, Broker, InProcessBroker, JetStreamBroker, JetStreamConfig, JobClient,
};
use unmark_plugins::{PluginHost, PluginStage};
use unmark_stages::composite::CompositeStage;
use unmark_stages::segment::SegmentStage;
use unmark_stages::{Runner, RunnerConfig, Stage};

use crate::config::Config;

/// Running stage runners and the client that submits to them; runners stop on drop.
pub(crate) struct Pipeline {
    pub(crate) client: JobClient,
    runners: Vec<JoinHandle<()>>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for runner in &self.runners {
            runner.abort();
        }
    }
}

impl Pipeline {
    /// Waits until every runner has stopped (for `unmark worker`).
    pub(crate) async fn join(mut self) {
        for runner in std::mem::take(&mut self.runners) {
            let _ = runner.await;
        }
    }
}

/// The broker and blob store the configuration names, the NATS connection in scale-out,
/// and the plugin registry and sandbox.
pub(crate) struct Transport {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) blobs: BlobStore,
    pub(crate) nats: Option<async_nats::Client>,
    pub(crate) plugins: PluginHost,
}

/// Where a process keeps its blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blobs {
    /// In this process's memory: a one-shot CLI run, nothing outlives it.
    Memory,
    /// Where `[blobs]` says: shared by every process of a deployment.
    Configured,
}

/// Connects what the configuration names.
pub(crate) async fn transport(config: &Config, place: Blobs) -> Result<Transport> {
    let open_configured = || {
        let blobs = config.blob_config();
        BlobStore::open(&blobs).with_context(|| format!("cannot open the blob store {}", blobs.url))
    };
    let (blobs, plugins) = match place {
        Blobs::Memory => {
            // A one-shot run still sees the plugins installed in the configured store, if
            // there is one; it creates nothing on disk.
            let configured = config.blob_config();
            let exists = match configured.local_dir() {
                Some(dir) => dir.is_dir(),
                None => configured.validate().is_ok(),
            };
            let registry = if exists {
                open_configured()?
            } else {
                BlobStore::in_memory()
            };
            (BlobStore::in_memory(), config.plugin_host(registry, false)?)
        }
        Blobs::Configured => {
            let blobs = open_configured()?;
            let plugins = config.plugin_host(blobs.clone(), true)?;
            (blobs, plugins)
        }
    };
    let Some(url) = config.nats.url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(Transport {
            broker: Arc::new(InProcessBroker::new()),
            blobs,
            nats: None,
            plugins,
        });
    };
    let nats = JetStreamConfig {
        ack_wait: Duration::from_secs(config.nats.ack_wait_secs),
        events_max_age: Duration::from_secs(config.nats.events_max_age_secs),
        ..JetStreamConfig::new(url)
    };
    let broker = JetStreamBroker::connect(nats)
        .await
        .with_context(|| format!("cannot connect to NATS JetStream at {url}"))?;
    Ok(Transport {
        nats: Some(broker.nats()),
        broker: Arc::new(broker),
        blobs,
        plugins,
    })
}

/// Which plugin steps a process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PluginWork {
    /// None.
    None,
    /// Every installed plugin, including those installed later.
    All,
    /// These plugins only.
    Named(Vec<String>),
}

/// The stages a process runs: built-in ones and plugin steps.
pub(crate) struct Selection {
    pub(crate) stages: Vec<Arc<dyn Stage>>,
    pub(crate) plugins: PluginWork,
    /// Messages the model stage takes at once: enough to fill its batches.
    pub(crate) model_concurrency: usize,
}

impl Selection {
    /// How many kinds of work (a built-in stage, all plugins, one plugin) it names.
    pub(crate) fn len(&self) -> usize {
        self.stages.len()
            + match &self.plugins {
                PluginWork::None => 0,
                PluginWork::All => 1,
                PluginWork::Named(names) => names.len(),
            }
    }
}
/// Every built-in stage name: the watermark pipeline's, then the background pipeline's own.
pub(crate) fn builtin_names() -> Vec<&'static str> {
    let mut names = unmark_schemas::pipeline::WATERMARK_STAGES.to_vec();
    for name in unmark_schemas::pipeline::BACKGROUND_STAGES {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The built-in stage `name`; `segment` loads (and warms up) its network here, so only a
/// process that runs it pays for it, and `detect` puts its network on `models.device`.
fn builtin(name: &str, config: &Config) -> Option<Arc<dyn Stage>> {
    if name == "detect" {
        return Some(Arc::new(crate::models::detect_stage(config)));
    }
    if let Some(stage) = unmark_stages::builtin()
        .into_iter()
        .find(|s| s.name() == name)
    {
        return Some(stage);
    }
    match name {
        "segment" => Some(Arc::new(SegmentStage::new(crate::models::segment_model(
            config,
        )))),
        "composite" => Some(Arc::new(CompositeStage)),
        _ => None,
    }
}

/// The stages named by `list`: `all` (every built-in stage and every plugin), `none`, or
/// names separated by commas, where `plugin` means every plugin and `plugin:<name>` one.
pub(crate) fn select(list: &str, config: &Config) -> Result<Selection> {
    let known = builtin_names();
    let mut selection = Selection {
        stages: Vec::new(),
        plugins: PluginWork::None,
        // One batch runs while the next one gathers.
        model_concurrency: 2 * config.models.max_batch,
    };
    let names: Vec<&str> = match list.trim() {
        "all" => {
            selection.plugins = PluginWork::All;
            known.clone()
        }
        "none" | "" => Vec::new(),
        names => names.split(',').map(str::trim).collect(),
    };
    for name in names {
        if name == "plugin" {
            selection.plugins = PluginWork::All;
        } else if let Some(plugin) = name.strip_prefix("plugin:") {
            unmark_schemas::params::check_plugin_name(plugin)?;
            match &mut selection.plugins {
                PluginWork::All => {}
                PluginWork::Named(list) => list.push(plugin.to_owned()),
                none => *none = PluginWork::Named(vec![plugin.to_owned()]),
            }
        } else {
            let stage = builtin(name, config).with_context(|| {
                format!(
                    "unknown stage {name:?}; expected one of {}, plugin or plugin:<name>",
                    known.join(", ")
                )
            })?;
            selection.stages.push(stage);
        }
    }
    Ok(selection)
}

/// How often a process that runs every plugin looks for newly installed ones (an install
/// through this process's own API is seen at once).
const PLUGIN_POLL: Duration = Duration::from_secs(2);

/// Starts a runner for each selected stage.
pub(crate) fn start(t: &Transport, selection: Selection, config: &RunnerConfig) -> Pipeline {
    let (broker, blobs) = (t.broker.clone(), t.blobs.clone());
    let model_concurrency = selection.model_concurrency;
    let mut runners: Vec<JoinHandle<()>> = selection
        .stages
        .into_iter()
        .map(|stage| {
            let name = stage.name().to_owned();
            let mut config = config.clone();
            if name == "segment" {
                config.concurrency = config.concurrency.max(model_concurrency);
            }
            let runner = Runner::new(stage, broker.clone(), blobs.clone(), config);
            tokio::spawn(async move {
                if let Err(e) = runner.run().await {
                    tracing::error!(stage = name, error = %e, "stage runner stopped");
                }
            })
        })
        .collect();
    let host = &t.plugins;
    match selection.plugins {
        PluginWork::None => {}
        PluginWork::All => runners.push(tokio::spawn(unmark_plugins::supervise(
            host.registry.clone(),
            host.sandbox.clone(),
            broker.clone(),
            blobs.clone(),
            config.clone(),
            PLUGIN_POLL,
            host.wake.clone(),
        ))),
        PluginWork::Named(names) => {
            for name in names {
                match PluginStage::new(&name, host.registry.clone(), host.sandbox.clone()) {
                    Ok(stage) => runners.push(unmark_plugins::spawn_runner(
                        stage,
                        broker.clone(),
                        blobs.clone(),
                        config.clone(),
                    )),
                    Err(e) => tracing::error!("plugin stage {name:?}: {e}"),
                }
            }
        }
    }
    Pipeline {
        client: JobClient::new(broker, blobs),
        runners,
    }
}

/// Everything in this process: the embedded defaults, or scale-out with local stages.
pub(crate) async fn start_all(
    config: &Config,
    stages: &str,
    place: Blobs,
) -> Result<(Pipeline, Transport)> {
    let t = transport(config, place).await?;
    let selection = select(stages, config)?;
    if selection.len() == 0 && t.nats.is_none() {
        bail!("--stages none needs --nats: without a broker nothing would run the stages");
    }
    let pipeline = start(&t, selection, &config.runner());
    Ok((pipeline, t))
}
