use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

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

/// Requires the configured key, compared in constant time.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.config.api_key.as_deref() else {
        return Ok(next.run(request).await);
    };
    let unauthorized =
        |detail: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
    match presented(&request) {
        None => Err(unauthorized(
            "missing API key: send it in the X-API-Key header or as Authorization: Bearer",
        )),
        // `ct_eq` on slices of different lengths is false without comparing contents.
        Some(key) if bool::from(key.ct_eq(expected.as_bytes())) => Ok(next.run(request).await),
        Some(_) => Err(unauthorized("invalid API key")),
    }
}
