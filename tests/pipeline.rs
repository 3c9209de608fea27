//! The stage pipeline, unchanged, on the in-process broker and on a real JetStream server:
//! results, failure reasons, telemetry, cleanup, concurrent jobs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use unmark_broker::{BlobStore, Broker, InProcessBroker, JobClient, JobOutcome};
use unmark_schemas::params::WatermarkOptions;
use unmark_schemas::{FailureReason, JobId, pipeline};
use unmark_stages::telemetry;

use crate::common::*;

struct Pipeline {
    client: JobClient,
    runners: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.runners.iter().for_each(|r| r.abort());
    }
}

fn start(broker: Arc<dyn Broker>) -> Pipeline {
    let blobs = BlobStore::in_memory();
    let runners = unmark_stages::builtin()
        .into_iter()
        .map(|stage| {
            let runner = unmark_stages::Runner::new(
                stage,
                broker.clone(),
                blobs.clone(),
                Default::default(),
            );
            tokio::spawn(async move {
                let _ = runner.run().await;
            })
        })
        .collect();
    Pipeline {
        client: JobClient::new(broker, blobs),
        runners,
    }
}

async fn run_job(p: &Pipeline, id: &str, image: Vec<u8>, mask: Option<Vec<u8>>) -> JobOutcome {
    let mut inputs = vec![("input", Bytes::from(image))];
    if let Some(mask) = mask {
        inputs.push(("mask_input", Bytes::from(mask)));
    }
    let steps = pipeline::remove_watermark(&WatermarkOptions::default());
    let mut job = p
        .client
        .submit(
            JobId::new(id).expect("id"),
            pipeline::REMOVE_WATERMARK,
            steps,
            inputs,
        )
        .await
        .expect("submit");
    job.wait(Duration::from_secs(60)).await.expect("outcome")
}

async fn suite(broker: Arc<dyn Broker>) {
    let p = start(broker.clone());
    let before: Vec<_> = pipeline::WATERMARK_STAGES
        .iter()
        .map(|s| telemetry::snapshot(s))
        .collect();
    let (wm, mask, _) = case("dev_005_coffee_512_cjk_text");
    let input_size = read_raster(&wm).size();
    let outcome = run_job(
        &p,
        "job-ok",
        std::fs::read(wm).expect("image"),
        Some(std::fs::read(mask).expect("mask")),
    )
    .await;
    let JobOutcome::Succeeded {
        result,
        content_type,
        timings,
    } = outcome
    else {
        panic!("expected success, got {outcome:?}");
    };
    assert_eq!(content_type, "image/png");
    let names: Vec<_> = timings.iter().map(|t| t.stage.as_str()).collect();
    assert_eq!(names, pipeline::WATERMARK_STAGES);
    // Intermediates go right after the success event: only the result is left, until the
    // client discards it.
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = p.client.blobs().count("jobs/job-ok/").await.expect("count");
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 1, "intermediates left behind");
    let bytes = p.client.fetch(&result).await.expect("result");
    assert_eq!(decode_bytes(&bytes).size(), input_size);
    let last = broker.last_event("job-ok").await.expect("last event");
    assert!(
        matches!(
            last.map(|e| e.kind),
            Some(unmark_schemas::EventKind::Succeeded { .. })
        ),
        "the broker keeps the job's terminal event"
    );
    assert!(
        broker
            .last_event("no-such-job")
            .await
            .expect("last event")
            .is_none()
    );
    p.client
        .discard(&JobId::new("job-ok").expect("id"))
        .await
        .expect("discard");
    assert_eq!(
        p.client.blobs().count("jobs/job-ok/").await.expect("count"),
        0
    );
    for (stage, before) in pipeline::WATERMARK_STAGES.iter().zip(before) {
        telemetry::assert_compliant(stage, before, telemetry::snapshot(stage), 1);
    }

    let outcome = run_job(&p, "job-corrupt", b"GIF89a broken".to_vec(), None).await;
    match outcome {
        JobOutcome::Failed { reason, stage, .. } => {
            assert_eq!(reason, FailureReason::CorruptImage);
            assert_eq!(stage.as_deref(), Some("decode"));
        }
        other => panic!("expected failure, got {other:?}"),
    }
    assert_eq!(
        p.client
            .blobs()
            .count("jobs/job-corrupt/")
            .await
            .expect("count"),
        0
    );

    // With no mask the detector runs; a flat image has no watermark and comes back unchanged.
    let flat = png_of(16, 16, |_, _| [9, 9, 9]);
    let outcome = run_job(&p, "job-nomask", flat.clone(), None).await;
    assert!(
        matches!(outcome, JobOutcome::Succeeded { .. }),
        "{outcome:?}"
    );

    // Several jobs at once all finish, each with its own result.
    let jobs = (0..6).map(|n| {
        let image = png_of(40 + n, 30, move |x, y| [(x * n) as u8, y as u8, 7]);
        let mask = png_of(40 + n, 30, |x, y| {
            if x > 10 && x < 20 && y > 5 && y < 9 {
                [255; 3]
            } else {
                [0; 3]
            }
        });
        run_job(
            &p,
            Box::leak(format!("job-many-{n}").into_boxed_str()),
            image,
            Some(mask),
        )
    });
    for (n, outcome) in futures::future::join_all(jobs)
        .await
        .into_iter()
        .enumerate()
    {
        let JobOutcome::Succeeded { result, .. } = outcome else {
            panic!("job {n}: {outcome:?}");
        };
        let bytes = p.client.fetch(&result).await.expect("result");
        assert_eq!(decode_bytes(&bytes).size(), (40 + n as u32, 30));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_on_the_in_process_broker() {
    suite(Arc::new(InProcessBroker::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_on_jetstream() {
    let server = crate::nats::NatsServer::start();
    let config = unmark_broker::JetStreamConfig::new(server.url.clone());
    let broker = unmark_broker::JetStreamBroker::connect(config)
        .await
        .expect("connect");
    suite(Arc::new(broker)).await;
}

/// A job whose input blob vanishes (a store fault) fails with a reason after its retries;
/// it is never dropped silently as if it had finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_input_fails_the_job_after_retries() {
    use unmark_broker::{OutMessage, subjects};
    use unmark_schemas::{BlobRef, JobSpec, StageMessage};
    let broker: Arc<dyn Broker> = Arc::new(InProcessBroker::new());
    let config = unmark_stages::RunnerConfig {
        max_deliver: 3,
        backoff: vec![Duration::from_millis(10)],
        ..Default::default()
    };
    let decode = unmark_stages::builtin().remove(0);
    let runner = unmark_stages::Runner::new(decode, broker.clone(), BlobStore::in_memory(), config);
    let task = tokio::spawn(runner.run());
    let id = JobId::new("vanished").expect("id");
    let mut events = broker
        .subscribe_events(&subjects::v1::events("vanished"))
        .await
        .expect("sub");
    let job = JobSpec {
        id: id.clone(),
        pipeline: pipeline::REMOVE_WATERMARK.into(),
        steps: pipeline::remove_watermark(&WatermarkOptions::default()),
        inputs: [(
            "input".to_owned(),
            BlobRef {
                key: "jobs/vanished/in-input".into(),
                size: 9,
            },
        )]
        .into(),
    };
    let message = StageMessage::first(job);
    let payload = serde_json::to_vec(&message).expect("json");
    broker
        .publish(
            &subjects::v1::stage("decode"),
            OutMessage::new(payload.into()),
        )
        .await
        .expect("publish");
    let event = tokio::time::timeout(
        Duration::from_secs(30),
        futures::StreamExt::next(&mut events),
    )
    .await
    .expect("an event within the retries")
    .expect("event");
    match event.kind {
        unmark_schemas::EventKind::Failed { reason, stage, .. } => {
            assert_eq!(reason, FailureReason::Internal);
            assert_eq!(stage.as_deref(), Some("decode"));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    task.abort();
}
