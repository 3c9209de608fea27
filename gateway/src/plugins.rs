//! `/api/v1/plugins`: install, list and remove WASM plugins. Listing is open to every key;
//! installing and removing need an admin key.

use axum::Extension;
use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use unmark_plugins::{Manifest, RegistryError};

use crate::auth::Caller;
use crate::{ApiError, AppState, form, request_id};

/// The API error of a registry error.
pub(crate) fn error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::BadRequest(m) => ApiError::bad_request(m),
        RegistryError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "no-such-plugin", e.to_string())
        }
        RegistryError::Conflict { .. } => {
            ApiError::new(StatusCode::CONFLICT, "plugin-version-exists", e.to_string())
        }
        RegistryError::Rejected(p) if matches!(p, unmark_plugins::PluginError::TooLarge { .. }) => {
            ApiError::too_large(format!("plugin refused: {p}"))
        }
        RegistryError::Rejected(p) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin-rejected",
            format!("plugin refused: {p}"),
        ),
        RegistryError::Store(m) => ApiError::internal(m, None),
    }
}

/// The API error of a job whose plugin steps do not resolve: every case is the request's
/// fault (400), except a failing store.
pub(crate) fn job_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Store(_) => error(e),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "installing and removing plugins needs an admin key",
        ))
    }
}

fn view(m: &Manifest) -> Value {
    json!({
        "name": m.name,
        "version": m.version,
        "reference": m.reference(),
        "kind": m.kind,
        "sha256": m.sha256,
        "size": m.size,
        "abi": m.abi,
        "created_ms": m.created_ms,
    })
}

/// Query of a raw `application/wasm` upload.
#[derive(Debug, Deserialize)]
pub(crate) struct Target {
    name: Option<String>,
    version: Option<String>,
}

/// `POST /api/v1/plugins`: multipart (`module` file, `name`, optional `version`) or a raw
/// `application/wasm` body with `?name=...&version=...`. 201 when installed, 200 when the
/// same module was already installed under that version.
pub(crate) async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(target): Query<Target>,
    request: Request,
) -> Result<Response, ApiError> {
    let rid = request_id(request.headers());
    let with_rid = |e: ApiError| e.with_request_id(rid.clone());
    admin_only(&caller).map_err(with_rid)?;
    let limit = state.plugins.sandbox.limits().max_module_bytes as u64;
    let body_limit = state.config.max_body_bytes;
    let content_type = crate::content_type(request.headers());
    let (name, version, module) = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| with_rid(ApiError::bad_request(e.body_text())))?;
        read_form(multipart, limit, body_limit)
            .await
            .map_err(with_rid)?
    } else if content_type.starts_with("application/wasm") {
        let body = Bytes::from_request(request, &state).await.map_err(|e| {
            with_rid(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!(
                    "request body is over the limit of {body_limit} bytes"
                ))
            } else {
                ApiError::bad_request(format!("cannot read the body: {}", e.body_text()))
            })
        })?;
        let name = target
            .name
            .ok_or_else(|| with_rid(ApiError::bad_request("missing the name query parameter")))?;
        (name, target.version, body)
    } else {
        return Err(with_rid(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("expected multipart/form-data or application/wasm, got {content_type:?}"),
        )));
    };
    if module.is_empty() {
        return Err(with_rid(ApiError::bad_request("the module is empty")));
    }
    let (manifest, created) = state
        .plugins
        .add(&name, version.as_deref(), module)
        .await
        .map_err(|e| with_rid(error(e)))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(view(&manifest))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/api/v1/plugins/{}/{}",
        manifest.name, manifest.version
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn read_form(
    mut multipart: Multipart,
    limit: u64,
    body_limit: usize,
) -> Result<(String, Option<String>, Bytes), ApiError> {
    let (mut name, mut version, mut module) = (None, None, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| form::multipart_error(e, body_limit))?
    {
        let part = field.name().unwrap_or_default().to_owned();
        match part.as_str() {
            "module" => module = Some(form::read_file(field, "module", limit, body_limit).await?),
            "name" | "version" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| form::multipart_error(e, body_limit))?
                    .trim()
                    .to_owned();
                if part == "name" {
                    name = Some(text);
                } else if !text.is_empty() {
                    version = Some(text);
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown part {other:?}; expected module, name, version"
                )));
            }
        }
    }
    let name = name.ok_or_else(|| ApiError::bad_request("missing the \"name\" part"))?;
    let module = module.ok_or_else(|| ApiError::bad_request("missing the \"module\" part"))?;
    Ok((name, version, module))
}

/// `GET /api/v1/plugins`: every installed plugin.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = state.plugins.registry.list().await.map_err(error)?;
    Ok(Json(
        json!({ "plugins": all.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// `GET /api/v1/plugins/{name}`: its versions, oldest first.
pub(crate) async fn versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let all = state
        .plugins
        .registry
        .versions(&name)
        .await
        .map_err(error)?;
    if all.is_empty() {
        return Err(error(RegistryError::NotFound(name)));
    }
    Ok(Json(
        json!({ "plugins": all.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// `GET /api/v1/plugins/{name}/{version}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let m = state
        .plugins
        .registry
        .get(&format!("{name}@{version}"))
        .await
        .map_err(error)?;
    Ok(Json(view(&m)))
}

async fn remove(
    state: &AppState,
    caller: &Caller,
    reference: &str,
) -> Result<Json<Value>, ApiError> {
    admin_only(caller)?;
    let gone = state
        .plugins
        .registry
        .remove(reference)
        .await
        .map_err(error)?;
    Ok(Json(
        json!({ "removed": gone.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// `DELETE /api/v1/plugins/{name}`: every version.
pub(crate) async fn remove_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    remove(&state, &caller, &name).await
}

/// `DELETE /api/v1/plugins/{name}/{version}`.
pub(crate) async fn remove_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    remove(&state, &caller, &format!("{name}@{version}")).await
}
