use std::time::Instant;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Extension, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use unmark_broker::{JobError, JobOutcome};
use unmark_jobs::accounts::Reservation;
use unmark_schemas::JobId;

use crate::auth::Caller;
use crate::{
    ApiError, AppState, auth, background, form, idempotency, jobs, limits, metrics, openapi,
    plugins, profiles, quota, request_id,
};

pub(crate) fn build(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let protected = Router::new()
        .route("/api/v1/remove-watermark", post(remove_watermark))
        .route(
            "/api/v1/remove-background",
            post(background::remove_background),
        )
        // rembg's server API, so that rembg clients switch by changing the URL.
        .route("/api/remove", post(background::rembg_remove))
        .route("/api/v1/jobs", post(jobs::submit))
        .route("/api/v1/jobs/{id}", get(jobs::status))
        .route("/api/v1/jobs/{id}/result", get(jobs::result))
        .route("/api/v1/jobs/{id}/events", get(jobs::events))
        .route("/api/v1/usage", get(quota::usage))
        .route("/api/v1/admin/usage", get(quota::all_usage))
        .route("/api/v1/watermark-profiles", post(profiles::create))
        .route(
            "/api/v1/watermark-profiles/{id}",
            get(profiles::show).delete(profiles::remove),
        )
        .route("/api/v1/plugins", get(plugins::list).post(plugins::add))
        .route(
            "/api/v1/plugins/{name}",
            get(plugins::versions).delete(plugins::remove_all),
        )
        .route(
            "/api/v1/plugins/{name}/{version}",
            get(plugins::show).delete(plugins::remove_one),
        )
        // After authentication: idempotency keys are per caller.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::guard,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        // Before the key lookup, which it protects.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::per_ip,
        ));
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/ready", get(jobs::ready))
        .route("/metrics", get(metrics::scrape))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            early_length_check,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let path = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or(request.uri().path(), |p| p.as_str());
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path,
                    request_id = request_id(request.headers()).as_deref().unwrap_or("-"),
                )
            }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Refuses a declared body over the limit before reading any of it.
async fn early_length_check(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::too_large(format!("request body is over the limit of {limit} bytes"))
            .with_request_id(request_id(request.headers()))
            .into_response();
    }
    next.run(request).await
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "model": unmark_schemas::params::Engine::default().as_str(),
        "engines": unmark_schemas::params::Engine::ALL.map(|e| e.as_str()),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this endpoint does not take that method",
    )
}

async fn remove_watermark(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let rid = request_id(&headers);
    let started = Instant::now();
    let multipart = multipart
        .map_err(|e| form::not_multipart(e, "an \"image\" part").with_request_id(rid.clone()))?;
    let config = &state.config;
    let request = form::parse(multipart, &config.defaults, config.max_body_bytes)
        .await
        .map_err(|e| e.with_request_id(rid.clone()))?;
    let (id, held) = jobs::admit_and_submit(&state, &caller, request, &rid).await?;
    answer(&state, id, held, rid, started).await
}

/// Waits for a synchronous request's job: its result (with the job id, processing time and
/// credits as headers), its failure as a problem, or a 202 to follow it when it outlasts
/// `sync_timeout`. A finished job's blobs are discarded: the client has its answer.
pub(crate) async fn answer(
    state: &AppState,
    id: JobId,
    held: Option<Reservation>,
    rid: Option<String>,
    started: Instant,
) -> Result<Response, ApiError> {
    let config = &state.config;
    let client = state.jobs.client();
    let mut job = client
        .follow(id.clone())
        .await
        .map_err(|e| ApiError::internal(e, rid.clone()))?;
    let response = match job.wait(config.sync_timeout).await {
        Ok(JobOutcome::Succeeded {
            result,
            content_type,
            ..
        }) => {
            let bytes = client
                .fetch(&result)
                .await
                .map_err(|e| ApiError::internal(e, rid.clone()))?;
            let mut response = bytes.into_response();
            let h = response.headers_mut();
            let value =
                |s: &str| HeaderValue::from_str(s).map_err(|e| ApiError::internal(e, rid.clone()));
            h.insert(header::CONTENT_TYPE, value(&content_type)?);
            h.insert("x-job-id", value(id.as_str())?);
            h.insert(
                "x-processing-ms",
                value(&started.elapsed().as_millis().to_string())?,
            );
            // Charged on success only: the held credit becomes a charge when the job's
            // success is recorded.
            if let Some(r) = &held {
                h.insert("x-credits-charged", value("1")?);
                h.insert("x-quota-remaining", value(&r.remaining.to_string())?);
            }
            Ok(response)
        }
        Ok(JobOutcome::Failed {
            reason, message, ..
        }) => Err(ApiError::from_failure(reason, message, rid.clone())),
        // Still running: the job goes on, and the client follows it like an async one.
        Err(JobError::TimedOut(..)) => return Ok(jobs::accepted(id.as_str(), held.as_ref())),
        Err(other) => Err(ApiError::internal(other, rid.clone())),
    };
    // The job has ended: its key may start another at once, before the end is recorded.
    if let Err(e) = state.jobs.store().release_job_slot(id.as_str()).await {
        tracing::warn!(job_id = %id, error = %e, "cannot give the job's slot back");
    }
    // The client has its answer: nothing of the job is kept.
    if let Err(e) = client.discard(&id).await {
        tracing::warn!(job_id = %id, error = %e, "cannot discard the job's blobs");
    }
    if let Err(e) = state
        .jobs
        .store()
        .mark_result_deleted(id.as_str(), unmark_broker::now_ms() as i64)
        .await
    {
        tracing::warn!(job_id = %id, error = %e, "cannot record the discarded result");
    }
    response
}
