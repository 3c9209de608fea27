//! Wire types of unmark: everything that crosses a process boundary.
//!
//! - [`JobSpec`]: what a client asks for (a pipeline, its ordered [`Step`]s and their params).
//! - [`StageMessage`]: what one stage hands the next (job id, step index, blob references, attempt).
//! - [`JobEvent`]: what a job reports (accepted, stage done, succeeded, failed with a
//!   machine-readable [`FailureReason`]).
//! - [`SubmitRequest`] / [`SubmitReply`]: NATS-native submission on `unmark.jobs.submit`.
//! - [`params`]: the parameters each stage accepts, validated the same way by the gateway and
//!   by the stage itself.
//!
//! Every type derives [`schemars::JsonSchema`]; [`json_schemas`] renders the published files in
//! `schemas/json/`, so a client in any language can validate what it sends and receives.
//!
//! ```
//! use unmark_schemas::{pipeline, params::WatermarkOptions};
//!
//! let steps = pipeline::remove_watermark(&WatermarkOptions::default());
//! let names: Vec<_> = steps.iter().map(|s| s.stage.as_str()).collect();
//! assert_eq!(names, ["decode", "prescale", "detect", "inpaint", "encode"]);
//! ```

pub mod background;
mod event;
mod export;
mod job;
mod message;
pub mod params;
pub mod pipeline;
mod submit;

pub use event::{EventKind, FailureReason, JobEvent, StageTiming};
pub use export::json_schemas;
pub use job::{JobId, JobSpec, Step};
pub use message::{BlobRef, StageMessage};
pub use params::ParamError;
pub use submit::{InputRef, SubmitKind, SubmitParams, SubmitReply, SubmitRequest};

/// Version of the wire contract; bumped on any incompatible change of the types in this crate.
pub const WIRE_VERSION: u32 = 1;
