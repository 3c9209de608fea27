//! Scale-out: a gateway and stage workers as separate processes over a real NATS JetStream
//! server, sharing blobs through a folder; workers killed with SIGKILL mid-run lose no job.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use unmark_broker::{
    BlobStore, Broker, JetStreamBroker, JetStreamConfig, JobClient, JobOutcome, subjects,
};
use unmark_schemas::params::WatermarkOptions;
use unmark_schemas::{EventKind, JobId, pipeline};

use crate::common::*;
use crate::nats::NatsServer;

/// Starts `unmark args...` on the data folder and NATS server, and waits for its first
/// stdout line, which must start with `ready`.
fn spawn(args: &[&str], data: &Path, nats: &str, ready: &str) -> (Proc, String) {
    let data = data.display().to_string();
    let mut all = args.to_vec();
    all.extend(["--data-dir", &data]);
    // Short ack wait, so that work held by a killed worker comes back within seconds.
    let env = [
        ("UNMARK_NATS_URL", nats),
        ("UNMARK_NATS__ACK_WAIT_SECS", "2"),
    ];
    spawn_unmark(&all, &env, ready)
}

fn worker(stage: &str, data: &Path, nats: &str) -> Proc {
    spawn(
        &["worker", "--stage", stage, "--concurrency", "2"],
        data,
        nats,
        &format!("worker {stage} ready"),
    )
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_run_on_separate_workers() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let (_gateway, line) = spawn(
        &["serve", "--bind", "127.0.0.1:0", "--stages", "none"],
        data.path(),
        &nats.url,
        "listening on ",
    );
    let _workers: Vec<Proc> = [
        "decode", "prescale", "detect", "inpaint", "inpaint", "encode",
    ]
    .iter()
    .map(|s| worker(s, data.path(), &nats.url))
    .collect();
    let server = Server::attach(line.trim_start_matches("listening on ").to_owned());
    let (wm, mask, _) = case("dev_001_astronaut_512_text_center");
    let input = std::fs::read(&wm).expect("image");
    let response = remove(
        &server,
        form(
            input.clone(),
            Some(std::fs::read(&mask).expect("mask")),
            &[],
        ),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let out = decode_bytes(&response.bytes().await.expect("body"));
    let (original, truth) = (decode_bytes(&input), read_mask(&mask));
    for y in 0..out.height {
        for x in 0..out.width {
            if !truth.get(x, y) {
                assert_eq!(
                    out.pixel(x, y),
                    original.pixel(x, y),
                    "({x},{y}) outside the mask"
                );
            }
        }
    }
    let bad = remove(&server, form(b"not an image".to_vec(), None, &[])).await;
    assert_eq!(bad.status().as_u16(), 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_when_workers_are_killed() {
    const JOBS: usize = 200;
    const KILLS: usize = 5;
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let stages = [
        "decode", "prescale", "detect", "inpaint", "inpaint", "encode",
    ];
    let mut workers: Vec<(&str, Proc)> = stages
        .iter()
        .map(|s| (*s, worker(s, data.path(), &nats.url)))
        .collect();
    // A small xorshift generator; the seed is printed so that a failing run can be replayed.
    let mut seed: u64 = std::env::var("UNMARK_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| unmark_broker::now_ms() | 1);
    eprintln!("crash test seed {seed} (set UNMARK_TEST_SEED to replay)");
    let mut random = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let kill_at: Vec<usize> = (1..=KILLS).map(|k| k * JOBS / (KILLS + 1)).collect();

    let broker: Arc<dyn Broker> = Arc::new(
        JetStreamBroker::connect(JetStreamConfig::new(nats.url.clone()))
            .await
            .expect("connect"),
    );
    let blobs = BlobStore::local(&data.path().join("blobs")).expect("blobs");
    let client = JobClient::new(broker.clone(), blobs);
    // An independent subscriber counts terminal events over all jobs.
    let mut all = broker
        .subscribe_events(&subjects::v1::all_events())
        .await
        .expect("subscribe");
    let counter = tokio::spawn(async move {
        let mut succeeded: HashMap<String, usize> = HashMap::new();
        while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(6), all.next()).await {
            match event.kind {
                EventKind::Succeeded { .. } => {
                    *succeeded.entry(event.job_id.to_string()).or_default() += 1
                }
                EventKind::Failed { message, .. } => {
                    panic!("job {} failed: {message}", event.job_id)
                }
                _ => {}
            }
        }
        succeeded
    });

    let (wm, mask, _) = case("dev_000_astronaut_512_text_corner");
    let image = Bytes::from(std::fs::read(wm).expect("image"));
    let mask = Bytes::from(std::fs::read(mask).expect("mask"));
    let steps = pipeline::remove_watermark(&WatermarkOptions::default());
    let mut handles = Vec::new();
    for n in 0..JOBS {
        let id = JobId::new(format!("crash-{n}")).expect("id");
        let inputs = vec![("input", image.clone()), ("mask_input", mask.clone())];
        let handle = client
            .submit(id, pipeline::REMOVE_WATERMARK, steps.clone(), inputs)
            .await
            .expect("submit");
        handles.push(handle);
        // Mid-run, kill a random worker with SIGKILL, then start a replacement.
        if kill_at.contains(&n) {
            let (stage, proc) = workers.swap_remove(random(workers.len()));
            drop(proc);
            eprintln!("killed a {stage} worker after {n} submissions");
            workers.push((stage, worker(stage, data.path(), &nats.url)));
        }
    }
    for mut handle in handles {
        match handle
            .wait(Duration::from_secs(300))
            .await
            .expect("outcome")
        {
            JobOutcome::Succeeded { result, .. } => {
                let bytes = client.fetch(&result).await.expect("result");
                assert_eq!(decode_bytes(&bytes).size(), (512, 512));
            }
            other => panic!("job {} did not succeed: {other:?}", handle.id()),
        }
    }
    let succeeded = counter.await.expect("counter");
    assert_eq!(succeeded.len(), JOBS, "every job succeeded");
    assert!(
        succeeded.values().all(|&n| n == 1),
        "a job succeeded twice: {succeeded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_job_is_lost_when_nats_restarts() {
    const JOBS: usize = 12;
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _workers: Vec<Proc> = ["decode", "prescale", "detect", "inpaint", "encode"]
        .iter()
        .map(|s| worker(s, data.path(), &nats.url))
        .collect();
    let broker: Arc<dyn Broker> = Arc::new(
        JetStreamBroker::connect(JetStreamConfig::new(nats.url.clone()))
            .await
            .expect("connect"),
    );
    let client = JobClient::new(
        broker.clone(),
        BlobStore::local(&data.path().join("blobs")).expect("blobs"),
    );
    // 2048 px photos, so that jobs are still in flight when the server goes down.
    let (wm, mask, _) = case("dev_037_coffee_2048_cjk_text");
    let size = read_raster(&wm).size();
    let (image, mask) = (
        Bytes::from(std::fs::read(wm).expect("image")),
        Bytes::from(std::fs::read(mask).expect("mask")),
    );
    let steps = pipeline::remove_watermark(&WatermarkOptions::default());
    let mut handles = Vec::new();
    for n in 0..JOBS {
        let id = JobId::new(format!("restart-{n}")).expect("id");
        let inputs = vec![("input", image.clone()), ("mask_input", mask.clone())];
        handles.push(
            client
                .submit(id, pipeline::REMOVE_WATERMARK, steps.clone(), inputs)
                .await
                .expect("submit"),
        );
    }
    // Every job above was accepted (its first step stored by the server). Kill the server
    // while they are in flight, and bring it back on the same storage.
    let mut unfinished = 0;
    for handle in &handles {
        let last = broker
            .last_event(handle.id().as_str())
            .await
            .expect("last event");
        unfinished += usize::from(!last.is_some_and(|e| e.kind.is_terminal()));
    }
    assert!(
        unfinished > 0,
        "every job ended before the restart: the test would prove nothing"
    );
    nats.restart();
    for mut handle in handles {
        match handle
            .wait(Duration::from_secs(120))
            .await
            .expect("outcome")
        {
            JobOutcome::Succeeded { result, .. } => {
                assert_eq!(
                    decode_bytes(&client.fetch(&result).await.expect("result")).size(),
                    size
                );
            }
            other => panic!("job {} did not succeed: {other:?}", handle.id()),
        }
    }
    eprintln!("{unfinished} of {JOBS} jobs were in flight when nats-server was killed");
}

#[test]
fn a_python_client_submits_and_follows_a_job_over_nats() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let (_gateway, _) = spawn(
        &["serve", "--bind", "127.0.0.1:0"],
        data.path(),
        &nats.url,
        "listening on ",
    );
    let (wm, mask, _) = case("dev_002_chelsea_512_text_tiled");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/nats_submit.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(&nats.url)
        .arg(&wm)
        .arg(&mask)
        .arg(data.path().join("blobs"))
        .output()
        .expect("python3 (scripts/setup.sh installs nats-py)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let size = read_raster(&wm).size();
    assert_eq!(stdout.trim(), format!("ok {}x{}", size.0, size.1));
}

/// The production layout: a gateway on PostgreSQL, blobs in S3, one worker per stage over
/// JetStream, and no local blob folder anywhere. The gateway is SIGKILLed right after
/// accepting the jobs and started again: its records catch up from the durable events
/// consumer, and every job succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_s3_and_workers_survive_a_gateway_crash() {
    use crate::api_jobs::{check_result, events, get, inputs, submit, wait_until_done};
    let nats = NatsServer::start();
    let pg = crate::postgres::Postgres::start();
    let s3 = crate::s3::S3Server::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let data_arg = data.path().display().to_string();
    let mut shared: Vec<(&str, String)> = s3.env("prod");
    shared.push(("UNMARK_NATS_URL", nats.url.clone()));
    shared.push(("UNMARK_NATS__ACK_WAIT_SECS", "2".into()));
    let with = |extra: (&'static str, String)| {
        let mut env = shared.clone();
        env.push(extra);
        env
    };
    // Workers get a database nobody listens on: they must never need one.
    let worker_env = with((
        "UNMARK_DATABASE_URL",
        "postgres://nobody@127.0.0.1:1/x".into(),
    ));
    let gateway_env = with(("UNMARK_DATABASE_URL", pg.url.clone()));
    let as_refs = |env: &[(&'static str, String)]| -> Vec<(&'static str, String)> { env.to_vec() };
    let start = |args: &[&str], env: &[(&'static str, String)], ready: &str| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        spawn_unmark(args, &env, ready)
    };
    let _workers: Vec<Proc> = ["decode", "prescale", "detect", "inpaint", "encode"]
        .iter()
        .map(|stage| {
            start(
                &["worker", "--stage", stage, "--data-dir", &data_arg],
                &as_refs(&worker_env),
                &format!("worker {stage} ready"),
            )
            .0
        })
        .collect();
    let gateway_args = [
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--stages",
        "none",
        "--data-dir",
        &data_arg,
    ];
    let (proc, line) = start(&gateway_args, &gateway_env, "listening on ");
    let mut gateway = Server::own(proc, line.trim_start_matches("listening on ").to_owned());

    let (image, mask) = inputs();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let job = submit(&gateway, form(image.clone(), Some(mask.clone()), &[])).await;
        ids.push(job["id"].as_str().expect("id").to_owned());
    }
    gateway.kill();
    let (proc, line) = start(&gateway_args, &gateway_env, "listening on ");
    let gateway = Server::own(proc, line.trim_start_matches("listening on ").to_owned());

    for id in &ids {
        let record = wait_until_done(&gateway, id).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(
            record["stages"].as_array().expect("stages").len(),
            5,
            "{record}"
        );
        let response = get(&gateway, &format!("/api/v1/jobs/{id}/result")).await;
        assert_eq!(response.status().as_u16(), 200);
        check_result(&response.bytes().await.expect("body"));
    }
    let names: Vec<String> = events(&gateway, &ids[0])
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("accepted"));
    assert_eq!(names.last().map(String::as_str), Some("succeeded"));
    assert_eq!(names.iter().filter(|n| *n == "stage_done").count(), 5);

    // Each job left exactly its result, in S3; nothing went to a local folder.
    let store = BlobStore::open(&s3.blob_config("prod")).expect("s3");
    let left = store.jobs().await.expect("list");
    assert_eq!(left.len(), ids.len(), "{left:?}");
    for id in &ids {
        assert_eq!(left[id].keys, vec![format!("jobs/{id}/4-encode-result")]);
    }
    assert!(!data.path().join("blobs").exists());
    let ready: serde_json::Value = get(&gateway, "/api/v1/ready")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");
}
