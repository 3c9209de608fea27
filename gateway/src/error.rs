use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use unmark_schemas::FailureReason;

/// Every error the API returns, as RFC 9457 problem details.
///
/// Client errors keep their status and a precise message; internal errors become a generic
/// 500 that carries only the request id, and the real cause goes to the log.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    detail: String,
    request_id: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// A client error.
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            detail: detail.into(),
            request_id: None,
            headers: Vec::new(),
        }
    }

    /// Adds a response header (`Retry-After`, `RateLimit-*`).
    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    /// 400 for a malformed or out-of-range parameter.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-parameter", detail)
    }

    /// 413 for a body or input over its limit.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail)
    }

    /// 500: logs `cause` with the request id and tells the client nothing else.
    pub fn internal(cause: impl std::fmt::Display, request_id: Option<String>) -> Self {
        tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), %cause, "internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            slug: "internal",
            detail: "internal error; quote the request id when reporting it".into(),
            request_id,
            headers: Vec::new(),
        }
    }

    /// The error for a failed job.
    pub fn from_failure(
        reason: FailureReason,
        message: String,
        request_id: Option<String>,
    ) -> Self {
        let (status, slug) = match reason {
            FailureReason::UnsupportedFormat => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-format")
            }
            FailureReason::CorruptImage => (StatusCode::UNPROCESSABLE_ENTITY, "corrupt-image"),
            FailureReason::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
            FailureReason::InvalidParameter => (StatusCode::BAD_REQUEST, "invalid-parameter"),
            FailureReason::MaskSizeMismatch => (StatusCode::BAD_REQUEST, "mask-size-mismatch"),
            FailureReason::MaskRequired => (StatusCode::UNPROCESSABLE_ENTITY, "mask-required"),
            FailureReason::PluginFailed => (StatusCode::UNPROCESSABLE_ENTITY, "plugin-failed"),
            FailureReason::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            FailureReason::ModelUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "model-unavailable")
            }
            _ => return Self::internal(message, request_id),
        };
        Self {
            status,
            slug,
            detail: message,
            request_id,
            headers: Vec::new(),
        }
    }

    /// Attaches the request id.
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        if self.request_id.is_none() {
            self.request_id = request_id;
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "type": format!("urn:unmark:problem:{}", self.slug),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(id) = &self.request_id {
            body["request_id"] = id.clone().into();
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(*name, value);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
