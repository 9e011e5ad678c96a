//! RTP sockets: one UDP socket per call from the configured port range.

use crate::config::PortRange;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct RtpPorts {
    ip: IpAddr,
    range: PortRange,
    /// Rotating start point so freed ports are not reused at once (late packets of an
    /// old call would land in a new one).
    cursor: AtomicU32,
}

impl RtpPorts {
    pub fn new(ip: IpAddr, range: PortRange) -> Self {
        RtpPorts {
            ip,
            range,
            cursor: AtomicU32::new(rand::random::<u32>()),
        }
    }

    /// Binds an even port (RTP convention, RFC 3550 §11) from the range. The socket is
    /// non-blocking and deliberately not registered with tokio: the call reads it on its
    /// 20 ms frame clock instead of being woken for every packet.
    pub fn bind(&self) -> io::Result<std::net::UdpSocket> {
        let (lo, hi) = match self.range {
            PortRange::Ephemeral => return bind_std(SocketAddr::new(self.ip, 0)),
            PortRange::Range(lo, hi) => (u32::from(lo), u32::from(hi)),
        };
        let first_even = lo + (lo % 2);
        let slots = ((hi - first_even) / 2 + 1).max(1);
        let mut last_err = None;
        for _ in 0..slots.min(512) {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % slots;
            let port = (first_even + slot * 2) as u16;
            match bind_std(SocketAddr::new(self.ip, port)) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free RTP port")))
    }
}

fn bind_std(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    Ok(s)
}
