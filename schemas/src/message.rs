use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::JobSpec;

/// A reference to a blob in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlobRef {
    /// Key in the blob store, for example `jobs/<id>/3-inpaint-work_out`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// What one stage hands to the next: published on the subject of the stage that runs `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageMessage {
    /// The whole job, so that every stage is stateless.
    pub job: JobSpec,
    /// Index into `job.steps` of the step to run.
    pub step: u32,
    /// Artifacts produced so far, by name (`input`, `image`, `mask`, `work`, ...).
    pub blobs: BTreeMap<String, BlobRef>,
    /// Milliseconds each finished step took, in step order.
    #[serde(default)]
    pub timings: Vec<crate::StageTiming>,
    /// Media type of the `result` artifact, once a step has made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl StageMessage {
    /// The first message of a job: step 0 with the job's inputs.
    pub fn first(job: JobSpec) -> Self {
        let blobs = job.inputs.clone();
        Self {
            job,
            step: 0,
            blobs,
            timings: Vec::new(),
            content_type: None,
        }
    }

    /// Deduplication id of this hop: `<job_id>:<step>`; a redelivered hop publishes the same id.
    pub fn hop_id(&self) -> String {
        format!("{}:{}", self.job.id, self.step)
    }
}
