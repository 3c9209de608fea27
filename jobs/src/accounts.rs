//! API keys, plans, quotas and usage: what selling the API needs.
//!
//! A key looks like `um_<id>_<secret>`: `id` (8 hex digits) is public and indexes the row,
//! `secret` carries 244 random bits. Only the SHA-256 of the whole key is stored, compared in
//! constant time. Credits are reserved before a job starts and settled when it ends, so a
//! failed job costs nothing and concurrent requests can never spend more than the quota.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::{JobStore, StoreError};

/// How often a quota starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    /// Every UTC day.
    Day,
    /// Every UTC month.
    Month,
}

impl QuotaPeriod {
    /// The period containing `now_ms`: `2026-11-25` or `2026-11`.
    pub fn key(self, now_ms: i64) -> String {
        let (y, m, d) = civil(now_ms);
        match self {
            Self::Day => format!("{y:04}-{m:02}-{d:02}"),
            Self::Month => format!("{y:04}-{m:02}"),
        }
    }

    /// When the period containing `now_ms` ends (ms since the Unix epoch).
    pub fn resets_ms(self, now_ms: i64) -> i64 {
        let day_ms = 86_400_000;
        match self {
            Self::Day => (now_ms.div_euclid(day_ms) + 1) * day_ms,
            Self::Month => {
                let (y, m, _) = civil(now_ms);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * day_ms
            }
        }
    }
}

/// What a plan allows. Plans live in the config file (`[plans.<name>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Successful images per period.
    pub quota: u64,
    /// The quota's period.
    pub period: QuotaPeriod,
    /// Sustained request rate, in tokens per minute (a request costs one token per started
    /// megapixel).
    pub requests_per_minute: u32,
    /// Tokens that may be spent at once above the sustained rate.
    pub burst: u32,
    /// Jobs of one key running at once.
    pub max_concurrent: u32,
    /// Largest image, in megapixels.
    pub max_megapixels: f64,
    /// Admission under load: higher is admitted longer.
    pub priority: u8,
}

/// The plans unmark ships with (remove.bg-like tiers).
pub fn default_plans() -> BTreeMap<String, Plan> {
    let plan = |quota, period, rpm, burst, concurrent, mp, priority| Plan {
        quota,
        period,
        requests_per_minute: rpm,
        burst,
        max_concurrent: concurrent,
        max_megapixels: mp,
        priority,
    };
    use QuotaPeriod::{Day, Month};
    BTreeMap::from([
        ("free".to_owned(), plan(10, Day, 10, 5, 1, 12.0, 0)),
        ("basic".to_owned(), plan(3_000, Month, 60, 20, 4, 25.0, 1)),
        ("pro".to_owned(), plan(20_000, Month, 300, 60, 16, 50.0, 2)),
        (
            "enterprise".to_owned(),
            plan(150_000, Month, 1_200, 200, 64, 100.0, 3),
        ),
    ])
}

/// A stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    /// Public prefix and row id.
    pub id: String,
    /// Who it is for.
    pub name: String,
    /// Its plan's name.
    pub plan: String,
    /// Whether it may see every key's usage.
    pub admin: bool,
    /// Signs this key's webhooks.
    #[serde(skip)]
    pub webhook_secret: String,
    /// Creation time (ms since the Unix epoch).
    pub created_ms: i64,
    /// Revocation time, if revoked.
    pub revoked_ms: Option<i64>,
}

/// A key just made: the secret is in `key`, shown once.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The whole key, to hand to the customer.
    pub key: String,
    /// What is stored.
    pub record: ApiKey,
}

/// What a presented key turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyCheck {
    /// A live key.
    Valid(ApiKey),
    /// A key that was revoked.
    Revoked,
    /// No such key.
    Unknown,
}

/// A credit held for a job until it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// The quota period that holds it.
    pub period: String,
    /// Credits of the period.
    pub limit: u64,
    /// Credits left once this job is charged.
    pub remaining: u64,
    /// When the period ends.
    pub resets_ms: i64,
}

/// The quota is used up.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaExhausted {
    /// Credits of the period.
    pub limit: u64,
    /// The period.
    pub period: String,
    /// When it ends.
    pub resets_ms: i64,
}

/// Counts of one day, or of a longer span.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageCounts {
    /// `YYYY-MM-DD`, or the span (`YYYY-MM`).
    pub period: String,
    /// Jobs submitted.
    pub requests: u64,
    /// Jobs that succeeded (each charged one credit).
    pub successes: u64,
    /// Jobs that failed (free).
    pub failures: u64,
    /// Mean time from submission to the end of a job, in ms.
    pub avg_processing_ms: f64,
}

/// One key's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// The key's id.
    pub key_id: String,
    /// Today (UTC).
    pub today: UsageCounts,
    /// This month (UTC).
    pub month: UsageCounts,
    /// Per day, newest first (up to 31 days).
    pub history: Vec<UsageCounts>,
}

/// Where a key stands in its quota period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaState {
    /// The period.
    pub period: String,
    /// Credits of the period.
    pub limit: u64,
    /// Spent by succeeded jobs.
    pub used: u64,
    /// Held by running jobs.
    pub reserved: u64,
    /// Left.
    pub remaining: u64,
    /// When the period ends.
    pub resets_ms: i64,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        // The 122 random bits of a v4 UUID, from the OS generator.
        let uuid = uuid::Uuid::new_v4();
        let raw = uuid.as_bytes();
        // Skip the version and variant nibbles' bytes (6 and 8): all of the rest is random.
        for (i, b) in raw.iter().enumerate() {
            if i != 6 && i != 8 {
                out.push_str(&format!("{b:02x}"));
            }
        }
    }
    out.truncate(bytes * 2);
    out
}

/// Splits `um_<id>_<secret>`.
fn key_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix("um_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 8 && !secret.is_empty()).then_some(id)
}

fn key_from_row(row: &sqlx::any::AnyRow) -> Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        plan: row.try_get("plan")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        webhook_secret: row.try_get("webhook_secret")?,
        created_ms: row.try_get("created_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}

const KEY_COLUMNS: &str = "id, name, plan, admin, webhook_secret, created_ms, revoked_ms";

impl JobStore {
    /// Makes a key; its secret is returned once and never stored.
    pub async fn create_key(
        &self,
        name: &str,
        plan: &str,
        admin: bool,
        now_ms: i64,
    ) -> Result<NewKey, StoreError> {
        // The public id is short: on the rare collision, draw again.
        for _ in 0..8 {
            let id = random_hex(4);
            let key = format!("um_{id}_{}", random_hex(31));
            let record = ApiKey {
                id: id.clone(),
                name: name.to_owned(),
                plan: plan.to_owned(),
                admin,
                webhook_secret: random_hex(32),
                created_ms: now_ms,
                revoked_ms: None,
            };
            let inserted = sqlx::query(
                "INSERT INTO api_keys (id, hash, name, plan, admin, webhook_secret, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(sha256_hex(&key))
            .bind(name)
            .bind(plan)
            .bind(i64::from(admin))
            .bind(&record.webhook_secret)
            .bind(now_ms)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => return Ok(NewKey { key, record }),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Data("cannot draw an unused key id".into()))
    }

    /// Every key, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(key_from_row).collect::<Result<_, _>>()?)
    }

    /// Revokes a key at once; false if there is no such live key.
    pub async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL")
                .bind(id)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves a key to another plan; false if there is no such key.
    pub async fn set_plan(&self, id: &str, plan: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET plan = $2 WHERE id = $1")
            .bind(id)
            .bind(plan)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Checks a presented key: looked up by its public id, compared by hash in constant time.
    pub async fn authenticate(&self, presented: &str) -> Result<KeyCheck, StoreError> {
        let Some(id) = key_id(presented) else {
            return Ok(KeyCheck::Unknown);
        };
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS}, hash FROM api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(KeyCheck::Unknown);
        };
        let stored: String = row.try_get("hash")?;
        let matches: bool = sha256_hex(presented)
            .as_bytes()
            .ct_eq(stored.as_bytes())
            .into();
        if !matches {
            return Ok(KeyCheck::Unknown);
        }
        let key = key_from_row(&row)?;
        Ok(if key.revoked_ms.is_some() {
            KeyCheck::Revoked
        } else {
            KeyCheck::Valid(key)
        })
    }

    /// Whether any live key exists (without one, the API may run open).
    pub async fn has_live_keys(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT id FROM api_keys WHERE revoked_ms IS NULL LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Holds one credit of `key_id`'s current period, unless the quota is used up. One
    /// conditional upsert decides, so concurrent requests never hold more than the quota.
    pub async fn reserve_credit(
        &self,
        key_id: &str,
        plan: &Plan,
        now_ms: i64,
    ) -> Result<Result<Reservation, QuotaExhausted>, StoreError> {
        let period = plan.period.key(now_ms);
        let resets_ms = plan.period.resets_ms(now_ms);
        let exhausted = || QuotaExhausted {
            limit: plan.quota,
            period: period.clone(),
            resets_ms,
        };
        if plan.quota == 0 {
            return Ok(Err(exhausted()));
        }
        // One statement decides and returns the period's counts after this reservation.
        let held = sqlx::query(
            "INSERT INTO quota_usage (key_id, period, used, reserved) VALUES ($1, $2, 0, 1) \
             ON CONFLICT (key_id, period) DO UPDATE \
             SET reserved = quota_usage.reserved + 1 \
             WHERE quota_usage.used + quota_usage.reserved < $3 \
             RETURNING used, reserved",
        )
        .bind(key_id)
        .bind(&period)
        .bind(plan.quota as i64)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = held else {
            return Ok(Err(exhausted()));
        };
        let taken = (row.try_get::<i64, _>("used")? + row.try_get::<i64, _>("reserved")?).max(0);
        Ok(Ok(Reservation {
            period: period.clone(),
            limit: plan.quota,
            remaining: plan.quota.saturating_sub(taken as u64),
            resets_ms,
        }))
    }

    /// Gives back a credit held for a job that never started.
    pub async fn release_credit(&self, key_id: &str, period: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE quota_usage SET reserved = reserved - 1 \
             WHERE key_id = $1 AND period = $2 AND reserved > 0",
        )
        .bind(key_id)
        .bind(period)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Where `key_id` stands in its current quota period.
    pub async fn quota_state(
        &self,
        key_id: &str,
        plan: &Plan,
        now_ms: i64,
    ) -> Result<QuotaState, StoreError> {
        let period = plan.period.key(now_ms);
        let row =
            sqlx::query("SELECT used, reserved FROM quota_usage WHERE key_id = $1 AND period = $2")
                .bind(key_id)
                .bind(&period)
                .fetch_optional(&self.pool)
                .await?;
        let (used, reserved) = match row {
            Some(r) => (
                r.try_get::<i64, _>("used")?.max(0) as u64,
                r.try_get::<i64, _>("reserved")?.max(0) as u64,
            ),
            None => (0, 0),
        };
        Ok(QuotaState {
            period,
            limit: plan.quota,
            used,
            reserved,
            remaining: plan.quota.saturating_sub(used + reserved),
            resets_ms: plan.period.resets_ms(now_ms),
        })
    }

    /// Takes one of `key_id`'s `cap` concurrency slots; false when all are taken. One
    /// conditional upsert decides, so the cap is exact under any concurrency. The job's end
    /// gives the slot back.
    pub async fn take_slot(&self, key_id: &str, cap: u32) -> Result<bool, StoreError> {
        if cap == 0 {
            return Ok(false);
        }
        let taken = sqlx::query(
            "INSERT INTO key_slots (key_id, running) VALUES ($1, 1) \
             ON CONFLICT (key_id) DO UPDATE SET running = key_slots.running + 1 \
             WHERE key_slots.running < $2 \
             RETURNING running",
        )
        .bind(key_id)
        .bind(i64::from(cap))
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.is_some())
    }

    /// Gives back a slot of a job that never started.
    pub async fn give_slot(&self, key_id: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        release_slot(&mut conn, key_id).await?;
        Ok(())
    }

    /// Gives back the slot of a job that has ended (its synchronous answer is out), unless
    /// its recorded end already did.
    pub async fn release_job_slot(&self, job_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        release_job_slot(&mut tx, job_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A key's usage: today, this month, and the last 31 days.
    pub async fn usage(&self, key_id: &str, now_ms: i64) -> Result<Usage, StoreError> {
        let today = QuotaPeriod::Day.key(now_ms);
        let month = QuotaPeriod::Month.key(now_ms);
        let rows = sqlx::query(
            "SELECT day, requests, successes, failures, total_ms FROM usage_stats \
             WHERE key_id = $1 AND day >= $2 ORDER BY day DESC",
        )
        .bind(key_id)
        .bind(QuotaPeriod::Day.key(now_ms - 30 * 86_400_000))
        .fetch_all(&self.pool)
        .await?;
        let mut history = Vec::with_capacity(rows.len());
        let mut sums = Vec::with_capacity(rows.len());
        for row in &rows {
            let day: String = row.try_get("day")?;
            let counts = [
                row.try_get::<i64, _>("requests")?,
                row.try_get::<i64, _>("successes")?,
                row.try_get::<i64, _>("failures")?,
            ]
            .map(|n| n.max(0) as u64);
            let total_ms: f64 = row.try_get("total_ms")?;
            history.push(counts_of(day.clone(), counts, total_ms));
            sums.push((day, counts, total_ms));
        }
        let span = |prefix: &str| {
            let (mut counts, mut total) = ([0u64; 3], 0.0);
            for (day, c, t) in sums.iter().filter(|(d, ..)| d.starts_with(prefix)) {
                let _ = day;
                for (sum, n) in counts.iter_mut().zip(c) {
                    *sum += n;
                }
                total += t;
            }
            counts_of(prefix.to_owned(), counts, total)
        };
        Ok(Usage {
            key_id: key_id.to_owned(),
            today: span(&today),
            month: span(&month),
            history,
        })
    }
}

fn counts_of(
    period: String,
    [requests, successes, failures]: [u64; 3],
    total_ms: f64,
) -> UsageCounts {
    let ended = successes + failures;
    UsageCounts {
        period,
        requests,
        successes,
        failures,
        avg_processing_ms: if ended == 0 {
            0.0
        } else {
            total_ms / ended as f64
        },
    }
}

/// Counts a submitted job in its key's usage (inside the submission's statement order).
pub(crate) async fn count_request(
    conn: &mut sqlx::AnyConnection,
    key_id: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO usage_stats (day, key_id, requests, successes, failures, total_ms) \
         VALUES ($1, $2, 1, 0, 0, 0) \
         ON CONFLICT (day, key_id) DO UPDATE SET requests = usage_stats.requests + 1",
    )
    .bind(QuotaPeriod::Day.key(at_ms))
    .bind(key_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Settles a job that just ended: its webhook, its usage, and its reserved credit (charged
/// on success, given back on failure). Called once per job, by the update that ended it.
pub(crate) async fn settle(
    conn: &mut sqlx::AnyConnection,
    job_id: &str,
    succeeded: bool,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    crate::webhooks::enqueue(&mut *conn, job_id, at_ms).await?;
    let Some(row) = sqlx::query("SELECT key_id, quota_period, created_ms FROM jobs WHERE id = $1")
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(());
    };
    let Some(key_id) = row.try_get::<Option<String>, _>("key_id")? else {
        return Ok(());
    };
    let created: i64 = row.try_get("created_ms")?;
    release_job_slot(&mut *conn, job_id).await?;
    let (ok, failed) = if succeeded { (1_i64, 0_i64) } else { (0, 1) };
    sqlx::query(
        "INSERT INTO usage_stats (day, key_id, requests, successes, failures, total_ms) \
         VALUES ($1, $2, 0, $3, $4, $5) \
         ON CONFLICT (day, key_id) DO UPDATE SET \
             successes = usage_stats.successes + $3, failures = usage_stats.failures + $4, \
             total_ms = usage_stats.total_ms + $5",
    )
    .bind(QuotaPeriod::Day.key(at_ms))
    .bind(&key_id)
    .bind(ok)
    .bind(failed)
    .bind((at_ms - created).max(0) as f64)
    .execute(&mut *conn)
    .await?;
    if let Some(period) = row.try_get::<Option<String>, _>("quota_period")? {
        sqlx::query(
            "UPDATE quota_usage SET used = used + $3, reserved = reserved - 1 \
             WHERE key_id = $1 AND period = $2 AND reserved > 0",
        )
        .bind(&key_id)
        .bind(&period)
        .bind(ok)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn release_slot(conn: &mut sqlx::AnyConnection, key_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE key_slots SET running = running - 1 WHERE key_id = $1 AND running > 0")
        .bind(key_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives back the slot a job holds, if it still holds one: only the first call for a job
/// counts.
async fn release_job_slot(conn: &mut sqlx::AnyConnection, job_id: &str) -> Result<(), sqlx::Error> {
    let cleared = sqlx::query("UPDATE jobs SET slot_held = 0 WHERE id = $1 AND slot_held = 1")
        .bind(job_id)
        .execute(&mut *conn)
        .await?;
    if cleared.rows_affected() == 1 {
        let key: Option<String> = sqlx::query("SELECT key_id FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut *conn)
            .await?
            .try_get("key_id")?;
        if let Some(key) = key {
            release_slot(conn, &key).await?;
        }
    }
    Ok(())
}

/// (year, month, day) of a time in ms since the Unix epoch, UTC (proleptic Gregorian).
fn civil(ms: i64) -> (i64, u32, u32) {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since the Unix epoch of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_utc_calendar() {
        // 2024-02-29T23:59:59.999Z, a leap day.
        let t = days_from_civil(2024, 2, 29) * 86_400_000 + 86_399_999;
        assert_eq!(civil(t), (2024, 2, 29));
        assert_eq!(QuotaPeriod::Day.key(t), "2024-02-29");
        assert_eq!(QuotaPeriod::Month.key(t), "2024-02");
        assert_eq!(QuotaPeriod::Day.resets_ms(t), t + 1);
        assert_eq!(QuotaPeriod::Month.resets_ms(t), t + 1);
        let dec = days_from_civil(2026, 12, 31) * 86_400_000;
        assert_eq!(civil(QuotaPeriod::Month.resets_ms(dec)), (2027, 1, 1));
        assert_eq!(civil(0), (1970, 1, 1));
    }

    #[test]
    fn keys_have_the_documented_shape() {
        let secret = random_hex(31);
        assert_eq!(secret.len(), 62);
        assert_ne!(secret, random_hex(31));
        assert_eq!(key_id("um_0123abcd_ffff"), Some("0123abcd"));
        for bad in [
            "um_0123abcd",
            "xx_0123abcd_ff",
            "um_short_ff",
            "um_0123abcd_",
        ] {
            assert_eq!(key_id(bad), None, "{bad}");
        }
    }
}
