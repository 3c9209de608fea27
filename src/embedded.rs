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

/// The broker and blob store the configuration names, and the NATS connection in scale-out.
pub(crate) struct Transport {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) blobs: BlobStore,
    pub(crate) nats: Option<async_nats::Client>,
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
    let blobs = match place {
        Blobs::Memory => BlobStore::in_memory(),
        Blobs::Configured => {
            let blobs = config.blob_config();
            BlobStore::open(&blobs)
                .with_context(|| format!("cannot open the blob store {}", blobs.url))?
        }
    };
    let Some(url) = config.nats.url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(Transport {
            broker: Arc::new(InProcessBroker::new()),
            blobs,
            nats: None,
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
    })
}
/// The built-in stages named by `list`: `all`, `none`, or names separated by commas.
pub(crate) fn select(list: &str) -> Result<Vec<Arc<dyn Stage>>> {
    let all = unmark_stages::builtin();
    match list.trim() {
        "all" => Ok(all),
        "none" | "" => Ok(Vec::new()),
        names => names
            .split(',')
            .map(|name| {
                let name = name.trim();
                all.iter()
                    .find(|s| s.name() == name)
                    .cloned()
                    .with_context(|| {
                        let known: Vec<_> = all.iter().map(|s| s.name()).collect();
                        format!(
                            "unknown stage {name:?}; expected one of {}",
                            known.join(", ")
                        )
                    })
            })
            .collect(),
    }
}

/// Starts a runner for each of `stages`.
pub(crate) fn start(
    broker: Arc<dyn Broker>,
    blobs: BlobStore,
    stages: Vec<Arc<dyn Stage>>,
    config: &RunnerConfig,
) -> Pipeline {
    let runners = stages
        .into_iter()
        .map(|stage| {
            let name = stage.name();
            let runner = Runner::new(stage, broker.clone(), blobs.clone(), config.clone());
            tokio::spawn(async move {
                if let Err(e) = runner.run().await {
                    tracing::error!(stage = name, error = %e, "stage runner stopped");
                }
            })
        })
        .collect();
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
    let stages = select(stages)?;
    if stages.is_empty() && t.nats.is_none() {
        bail!("--stages none needs --nats: without a broker nothing would run the stages");
    }
    let pipeline = start(t.broker.clone(), t.blobs.clone(), stages, &config.runner());
    Ok((pipeline, t))
}
