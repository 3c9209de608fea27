use std::collections::BTreeMap;

use bytes::Bytes;
use unmark_schemas::{FailureReason, ParamError};

/// A failure of a stage, with the reason the job reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    /// Machine-readable reason.
    pub reason: FailureReason,
    /// Detail safe to show to the client.
    pub message: String,
}

impl StageError {
    /// A new error.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// A fault of the service rather than of the input; retried by the runner.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureReason::Internal, message)
    }

    /// Whether the runner should retry.
    pub fn is_retryable(&self) -> bool {
        self.reason.is_retryable()
    }
}

impl From<ParamError> for StageError {
    fn from(e: ParamError) -> Self {
        Self::new(FailureReason::InvalidParameter, e.message)
    }
}

/// The artifacts a stage asked for, by name, as loaded from the blob store.
#[derive(Debug, Default, Clone)]
pub struct Artifacts(pub BTreeMap<String, Bytes>);

impl Artifacts {
    /// An artifact that must be there.
    pub fn require(&self, name: &str) -> Result<&Bytes, StageError> {
        self.0
            .get(name)
            .ok_or_else(|| StageError::internal(format!("missing artifact {name:?}")))
    }

    /// An artifact that may be absent.
    pub fn optional(&self, name: &str) -> Option<&Bytes> {
        self.0.get(name)
    }
}

/// One output of a stage.
#[derive(Debug, Clone)]
pub enum Produced {
    /// New bytes, stored under a deterministic key.
    Blob(Bytes),
    /// The same blob as an existing artifact: nothing is copied.
    Alias(&'static str),
}

/// What a stage made.
#[derive(Debug, Clone, Default)]
pub struct StageOutput {
    /// Named outputs; they replace artifacts of the same name.
    pub artifacts: Vec<(&'static str, Produced)>,
    /// Media type of `result`, set by the last stage.
    pub content_type: Option<String>,
}

impl StageOutput {
    /// Adds an output.
    pub fn with(mut self, name: &'static str, produced: Produced) -> Self {
        self.artifacts.push((name, produced));
        self
    }
}

/// A pipeline stage: artifacts and params in, artifacts out, no I/O.
///
/// Batching, acks, retries, storage and telemetry live in the [`crate::Runner`], once.
pub trait Stage: Send + Sync + 'static {
    /// The stage's name; it consumes `unmark.stage.<name>`.
    fn name(&self) -> &str;

    /// The artifacts it reads; those present are loaded, absent ones are skipped.
    fn reads(&self) -> &'static [&'static str];

    /// Runs the stage. Called on a blocking thread: it may use all the CPU it wants.
    fn run(
        &self,
        inputs: &Artifacts,
        params: &serde_json::Value,
    ) -> Result<StageOutput, StageError>;
}
