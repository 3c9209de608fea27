//! The multipart form of `POST /api/v1/remove-watermark`.

use axum::extract::Multipart;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use unmark_schemas::params::{Engine, OutputFormat, PluginCall, ReturnKind, WatermarkOptions};
use unmark_schemas::{ParamError, SubmitParams};

use crate::ApiError;

const FIELDS: &str = "image, mask, engine, radius, mask_dilate, threshold, return, format, \
                      quality, work_max_side, keep_metadata, pre, detector, post, profile, \
                      callback_url";

/// A parsed and validated request.
pub(crate) struct WatermarkForm {
    pub(crate) image: Bytes,
    pub(crate) mask: Option<Bytes>,
    pub(crate) options: WatermarkOptions,
    pub(crate) callback_url: Option<String>,
    /// A watermark profile's id: the mark to find and unblend.
    pub(crate) profile: Option<String>,
}

/// A body that is not multipart: 415, naming the `expected` parts.
pub(crate) fn not_multipart(e: MultipartRejection, expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not-multipart",
        format!(
            "expected a multipart/form-data body with {expected}: {}",
            e.body_text()
        ),
    )
}

pub(crate) fn multipart_error(e: MultipartError, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("request body is over the limit of {limit} bytes"))
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Reads a file part, refusing it as soon as it passes `limit` bytes.
pub(crate) async fn read_file(
    mut field: Field<'_>,
    name: &str,
    limit: u64,
    body_limit: usize,
) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(e, body_limit))?
    {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::too_large(format!(
                "{name} is over the limit of {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub(crate) fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number, got {text:?}")))
}

pub(crate) fn decimal(name: &str, text: &str) -> Result<f32, ApiError> {
    text.trim()
        .parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ApiError::bad_request(format!("{name} must be a number, got {text:?}")))
}

pub(crate) fn boolean(name: &str, text: &str) -> Result<bool, ApiError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be true or false, got {text:?}"
        ))),
    }
}

pub(crate) fn param(e: ParamError) -> ApiError {
    ApiError::bad_request(e.message)
}

/// Parses the form over `defaults`; every part is checked, unknown and repeated ones refused.
pub(crate) async fn parse(
    mut multipart: Multipart,
    defaults: &WatermarkOptions,
    body_limit: usize,
) -> Result<WatermarkForm, ApiError> {
    let mut params = SubmitParams::default();
    let file_limit = defaults.decode.max_input_bytes;
    let (mut image, mut mask, mut callback_url, mut profile) = (None, None, None, None);
    let mut seen = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, body_limit))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if seen.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "part {name:?} appears twice"
            )));
        }
        seen.push(name.clone());
        match name.as_str() {
            "image" => image = Some(read_file(field, "image", file_limit, body_limit).await?),
            "mask" => mask = Some(read_file(field, "mask", file_limit, body_limit).await?),
            _ => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| multipart_error(e, body_limit))?;
                match name.as_str() {
                    "engine" => params.engine = Some(Engine::parse(text.trim()).map_err(param)?),
                    "radius" => params.radius = Some(number(&name, &text)?),
                    "mask_dilate" => params.mask_dilate = Some(number(&name, &text)?),
                    "threshold" => params.threshold = Some(decimal(&name, &text)?),
                    "return" => {
                        params.returns = Some(ReturnKind::parse(text.trim()).map_err(param)?)
                    }
                    "format" => {
                        params.format = Some(OutputFormat::parse(text.trim()).map_err(param)?)
                    }
                    "quality" => params.quality = Some(number(&name, &text)?),
                    "work_max_side" => params.work_max_side = Some(number(&name, &text)?),
                    "keep_metadata" => params.keep_metadata = Some(boolean(&name, &text)?),
                    "pre" => params.pre = PluginCall::parse_list(&name, &text).map_err(param)?,
                    "post" => params.post = PluginCall::parse_list(&name, &text).map_err(param)?,
                    "detector" => {
                        let mut calls = PluginCall::parse_list(&name, &text).map_err(param)?;
                        if calls.len() > 1 {
                            return Err(ApiError::bad_request(
                                "detector names one mask plugin, got several",
                            ));
                        }
                        params.detector = calls.pop();
                    }
                    "callback_url" => callback_url = Some(text.trim().to_owned()),
                    "profile" => profile = Some(text.trim().to_owned()),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unknown part {other:?}; expected one of {FIELDS}"
                        )));
                    }
                }
            }
        }
    }
    let image = image.ok_or_else(|| ApiError::bad_request("missing the \"image\" part"))?;
    if image.is_empty() {
        return Err(ApiError::bad_request("the \"image\" part is empty"));
    }
    let options = params.apply(defaults).map_err(param)?;
    Ok(WatermarkForm {
        image,
        mask: mask.filter(|m| !m.is_empty()),
        options,
        callback_url,
        profile,
    })
}
