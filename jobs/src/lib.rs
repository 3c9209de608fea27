//! Job records and the blob sweeper: the state the gateway keeps about jobs.
//!
//! - [`Jobs`]: uploads, records and starts a job (HTTP and NATS submissions go through it),
//!   and starts unfinished jobs again after a crash.
//! - [`JobStore`]: one row a job in SQLite (WAL, the default) or PostgreSQL, through `sqlx`,
//!   with embedded migrations. Only the gateway writes it; workers never touch SQL.
//! - [`record`]: reads every job event from the broker's durable events consumer and applies
//!   it with idempotent, monotone upserts, so a restarted gateway catches up and a repeated
//!   or late event changes nothing.
//! - [`accounts`]: API keys, plans, quotas (a credit reserved before a job starts, charged
//!   only when it succeeds) and usage.
//! - [`limits`]: GCRA rate limits shared by every gateway on the database.
//! - [`sweep`]: deletes expired results, blobs left behind by crashed jobs, and fails jobs
//!   that stopped moving.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use unmark_jobs::{JobStatus, JobStore};
//! use unmark_schemas::{EventKind, JobEvent, JobId};
//!
//! let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
//! let store = JobStore::open(&url, 2).await?;
//! let event = JobEvent {
//!     job_id: JobId::new("j1")?,
//!     at_ms: 1,
//!     kind: EventKind::Accepted { pipeline: "remove-watermark".into() },
//! };
//! store.apply(&event, Duration::from_secs(60)).await?;
//! let job = store.get("j1").await?.expect("recorded");
//! assert_eq!(job.status, JobStatus::Queued);
//! assert_eq!(job.pipeline, "remove-watermark");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod accounts;
pub mod idempotency;
pub mod limits;
mod recorder;
mod store;
mod submit;
mod sweeper;
pub mod webhooks;

use serde::Serialize;

pub use recorder::{RECORDS_CONSUMER, record};
pub use store::{JobStore, NewJob, Owner};
pub use submit::{Jobs, SubmitError};
pub use sweeper::{SweepConfig, SweepReport, sweep};

/// A failure of the job database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be opened or migrated.
    #[error("{0}")]
    Open(String),
    /// A query failed.
    #[error("job database: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored value is not what it should be.
    #[error("job database: {0}")]
    Data(String),
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, no step finished yet.
    Queued,
    /// At least one step finished.
    Running,
    /// The result is (or was) available.
    Succeeded,
    /// The job failed; see its error.
    Failed,
}

impl JobStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// The status of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// Whether nothing more will happen to the job.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One finished step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRecord {
    /// Index of the step in the pipeline.
    pub step: u32,
    /// Stage name.
    pub stage: String,
    /// Milliseconds spent in the stage.
    pub ms: f64,
}

/// The result of a succeeded job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobResult {
    /// Its blob key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub content_type: String,
    /// When it will be deleted, milliseconds since the Unix epoch.
    pub expires_ms: Option<i64>,
    /// When it was deleted, if it is gone.
    pub deleted_ms: Option<i64>,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobFailure {
    /// Machine-readable reason (`FailureReason` on the wire).
    pub reason: String,
    /// What went wrong, safe to show to the client.
    pub message: String,
    /// The stage that failed, where one did.
    pub stage: Option<String>,
}

/// A job as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// The job's id.
    pub id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Where it is.
    pub status: JobStatus,
    /// Where to POST the outcome.
    pub callback_url: Option<String>,
    /// Submission time (ms since the Unix epoch).
    pub created_ms: i64,
    /// Time of the last change.
    pub updated_ms: i64,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// The result, once it succeeded.
    pub result: Option<JobResult>,
    /// The failure, once it failed.
    pub error: Option<JobFailure>,
    /// Finished steps, in order.
    pub stages: Vec<StageRecord>,
}
