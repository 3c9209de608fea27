use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::Instrument;
use unmark_broker::{BlobStore, Broker, Delivery, OutMessage, keys, now_ms, subjects, trace};
use unmark_schemas::{BlobRef, EventKind, FailureReason, JobEvent, StageMessage, StageTiming};

use crate::telemetry::{self, StageEvent};
use crate::{Artifacts, Produced, Stage, StageError};

/// How a runner consumes and retries.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Messages processed at once by this runner.
    pub concurrency: usize,
    /// Deliveries of one message before a retryable failure fails the job.
    pub max_deliver: u32,
    /// Delay before redelivery after the n-th failed attempt (the last one repeats).
    pub backoff: Vec<Duration>,
    /// How often a message being worked on is reported in progress, so that the broker
    /// does not hand it to another worker; keep it well under the broker's ack wait.
    pub progress_every: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_deliver: 5,
            backoff: vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(15),
            ],
            progress_every: Duration::from_secs(10),
        }
    }
}

/// Runs one [`Stage`] over its subject: the only place that knows about acks, retries,
/// storage and events.
pub struct Runner {
    stage: Arc<dyn Stage>,
    broker: Arc<dyn Broker>,
    blobs: BlobStore,
    config: RunnerConfig,
}

/// What to do with a delivery once handled.
enum Settle {
    Ack,
    Nak(Duration),
    Term,
    /// Give up after retryable failures: copy to the dead-letter subject, then terminate.
    DeadLetter(String),
}

impl Runner {
    /// A runner for `stage`.
    pub fn new(
        stage: Arc<dyn Stage>,
        broker: Arc<dyn Broker>,
        blobs: BlobStore,
        config: RunnerConfig,
    ) -> Self {
        Self {
            stage,
            broker,
            blobs,
            config,
        }
    }

    /// Consumes until the broker closes. Each message runs in its own task, at most
    /// `concurrency` at once.
    pub async fn run(self) -> Result<(), unmark_broker::BrokerError> {
        let me = Arc::new(self);
        let subject = subjects::v1::stage(me.stage.name());
        let mut consumer = me.broker.consume(&subject).await?;
        let permits = Arc::new(Semaphore::new(me.config.concurrency.max(1)));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return Ok(());
            };
            let delivery = consumer.next().await?;
            let me = me.clone();
            tokio::spawn(async move {
                me.handle(delivery).await;
                drop(permit);
            });
        }
    }

    async fn handle(&self, delivery: Delivery) {
        let stage = self.stage.name();
        telemetry::emit(stage, StageEvent::Received);
        let message: StageMessage = match serde_json::from_slice(&delivery.payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(stage, error = %e, "unreadable stage message");
                telemetry::emit(stage, StageEvent::Dropped { why: "unreadable" });
                let _ = delivery.term().await;
                return;
            }
        };
        let traceparent = delivery.headers.get(trace::HEADER).cloned();
        let trace_id = traceparent
            .as_deref()
            .and_then(trace::trace_id)
            .unwrap_or("-");
        let span = tracing::info_span!(
            "stage",
            stage,
            job_id = %message.job.id,
            step = message.step,
            trace_id
        );
        let progress = async {
            loop {
                tokio::time::sleep(self.config.progress_every).await;
                if let Err(e) = delivery.in_progress().await {
                    tracing::warn!(stage, error = %e, "cannot report progress");
                }
            }
        };
        let settle = tokio::select! {
            settle = self.process(&message, delivery.attempt, traceparent.as_deref()).instrument(span) => settle,
            never = progress => never,
        };
        let settle = match settle {
            Settle::DeadLetter(error) => {
                self.dead_letter(&delivery, &error).await;
                Settle::Term
            }
            other => other,
        };
        let settled = match settle {
            Settle::Ack => delivery.ack().await,
            Settle::Nak(delay) => delivery.nak(delay).await,
            Settle::Term | Settle::DeadLetter(_) => delivery.term().await,
        };
        if let Err(e) = settled {
            tracing::warn!(stage, error = %e, "could not settle a delivery; it will be redelivered");
        }
    }

    async fn process(&self, message: &StageMessage, attempt: u32, trace: Option<&str>) -> Settle {
        if attempt > 1 && !self.artifacts_present(message).await && self.job_ended(message).await {
            // A redelivery whose inputs are gone because the job has ended since (blobs are
            // cleaned up only then): nothing to do, and no second terminal event. Inputs that
            // are gone while the job still runs fail below like any missing artifact.
            tracing::info!(
                stage = self.stage.name(),
                attempt,
                "job already finished; dropping a redelivery"
            );
            telemetry::emit(
                self.stage.name(),
                StageEvent::Dropped {
                    why: "already finished",
                },
            );
            return Settle::Term;
        }
        let result = self.execute(message).await;
        match result {
            Ok(next) => match self.hand_on(message, next, trace).await {
                Ok(()) => Settle::Ack,
                Err(e) => self.failed(message, attempt, e).await,
            },
            Err(e) => self.failed(message, attempt, e).await,
        }
    }

    /// Copies a message the runner gave up on to `unmark.dlq.<stage>`, with the last error.
    async fn dead_letter(&self, delivery: &Delivery, error: &str) {
        let stage = self.stage.name();
        let mut out = OutMessage::new(delivery.payload.clone());
        out.headers = delivery.headers.clone();
        out.headers.insert("Unmark-Error".into(), error.to_owned());
        out.headers.insert("Unmark-Stage".into(), stage.to_owned());
        out.headers
            .insert("Unmark-Attempts".into(), delivery.attempt.to_string());
        if let Err(e) = self.broker.publish(&subjects::v1::dlq(stage), out).await {
            tracing::error!(stage, error = %e, "cannot write a dead letter");
        }
    }

    async fn job_ended(&self, message: &StageMessage) -> bool {
        match self.broker.last_event(message.job.id.as_str()).await {
            Ok(Some(event)) => event.kind.is_terminal(),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the job's last event");
                false
            }
        }
    }

    async fn artifacts_present(&self, message: &StageMessage) -> bool {
        for name in self.stage.reads() {
            if let Some(blob) = message.blobs.get(*name)
                && matches!(self.blobs.exists(&blob.key).await, Ok(false))
            {
                return false;
            }
        }
        true
    }

    /// Loads the artifacts, runs the stage, stores its outputs: the next message.
    async fn execute(&self, message: &StageMessage) -> Result<StageMessage, StageError> {
        let stage = self.stage.name();
        let step = message
            .job
            .steps
            .get(message.step as usize)
            .ok_or_else(|| StageError::internal(format!("job has no step {}", message.step)))?;
        if step.stage != stage {
            return Err(StageError::internal(format!(
                "step {} is for stage {:?}, not {stage:?}",
                message.step, step.stage
            )));
        }
        let mut inputs = Artifacts::default();
        for name in self.stage.reads() {
            if let Some(blob) = message.blobs.get(*name) {
                let bytes = self.blobs.get(blob).await.map_err(|e| {
                    StageError::internal(format!("cannot read artifact {name:?}: {e}"))
                })?;
                inputs.0.insert((*name).to_owned(), bytes);
            }
        }
        let params = step.params.clone();
        let runnable = self.stage.clone();
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || runnable.run(&inputs, &params))
            .await
            .map_err(|e| StageError::internal(format!("stage task failed: {e}")))?;
        let elapsed = started.elapsed();
        telemetry::emit(stage, StageEvent::Duration(elapsed));
        let output = output?;

        let mut next = message.clone();
        let mut stored: BTreeMap<&str, BlobRef> = BTreeMap::new();
        for (name, produced) in output.artifacts {
            let blob = match produced {
                Produced::Blob(bytes) => self.store(message, name, bytes).await?,
                // An alias may name an output of this very stage, or an earlier artifact.
                Produced::Alias(existing) => stored
                    .get(existing)
                    .or_else(|| next.blobs.get(existing))
                    .cloned()
                    .ok_or_else(|| StageError::internal(format!("no artifact {existing:?}")))?,
            };
            stored.insert(name, blob);
        }
        for (name, blob) in stored {
            next.blobs.insert(name.to_owned(), blob);
        }
        if output.content_type.is_some() {
            next.content_type = output.content_type;
        }
        next.timings.push(StageTiming {
            stage: stage.to_owned(),
            ms: elapsed.as_secs_f64() * 1000.0,
        });
        next.step += 1;
        Ok(next)
    }

    async fn store(
        &self,
        message: &StageMessage,
        name: &str,
        bytes: Bytes,
    ) -> Result<BlobRef, StageError> {
        let key = keys::artifact(
            message.job.id.as_str(),
            message.step,
            self.stage.name(),
            name,
        );
        self.blobs
            .put(&key, bytes)
            .await
            .map_err(|e| StageError::internal(format!("cannot store artifact {name:?}: {e}")))
    }

    /// Publishes the next step, or the job's success after the last one.
    async fn hand_on(
        &self,
        done: &StageMessage,
        next: StageMessage,
        trace: Option<&str>,
    ) -> Result<(), StageError> {
        let broker_err = |e: unmark_broker::BrokerError| StageError::internal(e.to_string());
        let job = &next.job;
        let ms = next.timings.last().map_or(0.0, |t| t.ms);
        let engine = job
            .steps
            .get(done.step as usize)
            .and_then(|s| s.params.get("engine"))
            .and_then(|e| e.as_str())
            .map(str::to_owned);
        let stage_done = EventKind::StageDone {
            step: done.step,
            stage: self.stage.name().to_owned(),
            ms,
            engine,
        };
        self.event(done, stage_done, &done.hop_id()).await?;
        if let Some(step) = job.steps.get(next.step as usize) {
            let payload = serde_json::to_vec(&next)
                .map_err(|e| StageError::internal(format!("cannot encode message: {e}")))?;
            let traceparent = trace.map_or_else(trace::new_traceparent, trace::child);
            let out = OutMessage::new(payload.into())
                .with_id(next.hop_id())
                .with_header(trace::HEADER, traceparent);
            self.broker
                .publish(&subjects::v1::stage(&step.stage), out)
                .await
                .map_err(broker_err)?;
            telemetry::emit(self.stage.name(), StageEvent::Sent);
            return Ok(());
        }
        let result = next
            .blobs
            .get("result")
            .cloned()
            .ok_or_else(|| StageError::internal("the last step made no result"))?;
        let content_type = next
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let keep = result.key.clone();
        // Counted before the event goes out, so whoever sees the event sees the count.
        telemetry::emit(self.stage.name(), StageEvent::Sent);
        let succeeded = EventKind::Succeeded {
            result,
            content_type,
            timings: next.timings.clone(),
        };
        self.event(done, succeeded, &format!("{}:succeeded", job.id))
            .await?;
        // Only once the success is recorded: a crash before this point redoes the step.
        self.discard_intermediates(&next, &keep).await;
        Ok(())
    }

    async fn event(
        &self,
        message: &StageMessage,
        kind: EventKind,
        msg_id: &str,
    ) -> Result<(), StageError> {
        let event = JobEvent {
            job_id: message.job.id.clone(),
            at_ms: now_ms(),
            kind,
        };
        self.broker
            .publish_event(&event, msg_id)
            .await
            .map_err(|e| StageError::internal(e.to_string()))
    }

    /// Decides between retrying and failing the job.
    async fn failed(&self, message: &StageMessage, attempt: u32, error: StageError) -> Settle {
        let stage = self.stage.name();
        telemetry::emit(
            stage,
            StageEvent::Error {
                reason: error.reason.as_str(),
            },
        );
        if error.is_retryable() && attempt < self.config.max_deliver {
            let index = (attempt as usize).saturating_sub(1);
            let delay = self
                .config
                .backoff
                .get(index)
                .or(self.config.backoff.last())
                .copied()
                .unwrap_or(Duration::from_secs(1));
            tracing::warn!(stage, attempt, error = %error, "retrying");
            return Settle::Nak(delay);
        }
        if error.reason == FailureReason::Internal {
            tracing::error!(stage, attempt, error = %error, "job failed");
        } else {
            tracing::info!(stage, reason = error.reason.as_str(), error = %error, "job rejected");
        }
        telemetry::emit(
            stage,
            StageEvent::Dropped {
                why: error.reason.as_str(),
            },
        );
        let message_text = if error.reason == FailureReason::Internal {
            // Internal causes stay in the log; clients get a generic line.
            "internal error while processing the image".to_owned()
        } else {
            error.message.clone()
        };
        let failed = EventKind::Failed {
            reason: error.reason,
            message: message_text,
            stage: Some(stage.to_owned()),
        };
        let job = &message.job.id;
        // A dead letter keeps the job's blobs, so that it can be replayed once the cause is
        // fixed; a rejected input has nothing worth keeping.
        if !error.is_retryable() {
            let _ = self
                .blobs
                .delete_prefix(&keys::job_prefix(job.as_str()))
                .await;
        }
        match self.event(message, failed, &format!("{job}:failed")).await {
            Ok(()) if error.is_retryable() => Settle::DeadLetter(error.message),
            Ok(()) => Settle::Term,
            // The failure could not be reported: let the message come back and try again.
            Err(_) => Settle::Nak(Duration::from_secs(1)),
        }
    }

    async fn discard_intermediates(&self, message: &StageMessage, keep: &str) {
        for blob in message.blobs.values() {
            if blob.key != keep
                && let Err(e) = self.blobs.delete(&blob.key).await
            {
                tracing::warn!(key = blob.key, error = %e, "cannot delete an intermediate");
            }
        }
    }
}
