//! The runner's delivery semantics with stages written for the test: dead letters after
//! retryable failures (both brokers), and progress acks that keep a slow stage's message
//! from going to a second worker (JetStream).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use unmark_broker::{
    BlobStore, Broker, InProcessBroker, JetStreamBroker, JetStreamConfig, OutMessage, subjects,
};
use unmark_schemas::{EventKind, FailureReason, JobId, JobSpec, StageMessage, Step};
use unmark_stages::{Artifacts, Produced, Runner, RunnerConfig, Stage, StageError, StageOutput};

use crate::nats::NatsServer;

/// Fails (retryably) when its params say `{"fail": true}`, else echoes its input; optionally
/// slow. Counts its calls.
struct TestStage {
    name: &'static str,
    delay: Duration,
    calls: Arc<AtomicUsize>,
}

impl Stage for TestStage {
    fn name(&self) -> &'static str {
        self.name
    }

    fn reads(&self) -> &'static [&'static str] {
        &["input"]
    }

    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        if params["fail"] == true {
            return Err(StageError::internal("the backend is unavailable"));
        }
        let out = StageOutput {
            content_type: Some("text/plain".into()),
            ..StageOutput::default()
        };
        Ok(out.with("result", Produced::Blob(inputs.require("input")?.clone())))
    }
}

/// The trace every test job carries.
const TRACEPARENT: &str = "00-0123456789abcdef0123456789abcdef-0011223344556677-01";

/// Publishes a one-step job for `stage` straight onto its subject.
async fn publish_job(
    broker: &Arc<dyn Broker>,
    blobs: &BlobStore,
    id: &str,
    stage: &str,
    fail: bool,
) {
    let input = blobs
        .put(
            &format!("jobs/{id}/in-input"),
            bytes::Bytes::from(format!("payload of {id}")),
        )
        .await
        .expect("put");
    let job = JobSpec {
        id: JobId::new(id).expect("id"),
        pipeline: "test".into(),
        steps: vec![Step {
            stage: stage.into(),
            params: serde_json::json!({ "fail": fail }),
        }],
        inputs: [("input".to_owned(), input)].into(),
    };
    let message = StageMessage::first(job);
    let out = OutMessage::new(serde_json::to_vec(&message).expect("json").into())
        .with_id(message.hop_id())
        .with_header(unmark_broker::trace::HEADER, TRACEPARENT);
    broker
        .publish(&subjects::v1::stage(stage), out)
        .await
        .expect("publish");
}

/// Reads `events` until each job in `ids` has its terminal event; returns them in `ids` order.
async fn outcomes(events: &mut unmark_broker::EventStream, ids: &[&str]) -> Vec<EventKind> {
    let mut ends: std::collections::HashMap<String, EventKind> = Default::default();
    tokio::time::timeout(Duration::from_secs(30), async {
        while ends.len() < ids.len() {
            let e = events.next().await.expect("events ended");
            if e.kind.is_terminal() && ids.contains(&e.job_id.as_str()) {
                ends.insert(e.job_id.to_string(), e.kind);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {} jobs ended", ends.len(), ids.len()));
    ids.iter()
        .map(|id| ends.remove(*id).expect("ended"))
        .collect()
}

async fn dead_letter_suite(broker: Arc<dyn Broker>) {
    let blobs = BlobStore::in_memory();
    let calls = Arc::new(AtomicUsize::new(0));
    let stage = Arc::new(TestStage {
        name: "flaky",
        delay: Duration::ZERO,
        calls: calls.clone(),
    });
    let config = RunnerConfig {
        max_deliver: 3,
        backoff: vec![Duration::from_millis(20)],
        ..Default::default()
    };
    let runner = tokio::spawn(Runner::new(stage, broker.clone(), blobs.clone(), config).run());
    let mut dlq = broker
        .consume(&subjects::v1::dlq("flaky"))
        .await
        .expect("dlq consumer");
    let mut events = broker
        .subscribe_events(&subjects::v1::all_events())
        .await
        .expect("subscribe");

    publish_job(&broker, &blobs, "poison", "flaky", true).await;
    for n in 0..3 {
        publish_job(&broker, &blobs, &format!("good-{n}"), "flaky", false).await;
    }
    let ends = outcomes(&mut events, &["good-0", "good-1", "good-2", "poison"]).await;
    for end in &ends[..3] {
        assert!(matches!(end, EventKind::Succeeded { .. }), "{end:?}");
    }
    match &ends[3] {
        EventKind::Failed { reason, stage, .. } => {
            assert_eq!(*reason, FailureReason::Internal);
            assert_eq!(stage.as_deref(), Some("flaky"));
        }
        other => panic!("the poison job should fail, got {other:?}"),
    }
    // Three deliveries of the poison job, one of each good job.
    assert_eq!(calls.load(Ordering::SeqCst), 3 + 3);

    let letter = tokio::time::timeout(Duration::from_secs(10), dlq.next())
        .await
        .expect("a dead letter")
        .expect("delivery");
    let original: StageMessage =
        serde_json::from_slice(&letter.payload).expect("the original message");
    assert_eq!(original.job.id.as_str(), "poison");
    assert_eq!(
        letter.headers.get("Unmark-Error").map(String::as_str),
        Some("the backend is unavailable")
    );
    assert_eq!(
        letter.headers.get("Unmark-Attempts").map(String::as_str),
        Some("3")
    );
    // The trace travels with the message.
    let trace = letter
        .headers
        .get(unmark_broker::trace::HEADER)
        .map(String::as_str);
    assert_eq!(
        trace.and_then(unmark_broker::trace::trace_id),
        unmark_broker::trace::trace_id(TRACEPARENT)
    );
    // Its blobs are kept for a replay.
    assert_eq!(blobs.count("jobs/poison/").await.expect("count"), 1);
    letter.ack().await.expect("ack");
    runner.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_on_the_in_process_broker() {
    dead_letter_suite(Arc::new(InProcessBroker::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_on_jetstream() {
    let server = NatsServer::start();
    let broker = JetStreamBroker::connect(JetStreamConfig::new(server.url.clone()))
        .await
        .expect("connect");
    dead_letter_suite(Arc::new(broker)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_acks_keep_a_slow_stage_on_one_worker() {
    let server = NatsServer::start();
    let config = JetStreamConfig {
        ack_wait: Duration::from_secs(1),
        ..JetStreamConfig::new(server.url.clone())
    };
    let broker: Arc<dyn Broker> =
        Arc::new(JetStreamBroker::connect(config).await.expect("connect"));
    let blobs = BlobStore::in_memory();
    let calls = Arc::new(AtomicUsize::new(0));
    let runner_config = RunnerConfig {
        progress_every: Duration::from_millis(300),
        ..Default::default()
    };
    // Two workers on the stage, each with its own consumer connection to the same durable.
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let stage = Arc::new(TestStage {
                name: "slow",
                delay: Duration::from_millis(3500),
                calls: calls.clone(),
            });
            tokio::spawn(
                Runner::new(stage, broker.clone(), blobs.clone(), runner_config.clone()).run(),
            )
        })
        .collect();
    let mut events = broker
        .subscribe_events(&subjects::v1::all_events())
        .await
        .expect("subscribe");
    publish_job(&broker, &blobs, "slow-job", "slow", false).await;
    let ends = outcomes(&mut events, &["slow-job"]).await;
    assert!(
        matches!(ends[0], EventKind::Succeeded { .. }),
        "{:?}",
        ends[0]
    );
    // 3.5 s of work under a 1 s ack wait: without progress acks the message would have gone
    // to the second worker (and the first again) several times.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the slow message was handed out again"
    );
    workers.iter().for_each(|w| w.abort());
}
