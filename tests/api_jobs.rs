//! Asynchronous jobs over HTTP on a real `unmark serve`: submit (multipart and JSON), status,
//! result, Server-Sent Events, errors, the synchronous endpoint turning asynchronous, result
//! expiry, and jobs that survive a SIGKILL of the embedded server.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::*;

pub(crate) const CASE: &str = "dev_001_astronaut_512_text_center";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub(crate) async fn get(server: &Server, path: &str) -> reqwest::Response {
    client()
        .get(server.url(path))
        .header("X-API-Key", KEY)
        .send()
        .await
        .expect("request")
}

/// POSTs a multipart job; returns the 202 body after checking its shape.
pub(crate) async fn submit(server: &Server, form: reqwest::multipart::Form) -> Value {
    let response = client()
        .post(server.url("/api/v1/jobs"))
        .header("X-API-Key", KEY)
        .multipart(form)
        .send()
        .await
        .expect("request");
    accepted(response).await
}

/// Checks a 202 answer and returns its body.
pub(crate) async fn accepted(response: reqwest::Response) -> Value {
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let body: Value = response.json().await.expect("json");
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(body["status"], "queued");
    assert_eq!(location, format!("/api/v1/jobs/{id}"));
    assert_eq!(body["status_url"], location);
    assert_eq!(body["result_url"], format!("{location}/result"));
    assert_eq!(body["events_url"], format!("{location}/events"));
    assert_eq!(body["events_subject"], format!("unmark.events.{id}"));
    body
}

/// Polls a job until it ends; returns its record.
pub(crate) async fn wait_until_done(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let response = get(server, &format!("/api/v1/jobs/{id}")).await;
        assert_eq!(response.status().as_u16(), 200, "status of {id}");
        let job: Value = response.json().await.expect("json");
        if job["status"] == "succeeded" || job["status"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads a job's Server-Sent Events to the end: (event name, data) pairs.
pub(crate) async fn events(server: &Server, id: &str) -> Vec<(String, Value)> {
    let response = get(server, &format!("/api/v1/jobs/{id}/events")).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut out = Vec::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if !name.is_empty() {
                    out.push((name, serde_json::from_str(&data).expect("event json")));
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(180), read)
        .await
        .expect("the event stream ended");
    out
}

/// The inputs of the test case.
pub(crate) fn inputs() -> (Vec<u8>, Vec<u8>) {
    let (wm, mask, _) = case(CASE);
    (
        std::fs::read(wm).expect("image"),
        std::fs::read(mask).expect("mask"),
    )
}

/// A result must keep every pixel outside the mask and change some inside it.
pub(crate) fn check_result(bytes: &[u8]) {
    let (wm, mask, _) = case(CASE);
    let (out, original, mask) = (decode_bytes(bytes), read_raster(&wm), read_mask(&mask));
    assert_eq!(out.size(), original.size());
    let (mut outside, mut inside) = (0, 0);
    for y in 0..out.height {
        for x in 0..out.width {
            let differs = out.pixel(x, y) != original.pixel(x, y);
            if mask.get(x, y) {
                inside += usize::from(differs);
            } else {
                outside += usize::from(differs);
            }
        }
    }
    assert_eq!(outside, 0, "pixels outside the mask changed");
    assert!(inside > 0, "nothing inside the mask changed");
}

async fn result_bytes(server: &Server, id: &str) -> Vec<u8> {
    let response = get(server, &format!("/api/v1/jobs/{id}/result")).await;
    assert_eq!(response.status().as_u16(), 200, "result of {id}");
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["x-job-id"], id);
    response.bytes().await.expect("body").to_vec()
}

#[tokio::test]
async fn an_async_job_runs_and_is_followed_over_http() {
    // The callback goes to a loopback port where nothing listens: kept, and its delivery
    // fails harmlessly (webhooks are tested in api_keys).
    let server = Server::start(&[("UNMARK_WEBHOOKS__ALLOW_PRIVATE", "true")]);
    let (image, mask) = inputs();
    let hook = "http://127.0.0.1:9/hook";
    let job = submit(
        &server,
        form(image.clone(), Some(mask.clone()), &[("callback_url", hook)]),
    )
    .await;
    let id = job["id"].as_str().expect("id");

    // The events, from the start, whenever the client subscribes.
    let names: Vec<String> = events(&server, id)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut want = vec!["accepted".to_owned()];
    want.extend(std::iter::repeat_n("stage_done".to_owned(), 5));
    want.push("succeeded".into());
    assert_eq!(names, want);

    let record = wait_until_done(&server, id).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["pipeline"], "remove-watermark");
    assert_eq!(record["callback_url"], hook);
    let stages: Vec<&str> = record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["stage"].as_str().expect("stage"))
        .collect();
    assert_eq!(
        stages,
        ["decode", "prescale", "detect", "inpaint", "encode"]
    );
    assert!(record["stages"][3]["ms"].as_f64().expect("ms") > 0.0);
    assert_eq!(record["result"]["content_type"], "image/png");
    assert_eq!(record["result"]["available"], true);
    assert!(record["error"].is_null());
    assert!(
        record["finished_ms"].as_i64().expect("finished")
            >= record["created_ms"].as_i64().expect("created")
    );
    let bytes = result_bytes(&server, id).await;
    check_result(&bytes);
    // The same job through the synchronous endpoint gives the same image.
    let sync = remove(&server, form(image.clone(), Some(mask.clone()), &[])).await;
    assert_eq!(sync.status().as_u16(), 200);
    assert_eq!(sync.bytes().await.expect("body").to_vec(), bytes);

    // JSON with base64 inputs and parameters.
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let body = json!({
        "pipeline": "remove-watermark",
        "params": {"engine": "telea", "format": "webp"},
        "image": {"base64": b64(&image)},
        "mask": {"base64": b64(&mask)},
    });
    let response = client()
        .post(server.url("/api/v1/jobs"))
        .header("X-API-Key", KEY)
        .json(&body)
        .send()
        .await
        .expect("request");
    let job = accepted(response).await;
    let id = job["id"].as_str().expect("id");
    let record = wait_until_done(&server, id).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["result"]["content_type"], "image/webp");
    let response = get(&server, &format!("/api/v1/jobs/{id}/result")).await;
    assert_eq!(response.headers()["content-type"], "image/webp");
    check_result(&response.bytes().await.expect("body"));
}

#[tokio::test]
async fn bad_job_requests_get_precise_errors() {
    let server = Server::start(&[]);
    let (image, mask) = inputs();
    let post_json = |body: Value| {
        client()
            .post(server.url("/api/v1/jobs"))
            .header("X-API-Key", KEY)
            .json(&body)
            .send()
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image);

    let keyed = json!({"pipeline": "remove-watermark", "image": {"key": "jobs/x/4-encode-result"}});
    let body = problem(post_json(keyed).await.expect("req"), 400).await;
    assert!(
        body["detail"].as_str().expect("detail").contains("base64"),
        "{body}"
    );

    let bad =
        json!({"pipeline": "remove-watermark", "image": {"base64": b64}, "params": {"radius": 99}});
    let body = problem(post_json(bad).await.expect("req"), 400).await;
    assert!(
        body["detail"].as_str().expect("detail").contains("radius"),
        "{body}"
    );

    let hook = json!({"pipeline": "remove-watermark", "image": {"base64": b64}, "callback_url": "ftp://x"});
    let body = problem(post_json(hook).await.expect("req"), 400).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("callback_url"),
        "{body}"
    );

    let other = json!({"pipeline": "remove-everything", "image": {"base64": b64}});
    problem(post_json(other).await.expect("req"), 400).await;
    let not_json = client()
        .post(server.url("/api/v1/jobs"))
        .header("X-API-Key", KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("req");
    problem(not_json, 400).await;
    let text = client()
        .post(server.url("/api/v1/jobs"))
        .header("X-API-Key", KEY)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("req");
    problem(text, 415).await;
    let anonymous = client()
        .post(server.url("/api/v1/jobs"))
        .send()
        .await
        .expect("req");
    problem(anonymous, 401).await;
    for path in [
        "/api/v1/jobs/nope",
        "/api/v1/jobs/nope/result",
        "/api/v1/jobs/NOT..valid/events",
    ] {
        let body = problem(get(&server, path).await, 404).await;
        assert!(
            body["detail"].as_str().expect("detail").contains("no job"),
            "{body}"
        );
    }

    // A job that fails keeps its reason; its result is the error it failed with.
    let truncated = image[..image.len() / 2].to_vec();
    let job = submit(&server, form(truncated, Some(mask), &[])).await;
    let id = job["id"].as_str().expect("id");
    let record = wait_until_done(&server, id).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["reason"], "corrupt_image", "{record}");
    assert_eq!(record["error"]["stage"], "decode");
    assert!(record["result"].is_null());
    let body = problem(
        get(&server, &format!("/api/v1/jobs/{id}/result")).await,
        422,
    )
    .await;
    assert_eq!(body["type"], "urn:unmark:problem:corrupt-image");
    let names: Vec<String> = events(&server, id)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["accepted", "failed"]);
}

#[tokio::test]
async fn a_sync_request_past_its_wait_answers_202_and_goes_on() {
    let server = Server::start(&[("UNMARK_SERVER__SYNC_TIMEOUT_SECS", "0")]);
    let (image, mask) = inputs();
    let response = remove(&server, form(image.clone(), Some(mask.clone()), &[])).await;
    let job = accepted(response).await;
    let id = job["id"].as_str().expect("id");
    assert_eq!(wait_until_done(&server, id).await["status"], "succeeded");
    check_result(&result_bytes(&server, id).await);

    // A synchronous answer hands the result over: it is not kept.
    let quick = Server::start(&[]);
    let response = remove(&quick, form(image, Some(mask), &[])).await;
    assert_eq!(response.status().as_u16(), 200);
    let id = response.headers()["x-job-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let record = wait_until_done(&quick, &id).await;
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["result"]["available"], false, "{record}");
    let body = problem(get(&quick, &format!("/api/v1/jobs/{id}/result")).await, 410).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("synchronously"),
        "{body}"
    );
}

fn job_files(data: &Path, id: &str) -> usize {
    std::fs::read_dir(data.join("blobs/jobs").join(id)).map_or(0, |d| d.count())
}

#[tokio::test]
async fn results_expire_and_the_sweeper_deletes_them() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start_in(
        data.path(),
        &[
            ("UNMARK_JOBS__RESULT_TTL_SECS", "2"),
            ("UNMARK_JOBS__SWEEP_INTERVAL_SECS", "1"),
        ],
    );
    let (image, mask) = inputs();
    let job = submit(&server, form(image, Some(mask), &[])).await;
    let id = job["id"].as_str().expect("id");
    assert_eq!(wait_until_done(&server, id).await["status"], "succeeded");
    // Only the result is left once the job has ended.
    assert_eq!(job_files(data.path(), id), 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = get(&server, &format!("/api/v1/jobs/{id}/result")).await;
        if response.status().as_u16() == 410 {
            let body = problem(response, 410).await;
            assert!(
                body["detail"].as_str().expect("detail").contains("expired"),
                "{body}"
            );
            break;
        }
        assert_eq!(response.status().as_u16(), 200);
        assert!(Instant::now() < deadline, "the result never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The same sweep deletes the file just after it marks the result expired.
    while job_files(data.path(), id) > 0 {
        assert!(
            Instant::now() < deadline,
            "the expired result is still on disk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = wait_until_done(&server, id).await;
    assert_eq!(record["result"]["available"], false);
}

#[tokio::test]
async fn accepted_jobs_survive_a_sigkill_of_the_embedded_server() {
    let data = tempfile::tempdir().expect("tempdir");
    // Only the first two stages run: every accepted job is still in flight when the server
    // dies, however fast the machine.
    let mut first = stuck_server(data.path(), &[]);
    let (image, mask) = inputs();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let job = submit(&first, form(image.clone(), Some(mask.clone()), &[])).await;
        ids.push(job["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let record: Value = get(&first, &format!("/api/v1/jobs/{id}"))
            .await
            .json()
            .await
            .expect("json");
        assert!(
            record["status"] == "queued" || record["status"] == "running",
            "{record}"
        );
    }
    first.kill();

    let second = Server::start_in(data.path(), &[]);
    for id in &ids {
        let record = wait_until_done(&second, id).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        check_result(&result_bytes(&second, id).await);
    }
}

/// The image a job made, once it has succeeded.
pub(crate) async fn finished_result(server: &Server, id: &str) -> Vec<u8> {
    let job = wait_until_done(server, id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let response = get(server, &format!("/api/v1/jobs/{id}/result")).await;
    assert_eq!(response.status().as_u16(), 200);
    response.bytes().await.expect("body").to_vec()
}
