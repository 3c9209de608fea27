//! unmark's HTTP API (axum). The only crate that speaks HTTP; it never touches pixels.
//!
//! [`router`] builds the API over a [`JobClient`]: requests become jobs on the broker, and the
//! gateway waits for their events. Errors are RFC 9457 `application/problem+json` through
//! one [`ApiError`].
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use unmark_broker::{BlobStore, InProcessBroker, JobClient};
//! use unmark_gateway::{GatewayConfig, router};
//!
//! let client = JobClient::new(Arc::new(InProcessBroker::new()), BlobStore::in_memory());
//! let app = router(client, GatewayConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod auth;
mod error;
mod form;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use unmark_broker::JobClient;
use unmark_schemas::params::WatermarkOptions;

pub use error::ApiError;

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// When set, every endpoint but health requires this key (`X-API-Key` or `Bearer`).
    pub api_key: Option<String>,
    /// Largest request body in bytes, enforced while streaming.
    pub max_body_bytes: usize,
    /// Defaults for every request's options, including the decode limits.
    pub defaults: WatermarkOptions,
    /// How long a synchronous request waits for its job.
    pub sync_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let defaults = WatermarkOptions::default();
        Self {
            api_key: None,
            // Image and mask at the input limit each, plus room for the form.
            max_body_bytes: 2 * defaults.decode.max_input_bytes as usize + 1024 * 1024,
            defaults,
            sync_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) client: JobClient,
    pub(crate) config: Arc<GatewayConfig>,
}

/// The whole API as an axum router.
pub fn router(client: JobClient, config: GatewayConfig) -> Router {
    routes::build(AppState {
        client,
        config: Arc::new(config),
    })
}
