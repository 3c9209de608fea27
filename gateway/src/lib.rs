//! unmark's HTTP API (axum). The only crate that speaks HTTP; it never touches pixels.
//!
//! [`router`] builds the API over [`Jobs`]: requests become recorded jobs on the broker. The
//! synchronous endpoint waits for a job's events; the jobs endpoints answer at once and read
//! the job records. Errors are RFC 9457 `application/problem+json` through one [`ApiError`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use unmark_broker::{BlobStore, InProcessBroker, JobClient};
//! use unmark_gateway::{GatewayConfig, router};
//! use unmark_jobs::{JobStore, Jobs};
//!
//! let client = JobClient::new(Arc::new(InProcessBroker::new()), BlobStore::in_memory());
//! let store = JobStore::open("sqlite://unmark-data/unmark.db", 4).await?;
//! let metrics = Arc::new(unmark_gateway::Metrics::default());
//! let sandbox = unmark_plugins::Sandbox::new(Default::default(), None)?;
//! let plugins = unmark_plugins::PluginHost::new(client.blobs().clone(), sandbox);
//! let app = router(Jobs::new(client, store), GatewayConfig::default(), metrics, plugins);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod background;
mod error;
mod form;
mod idempotency;
mod jobs;
mod limits;
mod metrics;
mod openapi;
mod plugins;
mod profiles;
mod quota;
mod routes;
mod webhooks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use unmark_jobs::Jobs;
use unmark_jobs::accounts::Plan;
use unmark_schemas::background::BackgroundOptions;
use unmark_schemas::params::WatermarkOptions;

pub use error::ApiError;
pub use limits::RateLimitConfig;
pub use metrics::Metrics;
pub use webhooks::{WebhookConfig, deliver_forever};

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// A key accepted besides the database's (`X-API-Key` or `Bearer`), with admin rights
    /// and the plan `static_key_plan`. With no such key and no key in the database the API
    /// is open.
    pub api_key: Option<String>,
    /// Largest request body in bytes, enforced while streaming.
    pub max_body_bytes: usize,
    /// Defaults for every request's options, including the decode limits.
    pub defaults: WatermarkOptions,
    /// Defaults of background removals (the same decode limits).
    pub background: BackgroundOptions,
    /// How long a synchronous request waits for its job before answering 202 with its id.
    pub sync_timeout: Duration,
    /// The plans keys may have, by name.
    pub plans: BTreeMap<String, Plan>,
    /// The plan of `api_key`.
    pub static_key_plan: String,
    /// Rate limits and admission control.
    pub rate_limit: RateLimitConfig,
    /// When set, `GET /metrics` needs it as `Authorization: Bearer`.
    pub metrics_token: Option<String>,
    /// Webhook delivery.
    pub webhooks: WebhookConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let defaults = WatermarkOptions::default();
        Self {
            api_key: None,
            // Image and mask at the input limit each, plus room for the form.
            max_body_bytes: 2 * defaults.decode.max_input_bytes as usize + 1024 * 1024,
            background: BackgroundOptions {
                decode: defaults.decode.clone(),
                ..Default::default()
            },
            defaults,
            sync_timeout: Duration::from_secs(120),
            plans: unmark_jobs::accounts::default_plans(),
            static_key_plan: "enterprise".into(),
            rate_limit: RateLimitConfig::default(),
            metrics_token: None,
            webhooks: WebhookConfig::default(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) jobs: Jobs,
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) plugins: unmark_plugins::PluginHost,
}

/// The whole API as an axum router. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that per-IP limits see the peer.
pub fn router(
    jobs: Jobs,
    config: GatewayConfig,
    metrics: Arc<Metrics>,
    plugins: unmark_plugins::PluginHost,
) -> Router {
    routes::build(AppState {
        jobs,
        config: Arc::new(config),
        metrics,
        plugins,
    })
}

/// The request's media type, lowercase; empty when absent.
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
