use std::time::{Duration, SystemTime, UNIX_EPOCH};

use unmark_broker::{BlobError, BlobStore, JobBlobs};

use crate::{JobStatus, JobStore, StoreError};

/// How long things are kept (the `[jobs]` section of the config file).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepConfig {
    /// A succeeded job's result, and a failed job's blobs (kept for a replay), live this long
    /// after the job ends.
    pub result_ttl: Duration,
    /// Blobs of a job the database does not know, or intermediates a crash left beside a
    /// finished job's result, are deleted once nothing has been written for this long.
    pub orphan_grace: Duration,
    /// A job that has not moved for this long is failed with `timeout`.
    pub stale_after: Duration,
    /// A finished job's record is kept this long (usage statistics stay).
    pub record_ttl: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            result_ttl: Duration::from_secs(24 * 3600),
            orphan_grace: Duration::from_secs(3600),
            stale_after: Duration::from_secs(24 * 3600),
            record_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Results whose TTL passed.
    pub results_expired: usize,
    /// Jobs failed because they stopped moving.
    pub stale_failed: usize,
    /// Blobs deleted.
    pub blobs_deleted: usize,
    /// Job records past their retention.
    pub records_forgotten: u64,
}

/// A failure of a sweep.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One pass: expire results, fail stale jobs, then look at every job's blobs and delete what
/// no one can ask for any more. Safe to run from several gateways at once.
pub async fn sweep(
    store: &JobStore,
    blobs: &BlobStore,
    config: &SweepConfig,
    now: SystemTime,
) -> Result<SweepReport, SweepError> {
    let now_ms = ms(now);
    let mut report = SweepReport {
        results_expired: store.expire_results(now_ms).await?.len(),
        ..Default::default()
    };
    let stale_before = now_ms - config.stale_after.as_millis() as i64;
    let stale = store
        .fail_stale(
            stale_before,
            now_ms,
            &format!(
                "the job did not move for {} s and was abandoned",
                config.stale_after.as_secs()
            ),
        )
        .await?;
    report.stale_failed = stale.len();
    // Idempotent answers are kept for a day, whatever the result TTL.
    store.idempotency_expire(now_ms - 24 * 3_600_000).await?;
    store
        .forget_full_buckets(now_ms.saturating_mul(1000))
        .await?;
    // A record outlives its blobs (an ended job is still asked about): it never goes before
    // its result.
    let keep = config.record_ttl.max(config.result_ttl).as_millis() as i64;
    report.records_forgotten = store.forget_jobs(now_ms - keep).await?;
    for (id, group) in blobs.jobs().await? {
        let doomed = doomed_keys(store, config, &id, &group, now, now_ms).await?;
        for key in doomed {
            blobs.delete(&key).await?;
            report.blobs_deleted += 1;
        }
    }
    Ok(report)
}

/// The keys of one job that may go.
async fn doomed_keys(
    store: &JobStore,
    config: &SweepConfig,
    id: &str,
    group: &JobBlobs,
    now: SystemTime,
    now_ms: i64,
) -> Result<Vec<String>, SweepError> {
    let quiet = now
        .duration_since(group.newest)
        .is_ok_and(|d| d >= config.orphan_grace);
    let Some(job) = store.get(id).await? else {
        // No record: a crash before the submission was recorded, or a store shared with a
        // foreign writer. Leave it until it has been quiet for the grace period.
        return Ok(if quiet {
            group.keys.clone()
        } else {
            Vec::new()
        });
    };
    let ended_ms = job.finished_ms.unwrap_or(job.updated_ms);
    let ttl_passed = now_ms - ended_ms >= config.result_ttl.as_millis() as i64;
    Ok(match job.status {
        JobStatus::Queued | JobStatus::Running => Vec::new(),
        JobStatus::Failed => {
            if ttl_passed {
                group.keys.clone()
            } else {
                Vec::new()
            }
        }
        JobStatus::Succeeded => {
            let result = job.result.as_ref();
            let result_gone = result.is_none_or(|r| r.deleted_ms.is_some());
            group
                .keys
                .iter()
                .filter(|key| result_gone || (quiet && result.is_some_and(|r| &r.key != *key)))
                .cloned()
                .collect()
        }
    })
}
