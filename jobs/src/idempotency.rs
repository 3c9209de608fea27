//! `Idempotency-Key`: the first answer to a key's request is kept and replayed.

use sqlx::Row;

use crate::{JobStore, StoreError};

/// An answer kept for replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// HTTP status.
    pub status: u16,
    /// Selected headers, as a JSON object.
    pub headers: String,
    /// The body.
    pub body: Vec<u8>,
}

/// What a request with an idempotency key should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// It is the first: run it, then `finish` (or `abandon`).
    First,
    /// The same request was answered before: replay this.
    Replay(Stored),
    /// The key was used for a different request.
    Mismatch,
    /// The same request is still being answered.
    InFlight,
}

impl JobStore {
    /// Claims `idem_key` for a request whose content hashes to `request_hash`. A claim older
    /// than `ttl_ms`, or left in flight for longer than `abandoned_ms` (a crashed gateway),
    /// no longer counts.
    pub async fn idempotency_begin(
        &self,
        key_id: &str,
        idem_key: &str,
        request_hash: &str,
        now_ms: i64,
        ttl_ms: i64,
        abandoned_ms: i64,
    ) -> Result<Begin, StoreError> {
        sqlx::query(
            "DELETE FROM idempotency WHERE key_id = $1 AND idem_key = $2 \
             AND (created_ms < $3 OR (state = 'in_flight' AND created_ms < $4))",
        )
        .bind(key_id)
        .bind(idem_key)
        .bind(now_ms - ttl_ms)
        .bind(now_ms - abandoned_ms)
        .execute(&self.pool)
        .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency (key_id, idem_key, request_hash, state, created_ms) \
             VALUES ($1, $2, $3, 'in_flight', $4) ON CONFLICT (key_id, idem_key) DO NOTHING",
        )
        .bind(key_id)
        .bind(idem_key)
        .bind(request_hash)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() == 1 {
            return Ok(Begin::First);
        }
        let Some(row) = sqlx::query(
            "SELECT request_hash, state, status, headers, body FROM idempotency \
             WHERE key_id = $1 AND idem_key = $2",
        )
        .bind(key_id)
        .bind(idem_key)
        .fetch_optional(&self.pool)
        .await?
        else {
            // Deleted in between (expired): the caller may simply try again.
            return Ok(Begin::InFlight);
        };
        let hash: String = row.try_get("request_hash")?;
        if hash != request_hash {
            return Ok(Begin::Mismatch);
        }
        let state: String = row.try_get("state")?;
        if state != "done" {
            return Ok(Begin::InFlight);
        }
        Ok(Begin::Replay(Stored {
            status: row.try_get::<Option<i64>, _>("status")?.unwrap_or(500) as u16,
            headers: row
                .try_get::<Option<String>, _>("headers")?
                .unwrap_or_default(),
            body: row
                .try_get::<Option<Vec<u8>>, _>("body")?
                .unwrap_or_default(),
        }))
    }

    /// Keeps the first answer.
    pub async fn idempotency_finish(
        &self,
        key_id: &str,
        idem_key: &str,
        answer: &Stored,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency SET state = 'done', status = $3, headers = $4, body = $5 \
             WHERE key_id = $1 AND idem_key = $2",
        )
        .bind(key_id)
        .bind(idem_key)
        .bind(i64::from(answer.status))
        .bind(&answer.headers)
        .bind(&answer.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a claim whose request failed on our side, so that it can be retried.
    pub async fn idempotency_abandon(
        &self,
        key_id: &str,
        idem_key: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency WHERE key_id = $1 AND idem_key = $2")
            .bind(key_id)
            .bind(idem_key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes answers older than `before_ms`; returns how many.
    pub async fn idempotency_expire(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency WHERE created_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
