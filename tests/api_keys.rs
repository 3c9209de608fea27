//! API keys, plans, quotas and usage on a real `unmark serve`, on SQLite and PostgreSQL.

use std::path::Path;

use futures::future::join_all;
use serde_json::Value;

use crate::common::*;
use crate::postgres::Postgres;

/// A plan with 50 credits a month and no other limit in the way.
const TINY_PLANS: &str = r#"
[plans.tiny]
quota = 50
period = "month"
requests_per_minute = 1000000
burst = 1000000
max_concurrent = 1000
max_megapixels = 50.0
priority = 0

[plans.two]
quota = 2
period = "day"
requests_per_minute = 1000000
burst = 1000000
max_concurrent = 1000
max_megapixels = 50.0
priority = 0
"#;

/// `unmark keys create`, as an operator runs it beside the server; returns the key.
pub(crate) fn create_key(env: &[(&str, &str)], name: &str, plan: &str, admin: bool) -> String {
    let mut cmd = unmark();
    cmd.args(["keys", "create", "--name", name, "--plan", plan]);
    if admin {
        cmd.arg("--admin");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = succeed(&mut cmd);
    let key = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(key.starts_with("um_") && key.len() > 60, "{key}");
    key
}

fn keys_cli(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = unmark();
    cmd.arg("keys").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("unmark keys")
}

/// Settings shared by the server and the `keys` commands: the data folder, the plans, and
/// optionally a PostgreSQL URL.
fn settings(data: &Path, database: Option<&str>) -> Vec<(&'static str, String)> {
    let config = data.join("plans.toml");
    std::fs::write(&config, TINY_PLANS).expect("write config");
    let mut env = vec![
        ("UNMARK_DATA_DIR", data.display().to_string()),
        ("UNMARK_CONFIG", config.display().to_string()),
        // 200 requests at once from one address: the per-IP layer is tested elsewhere.
        ("UNMARK_RATE_LIMIT__PER_IP_PER_MINUTE", "0".to_owned()),
    ];
    if let Some(url) = database {
        env.push(("UNMARK_DATABASE_URL", url.to_owned()));
    }
    env
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn tiny_inputs() -> (Vec<u8>, Vec<u8>) {
    let image = png_of(32, 32, |x, y| [(x * 8) as u8, (y * 8) as u8, 100]);
    let mask = png_of(32, 32, |x, y| {
        if (10..20).contains(&x) && (12..16).contains(&y) {
            [255; 3]
        } else {
            [0; 3]
        }
    });
    (image, mask)
}

async fn post_with(server: &Server, key: &str) -> reqwest::Response {
    let (image, mask) = tiny_inputs();
    reqwest::Client::new()
        .post(server.url("/api/v1/remove-watermark"))
        .header("X-API-Key", key)
        .multipart(form(image, Some(mask), &[]))
        .send()
        .await
        .expect("request")
}

async fn usage(server: &Server, key: &str) -> Value {
    let response = reqwest::Client::new()
        .get(server.url("/api/v1/usage"))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("json")
}

/// Waits until every running job of the key has settled its credit.
async fn settled_usage(server: &Server, key: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let u = usage(server, key).await;
        if u["quota"]["reserved"] == 0 {
            return u;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "credits never settled: {u}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Every endpoint but health, ready (and metrics) refuses a missing, wrong or revoked key.
async fn every_endpoint_needs_a_live_key(database: Option<&str>) {
    let data = tempfile::tempdir().expect("tempdir");
    let env = settings(data.path(), database);
    let server = Server::start_in(data.path(), &refs(&env));
    let alice = create_key(&refs(&env), "alice", "pro", false);
    let revoked = create_key(&refs(&env), "mallory", "pro", false);
    let id = revoked.split('_').nth(1).expect("id").to_owned();
    assert!(keys_cli(&refs(&env), &["revoke", &id]).status.success());
    // A key with a real id and a wrong secret of the right length.
    let forged = format!("{}{}", &alice[..12], "0".repeat(alice.len() - 12));
    let client = reqwest::Client::new();
    let endpoints = [
        ("POST", "/api/v1/remove-watermark"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/abc"),
        ("GET", "/api/v1/jobs/abc/result"),
        ("GET", "/api/v1/jobs/abc/events"),
        ("GET", "/api/v1/usage"),
        ("GET", "/api/v1/admin/usage"),
    ];
    for (method, path) in endpoints {
        let request = |key: Option<&str>| {
            let mut r = client.request(method.parse().expect("method"), server.url(path));
            if let Some(k) = key {
                r = r.header("X-API-Key", k);
            }
            r.send()
        };
        let body = problem(request(None).await.expect("req"), 401).await;
        assert!(
            body["detail"].as_str().expect("detail").contains("missing"),
            "{path}"
        );
        let body = problem(request(Some(&forged)).await.expect("req"), 401).await;
        assert_eq!(body["detail"], "invalid API key", "{path}");
        let body = problem(request(Some(&revoked)).await.expect("req"), 401).await;
        assert!(
            body["detail"].as_str().expect("detail").contains("revoked"),
            "{path}"
        );
        let ok = request(Some(&alice)).await.expect("req");
        assert_ne!(
            ok.status().as_u16(),
            401,
            "{method} {path} refused a live key"
        );
    }
    for open in ["/api/v1/health", "/api/v1/ready"] {
        let r = client.get(server.url(open)).send().await.expect("req");
        assert_eq!(r.status().as_u16(), 200, "{open}");
    }
    // Revocation takes effect at once on a running server.
    assert_eq!(post_with(&server, &alice).await.status().as_u16(), 200);
    let alice_id = alice.split('_').nth(1).expect("id");
    assert!(
        keys_cli(&refs(&env), &["revoke", alice_id])
            .status
            .success()
    );
    problem(post_with(&server, &alice).await, 401).await;
    // A non-admin key may not read everyone's usage.
    let bob = create_key(&refs(&env), "bob", "basic", false);
    let r = client
        .get(server.url("/api/v1/admin/usage"))
        .header("X-API-Key", &bob)
        .send()
        .await
        .expect("req");
    problem(r, 403).await;
}

/// 200 concurrent requests against a plan of 50 credits.
async fn quota_boundary(database: Option<&str>) {
    let data = tempfile::tempdir().expect("tempdir");
    let env = settings(data.path(), database);
    let server = Server::start_in(data.path(), &refs(&env));
    let key = create_key(&refs(&env), "load", "tiny", false);
    let responses = join_all((0..200).map(|_| post_with(&server, &key))).await;
    let (mut ok, mut limited) = (0, 0);
    for response in responses {
        match response.status().as_u16() {
            200 => {
                ok += 1;
                let h = response.headers();
                assert_eq!(h["x-credits-charged"], "1");
                let left: u64 = h["x-quota-remaining"]
                    .to_str()
                    .expect("h")
                    .parse()
                    .expect("n");
                assert!(left < 50, "{left}");
            }
            429 => {
                limited += 1;
                let h = response.headers().clone();
                assert_eq!(h["ratelimit-limit"], "50");
                assert_eq!(h["ratelimit-remaining"], "0");
                let retry: u64 = h["retry-after"].to_str().expect("h").parse().expect("n");
                assert!(retry >= 1);
                assert_eq!(h["ratelimit-reset"], h["retry-after"]);
                let body = problem(response, 429).await;
                assert_eq!(body["type"], "urn:unmark:problem:quota-exhausted");
                assert!(
                    body["detail"]
                        .as_str()
                        .expect("d")
                        .contains("50 images per month")
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (50, 150));
    let u = settled_usage(&server, &key).await;
    assert_eq!(u["plan"], "tiny");
    assert_eq!(u["quota"]["limit"], 50);
    assert_eq!(u["quota"]["used"], 50, "{u}");
    assert_eq!(u["quota"]["remaining"], 0, "{u}");
    assert_eq!(u["month"]["successes"], 50);
    assert_eq!(u["month"]["requests"], 50);
    assert_eq!(u["today"]["failures"], 0);
    assert!(u["today"]["avg_processing_ms"].as_f64().expect("ms") > 0.0);

    // Failures are free: a broken image costs nothing, and the quota still holds.
    let small = create_key(&refs(&env), "small", "two", false);
    let broken = reqwest::Client::new()
        .post(server.url("/api/v1/remove-watermark"))
        .header("X-API-Key", &small)
        .multipart(form(b"not an image".to_vec(), None, &[]))
        .send()
        .await
        .expect("request");
    assert_eq!(broken.status().as_u16(), 415);
    let u = settled_usage(&server, &small).await;
    assert_eq!(
        (u["quota"]["used"].clone(), u["today"]["failures"].clone()),
        (0.into(), 1.into())
    );
    for _ in 0..2 {
        assert_eq!(post_with(&server, &small).await.status().as_u16(), 200);
    }
    let refused = post_with(&server, &small).await;
    let body = problem(refused, 429).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("d")
            .contains("2 images per day"),
        "{body}"
    );

    // An admin key sees every key, each with its own counts.
    let admin = create_key(&refs(&env), "ops", "enterprise", true);
    let all: Value = reqwest::Client::new()
        .get(server.url("/api/v1/admin/usage"))
        .header("X-API-Key", &admin)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let keys = all["keys"].as_array().expect("keys");
    let used = |name: &str| {
        keys.iter()
            .find(|k| k["name"] == name)
            .map(|k| k["quota"]["used"].clone())
            .unwrap_or_else(|| panic!("no {name} in {all}"))
    };
    assert_eq!(used("load"), 50);
    assert_eq!(used("small"), 2);
    assert_eq!(used("ops"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_boundary_holds_under_concurrency_on_sqlite() {
    quota_boundary(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_boundary_holds_under_concurrency_on_postgres() {
    let pg = Postgres::start();
    quota_boundary(Some(&pg.url)).await;
}

async fn post_idempotent(server: &Server, key: &str, idem: &str, shade: u8) -> reqwest::Response {
    let image = png_of(32, 32, |x, y| [(x * 8) as u8, (y * 8) as u8, shade]);
    let mask = tiny_inputs().1;
    // reqwest draws a new multipart boundary for every request.
    reqwest::Client::new()
        .post(server.url("/api/v1/remove-watermark"))
        .header("X-API-Key", key)
        .header("Idempotency-Key", idem)
        .multipart(form(image, Some(mask), &[]))
        .send()
        .await
        .expect("request")
}

async fn idempotency_keys_replay_and_refuse_what_they_must(database: Option<&str>) {
    let data = tempfile::tempdir().expect("tempdir");
    let env = settings(data.path(), database);
    let server = Server::start_in(data.path(), &refs(&env));
    let key = create_key(&refs(&env), "retrying", "tiny", false);

    let first = post_idempotent(&server, &key, "order-1", 10).await;
    assert_eq!(first.status().as_u16(), 200);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let job = first.headers()["x-job-id"].clone();
    let body = first.bytes().await.expect("body");
    let again = post_idempotent(&server, &key, "order-1", 10).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["x-job-id"], job);
    assert_eq!(again.headers()["content-type"], "image/png");
    assert_eq!(again.bytes().await.expect("body"), body);
    // One job, one credit.
    let u = settled_usage(&server, &key).await;
    assert_eq!(
        (u["quota"]["used"].clone(), u["today"]["requests"].clone()),
        (1.into(), 1.into())
    );

    let other = post_idempotent(&server, &key, "order-1", 99).await;
    let problem_body = problem(other, 422).await;
    assert_eq!(
        problem_body["type"],
        "urn:unmark:problem:idempotency-mismatch"
    );
    let bad = post_idempotent(&server, &key, "with space", 10).await;
    problem(bad, 400).await;
    // Keys are per caller: another key may use the same one.
    let neighbour = create_key(&refs(&env), "neighbour", "tiny", false);
    let theirs = post_idempotent(&server, &neighbour, "order-1", 99).await;
    assert_eq!(theirs.status().as_u16(), 200);

    // A duplicate while the first is still being answered: on a server that never finishes
    // a job and answers 202 after a 3 s wait, exactly one of two concurrent twins waits.
    let slow_data = tempfile::tempdir().expect("tempdir");
    let mut slow_env = settings(slow_data.path(), database);
    slow_env.push(("UNMARK_SERVER__SYNC_TIMEOUT_SECS", "3".into()));
    let slow = stuck_server(slow_data.path(), &refs(&slow_env));
    let slow_key = create_key(&refs(&slow_env), "twin", "tiny", false);
    let (a, b) = tokio::join!(
        post_idempotent(&slow, &slow_key, "twins", 5),
        post_idempotent(&slow, &slow_key, "twins", 5)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 409]);
    let conflict = if a.status().as_u16() == 409 { a } else { b };
    let body = problem(conflict, 409).await;
    assert_eq!(body["type"], "urn:unmark:problem:idempotency-in-flight");
}

/// A webhook receiver in this process: `/ok` answers 200, `/fail` 500; every request kept.
struct Receiver {
    base: String,
    hits: std::sync::Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, bytes::Bytes)>>>,
}

impl Receiver {
    async fn start() -> Self {
        use axum::routing::post;
        let hits: std::sync::Arc<std::sync::Mutex<Vec<_>>> = Default::default();
        let keep = |status: u16| {
            let hits = hits.clone();
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let hits = hits.clone();
                async move {
                    hits.lock()
                        .expect("lock")
                        .push((uri.path().to_owned(), headers, body));
                    axum::http::StatusCode::from_u16(status).expect("status")
                }
            }
        };
        let app = axum::Router::new()
            .route("/ok", post(keep(200)))
            .route("/fail", post(keep(500)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, hits }
    }

    fn hits(&self, path: &str) -> Vec<(axum::http::HeaderMap, bytes::Bytes)> {
        let hits = self.hits.lock().expect("lock");
        hits.iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect()
    }
}

/// Polls a job's record until its webhook is no longer pending.
async fn webhook_outcome(server: &Server, key: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let job: Value = reqwest::Client::new()
            .get(server.url(&format!("/api/v1/jobs/{id}")))
            .header("X-API-Key", key)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let state = job["webhook"]["state"].as_str().unwrap_or("");
        if state == "delivered" || state == "failed" {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "webhook still pending: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Submits a job with `url` as its callback; returns its id and, once its webhook has an
/// outcome, its record.
async fn job_with_callback(server: &Server, key: &str, url: &str) -> (String, Value) {
    let accepted: Value = submit_with_callback(server, key, url)
        .await
        .json()
        .await
        .expect("json");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let job = webhook_outcome(server, key, &id).await;
    (id, job)
}

async fn submit_with_callback(server: &Server, key: &str, url: &str) -> reqwest::Response {
    let (image, mask) = tiny_inputs();
    reqwest::Client::new()
        .post(server.url("/api/v1/jobs"))
        .header("X-API-Key", key)
        .multipart(form(image, Some(mask), &[("callback_url", url)]))
        .send()
        .await
        .expect("request")
}

async fn webhooks_are_signed_retried_and_given_up_on(database: Option<&str>) {
    use hmac::Mac;
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = settings(data.path(), database);
    env.extend([
        ("UNMARK_WEBHOOKS__ALLOW_PRIVATE", "true".to_owned()),
        ("UNMARK_WEBHOOKS__INITIAL_BACKOFF_MS", "100".to_owned()),
        ("UNMARK_WEBHOOKS__MAX_ATTEMPTS", "3".to_owned()),
    ]);
    let server = Server::start_in(data.path(), &refs(&env));
    let out = unmark()
        .args(["keys", "create", "--name", "hooked", "--plan", "tiny"])
        .envs(refs(&env))
        .output()
        .expect("keys create");
    let key = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    let stderr = String::from_utf8(out.stderr).expect("utf8");
    let secret = stderr
        .lines()
        .find_map(|l| l.strip_prefix("webhook secret: "))
        .expect("the secret is printed")
        .to_owned();

    // Delivered once, verifiable with the documented signature.
    let (id, job) = job_with_callback(&server, &key, &format!("{}/ok", receiver.base)).await;
    assert_eq!(job["webhook"]["state"], "delivered", "{job}");
    assert_eq!(job["webhook"]["attempts"], 1);
    assert_eq!(job["webhook"]["last_status"], 200);
    let hits = receiver.hits("/ok");
    assert_eq!(hits.len(), 1);
    let (headers, body) = &hits[0];
    let signature = headers["unmark-signature"].to_str().expect("signature");
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .expect("t=...,v1=...");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("mac");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    assert_eq!(
        hex::encode(mac.finalize().into_bytes()),
        v1,
        "the signature does not verify"
    );
    let payload: Value = serde_json::from_slice(body).expect("json");
    assert_eq!(payload["type"], "job.succeeded");
    assert_eq!(payload["job"]["id"], id);
    assert_eq!(payload["job"]["status"], "succeeded");
    assert_eq!(headers["unmark-event"], "job.succeeded");

    // A receiver that keeps failing is retried, then given up on.
    let (_, job) = job_with_callback(&server, &key, &format!("{}/fail", receiver.base)).await;
    assert_eq!(job["webhook"]["state"], "failed", "{job}");
    assert_eq!(job["webhook"]["attempts"], 3);
    assert_eq!(job["webhook"]["last_status"], 500);
    assert_eq!(receiver.hits("/fail").len(), 3);

    // Without the operator's allowance, loopback callbacks are refused at submission.
    let strict_data = tempfile::tempdir().expect("tempdir");
    let strict_env = settings(strict_data.path(), None);
    let strict = Server::start_in(strict_data.path(), &refs(&strict_env));
    let strict_key = create_key(&refs(&strict_env), "strict", "tiny", false);
    let refused =
        submit_with_callback(&strict, &strict_key, &format!("{}/ok", receiver.base)).await;
    let body = problem(refused, 400).await;
    assert!(
        body["detail"].as_str().expect("d").contains("private"),
        "{body}"
    );
}

#[tokio::test]
async fn keys_on_sqlite() {
    every_endpoint_needs_a_live_key(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_on_sqlite() {
    idempotency_keys_replay_and_refuse_what_they_must(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_sqlite() {
    webhooks_are_signed_retried_and_given_up_on(None).await;
}

/// The same proofs with the records, keys, quotas and deliveries in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_idempotency_and_webhooks_on_postgres() {
    let pg = Postgres::start();
    every_endpoint_needs_a_live_key(Some(&pg.url)).await;
    idempotency_keys_replay_and_refuse_what_they_must(Some(&pg.url)).await;
    webhooks_are_signed_retried_and_given_up_on(Some(&pg.url)).await;
}
