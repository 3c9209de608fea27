//! Wiring a broker, a blob store and stage runners, in embedded or scale-out mode.
//!
//! - Embedded (no `nats.url`): the in-process broker and an in-memory blob store; nothing
//!   touches the disk.
//! - Scale-out (`nats.url` set): NATS JetStream, and blobs in `<data_dir>/blobs`, a folder all
//!   the processes on this host share.

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

/// Connects what the configuration names.
pub(crate) async fn transport(config: &Config) -> Result<Transport> {
    let Some(url) = config.nats.url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(Transport {
            broker: Arc::new(InProcessBroker::new()),
            blobs: BlobStore::in_memory(),
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
    let dir = config.server.data_dir.join("blobs");
    let blobs = BlobStore::local(&dir)
        .with_context(|| format!("cannot open blob folder {}", dir.display()))?;
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
) -> Result<(Pipeline, Option<async_nats::Client>)> {
    let t = transport(config).await?;
    let stages = select(stages)?;
    if stages.is_empty() && t.nats.is_none() {
        bail!("--stages none needs --nats: without a broker nothing would run the stages");
    }
    Ok((start(t.broker, t.blobs, stages, &config.runner()), t.nats))
}
