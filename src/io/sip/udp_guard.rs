//! SIP over UDP with the guard in front. rsipstack drops a datagram it cannot parse
//! without a word, so ivrd reads the socket itself: every datagram is judged by the guard
//! (`crate::sip::guard`) and the shield first; malformed requests are answered here,
//! garbage and stray responses are dropped and counted, and valid messages rsipstack would
//! misread are repaired.
//!
//! What passes is offered to ivrd's own SIP layer first (`own.rs`: the calls it answers);
//! what it does not take is handed to rsipstack already parsed, straight into its endpoint
//! ([`Stack::deliver`], as TCP does): the guard had to parse it with rsipstack's parser
//! anyway, to be sure the stack can read it, so the stack does not parse it a second time.
//! rsipstack still owns the socket for sending: its UDP listener gets a socket whose receive
//! side never yields, so responses, retransmissions and new requests go out through it as
//! usual.

use super::own::{OwnUdp, Taken};
use super::reply::allow_value;
use crate::metrics::SIP_MESSAGES_REJECTED_TOTAL;
use crate::sip::guard::message::Message;
use crate::sip::guard::{
    for_stack, forbidden, read_datagram, Policy, Reading, Transport as GuardTransport, Verdict,
};
use crate::sip::shield::{Decision, Request, Shield};
use rsipstack::sip::{SipMessage, Transport};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub struct GuardedUdp {
    socket: Arc<tokio::net::UdpSocket>,
    policy: Policy,
    shield: Mutex<Shield>,
    /// ivrd's own SIP layer, offered every message that passed before rsipstack is.
    own: Option<Arc<OwnUdp>>,
}

/// The guard's policy for this endpoint: the size limit, and the methods a 501 lists.
pub fn endpoint_policy(max_bytes: usize) -> Policy {
    Policy {
        max_bytes,
        allow: allow_value(),
    }
}

/// rsipstack's endpoint, as the guarded transports hand it what they read and judged.
#[derive(Clone)]
pub struct Stack(pub EndpointInnerRef);

impl Stack {
    /// Gives one message to the endpoint the way its own transport loop would, but called
    /// in the reading task: the channel to that loop cost two task hand-overs per message
    /// (an in-memory connection's task, then the loop's). Messages of one UDP socket or one
    /// TCP connection still reach the stack one at a time, in the order they came; a
    /// connection whose sends block holds up only its own reading, not the whole stack.
    pub async fn deliver(&self, message: SipMessage, connection: SipConnection, from: &SipAddr) {
        if let Err(e) = self.0.on_received_message(message, connection, from).await {
            warn!(addr = %from, error = %e, "SIP stack could not take a message");
        }
    }

    pub(super) fn transport(&self) -> &rsipstack::transport::TransportLayer {
        &self.0.transport_layer
    }
}

impl GuardedUdp {
    /// Binds with a large receive buffer so bursts of INVITEs are not lost before we read them.
    pub fn bind(addr: SocketAddr, max_bytes: usize, shield: Shield) -> std::io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = s.set_recv_buffer_size(8 * 1024 * 1024);
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        Ok(GuardedUdp {
            socket: Arc::new(tokio::net::UdpSocket::from_std(s.into())?),
            policy: endpoint_policy(max_bytes),
            shield: Mutex::new(shield),
            own: None,
        })
    }

    /// Puts ivrd's own SIP layer on this socket, announcing `announced`; it answers calls
    /// once given the daemon ([`OwnUdp::serve`]).
    pub fn with_own(&mut self, announced: SocketAddr) -> Arc<OwnUdp> {
        let own = Arc::new(OwnUdp::new(self.socket.clone(), announced));
        self.own = Some(own.clone());
        own
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Registers the socket with the stack's transport layer for sending and starts reading
    /// it: messages that pass the guard go to the endpoint. `external` is the address
    /// announced instead of the bound one (behind NAT). Reads until `cancel`.
    pub async fn attach(
        self,
        stack: Stack,
        external: Option<SocketAddr>,
        cancel: CancellationToken,
    ) -> rsipstack::Result<()> {
        let send_only = SendOnly(self.socket.clone());
        let conn =
            UdpConnection::from_socket(Arc::new(send_only), external, Some(cancel.child_token()))
                .await?;
        stack.transport().add_transport(conn.clone().into());
        tokio::spawn(async move {
            tokio::select! {
                _ = self.receive(conn, stack) => {}
                _ = cancel.cancelled() => {}
            }
        });
        Ok(())
    }

    /// Reads and judges datagrams, handing what passes to the stack, until cancelled.
    async fn receive(self, conn: UdpConnection, stack: Stack) {
        // One byte more than the limit: a datagram that fills the buffer was too large
        // (and may have been cut short by the kernel).
        let mut buf = vec![0u8; (self.policy.max_bytes + 1).min(65_536)];
        loop {
            let (len, from) = match self.socket.recv_from(&mut buf).await {
                Ok(got) => got,
                Err(e) => {
                    // ICMP errors surface here on some kernels; the socket stays usable.
                    debug!(error = %e, "SIP UDP receive");
                    continue;
                }
            };
            let Some(message) = self.judge(&buf[..len], len >= buf.len(), from).await else {
                continue;
            };
            let message = match SipConnection::update_msg_received(message, from, Transport::Udp) {
                Ok(m) => m,
                Err(e) => {
                    debug!(%from, error = %e, "cannot note the sender in Via");
                    reject(from, "unparseable");
                    continue;
                }
            };
            let source = SipAddr {
                r#type: Some(Transport::Udp),
                addr: from.into(),
            };
            stack
                .deliver(message, SipConnection::Udp(conn.clone()), &source)
                .await;
        }
    }

    /// The message to hand to the stack, or None when the guard answered or dropped it or
    /// the own layer took it.
    async fn judge(&self, datagram: &[u8], filled: bool, from: SocketAddr) -> Option<SipMessage> {
        // One table lookup before any parsing: a flooding source costs next to nothing.
        if !self.lock_shield().admit_datagram(Instant::now(), from.ip()) {
            metrics::counter!(crate::metrics::LIMITS_HIT_TOTAL, "limit" => "datagram_rate")
                .increment(1);
            return None;
        }
        let verdict = match read_datagram(datagram, filled, &self.policy) {
            Reading::Judged(verdict) => verdict,
            // Allowed sources, no scanners, no floods: before any layer spends anything.
            Reading::Accepted(m) => match shield_decision(&self.shield, &m, from) {
                Decision::Forbid(reason) => forbidden(datagram, reason),
                Decision::Drop(reason) => Verdict::Drop { reason },
                Decision::Allow => {
                    // The own layer reads the guard's reading; only what it leaves is
                    // parsed again, by rsipstack's parser.
                    match self
                        .own
                        .as_ref()
                        .map(|own| own.take(datagram, &m, from, Instant::now()))
                    {
                        Some(Taken::Routed) => return None,
                        Some(Taken::NewCall) => {
                            // The new call's task waits in this worker's LIFO slot, which
                            // no other worker steals from, while this loop keeps reading: a
                            // burst of datagrams would hold up its 180 by milliseconds.
                            // Stepping aside lets it run now.
                            tokio::task::yield_now().await;
                            return None;
                        }
                        Some(Taken::No) | None => for_stack(&m, datagram, GuardTransport::Datagram),
                    }
                }
            },
        };
        match verdict {
            Verdict::Pass(passed) => {
                if passed.repaired.is_some() {
                    debug!(%from, "repaired SIP message for the stack");
                }
                return Some(passed.message);
            }
            Verdict::KeepAlive => {
                // A CRLFCRLF ping gets a CRLF pong (RFC 5626 §4.4.1); other blank
                // datagrams are ignored.
                if datagram == b"\r\n\r\n" {
                    let _ = self.socket.send_to(b"\r\n", from).await;
                }
            }
            Verdict::Reply { response, reason } => {
                reject(from, reason);
                let _ = self.socket.send_to(&response, from).await;
            }
            Verdict::Drop { reason } => reject(from, reason),
        }
        None
    }
}

/// The socket as rsipstack's UDP listener sees it: it sends through it, and its receive
/// side never yields, because ivrd reads the socket itself (see the module comment).
struct SendOnly(Arc<tokio::net::UdpSocket>);

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for SendOnly {
    async fn recv_from(&self, _buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        std::future::pending().await
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.0.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.0.local_addr()?)
    }
}

impl GuardedUdp {
    fn lock_shield(&self) -> std::sync::MutexGuard<'_, Shield> {
        self.shield.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The shield's decision on a message the guard's rules accepted (requests only;
/// responses pass). Used by the UDP socket and the TCP framer.
pub(super) fn shield_decision(shield: &Mutex<Shield>, m: &Message, from: SocketAddr) -> Decision {
    let Some(method) = m.method() else {
        return Decision::Allow;
    };
    let out_of_dialog = !m
        .first("To", Some("t"))
        .is_some_and(crate::sip::guard::has_tag);
    let facts = Request {
        method,
        out_of_dialog,
        user_agent: m.first("User-Agent", None),
    };
    let decision =
        shield
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(Instant::now(), from.ip(), facts);
    if let Decision::Drop("rate_limited") = decision {
        metrics::counter!(crate::metrics::LIMITS_HIT_TOTAL, "limit" => "invite_rate").increment(1);
    }
    decision
}

pub(super) fn reject(from: SocketAddr, reason: &'static str) {
    metrics::counter!(SIP_MESSAGES_REJECTED_TOTAL, "reason" => reason).increment(1);
    debug!(%from, reason, "SIP message refused by the guard");
}
