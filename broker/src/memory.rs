use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use unmark_schemas::JobEvent;

use crate::broker::{Acker, Broker, BrokerError, Consumer, Delivery, EventStream, OutMessage};
use crate::subjects;

/// How long a message id is remembered for deduplication (JetStream's default window).
const DEDUPE_WINDOW: Duration = Duration::from_secs(120);

/// A broker inside one process: work queues per subject, event fan-out to subscribers.
///
/// Semantics follow the JetStream work-queue consumer: each message goes to one consumer,
/// `nak` redelivers after a delay with the attempt count raised, `term` and `ack` drop it,
/// and a repeated message id within two minutes is dropped at publish.
#[derive(Clone, Default)]
pub struct InProcessBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    events: Mutex<Events>,
    seen: Mutex<Dedupe>,
}

/// Subscribers and each job's history, under one lock so that a new subscriber sees every
/// event exactly once: replayed, or sent live.
#[derive(Default)]
struct Events {
    subscribers: Vec<(String, mpsc::UnboundedSender<JobEvent>)>,
    history: HashMap<String, (Instant, Vec<JobEvent>)>,
}

/// How long a job's events are kept after its last one, and how many jobs before old ones
/// are pruned.
const HISTORY_TTL: Duration = Duration::from_secs(3600);
const HISTORY_PRUNE_AT: usize = 10_000;

struct Queue {
    tx: mpsc::UnboundedSender<Pending>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    /// Messages published and not yet settled.
    unsettled: Arc<std::sync::atomic::AtomicU64>,
}

struct Pending {
    payload: Bytes,
    headers: BTreeMap<String, String>,
    attempt: u32,
}

/// Message ids seen recently, oldest first.
#[derive(Default)]
struct Dedupe {
    ids: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl Dedupe {
    /// Records `id`; false if it was already seen within the window.
    fn first_time(&mut self, id: &str) -> bool {
        let now = Instant::now();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < DEDUPE_WINDOW {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        if self.ids.contains_key(id) {
            return false;
        }
        self.ids.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InProcessBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self, subject: &str) -> Arc<Queue> {
        let mut queues = lock(&self.inner.queues);
        queues
            .entry(subject.to_owned())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                Arc::new(Queue {
                    tx,
                    rx: tokio::sync::Mutex::new(rx),
                    unsettled: Arc::default(),
                })
            })
            .clone()
    }

    fn first_time(&self, id: &Option<String>) -> bool {
        match id {
            Some(id) => lock(&self.inner.seen).first_time(id),
            None => true,
        }
    }
}

#[async_trait]
impl Broker for InProcessBroker {
    async fn publish(&self, subject: &str, message: OutMessage) -> Result<(), BrokerError> {
        if !self.first_time(&message.msg_id) {
            return Ok(());
        }
        let pending = Pending {
            payload: message.payload,
            headers: message.headers,
            attempt: 1,
        };
        let queue = self.queue(subject);
        queue.tx.send(pending).map_err(|_| BrokerError::Closed)?;
        queue.unsettled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn backlog(&self, subject: &str) -> Result<u64, BrokerError> {
        Ok(self.queue(subject).unsettled.load(Ordering::Relaxed))
    }

    async fn consume(&self, subject: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        Ok(Box::new(MemoryConsumer {
            queue: self.queue(subject),
        }))
    }

    async fn publish_event(&self, event: &JobEvent, msg_id: &str) -> Result<(), BrokerError> {
        if !self.first_time(&Some(format!("event:{msg_id}"))) {
            return Ok(());
        }
        let mut events = lock(&self.inner.events);
        if events.history.len() >= HISTORY_PRUNE_AT {
            events
                .history
                .retain(|_, (at, _)| at.elapsed() < HISTORY_TTL);
        }
        let (at, list) = events
            .history
            .entry(event.job_id.to_string())
            .or_insert_with(|| (Instant::now(), Vec::new()));
        *at = Instant::now();
        list.push(event.clone());
        let subject = subjects::v1::events(event.job_id.as_str());
        events.subscribers.retain(|(filter, tx)| {
            !subjects::v1::matches(filter, &subject) || tx.send(event.clone()).is_ok()
        });
        Ok(())
    }

    async fn last_event(&self, job_id: &str) -> Result<Option<JobEvent>, BrokerError> {
        let events = lock(&self.inner.events);
        Ok(events
            .history
            .get(job_id)
            .and_then(|(_, list)| list.last().cloned()))
    }

    async fn subscribe_events(&self, filter: &str) -> Result<EventStream, BrokerError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut events = lock(&self.inner.events);
        let mut earlier: Vec<&JobEvent> = events
            .history
            .iter()
            .filter(|(id, _)| subjects::v1::matches(filter, &subjects::v1::events(id)))
            .flat_map(|(_, (_, list))| list)
            .collect();
        earlier.sort_by_key(|e| e.at_ms);
        for event in earlier {
            // The receiver is still in hand: this cannot fail.
            let _ = tx.send(event.clone());
        }
        events.subscribers.push((filter.to_owned(), tx));
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }

    async fn consume_events(&self, _durable: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        let events = self.subscribe_events(&subjects::v1::all_events()).await?;
        Ok(Box::new(EventConsumer { events }))
    }
}

/// Events as acknowledgeable deliveries. Nothing outlives the process here, so an ack has
/// nothing to confirm.
struct EventConsumer {
    events: EventStream,
}

#[async_trait]
impl Consumer for EventConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        use futures::StreamExt;
        let event = self.events.next().await.ok_or(BrokerError::Closed)?;
        let payload = serde_json::to_vec(&event).map_err(|e| BrokerError::Codec(e.to_string()))?;
        Ok(Delivery::new(
            payload.into(),
            BTreeMap::new(),
            1,
            Box::new(NoAck),
        ))
    }
}

struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        Ok(())
    }
    async fn nak(self: Box<Self>, _delay: Duration) -> Result<(), BrokerError> {
        Ok(())
    }
    async fn term(self: Box<Self>) -> Result<(), BrokerError> {
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

struct MemoryConsumer {
    queue: Arc<Queue>,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        let pending = self
            .queue
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or(BrokerError::Closed)?;
        let acker = MemoryAcker {
            unsettled: self.queue.unsettled.clone(),
            tx: self.queue.tx.clone(),
            payload: pending.payload.clone(),
            headers: pending.headers.clone(),
            attempt: pending.attempt,
        };
        Ok(Delivery::new(
            pending.payload,
            pending.headers,
            pending.attempt,
            Box::new(acker),
        ))
    }
}

struct MemoryAcker {
    unsettled: Arc<std::sync::atomic::AtomicU64>,
    tx: mpsc::UnboundedSender<Pending>,
    payload: Bytes,
    headers: BTreeMap<String, String>,
    attempt: u32,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.unsettled.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), BrokerError> {
        let me = *self;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A send fails only when the broker is gone, and then nobody is left to deliver to.
            let _ = me.tx.send(Pending {
                payload: me.payload,
                headers: me.headers,
                attempt: me.attempt + 1,
            });
        });
        Ok(())
    }

    async fn term(self: Box<Self>) -> Result<(), BrokerError> {
        self.unsettled.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    async fn in_progress(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use unmark_schemas::{EventKind, JobId};

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn nak_redelivers_with_a_higher_attempt() {
        rt().block_on(async {
            let b = InProcessBroker::new();
            let mut c = b.consume("s").await.expect("consume");
            b.publish("s", OutMessage::new("x".into()))
                .await
                .expect("publish");
            let d = c.next().await.expect("first");
            assert_eq!(d.attempt, 1);
            d.nak(Duration::from_millis(5)).await.expect("nak");
            let d = c.next().await.expect("second");
            assert_eq!(d.attempt, 2);
            d.term().await.expect("term");
        });
    }

    #[test]
    fn duplicate_ids_are_dropped() {
        rt().block_on(async {
            let b = InProcessBroker::new();
            let mut c = b.consume("s").await.expect("consume");
            b.publish("s", OutMessage::new("1".into()).with_id("a"))
                .await
                .expect("p");
            b.publish("s", OutMessage::new("2".into()).with_id("a"))
                .await
                .expect("p");
            b.publish("s", OutMessage::new("3".into()).with_id("b"))
                .await
                .expect("p");
            assert_eq!(&c.next().await.expect("d").payload[..], b"1");
            assert_eq!(&c.next().await.expect("d").payload[..], b"3");
        });
    }

    #[test]
    fn events_reach_matching_subscribers_once() {
        rt().block_on(async {
            let b = InProcessBroker::new();
            let mut mine = b.subscribe_events("unmark.events.j1").await.expect("sub");
            let mut all = b.subscribe_events("unmark.events.>").await.expect("sub");
            let event = |id: &str| JobEvent {
                job_id: JobId::new(id).expect("id"),
                at_ms: 0,
                kind: EventKind::Accepted {
                    pipeline: "p".into(),
                },
            };
            b.publish_event(&event("j2"), "j2:accepted")
                .await
                .expect("pub");
            b.publish_event(&event("j1"), "j1:accepted")
                .await
                .expect("pub");
            b.publish_event(&event("j1"), "j1:accepted")
                .await
                .expect("dup");
            assert_eq!(mine.next().await.expect("e").job_id.as_str(), "j1");
            assert_eq!(all.next().await.expect("e").job_id.as_str(), "j2");
            assert_eq!(all.next().await.expect("e").job_id.as_str(), "j1");
            let pending = futures::FutureExt::now_or_never(mine.next());
            assert!(pending.is_none(), "the duplicate must not arrive");
        });
    }

    #[test]
    fn a_late_subscriber_gets_the_history_once_then_live_events() {
        rt().block_on(async {
            let b = InProcessBroker::new();
            let event = |at_ms: u64, kind: EventKind| JobEvent {
                job_id: JobId::new("j").expect("id"),
                at_ms,
                kind,
            };
            let accepted = event(
                1,
                EventKind::Accepted {
                    pipeline: "p".into(),
                },
            );
            let done = event(
                2,
                EventKind::StageDone {
                    step: 0,
                    stage: "decode".into(),
                    ms: 1.0,
                    engine: None,
                },
            );
            b.publish_event(&accepted, "j:accepted").await.expect("pub");
            b.publish_event(&done, "j:0").await.expect("pub");
            let mut late = b.subscribe_events("unmark.events.j").await.expect("sub");
            let mut records = b.consume_events("records").await.expect("consume");
            assert_eq!(late.next().await.expect("e"), accepted);
            assert_eq!(late.next().await.expect("e"), done);
            let failed = event(
                3,
                EventKind::Failed {
                    reason: unmark_schemas::FailureReason::Internal,
                    message: "x".into(),
                    stage: None,
                },
            );
            b.publish_event(&failed, "j:failed").await.expect("pub");
            assert_eq!(late.next().await.expect("e"), failed);
            assert!(futures::FutureExt::now_or_never(late.next()).is_none());
            for want in [&accepted, &done, &failed] {
                let delivery = records.next().await.expect("delivery");
                let got: JobEvent = serde_json::from_slice(&delivery.payload).expect("json");
                assert_eq!(&got, want);
                delivery.ack().await.expect("ack");
            }
            assert_eq!(b.last_event("j").await.expect("last"), Some(failed));
        });
    }
}
