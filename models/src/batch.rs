//! Dynamic batching for a model stage, with Triton's semantics: requests queue; the model
//! thread takes the first one, then gathers more until it has `max_batch` or until
//! `max_queue_delay` has passed since the first one arrived, runs one forward pass over all
//! of them and hands each caller its own result.
//!
//! One thread owns the model, so at most one batch (at most `max_batch` inputs) is in flight
//! per [`Batcher`] and memory stays predictable; `queue_capacity` bounds what waits.
//!
//! ```
//! use unmark_models::batch::{BatchConfig, Batcher};
//!
//! let doubler = Batcher::spawn("double", BatchConfig::default(), |xs: Vec<i32>| {
//!     Ok(xs.into_iter().map(|x| 2 * x).collect())
//! });
//! assert_eq!(doubler.submit(21)?, 42);
//! # Ok::<(), unmark_models::ModelError>(())
//! ```

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ModelError;

/// How a [`Batcher`] gathers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most inputs in one forward pass.
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch.
    pub max_queue_delay: Duration,
    /// Most requests waiting; further callers block until there is room.
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 4,
            max_queue_delay: Duration::from_millis(20),
            queue_capacity: 64,
        }
    }
}

/// Upper bounds (inclusive) of the batch-size histogram's buckets.
pub const BATCH_SIZE_BUCKETS: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// What a batcher has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchStats {
    /// Forward passes run.
    pub batches: u64,
    /// Inputs served.
    pub items: u64,
    /// Forward passes with at most `BATCH_SIZE_BUCKETS[i]` inputs (cumulative, like a
    /// Prometheus histogram), and the largest batch seen.
    pub size_buckets: [u64; 6],
    /// The largest batch so far.
    pub max_seen: u64,
    /// Total seconds requests spent queued before their pass started.
    pub queue_delay_sum: f64,
    /// Total seconds spent in forward passes.
    pub run_seconds_sum: f64,
}

#[derive(Debug, Default)]
struct Counters {
    stats: Mutex<BatchStats>,
}

struct Request<I, O> {
    input: I,
    enqueued: Instant,
    reply: mpsc::Sender<Result<O, ModelError>>,
}

/// A model thread fed by a bounded queue. Cloning shares the same thread.
pub struct Batcher<I, O> {
    name: Arc<str>,
    queue: mpsc::SyncSender<Request<I, O>>,
    counters: Arc<Counters>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            queue: self.queue.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<I, O> std::fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("name", &self.name).finish()
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the model thread. `run` gets a batch of inputs and must return one output per
    /// input, in order; it runs on that thread only. A panic in `run` fails that batch, not
    /// the thread.
    pub fn spawn<F>(name: &str, config: BatchConfig, mut run: F) -> Self
    where
        F: FnMut(Vec<I>) -> Result<Vec<O>, ModelError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<Request<I, O>>(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let max_batch = config.max_batch.max(1);
        let thread_name = format!("model-{name}");
        let spawned = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let deadline = first.enqueued + config.max_queue_delay;
                    let mut batch = vec![first];
                    while batch.len() < max_batch {
                        let wait = deadline.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(wait) {
                            Ok(request) => batch.push(request),
                            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                                break;
                            }
                        }
                    }
                    let started = Instant::now();
                    let delay: f64 = batch
                        .iter()
                        .map(|r| started.duration_since(r.enqueued).as_secs_f64())
                        .sum();
                    let (inputs, replies): (Vec<I>, Vec<_>) =
                        batch.into_iter().map(|r| (r.input, r.reply)).unzip();
                    let n = inputs.len();
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(inputs)))
                            .unwrap_or_else(|_| {
                                Err(ModelError::Backend("the model panicked".into()))
                            });
                    shared.record(n, delay, started.elapsed().as_secs_f64());
                    match outcome {
                        Ok(outputs) if outputs.len() == n => {
                            for (reply, output) in replies.into_iter().zip(outputs) {
                                let _ = reply.send(Ok(output));
                            }
                        }
                        Ok(outputs) => {
                            let e = ModelError::Backend(format!(
                                "the model returned {} outputs for {n} inputs",
                                outputs.len()
                            ));
                            replies
                                .into_iter()
                                .for_each(|r| drop(r.send(Err(e.clone()))));
                        }
                        Err(e) => replies
                            .into_iter()
                            .for_each(|r| drop(r.send(Err(e.clone())))),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the model thread");
        }
        Self {
            name: name.into(),
            queue: tx,
            counters,
        }
    }

    /// Queues `input`, blocks until its batch has run, and returns its output.
    pub fn submit(&self, input: I) -> Result<O, ModelError> {
        let (reply, answer) = mpsc::channel();
        let stopped = || ModelError::Backend(format!("the {} model thread has stopped", self.name));
        self.queue
            .send(Request {
                input,
                enqueued: Instant::now(),
                reply,
            })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }

    /// Counters so far.
    pub fn stats(&self) -> BatchStats {
        self.counters
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Counters {
    fn record(&self, n: usize, queue_delay: f64, run_seconds: f64) {
        let mut s = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        s.batches += 1;
        s.items += n as u64;
        for (bucket, &bound) in s.size_buckets.iter_mut().zip(&BATCH_SIZE_BUCKETS) {
            if n <= bound {
                *bucket += 1;
            }
        }
        s.max_seen = s.max_seen.max(n as u64);
        s.queue_delay_sum += queue_delay;
        s.run_seconds_sum += run_seconds;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn queued_requests_share_one_pass_and_get_their_own_answers() {
        let config = BatchConfig {
            max_batch: 4,
            max_queue_delay: Duration::from_secs(30),
            queue_capacity: 8,
        };
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::spawn("square", config, move |xs: Vec<u64>| {
            seen.lock().expect("valid test input").push(xs.len());
            Ok(xs.iter().map(|x| x * x).collect())
        });
        // Four callers at once: the batch fills up to max_batch, so the pass runs without
        // waiting out the (long) queue delay.
        let gate = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (1..=4u64)
            .map(|x| {
                let (b, gate) = (batcher.clone(), gate.clone());
                std::thread::spawn(move || {
                    gate.wait();
                    b.submit(x).expect("valid test input")
                })
            })
            .collect();
        let answers: Vec<u64> = handles
            .into_iter()
            .map(|h| h.join().expect("valid test input"))
            .collect();
        assert_eq!(answers, vec![1, 4, 9, 16]);
        assert_eq!(*sizes.lock().expect("valid test input"), vec![4]);
        let stats = batcher.stats();
        assert_eq!((stats.batches, stats.items, stats.max_seen), (1, 4, 4));
        assert_eq!(stats.size_buckets, [0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn a_lone_request_runs_after_the_queue_delay_and_errors_reach_every_caller() {
        let config = BatchConfig {
            max_batch: 8,
            max_queue_delay: Duration::from_millis(1),
            queue_capacity: 8,
        };
        let failing = Batcher::spawn("fail", config, |_: Vec<u8>| -> Result<Vec<u8>, _> {
            Err(ModelError::Input("bad pixels".into()))
        });
        assert_eq!(
            failing.submit(1).expect_err("must fail").to_string(),
            "bad pixels"
        );
        let panicking = Batcher::spawn("panic", config, |_: Vec<u8>| -> Result<Vec<u8>, _> {
            panic!("boom")
        });
        assert!(
            panicking
                .submit(1)
                .expect_err("must fail")
                .to_string()
                .contains("panicked")
        );
        // The thread survived the panic.
        assert!(panicking.submit(2).is_err());
        assert_eq!(panicking.stats().batches, 2);
    }
}
