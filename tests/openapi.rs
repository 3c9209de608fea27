//! The OpenAPI document against the running server: schemathesis (PyPI) generates requests
//! from it, with a valid key, and checks that no answer is a 5xx and every answer fits the
//! document. Its stateful phase follows real jobs through their links.

use std::process::Command;

use crate::common::*;
use crate::procs::python_tool;

#[tokio::test]
async fn the_openapi_document_describes_the_server() {
    // Webhook delivery off: generated callback URLs are kept, never called or resolved. The
    // background model is installed (run small, for speed), so that generated requests reach
    // every stage.
    let weights = crate::background::weights_file().display().to_string();
    let server = Server::start(&[
        ("UNMARK_WEBHOOKS__ENABLED", "false"),
        ("UNMARK_MODELS__ISNET", &weights),
        ("UNMARK_MODELS__INPUT_SIDE", "64"),
    ]);
    let doc = server.openapi().await;
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/remove-watermark",
        "/api/v1/remove-background",
        "/api/remove",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/result",
        "/api/v1/jobs/{id}/events",
        "/api/v1/usage",
        "/api/v1/admin/usage",
        "/api/v1/health",
        "/api/v1/ready",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    let seed = std::env::var("UNMARK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        // Fixed by default so that CI is repeatable; other seeds explore further.
        .unwrap_or(20_261_125);
    eprintln!("schemathesis seed {seed} (UNMARK_TEST_SEED replays it)");
    let bin = python_tool("schemathesis", "SCHEMATHESIS_BIN");
    let url = server.url("/api/v1/openapi.json");
    let header = format!("X-API-Key: {KEY}");
    let seed_arg = seed.to_string();
    // schemathesis keeps a cache in its working folder: a temporary one, not the clone.
    let scratch = tempfile::tempdir().expect("tempdir");
    let cwd = scratch.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&bin)
            .current_dir(&cwd)
            .args(["run", &url, "-H", &header])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args([
                "--max-examples",
                "20",
                "--request-timeout",
                "60",
                "--seed",
                &seed_arg,
            ])
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bin} (scripts/setup.sh --test): {e}"))
    })
    .await
    .expect("schemathesis task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
}
