//! Rate limits shared by every gateway on one database: the generic cell rate algorithm
//! (GCRA) with weighted costs, decided by one conditional upsert per request.

use sqlx::Row;

use crate::{JobStore, StoreError};

/// A bucket's settings: a sustained rate and how much may be spent at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens per minute.
    pub per_minute: u32,
    /// Tokens that may be spent at once.
    pub burst: u32,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The bucket's size (`RateLimit-Limit`).
    pub limit: u32,
    /// Tokens left (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Seconds until the bucket is full again (`RateLimit-Reset`).
    pub reset_secs: u64,
    /// When refused: seconds until the request would be allowed (`Retry-After`).
    pub retry_after_secs: u64,
}

fn ceil_secs(us: i64) -> u64 {
    (us.max(0) as u64).div_ceil(1_000_000)
}

impl JobStore {
    /// Forgets buckets that are full again (their state says nothing any more); returns how
    /// many.
    pub async fn forget_full_buckets(&self, now_us: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE tat_us < $1")
            .bind(now_us)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Spends `cost` tokens of `bucket`, or refuses. A cost above the burst is charged as
    /// the burst, so that any request can pass on an idle bucket.
    pub async fn take_tokens(
        &self,
        bucket: &str,
        cost: u32,
        rate: Rate,
        now_us: i64,
    ) -> Result<Decision, StoreError> {
        let burst = rate.burst.max(1);
        let interval = 60_000_000 / i64::from(rate.per_minute.max(1));
        let cost = cost.clamp(1, burst);
        let increment = i64::from(cost) * interval;
        let tolerance = i64::from(burst) * interval;
        // One statement decides and returns the new state: a new bucket starts full (its
        // first request always fits, as a cost never exceeds the burst); an existing one
        // advances only if the request fits. The sweeper may delete a full bucket at any
        // moment without changing that.
        let taken = sqlx::query(
            "INSERT INTO rate_limits (bucket, tat_us) VALUES ($1, $2 + $3) \
             ON CONFLICT (bucket) DO UPDATE \
             SET tat_us = (CASE WHEN rate_limits.tat_us > $2 THEN rate_limits.tat_us ELSE $2 END) + $3 \
             WHERE (CASE WHEN rate_limits.tat_us > $2 THEN rate_limits.tat_us ELSE $2 END) \
                   + $3 - $2 <= $4 \
             RETURNING tat_us",
        )
        .bind(bucket)
        .bind(now_us)
        .bind(increment)
        .bind(tolerance)
        .fetch_optional(&self.pool)
        .await?;
        let allowed = taken.is_some();
        let tat: i64 = match taken {
            Some(row) => row.try_get("tat_us")?,
            // Refused: read the bucket for the headers (deleted since means full).
            None => match sqlx::query("SELECT tat_us FROM rate_limits WHERE bucket = $1")
                .bind(bucket)
                .fetch_optional(&self.pool)
                .await?
            {
                Some(row) => row.try_get("tat_us")?,
                None => now_us,
            },
        };
        let ahead = (tat - now_us).max(0);
        Ok(Decision {
            allowed,
            limit: burst,
            remaining: ((tolerance - ahead).max(0) / interval) as u32,
            reset_secs: ceil_secs(ahead),
            retry_after_secs: if allowed {
                0
            } else {
                ceil_secs(ahead + increment - tolerance).max(1)
            },
        })
    }
}
