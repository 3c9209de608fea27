use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;
use unmark_jobs::accounts::{KeyCheck, Plan};

use crate::{ApiError, AppState, request_id};

/// Who is calling; `require_key` puts it in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The key's id: a database key's public prefix, `static` for the configured key.
    pub(crate) key_id: String,
    /// The key's plan; `None` when the server runs open (no key exists at all).
    pub(crate) plan: Option<Plan>,
    /// The plan's name.
    pub(crate) plan_name: String,
    /// May see every key's usage.
    pub(crate) admin: bool,
}

/// The id of the key set in the config file.
pub(crate) const STATIC_KEY: &str = "static";

/// The key a request presents: `X-API-Key`, else `Authorization: Bearer`.
fn presented(request: &Request) -> Option<&[u8]> {
    let headers = request.headers();
    if let Some(key) = headers.get("x-api-key") {
        return Some(key.as_bytes());
    }
    let auth = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = auth.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| auth[7..].trim_ascii())
}

/// Identifies the caller: the configured key (compared in constant time), or a key from the
/// database (looked up by its public id, compared by hash in constant time; a revoked key is
/// refused at once on every gateway). With no key configured and none in the database the API
/// is open.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let rid = request_id(request.headers());
    let unauthorized = |detail: &str| {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).with_request_id(rid.clone())
    };
    let config = &state.config;
    let store = state.jobs.store();
    let caller = match presented(&request) {
        Some(key) => {
            let expected = config.api_key.as_deref().map(str::as_bytes);
            // `ct_eq` on slices of different lengths is false without comparing contents.
            if expected.is_some_and(|e| bool::from(key.ct_eq(e))) {
                plan_caller(&state, STATIC_KEY, &config.static_key_plan, true, &rid)?
            } else {
                let text = std::str::from_utf8(key).unwrap_or("");
                match store
                    .authenticate(text)
                    .await
                    .map_err(|e| ApiError::internal(e, rid.clone()))?
                {
                    KeyCheck::Valid(k) => plan_caller(&state, &k.id, &k.plan, k.admin, &rid)?,
                    KeyCheck::Revoked => return Err(unauthorized("this API key has been revoked")),
                    KeyCheck::Unknown => return Err(unauthorized("invalid API key")),
                }
            }
        }
        None => {
            let keys_exist = config.api_key.is_some()
                || store
                    .has_live_keys()
                    .await
                    .map_err(|e| ApiError::internal(e, rid.clone()))?;
            if keys_exist {
                return Err(unauthorized(
                    "missing API key: send it in the X-API-Key header or as Authorization: Bearer",
                ));
            }
            Caller {
                key_id: "anonymous".into(),
                plan: None,
                plan_name: String::new(),
                admin: true,
            }
        }
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

fn plan_caller(
    state: &AppState,
    key_id: &str,
    plan: &str,
    admin: bool,
    rid: &Option<String>,
) -> Result<Caller, ApiError> {
    let Some(found) = state.config.plans.get(plan) else {
        return Err(ApiError::internal(
            format!("key {key_id} has plan {plan:?}, which the configuration does not define"),
            rid.clone(),
        ));
    };
    Ok(Caller {
        key_id: key_id.to_owned(),
        plan: Some(found.clone()),
        plan_name: plan.to_owned(),
        admin,
    })
}
