use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use unmark_schemas::{
    BlobRef, EventKind, FailureReason, JobEvent, JobId, JobSpec, ParamError, StageMessage,
    StageTiming, Step,
};

use crate::blob::keys;
use crate::{BlobError, BlobStore, Broker, BrokerError, EventStream, OutMessage, now_ms, subjects};

/// A failure to submit a job or to follow it (not a failure of the job itself).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job spec is invalid.
    #[error(transparent)]
    Invalid(#[from] ParamError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The job did not end within the wait.
    #[error("job {0} did not finish within {1:?}")]
    TimedOut(JobId, Duration),
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The result is in the blob store.
    Succeeded {
        /// The encoded result.
        result: BlobRef,
        /// Its media type.
        content_type: String,
        /// Per-step timings.
        timings: Vec<StageTiming>,
    },
    /// The job failed.
    Failed {
        /// Machine-readable reason.
        reason: FailureReason,
        /// Human-readable detail.
        message: String,
        /// The stage that failed.
        stage: Option<String>,
    },
}

/// Submits jobs and follows them: the one way in for the gateway and the CLI.
#[derive(Clone)]
pub struct JobClient {
    broker: Arc<dyn Broker>,
    blobs: BlobStore,
}

/// A submitted job whose events are being followed.
pub struct JobHandle {
    id: JobId,
    events: EventStream,
}

impl JobClient {
    /// A client over a broker and the blob store the stages use.
    pub fn new(broker: Arc<dyn Broker>, blobs: BlobStore) -> Self {
        Self { broker, blobs }
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Uploads the inputs, publishes `accepted` and the first step, and follows the job:
    /// [`prepare`], [`follow`], then [`start`].
    ///
    /// [`prepare`]: Self::prepare
    /// [`follow`]: Self::follow
    /// [`start`]: Self::start
    pub async fn submit(
        &self,
        id: JobId,
        pipeline: &str,
        steps: Vec<Step>,
        inputs: Vec<(&str, Bytes)>,
    ) -> Result<JobHandle, JobError> {
        let spec = self.prepare(id, pipeline, steps, inputs).await?;
        let handle = self.follow(spec.id.clone()).await?;
        self.start(spec).await?;
        Ok(handle)
    }

    /// Validates a job and uploads its inputs; nothing runs yet. The spec can be recorded
    /// before [`start`](Self::start), and started again after a crash.
    pub async fn prepare(
        &self,
        id: JobId,
        pipeline: &str,
        steps: Vec<Step>,
        inputs: Vec<(&str, Bytes)>,
    ) -> Result<JobSpec, JobError> {
        let mut spec = JobSpec {
            id: id.clone(),
            pipeline: pipeline.to_owned(),
            steps,
            inputs: Default::default(),
        };
        spec.validate()?;
        for (name, bytes) in inputs {
            let blob = self
                .blobs
                .put(&keys::input(id.as_str(), name), bytes)
                .await?;
            spec.inputs.insert(name.to_owned(), blob);
        }
        Ok(spec)
    }

    /// Publishes `accepted` and the first step of a prepared job. Starting a job again is
    /// safe: steps write deterministic keys and events are deduplicated downstream.
    pub async fn start(&self, spec: JobSpec) -> Result<(), JobError> {
        let id = spec.id.clone();
        let accepted = JobEvent {
            job_id: id.clone(),
            at_ms: now_ms(),
            kind: EventKind::Accepted {
                pipeline: spec.pipeline.clone(),
            },
        };
        let first_stage = spec
            .steps
            .first()
            .map(|s| s.stage.clone())
            .ok_or_else(|| ParamError::new("steps", "a job needs at least one step"))?;
        let message = StageMessage::first(spec);
        let payload =
            serde_json::to_vec(&message).map_err(|e| BrokerError::Codec(e.to_string()))?;
        self.broker
            .publish_event(&accepted, &format!("{id}:accepted"))
            .await?;
        self.broker
            .publish(
                &subjects::v1::stage(&first_stage),
                OutMessage::new(payload.into())
                    .with_id(message.hop_id())
                    .with_header(crate::trace::HEADER, crate::trace::new_traceparent()),
            )
            .await?;
        Ok(())
    }

    /// Follows the events of a job: the history the broker keeps (both brokers keep a job's
    /// events for a while), then what comes. So it may be called before or after
    /// [`start`](Self::start).
    pub async fn follow(&self, id: JobId) -> Result<JobHandle, JobError> {
        let events = self
            .broker
            .subscribe_events(&subjects::v1::events(id.as_str()))
            .await?;
        Ok(JobHandle { id, events })
    }

    /// Messages of `stage` not yet settled.
    pub async fn backlog(&self, stage: &str) -> Result<u64, JobError> {
        Ok(self.broker.backlog(&subjects::v1::stage(stage)).await?)
    }

    /// The last event of a job that the broker still keeps, if any.
    pub async fn last_event(&self, id: &JobId) -> Result<Option<JobEvent>, JobError> {
        Ok(self.broker.last_event(id.as_str()).await?)
    }

    /// Reads a result blob.
    pub async fn fetch(&self, blob: &BlobRef) -> Result<Bytes, JobError> {
        Ok(self.blobs.get(blob).await?)
    }

    /// Deletes everything the job left in the blob store.
    pub async fn discard(&self, id: &JobId) -> Result<(), JobError> {
        self.blobs
            .delete_prefix(&keys::job_prefix(id.as_str()))
            .await?;
        Ok(())
    }
}

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// The next event, or `None` once the broker closes.
    pub async fn next_event(&mut self) -> Option<JobEvent> {
        self.events.next().await
    }

    /// Waits for the job's terminal event.
    pub async fn wait(&mut self, timeout: Duration) -> Result<JobOutcome, JobError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .map_err(|_| JobError::TimedOut(self.id.clone(), timeout))?;
            let Some(event) = next else {
                return Err(BrokerError::Closed.into());
            };
            match event.kind {
                EventKind::Succeeded {
                    result,
                    content_type,
                    timings,
                } => {
                    return Ok(JobOutcome::Succeeded {
                        result,
                        content_type,
                        timings,
                    });
                }
                EventKind::Failed {
                    reason,
                    message,
                    stage,
                } => {
                    return Ok(JobOutcome::Failed {
                        reason,
                        message,
                        stage,
                    });
                }
                EventKind::Accepted { .. } | EventKind::StageDone { .. } => {}
            }
        }
    }
}
