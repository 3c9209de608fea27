//! Moving messages and blobs between unmark's stages.
//!
//! - [`Broker`]: publish work to a stage subject, consume it with ack / nak / term, publish and
//!   subscribe to job events. [`InProcessBroker`] implements it inside one process (embedded
//!   mode); the JetStream implementation slots in behind the same trait.
//! - [`subjects`]: every subject name, built by pure functions in one versioned module.
//! - [`BlobStore`]: blobs (inputs, intermediates, results) on top of `object_store`.
//! - [`JobClient`]: submit a job and wait for its outcome; used by the gateway and the CLI.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use unmark_broker::{Broker, InProcessBroker, OutMessage, subjects};
//!
//! let broker = InProcessBroker::new();
//! let mut consumer = broker.consume(&subjects::v1::stage("decode")).await?;
//! broker.publish(&subjects::v1::stage("decode"), OutMessage::new("hello".into())).await?;
//! let delivery = consumer.next().await?;
//! assert_eq!(&delivery.payload[..], b"hello");
//! delivery.ack().await?;
//! # Ok::<(), unmark_broker::BrokerError>(())
//! # }).unwrap();
//! ```

mod blob;
mod broker;
mod client;
mod jetstream;
mod memory;
pub mod subjects;
pub mod trace;

pub use blob::{BlobConfig, BlobError, BlobStore, JobBlobs, keys};
pub use broker::{Acker, Broker, BrokerError, Consumer, Delivery, EventStream, OutMessage};
pub use client::{JobClient, JobError, JobHandle, JobOutcome};
pub use jetstream::{
    DLQ_STREAM, EVENTS_STREAM, JetStreamBroker, JetStreamConfig, WORK_STREAM, stage_consumer,
};
pub use memory::InProcessBroker;

/// Milliseconds since the Unix epoch, as events carry them.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
