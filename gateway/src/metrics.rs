//! Prometheus metrics of a gateway, in the text exposition format at `GET /metrics`.
//!
//! Counters and histograms live in one [`Metrics`] that the router and the job-record
//! follower share; gauges (queue depth, jobs in flight) are refreshed by a background task.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use unmark_schemas::{EventKind, JobEvent};

use crate::{ApiError, AppState};

/// Upper bounds of the duration histograms, in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, n) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, n) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    processing: Histogram,
    inference: BTreeMap<(String, String), Histogram>,
    rate_limited: BTreeMap<&'static str, u64>,
    quota_exhausted: u64,
    queue_depth: BTreeMap<String, u64>,
    jobs_in_flight: u64,
}

/// A gateway's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts an answered HTTP request.
    pub fn request(&self, endpoint: &str, status: u16) {
        self.with(|m| *m.requests.entry((endpoint.to_owned(), status)).or_default() += 1);
    }

    /// Counts a request refused by a rate-limit layer (`ip`, `key`, `concurrency`,
    /// `admission`).
    pub fn rate_limited(&self, layer: &'static str) {
        self.with(|m| *m.rate_limited.entry(layer).or_default() += 1);
    }

    /// Counts a request refused because its key's quota is used up.
    pub fn quota_exhausted(&self) {
        self.with(|m| m.quota_exhausted += 1);
    }

    /// Sets the messages waiting for each stage.
    pub fn set_queue_depth(&self, depths: BTreeMap<String, u64>) {
        self.with(|m| m.queue_depth = depths);
    }

    /// Sets the number of jobs that have not ended.
    pub fn set_jobs_in_flight(&self, n: u64) {
        self.with(|m| m.jobs_in_flight = n);
    }

    /// The deepest stage queue.
    pub fn max_queue_depth(&self) -> u64 {
        self.with(|m| m.queue_depth.values().copied().max().unwrap_or(0))
    }

    /// Takes in a job event: stage times and whole-job times.
    pub fn observe_event(&self, event: &JobEvent) {
        match &event.kind {
            EventKind::StageDone {
                stage, ms, engine, ..
            } => self.with(|m| {
                let key = (stage.clone(), engine.clone().unwrap_or_default());
                m.inference.entry(key).or_default().observe(ms / 1000.0);
            }),
            EventKind::Succeeded { timings, .. } => {
                let total: f64 = timings.iter().map(|t| t.ms).sum();
                self.with(|m| m.processing.observe(total / 1000.0));
            }
            EventKind::Accepted { .. } | EventKind::Failed { .. } => {}
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|m| {
            let head = |out: &mut String, name: &str, kind: &str, help: &str| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            };
            head(
                &mut out,
                "api_requests_total",
                "counter",
                "HTTP requests answered, by endpoint and status.",
            );
            for ((endpoint, status), n) in &m.requests {
                let _ = writeln!(
                    out,
                    "api_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                    label(endpoint)
                );
            }
            head(
                &mut out,
                "image_processing_seconds",
                "histogram",
                "Time in the stages of each succeeded job.",
            );
            m.processing
                .render(&mut out, "image_processing_seconds", "");
            head(
                &mut out,
                "model_inference_seconds",
                "histogram",
                "Time of one stage run, by stage and engine.",
            );
            for ((stage, engine), h) in &m.inference {
                let labels = format!("stage=\"{}\",engine=\"{}\"", label(stage), label(engine));
                h.render(&mut out, "model_inference_seconds", &labels);
            }
            head(
                &mut out,
                "rate_limited_total",
                "counter",
                "Requests refused by a rate-limit layer.",
            );
            for layer in ["ip", "key", "concurrency", "admission"] {
                let n = m.rate_limited.get(layer).copied().unwrap_or(0);
                let _ = writeln!(out, "rate_limited_total{{layer=\"{layer}\"}} {n}");
            }
            head(
                &mut out,
                "quota_exhausted_total",
                "counter",
                "Requests refused because the key's quota is used up.",
            );
            let _ = writeln!(out, "quota_exhausted_total {}", m.quota_exhausted);
            head(
                &mut out,
                "stage_queue_depth",
                "gauge",
                "Messages waiting for each stage.",
            );
            for (stage, n) in &m.queue_depth {
                let _ = writeln!(out, "stage_queue_depth{{stage=\"{}\"}} {n}", label(stage));
            }
            head(
                &mut out,
                "jobs_in_flight",
                "gauge",
                "Jobs accepted that have not ended.",
            );
            let _ = writeln!(out, "jobs_in_flight {}", m.jobs_in_flight);
        });
        render_batching(&mut out);
        if let Some(bytes) = resident_bytes() {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory of this process.\n\
                 # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {bytes}"
            );
        }
        out
    }
}

/// The model stages' dynamic batching in this process: batch sizes, time queued, time in
/// forward passes.
fn render_batching(out: &mut String) {
    use unmark_models::batch::BATCH_SIZE_BUCKETS;
    let models = unmark_stages::segment::batch_stats();
    let _ = writeln!(
        out,
        "# HELP model_batch_size Inputs per forward pass of a model stage.\n\
         # TYPE model_batch_size histogram"
    );
    for (model, s) in &models {
        for (bound, n) in BATCH_SIZE_BUCKETS.iter().zip(s.size_buckets) {
            let _ = writeln!(
                out,
                "model_batch_size_bucket{{model=\"{model}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "model_batch_size_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
            s.batches
        );
        let _ = writeln!(out, "model_batch_size_sum{{model=\"{model}\"}} {}", s.items);
        let _ = writeln!(
            out,
            "model_batch_size_count{{model=\"{model}\"}} {}",
            s.batches
        );
    }
    let _ = writeln!(
        out,
        "# HELP model_queue_delay_seconds Time inputs waited for their forward pass.\n\
         # TYPE model_queue_delay_seconds summary"
    );
    for (model, s) in &models {
        let _ = writeln!(
            out,
            "model_queue_delay_seconds_sum{{model=\"{model}\"}} {}",
            s.queue_delay_sum
        );
        let _ = writeln!(
            out,
            "model_queue_delay_seconds_count{{model=\"{model}\"}} {}",
            s.items
        );
    }
    let _ = writeln!(
        out,
        "# HELP model_forward_seconds Time in forward passes.\n# TYPE model_forward_seconds summary"
    );
    for (model, s) in &models {
        let _ = writeln!(
            out,
            "model_forward_seconds_sum{{model=\"{model}\"}} {}",
            s.run_seconds_sum
        );
        let _ = writeln!(
            out,
            "model_forward_seconds_count{{model=\"{model}\"}} {}",
            s.batches
        );
    }
}

/// Resident set size from `/proc/self/statm` (Linux), assuming 4 KiB pages.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Counts every answered request by its matched route.
pub(crate) async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    state.metrics.request(&endpoint, response.status().as_u16());
    response
}

/// `GET /metrics`, behind `metrics_token` when one is set.
pub(crate) async fn scrape(State(state): State<AppState>, request: Request) -> Response {
    if let Some(token) = state.config.metrics_token.as_deref() {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if !bool::from(presented.ct_eq(token.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the metrics need the metrics token as Authorization: Bearer",
            )
            .into_response();
        }
    }
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
