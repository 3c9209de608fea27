//! Quotas and usage: a credit is held before a job starts and charged only if it succeeds.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use unmark_broker::now_ms;
use unmark_jobs::Owner;
use unmark_jobs::accounts::{QuotaPeriod, Reservation};
use unmark_schemas::params::WatermarkOptions;

use crate::auth::{Caller, STATIC_KEY};
use crate::{ApiError, AppState};

/// Seconds from now until `at_ms`, at least 1.
fn seconds_until(at_ms: i64) -> i64 {
    ((at_ms - now_ms() as i64 + 999) / 1000).max(1)
}

fn period_name(period: QuotaPeriod) -> &'static str {
    match period {
        QuotaPeriod::Day => "day",
        QuotaPeriod::Month => "month",
    }
}

/// Admits a request costing `cost` rate tokens, in order: admission control under load (503, lowest
/// priority first), the key's concurrency cap, the key's rate (one token per started
/// megapixel), then one credit of its quota, held until the job ends. `None` when the server
/// runs without keys.
pub(crate) async fn hold(
    state: &AppState,
    caller: &Caller,
    cost: u32,
    rid: &Option<String>,
) -> Result<Option<Reservation>, ApiError> {
    let Some(plan) = &caller.plan else {
        return Ok(None);
    };
    let store = state.jobs.store();
    let internal = |e| ApiError::internal(e, rid.clone());
    let depth = state.metrics.max_queue_depth();
    let threshold = state.config.rate_limit.admission_queue_depth * (u64::from(plan.priority) + 1);
    if depth >= threshold {
        state.metrics.rate_limited("admission");
        let retry = 5;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "the service is busy ({depth} messages wait for a stage); the {} plan is \
                 admitted up to {threshold}; retry in {retry} s",
                caller.plan_name
            ),
        )
        .with_request_id(rid.clone())
        .with_header("retry-after", retry)
        .with_header("ratelimit-limit", threshold)
        .with_header("ratelimit-remaining", 0)
        .with_header("ratelimit-reset", retry));
    }
    let slot = store
        .take_slot(&caller.key_id, plan.max_concurrent)
        .await
        .map_err(internal)?;
    if !slot {
        state.metrics.rate_limited("concurrency");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency-limit",
            format!(
                "{} jobs of this key are running, all the {} plan allows at once",
                plan.max_concurrent, caller.plan_name
            ),
        )
        .with_request_id(rid.clone())
        .with_header("retry-after", 1)
        .with_header("ratelimit-limit", plan.max_concurrent)
        .with_header("ratelimit-remaining", 0)
        .with_header("ratelimit-reset", 1));
    }
    // The slot is held from here: every later refusal gives it back.
    let admitted = admit_held_slot(state, caller, plan, cost, rid).await;
    if admitted.is_err()
        && let Err(e) = store.give_slot(&caller.key_id).await
    {
        tracing::warn!(key_id = caller.key_id, error = %e, "cannot give a slot back");
    }
    admitted.map(Some)
}

/// The rate and the quota of a request that holds a concurrency slot.
async fn admit_held_slot(
    state: &AppState,
    caller: &Caller,
    plan: &unmark_jobs::accounts::Plan,
    cost: u32,
    rid: &Option<String>,
) -> Result<Reservation, ApiError> {
    let store = state.jobs.store();
    let internal = |e| ApiError::internal(e, rid.clone());
    let rate = unmark_jobs::limits::Rate {
        per_minute: plan.requests_per_minute,
        burst: plan.burst,
    };
    crate::limits::spend(
        state,
        "key",
        &format!("key:{}", caller.key_id),
        cost,
        rate,
        "this key",
        rid,
    )
    .await?;
    let now = now_ms() as i64;
    match store
        .reserve_credit(&caller.key_id, plan, now)
        .await
        .map_err(internal)?
    {
        Ok(reservation) => Ok(reservation),
        Err(exhausted) => {
            state.metrics.quota_exhausted();
            let wait = seconds_until(exhausted.resets_ms);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota-exhausted",
                format!(
                    "the {} plan's quota of {} images per {} is used up (period {}); it \
                     starts again in {wait} s",
                    caller.plan_name,
                    exhausted.limit,
                    period_name(plan.period),
                    exhausted.period
                ),
            )
            .with_request_id(rid.clone())
            .with_header("retry-after", wait)
            .with_header("ratelimit-limit", exhausted.limit)
            .with_header("ratelimit-remaining", 0)
            .with_header("ratelimit-reset", wait))
        }
    }
}

/// Gives back the slot and the credit held for a job that was not started.
pub(crate) async fn release(state: &AppState, caller: &Caller, held: &Option<Reservation>) {
    let store = state.jobs.store();
    if caller.plan.is_some()
        && let Err(e) = store.give_slot(&caller.key_id).await
    {
        tracing::warn!(key_id = caller.key_id, error = %e, "cannot give a slot back");
    }
    if let Some(r) = held
        && let Err(e) = store.release_credit(&caller.key_id, &r.period).await
    {
        tracing::warn!(key_id = caller.key_id, error = %e, "cannot give a credit back");
    }
}

/// The owner recorded with a job.
pub(crate) fn owner<'a>(caller: &'a Caller, held: &'a Option<Reservation>) -> Option<Owner<'a>> {
    caller.plan.as_ref().map(|_| Owner {
        key_id: &caller.key_id,
        quota_period: held.as_ref().map(|r| r.period.as_str()),
    })
}

/// The request's options within the caller's plan: no image larger than it allows.
pub(crate) fn within_plan(caller: &Caller, mut options: WatermarkOptions) -> WatermarkOptions {
    if let Some(plan) = &caller.plan {
        options.decode.max_megapixels = options.decode.max_megapixels.min(plan.max_megapixels);
    }
    options
}

/// `GET /api/v1/usage`: the caller's own usage and quota.
pub(crate) async fn usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let Some(plan) = &caller.plan else {
        return Err(ApiError::bad_request(
            "usage is counted per API key, and this server runs without keys",
        ));
    };
    Ok(Json(
        report(&state, &caller.key_id, &caller.plan_name, plan).await?,
    ))
}

async fn report(
    state: &AppState,
    key_id: &str,
    plan_name: &str,
    plan: &unmark_jobs::accounts::Plan,
) -> Result<Value, ApiError> {
    let store = state.jobs.store();
    let now = now_ms() as i64;
    let internal = |e| ApiError::internal(e, None);
    // The quota first: a job's end updates both in one transaction, so counts read after
    // the quota include every job the quota no longer holds a credit for.
    let quota = store
        .quota_state(key_id, plan, now)
        .await
        .map_err(internal)?;
    let usage = store.usage(key_id, now).await.map_err(internal)?;
    Ok(json!({
        "key_id": key_id,
        "plan": plan_name,
        "quota": quota,
        "today": usage.today,
        "month": usage.month,
        "history": usage.history,
    }))
}

/// `GET /api/v1/admin/usage`: every key's usage, for an admin key.
pub(crate) async fn all_usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    if !caller.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this endpoint needs an admin key",
        ));
    }
    let keys = state
        .jobs
        .store()
        .list_keys()
        .await
        .map_err(|e| ApiError::internal(e, None))?;
    let mut rows: Vec<(String, String, String, Option<i64>)> = keys
        .into_iter()
        .map(|k| (k.id, k.name, k.plan, k.revoked_ms))
        .collect();
    if state.config.api_key.is_some() {
        rows.push((
            STATIC_KEY.into(),
            "configured key".into(),
            state.config.static_key_plan.clone(),
            None,
        ));
    }
    let mut out = Vec::with_capacity(rows.len());
    for (id, name, plan_name, revoked_ms) in rows {
        let Some(plan) = state.config.plans.get(&plan_name) else {
            continue;
        };
        let mut entry = report(&state, &id, &plan_name, plan).await?;
        entry["name"] = name.into();
        entry["revoked_ms"] = revoked_ms.into();
        out.push(entry);
    }
    Ok(Json(json!({ "keys": out })))
}
