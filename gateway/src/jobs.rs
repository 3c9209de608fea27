//! Asynchronous jobs: submit, poll, fetch the result, follow the events.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use unmark_broker::{JobHandle, subjects};
use unmark_jobs::accounts::Reservation;
use unmark_jobs::{JobRecord, JobStatus, SubmitError};
use unmark_schemas::{
    BlobRef, EventKind, FailureReason, InputRef, JobEvent, JobId, StageTiming, Step, SubmitKind,
    SubmitRequest, pipeline,
};

use crate::auth::Caller;
use crate::{ApiError, AppState, form, quota, request_id};

/// Links a client follows a job by.
pub(crate) fn links(id: &str) -> Value {
    let base = format!("/api/v1/jobs/{id}");
    json!({
        "status_url": base,
        "result_url": format!("{base}/result"),
        "events_url": format!("{base}/events"),
        "events_subject": subjects::v1::events(id),
    })
}

/// The 202 answer for an accepted job that has not finished; `X-Quota-Remaining` when it
/// holds a credit.
pub(crate) fn accepted(id: &str, held: Option<&Reservation>) -> Response {
    let mut body = json!({ "id": id, "status": JobStatus::Queued.as_str() });
    merge(&mut body, links(id));
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/jobs/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    if let Some(r) = held {
        headers.insert("x-quota-remaining", HeaderValue::from(r.remaining));
    }
    response
}

/// A job ready to be admitted: its pipeline and steps, its input blobs and its cost in
/// credits.
pub(crate) struct Admission {
    pub(crate) pipeline: &'static str,
    pub(crate) steps: Vec<Step>,
    pub(crate) inputs: Vec<(&'static str, Bytes)>,
    pub(crate) callback_url: Option<String>,
    pub(crate) cost: u32,
}

/// Checks the callback, admits the caller (load, concurrency, rate, quota) and submits the
/// job; a credit held for a job that does not start is given back.
pub(crate) async fn admit(
    state: &AppState,
    caller: &Caller,
    job: Admission,
    rid: &Option<String>,
) -> Result<(JobId, Option<Reservation>), ApiError> {
    if let Some(url) = &job.callback_url {
        crate::webhooks::check_destination(url, &state.config.webhooks)
            .await
            .map_err(|why| ApiError::bad_request(why).with_request_id(rid.clone()))?;
    }
    let held = quota::hold(state, caller, job.cost, rid).await?;
    let submitted = state
        .jobs
        .submit(
            job.pipeline,
            job.steps,
            job.inputs,
            job.callback_url.as_deref(),
            quota::owner(caller, &held),
        )
        .await;
    match submitted {
        Ok(id) => Ok((id, held)),
        Err(e) => {
            quota::release(state, caller, &held).await;
            Err(submit_error(e, rid.clone()))
        }
    }
}

/// [`admit`] for a watermark removal: the plan's limits, the plugins resolved, the profile
/// loaded.
pub(crate) async fn admit_and_submit(
    state: &AppState,
    caller: &Caller,
    job: form::WatermarkForm,
    rid: &Option<String>,
) -> Result<(JobId, Option<Reservation>), ApiError> {
    let mut options = quota::within_plan(caller, job.options);
    unmark_plugins::resolve(&state.plugins.registry, &mut options)
        .await
        .map_err(|e| crate::plugins::job_error(e).with_request_id(rid.clone()))?;
    let cost = crate::limits::cost(&job.image, options.decode.max_megapixels);
    let mut inputs = vec![("input", job.image)];
    if let Some(mask) = job.mask {
        inputs.push(("mask_input", mask));
    }
    if let Some(id) = &job.profile {
        let bytes = crate::profiles::load(state, id)
            .await
            .map_err(|e| e.with_request_id(rid.clone()))?;
        inputs.push(("profile", bytes));
    }
    let admission = Admission {
        pipeline: pipeline::REMOVE_WATERMARK,
        steps: pipeline::remove_watermark(&options),
        inputs,
        callback_url: job.callback_url,
        cost,
    };
    admit(state, caller, admission, rid).await
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// A job record as the API shows it.
pub(crate) fn view(job: &JobRecord) -> Value {
    let mut body = json!({
        "id": job.id,
        "pipeline": job.pipeline,
        "status": job.status,
        "created_ms": job.created_ms,
        "updated_ms": job.updated_ms,
        "finished_ms": job.finished_ms,
        "stages": job.stages,
        "error": job.error,
        "callback_url": job.callback_url,
        "result": job.result.as_ref().map(|r| json!({
            "content_type": r.content_type,
            "size": r.size,
            "expires_ms": r.expires_ms,
            "available": r.deleted_ms.is_none(),
        })),
    });
    merge(&mut body, links(&job.id));
    body
}

pub(crate) fn submit_error(e: SubmitError, rid: Option<String>) -> ApiError {
    match e {
        SubmitError::Invalid(p) => ApiError::bad_request(p.message).with_request_id(rid),
        other => ApiError::internal(other, rid),
    }
}

/// `POST /api/v1/jobs`: multipart (the fields of remove-watermark, plus `callback_url`) or
/// JSON (a `SubmitRequest` with inputs as base64, for either pipeline). Answers 202 at once.
pub(crate) async fn submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, ApiError> {
    let rid = request_id(request.headers());
    let config = &state.config;
    let content_type = crate::content_type(request.headers());
    let job = if content_type.starts_with("application/json") {
        let body = Bytes::from_request(request, &state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(format!(
                        "request body is over the limit of {} bytes",
                        config.max_body_bytes
                    ))
                } else {
                    ApiError::bad_request(format!("cannot read the body: {}", e.body_text()))
                }
            })
            .map_err(|e| e.with_request_id(rid.clone()))?;
        let request: SubmitRequest = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("invalid JSON job: {e}")).with_request_id(rid.clone())
        })?;
        let kind = request
            .kind()
            .map_err(|e| ApiError::bad_request(e.message).with_request_id(rid.clone()))?;
        if kind == SubmitKind::RemoveBackground {
            let admission = json_background(request, &state, &caller)
                .map_err(|e| e.with_request_id(rid.clone()))?;
            let (id, held) = admit(&state, &caller, admission, &rid).await?;
            return Ok(accepted(id.as_str(), held.as_ref()));
        }
        json_job(request, &state).map_err(|e| e.with_request_id(rid.clone()))?
    } else if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()).with_request_id(rid.clone()))?;
        form::parse(multipart, &config.defaults, config.max_body_bytes)
            .await
            .map_err(|e| e.with_request_id(rid.clone()))?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!(
                "expected multipart/form-data or application/json, got {:?}",
                content_type
            ),
        )
        .with_request_id(rid));
    };
    let (id, held) = admit_and_submit(&state, &caller, job, &rid).await?;
    Ok(accepted(id.as_str(), held.as_ref()))
}

/// An input of a JSON submission: inline only. (Blob keys are for NATS clients inside the
/// deployment; over HTTP they would let a client read blobs it does not own.)
fn inline(name: &str, input: &InputRef, limit: u64) -> Result<Bytes, ApiError> {
    let InputRef::Base64(text) = input else {
        return Err(ApiError::bad_request(format!(
            "{name}: over HTTP send the file as base64 (or use multipart); blob keys are \
             accepted only on NATS"
        )));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("{name} is not valid base64: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(ApiError::too_large(format!(
            "{name} is over the limit of {limit} bytes"
        )));
    }
    Ok(bytes.into())
}

/// The job's image, inline and not empty.
fn inline_image(input: &InputRef, limit: u64) -> Result<Bytes, ApiError> {
    let image = inline("image", input, limit)?;
    if image.is_empty() {
        return Err(ApiError::bad_request("the image is empty"));
    }
    Ok(image)
}

/// A JSON `remove-watermark` submission.
fn json_job(request: SubmitRequest, state: &AppState) -> Result<form::WatermarkForm, ApiError> {
    let options = request
        .params
        .apply(&state.config.defaults)
        .map_err(|e| ApiError::bad_request(e.message))?;
    let limit = options.decode.max_input_bytes;
    let image = inline_image(&request.image, limit)?;
    let mask = request
        .mask
        .as_ref()
        .map(|m| inline("mask", m, limit))
        .transpose()?
        .filter(|m| !m.is_empty());
    Ok(form::WatermarkForm {
        image,
        mask,
        options,
        callback_url: request.callback_url,
        profile: request.profile,
    })
}

/// A JSON `remove-background` submission.
fn json_background(
    request: SubmitRequest,
    state: &AppState,
    caller: &Caller,
) -> Result<Admission, ApiError> {
    let limit = state.config.background.decode.max_input_bytes;
    let image = inline_image(&request.image, limit)?;
    let background = request
        .bg_image
        .as_ref()
        .map(|b| inline("bg_image", b, limit))
        .transpose()?;
    crate::background::admission(
        state,
        caller,
        image,
        background,
        &request.background.unwrap_or_default(),
        request.callback_url,
    )
}

async fn record(state: &AppState, id: &str, rid: &Option<String>) -> Result<JobRecord, ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no-such-job",
            format!("no job {id:?}"),
        )
        .with_request_id(rid.clone())
    };
    if JobId::new(id).is_err() {
        return Err(missing());
    }
    state
        .jobs
        .store()
        .get(id)
        .await
        .map_err(|e| ApiError::internal(e, rid.clone()))?
        .ok_or_else(missing)
}

/// `GET /api/v1/jobs/{id}`: status, per-stage timings, error, result.
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let rid = request_id(&headers);
    let mut body = view(&record(&state, &id, &rid).await?);
    let webhook = state
        .jobs
        .store()
        .webhook_state(&id)
        .await
        .map_err(|e| ApiError::internal(e, rid))?;
    body["webhook"] = serde_json::to_value(webhook).unwrap_or_default();
    Ok(Json(body))
}

/// `GET /api/v1/jobs/{id}/result`: the image, or why there is none.
pub(crate) async fn result(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let rid = request_id(&headers);
    let job = record(&state, &id, &rid).await?;
    match job.status {
        JobStatus::Queued | JobStatus::Running => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-finished",
            format!(
                "job {id} is {}; poll /api/v1/jobs/{id} or follow /api/v1/jobs/{id}/events",
                job.status.as_str()
            ),
        )
        .with_request_id(rid)),
        JobStatus::Failed => {
            let failure = job.error.unwrap_or_else(|| unmark_jobs::JobFailure {
                reason: FailureReason::Internal.as_str().into(),
                message: "the job failed".into(),
                stage: None,
            });
            Err(ApiError::from_failure(
                parse_reason(&failure.reason),
                failure.message,
                rid,
            ))
        }
        JobStatus::Succeeded => {
            let Some(result) = job.result else {
                return Err(ApiError::internal("a succeeded job without a result", rid));
            };
            if let Some(deleted) = result.deleted_ms {
                let why = if result.expires_ms.is_some_and(|e| deleted < e) {
                    "was returned synchronously and not kept"
                } else {
                    "expired and was deleted"
                };
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "result-gone",
                    format!("the result of job {id} {why}"),
                )
                .with_request_id(rid));
            }
            let blob = BlobRef {
                key: result.key,
                size: result.size,
            };
            let bytes = match state.jobs.client().fetch(&blob).await {
                Ok(bytes) => bytes,
                Err(unmark_broker::JobError::Blob(unmark_broker::BlobError::NotFound(_))) => {
                    return Err(ApiError::new(
                        StatusCode::GONE,
                        "result-gone",
                        format!("the result of job {id} expired and was deleted"),
                    )
                    .with_request_id(rid));
                }
                Err(e) => return Err(ApiError::internal(e, rid)),
            };
            let mut response = bytes.into_response();
            let h = response.headers_mut();
            if let Ok(ct) = HeaderValue::from_str(&result.content_type) {
                h.insert(header::CONTENT_TYPE, ct);
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                h.insert("x-job-id", v);
            }
            Ok(response)
        }
    }
}

fn parse_reason(reason: &str) -> FailureReason {
    serde_json::from_value(Value::String(reason.to_owned())).unwrap_or(FailureReason::Internal)
}

/// How often an event stream checks the record, for jobs whose events the broker no longer
/// holds (expired, or an in-process broker that restarted).
const RECORD_POLL: Duration = Duration::from_secs(1);

/// `GET /api/v1/jobs/{id}/events`: the job's events as Server-Sent Events, history first,
/// ending after the terminal one.
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rid = request_id(&headers);
    let job = record(&state, &id, &rid).await?;
    let job_id = JobId::new(job.id).map_err(|e| ApiError::internal(e.message, rid.clone()))?;
    let handle = state
        .jobs
        .client()
        .follow(job_id.clone())
        .await
        .map_err(|e| ApiError::internal(e, rid))?;
    let follow = Follow {
        handle,
        state,
        id: job_id,
        done: false,
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        if f.done {
            return None;
        }
        let event = f.next().await?;
        f.done = event.kind.is_terminal();
        let name = match &event.kind {
            EventKind::Accepted { .. } => "accepted",
            EventKind::StageDone { .. } => "stage_done",
            EventKind::Succeeded { .. } => "succeeded",
            EventKind::Failed { .. } => "failed",
        };
        let sse = Event::default()
            .event(name)
            .json_data(&event)
            .unwrap_or_else(|_| Event::default().event(name));
        Some((Ok(sse), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Follow {
    handle: JobHandle,
    state: AppState,
    id: JobId,
    done: bool,
}

impl Follow {
    /// The next event from the broker; when none comes for a while and the record says the
    /// job has ended, the terminal event rebuilt from the record.
    async fn next(&mut self) -> Option<JobEvent> {
        loop {
            tokio::select! {
                event = self.handle.next_event() => return event,
                () = tokio::time::sleep(RECORD_POLL) => {
                    if let Ok(Some(job)) = self.state.jobs.store().get(self.id.as_str()).await
                        && let Some(event) = terminal_from_record(&self.id, &job)
                    {
                        return Some(event);
                    }
                }
            }
        }
    }
}

fn terminal_from_record(id: &JobId, job: &JobRecord) -> Option<JobEvent> {
    let kind = match job.status {
        JobStatus::Succeeded => {
            let result = job.result.as_ref()?;
            EventKind::Succeeded {
                result: BlobRef {
                    key: result.key.clone(),
                    size: result.size,
                },
                content_type: result.content_type.clone(),
                timings: job
                    .stages
                    .iter()
                    .map(|s| StageTiming {
                        stage: s.stage.clone(),
                        ms: s.ms,
                    })
                    .collect(),
            }
        }
        JobStatus::Failed => {
            let error = job.error.as_ref()?;
            EventKind::Failed {
                reason: parse_reason(&error.reason),
                message: error.message.clone(),
                stage: error.stage.clone(),
            }
        }
        JobStatus::Queued | JobStatus::Running => return None,
    };
    Some(JobEvent {
        job_id: id.clone(),
        at_ms: job.finished_ms.unwrap_or(job.updated_ms).max(0) as u64,
        kind,
    })
}

/// `GET /api/v1/ready`: 200 when the database, the blob store and the broker answer.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let probe = JobId::new("ready-probe").ok();
    let database = state.jobs.store().ping().await.map_err(|e| e.to_string());
    let blobs = state
        .jobs
        .client()
        .blobs()
        .exists("ready-probe")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let broker = match &probe {
        Some(id) => state
            .jobs
            .client()
            .last_event(id)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => Err("no probe id".into()),
    };
    let checks = [("database", database), ("blobs", blobs), ("broker", broker)];
    let all_ok = checks.iter().all(|(_, r)| r.is_ok());
    let body: serde_json::Map<String, Value> = checks
        .into_iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!("ok"),
                Err(e) => {
                    tracing::warn!(check = name, error = %e, "not ready");
                    json!("unavailable")
                }
            };
            (name.to_owned(), v)
        })
        .collect();
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if all_ok { "ready" } else { "not_ready" }, "checks": body });
    (status, Json(body)).into_response()
}
