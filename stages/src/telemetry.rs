//! The telemetry every stage emits, with fixed metric names (Vector's component spec).
//!
//! The runner emits a [`StageEvent`] at each point of a message's life; each event is logged
//! through `tracing` and counted in a process-wide registry that [`snapshot`] reads (the
//! Prometheus exporter reads the same registry). [`assert_compliant`] is the test helper that
//! checks a stage emitted what the spec requires.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Messages a stage took from its subject.
pub const RECEIVED_TOTAL: &str = "unmark_stage_received_total";
/// Messages a stage handed on (next step or final result).
pub const SENT_TOTAL: &str = "unmark_stage_sent_total";
/// Messages a stage failed on (retried or not).
pub const ERRORS_TOTAL: &str = "unmark_stage_errors_total";
/// Messages a stage dropped for good (unreadable, or failed beyond retries).
pub const DROPPED_TOTAL: &str = "unmark_stage_dropped_total";
/// Seconds spent in the stage function.
pub const DURATION_SECONDS: &str = "unmark_stage_duration_seconds";

/// Something that happened to one message in one stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StageEvent<'a> {
    /// A message arrived.
    Received,
    /// The output was handed on.
    Sent,
    /// The stage failed with this reason.
    Error {
        /// The failure reason's wire name.
        reason: &'a str,
    },
    /// The message was dropped for good.
    Dropped {
        /// Why.
        why: &'a str,
    },
    /// The stage function ran this long.
    Duration(Duration),
}

/// Counters of one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageCounters {
    /// See [`RECEIVED_TOTAL`].
    pub received: u64,
    /// See [`SENT_TOTAL`].
    pub sent: u64,
    /// See [`ERRORS_TOTAL`].
    pub errors: u64,
    /// See [`DROPPED_TOTAL`].
    pub dropped: u64,
    /// Number of duration samples.
    pub duration_count: u64,
    /// Sum of duration samples, in seconds.
    pub duration_sum: f64,
}

fn registry() -> &'static Mutex<HashMap<String, StageCounters>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, StageCounters>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Records an event of `stage`.
pub fn emit(stage: &str, event: StageEvent<'_>) {
    let mut map = registry().lock().unwrap_or_else(PoisonError::into_inner);
    let c = map.entry(stage.to_owned()).or_default();
    match event {
        StageEvent::Received => {
            c.received += 1;
            tracing::debug!(stage, metric = RECEIVED_TOTAL, "received");
        }
        StageEvent::Sent => {
            c.sent += 1;
            tracing::debug!(stage, metric = SENT_TOTAL, "sent");
        }
        StageEvent::Error { reason } => {
            c.errors += 1;
            tracing::debug!(stage, reason, metric = ERRORS_TOTAL, "error");
        }
        StageEvent::Dropped { why } => {
            c.dropped += 1;
            tracing::warn!(stage, why, metric = DROPPED_TOTAL, "dropped");
        }
        StageEvent::Duration(d) => {
            c.duration_count += 1;
            c.duration_sum += d.as_secs_f64();
            tracing::debug!(
                stage,
                seconds = d.as_secs_f64(),
                metric = DURATION_SECONDS,
                "ran"
            );
        }
    }
}

/// The counters of `stage` now.
pub fn snapshot(stage: &str) -> StageCounters {
    let map = registry().lock().unwrap_or_else(PoisonError::into_inner);
    map.get(stage).copied().unwrap_or_default()
}

/// Every stage's counters, sorted by stage name.
pub fn all() -> Vec<(String, StageCounters)> {
    let map = registry().lock().unwrap_or_else(PoisonError::into_inner);
    let mut all: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Checks that between `before` and `after`, `stage` received `messages` messages and
/// accounted for each of them: a duration sample and either a send or an error.
pub fn assert_compliant(stage: &str, before: StageCounters, after: StageCounters, messages: u64) {
    let received = after.received - before.received;
    let timed = after.duration_count - before.duration_count;
    let settled = (after.sent - before.sent) + (after.errors - before.errors);
    assert!(
        received >= messages,
        "{stage}: expected {messages} received, got {received}"
    );
    assert!(
        timed >= messages,
        "{stage}: expected {messages} durations, got {timed}"
    );
    assert!(
        settled >= messages,
        "{stage}: expected {messages} sent or errors, got {settled}"
    );
}
