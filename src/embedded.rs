//! Embedded mode: every stage in this process over the in-process broker, blobs in memory.

use std::sync::Arc;

use tokio::task::JoinHandle;
use unmark_broker::{BlobStore, InProcessBroker, JobClient};
use unmark_stages::{Runner, RunnerConfig};

/// The running pipeline; the runners stop when this is dropped.
pub(crate) struct Embedded {
    pub(crate) client: JobClient,
    runners: Vec<JoinHandle<()>>,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        for runner in &self.runners {
            runner.abort();
        }
    }
}

/// Starts one runner per built-in stage. Intermediates stay in memory: nothing touches disk.
pub(crate) fn start(config: &RunnerConfig) -> Embedded {
    let broker = Arc::new(InProcessBroker::new());
    let blobs = BlobStore::in_memory();
    let runners = unmark_stages::builtin()
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
    Embedded {
        client: JobClient::new(broker, blobs),
        runners,
    }
}
