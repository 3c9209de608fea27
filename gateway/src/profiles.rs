//! `/api/v1/watermark-profiles`: learn a watermark from several images that share it, or make
//! one from a logo and an opacity; `remove-watermark` then takes `profile=<id>`.
//!
//! Profiles live in the blob store (`profiles/<id>.json`), so every gateway sees them.
//! Learning runs here, on a blocking thread: it is one pass over a handful of images.

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use unmark_broker::{BlobError, keys};
use unmark_schemas::{BlobRef, JobId};
use unmark_stages::StageError;
use unmark_stages::decode::{Limits, decode};
use unmark_stages::profile::{self, Profile};

use crate::{ApiError, AppState, form};

/// Most images one profile is learned from.
const MAX_IMAGES: usize = 64;
/// Most pixels, over all the images, one profile is learned from (learning holds them all,
/// and a fill of each, in memory).
const MAX_TOTAL_MEGAPIXELS: f64 = 64.0;

fn key(id: &str) -> Result<String, ApiError> {
    let id =
        JobId::new(id).map_err(|e| ApiError::bad_request(format!("profile id: {}", e.message)))?;
    Ok(keys::profile(&id))
}

fn missing(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-such-profile",
        format!("no watermark profile {id:?}"),
    )
}

fn stage_error(e: StageError) -> ApiError {
    ApiError::from_failure(e.reason, e.message, None)
}

/// A profile's bytes; `None` when there is no such profile.
async fn fetch(state: &AppState, id: &str) -> Result<Option<Bytes>, ApiError> {
    let blob = BlobRef {
        key: key(id)?,
        size: 0,
    };
    match state.jobs.client().blobs().get(&blob).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(BlobError::NotFound(_)) => Ok(None),
        Err(e) => Err(ApiError::internal(e, None)),
    }
}

/// A profile's bytes, for a job that names it: an unknown one is the request's fault (400).
pub(crate) async fn load(state: &AppState, id: &str) -> Result<Bytes, ApiError> {
    fetch(state, id)
        .await?
        .ok_or_else(|| ApiError::bad_request(format!("no watermark profile {id:?}")))
}

fn view(id: &str, p: &Profile) -> Value {
    json!({
        "id": id,
        "kind": if p.frame.is_some() { "learned" } else { "logo" },
        "frame": p.frame.map(|(w, h)| json!({ "width": w, "height": h })),
        "origin": { "x": p.origin.0, "y": p.origin.1 },
        "width": p.width,
        "height": p.height,
        "mean_alpha": p.mean_alpha(),
        "url": format!("/api/v1/watermark-profiles/{id}"),
    })
}

/// `POST /api/v1/watermark-profiles`: multipart with several `image` parts (3 or more that
/// share one watermark in one place), or a `logo` part (its alpha channel is the mark) and an
/// `opacity` (0 to 1).
pub(crate) async fn create(
    State(state): State<AppState>,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let config = &state.config;
    let (file_limit, body_limit) = (
        config.defaults.decode.max_input_bytes,
        config.max_body_bytes,
    );
    let limits = Limits::from(&config.defaults.decode);
    let (mut images, mut logo, mut opacity) = (Vec::new(), None, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| form::multipart_error(e, body_limit))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "image" if images.len() >= MAX_IMAGES => {
                return Err(ApiError::bad_request(format!(
                    "at most {MAX_IMAGES} images per profile"
                )));
            }
            "image" => images.push(form::read_file(field, "image", file_limit, body_limit).await?),
            "logo" => logo = Some(form::read_file(field, "logo", file_limit, body_limit).await?),
            "opacity" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| form::multipart_error(e, body_limit))?;
                let value: f32 = text.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!("opacity must be a number, got {text:?}"))
                })?;
                opacity = Some(value);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown part {other:?}; expected image (several), or logo and opacity"
                )));
            }
        }
    }
    let learned = match (logo, images.is_empty()) {
        (Some(_), false) => {
            return Err(ApiError::bad_request(
                "send either images to learn from or a logo, not both",
            ));
        }
        (None, true) => {
            return Err(ApiError::bad_request(
                "send 3 or more image parts that share a watermark, or a logo and an opacity",
            ));
        }
        (Some(logo), true) => {
            let opacity =
                opacity.ok_or_else(|| ApiError::bad_request("a logo needs an opacity (0 to 1)"))?;
            tokio::task::spawn_blocking(move || {
                let logo = decode(&logo, &limits, "logo")?;
                profile::from_logo(&logo.raster, opacity)
            })
            .await
        }
        (None, false) => {
            if opacity.is_some() {
                return Err(ApiError::bad_request(
                    "opacity goes with a logo, not with images",
                ));
            }
            tokio::task::spawn_blocking(move || {
                let mut rasters = Vec::with_capacity(images.len());
                let mut megapixels = 0.0;
                for (i, bytes) in images.iter().enumerate() {
                    let raster = decode(bytes, &limits, &format!("image {}", i + 1))?.raster;
                    megapixels += f64::from(raster.width) * f64::from(raster.height) / 1e6;
                    if megapixels > MAX_TOTAL_MEGAPIXELS {
                        return Err(StageError::new(
                            unmark_schemas::FailureReason::TooLarge,
                            format!(
                                "the images add up to more than {MAX_TOTAL_MEGAPIXELS} megapixels; \
                                 learn from fewer or smaller ones"
                            ),
                        ));
                    }
                    rasters.push(raster);
                }
                profile::learn(&rasters)
            })
            .await
        }
    };
    let made = learned
        .map_err(|e| ApiError::internal(format!("profile task failed: {e}"), None))?
        .map_err(stage_error)?;
    let id = uuid::Uuid::new_v4().to_string();
    state
        .jobs
        .client()
        .blobs()
        .put(&key(&id)?, made.to_json().into())
        .await
        .map_err(|e| ApiError::internal(e, None))?;
    let mut response = (StatusCode::CREATED, Json(view(&id, &made))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/watermark-profiles/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /api/v1/watermark-profiles/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let bytes = fetch(&state, &id).await?.ok_or_else(|| missing(&id))?;
    let p = Profile::from_json(&bytes).map_err(|e| ApiError::internal(e, None))?;
    Ok(Json(view(&id, &p)))
}

/// `DELETE /api/v1/watermark-profiles/{id}`.
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = key(&id)?;
    let blobs = state.jobs.client().blobs();
    if !blobs
        .exists(&key)
        .await
        .map_err(|e| ApiError::internal(e, None))?
    {
        return Err(missing(&id));
    }
    blobs
        .delete(&key)
        .await
        .map_err(|e| ApiError::internal(e, None))?;
    Ok(StatusCode::NO_CONTENT)
}
