//! Running as a service: systemd notifications (READY, RELOADING, STOPPING, WATCHDOG),
//! SIGHUP reload, and SIGTERM drain (new calls refused, calls in progress given time to end,
//! the rest hung up with BYE; a second SIGTERM exits at once).

use super::admin::ReloadFn;
use super::sip_endpoint::Shared;
use sd_notify::NotifyState;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
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
pub fn spawn_watchdog(shared: Arc<Shared>) {
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
            if shared.watchdog.send(tx).await.is_err() {
                return;
            }
            match tokio::time::timeout(every, rx).await {
                Ok(Ok(())) => notify(&[NotifyState::Watchdog]),
                _ => warn!("SIP dispatcher did not answer the watchdog probe"),
            }
        }
    });
}

/// Waits for signals: SIGHUP reloads; SIGTERM/SIGINT drain and return.
pub async fn run_until_stopped(shared: Arc<Shared>, reload: ReloadFn, drain_timeout: Duration) {
    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(h), Ok(t), Ok(i)) => (h, t, i),
        _ => {
            error!("cannot install signal handlers");
            return;
        }
    };
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
    shared.draining.store(true, Ordering::Release);
    let active = shared.registry.len();
    info!(
        active,
        drain_timeout_s = drain_timeout.as_secs(),
        "draining: new calls get 503"
    );
    let deadline = Instant::now() + drain_timeout;
    while shared.registry.len() > 0 && Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = term.recv() => {
                warn!("second SIGTERM: exiting now");
                std::process::exit(0);
            }
            _ = int.recv() => {
                warn!("second SIGINT: exiting now");
                std::process::exit(0);
            }
        }
    }
    let left = shared.registry.len();
    if left > 0 {
        info!(
            calls = left,
            "drain timeout: hanging up the remaining calls"
        );
    }
    // Calls hang up with BYE; give the BYEs a moment to leave before the stack stops.
    shared.shutdown.cancel();
    let until = Instant::now() + Duration::from_secs(3);
    while shared.registry.len() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    info!("stopped");
}

fn monotonic() -> NotifyState<'static> {
    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading"))
}
