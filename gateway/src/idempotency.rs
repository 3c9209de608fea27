//! `Idempotency-Key` on POST: the first answer (status, headers, body) is kept for 24 h and
//! replayed for the same key and request; the same key with another request is 422; a
//! duplicate while the first is still being answered is 409.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use unmark_jobs::idempotency::{Begin, Stored};

use crate::auth::Caller;
use crate::{ApiError, AppState, request_id};

const TTL_MS: i64 = 24 * 3_600_000;
/// A claim still in flight after this long belongs to a gateway that died.
const ABANDONED_MS: i64 = 10 * 60_000;
/// Headers kept with an answer.
const KEPT: [&str; 7] = [
    "content-type",
    "location",
    "x-job-id",
    "x-processing-ms",
    "x-credits-charged",
    "x-quota-remaining",
    "retry-after",
];
/// Largest answer kept for replay.
const MAX_ANSWER: usize = 256 * 1024 * 1024;

/// The request's identity: method, path, content type and body, with a multipart boundary
/// taken out (a client that re-encodes the same form draws a new one).
fn request_hash(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> String {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty());
    let mut hash = Sha256::new();
    hash.update(method.as_str());
    hash.update([0]);
    hash.update(path);
    hash.update([0]);
    match boundary {
        Some(b) => {
            hash.update(content_type.replace(b, ""));
            hash.update([0]);
            let mut rest = body;
            while let Some(at) = find(rest, b.as_bytes()) {
                hash.update(&rest[..at]);
                rest = &rest[at + b.len()..];
            }
            hash.update(rest);
        }
        None => {
            hash.update(content_type);
            hash.update([0]);
            hash.update(body);
        }
    }
    hex::encode(hash.finalize())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn valid_key(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = (1..=255).contains(&text.len()) && text.bytes().all(|b| (0x21..=0x7e).contains(&b));
    ok.then(|| text.to_owned())
}

fn replay(stored: Stored) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&stored.headers).unwrap_or_default();
    let out = response.headers_mut();
    for (name, value) in headers {
        if let (Ok(name), Some(Ok(value))) = (
            header::HeaderName::try_from(name),
            value.as_str().map(HeaderValue::from_str),
        ) {
            out.insert(name, value);
        }
    }
    out.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// The middleware, after authentication (keys are per caller).
pub(crate) async fn guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(next.run(request).await);
    };
    let rid = request_id(request.headers());
    let idem = valid_key(value).ok_or_else(|| {
        ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
            .with_request_id(rid.clone())
    })?;
    let caller = request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "anonymous".to_owned(), |c| c.key_id.clone());
    let (parts, body) = request.into_parts();
    let limit = state.config.max_body_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        ApiError::too_large(format!("request body is over the limit of {limit} bytes"))
            .with_request_id(rid.clone())
    })?;
    let hash = request_hash(&parts.method, parts.uri.path(), &parts.headers, &bytes);
    let store = state.jobs.store();
    let now = unmark_broker::now_ms() as i64;
    let begin = store
        .idempotency_begin(&caller, &idem, &hash, now, TTL_MS, ABANDONED_MS)
        .await
        .map_err(|e| ApiError::internal(e, rid.clone()))?;
    match begin {
        Begin::First => {}
        Begin::Replay(stored) => return Ok(replay(stored)),
        Begin::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-mismatch",
                format!("Idempotency-Key {idem:?} was used for a different request"),
            )
            .with_request_id(rid));
        }
        Begin::InFlight => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency-in-flight",
                format!("a request with Idempotency-Key {idem:?} is still being answered"),
            )
            .with_request_id(rid)
            .with_header("retry-after", 1));
        }
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if response.status().is_server_error() {
        // Our fault: let the client try again with the same key.
        if let Err(e) = store.idempotency_abandon(&caller, &idem).await {
            tracing::warn!(error = %e, "cannot release an idempotency key");
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, MAX_ANSWER)
        .await
        .map_err(|e| ApiError::internal(e, rid.clone()))?;
    let kept: serde_json::Map<String, serde_json::Value> = KEPT
        .iter()
        .filter_map(|name| {
            let v = parts.headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), v.into()))
        })
        .collect();
    let stored = Stored {
        status: parts.status.as_u16(),
        headers: serde_json::Value::Object(kept).to_string(),
        body: body.to_vec(),
    };
    if let Err(e) = store.idempotency_finish(&caller, &idem, &stored).await {
        tracing::warn!(error = %e, "cannot keep an idempotent answer");
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_boundary_is_the_same_request() {
        let with = |b: &str| {
            let mut h = HeaderMap::new();
            let ct = format!("multipart/form-data; boundary={b}");
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&ct).unwrap_or_else(|_| unreachable!()),
            );
            let body = format!(
                "--{b}\r\ncontent-disposition: form-data; name=\"x\"\r\n\r\n1\r\n--{b}--\r\n"
            );
            request_hash(&Method::POST, "/p", &h, body.as_bytes())
        };
        assert_eq!(with("aaaa1111"), with("bbbb2222"));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_ne!(
            request_hash(&Method::POST, "/p", &h, b"{\"a\":1}"),
            request_hash(&Method::POST, "/p", &h, b"{\"a\":2}")
        );
    }
}
