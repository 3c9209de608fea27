use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use unmark_schemas::JobEvent;

/// A failure to move a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker is gone (shut down, or the connection is lost for good).
    #[error("broker closed")]
    Closed,
    /// A message could not be encoded or decoded.
    #[error("bad message: {0}")]
    Codec(String),
    /// Any other transport failure.
    #[error("broker: {0}")]
    Transport(String),
}

/// A message to publish on a stage subject.
#[derive(Debug, Clone, Default)]
pub struct OutMessage {
    /// Body.
    pub payload: Bytes,
    /// Deduplication id: a second message with the same id within the broker's window is
    /// dropped (JetStream's `Nats-Msg-Id`).
    pub msg_id: Option<String>,
    /// Headers, such as trace context.
    pub headers: BTreeMap<String, String>,
}

impl OutMessage {
    /// A message with a body and nothing else.
    pub fn new(payload: Bytes) -> Self {
        Self {
            payload,
            ..Self::default()
        }
    }

    /// Sets a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_owned(), value.into());
        self
    }

    /// Sets the deduplication id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.msg_id = Some(id.into());
        self
    }
}

/// How a delivery is settled. Implemented by each broker.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done: never deliver again.
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Failed for now: deliver again after `delay`.
    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BrokerError>;
    /// Failed for good: never deliver again.
    async fn term(self: Box<Self>) -> Result<(), BrokerError>;
    /// Still working: push the redelivery deadline back.
    async fn in_progress(&self) -> Result<(), BrokerError>;
}

/// One delivered message, to be settled exactly once.
pub struct Delivery {
    /// Body.
    pub payload: Bytes,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// 1 on the first delivery, 2 on the first redelivery, ...
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("len", &self.payload.len())
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Delivery {
    /// Assembles a delivery; for broker implementations.
    pub fn new(
        payload: Bytes,
        headers: BTreeMap<String, String>,
        attempt: u32,
        acker: Box<dyn Acker>,
    ) -> Self {
        Self {
            payload,
            headers,
            attempt,
            acker,
        }
    }

    /// Done: never deliver again.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.acker.ack().await
    }

    /// Failed for now: deliver again after `delay`.
    pub async fn nak(self, delay: Duration) -> Result<(), BrokerError> {
        self.acker.nak(delay).await
    }

    /// Failed for good: never deliver again.
    pub async fn term(self) -> Result<(), BrokerError> {
        self.acker.term().await
    }

    /// Still working: push the redelivery deadline back.
    pub async fn in_progress(&self) -> Result<(), BrokerError> {
        self.acker.in_progress().await
    }
}

/// A pull consumer of one stage subject; each message goes to one consumer of the subject.
#[async_trait]
pub trait Consumer: Send {
    /// Waits for the next message.
    async fn next(&mut self) -> Result<Delivery, BrokerError>;
}

/// A stream of job events.
pub type EventStream = Pin<Box<dyn Stream<Item = JobEvent> + Send>>;

/// Moves stage messages and job events. Stages and the gateway see only this trait.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes work on a stage subject (work-queue semantics: one consumer gets it).
    async fn publish(&self, subject: &str, message: OutMessage) -> Result<(), BrokerError>;

    /// Opens a consumer on a stage subject; consumers of one subject share its messages.
    async fn consume(&self, subject: &str) -> Result<Box<dyn Consumer>, BrokerError>;

    /// Publishes a job event on `unmark.events.<job_id>`; an event with the same `msg_id` as
    /// one already published is dropped.
    async fn publish_event(&self, event: &JobEvent, msg_id: &str) -> Result<(), BrokerError>;

    /// Subscribes to the events whose subject matches `filter` (NATS wildcards): the
    /// earlier events the broker still keeps, then every new one.
    async fn subscribe_events(&self, filter: &str) -> Result<EventStream, BrokerError>;

    /// Consumes every job event through the durable consumer `durable`, each delivery a
    /// JSON [`JobEvent`] to be acked once handled. Unacked events come back after a crash,
    /// and processes that share `durable` share the events (the gateway's job records).
    async fn consume_events(&self, durable: &str) -> Result<Box<dyn Consumer>, BrokerError>;

    /// Messages of a stage subject not yet settled: waiting, or being worked on (the backlog
    /// an autoscaler or admission control looks at).
    async fn backlog(&self, subject: &str) -> Result<u64, BrokerError>;

    /// The last event of a job that the broker still keeps, if any: a terminal one means the
    /// job has ended.
    async fn last_event(&self, job_id: &str) -> Result<Option<JobEvent>, BrokerError>;
}
