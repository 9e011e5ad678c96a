//! A bridged call's media: one task relays RTP between the caller's socket and the agent
//! leg's as packets arrive (no frame clock: nothing waits), each direction rewritten by the
//! pure [`RelayPath`]. Both ends are latched to where their packets come from (symmetric
//! RTP, RFC 4961).

use crate::call::CallInput;
use crate::media::dtmf::Rfc4733Receiver;
use crate::media::relay::{RelayPath, Relayed};
use crate::media::rtp::parse;
use crate::metrics as m;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

/// One side of the bridge: its socket and where its media goes.
pub struct End {
    pub socket: std::net::UdpSocket,
    pub remote: Option<SocketAddr>,
    /// `remote` is where its RTP already came from (no need to learn it again).
    pub latched: bool,
}

/// Where the caller's key presses go while bridged (they reach the agent as well): the
/// call, which watches for the talk escalation keys.
pub struct CallerKeys {
    pub telephone_event: Option<u8>,
    pub call: mpsc::Sender<CallInput<'static>>,
}

/// A running relay; dropping it stops it.
pub struct Relay {
    stop: CancellationToken,
    /// The caller-direction stream's next sequence number (the call's own stream takes
    /// over from there when the bridge ends).
    caller_next_seq: Arc<AtomicU32>,
    pub agent: String,
}

impl Relay {
    /// Starts relaying. `caller` is a clone of the call's socket (the call reads nothing
    /// while bridged); `to_agent` and `to_caller` rewrite each direction.
    pub fn start(
        agent: String,
        caller: End,
        agent_end: End,
        to_agent: RelayPath,
        to_caller: RelayPath,
        keys: CallerKeys,
    ) -> std::io::Result<Relay> {
        caller.socket.set_nonblocking(true)?;
        agent_end.socket.set_nonblocking(true)?;
        let caller_sock = UdpSocket::from_std(caller.socket)?;
        let agent_sock = UdpSocket::from_std(agent_end.socket)?;
        let stop = CancellationToken::new();
        let caller_next_seq = Arc::new(AtomicU32::new(u32::from(to_caller.position().first_seq)));
        let task = Task {
            caller: caller_sock,
            caller_dest: caller.remote,
            caller_latched: caller.latched,
            agent: agent_sock,
            agent_dest: agent_end.remote,
            agent_latched: false,
            to_agent,
            to_caller,
            caller_next_seq: caller_next_seq.clone(),
            keys,
            dtmf: Rfc4733Receiver::new(),
            packets_in: metrics::counter!(m::RTP_PACKETS_TOTAL, "direction" => "in", "transport" => "bridge"),
            packets_out: metrics::counter!(m::RTP_PACKETS_TOTAL, "direction" => "out", "transport" => "bridge"),
        };
        tokio::spawn(task.run(stop.clone()).in_current_span());
        metrics::gauge!(m::BRIDGED_CALLS).increment(1.0);
        Ok(Relay {
            stop,
            caller_next_seq,
            agent,
        })
    }

    /// Where the caller's stream stands: the next sequence number for the call's own frames.
    pub fn caller_next_seq(&self) -> u16 {
        self.caller_next_seq.load(Ordering::Relaxed) as u16
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
        metrics::gauge!(m::BRIDGED_CALLS).decrement(1.0);
    }
}

struct Task {
    caller: UdpSocket,
    caller_dest: Option<SocketAddr>,
    /// The caller's address is the source of its first valid RTP here (set once: a
    /// stranger's packet afterwards cannot take the stream over).
    caller_latched: bool,
    agent: UdpSocket,
    agent_dest: Option<SocketAddr>,
    agent_latched: bool,
    to_agent: RelayPath,
    to_caller: RelayPath,
    caller_next_seq: Arc<AtomicU32>,
    keys: CallerKeys,
    dtmf: Rfc4733Receiver,
    packets_in: metrics::Counter,
    packets_out: metrics::Counter,
}

impl Task {
    async fn run(mut self, stop: CancellationToken) {
        let (mut from_caller, mut from_agent) = (vec![0u8; 2048], vec![0u8; 2048]);
        let mut out = Vec::with_capacity(2048);
        loop {
            tokio::select! {
                r = self.caller.recv_from(&mut from_caller) => {
                    let Ok((n, from)) = r else { continue };
                    let Ok(p) = parse(&from_caller[..n]) else { continue };
                    // Symmetric RTP: the first valid packet decides where the caller is.
                    if !self.caller_latched {
                        self.caller_dest = Some(from);
                        self.caller_latched = true;
                    }
                    self.packets_in.increment(1);
                    if self.keys.telephone_event == Some(p.payload_type) {
                        if let Some(key) = self.dtmf.on_packet(p.timestamp, p.payload) {
                            let _ = self.keys.call.try_send(CallInput::Dtmf(key));
                        }
                    }
                    if self.to_agent.forward(Instant::now(), &p, &mut out) != Relayed::Dropped {
                        if let Some(dest) = self.agent_dest {
                            if self.agent.try_send_to(&out, dest).is_ok() {
                                self.packets_out.increment(1);
                            }
                        }
                    }
                }
                r = self.agent.recv_from(&mut from_agent) => {
                    let Ok((n, from)) = r else { continue };
                    let Ok(p) = parse(&from_agent[..n]) else { continue };
                    if !self.agent_latched {
                        self.agent_dest = Some(from);
                        self.agent_latched = true;
                    }
                    self.packets_in.increment(1);
                    if self.to_caller.forward(Instant::now(), &p, &mut out) != Relayed::Dropped {
                        if let Some(dest) = self.caller_dest {
                            if self.caller.try_send_to(&out, dest).is_ok() {
                                self.packets_out.increment(1);
                            }
                        }
                        let next = self.to_caller.position().first_seq;
                        self.caller_next_seq.store(u32::from(next), Ordering::Relaxed);
                    }
                }
                _ = stop.cancelled() => {
                    debug!("relay stopped");
                    return;
                }
            }
        }
    }
}
