//! Job records on SQLite and on a real PostgreSQL: the same assertions on both.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use unmark_broker::{BlobConfig, BlobStore};
use unmark_jobs::{JobStatus, JobStore, NewJob, SweepConfig, sweep};
use unmark_schemas::params::WatermarkOptions;
use unmark_schemas::{
    BlobRef, EventKind, FailureReason, JobEvent, JobId, JobSpec, StageTiming, pipeline,
};

use crate::postgres::Postgres;

const TTL: Duration = Duration::from_secs(3600);

fn spec(id: &str) -> JobSpec {
    JobSpec {
        id: JobId::new(id).expect("id"),
        pipeline: pipeline::REMOVE_WATERMARK.into(),
        steps: pipeline::remove_watermark(&WatermarkOptions::default()),
        inputs: BTreeMap::new(),
    }
}

fn event(id: &str, at_ms: u64, kind: EventKind) -> JobEvent {
    JobEvent {
        job_id: JobId::new(id).expect("id"),
        at_ms,
        kind,
    }
}

fn stage_done(step: u32) -> EventKind {
    EventKind::StageDone {
        step,
        stage: pipeline::WATERMARK_STAGES[step as usize].into(),
        ms: f64::from(step) + 0.5,
        engine: None,
    }
}

fn succeeded(id: &str) -> EventKind {
    EventKind::Succeeded {
        result: BlobRef {
            key: format!("jobs/{id}/4-encode-result"),
            size: 1234,
        },
        content_type: "image/png".into(),
        timings: pipeline::WATERMARK_STAGES
            .iter()
            .enumerate()
            .map(|(i, s)| StageTiming {
                stage: (*s).into(),
                ms: i as f64 + 0.5,
            })
            .collect(),
    }
}

fn failed(reason: FailureReason) -> EventKind {
    EventKind::Failed {
        reason,
        message: "broken".into(),
        stage: Some("decode".into()),
    }
}

/// The assertions every backend must pass.
async fn records_are_idempotent_and_monotone(store: JobStore) {
    // Events out of order, before the submission is recorded, some twice.
    let s = spec("job-a");
    store
        .apply(&event("job-a", 20, stage_done(1)), TTL)
        .await
        .expect("apply");
    let early = store
        .get("job-a")
        .await
        .expect("get")
        .expect("row from an event");
    assert_eq!(early.status, JobStatus::Running);
    assert_eq!(early.pipeline, "");
    store
        .apply(
            &event(
                "job-a",
                10,
                EventKind::Accepted {
                    pipeline: s.pipeline.clone(),
                },
            ),
            TTL,
        )
        .await
        .expect("apply");
    store
        .create(&NewJob {
            spec: &s,
            callback_url: Some("https://example.com/hook"),
            at_ms: 9,
            owner: None,
        })
        .await
        .expect("create");
    for e in [
        event("job-a", 15, stage_done(0)),
        event("job-a", 20, stage_done(1)),
        event("job-a", 50, succeeded("job-a")),
        // Late and contradictory: a job that ended stays ended.
        event("job-a", 60, failed(FailureReason::Internal)),
        event("job-a", 70, stage_done(2)),
        event("job-a", 50, succeeded("job-a")),
    ] {
        store.apply(&e, TTL).await.expect("apply");
    }
    let job = store.get("job-a").await.expect("get").expect("row");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.pipeline, pipeline::REMOVE_WATERMARK);
    assert_eq!(
        job.callback_url.as_deref(),
        Some("https://example.com/hook")
    );
    assert_eq!(job.created_ms, 9);
    assert_eq!(job.finished_ms, Some(50));
    assert!(job.error.is_none());
    let result = job.result.expect("result");
    assert_eq!(result.key, "jobs/job-a/4-encode-result");
    assert_eq!(result.size, 1234);
    assert_eq!(result.content_type, "image/png");
    assert_eq!(result.expires_ms, Some(50 + TTL.as_millis() as i64));
    assert_eq!(result.deleted_ms, None);
    let stages: Vec<_> = job
        .stages
        .iter()
        .map(|s| (s.step, s.stage.as_str()))
        .collect();
    let want: Vec<_> = pipeline::WATERMARK_STAGES
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32, *s))
        .collect();
    assert_eq!(stages, want);
    assert_eq!(job.stages[1].ms, 1.5);

    // A failed job keeps its reason; an unfinished one is listed for recovery.
    store
        .create(&NewJob {
            spec: &spec("job-b"),
            callback_url: None,
            at_ms: 100,
            owner: None,
        })
        .await
        .expect("create");
    store
        .create(&NewJob {
            spec: &spec("job-c"),
            callback_url: None,
            at_ms: 101,
            owner: None,
        })
        .await
        .expect("create");
    let unfinished: Vec<_> = store
        .unfinished()
        .await
        .expect("unfinished")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        unfinished,
        vec![
            JobId::new("job-b").expect("id"),
            JobId::new("job-c").expect("id")
        ]
    );
    assert_eq!(
        store.unfinished().await.expect("unfinished")[0],
        spec("job-b")
    );
    store
        .apply(
            &event("job-b", 120, failed(FailureReason::CorruptImage)),
            TTL,
        )
        .await
        .expect("apply");
    let b = store.get("job-b").await.expect("get").expect("row");
    assert_eq!(b.status, JobStatus::Failed);
    let error = b.error.expect("error");
    assert_eq!(
        (error.reason.as_str(), error.message.as_str()),
        ("corrupt_image", "broken")
    );
    assert_eq!(error.stage.as_deref(), Some("decode"));
    assert!(b.result.is_none());

    // Stale and expired.
    let stale = store
        .fail_stale(102, 500, "abandoned")
        .await
        .expect("stale");
    assert_eq!(stale, vec![JobId::new("job-c").expect("id")]);
    let c = store.get("job-c").await.expect("get").expect("row");
    assert_eq!(c.status, JobStatus::Failed);
    assert_eq!(c.error.expect("error").reason, "timeout");
    assert!(store.unfinished().await.expect("unfinished").is_empty());
    let late = 50 + TTL.as_millis() as i64 + 1;
    assert_eq!(
        store.expire_results(late).await.expect("expire"),
        vec!["job-a".to_owned()]
    );
    assert!(store.expire_results(late).await.expect("expire").is_empty());
    let a = store.get("job-a").await.expect("get").expect("row");
    assert_eq!(a.result.expect("result").deleted_ms, Some(late));
    assert!(store.get("job-z").await.expect("get").is_none());
}

#[tokio::test]
async fn job_records_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("sub/unmark.db").display());
    let store = JobStore::open(&url, 4).await.expect("open");
    assert_eq!(store.backend().await.expect("backend"), "SQLite");
    records_are_idempotent_and_monotone(store).await;
    // Opening again runs no migration twice and keeps the rows.
    let again = JobStore::open(&url, 1).await.expect("reopen");
    assert!(again.get("job-a").await.expect("get").is_some());
}

#[tokio::test]
async fn job_records_on_postgres() {
    let pg = Postgres::start();
    let store = JobStore::open(&pg.url, 4).await.expect("open");
    assert_eq!(store.backend().await.expect("backend"), "PostgreSQL");
    records_are_idempotent_and_monotone(store).await;
    let again = JobStore::open(&pg.url, 1).await.expect("reopen");
    assert!(again.get("job-a").await.expect("get").is_some());
}

#[tokio::test]
async fn a_bad_database_url_is_named() {
    let err = JobStore::open("mysql://x", 1)
        .await
        .expect_err("unsupported");
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
    let err = JobStore::open("postgres://u:secret@127.0.0.1:1/db", 1)
        .await
        .expect_err("nobody listens");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(
        !err.to_string().contains("secret"),
        "the password leaked: {err}"
    );
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("time").as_millis() as u64
}

#[tokio::test]
async fn the_sweeper_deletes_only_what_nobody_can_ask_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("unmark.db").display());
    let store = JobStore::open(&url, 2).await.expect("open");
    let blobs = BlobStore::open(&BlobConfig::local(&dir.path().join("blobs"))).expect("blobs");
    let now = SystemTime::now();
    let config = SweepConfig {
        result_ttl: Duration::from_secs(24 * 3600),
        orphan_grace: Duration::from_secs(3600),
        stale_after: Duration::from_secs(24 * 3600),
        record_ttl: Duration::from_secs(7 * 24 * 3600),
    };
    // A succeeded job that a crash left with an intermediate; a failed job (kept for a
    // replay); a running job; blobs nobody recorded.
    for (id, keys) in [
        (
            "done",
            &["in-input", "0-decode-image", "4-encode-result"][..],
        ),
        ("broken", &["in-input"][..]),
        ("busy", &["in-input", "0-decode-image"][..]),
        ("orphan", &["in-input"][..]),
    ] {
        for key in keys {
            blobs
                .put(&format!("jobs/{id}/{key}"), "x".into())
                .await
                .expect("put");
        }
    }
    for id in ["done", "broken", "busy"] {
        store
            .create(&NewJob {
                spec: &spec(id),
                callback_url: None,
                at_ms: ms(now) as i64,
                owner: None,
            })
            .await
            .expect("create");
    }
    store
        .apply(
            &event("done", ms(now), succeeded("done")),
            config.result_ttl,
        )
        .await
        .expect("apply");
    store
        .apply(
            &event("broken", ms(now), failed(FailureReason::Internal)),
            config.result_ttl,
        )
        .await
        .expect("apply");
    store
        .apply(&event("busy", ms(now), stage_done(0)), config.result_ttl)
        .await
        .expect("apply");
    let left = |blobs: BlobStore| async move {
        let mut keys: Vec<String> = blobs
            .jobs()
            .await
            .expect("list")
            .into_values()
            .flat_map(|j| j.keys)
            .collect();
        keys.sort();
        keys
    };

    // Now: everything is fresh, nothing goes.
    let report = sweep(&store, &blobs, &config, now).await.expect("sweep");
    assert_eq!(report.blobs_deleted, 0);

    // Two hours on: the orphan and everything of the succeeded job but its result go; a
    // failed job's blobs and a running job's stay.
    let later = now + Duration::from_secs(2 * 3600);
    let report = sweep(&store, &blobs, &config, later).await.expect("sweep");
    assert_eq!(report.blobs_deleted, 3);
    assert_eq!(
        left(blobs.clone()).await,
        vec![
            "jobs/broken/in-input",
            "jobs/busy/0-decode-image",
            "jobs/busy/in-input",
            "jobs/done/4-encode-result",
        ]
    );
    // A day on: the result and the failed job's blobs expire; the running job is failed as
    // stale, its blobs kept for the TTL like any failed job's.
    let next_day = now + Duration::from_secs(25 * 3600);
    let report = sweep(&store, &blobs, &config, next_day)
        .await
        .expect("sweep");
    assert_eq!(report.results_expired, 1);
    assert_eq!(report.stale_failed, 1);
    assert_eq!(
        left(blobs.clone()).await,
        vec!["jobs/busy/0-decode-image", "jobs/busy/in-input"]
    );
    let done = store.get("done").await.expect("get").expect("row");
    assert!(done.result.expect("result").deleted_ms.is_some());
    let busy = store.get("busy").await.expect("get").expect("row");
    assert_eq!(busy.status, JobStatus::Failed);
    assert_eq!(report.records_forgotten, 0);

    // A week after they ended, the records go too (the stale job ended a day later).
    let week = next_day + Duration::from_secs(7 * 24 * 3600 - 3600);
    let report = sweep(&store, &blobs, &config, week).await.expect("sweep");
    assert_eq!(report.records_forgotten, 2, "done and broken");
    assert!(store.get("done").await.expect("get").is_none());
    assert!(store.get("busy").await.expect("get").is_some());
}

#[tokio::test]
async fn rate_limits_follow_gcra_and_forget_full_buckets() {
    use unmark_jobs::limits::Rate;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("unmark.db").display());
    let store = JobStore::open(&url, 2).await.expect("open");
    // One token a second, five at once.
    let rate = Rate {
        per_minute: 60,
        burst: 5,
    };
    let t0 = 1_000_000_000_000_i64;
    let first = store.take_tokens("k", 3, rate, t0).await.expect("take");
    assert!(first.allowed);
    assert_eq!((first.remaining, first.reset_secs), (2, 3));
    let second = store.take_tokens("k", 3, rate, t0).await.expect("take");
    assert!(!second.allowed);
    assert_eq!(second.retry_after_secs, 1, "one token short: a second");
    assert!(
        store
            .take_tokens("k", 2, rate, t0)
            .await
            .expect("take")
            .allowed
    );
    // Two seconds later two tokens are back; the bucket is full again at t0 + 7 s.
    let later = store
        .take_tokens("k", 2, rate, t0 + 2_000_000)
        .await
        .expect("take");
    assert!(later.allowed);
    assert_eq!(later.remaining, 0);
    assert_eq!(
        store
            .forget_full_buckets(t0 + 6_000_000)
            .await
            .expect("forget"),
        0
    );
    assert_eq!(
        store
            .forget_full_buckets(t0 + 8_000_000)
            .await
            .expect("forget"),
        1
    );
    // A forgotten bucket starts full.
    let fresh = store
        .take_tokens("k", 5, rate, t0 + 8_000_000)
        .await
        .expect("take");
    assert!(fresh.allowed);
}
