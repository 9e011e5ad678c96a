//! The SIP UDP socket handed to rsipstack, with the guard in front: malformed requests
//! are answered here (rsipstack would drop them silently), garbage and stray responses are
//! dropped and counted, and valid messages rsipstack would misread are repaired before it
//! parses them. See `crate::sip::guard`.

use super::sip_endpoint::ALLOWED;
use crate::metrics::SIP_MESSAGES_REJECTED_TOTAL;
use crate::sip::guard::{inspect, too_large, Policy, Verdict};
use std::net::SocketAddr;
use tracing::debug;

pub struct GuardedUdp {
    socket: tokio::net::UdpSocket,
    policy: Policy,
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
    pub fn bind(addr: SocketAddr, max_bytes: usize) -> std::io::Result<Self> {
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
            // A datagram that filled the buffer may have been cut short by the kernel.
            let verdict = if len >= buf.len() {
                too_large(&buf[..len])
            } else {
                inspect(&buf[..len], &self.policy)
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

pub(super) fn reject(from: SocketAddr, reason: &'static str) {
    metrics::counter!(SIP_MESSAGES_REJECTED_TOTAL, "reason" => reason).increment(1);
    debug!(%from, reason, "SIP message refused by the guard");
}
