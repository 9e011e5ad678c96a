//! The SIP endpoint: rsipstack over our guarded UDP socket and a TCP listener, and the
//! loop that routes each new transaction: new INVITEs become calls, in-dialog requests go
//! to their dialog, the rest get a proper answer (OPTIONS 200, unknown dialog 481, ...).

use super::call;
use super::reply::{allow_header, reply, ALLOWED};
use super::signalling::Inbound;
use super::tcp_guard::GuardedTcp;
use super::udp_guard::{GuardedUdp, Stack};
use crate::config::{Config, UdpLayer};
use crate::io::daemon::{Daemon, Services, SipContext};
use crate::io::RunError;
use rsipstack::dialog::dialog::{Dialog, DialogState};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub struct SipListeners {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub daemon: Arc<Daemon>,
}

/// Starts the SIP stack. `calls_stop` ends calls in progress (with BYE) when cancelled; the
/// stack itself keeps running until the process exits so those BYEs still go out.
pub async fn start(
    cfg: &Config,
    services: Services,
    calls_stop: CancellationToken,
) -> Result<SipListeners, RunError> {
    let token = CancellationToken::new();
    // The endpoint first: the guarded transports hand what they read straight to it.
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(token.clone())
        .with_transport_layer(TransportLayer::new(token.clone()))
        .with_user_agent(&cfg.sip.user_agent)
        .with_allows(ALLOWED.to_vec())
        .build();
    let stack = Stack(endpoint.inner.clone());
    let (mut udp, mut own) = (None, None);
    if let Some(addr) = cfg.sip.udp {
        let shield = crate::sip::shield::Shield::new(cfg.security.shield());
        let mut sock =
            GuardedUdp::bind(addr, cfg.security.max_message_bytes, shield).map_err(|source| {
                RunError::Bind {
                    what: "SIP UDP",
                    addr,
                    source,
                }
            })?;
        let bound = sock.local_addr().map_err(|source| RunError::Bind {
            what: "SIP UDP",
            addr,
            source,
        })?;
        let external = cfg
            .sip
            .public_ip
            .map(|ip| SocketAddr::new(ip, bound.port()));
        if cfg.sip.udp_layer == UdpLayer::Own {
            own = Some(sock.with_own(external.unwrap_or(bound)));
        }
        sock.attach(stack.clone(), external, token.child_token())
            .await
            .map_err(|e| RunError::Sip(e.to_string()))?;
        udp = Some(bound);
    }
    let mut tcp = None;
    if let Some(mut addr) = cfg.sip.tcp {
        if addr.port() == 0 {
            // One port for both transports when free, as phones expect.
            addr.set_port(pick_tcp_port(addr.ip(), udp.map(|u| u.port())));
        }
        // ivrd frames TCP itself so the guard sees every message (see tcp_guard).
        let listener = GuardedTcp::bind(addr).map_err(|source| RunError::Bind {
            what: "SIP TCP",
            addr,
            source,
        })?;
        let bound = listener.local_addr();
        let external = cfg
            .sip
            .public_ip
            .map(|ip| SocketAddr::new(ip, bound.port()));
        let shield = crate::sip::shield::Shield::new(cfg.security.shield());
        listener
            .attach(
                stack.clone(),
                external,
                cfg.security.max_message_bytes,
                shield,
                token.child_token(),
            )
            .await
            .map_err(|e| RunError::Sip(e.to_string()))?;
        tcp = Some(bound);
    }
    let incoming = endpoint
        .incoming_transactions()
        .map_err(|e| RunError::Sip(e.to_string()))?;
    let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let (watchdog, watchdog_rx) = mpsc::channel(1);
    let announce = |a: Option<SocketAddr>| {
        a.map(|a| SocketAddr::new(cfg.sip.public_ip.unwrap_or(a.ip()), a.port()))
    };
    let sip = SipContext {
        dialogs,
        contact_udp: announce(udp),
        contact_tcp: announce(tcp),
        watchdog,
    };
    let daemon = Arc::new(Daemon::new(cfg, services, sip, calls_stop));
    if let Some(own) = own {
        let daemon = daemon.clone();
        own.serve(Box::new(move |leg, received| {
            let invite = Inbound::Own(Box::new(leg));
            tokio::spawn(call::run(invite, received, daemon.clone()));
        }));
    }
    tokio::spawn(async move { endpoint.serve().await });
    tokio::spawn(incoming_loop(incoming, watchdog_rx, daemon.clone()));
    Ok(SipListeners { udp, tcp, daemon })
}

fn pick_tcp_port(ip: IpAddr, preferred: Option<u16>) -> u16 {
    if let Some(p) = preferred {
        if std::net::TcpListener::bind((ip, p)).is_ok() {
            return p;
        }
    }
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn incoming_loop(
    mut incoming: TransactionReceiver,
    mut watchdog: mpsc::Receiver<oneshot::Sender<()>>,
    daemon: Arc<Daemon>,
) {
    loop {
        tokio::select! {
            tx = incoming.recv() => match tx {
                Some(tx) => dispatch(tx, Instant::now(), &daemon),
                None => return,
            },
            Some(probe) = watchdog.recv() => {
                let _ = probe.send(());
            }
        }
    }
}

fn has_to_tag(tx: &Transaction) -> bool {
    tx.original
        .to_header()
        .is_ok_and(|t| crate::sip::guard::has_tag(t.value()))
}

fn dispatch(mut tx: Transaction, received: Instant, daemon: &Arc<Daemon>) {
    let method = tx.original.method;
    let in_dialog = has_to_tag(&tx);
    match (&method, in_dialog) {
        (Method::Invite, false) => {
            tokio::spawn(call::run(
                Inbound::Stack(Box::new(tx)),
                received,
                daemon.clone(),
            ));
        }
        (Method::Ack, _) => {} // ACK for a transaction the stack already closed
        (_, true) => match daemon.dialogs.match_dialog(&tx) {
            Some(Dialog::Invite(dialog))
                if method == Method::Invite
                    && matches!(dialog.state(), DialogState::WaitAck(..)) =>
            {
                let acked = daemon.acks.watch(&dialog.id().to_string());
                tokio::spawn(reinvite_before_ack(dialog, tx, acked));
            }
            Some(Dialog::Invite(mut dialog)) => spawn_started(async move {
                if let Err(e) = dialog.handle(&mut tx).await {
                    debug!(error = %e, "in-dialog request");
                }
            }),
            _ => reply(
                tx,
                StatusCode::CallTransactionDoesNotExist,
                vec![],
                "no_dialog",
            ),
        },
        // A load balancer's keepalive (Kamailio's dispatcher probes with OPTIONS): 200 while
        // this node takes calls, 503 while it drains or is full, so new calls go elsewhere
        // before any fails.
        (Method::Options, false) => {
            let mut headers = vec![allow_header(), Header::Accept("application/sdp".into())];
            let status = match daemon.unavailable() {
                None => StatusCode::OK,
                Some(why) => {
                    debug!(why, "OPTIONS: unavailable");
                    headers.push(Header::RetryAfter(
                        daemon.limits.retry_after_s.to_string().into(),
                    ));
                    headers.push(Header::Warning(format!("399 ivrd \"{why}\"").into()));
                    StatusCode::ServiceUnavailable
                }
            };
            tokio::spawn(async move {
                let _ = tx.reply_with(status, headers, None).await;
            });
        }
        (
            Method::Bye
            | Method::Info
            | Method::Notify
            | Method::Update
            | Method::Refer
            | Method::PRack,
            false,
        ) => reply(
            tx,
            StatusCode::CallTransactionDoesNotExist,
            vec![],
            "no_dialog",
        ),
        (Method::Register, false) if daemon.registrar.is_some() => {
            tokio::spawn(super::registrar::handle(tx, daemon.clone()));
        }
        (Method::Register | Method::Subscribe | Method::Publish | Method::Message, false) => reply(
            tx,
            StatusCode::MethodNotAllowed,
            vec![allow_header()],
            "method_not_allowed",
        ),
        _ => reply(
            tx,
            StatusCode::NotImplemented,
            vec![allow_header()],
            "not_implemented",
        ),
    }
}

/// A re-INVITE on a dialog whose 200 OK is not yet acknowledged. The caller may well have
/// sent the ACK just before it (hold right after answer); that ACK waits for the INVITE
/// transaction's task, and a re-INVITE handled first would be taken for the initial INVITE
/// and never answered. So it waits for the call's driver to see the ACK, a short while at
/// most; if none comes, the answer is 491 Request Pending, which tells the phone to try
/// again shortly (RFC 3261 §14.1).
async fn reinvite_before_ack(
    mut dialog: InviteDialog,
    mut tx: Transaction,
    acked: Option<tokio::sync::watch::Receiver<bool>>,
) {
    const ACK_GRACE: std::time::Duration = std::time::Duration::from_millis(50);
    if let Some(mut acked) = acked {
        let _ = tokio::time::timeout(ACK_GRACE, acked.wait_for(|a| *a)).await;
    }
    if matches!(dialog.state(), DialogState::WaitAck(..)) {
        let _ = tx.reply(StatusCode::RequestPending).await;
        return;
    }
    if let Err(e) = dialog.handle(&mut tx).await {
        debug!(error = %e, "re-INVITE");
    }
}

/// Runs `task` up to its first wait right here, then spawns the rest.
///
/// rsipstack's dialog remembers the highest CSeq it has seen and silently discards a request
/// with a lower one; it checks and records the CSeq as soon as `handle` is first polled.
/// Spawned straight away, two requests that arrive together (a caller's BYE and NOTIFY, CSeq
/// 4 and 5) could start in either order on the multi-threaded runtime, and a BYE seen second
/// is dropped for good, retransmissions included. Starting each one here, in the order the
/// endpoint received them, keeps the check in arrival order without making a request wait
/// for the one before it to finish (a re-INVITE waits for its ACK, and a second re-INVITE
/// meanwhile must get its 491 at once). Polling with a no-op waker is sound: the spawned task
/// polls again at once with its real waker.
fn spawn_started(task: impl std::future::Future<Output = ()> + Send + 'static) {
    let mut task = Box::pin(task);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if task.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(task);
    }
}
