//! HTTP: the Prometheus scrape endpoint (the admin API joins it later).

use crate::io::RunError;
use axum::{routing::get, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Binds the metrics listener and serves `/metrics` until shutdown; returns the bound address.
pub async fn start(
    addr: SocketAddr,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<SocketAddr, RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            what: "metrics",
            addr,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(addr);
    // Histograms keep raw samples until upkeep folds them; do it regularly.
    let upkeep = handle.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => upkeep.run_upkeep(),
                _ = stop.cancelled() => return,
            }
        }
    });
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}
