use schemars::schema_for;

use crate::{JobEvent, JobSpec, StageMessage, SubmitReply, SubmitRequest, params};

/// The published JSON Schemas as `(file name, pretty JSON)`, in a stable order.
///
/// `schemas/json/` holds exactly these files; a test regenerates them and fails on any drift.
pub fn json_schemas() -> Vec<(&'static str, String)> {
    let render = |schema: schemars::Schema| {
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        ("job-spec.json", render(schema_for!(JobSpec))),
        ("stage-message.json", render(schema_for!(StageMessage))),
        ("job-event.json", render(schema_for!(JobEvent))),
        ("submit-request.json", render(schema_for!(SubmitRequest))),
        ("submit-reply.json", render(schema_for!(SubmitReply))),
        (
            "params-decode.json",
            render(schema_for!(params::DecodeParams)),
        ),
        (
            "params-prescale.json",
            render(schema_for!(params::PrescaleParams)),
        ),
        (
            "params-detect.json",
            render(schema_for!(params::DetectParams)),
        ),
        (
            "params-inpaint.json",
            render(schema_for!(params::InpaintParams)),
        ),
        (
            "params-encode.json",
            render(schema_for!(params::EncodeParams)),
        ),
    ]
}
