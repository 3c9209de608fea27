//! Broker overhead and scaling, measured in one run:
//!
//! 1. Per-hop overhead: tiny (32x32) jobs through the 5-stage pipeline, one at a time, on the
//!    in-process broker and on JetStream (a real `nats-server` on loopback, file storage).
//!    Stage work is negligible at that size, so latency / 5 is the cost of a hop: publish,
//!    deliver, blob reads and writes, events, ack.
//! 2. Throughput: 512 px eval jobs, 40 in flight, with 1 and then 2 inpaint runners (each
//!    handling one message at a time) on the in-process broker.
//!
//! ```text
//! cargo bench --bench hops -- [--jobs 100]
//! ```

// The tests' nats-server launcher, shared rather than copied; the bench uses part of it.
#[path = "../tests/nats.rs"]
#[allow(dead_code)]
mod nats;
#[path = "../tests/procs.rs"]
#[allow(dead_code)]
mod procs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use unmark_broker::{
    BlobStore, Broker, InProcessBroker, JetStreamBroker, JetStreamConfig, JobClient, JobOutcome,
};
use unmark_schemas::params::WatermarkOptions;
use unmark_schemas::{JobId, pipeline};
use unmark_stages::{Runner, RunnerConfig};

fn png(w: u32, h: u32) -> Bytes {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 7, y as u8 * 5, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner().into()
}

fn mask(w: u32, h: u32) -> Bytes {
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if (x + y) % 9 == 0 { 255 } else { 0 }])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner().into()
}

/// Starts runners: `inpaint_workers` for inpaint, one for every other stage, each handling
/// one message at a time.
fn start(
    broker: Arc<dyn Broker>,
    blobs: BlobStore,
    inpaint_workers: usize,
) -> (JobClient, Vec<tokio::task::JoinHandle<()>>) {
    let config = RunnerConfig {
        concurrency: 1,
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for stage in unmark_stages::builtin() {
        let copies = if stage.name() == "inpaint" {
            inpaint_workers
        } else {
            1
        };
        for _ in 0..copies {
            let runner = Runner::new(stage.clone(), broker.clone(), blobs.clone(), config.clone());
            tasks.push(tokio::spawn(async move {
                let _ = runner.run().await;
            }));
        }
    }
    (JobClient::new(broker, blobs), tasks)
}

async fn run_job(client: &JobClient, id: String, image: Bytes, mask: Bytes) {
    let steps = pipeline::remove_watermark(&WatermarkOptions::default());
    let inputs = vec![("input", image), ("mask_input", mask)];
    let id = JobId::new(id).expect("id");
    let mut job = client
        .submit(id.clone(), pipeline::REMOVE_WATERMARK, steps, inputs)
        .await
        .expect("submit");
    match job.wait(Duration::from_secs(120)).await.expect("outcome") {
        JobOutcome::Succeeded { .. } => {}
        other => panic!("{other:?}"),
    }
    client.discard(&id).await.expect("discard");
}

/// Median and mean milliseconds per hop over `jobs` sequential tiny jobs.
async fn hop_latency(name: &str, broker: Arc<dyn Broker>, blobs: BlobStore, jobs: usize) {
    let (client, tasks) = start(broker, blobs, 1);
    let (image, mask) = (png(32, 32), mask(32, 32));
    run_job(&client, format!("{name}-warm"), image.clone(), mask.clone()).await;
    let mut per_job = Vec::with_capacity(jobs);
    for n in 0..jobs {
        let started = Instant::now();
        run_job(&client, format!("{name}-{n}"), image.clone(), mask.clone()).await;
        per_job.push(started.elapsed().as_secs_f64() * 1e3);
    }
    tasks.iter().for_each(|t| t.abort());
    per_job.sort_by(f64::total_cmp);
    let median = per_job[jobs / 2];
    let mean = per_job.iter().sum::<f64>() / jobs as f64;
    println!(
        "{name:<12} per job: median {median:7.2} ms, mean {mean:7.2} ms; per hop (/5): median {:6.2} ms",
        median / 5.0
    );
}

/// Jobs per second with `inpaint_workers` inpaint runners, `jobs` 512 px jobs, 40 in flight.
async fn throughput(inpaint_workers: usize, jobs: usize) -> f64 {
    let (client, tasks) = start(
        Arc::new(InProcessBroker::new()),
        BlobStore::in_memory(),
        inpaint_workers,
    );
    let eval = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/eval/cases/dev_002_chelsea_512_text_tiled");
    let image = Bytes::from(std::fs::read(eval.join("watermarked.png")).expect("eval image"));
    let mask = Bytes::from(std::fs::read(eval.join("mask.png")).expect("eval mask"));
    let started = Instant::now();
    let runs = (0..jobs).map(|n| {
        run_job(
            &client,
            format!("tp{inpaint_workers}-{n}"),
            image.clone(),
            mask.clone(),
        )
    });
    futures::stream::iter(runs)
        .buffer_unordered(40)
        .collect::<Vec<_>>()
        .await;
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    tasks.iter().for_each(|t| t.abort());
    rate
}

use futures::StreamExt;

fn main() {
    let mut jobs = 100;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--jobs" {
            jobs = args.next().and_then(|v| v.parse().ok()).expect("--jobs N");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("per-hop overhead, {jobs} sequential 32x32 jobs through 5 stages");
        hop_latency(
            "in-process",
            Arc::new(InProcessBroker::new()),
            BlobStore::in_memory(),
            jobs,
        )
        .await;
        let server = nats::NatsServer::start();
        let broker = JetStreamBroker::connect(JetStreamConfig::new(server.url.clone()))
            .await
            .expect("connect");
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::local(dir.path()).expect("blobs");
        hop_latency("jetstream", Arc::new(broker), blobs, jobs).await;

        println!("throughput, {jobs} jobs of 512 px (dev_002), 40 in flight, in-process broker");
        let one = throughput(1, jobs).await;
        let two = throughput(2, jobs).await;
        println!("1 inpaint worker : {one:6.1} jobs/s");
        println!("2 inpaint workers: {two:6.1} jobs/s ({:.2}x)", two / one);
    });
}
