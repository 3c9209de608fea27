//! `unmark serve`: the HTTP API with the whole pipeline in this process; `unmark worker`: one
//! stage over NATS.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use unmark_broker::BlobStore;
use unmark_gateway::Metrics;
use unmark_jobs::{JobStore, Jobs, SweepConfig};

use crate::config::Config;
use crate::embedded::Blobs;

/// Serves until Ctrl-C or SIGTERM, then finishes the requests in flight.
pub(crate) async fn serve(config: Config, stages: &str) -> Result<()> {
    std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create data dir {}",
            config.server.data_dir.display()
        )
    })?;
    let (pipeline, transport) =
        crate::embedded::start_all(&config, stages, Blobs::Configured).await?;
    let url = config.database_url();
    let store = JobStore::open(&url, config.database.max_connections)
        .await
        .context("cannot open the job database")?;
    tracing::info!(
        backend = store.backend().await.unwrap_or_default(),
        "job records open"
    );
    let jobs = Jobs::new(pipeline.client.clone(), store.clone());
    let sweep = config.sweep();
    let metrics = Arc::new(Metrics::default());
    {
        let (broker, store, ttl) = (transport.broker.clone(), store.clone(), sweep.result_ttl);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let observe = move |event: &unmark_schemas::JobEvent| metrics.observe_event(event);
            if let Err(e) = unmark_jobs::record(broker, store, ttl, observe).await {
                tracing::error!(error = %e, "job records stopped following events");
            }
        });
    }
    tokio::spawn(refresh_gauges(jobs.clone(), metrics.clone()));
    tokio::spawn(unmark_gateway::deliver_forever(
        jobs.clone(),
        config.webhook_config(),
    ));
    match jobs.recover().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "started unfinished jobs again"),
        Err(e) => tracing::error!(error = %e, "cannot start unfinished jobs again"),
    }
    let interval = Duration::from_secs(config.jobs.sweep_interval_secs.max(1));
    tokio::spawn(sweep_forever(
        store,
        transport.blobs.clone(),
        sweep,
        interval,
    ));
    if let Some(nats) = transport.nats.clone() {
        let jobs = jobs.clone();
        let defaults = crate::submit::Defaults {
            watermark: config.options(),
            background: config.background_options(),
        };
        let registry = transport.plugins.registry.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::submit::serve(nats, jobs, defaults, registry).await {
                tracing::error!(error = %e, "NATS submission service stopped");
            }
        });
    }
    let gateway = config.gateway();
    if gateway.api_key.is_none() {
        tracing::warn!("no API key is set: anyone who can reach this port can use it");
    }
    let app = unmark_gateway::router(jobs, gateway, metrics, transport.plugins.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
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

/// Keeps the stage backlogs and the jobs in flight current (for metrics and admission
/// control), once a second.
async fn refresh_gauges(jobs: Jobs, metrics: Arc<Metrics>) {
    let stages = crate::embedded::builtin_names();
    loop {
        let mut depths = BTreeMap::new();
        for stage in &stages {
            match jobs.client().backlog(stage).await {
                Ok(n) => {
                    depths.insert((*stage).to_owned(), n);
                }
                Err(e) => tracing::debug!(stage, error = %e, "cannot read a stage's backlog"),
            }
        }
        metrics.set_queue_depth(depths);
        if let Ok(n) = jobs.store().count_unfinished().await {
            metrics.set_jobs_in_flight(n);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sweeps now, then every `interval`.
async fn sweep_forever(store: JobStore, blobs: BlobStore, config: SweepConfig, interval: Duration) {
    loop {
        match unmark_jobs::sweep(&store, &blobs, &config, SystemTime::now()).await {
            Ok(report) if report == Default::default() => {}
            Ok(report) => tracing::info!(
                results_expired = report.results_expired,
                stale_failed = report.stale_failed,
                blobs_deleted = report.blobs_deleted,
                records_forgotten = report.records_forgotten,
                "swept"
            ),
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        tokio::time::sleep(interval).await;
    }
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
    let selection = crate::embedded::select(stage, &config)?;
    if selection.len() != 1 {
        anyhow::bail!(
            "a worker runs exactly one stage (or `plugin`, or `plugin:<name>`), got {stage:?}"
        );
    }
    std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create data dir {}",
            config.server.data_dir.display()
        )
    })?;
    let t = crate::embedded::transport(&config, Blobs::Configured).await?;
    let pipeline = crate::embedded::start(&t, selection, &config.runner());
    tracing::info!(stage, "worker is consuming");
    println!("worker {stage} ready");
    std::io::stdout().flush()?;
    tokio::select! {
        () = pipeline.join() => anyhow::bail!("the {stage} runner stopped"),
        () = shutdown() => Ok(()),
    }
}
