//! NATS-native submission: a request/reply service on `unmark.jobs.submit` (queue group
//! `unmark-gateway`, so any number of gateways share the load). A client in any language
//! publishes a `SubmitRequest`, gets a `SubmitReply` with the job id, and follows
//! `unmark.events.<id>` on the `UNMARK_EVENTS` stream. See docs/nats.md.

use anyhow::Result;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use unmark_broker::{JobClient, subjects};
use unmark_jobs::{Jobs, SubmitError};
use unmark_schemas::background::BackgroundOptions;
use unmark_schemas::params::WatermarkOptions;
use unmark_schemas::{
    BlobRef, FailureReason, InputRef, JobId, Step, SubmitKind, SubmitReply, SubmitRequest, pipeline,
};

/// The server's defaults for each pipeline.
pub(crate) struct Defaults {
    pub(crate) watermark: WatermarkOptions,
    pub(crate) background: BackgroundOptions,
}

/// Answers submissions until the connection closes.
pub(crate) async fn serve(
    nats: async_nats::Client,
    jobs: Jobs,
    defaults: Defaults,
    registry: unmark_plugins::Registry,
) -> Result<()> {
    let mut requests = nats
        .queue_subscribe(subjects::v1::submit(), "unmark-gateway".into())
        .await?;
    tracing::info!(subject = %subjects::v1::submit(), "accepting jobs over NATS");
    while let Some(request) = requests.next().await {
        let reply = submit(&jobs, &defaults, &registry, &request.payload).await;
        let Some(to) = request.reply else {
            continue;
        };
        match serde_json::to_vec(&reply) {
            Ok(body) => {
                if let Err(e) = nats.publish(to, body.into()).await {
                    tracing::warn!(error = %e, "cannot answer a submission");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a submission reply"),
        }
    }
    Ok(())
}

fn rejected(reason: FailureReason, message: impl Into<String>) -> SubmitReply {
    SubmitReply::Rejected {
        reason,
        message: message.into(),
    }
}

async fn input(client: &JobClient, name: &str, input: &InputRef) -> Result<Bytes, SubmitReply> {
    match input {
        InputRef::Base64(text) => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(|e| {
                rejected(
                    FailureReason::InvalidParameter,
                    format!("{name} is not valid base64: {e}"),
                )
            }),
        InputRef::Key(key) => {
            let blob = unmark_schemas::BlobRef {
                key: key.clone(),
                size: 0,
            };
            client.fetch(&blob).await.map_err(|_| {
                rejected(
                    FailureReason::InvalidParameter,
                    format!("{name}: no blob under key {key:?}"),
                )
            })
        }
    }
}

async fn submit(
    jobs: &Jobs,
    defaults: &Defaults,
    registry: &unmark_plugins::Registry,
    payload: &[u8],
) -> SubmitReply {
    let request: SubmitRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            return rejected(
                FailureReason::InvalidParameter,
                format!("bad submission: {e}"),
            );
        }
    };
    let job = match request.kind() {
        Ok(SubmitKind::RemoveWatermark) => {
            watermark(jobs.client(), &request, &defaults.watermark, registry).await
        }
        Ok(SubmitKind::RemoveBackground) => {
            background(jobs.client(), &request, &defaults.background).await
        }
        Err(e) => return rejected(FailureReason::InvalidParameter, e.message),
    };
    let (name, steps, inputs) = match job {
        Ok(job) => job,
        Err(reply) => return reply,
    };
    match jobs
        .submit(
            name,
            steps,
            inputs,
            request.callback_url.as_deref(),
            // Inside the deployment, NATS clients are trusted: no key, no quota.
            None,
        )
        .await
    {
        Ok(id) => SubmitReply::Accepted {
            events_subject: subjects::v1::events(id.as_str()),
            id,
        },
        Err(SubmitError::Invalid(e)) => rejected(FailureReason::InvalidParameter, e.message),
        Err(e) => {
            tracing::error!(error = %e, "submission failed");
            rejected(
                FailureReason::Internal,
                "internal error while accepting the job",
            )
        }
    }
}

/// A job's pipeline name, steps and named inputs, or the reply refusing it.
type Job = Result<(&'static str, Vec<Step>, Vec<(&'static str, Bytes)>), SubmitReply>;

async fn watermark(
    client: &JobClient,
    request: &SubmitRequest,
    defaults: &WatermarkOptions,
    registry: &unmark_plugins::Registry,
) -> Job {
    let mut options = request
        .params
        .apply(defaults)
        .map_err(|e| rejected(FailureReason::InvalidParameter, e.message))?;
    unmark_plugins::resolve(registry, &mut options)
        .await
        .map_err(|e| rejected(FailureReason::InvalidParameter, e.to_string()))?;
    let mut inputs = vec![("input", input(client, "image", &request.image).await?)];
    if let Some(mask) = &request.mask {
        inputs.push(("mask_input", input(client, "mask", mask).await?));
    }
    if let Some(id) = &request.profile {
        let key = JobId::new(id.clone())
            .map(|id| unmark_broker::keys::profile(&id))
            .map_err(|e| {
                rejected(
                    FailureReason::InvalidParameter,
                    format!("profile: {}", e.message),
                )
            })?;
        let bytes = client
            .blobs()
            .get(&BlobRef { key, size: 0 })
            .await
            .map_err(|_| {
                rejected(
                    FailureReason::InvalidParameter,
                    format!("no watermark profile {id:?}"),
                )
            })?;
        inputs.push(("profile", bytes));
    }
    Ok((
        pipeline::REMOVE_WATERMARK,
        pipeline::remove_watermark(&options),
        inputs,
    ))
}

async fn background(
    client: &JobClient,
    request: &SubmitRequest,
    defaults: &BackgroundOptions,
) -> Job {
    let options = request
        .background
        .clone()
        .unwrap_or_default()
        .apply(defaults)
        .map_err(|e| rejected(FailureReason::InvalidParameter, e.message))?;
    let mut inputs = vec![("input", input(client, "image", &request.image).await?)];
    if let Some(bg) = &request.bg_image {
        inputs.push(("background_input", input(client, "bg_image", bg).await?));
    }
    Ok((
        pipeline::REMOVE_BACKGROUND,
        pipeline::remove_background(&options),
        inputs,
    ))
}
