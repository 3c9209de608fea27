//! The `Broker` on NATS JetStream: stages run as separate processes on any host.
//!
//! - Work: one stream (`UNMARK_WORK`, work-queue retention, file storage) over
//!   `unmark.stage.>`, one durable pull consumer per stage, explicit acks (double acks, so an
//!   ack that matters is confirmed), naks with delay, terms, progress acks. Redelivery after a
//!   crash comes from the consumer's AckWait.
//! - Events: one stream (`UNMARK_EVENTS`, limits retention, `max_age`) over
//!   `unmark.events.>`; subscribers read it through ordered consumers from the start, so a
//!   late subscriber still sees a job's whole history.
//! - Job records: the gateway reads every event once through a durable consumer on the
//!   events stream (`consume_events`), so its database catches up after a restart.
//! - Dead letters: `UNMARK_DLQ` (limits retention) over `unmark.dlq.>`, where a runner puts a
//!   message it gave up on after retryable failures, with the last error in its headers.
//! - Deduplication: every publish carries `Nats-Msg-Id` (`<job_id>:<step>` for hops), inside
//!   the streams' duplicate window.
//!
//! Streams and consumers are created or updated idempotently when the broker connects and
//! when a consumer opens.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt;
use unmark_schemas::JobEvent;

use crate::broker::{Acker, Broker, BrokerError, Consumer, Delivery, EventStream, OutMessage};
use crate::subjects;

/// Name of the work stream.
pub const WORK_STREAM: &str = "UNMARK_WORK";
/// Name of the events stream.
pub const EVENTS_STREAM: &str = "UNMARK_EVENTS";
/// Name of the dead-letter stream.
pub const DLQ_STREAM: &str = "UNMARK_DLQ";

/// Settings of the JetStream broker (the `[nats]` section of the config file).
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// How long a delivered message may go without an ack or progress ack before it is
    /// handed to another worker.
    pub ack_wait: Duration,
    /// How long job events are kept.
    pub events_max_age: Duration,
    /// Window within which a repeated `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
}

impl JetStreamConfig {
    /// Defaults for a server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ack_wait: Duration::from_secs(30),
            events_max_age: Duration::from_secs(24 * 3600),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

fn transport(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Transport(e.to_string())
}

/// A broker on NATS JetStream.
#[derive(Clone)]
pub struct JetStreamBroker {
    js: jetstream::Context,
    config: JetStreamConfig,
}

impl JetStreamBroker {
    /// Connects and creates or updates the work, events and dead-letter streams.
    pub async fn connect(config: JetStreamConfig) -> Result<Self, BrokerError> {
        let client = async_nats::ConnectOptions::new()
            .name("unmark")
            .retry_on_initial_connect()
            .connect(config.url.as_str())
            .await
            .map_err(transport)?;
        let js = jetstream::new(client);
        let file_stream = |name: &str, subject: String, retention, max_age| stream::Config {
            name: name.into(),
            subjects: vec![subject],
            retention,
            storage: stream::StorageType::File,
            max_age,
            duplicate_window: config.duplicate_window,
            ..Default::default()
        };
        let forever = Duration::ZERO;
        let streams = [
            file_stream(
                WORK_STREAM,
                format!("{}>", subjects::v1::STAGE_PREFIX),
                stream::RetentionPolicy::WorkQueue,
                forever,
            ),
            file_stream(
                EVENTS_STREAM,
                subjects::v1::all_events(),
                stream::RetentionPolicy::Limits,
                config.events_max_age,
            ),
            file_stream(
                DLQ_STREAM,
                format!("{}>", subjects::v1::DLQ_PREFIX),
                stream::RetentionPolicy::Limits,
                forever,
            ),
        ];
        for stream in streams {
            js.create_or_update_stream(stream)
                .await
                .map_err(transport)?;
        }
        Ok(Self { js, config })
    }

    /// The underlying NATS connection, for request/reply services.
    pub fn nats(&self) -> async_nats::Client {
        self.js.client()
    }

    async fn publish_with_id(
        &self,
        subject: &str,
        id: Option<&str>,
        headers: &BTreeMap<String, String>,
        payload: bytes::Bytes,
    ) -> Result<(), BrokerError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(k.as_str(), v.as_str());
        }
        if let Some(id) = id {
            map.insert("Nats-Msg-Id", id);
        }
        // The second await is the server's ack: the message is stored (or was a duplicate).
        self.js
            .publish_with_headers(subject.to_owned(), map, payload)
            .await
            .map_err(transport)?
            .await
            .map_err(transport)?;
        Ok(())
    }
}

/// The durable consumer a stage's workers share on the work stream: `stage_<name>` (what an
/// autoscaler such as KEDA watches for lag).
pub fn stage_consumer(stage: &str) -> String {
    durable_name(&subjects::v1::stage(stage))
}

impl JetStreamBroker {
    /// Opens (creating or updating) the durable pull consumer `name` on `filter`: every
    /// message from the start, explicit acks, no delivery limit (the runner and the recorder
    /// decide when to give up).
    async fn durable(
        &self,
        stream: &str,
        name: &str,
        filter: &str,
    ) -> Result<Box<dyn Consumer>, BrokerError> {
        let stream = self.js.get_stream(stream).await.map_err(transport)?;
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject: filter.to_owned(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.config.ack_wait,
                max_deliver: -1,
                ..Default::default()
            })
            .await
            .map_err(transport)?;
        let messages = consumer.messages().await.map_err(transport)?;
        Ok(Box::new(JetStreamConsumer { messages }))
    }
}

/// The durable consumer name of a stage subject: `unmark.stage.plugin.x` -> `stage_plugin_x`.
fn durable_name(subject: &str) -> String {
    subject
        .trim_start_matches("unmark.")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[async_trait]
impl Broker for JetStreamBroker {
    async fn publish(&self, subject: &str, message: OutMessage) -> Result<(), BrokerError> {
        self.publish_with_id(
            subject,
            message.msg_id.as_deref(),
            &message.headers,
            message.payload,
        )
        .await
    }

    async fn consume(&self, subject: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        let stream_name = if subject.starts_with(subjects::v1::DLQ_PREFIX) {
            DLQ_STREAM
        } else {
            WORK_STREAM
        };
        self.durable(stream_name, &durable_name(subject), subject)
            .await
    }

    async fn publish_event(&self, event: &JobEvent, msg_id: &str) -> Result<(), BrokerError> {
        let payload = serde_json::to_vec(event).map_err(|e| BrokerError::Codec(e.to_string()))?;
        let subject = subjects::v1::events(event.job_id.as_str());
        self.publish_with_id(&subject, Some(msg_id), &BTreeMap::new(), payload.into())
            .await
    }

    async fn last_event(&self, job_id: &str) -> Result<Option<JobEvent>, BrokerError> {
        let stream = self.js.get_stream(EVENTS_STREAM).await.map_err(transport)?;
        match stream
            .get_last_raw_message_by_subject(&subjects::v1::events(job_id))
            .await
        {
            Ok(m) => serde_json::from_slice(&m.payload)
                .map(Some)
                .map_err(|e| BrokerError::Codec(e.to_string())),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(transport(e)),
        }
    }

    async fn backlog(&self, subject: &str) -> Result<u64, BrokerError> {
        let stream = self.js.get_stream(WORK_STREAM).await.map_err(transport)?;
        let mut consumer: consumer::PullConsumer =
            match stream.get_consumer(&durable_name(subject)).await {
                Ok(c) => c,
                // No worker has opened the stage yet: whatever waits is in the stream.
                Err(_) => {
                    let mut subjects = stream
                        .info_with_subjects(subject.to_owned())
                        .await
                        .map_err(transport)?;
                    let mut waiting = 0;
                    while let Some(entry) = subjects.next().await {
                        waiting += entry.map_err(transport)?.1 as u64;
                    }
                    return Ok(waiting);
                }
            };
        let info = consumer.info().await.map_err(transport)?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    async fn consume_events(&self, durable: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        self.durable(EVENTS_STREAM, durable, &subjects::v1::all_events())
            .await
    }

    async fn subscribe_events(&self, filter: &str) -> Result<EventStream, BrokerError> {
        let stream = self.js.get_stream(EVENTS_STREAM).await.map_err(transport)?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(transport)?;
        let messages = consumer.messages().await.map_err(transport)?;
        let events = messages.filter_map(|m| async move {
            let m = m.ok()?;
            match serde_json::from_slice::<JobEvent>(&m.payload) {
                Ok(event) => Some(event),
                Err(e) => {
                    tracing::warn!(subject = %m.subject, error = %e, "skipping an unreadable event");
                    None
                }
            }
        });
        Ok(Box::pin(events))
    }
}

struct JetStreamConsumer {
    messages: consumer::pull::Stream,
}

#[async_trait]
impl Consumer for JetStreamConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        loop {
            let message = match self.messages.next().await {
                None => return Err(BrokerError::Closed),
                Some(Err(e)) => {
                    // Heartbeat gaps and reconnects surface here; the stream recovers.
                    tracing::warn!(error = %e, "consumer stream error");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let attempt = message.info().map_or(1, |i| i.delivered.max(1) as u32);
            let (message, acker) = message.split();
            let headers = message
                .headers
                .as_ref()
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| Some((k.to_string(), v.first()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Delivery::new(
                message.payload,
                headers,
                attempt,
                Box::new(JsAcker(acker)),
            ));
        }
    }
}

struct JsAcker(jetstream::message::Acker);

#[async_trait]
impl Acker for JsAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.0.double_ack().await.map_err(transport)
    }

    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BrokerError> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(transport)
    }

    async fn term(self: Box<Self>) -> Result<(), BrokerError> {
        self.0
            .double_ack_with(AckKind::Term)
            .await
            .map_err(transport)
    }

    async fn in_progress(&self) -> Result<(), BrokerError> {
        self.0.ack_with(AckKind::Progress).await.map_err(transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_names_are_nats_safe() {
        assert_eq!(durable_name("unmark.stage.inpaint"), "stage_inpaint");
        assert_eq!(
            durable_name("unmark.stage.plugin.blur"),
            "stage_plugin_blur"
        );
    }
}
