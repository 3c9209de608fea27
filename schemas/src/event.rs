use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BlobRef, JobId};

/// An event of a job, published on `unmark.events.<job_id>`.
///
/// (No `deny_unknown_fields` here: serde cannot combine it with the flattened `kind`.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobEvent {
    /// The job the event belongs to.
    pub job_id: JobId,
    /// Milliseconds since the Unix epoch when the event was made.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Time one step took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageTiming {
    /// Stage name.
    pub stage: String,
    /// Wall-clock milliseconds spent in the stage function.
    pub ms: f64,
}

/// The kinds of job event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The job was accepted and its first step published.
    Accepted {
        /// Pipeline name.
        pipeline: String,
    },
    /// One step finished.
    StageDone {
        /// Index of the step.
        step: u32,
        /// Stage name.
        stage: String,
        /// Milliseconds spent in the stage.
        ms: f64,
        /// The engine the stage ran, where its parameters name one (`restore`, `telea`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        engine: Option<String>,
    },
    /// The job finished and its result is in the blob store.
    Succeeded {
        /// The encoded result.
        result: BlobRef,
        /// Media type of the result, for example `image/png`.
        content_type: String,
        /// Per-step timings.
        timings: Vec<StageTiming>,
    },
    /// The job failed; nothing more will happen to it.
    Failed {
        /// Machine-readable reason.
        reason: FailureReason,
        /// Human-readable detail, safe to show to the client.
        message: String,
        /// The stage that failed, where one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
    },
}

impl EventKind {
    /// Whether nothing follows this event.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded { .. } | Self::Failed { .. })
    }
}

/// Why a job failed. Clients branch on these; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// The bytes are not an image format unmark reads (HTTP 415).
    UnsupportedFormat,
    /// The format is recognised but the data is broken or truncated (HTTP 422).
    CorruptImage,
    /// The input is over a size or pixel limit (HTTP 413).
    TooLarge,
    /// A parameter is out of range or malformed (HTTP 400).
    InvalidParameter,
    /// The mask's size differs from the image's (HTTP 400).
    MaskSizeMismatch,
    /// No mask was sent and no detector can make one (HTTP 422).
    MaskRequired,
    /// A WASM plugin step failed: it ran out of its CPU or memory budget, trapped, broke the
    /// plugin contract or reported an error (HTTP 422).
    PluginFailed,
    /// The job did not finish in time (HTTP 504).
    Timeout,
    /// The model a stage needs is not installed or could not be loaded on its device
    /// (HTTP 503); `unmark models import` installs it.
    ModelUnavailable,
    /// A fault of the service, not of the input (HTTP 500).
    Internal,
}

impl FailureReason {
    /// Whether retrying the same input could succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Internal | Self::Timeout)
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedFormat => "unsupported_format",
            Self::CorruptImage => "corrupt_image",
            Self::TooLarge => "too_large",
            Self::InvalidParameter => "invalid_parameter",
            Self::MaskSizeMismatch => "mask_size_mismatch",
            Self::MaskRequired => "mask_required",
            Self::PluginFailed => "plugin_failed",
            Self::Timeout => "timeout",
            Self::ModelUnavailable => "model_unavailable",
            Self::Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_json() {
        let kinds = [
            EventKind::Accepted {
                pipeline: "remove-watermark".into(),
            },
            EventKind::StageDone {
                step: 3,
                stage: "inpaint".into(),
                ms: 1.5,
                engine: Some("restore".into()),
            },
            EventKind::Succeeded {
                result: BlobRef {
                    key: "jobs/j/4-encode-result".into(),
                    size: 10,
                },
                content_type: "image/png".into(),
                timings: vec![StageTiming {
                    stage: "decode".into(),
                    ms: 2.0,
                }],
            },
            EventKind::Failed {
                reason: FailureReason::MaskSizeMismatch,
                message: "mask is 1x1 but image is 2x2".into(),
                stage: Some("detect".into()),
            },
        ];
        for kind in kinds {
            let event = JobEvent {
                job_id: JobId::new("j").expect("id"),
                at_ms: 7,
                kind,
            };
            let json = serde_json::to_string(&event).expect("serialise");
            let back: JobEvent = serde_json::from_str(&json).expect("deserialise");
            assert_eq!(back, event, "{json}");
        }
    }
}
