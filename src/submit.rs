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
use unmark_schemas::params::WatermarkOptions;
use unmark_schemas::{
    BlobRef, FailureReason, InputRef, JobId, SubmitReply, SubmitRequest, pipeline,
};

/// Answers submissions until the connection closes.
pub(crate) async fn serve(
    nats: async_nats::Client,
    jobs: Jobs,
    defaults: WatermarkOptions,
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
    defaults: &WatermarkOptions,
    registry: &unmark_plugins::Registry,
    payload: &[u8],
) -> SubmitReply {
    let client = jobs.client();
    let request: SubmitRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            return rejected(
                FailureReason::InvalidParameter,
                format!("bad submission: {e}"),
            );
        }
    };
    if request.pipeline != pipeline::REMOVE_WATERMARK {
        return rejected(
            FailureReason::InvalidParameter,
            format!(
                "pipeline must be {:?}, got {:?}",
                pipeline::REMOVE_WATERMARK,
                request.pipeline
            ),
        );
    }
    let mut options = match request.params.apply(defaults) {
        Ok(o) => o,
        Err(e) => return rejected(FailureReason::InvalidParameter, e.message),
    };
    if let Err(e) = unmark_plugins::resolve(registry, &mut options).await {
        return rejected(FailureReason::InvalidParameter, e.to_string());
    }
    let mut inputs = match input(client, "image", &request.image).await {
        Ok(bytes) => vec![("input", bytes)],
        Err(reply) => return reply,
    };
    if let Some(mask) = &request.mask {
        match input(client, "mask", mask).await {
            Ok(bytes) => inputs.push(("mask_input", bytes)),
            Err(reply) => return reply,
        }
    }
    if let Some(id) = &request.profile {
        let key = match JobId::new(id.clone()) {
            Ok(id) => unmark_broker::keys::profile(&id),
            Err(e) => {
                return rejected(
                    FailureReason::InvalidParameter,
                    format!("profile: {}", e.message),
                );
            }
        };
        match client.blobs().get(&BlobRef { key, size: 0 }).await {
            Ok(bytes) => inputs.push(("profile", bytes)),
            Err(_) => {
                return rejected(
                    FailureReason::InvalidParameter,
                    format!("no watermark profile {id:?}"),
                );
            }
        }
    }
    let steps = pipeline::remove_watermark(&options);
    match jobs
        .submit(
            pipeline::REMOVE_WATERMARK,
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
