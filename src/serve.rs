//! `unmark serve`: the HTTP API with the whole pipeline in this process.

use anyhow::{Context, Result};
use std::io::Write;

use crate::config::Config;

/// Serves until Ctrl-C or SIGTERM, then finishes the requests in flight.
pub(crate) async fn serve(config: Config, stages: &str) -> Result<()> {
    std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create data dir {}",
            config.server.data_dir.display()
        )
    })?;
    let (pipeline, nats) = crate::embedded::start_all(&config, stages).await?;
    if let Some(nats) = nats {
        let client = pipeline.client.clone();
        let defaults = config.options();
        tokio::spawn(async move {
            if let Err(e) = crate::submit::serve(nats, client, defaults).await {
                tracing::error!(error = %e, "NATS submission service stopped");
            }
        });
    }
    let gateway = config.gateway();
    if gateway.api_key.is_none() {
        tracing::warn!("no API key is set: anyone who can reach this port can use it");
    }
    let app = unmark_gateway::router(pipeline.client.clone(), gateway);
    let listener = tokio::net::TcpListener::bind(&config.server.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.bind))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.server.data_dir.display(), "unmark is serving");
    // One line on stdout that scripts (and the tests) can wait for.
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .context("server failed")?;
    drop(pipeline);
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// `unmark worker`: one stage over NATS JetStream until Ctrl-C or SIGTERM.
pub(crate) async fn worker(config: Config, stage: &str) -> Result<()> {
    let stages = crate::embedded::select(stage)?;
    if stages.len() != 1 {
        anyhow::bail!("a worker runs exactly one stage, got {stage:?}");
    }
    std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create data dir {}",
            config.server.data_dir.display()
        )
    })?;
    let t = crate::embedded::transport(&config).await?;
    let pipeline = crate::embedded::start(t.broker, t.blobs, stages, &config.runner());
    tracing::info!(stage, "worker is consuming");
    println!("worker {stage} ready");
    std::io::stdout().flush()?;
    tokio::select! {
        () = pipeline.join() => anyhow::bail!("the {stage} runner stopped"),
        () = shutdown() => Ok(()),
    }
}
