//! Running as a service: systemd notifications (READY, RELOADING, STOPPING, WATCHDOG),
//! SIGHUP reload, and SIGTERM drain (new calls refused, calls in progress given time to end,
//! the rest hung up with BYE; a second SIGTERM exits at once).

use crate::io::daemon::{Daemon, ReloadFn};
use sd_notify::NotifyState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// Tells systemd (when NOTIFY_SOCKET is set; a no-op otherwise).
pub fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "systemd notification failed");
    }
}

/// Pings the systemd watchdog, but only after a round trip through the SIP dispatcher:
/// if the loop that answers calls is stuck, the pings stop and systemd restarts us.
pub fn spawn_watchdog(daemon: Arc<Daemon>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = period / 3;
    info!(period_ms = period.as_millis() as u64, "systemd watchdog on");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let (tx, rx) = oneshot::channel();
            if daemon.watchdog.send(tx).await.is_err() {
                return;
            }
            match tokio::time::timeout(every, rx).await {
                Ok(Ok(())) => notify(&[NotifyState::Watchdog]),
                _ => warn!("SIP dispatcher did not answer the watchdog probe"),
            }
        }
    });
}

/// The signals the daemon handles, installed first thing at start-up: a SIGHUP that
/// arrives while flows compile or the model loads must not kill the process.
pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Waits for signals: SIGHUP reloads; SIGTERM/SIGINT drain and return.
pub async fn run_until_stopped(
    signals: Signals,
    daemon: Arc<Daemon>,
    reload: ReloadFn,
    drain_timeout: Duration,
    ready: Arc<AtomicBool>,
) {
    let Signals {
        mut hup,
        mut term,
        mut int,
    } = signals;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify(&[NotifyState::Reloading, monotonic()]);
                let f = reload.clone();
                match tokio::task::spawn_blocking(move || f()).await {
                    Ok(Ok(summary)) => info!("reloaded on SIGHUP: {summary}"),
                    Ok(Err(errors)) => error!("reload refused, the running flows stay:\n{errors}"),
                    Err(e) => error!(error = %e, "reload failed"),
                }
                notify(&[NotifyState::Ready]);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify(&[NotifyState::Stopping]);
    // Health checks see us going away before callers do.
    ready.store(false, Ordering::Release);
    daemon.draining.store(true, Ordering::Release);
    let active = daemon.registry.len();
    info!(
        active,
        drain_timeout_s = drain_timeout.as_secs(),
        "draining: new calls get 503"
    );
    tokio::select! {
        _ = daemon.registry.emptied() => {}
        _ = tokio::time::sleep(drain_timeout) => {}
        _ = term.recv() => {
            warn!("second SIGTERM: exiting now");
            std::process::exit(0);
        }
        _ = int.recv() => {
            warn!("second SIGINT: exiting now");
            std::process::exit(0);
        }
    }
    let left = daemon.registry.len();
    if left > 0 {
        info!(
            calls = left,
            "drain timeout: hanging up the remaining calls"
        );
    }
    // Calls hang up with BYE; give the BYEs a moment to leave before the stack stops.
    daemon.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), daemon.registry.emptied()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    info!("stopped");
}

fn monotonic() -> NotifyState<'static> {
    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading"))
}
