//! SIP over TCP with the guard in front. rsipstack's own TCP listener hands the byte stream
//! straight to its codec, which closes the connection without a word on a message it
//! cannot parse or a bad Content-Length, and waits forever for a body that never comes.
//! So ivrd owns the listener: it cuts messages out of each stream itself
//! (`sip::guard::stream`), judges each like a datagram, answers or drops what is wrong, and
//! hands the rest to rsipstack as if rsipstack had read it.
//!
//! How the rest reaches rsipstack: each accepted socket becomes an rsipstack
//! `TcpConnection` whose read half we keep, so responses and in-dialog requests go out
//! through rsipstack as usual (the dialog reuses the connection, RFC 5626 flow affinity),
//! while incoming messages go straight into the endpoint ([`Stack::deliver`]), in the
//! connection's own task.

use super::udp_guard::{endpoint_policy, reject, shield_decision, Stack};
use crate::sip::guard::message::Message;
use crate::sip::guard::stream::{next_frame, Frame};
use crate::sip::guard::{forbidden, inspect_frame, Policy, Verdict};
use crate::sip::shield::{Decision, Shield};
use bytes::{Buf, BytesMut};
use rsipstack::sip::{SipMessage, Transport};
use rsipstack::transport::stream::StreamConnectionInner;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A connection with no traffic for this long is closed (rsipstack's default too).
const IDLE: Duration = Duration::from_secs(300);
/// When reading stops (the peer half-closed, or the stream broke), responses to requests
/// already handed to the stack may still be on their way: keep the write side open until
/// 64*T1 after the last one, the longest a server transaction lives.
const LINGER: Duration = Duration::from_secs(32);
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

pub struct GuardedTcp {
    listener: TcpListener,
    local: SocketAddr,
}

impl GuardedTcp {
    /// Binds the listening socket (SO_REUSEADDR, so a restart does not wait out TIME_WAIT).
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        let listener = TcpListener::from_std(s.into())?;
        let local = listener.local_addr()?;
        Ok(GuardedTcp { listener, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Starts accepting: messages that pass the guard go to the stack's endpoint.
    /// `external` is the address announced instead of the bound one (behind NAT). Runs
    /// until `cancel`.
    pub async fn attach(
        self,
        stack: Stack,
        external: Option<SocketAddr>,
        max_bytes: usize,
        shield: Shield,
        cancel: CancellationToken,
    ) -> rsipstack::Result<()> {
        let local = SipAddr {
            r#type: Some(Transport::Tcp),
            addr: external.unwrap_or(self.local).into(),
        };
        let ctx = Arc::new(Context {
            local,
            stack,
            policy: endpoint_policy(max_bytes),
            shield: Mutex::new(shield),
            cancel,
        });
        tokio::spawn(accept_loop(self.listener, ctx));
        Ok(())
    }
}

/// What every connection task shares.
struct Context {
    local: SipAddr,
    stack: Stack,
    policy: Policy,
    /// Allow-list, scanner and rate checks, as for UDP.
    shield: Mutex<Shield>,
    cancel: CancellationToken,
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ctx.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, remote, ctx.clone()));
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(error = %e, "SIP TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How a connection's read side ended.
enum End {
    /// Reading is over (the peer stopped sending, or the stream cannot be cut any more),
    /// but requests handed to the stack may still be answered.
    Linger,
    /// Idle, a read error, the stack or the daemon shutting down: close now.
    Close,
}

async fn serve(stream: TcpStream, remote: SocketAddr, ctx: Arc<Context>) {
    let token = ctx.cancel.child_token();
    let remote_sip = SipAddr {
        r#type: Some(Transport::Tcp),
        addr: remote.into(),
    };
    let (read_half, write_half) = tokio::io::split(stream);
    let inner = Arc::new(StreamConnectionInner::new(
        ctx.local.clone(),
        remote_sip.clone(),
        read_half,
        write_half,
    ));
    // rsipstack's connection type owns both halves; take the read half back so that only
    // we read, through the guard.
    let Some(reader) = inner.read_half.lock().await.take() else {
        return;
    };
    let conn = TcpConnection {
        inner,
        cancel_token: Some(token.clone()),
    };
    debug!(%remote, "SIP TCP connection");
    let mut last_request = None;
    let end = read_messages(reader, &conn, &remote_sip, &ctx, &token, &mut last_request).await;
    if let (End::Linger, Some(last)) = (end, last_request) {
        tokio::select! {
            _ = tokio::time::sleep_until(last + LINGER) => {}
            _ = token.cancelled() => {}
        }
    }
    // Cancelling tells dialogs this flow is gone (they stop reusing it).
    token.cancel();
    let _ = conn.inner.close().await;
    debug!(%remote, "SIP TCP connection closed");
}

/// Reads, cuts and judges until the connection is done. `last_request` is when a request
/// was last handed to the stack.
async fn read_messages(
    mut reader: tokio::io::ReadHalf<TcpStream>,
    conn: &TcpConnection,
    remote_sip: &SipAddr,
    ctx: &Context,
    token: &CancellationToken,
    last_request: &mut Option<Instant>,
) -> End {
    let remote = conn.inner.remote_addr.get_socketaddr().ok();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut eof = false;
    loop {
        loop {
            match next_frame(&buf, &ctx.policy, eof) {
                Frame::NeedMore => break,
                Frame::Ping { len } => {
                    buf.advance(len);
                    // RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong.
                    if conn.inner.send_raw(b"\r\n").await.is_err() {
                        return End::Close;
                    }
                }
                Frame::Skip { len } => buf.advance(len),
                Frame::Message { len } => {
                    let mut verdict = inspect_frame(&buf[..len], &ctx.policy);
                    if let (Verdict::Pass(_), Some(from)) = (&verdict, remote) {
                        let m = Message::read(&buf[..len]);
                        match shield_decision(&ctx.shield, &m, from) {
                            Decision::Allow => {}
                            Decision::Forbid(reason) => verdict = forbidden(&buf[..len], reason),
                            Decision::Drop(reason) => verdict = Verdict::Drop { reason },
                        }
                    }
                    buf.advance(len);
                    if let Verdict::Pass(passed) = &verdict {
                        if matches!(passed.message, SipMessage::Request(_)) {
                            *last_request = Some(Instant::now());
                        }
                    }
                    if !act(verdict, conn, remote_sip, ctx).await {
                        return End::Close;
                    }
                }
                Frame::Broken(verdict) => {
                    // The next message cannot be found: answer this one, read no more.
                    act(verdict, conn, remote_sip, ctx).await;
                    return End::Linger;
                }
            }
        }
        if eof {
            return End::Linger;
        }
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            read = tokio::time::timeout(IDLE, reader.read_buf(&mut buf)) => read,
            _ = token.cancelled() => return End::Close,
        };
        match read {
            Ok(Ok(0)) => eof = true,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(?remote, error = %e, "SIP TCP read");
                return End::Close;
            }
            Err(_) => {
                debug!(?remote, "SIP TCP connection idle");
                return End::Close;
            }
        }
    }
}

/// Carries out a verdict; false when the connection is no longer usable.
async fn act(verdict: Verdict, conn: &TcpConnection, remote_sip: &SipAddr, ctx: &Context) -> bool {
    let Ok(remote) = remote_sip.get_socketaddr() else {
        return false;
    };
    match verdict {
        Verdict::Pass(passed) => {
            let message =
                match SipConnection::update_msg_received(passed.message, remote, Transport::Tcp) {
                    Ok(m) => m,
                    Err(e) => {
                        debug!(%remote, error = %e, "cannot note the sender in Via");
                        reject(remote, "unparseable");
                        return true;
                    }
                };
            ctx.stack
                .deliver(message, SipConnection::Tcp(conn.clone()), remote_sip)
                .await;
            true
        }
        Verdict::KeepAlive => true,
        Verdict::Reply { response, reason } => {
            reject(remote, reason);
            conn.inner.send_raw(&response).await.is_ok()
        }
        Verdict::Drop { reason } => {
            reject(remote, reason);
            true
        }
    }
}
