//! NATS-native submission: the request a client publishes on `unmark.jobs.submit` and the
//! reply it gets. See `docs/nats.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FailureReason;
use crate::background::BackgroundParams;
use crate::params::{Engine, OutputFormat, ParamError, PluginCall, ReturnKind, WatermarkOptions};
use crate::pipeline;

/// An input of a submitted job: inline (base64) or already in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InputRef {
    /// The file's bytes, base64-encoded (standard alphabet, padded). The whole request must
    /// fit in the server's `max_payload` (1 MiB by default).
    Base64(String),
    /// A key in unmark's blob store, for larger files uploaded beforehand.
    Key(String),
}

/// Optional settings of a watermark removal; each absent one takes the server's default.
///
/// Every front end (HTTP form, CLI flags, NATS submission) fills one of these and calls
/// [`SubmitParams::apply`], so the options map onto the pipeline in one place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SubmitParams {
    /// Engine: `restore` or `telea`.
    pub engine: Option<Engine>,
    /// Inpainting radius in pixels.
    pub radius: Option<u32>,
    /// Grow the mask by this many pixels.
    pub mask_dilate: Option<u32>,
    /// The built-in detector's probability threshold (0.01 to 0.99), used when no mask is sent.
    pub threshold: Option<f32>,
    /// `image` (the default) or `mask`: the mask that was removed, as a PNG, to review a
    /// detection.
    #[serde(rename = "return")]
    pub returns: Option<ReturnKind>,
    /// Output format.
    pub format: Option<OutputFormat>,
    /// JPEG quality.
    pub quality: Option<u8>,
    /// Longest side of the working image.
    pub work_max_side: Option<u32>,
    /// Keep EXIF.
    pub keep_metadata: Option<bool>,
    /// WASM filters to run after decode, before pre-scale, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<PluginCall>,
    /// A WASM mask detector; its mask is added to the one sent, and makes a mask optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector: Option<PluginCall>,
    /// WASM filters to run on the finished image, before encode, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<PluginCall>,
}

impl SubmitParams {
    /// `defaults` with these settings applied, validated.
    pub fn apply(&self, defaults: &WatermarkOptions) -> Result<WatermarkOptions, ParamError> {
        let mut o = defaults.clone();
        if let Some(v) = self.engine {
            o.inpaint.engine = v;
        }
        if let Some(v) = self.radius {
            o.inpaint.radius = v;
        }
        if let Some(v) = self.mask_dilate {
            o.detect.mask_dilate = v;
        }
        if let Some(v) = self.threshold {
            o.detect.threshold = v;
        }
        if let Some(v) = self.returns {
            o.encode.returns = v;
        }
        if let Some(v) = self.format {
            o.encode.format = Some(v);
        }
        if let Some(v) = self.quality {
            o.encode.quality = v;
        }
        if let Some(v) = self.work_max_side {
            o.prescale.work_max_side = v;
        }
        if let Some(v) = self.keep_metadata {
            o.encode.keep_metadata = v;
        }
        if !self.pre.is_empty() {
            o.plugins.pre = self.pre.clone();
        }
        if self.detector.is_some() {
            o.plugins.detector = self.detector.clone();
        }
        if !self.post.is_empty() {
            o.plugins.post = self.post.clone();
        }
        o.validate()?;
        Ok(o)
    }
}

/// A job submitted over NATS (request on `unmark.jobs.submit`), or as JSON to
/// `POST /api/v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Pipeline name: `remove-watermark` or `remove-background`.
    pub pipeline: String,
    /// Settings of a `remove-watermark` job; absent ones take the server's defaults.
    #[serde(default)]
    pub params: SubmitParams,
    /// Settings of a `remove-background` job; absent ones take the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<BackgroundParams>,
    /// A `remove-background` job's new background, drawn behind the subject
    /// (`mode: composite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bg_image: Option<InputRef>,
    /// The image.
    pub image: InputRef,
    /// The mask (white = remove), where one is sent.
    #[serde(default)]
    pub mask: Option<InputRef>,
    /// A watermark profile's id (`POST /api/v1/watermark-profiles`): its mark is found in the
    /// image and unblended; the mask becomes optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// An `http(s)` URL to POST the outcome to when the job ends (webhooks); kept with the
    /// job record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// The pipeline a [`SubmitRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitKind {
    /// `remove-watermark`: `params`, `mask`, `profile`.
    RemoveWatermark,
    /// `remove-background`: `background`, `bg_image`.
    RemoveBackground,
}

impl SubmitRequest {
    /// The pipeline asked for, checking that every field sent belongs to it (a field of the
    /// other pipeline would be silently ignored otherwise).
    pub fn kind(&self) -> Result<SubmitKind, ParamError> {
        let stray = |field: &str, pipeline: &str| {
            Err(ParamError::new(
                field.split(' ').next().unwrap_or(field),
                format!("{field} is not a setting of a {pipeline} job"),
            ))
        };
        match self.pipeline.as_str() {
            pipeline::REMOVE_WATERMARK => {
                if self.background.is_some() {
                    return stray("background", pipeline::REMOVE_WATERMARK);
                }
                if self.bg_image.is_some() {
                    return stray("bg_image", pipeline::REMOVE_WATERMARK);
                }
                Ok(SubmitKind::RemoveWatermark)
            }
            pipeline::REMOVE_BACKGROUND => {
                if self.params != SubmitParams::default() {
                    return stray(
                        "params (its settings go in background)",
                        pipeline::REMOVE_BACKGROUND,
                    );
                }
                if self.mask.is_some() {
                    return stray("mask", pipeline::REMOVE_BACKGROUND);
                }
                if self.profile.is_some() {
                    return stray("profile", pipeline::REMOVE_BACKGROUND);
                }
                Ok(SubmitKind::RemoveBackground)
            }
            other => Err(ParamError::new(
                "pipeline",
                format!(
                    "pipeline must be {:?} or {:?}, got {other:?}",
                    pipeline::REMOVE_WATERMARK,
                    pipeline::REMOVE_BACKGROUND
                ),
            )),
        }
    }
}

/// The reply to a submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum SubmitReply {
    /// The job is accepted: follow `events_subject` (JetStream stream `UNMARK_EVENTS`).
    Accepted {
        /// The job's id.
        id: crate::JobId,
        /// `unmark.events.<id>`.
        events_subject: String,
    },
    /// The request was refused; nothing was started.
    Rejected {
        /// Machine-readable reason.
        reason: FailureReason,
        /// What was wrong.
        message: String,
    },
}
