use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::params::{self, ParamError};

/// Identifier of a job: lowercase letters, digits and dashes, 1 to 64 characters.
///
/// It appears in NATS subjects and blob keys, so the alphabet is deliberately narrow.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Checks that `id` is usable in a subject and a blob key.
    pub fn new(id: impl Into<String>) -> Result<Self, ParamError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(id))
        } else {
            Err(ParamError::new(
                "job id",
                format!("expected 1 to 64 of [a-z0-9-], got {id:?}"),
            ))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = ParamError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One step of a pipeline: the stage that runs it and that stage's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Stage name, for example `inpaint`; the step is consumed from `unmark.stage.<stage>`.
    pub stage: String,
    /// Parameters of the stage; their schema depends on the stage (see `params`).
    #[serde(default)]
    pub params: serde_json::Value,
}

/// A job as submitted: a named pipeline, its ordered steps, and the blobs it starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's id, chosen by the submitter (the gateway uses random UUIDs).
    pub id: JobId,
    /// Pipeline name, for example `remove-watermark`.
    pub pipeline: String,
    /// The steps, run in order; the first one receives the job's input blobs.
    pub steps: Vec<Step>,
    /// Input blobs by name (`input`, and `mask_input` where a mask was sent).
    pub inputs: BTreeMap<String, crate::BlobRef>,
}

impl JobSpec {
    /// Checks every step's parameters against the schema of its stage.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.steps.is_empty() {
            return Err(ParamError::new("steps", "a job needs at least one step"));
        }
        for step in &self.steps {
            params::validate_step(&step.stage, &step.params)?;
        }
        Ok(())
    }
}
