use std::sync::Arc;
use std::time::Duration;

use unmark_broker::{Broker, BrokerError};
use unmark_schemas::JobEvent;

use crate::JobStore;

/// The durable consumer on the events stream that feeds job records. Gateways that share a
/// database share it, so each event is applied once (and applying it twice is harmless).
pub const RECORDS_CONSUMER: &str = "gateway_records";

/// Applies every job event to `store` until the broker closes.
///
/// An event is acked only once it is committed. When the database fails, the event is tried
/// again in place (the in-process broker cannot redeliver), and after a minute it is nak'ed
/// so that JetStream redelivers it later: an outage delays records but loses none there.
pub async fn record(
    broker: Arc<dyn Broker>,
    store: JobStore,
    result_ttl: Duration,
    on_event: impl Fn(&JobEvent) + Send,
) -> Result<(), BrokerError> {
    let mut consumer = broker.consume_events(RECORDS_CONSUMER).await?;
    loop {
        let delivery = consumer.next().await?;
        let event: JobEvent = match serde_json::from_slice(&delivery.payload) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable job event");
                delivery.term().await?;
                continue;
            }
        };
        let mut tries = 0;
        loop {
            match store.apply(&event, result_ttl).await {
                Ok(()) => {
                    on_event(&event);
                    delivery.ack().await?;
                    break;
                }
                Err(e) if tries < RETRIES => {
                    tries += 1;
                    tracing::warn!(job_id = %event.job_id, error = %e, tries, "cannot record a job event; retrying");
                    let _ = delivery.in_progress().await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(job_id = %event.job_id, error = %e, "cannot record a job event; giving it back");
                    delivery.nak(Duration::from_secs(5)).await?;
                    break;
                }
            }
        }
    }
}

/// Tries in place, one second apart, before an event is given back to the broker.
const RETRIES: u32 = 60;
