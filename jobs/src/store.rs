use std::borrow::Cow;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};
use unmark_schemas::{EventKind, JobEvent, JobId, JobSpec};

use crate::{JobFailure, JobRecord, JobResult, JobStatus, StageRecord, StoreError};

/// The schema, oldest first. Embedded as text, so the binary needs no files at run time.
const MIGRATIONS: [(i64, &str, &str); 2] = [
    (1, "jobs", include_str!("../migrations/0001_jobs.sql")),
    (
        2,
        "accounts",
        include_str!("../migrations/0002_accounts.sql"),
    ),
];

/// A job as the gateway records it at submission.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob<'a> {
    /// The spec, with its id and pipeline.
    pub spec: &'a JobSpec,
    /// Where to POST the outcome (kept for webhooks).
    pub callback_url: Option<&'a str>,
    /// Submission time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who submitted it, and the credit it holds.
    pub owner: Option<Owner<'a>>,
}

/// The key a job was submitted with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Owner<'a> {
    /// The key's id.
    pub key_id: &'a str,
    /// The quota period holding the job's reserved credit; `None` when nothing is charged.
    pub quota_period: Option<&'a str>,
}

/// Job records in SQLite (WAL) or PostgreSQL, through one SQL dialect.
///
/// Only the gateway writes here; workers never touch SQL. Every write is an idempotent,
/// monotone upsert: an event applied twice, or out of order, leaves the same row.
#[derive(Clone, Debug)]
pub struct JobStore {
    pub(crate) pool: AnyPool,
}

impl JobStore {
    /// Connects to `url` (`sqlite://path` or `postgres://...`) and brings the schema up to
    /// date. A SQLite file and its folder are created when missing.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::check_url(url)?;
        install_default_drivers();
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(file).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Open(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            if path.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            }
        } else {
            url.to_owned()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        // WAL lets readers run beside the writer; NORMAL is durable against a
                        // process crash, which is what a job must survive.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::Open(format!("cannot connect to {}: {e}", redact(&url))))?;
        let migrator = Migrator {
            migrations: Cow::Owned(
                MIGRATIONS
                    .iter()
                    .map(|(version, name, sql)| {
                        Migration::new(
                            *version,
                            Cow::Borrowed(*name),
                            MigrationType::Simple,
                            Cow::Borrowed(*sql),
                            false,
                        )
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("cannot migrate the job database: {e}")))?;
        Ok(Self { pool })
    }

    /// Checks that `url` names a database unmark supports, without connecting.
    pub fn check_url(url: &str) -> Result<(), StoreError> {
        let supported = ["sqlite://", "postgres://", "postgresql://"];
        if supported.iter().any(|p| url.starts_with(p)) {
            Ok(())
        } else {
            Err(StoreError::Open(format!(
                "unsupported database URL {:?}; expected sqlite://PATH or postgres://...",
                redact(url)
            )))
        }
    }

    /// Which database this is: `SQLite` or `PostgreSQL`.
    pub async fn backend(&self) -> Result<String, StoreError> {
        let conn = self.pool.acquire().await?;
        Ok(conn.backend_name().to_owned())
    }

    /// Whether the database answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records a submitted job. Its events may have been recorded already (another gateway
    /// was faster): then only what the events cannot know is filled in.
    pub async fn create(&self, job: &NewJob<'_>) -> Result<(), StoreError> {
        let spec = serde_json::to_string(job.spec)
            .map_err(|e| StoreError::Data(format!("cannot encode the job spec: {e}")))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, pipeline, status, status_rank, spec, callback_url, \
                               created_ms, updated_ms, key_id, quota_period, slot_held) \
             VALUES ($1, $2, 'queued', 0, $3, $4, $5, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET pipeline = excluded.pipeline, \
                 spec = excluded.spec, callback_url = excluded.callback_url, \
                 created_ms = excluded.created_ms, key_id = excluded.key_id, \
                 quota_period = excluded.quota_period",
        )
        .bind(job.spec.id.as_str())
        .bind(job.spec.pipeline.as_str())
        .bind(spec)
        .bind(job.callback_url)
        .bind(job.at_ms)
        .bind(job.owner.map(|o| o.key_id))
        .bind(job.owner.and_then(|o| o.quota_period))
        .bind(job.owner.map(|_| 1_i64))
        .execute(&mut *tx)
        .await?;
        if let Some(owner) = job.owner {
            crate::accounts::count_request(&mut tx, owner.key_id, job.at_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Applies one event; a result is kept for `result_ttl` after the job succeeds.
    pub async fn apply(&self, event: &JobEvent, result_ttl: Duration) -> Result<(), StoreError> {
        let id = event.job_id.as_str();
        let at = event.at_ms as i64;
        let mut tx = self.pool.begin().await?;
        // Every event makes sure the row exists: events can come before the submission is
        // recorded (NATS submissions, another gateway).
        sqlx::query(
            "INSERT INTO jobs (id, pipeline, status, status_rank, created_ms, updated_ms) \
             VALUES ($1, '', 'queued', 0, $2, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        match &event.kind {
            EventKind::Accepted { pipeline } => {
                sqlx::query("UPDATE jobs SET pipeline = $2 WHERE id = $1 AND pipeline = ''")
                    .bind(id)
                    .bind(pipeline.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            EventKind::StageDone {
                step, stage, ms, ..
            } => {
                insert_stage(&mut tx, id, *step, stage, *ms).await?;
                sqlx::query(
                    "UPDATE jobs SET status = 'running', status_rank = 1, updated_ms = $2 \
                     WHERE id = $1 AND status_rank < 1",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            EventKind::Succeeded {
                result,
                content_type,
                timings,
            } => {
                for (step, timing) in timings.iter().enumerate() {
                    insert_stage(&mut tx, id, step as u32, &timing.stage, timing.ms).await?;
                }
                let expires = at.saturating_add(result_ttl.as_millis() as i64);
                let ended = sqlx::query(
                    "UPDATE jobs SET status = 'succeeded', status_rank = 2, updated_ms = $2, \
                         finished_ms = $2, result_key = $3, result_size = $4, \
                         content_type = $5, result_expires_ms = $6 \
                     WHERE id = $1 AND status_rank < 2",
                )
                .bind(id)
                .bind(at)
                .bind(result.key.as_str())
                .bind(result.size as i64)
                .bind(content_type.as_str())
                .bind(expires)
                .execute(&mut *tx)
                .await?;
                if ended.rows_affected() == 1 {
                    crate::accounts::settle(&mut tx, id, true, at).await?;
                }
            }
            EventKind::Failed {
                reason,
                message,
                stage,
            } => {
                let ended = sqlx::query(
                    "UPDATE jobs SET status = 'failed', status_rank = 2, updated_ms = $2, \
                         finished_ms = $2, error_reason = $3, error_message = $4, \
                         error_stage = $5 \
                     WHERE id = $1 AND status_rank < 2",
                )
                .bind(id)
                .bind(at)
                .bind(reason.as_str())
                .bind(message.as_str())
                .bind(stage.as_deref())
                .execute(&mut *tx)
                .await?;
                if ended.rows_affected() == 1 {
                    crate::accounts::settle(&mut tx, id, false, at).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// One job with its finished steps.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, pipeline, status, callback_url, created_ms, updated_ms, finished_ms, \
                    result_key, result_size, content_type, result_expires_ms, \
                    result_deleted_ms, error_reason, error_message, error_stage \
             FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let stages =
            sqlx::query("SELECT step, stage, ms FROM job_stages WHERE job_id = $1 ORDER BY step")
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| {
                    Ok(StageRecord {
                        step: r.try_get::<i64, _>("step")? as u32,
                        stage: r.try_get("stage")?,
                        ms: r.try_get("ms")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let status: String = row.try_get("status")?;
        let result = match row.try_get::<Option<String>, _>("result_key")? {
            Some(key) => Some(JobResult {
                key,
                size: row.try_get::<Option<i64>, _>("result_size")?.unwrap_or(0) as u64,
                content_type: row
                    .try_get::<Option<String>, _>("content_type")?
                    .unwrap_or_default(),
                expires_ms: row.try_get("result_expires_ms")?,
                deleted_ms: row.try_get("result_deleted_ms")?,
            }),
            None => None,
        };
        let error = match row.try_get::<Option<String>, _>("error_reason")? {
            Some(reason) => Some(JobFailure {
                reason,
                message: row
                    .try_get::<Option<String>, _>("error_message")?
                    .unwrap_or_default(),
                stage: row.try_get("error_stage")?,
            }),
            None => None,
        };
        Ok(Some(JobRecord {
            id: row.try_get("id")?,
            pipeline: row.try_get("pipeline")?,
            status: JobStatus::parse(&status)
                .ok_or_else(|| StoreError::Data(format!("unknown job status {status:?}")))?,
            callback_url: row.try_get("callback_url")?,
            created_ms: row.try_get("created_ms")?,
            updated_ms: row.try_get("updated_ms")?,
            finished_ms: row.try_get("finished_ms")?,
            result,
            error,
            stages,
        }))
    }

    /// Notes that a job's result is gone (handed over synchronously, or swept).
    pub async fn mark_result_deleted(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET result_deleted_ms = $2 WHERE id = $1 AND result_deleted_ms IS NULL",
        )
        .bind(id)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The specs of jobs that have not ended, oldest first: what an embedded broker must
    /// start again after a crash.
    pub async fn unfinished(&self) -> Result<Vec<JobSpec>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, spec FROM jobs WHERE status_rank < 2 AND spec IS NOT NULL \
             ORDER BY created_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut specs = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            let text: String = row.try_get("spec")?;
            match serde_json::from_str::<JobSpec>(&text) {
                Ok(spec) => specs.push(spec),
                Err(e) => tracing::warn!(job_id = id, error = %e, "unreadable job spec; skipped"),
            }
        }
        Ok(specs)
    }

    /// Marks jobs that have not moved since `before_ms` as failed: nothing will finish them.
    /// Returns their ids.
    pub async fn fail_stale(
        &self,
        before_ms: i64,
        now_ms: i64,
        message: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        let rows = sqlx::query("SELECT id FROM jobs WHERE status_rank < 2 AND updated_ms < $1")
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await?;
        let mut ids = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let mut tx = self.pool.begin().await?;
            let ended = sqlx::query(
                "UPDATE jobs SET status = 'failed', status_rank = 2, updated_ms = $2, \
                     finished_ms = $2, error_reason = 'timeout', error_message = $3 \
                 WHERE id = $1 AND status_rank < 2",
            )
            .bind(id.as_str())
            .bind(now_ms)
            .bind(message)
            .execute(&mut *tx)
            .await?;
            if ended.rows_affected() == 1 {
                crate::accounts::settle(&mut tx, &id, false, now_ms).await?;
            }
            tx.commit().await?;
            if let Ok(id) = JobId::new(id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Deletes the records of jobs that ended before `before_ms` (their stages and webhook
    /// deliveries too; usage statistics stay); returns how many jobs.
    pub async fn forget_jobs(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let old = "SELECT id FROM jobs WHERE status_rank = 2 AND finished_ms < $1";
        for table in ["job_stages", "webhook_deliveries"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE job_id IN ({old})"))
                .bind(before_ms)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM jobs WHERE status_rank = 2 AND finished_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Jobs accepted that have not ended.
    pub async fn count_unfinished(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status_rank < 2")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// Marks results whose TTL has passed as deleted; returns the jobs concerned.
    pub async fn expire_results(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "UPDATE jobs SET result_deleted_ms = $1 \
             WHERE result_expires_ms < $1 AND result_deleted_ms IS NULL RETURNING id",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?)
    }
}

async fn insert_stage(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    step: u32,
    stage: &str,
    ms: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO job_stages (job_id, step, stage, ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (job_id, step) DO NOTHING",
    )
    .bind(id)
    .bind(i64::from(step))
    .bind(stage)
    .bind(ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://u:secret@127.0.0.1:5/db"),
            "postgres://u:***@127.0.0.1:5/db"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
