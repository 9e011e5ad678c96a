//! RTP sockets: one UDP socket per call from the configured port range, kept after the
//! call for a later one (`media::reuse` decides which).

use crate::config::PortRange;
use crate::media::reuse::Reuse;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a finished call's socket rests before it serves another: late packets of the
/// old call (a BYE crossing the last frames) stop within a round trip.
const QUIET: Duration = Duration::from_secs(1);

/// How long an idle socket is kept at all.
const KEEP: Duration = Duration::from_secs(30);

/// The most idle sockets kept, whatever `limits.max_calls` says (each is a descriptor).
const MAX_IDLE: usize = 4096;

/// The most stale datagrams read off a kept socket before reuse; past that someone is
/// still streaming to it, and it is closed rather than handed to a new call.
const MAX_STALE: usize = 64;

/// Kept sockets with their port (read once, when first bound).
type Idle = Arc<Mutex<Reuse<(std::net::UdpSocket, u16)>>>;

pub struct RtpPorts {
    ip: IpAddr,
    range: PortRange,
    /// Rotating start point so freed ports are not reused at once (late packets of an
    /// old call would land in a new one).
    cursor: AtomicU32,
    idle: Idle,
}

impl RtpPorts {
    /// Ports on `ip` from `range`; up to `max_idle` finished calls' sockets are kept.
    pub fn new(ip: IpAddr, range: PortRange, max_idle: usize) -> Self {
        RtpPorts {
            ip,
            range,
            cursor: AtomicU32::new(rand::random::<u32>()),
            idle: Arc::new(Mutex::new(Reuse::new(QUIET, KEEP, max_idle.min(MAX_IDLE)))),
        }
    }

    /// A socket for a new call: a finished call's that has rested (drained of what came
    /// since), else a fresh one, else (every port of the range taken, some by sockets
    /// resting here) a finished call's that has not rested yet. Either way non-blocking and
    /// deliberately not registered with tokio: the call reads it on its 20 ms frame clock
    /// instead of being woken for every packet.
    pub fn bind(&self) -> io::Result<RtpSocket> {
        let kept = lock(&self.idle).take(Instant::now());
        if let Some((socket, port)) = kept.filter(|(s, _)| drain(s)) {
            return Ok(self.lend(socket, port));
        }
        match self.bind_fresh() {
            Ok(socket) => {
                let port = socket.local_addr()?.port();
                Ok(self.lend(socket, port))
            }
            Err(e) => match lock(&self.idle).take_any(Instant::now()) {
                Some((socket, port)) => {
                    drain(&socket);
                    Ok(self.lend(socket, port))
                }
                None => Err(e),
            },
        }
    }

    /// Binds an even port (RTP convention, RFC 3550 §11) from the range.
    fn bind_fresh(&self) -> io::Result<std::net::UdpSocket> {
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

    fn lend(&self, socket: std::net::UdpSocket, port: u16) -> RtpSocket {
        RtpSocket {
            socket: Some(socket),
            port,
            home: Some(self.idle.clone()),
        }
    }

    /// How many finished calls' sockets are kept now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// A call's RTP socket; it goes back to [`RtpPorts`] when dropped, unless it was shared
/// ([`RtpSocket::share`]) or given away ([`RtpSocket::into_std`]).
pub struct RtpSocket {
    socket: Option<std::net::UdpSocket>,
    port: u16,
    home: Option<Idle>,
}

impl RtpSocket {
    /// The local port (read once when the socket was bound).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A second handle on the socket (for the media relay). The socket is then closed
    /// after the call instead of kept: the other handle may still read it.
    pub fn share(&mut self) -> io::Result<std::net::UdpSocket> {
        self.home = None;
        std::net::UdpSocket::try_clone(self)
    }

    /// The socket itself, for good (it is not kept after the call).
    pub fn into_std(mut self) -> std::net::UdpSocket {
        self.home = None;
        self.socket.take().expect("present until dropped")
    }
}

impl Deref for RtpSocket {
    type Target = std::net::UdpSocket;

    fn deref(&self) -> &std::net::UdpSocket {
        self.socket.as_ref().expect("present until dropped")
    }
}

impl Drop for RtpSocket {
    fn drop(&mut self) {
        if let (Some(home), Some(socket)) = (self.home.take(), self.socket.take()) {
            lock(&home).put(Instant::now(), (socket, self.port));
        }
    }
}

fn lock(idle: &Idle) -> std::sync::MutexGuard<'_, Reuse<(std::net::UdpSocket, u16)>> {
    idle.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads off what reached a kept socket since its call ended; false when it does not run
/// dry (someone is still streaming to it).
fn drain(socket: &std::net::UdpSocket) -> bool {
    let mut buf = [0u8; 2048];
    for _ in 0..MAX_STALE {
        match socket.recv_from(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            // An ICMP error reported on the socket (port unreachable): read, go on.
            Err(_) => {}
        }
    }
    false
}

fn bind_std(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> RtpPorts {
        RtpPorts::new("127.0.0.1".parse().unwrap(), PortRange::Ephemeral, 8)
    }

    #[test]
    fn a_finished_calls_socket_is_kept_and_one_shared_is_not() {
        let p = ports();
        let a = p.bind().unwrap();
        let mut b = p.bind().unwrap();
        assert_ne!(a.port(), b.port());
        assert_eq!(a.port(), a.local_addr().unwrap().port());
        drop(a);
        assert_eq!(p.idle(), 1);
        let _relay = b.share().unwrap();
        drop(b);
        assert_eq!(p.idle(), 1, "a shared socket is closed, not kept");
        let c = p.bind().unwrap();
        let _ = c.into_std();
        assert_eq!(p.idle(), 1, "a resting socket does not serve at once");
    }

    #[test]
    fn a_range_whose_every_port_rests_here_still_serves_a_call() {
        let base = (40_000..60_000)
            .step_by(2)
            .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free even port");
        let p = RtpPorts::new(
            "127.0.0.1".parse().unwrap(),
            PortRange::Range(base, base + 1),
            8,
        );
        let first = p.bind().unwrap();
        assert_eq!(first.port(), base);
        drop(first);
        let again = p.bind().expect("the one port, though it has not rested");
        assert_eq!(again.port(), base);
        assert!(p.bind().is_err(), "and no second call on a one-port range");
    }

    #[test]
    fn what_reached_a_kept_socket_is_drained_before_reuse() {
        let s = bind_std("127.0.0.1:0".parse().unwrap()).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = s.local_addr().unwrap();
        for _ in 0..3 {
            peer.send_to(b"late", to).unwrap();
        }
        // Loopback delivers before send_to returns: all three are queued.
        assert!(drain(&s));
        let mut buf = [0u8; 16];
        let e = s.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "nothing left");
        for _ in 0..MAX_STALE + 1 {
            peer.send_to(b"flood", to).unwrap();
        }
        assert!(!drain(&s), "still streaming: not reused");
    }
}
