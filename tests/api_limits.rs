//! Rate limits, admission control and metrics on real `unmark serve` processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::postgres::Postgres;

/// Plans whose rate refills too slowly to matter during a test (one token a minute).
const PLANS: &str = r#"
[plans.metered]
quota = 100000
period = "month"
requests_per_minute = 1
burst = 10
max_concurrent = 1000
max_megapixels = 50.0
priority = 0

[plans.free]
quota = 100000
period = "month"
requests_per_minute = 100000
burst = 100000
max_concurrent = 1000
max_megapixels = 50.0
priority = 0

[plans.three]
quota = 100000
period = "month"
requests_per_minute = 100000
burst = 100000
max_concurrent = 3
max_megapixels = 50.0
priority = 0

[plans.one]
quota = 100000
period = "month"
requests_per_minute = 100000
burst = 100000
max_concurrent = 1
max_megapixels = 50.0
priority = 0

[plans.enterprise]
quota = 100000
period = "month"
requests_per_minute = 100000
burst = 100000
max_concurrent = 1000
max_megapixels = 50.0
priority = 3
"#;

struct Setup {
    env: Vec<(&'static str, String)>,
}

impl Setup {
    fn new(data: &Path, extra: &[(&'static str, &str)]) -> Self {
        let config = data.join("plans.toml");
        std::fs::write(&config, PLANS).expect("write config");
        let mut env = vec![
            ("UNMARK_DATA_DIR", data.display().to_string()),
            ("UNMARK_CONFIG", config.display().to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        Self { env }
    }

    /// A temporary data folder with these plans and `extra`, and a server there that never
    /// finishes a job ([`stuck_server`]).
    fn stuck(extra: &[(&'static str, &str)]) -> (tempfile::TempDir, Self, Server) {
        let data = tempfile::tempdir().expect("tempdir");
        let setup = Self::new(data.path(), extra);
        let server = stuck_server(data.path(), &setup.refs());
        (data, setup, server)
    }

    fn refs(&self) -> Vec<(&'static str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    fn key(&self, name: &str, plan: &str) -> String {
        crate::api_keys::create_key(&self.refs(), name, plan, false)
    }
}

fn image(w: u32, h: u32) -> (Vec<u8>, Vec<u8>) {
    let image = png_of(w, h, |x, y| [(x % 251) as u8, (y % 241) as u8, 90]);
    let mask = png_of(w, h, |x, y| if x < 8 && y < 8 { [255; 3] } else { [0; 3] });
    (image, mask)
}

async fn post(
    server: &Server,
    key: Option<&str>,
    (image, mask): (Vec<u8>, Vec<u8>),
) -> reqwest::Response {
    post_to(server, "/api/v1/remove-watermark", key, (image, mask), &[]).await
}

/// The status `post` answers.
async fn status(server: &Server, key: Option<&str>, inputs: (Vec<u8>, Vec<u8>)) -> u16 {
    post(server, key, inputs).await.status().as_u16()
}

async fn post_to(
    server: &Server,
    path: &str,
    key: Option<&str>,
    (image, mask): (Vec<u8>, Vec<u8>),
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(server.url(path))
        .multipart(form(image, Some(mask), &[]));
    if let Some(k) = key {
        request = request.header("X-API-Key", k);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.expect("request")
}

/// Checks a refusal's headers and returns its body.
async fn refused(response: reqwest::Response, status: u16) -> serde_json::Value {
    let h = response.headers().clone();
    for name in [
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    ] {
        assert!(h.contains_key(name), "no {name} in {h:?}");
    }
    problem(response, status).await
}

#[tokio::test]
async fn a_large_image_spends_more_tokens_than_a_small_one() {
    let data = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(data.path(), &[]);
    let server = Server::start_in(data.path(), &setup.refs());
    // Ten tokens: ten small images pass, the eleventh does not.
    let small = setup.key("small", "metered");
    for _ in 0..10 {
        assert_eq!(status(&server, Some(&small), image(64, 64)).await, 200);
    }
    let body = refused(post(&server, Some(&small), image(64, 64)).await, 429).await;
    assert!(
        body["detail"].as_str().expect("d").contains("costs 1"),
        "{body}"
    );
    // A 2000x2000 image costs four: two pass, the third finds two tokens left.
    let large = setup.key("large", "metered");
    for _ in 0..2 {
        assert_eq!(status(&server, Some(&large), image(2000, 2000)).await, 200);
    }
    let response = post(&server, Some(&large), image(2000, 2000)).await;
    assert_eq!(response.headers()["ratelimit-remaining"], "2");
    let body = refused(response, 429).await;
    assert!(
        body["detail"].as_str().expect("d").contains("costs 4"),
        "{body}"
    );
    assert_eq!(status(&server, Some(&large), image(64, 64)).await, 200);
}

#[tokio::test]
async fn the_ip_limit_comes_before_the_key_lookup() {
    let data = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(
        data.path(),
        &[
            ("UNMARK_RATE_LIMIT__PER_IP_PER_MINUTE", "1"),
            ("UNMARK_RATE_LIMIT__PER_IP_BURST", "3"),
            ("UNMARK_RATE_LIMIT__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    );
    let server = Server::start_in(data.path(), &setup.refs());
    // An anonymous job from `ip`, as the trusted proxy forwards it.
    let from = async |ip: &str| {
        let forwarded = [("x-forwarded-for", ip)];
        post_to(&server, "/api/v1/jobs", None, image(8, 8), &forwarded).await
    };
    for _ in 0..3 {
        assert_eq!(from("203.0.113.1").await.status().as_u16(), 401);
    }
    let body = refused(from("203.0.113.1").await, 429).await;
    assert!(
        body["detail"].as_str().expect("d").contains("203.0.113.1"),
        "{body}"
    );
    // Another client behind the same trusted proxy has its own bucket.
    assert_eq!(from("203.0.113.2").await.status().as_u16(), 401);
    // Health and readiness are never limited.
    for _ in 0..5 {
        let r = reqwest::get(server.url("/api/v1/health"))
            .await
            .expect("health");
        assert_eq!(r.status().as_u16(), 200);
    }
}

#[tokio::test]
async fn two_gateways_share_one_limit_through_postgres() {
    let pg = Postgres::start();
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let setup_a = Setup::new(a.path(), &[("UNMARK_DATABASE_URL", &pg.url)]);
    let setup_b = Setup::new(b.path(), &[("UNMARK_DATABASE_URL", &pg.url)]);
    let first = Server::start_in(a.path(), &setup_a.refs());
    let second = Server::start_in(b.path(), &setup_b.refs());
    let key = setup_a.key("shared", "metered");
    let mut passed = 0;
    for i in 0..14 {
        let server = if i % 2 == 0 { &first } else { &second };
        match post(server, Some(&key), image(32, 32))
            .await
            .status()
            .as_u16()
        {
            200 => passed += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        passed, 10,
        "the ten tokens of the plan, across both gateways"
    );
}

/// Reads `/metrics` into a map of series to values.
async fn scrape(server: &Server, token: Option<&str>) -> BTreeMap<String, f64> {
    let mut request = reqwest::Client::new().get(server.url("/metrics"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("scrape");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("text");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_by_the_expected_amounts() {
    let data = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(
        data.path(),
        &[("UNMARK_SERVER__METRICS_TOKEN", "scrape-me")],
    );
    let server = Server::start_in(data.path(), &setup.refs());
    let anonymous = reqwest::get(server.url("/metrics")).await.expect("scrape");
    assert_eq!(anonymous.status().as_u16(), 401);
    let token = Some("scrape-me");
    let key = setup.key("m", "metered");
    let before = scrape(&server, token).await;

    for _ in 0..2 {
        assert_eq!(status(&server, Some(&key), image(64, 64)).await, 200);
    }
    let text = (b"plain text".to_vec(), image(8, 8).1);
    assert_eq!(status(&server, Some(&key), text).await, 415);
    assert_eq!(status(&server, None, image(8, 8)).await, 401);
    // Seven tokens left on the plan: a 2000x2000 image twice spends eight.
    assert_eq!(status(&server, Some(&key), image(2000, 2000)).await, 200);
    assert_eq!(status(&server, Some(&key), image(2000, 2000)).await, 429);

    let endpoint = |status: u16| {
        format!("api_requests_total{{endpoint=\"/api/v1/remove-watermark\",status=\"{status}\"}}")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = scrape(&server, token).await;
        // Stage metrics come from the job records, a moment after the answers.
        if delta(&before, &after, "image_processing_seconds_count") >= 3.0 {
            break after;
        }
        assert!(Instant::now() < deadline, "job metrics never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delta(&before, &after, &endpoint(200)), 3.0);
    assert_eq!(delta(&before, &after, &endpoint(415)), 1.0);
    assert_eq!(delta(&before, &after, &endpoint(401)), 1.0);
    assert_eq!(delta(&before, &after, &endpoint(429)), 1.0);
    assert_eq!(
        delta(&before, &after, "rate_limited_total{layer=\"key\"}"),
        1.0
    );
    assert_eq!(delta(&before, &after, "quota_exhausted_total"), 0.0);
    assert_eq!(
        delta(&before, &after, "image_processing_seconds_count"),
        3.0
    );
    let inpaint = "model_inference_seconds_count{stage=\"inpaint\",engine=\"restore\"}";
    assert_eq!(delta(&before, &after, inpaint), 3.0);
    let decode = "model_inference_seconds_count{stage=\"decode\",engine=\"\"}";
    assert_eq!(
        delta(&before, &after, decode),
        3.0,
        "the failed decode is not a run"
    );
    assert!(after["process_resident_memory_bytes"] > 1e6);
    assert!(
        after.contains_key("stage_queue_depth{stage=\"inpaint\"}"),
        "{after:?}"
    );
    assert!(after.contains_key("jobs_in_flight"));
}

#[tokio::test]
async fn under_load_the_lowest_plan_is_turned_away_first() {
    // A server that never runs detect: accepted jobs pile up in front of it.
    let (_data, setup, server) = Setup::stuck(&[("UNMARK_RATE_LIMIT__ADMISSION_QUEUE_DEPTH", "2")]);
    let free = setup.key("free", "free");
    let big = setup.key("big", "enterprise");
    for _ in 0..2 {
        let r = post_to(&server, "/api/v1/jobs", Some(&big), image(32, 32), &[]).await;
        assert_eq!(r.status().as_u16(), 202);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrape(&server, None)
        .await
        .get("stage_queue_depth{stage=\"detect\"}")
        .copied()
        .unwrap_or(0.0)
        < 2.0
    {
        assert!(Instant::now() < deadline, "the backlog never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = post_to(&server, "/api/v1/jobs", Some(&free), image(32, 32), &[]).await;
    let body = refused(r, 503).await;
    assert!(
        body["detail"].as_str().expect("d").contains("busy"),
        "{body}"
    );
    // Enterprise (priority 3) is admitted up to four times the depth.
    let r = post_to(&server, "/api/v1/jobs", Some(&big), image(32, 32), &[]).await;
    assert_eq!(r.status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_is_exact_and_freed_with_the_answer() {
    // A server that never finishes a job: every admitted job keeps its slot.
    let (_data, setup, stuck) = Setup::stuck(&[("UNMARK_RATE_LIMIT__PER_IP_PER_MINUTE", "0")]);
    let three = setup.key("three", "three");
    let answers = futures::future::join_all(
        (0..10).map(|_| post_to(&stuck, "/api/v1/jobs", Some(&three), image(16, 16), &[])),
    )
    .await;
    let mut accepted = 0;
    for answer in answers {
        match answer.status().as_u16() {
            202 => accepted += 1,
            429 => {
                let body = refused(answer, 429).await;
                assert_eq!(body["type"], "urn:unmark:problem:concurrency-limit");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted, 3, "exactly the plan's three slots");

    // On a server that finishes jobs, a one-slot key can send request after request: the
    // slot comes back with each answer.
    let normal_data = tempfile::tempdir().expect("tempdir");
    let normal_setup = Setup::new(normal_data.path(), &[]);
    let server = Server::start_in(normal_data.path(), &normal_setup.refs());
    let one = normal_setup.key("one", "one");
    for _ in 0..5 {
        assert_eq!(status(&server, Some(&one), image(16, 16)).await, 200);
    }
}
