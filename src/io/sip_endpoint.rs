//! The SIP endpoint: rsipstack over our guarded UDP socket and a TCP listener, and the
//! loop that routes each new transaction: new INVITEs become calls, in-dialog requests go
//! to their dialog, the rest get a proper answer (OPTIONS 200, unknown dialog 481, ...).

use super::call_task;
use super::rtp_socket::RtpPorts;
use super::tcp_guard::GuardedTcp;
use super::udp_guard::GuardedUdp;
use super::RunError;
use crate::config::{AnswerConfig, Config, LimitsConfig};
use crate::flow::FlowSet;
use crate::metrics::SIP_MESSAGES_REJECTED_TOTAL;
use arc_swap::ArcSwap;
use rsipstack::dialog::dialog::{Dialog, DialogState};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, Transport};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Methods we answer; sent in Allow.
pub const ALLOWED: &[Method] = &[
    Method::Invite,
    Method::Ack,
    Method::Cancel,
    Method::Bye,
    Method::Options,
    Method::Info,
    Method::Notify,
    Method::Update,
];

/// State shared by the endpoint loop and every call task.
pub struct Shared {
    pub answer: AnswerConfig,
    pub limits: LimitsConfig,
    pub flows: Arc<ArcSwap<FlowSet>>,
    pub dialogs: Arc<DialogLayer>,
    pub rtp_ports: RtpPorts,
    /// Address written in our SDP (c= line).
    pub media_ip: IpAddr,
    /// Contact addresses per transport.
    pub contact_udp: Option<SocketAddr>,
    pub contact_tcp: Option<SocketAddr>,
    pub calls: AtomicUsize,
    pub overflow_calls: AtomicUsize,
    pub shutdown: CancellationToken,
    pub outages: Arc<super::outages::OutageBoard>,
    pub store: Arc<crate::store::Store>,
    pub registry: Arc<super::calls::CallRegistry>,
    /// Set on SIGTERM: new INVITEs get 503 while calls in progress finish.
    pub draining: AtomicBool,
    /// Watchdog probes answered by the dispatcher loop (proves it is not stuck).
    pub watchdog: mpsc::Sender<oneshot::Sender<()>>,
    /// The Whisper worker pool, when speech is configured.
    pub asr: Option<crate::asr::whisper::AsrPool>,
    /// `media.rtp_timeout_s` and `media.max_rtp_packets_per_s`.
    pub rtp_timeout_s: u64,
    pub max_rtp_pps: u32,
}

/// What the endpoint shares with calls besides its own SIP state.
pub struct Services {
    pub flows: Arc<ArcSwap<FlowSet>>,
    pub outages: Arc<super::outages::OutageBoard>,
    pub store: Arc<crate::store::Store>,
    pub registry: Arc<super::calls::CallRegistry>,
    pub asr: Option<crate::asr::whisper::AsrPool>,
}

pub struct SipListeners {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub shared: Arc<Shared>,
}

/// Starts the SIP stack. `calls_stop` ends calls in progress (with BYE) when cancelled; the
/// stack itself keeps running until the process exits so those BYEs still go out.
pub async fn start(
    cfg: &Config,
    services: Services,
    calls_stop: CancellationToken,
) -> Result<SipListeners, RunError> {
    let token = CancellationToken::new();
    let transport = TransportLayer::new(token.clone());
    let mut udp = None;
    if let Some(addr) = cfg.sip.udp {
        let shield = crate::sip::shield::Shield::new(cfg.security.shield());
        let sock =
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
        let conn = UdpConnection::from_socket(Arc::new(sock), external, Some(token.child_token()))
            .await
            .map_err(|e| RunError::Sip(e.to_string()))?;
        transport.add_transport(conn.into());
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
                &transport,
                external,
                cfg.security.max_message_bytes,
                shield,
                token.child_token(),
            )
            .await
            .map_err(|e| RunError::Sip(e.to_string()))?;
        tcp = Some(bound);
    }
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(token.clone())
        .with_transport_layer(transport)
        .with_user_agent(&cfg.sip.user_agent)
        .with_allows(ALLOWED.to_vec())
        .build();
    let incoming = endpoint
        .incoming_transactions()
        .map_err(|e| RunError::Sip(e.to_string()))?;
    let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let (watchdog, watchdog_rx) = mpsc::channel(1);
    let announce = |a: Option<SocketAddr>| {
        a.map(|a| SocketAddr::new(cfg.sip.public_ip.unwrap_or(a.ip()), a.port()))
    };
    let shared = Arc::new(Shared {
        answer: cfg.answer.clone(),
        limits: cfg.limits.clone(),
        flows: services.flows,
        outages: services.outages,
        store: services.store,
        registry: services.registry,
        dialogs,
        rtp_ports: RtpPorts::new(cfg.media.rtp_ip, cfg.media.rtp_ports),
        media_ip: cfg.media.public_ip.unwrap_or(cfg.media.rtp_ip),
        contact_udp: announce(udp),
        contact_tcp: announce(tcp),
        calls: AtomicUsize::new(0),
        overflow_calls: AtomicUsize::new(0),
        shutdown: calls_stop,
        draining: AtomicBool::new(false),
        watchdog,
        asr: services.asr,
        rtp_timeout_s: cfg.media.rtp_timeout_s,
        max_rtp_pps: cfg.media.max_rtp_packets_per_s,
    });
    tokio::spawn(async move { endpoint.serve().await });
    tokio::spawn(incoming_loop(incoming, watchdog_rx, shared.clone()));
    Ok(SipListeners { udp, tcp, shared })
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
    shared: Arc<Shared>,
) {
    loop {
        tokio::select! {
            tx = incoming.recv() => match tx {
                Some(tx) => dispatch(tx, Instant::now(), &shared),
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
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_some()
}

fn dispatch(mut tx: Transaction, received: Instant, shared: &Arc<Shared>) {
    let method = tx.original.method;
    let in_dialog = has_to_tag(&tx);
    match (&method, in_dialog) {
        (Method::Invite, false) => {
            tokio::spawn(call_task::run(tx, received, shared.clone()));
        }
        (Method::Ack, _) => {} // ACK for a transaction the stack already closed
        (_, true) => match shared.dialogs.match_dialog(&tx) {
            Some(Dialog::Invite(dialog))
                if method == Method::Invite
                    && matches!(dialog.state(), DialogState::WaitAck(..)) =>
            {
                tokio::spawn(reinvite_before_ack(dialog, tx));
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
        (Method::Options, false) => {
            let headers = vec![allow_header(), Header::Accept("application/sdp".into())];
            tokio::spawn(async move {
                let _ = tx.reply_with(StatusCode::OK, headers, None).await;
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
/// and never answered. So it waits briefly for the ACK; if none comes, the answer is 491
/// Request Pending, which tells the phone to try again shortly (RFC 3261 §14.1).
async fn reinvite_before_ack(mut dialog: InviteDialog, mut tx: Transaction) {
    const ACK_GRACE: std::time::Duration = std::time::Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + ACK_GRACE;
    while matches!(dialog.state(), DialogState::WaitAck(..))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
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

pub fn allow_header() -> Header {
    let list: Vec<String> = ALLOWED.iter().map(|m| m.to_string()).collect();
    Header::Allow(list.join(", ").into())
}

/// Answers a transaction with a final status in its own task and counts the refusal.
pub fn reply(mut tx: Transaction, code: StatusCode, headers: Vec<Header>, reason: &'static str) {
    metrics::counter!(SIP_MESSAGES_REJECTED_TOTAL, "reason" => reason).increment(1);
    tokio::spawn(async move {
        if let Err(e) = tx.reply_with(code, headers, None).await {
            warn!(error = %e, "could not send SIP response");
        }
    });
}

/// Our Contact for a transaction, on the transport it arrived on.
pub fn contact_for(shared: &Shared, tx: &Transaction) -> Option<rsipstack::sip::Uri> {
    let tcp = tx
        .connection
        .as_ref()
        .is_some_and(|c| c.transport() == Transport::Tcp);
    let (addr, suffix) = if tcp {
        (shared.contact_tcp?, ";transport=tcp")
    } else {
        (shared.contact_udp.or(shared.contact_tcp)?, "")
    };
    let host = match addr.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    rsipstack::sip::Uri::try_from(format!("sip:ivrd@{host}:{}{suffix}", addr.port()).as_str()).ok()
}

/// Admission control: a slot among `max_calls`, or an overflow slot, or none.
pub enum Slot {
    Normal,
    Overflow,
}

pub struct Admission {
    shared: Arc<Shared>,
    pub slot: Slot,
}

impl Admission {
    pub fn try_admit(shared: &Arc<Shared>, has_overflow_node: bool) -> Option<Admission> {
        let limits = &shared.limits;
        let take = |counter: &AtomicUsize, max: usize| {
            counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
        };
        if take(&shared.calls, limits.max_calls) {
            return Some(Admission {
                shared: shared.clone(),
                slot: Slot::Normal,
            });
        }
        let answer_overflow =
            limits.overflow == crate::config::Overflow::Answer && has_overflow_node;
        if answer_overflow && take(&shared.overflow_calls, limits.max_overflow_calls) {
            return Some(Admission {
                shared: shared.clone(),
                slot: Slot::Overflow,
            });
        }
        None
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let counter = match self.slot {
            Slot::Normal => &self.shared.calls,
            Slot::Overflow => &self.shared.overflow_calls,
        };
        counter.fetch_sub(1, Ordering::AcqRel);
    }
}
