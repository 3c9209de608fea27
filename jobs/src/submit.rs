use bytes::Bytes;
use unmark_broker::{JobClient, JobError, now_ms};
use unmark_schemas::{JobId, ParamError, Step};

use crate::{JobStore, NewJob, Owner, StoreError};

/// A failure to submit a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The request is invalid (the client's fault).
    #[error(transparent)]
    Invalid(#[from] ParamError),
    /// The broker or the blob store failed.
    #[error(transparent)]
    Job(JobError),
    /// The job database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<JobError> for SubmitError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Invalid(p) => Self::Invalid(p),
            other => Self::Job(other),
        }
    }
}

/// Submits jobs and records them: the one way in for the HTTP API and NATS submissions.
///
/// The order makes every accepted job recoverable: inputs are uploaded, then the job is
/// recorded with its spec, then it starts. A crash before the record leaves only blobs (the
/// sweeper takes them); a crash after it leaves a job that [`Jobs::recover`] starts again.
#[derive(Clone)]
pub struct Jobs {
    client: JobClient,
    store: JobStore,
}

impl Jobs {
    /// Submission over `client`, recorded in `store`.
    pub fn new(client: JobClient, store: JobStore) -> Self {
        Self { client, store }
    }

    /// The client that moves jobs.
    pub fn client(&self) -> &JobClient {
        &self.client
    }

    /// The job records.
    pub fn store(&self) -> &JobStore {
        &self.store
    }

    /// Uploads, records and starts a job with a new random id; returns the id. Follow it
    /// with [`JobClient::follow`] where its outcome is awaited.
    pub async fn submit(
        &self,
        pipeline: &str,
        steps: Vec<Step>,
        inputs: Vec<(&str, Bytes)>,
        callback_url: Option<&str>,
        owner: Option<Owner<'_>>,
    ) -> Result<JobId, SubmitError> {
        if let Some(url) = callback_url {
            check_callback_url(url)?;
        }
        let id = JobId::new(new_id())?;
        let spec = self
            .client
            .prepare(id.clone(), pipeline, steps, inputs)
            .await?;
        self.store
            .create(&NewJob {
                spec: &spec,
                callback_url,
                at_ms: now_ms() as i64,
                owner,
            })
            .await?;
        self.client.start(spec).await?;
        Ok(id)
    }

    /// Starts again every recorded job that has not ended, of which the broker holds no event
    /// and whose inputs are in this gateway's blob store: after a crash of the in-process broker that is every unfinished job; on
    /// JetStream, only a job whose gateway died between recording and starting it. Starting
    /// a job twice is harmless. Returns how many were started.
    pub async fn recover(&self) -> Result<usize, SubmitError> {
        let mut started = 0;
        'jobs: for spec in self.store.unfinished().await? {
            if self.client.last_event(&spec.id).await?.is_some() {
                continue;
            }
            // Only a job whose inputs this gateway can read: a database shared by gateways
            // with separate blob stores holds the others' jobs too.
            for input in spec.inputs.values() {
                if !self
                    .client
                    .blobs()
                    .exists(&input.key)
                    .await
                    .unwrap_or(false)
                {
                    tracing::debug!(job_id = %spec.id, "not restarting a job whose inputs are elsewhere");
                    continue 'jobs;
                }
            }
            tracing::info!(job_id = %spec.id, "starting an unfinished job again");
            self.client.start(spec).await?;
            started += 1;
        }
        Ok(started)
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A callback target must be an absolute `http(s)` URL of sane length.
fn check_callback_url(url: &str) -> Result<(), ParamError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && url.len() <= 2048 && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(ParamError::new(
            "callback_url",
            format!(
                "callback_url must be an absolute http:// or https:// URL of at most 2048 \
                 characters, got {url:?}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::check_callback_url;

    #[test]
    fn callback_urls_are_checked() {
        assert!(check_callback_url("https://example.com/hook").is_ok());
        assert!(check_callback_url("http://127.0.0.1:9/x").is_ok());
        for bad in ["ftp://x", "https://", "example.com", "http://a b"] {
            assert!(check_callback_url(bad).is_err(), "{bad}");
        }
    }
}
