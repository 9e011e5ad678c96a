//! The only tokio code: sockets, timers, one task per call, the HTTP server, signals.
//! Everything it decides is delegated to the pure cores (`call`, `flow`, `media`, `sip`).

mod call_task;
mod http;
mod rtp_socket;
mod sip_endpoint;
mod udp_guard;

use crate::config::{Config, LoadedConfig};
use crate::diag::Diagnostics;
use crate::flow::{compile_dir, FlowSet};
use crate::media::library::SoundLibrary;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Loads prompts and compiles every flow; the same path serves `ivrd check`, start-up and reload.
pub fn load_flows(cfg: &LoadedConfig) -> Result<(FlowSet, usize), Diagnostics> {
    let mut sounds = SoundLibrary::new(&cfg.sounds_dir);
    let flows = compile_dir(
        &cfg.flows_dir,
        &cfg.config.flows.default,
        &cfg.config.flows.routes,
        &cfg.path,
        &mut sounds,
    )?;
    Ok((flows, sounds.len()))
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] Diagnostics),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("SIP stack: {0}")]
    Sip(String),
    #[error("metrics: {0}")]
    Metrics(String),
}

/// Runs the daemon until SIGINT/SIGTERM.
pub async fn run(cfg: LoadedConfig) -> Result<(), RunError> {
    let (flows, prompts) = load_flows(&cfg)?;
    info!(
        flows = flows.flows.len(),
        prompts,
        default = %flows.default.name,
        "flows compiled"
    );
    let metrics = crate::metrics::install().map_err(RunError::Metrics)?;
    let shutdown = CancellationToken::new();
    let flows = Arc::new(ArcSwap::from_pointee(flows));

    let sip = sip_endpoint::start(&cfg.config, flows.clone(), shutdown.clone()).await?;
    let metrics_addr = match cfg.config.metrics.listen {
        Some(addr) => Some(http::start(addr, metrics, shutdown.clone()).await?),
        None => None,
    };
    let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or("off".into());
    // One line on stdout that scripts and tests wait for.
    println!(
        "ivrd ready sip_udp={} sip_tcp={} metrics={}",
        show(sip.udp),
        show(sip.tcp),
        show(metrics_addr)
    );
    info!(sip_udp = %show(sip.udp), sip_tcp = %show(sip.tcp), metrics = %show(metrics_addr), "ivrd ready");

    wait_for_signal().await;
    info!("shutting down");
    shutdown.cancel();
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Validates a config and its flows without starting anything (`ivrd check`).
pub fn check(cfg: &LoadedConfig) -> Result<String, Diagnostics> {
    let (flows, prompts) = load_flows(cfg)?;
    let mut summary = format!(
        "{}: ok ({} flow{}, {prompts} prompt{})",
        cfg.path.display(),
        flows.flows.len(),
        if flows.flows.len() == 1 { "" } else { "s" },
        if prompts == 1 { "" } else { "s" }
    );
    for f in flows.flows.values() {
        if f.overflow.is_none() && cfg.config.limits.overflow == crate::config::Overflow::Answer {
            summary.push_str(&format!(
                "\nnote: flow '{}' has no overflow node: calls beyond limits.max_calls get 503",
                f.name
            ));
        }
    }
    Ok(summary)
}

/// Loads the config from a path or the default locations.
pub fn load_config(path: Option<&std::path::Path>) -> Result<LoadedConfig, Diagnostics> {
    match path.map(|p| p.to_path_buf()).or_else(Config::default_path) {
        Some(p) => Config::load(&p),
        None => Err(Diagnostics(vec![crate::diag::Diagnostic::new(
            std::path::Path::new("ivrd.yaml"),
            format!(
                "no config file: pass --config FILE or create one of {}",
                crate::config::DEFAULT_CONFIG_PATHS.join(", ")
            ),
        )])),
    }
}
