//! Background removal over HTTP: `POST /api/v1/remove-background` (unmark's form) and
//! `POST /api/remove` (rembg's server API, so rembg clients switch by changing the URL).

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Extension, Multipart, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use unmark_schemas::background::{BackgroundMode, BackgroundParams, parse_color};
use unmark_schemas::params::OutputFormat;
use unmark_schemas::pipeline;

use crate::auth::Caller;
use crate::form::{boolean, multipart_error, number, param, read_file};
use crate::jobs::{self, Admission};
use crate::{ApiError, AppState, request_id, routes};

const FIELDS: &str = "image, bg_image, mode, bg_color, bg_blur, crop, crop_margin, \
                      post_process_mask, alpha_matting, foreground_threshold, \
                      background_threshold, erode_size, decontaminate, keep_alpha, format, \
                      work_max_side, callback_url";

const REMBG_FIELDS: &str = "file, model, a, af, ab, ae, om, ppm, bgc, extras, dc, vm";

/// The parts of a form: files by name and text fields in order; a part sent twice is
/// refused.
struct Parts {
    files: BTreeMap<String, Bytes>,
    texts: Vec<(String, String)>,
}

async fn read_parts(
    multipart: Result<Multipart, MultipartRejection>,
    file_parts: &[&str],
    file_limit: u64,
    body_limit: usize,
    expected: &str,
) -> Result<Parts, ApiError> {
    let mut multipart = multipart.map_err(|e| crate::form::not_multipart(e, expected))?;
    let mut parts = Parts {
        files: BTreeMap::new(),
        texts: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
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
        if file_parts.contains(&name.as_str()) {
            let bytes = read_file(field, &name, file_limit, body_limit).await?;
            parts.files.insert(name, bytes);
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| multipart_error(e, body_limit))?;
            parts.texts.push((name, text));
        }
    }
    Ok(parts)
}

fn required_image(parts: &mut Parts, name: &str) -> Result<Bytes, ApiError> {
    let image = parts
        .files
        .remove(name)
        .ok_or_else(|| ApiError::bad_request(format!("missing the {name:?} part")))?;
    if image.is_empty() {
        return Err(ApiError::bad_request(format!("the {name:?} part is empty")));
    }
    Ok(image)
}

/// A background removal ready for [`jobs::admit`]: the settings applied within the
/// caller's plan, the inputs named as the pipeline reads them.
pub(crate) fn admission(
    state: &AppState,
    caller: &Caller,
    image: Bytes,
    background: Option<Bytes>,
    params: &BackgroundParams,
    callback_url: Option<String>,
) -> Result<Admission, ApiError> {
    let mut options = params.apply(&state.config.background).map_err(param)?;
    if let Some(plan) = &caller.plan {
        options.decode.max_megapixels = options.decode.max_megapixels.min(plan.max_megapixels);
    }
    let cost = crate::limits::cost(&image, options.decode.max_megapixels);
    let mut inputs = vec![("input", image)];
    if let Some(bg) = background.filter(|b| !b.is_empty()) {
        inputs.push(("background_input", bg));
    }
    Ok(Admission {
        pipeline: pipeline::REMOVE_BACKGROUND,
        steps: pipeline::remove_background(&options),
        inputs,
        callback_url,
        cost,
    })
}

/// Admits and runs a background removal, answering like `remove-watermark`.
async fn run(
    state: &AppState,
    caller: &Caller,
    image: Bytes,
    background: Option<Bytes>,
    params: BackgroundParams,
    callback_url: Option<String>,
    rid: Option<String>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let admission = admission(state, caller, image, background, &params, callback_url)?;
    let (id, held) = jobs::admit(state, caller, admission, &rid).await?;
    routes::answer(state, id, held, rid, started).await
}

/// `POST /api/v1/remove-background`: multipart `image` (+ `bg_image`) and options.
pub(crate) async fn remove_background(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let rid = request_id(&headers);
    let config = &state.config;
    let limit = config.background.decode.max_input_bytes;
    let with_rid = |e: ApiError| e.with_request_id(rid.clone());
    let mut parts = read_parts(
        multipart,
        &["image", "bg_image"],
        limit,
        config.max_body_bytes,
        "an \"image\" part",
    )
    .await
    .map_err(with_rid)?;
    let mut p = BackgroundParams::default();
    let mut callback_url = None;
    for (name, text) in &parts.texts {
        let flag = || boolean(name, text);
        match name.as_str() {
            "mode" => p.mode = Some(BackgroundMode::parse(text).map_err(param)?),
            "bg_color" => p.bg_color = Some(parse_color(name, text).map_err(param)?),
            "bg_blur" => p.bg_blur = Some(number(name, text)?),
            "crop" => p.crop = Some(flag()?),
            "crop_margin" => p.crop_margin = Some(number(name, text)?),
            "post_process_mask" => p.post_process_mask = Some(flag()?),
            "alpha_matting" => p.alpha_matting = Some(flag()?),
            "foreground_threshold" => p.foreground_threshold = Some(number(name, text)?),
            "background_threshold" => p.background_threshold = Some(number(name, text)?),
            "erode_size" => p.erode_size = Some(number(name, text)?),
            "decontaminate" => p.decontaminate = Some(flag()?),
            "keep_alpha" => p.keep_alpha = Some(flag()?),
            "format" => p.format = Some(OutputFormat::parse(text.trim()).map_err(param)?),
            "work_max_side" => p.work_max_side = Some(number(name, text)?),
            "callback_url" => callback_url = Some(text.trim().to_owned()),
            other => {
                return Err(with_rid(ApiError::bad_request(format!(
                    "unknown part {other:?}; expected one of {FIELDS}"
                ))));
            }
        }
    }
    let image = required_image(&mut parts, "image").map_err(with_rid)?;
    let background = parts.files.remove("bg_image");
    run(
        &state,
        &caller,
        image,
        background,
        p,
        callback_url,
        rid.clone(),
    )
    .await
    .map_err(with_rid)
}

/// The rembg models this endpoint answers for: ISNet general use is what runs;
/// `dis_custom` (rembg's ISNet with a custom file) is served by the weights this server
/// imported (its `extras.model_path` cannot name a file on this server).
const REMBG_MODELS: [&str; 2] = ["isnet-general-use", "dis_custom"];

/// `POST /api/remove`: rembg's server API. The image is the multipart `file`; `model`,
/// `a`, `af`, `ab`, `ae`, `om`, `ppm`, `bgc`, `extras`, `dc` are accepted as form fields
/// or as query parameters. The answer is a PNG, as rembg's.
pub(crate) async fn rembg_remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let rid = request_id(&headers);
    let config = &state.config;
    let with_rid = |e: ApiError| e.with_request_id(rid.clone());
    let mut parts = read_parts(
        multipart,
        &["file"],
        config.background.decode.max_input_bytes,
        config.max_body_bytes,
        "a \"file\" part (rembg's API)",
    )
    .await
    .map_err(with_rid)?;
    let mut p = BackgroundParams {
        format: Some(OutputFormat::Png),
        ..Default::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, text) in parts.texts.iter().chain(query.iter()) {
        if seen.contains(&name.as_str()) {
            return Err(with_rid(ApiError::bad_request(format!(
                "{name:?} is given twice (form and query)"
            ))));
        }
        seen.push(name);
        let flag = || boolean(name, text);
        match name.as_str() {
            "model" => {
                let model = text.trim();
                if !REMBG_MODELS.contains(&model) {
                    return Err(with_rid(ApiError::bad_request(format!(
                        "model {model:?} is not served here; this server runs ISNet \
                         (isnet-general-use); send model=isnet-general-use or leave it out"
                    ))));
                }
            }
            "a" => p.alpha_matting = Some(flag()?),
            "af" => p.foreground_threshold = Some(number(name, text)?),
            "ab" => p.background_threshold = Some(number(name, text)?),
            "ae" => p.erode_size = Some(number(name, text)?),
            "om" => {
                if flag()? {
                    p.mode = Some(BackgroundMode::Mask);
                }
            }
            "ppm" => p.post_process_mask = Some(flag()?),
            "bgc" => {
                if !text.trim().is_empty() && text.trim() != "null" {
                    p.bg_color = Some(parse_color(name, text).map_err(param)?);
                    // rembg composites onto an RGBA canvas and writes RGBA.
                    p.keep_alpha = Some(true);
                }
            }
            "extras" => {
                if !text.trim().is_empty() {
                    serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                        with_rid(ApiError::bad_request(format!("extras must be JSON: {e}")))
                    })?;
                }
            }
            "dc" => p.decontaminate = Some(flag()?),
            "vm" => {
                if flag()? {
                    return Err(with_rid(ApiError::bad_request(
                        "vm=true (edge refinement with a matting network) is not available \
                         here; a=true (alpha matting) and dc=true (edge colours) are",
                    )));
                }
            }
            other => {
                return Err(with_rid(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; rembg's API takes {REMBG_FIELDS}"
                ))));
            }
        }
    }
    let image = required_image(&mut parts, "file").map_err(with_rid)?;
    run(&state, &caller, image, None, p, None, rid.clone())
        .await
        .map_err(with_rid)
}
