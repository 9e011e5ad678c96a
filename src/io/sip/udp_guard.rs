//! The SIP UDP socket handed to rsipstack, with the guard in front: malformed requests
//! are answered here (rsipstack would drop them silently), garbage and stray responses are
//! dropped and counted, and valid messages rsipstack would misread are repaired before it
//! parses them. See `crate::sip::guard`.

use super::reply::ALLOWED;
use crate::metrics::SIP_MESSAGES_REJECTED_TOTAL;
use crate::sip::guard::{forbidden, inspect, too_large, Policy, Verdict};
use crate::sip::shield::{Decision, Request, Shield};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::SipMessage;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;
use tracing::debug;

pub struct GuardedUdp {
    socket: tokio::net::UdpSocket,
    policy: Policy,
    shield: Mutex<Shield>,
}

/// The guard's policy for this endpoint: the size limit, and the methods a 501 lists.
pub fn endpoint_policy(max_bytes: usize) -> Policy {
    Policy {
        max_bytes,
        allow: ALLOWED
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", "),
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
            socket: tokio::net::UdpSocket::from_std(s.into())?,
            policy: endpoint_policy(max_bytes),
            shield: Mutex::new(shield),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.socket.recv_from(buf).await?;
            // One table lookup before any parsing: a flooding source costs next to nothing.
            if !self.lock_shield().admit_datagram(Instant::now(), from.ip()) {
                metrics::counter!(crate::metrics::LIMITS_HIT_TOTAL, "limit" => "datagram_rate")
                    .increment(1);
                continue;
            }
            // A datagram that filled the buffer may have been cut short by the kernel.
            let verdict = if len >= buf.len() {
                too_large(&buf[..len])
            } else {
                inspect(&buf[..len], &self.policy)
            };
            // Allowed sources, no scanners, no floods: before the stack spends anything.
            let verdict = match verdict {
                Verdict::Pass(passed) => match self.shield_decision(&passed.message, from) {
                    Decision::Allow => Verdict::Pass(passed),
                    Decision::Forbid(reason) => forbidden(&buf[..len], reason),
                    Decision::Drop(reason) => Verdict::Drop { reason },
                },
                other => other,
            };
            match verdict {
                Verdict::KeepAlive => return Ok((len, from)),
                Verdict::Pass(passed) => match passed.repaired {
                    None => return Ok((len, from)),
                    Some(bytes) if bytes.len() <= buf.len() => {
                        debug!(%from, "repaired SIP message for the stack");
                        buf[..bytes.len()].copy_from_slice(&bytes);
                        return Ok((bytes.len(), from));
                    }
                    Some(_) => {
                        // The repair grew the message past the stack's buffer; rare enough
                        // (a near-8 KiB RFC 2543 request) to count and drop.
                        reject(from, "too_large");
                    }
                },
                Verdict::Reply { response, reason } => {
                    reject(from, reason);
                    let _ = self.socket.send_to(&response, from).await;
                }
                Verdict::Drop { reason } => reject(from, reason),
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

impl GuardedUdp {
    fn lock_shield(&self) -> std::sync::MutexGuard<'_, Shield> {
        self.shield.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shield_decision(&self, message: &SipMessage, from: SocketAddr) -> Decision {
        shield_decision(&self.shield, message, from)
    }
}

/// The shield's decision on a parsed message (requests only; responses pass). Daemon by
/// the UDP socket and the TCP framer.
pub(super) fn shield_decision(
    shield: &Mutex<Shield>,
    message: &SipMessage,
    from: SocketAddr,
) -> Decision {
    let SipMessage::Request(req) = message else {
        return Decision::Allow;
    };
    let out_of_dialog = req
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_none();
    let method = req.method.to_string();
    let user_agent = req.header_value("User-Agent");
    let facts = Request {
        method: &method,
        out_of_dialog,
        user_agent: user_agent.as_deref(),
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
