//! Webhook deliveries: enqueued in the transaction that ends a job, so each job with a
//! `callback_url` gets exactly one delivery record, whichever gateway recorded its end.

use serde::Serialize;
use sqlx::Row;

use crate::{JobStore, StoreError};

/// A delivery that is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The job.
    pub job_id: String,
    /// Where to POST.
    pub url: String,
    /// The key whose secret signs it, if any.
    pub key_id: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// The `next_ms` seen, for claiming.
    pub next_ms: i64,
}

/// Where a job's webhook stands, as the job's record shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookState {
    /// `pending`, `delivered` or `failed` (given up on).
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// What went wrong with the last attempt.
    pub last_error: Option<String>,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt<'a> {
    /// The receiver answered 2xx.
    pub delivered: bool,
    /// Its HTTP status, if it answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub error: Option<&'a str>,
    /// When to try again; `None` gives up.
    pub retry_at_ms: Option<i64>,
}

/// Enqueues the webhook of a job that just ended (no-op without a `callback_url`).
pub(crate) async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    job_id: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_deliveries \
             (job_id, url, key_id, state, attempts, next_ms, created_ms, updated_ms) \
         SELECT id, callback_url, key_id, 'pending', 0, $2, $2, $2 FROM jobs \
         WHERE id = $1 AND callback_url IS NOT NULL \
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(job_id)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

impl JobStore {
    /// Deliveries due at `now_ms`, oldest first.
    pub async fn due_webhooks(&self, now_ms: i64, limit: i64) -> Result<Vec<Due>, StoreError> {
        let rows = sqlx::query(
            "SELECT job_id, url, key_id, attempts, next_ms FROM webhook_deliveries \
             WHERE state = 'pending' AND next_ms <= $1 ORDER BY next_ms LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            due.push(Due {
                job_id: row.try_get("job_id")?,
                url: row.try_get("url")?,
                key_id: row.try_get("key_id")?,
                attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
                next_ms: row.try_get("next_ms")?,
            });
        }
        Ok(due)
    }

    /// Takes a due delivery for one attempt until `lease_until_ms`; false if another
    /// gateway took it first.
    pub async fn claim_webhook(&self, due: &Due, lease_until_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET next_ms = $3 \
             WHERE job_id = $1 AND state = 'pending' AND next_ms = $2",
        )
        .bind(&due.job_id)
        .bind(due.next_ms)
        .bind(lease_until_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records one attempt.
    pub async fn record_attempt(
        &self,
        job_id: &str,
        attempt: &Attempt<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (state, next) = match (attempt.delivered, attempt.retry_at_ms) {
            (true, _) => ("delivered", now_ms),
            (false, Some(at)) => ("pending", at),
            (false, None) => ("failed", now_ms),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $2, attempts = attempts + 1, next_ms = $3, \
                 last_status = $4, last_error = $5, updated_ms = $6 WHERE job_id = $1",
        )
        .bind(job_id)
        .bind(state)
        .bind(next)
        .bind(attempt.status.map(i64::from))
        .bind(attempt.error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A job's webhook, if it has one.
    pub async fn webhook_state(&self, job_id: &str) -> Result<Option<WebhookState>, StoreError> {
        let row = sqlx::query(
            "SELECT state, attempts, last_status, last_error FROM webhook_deliveries \
             WHERE job_id = $1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(WebhookState {
            state: row.try_get("state")?,
            attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
            last_status: row
                .try_get::<Option<i64>, _>("last_status")?
                .map(|s| s as u16),
            last_error: row.try_get("last_error")?,
        }))
    }

    /// The secret that signs a key's webhooks.
    pub async fn webhook_secret(&self, key_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT webhook_secret FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("webhook_secret")).transpose()?)
    }
}
