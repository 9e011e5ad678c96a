//! The SIP UDP socket handed to rsipstack, with the guard in front: malformed requests
//! are answered with 400 here (rsipstack would drop them silently) and never reach the stack.

use crate::metrics::SIP_MESSAGES_REJECTED_TOTAL;
use crate::sip::guard::{inspect, Verdict};
use std::net::SocketAddr;
use tracing::debug;

pub struct GuardedUdp {
    socket: tokio::net::UdpSocket,
    max_bytes: usize,
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
            max_bytes,
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
            // A datagram that filled the buffer may have been cut short: treat as too large.
            let limit = self.max_bytes.min(buf.len().saturating_sub(1));
            match inspect(&buf[..len], limit) {
                Verdict::Pass => return Ok((len, from)),
                Verdict::Reply { response, reason } => {
                    metrics::counter!(SIP_MESSAGES_REJECTED_TOTAL, "reason" => reason).increment(1);
                    debug!(%from, reason, "answered malformed SIP request");
                    let _ = self.socket.send_to(&response, from).await;
                }
                Verdict::Drop { reason } => {
                    metrics::counter!(SIP_MESSAGES_REJECTED_TOTAL, "reason" => reason).increment(1);
                    debug!(%from, reason, "dropped SIP datagram");
                }
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
