//! ivrd's own SIP layer on the guarded UDP socket: the I/O half of `sip::route` and
//! `sip::leg`. The guard hands every datagram that passed it here first; a new INVITE
//! becomes a call with its own [`Leg`], and everything the routing table knows (the
//! INVITE's retransmissions, CANCEL, the ACK, requests inside the dialog, the responses to
//! our BYE and REFER) goes to that call's inbox. The rest (OPTIONS, REGISTER, the dialogs
//! ivrd opens as the UAC for agents and calls back) still goes to rsipstack.
//!
//! Why: rsipstack's task per transaction was most of the CPU an answered call cost (see
//! ARCHITECTURE.md, "Moving the answer path off rsipstack"), and one owner sending
//! everything of a call in order removes the races that `dialog::BYE_DELAY` and the
//! re-INVITE-before-ACK grace worked around.

use crate::sip::guard::message::Message;
use crate::sip::leg::{Event, Leg, Output, Target};
use crate::sip::route::{Destination, RouteKeys, Routes};
use crate::sip::txn::{Reliability, Timers};
use crate::sip::uas::{hop, phrase, response, Local};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::debug;

/// One datagram for a call: the bytes and where they came from.
pub type Datagram = (Vec<u8>, SocketAddr);

/// The longest a finished call's leg lingers (64·T1 is 32 s).
const LINGER_MAX: std::time::Duration = std::time::Duration::from_secs(40);

/// How many datagrams wait for a busy call before more are dropped (UDP: the peer
/// retransmits).
const INBOX: usize = 32;

/// What [`OwnUdp::take`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Not the own layer's: rsipstack's.
    No,
    /// Given to its call.
    Routed,
    /// A new call, started in a task of its own.
    NewCall,
}

/// Where a routed message goes.
#[derive(Debug, Clone)]
enum Route {
    /// To the call's task (while the call runs, and while its leg lingers).
    Live(mpsc::Sender<Datagram>),
    /// A finished call whose leg had nothing left to send or wait for: what its
    /// transactions would still do (re-answer a BYE, absorb the rest) is done from the
    /// message alone ([`OwnUdp::answer_ended`]), so no leg, task or timer is kept per call
    /// for the 64·T1 that retransmissions may take. At thousands of calls a second, keeping
    /// them cost more memory than anything else (16% of the CPU went to zeroing fresh pages).
    Ended,
}

/// The calls the own layer answers on one UDP socket, and how to reach them.
pub struct OwnUdp {
    socket: Arc<tokio::net::UdpSocket>,
    routes: Mutex<Routes<Route>>,
    /// Finished calls' routes, oldest first, each with when it is forgotten.
    graves: Mutex<VecDeque<(Instant, RouteKeys)>>,
    local: Local,
    /// Runs a new call; set once the daemon exists (it is built after the socket is
    /// bound): until then every message goes to rsipstack.
    start: OnceLock<StartCall>,
}

/// Runs a new call's task (the daemon's `call::run`), given its leg and when its INVITE came.
pub type StartCall = Box<dyn Fn(OwnLeg, Instant) + Send + Sync>;

impl OwnUdp {
    /// The layer on `socket`, announcing `announced` in Via and Contact.
    pub fn new(socket: Arc<tokio::net::UdpSocket>, announced: SocketAddr) -> OwnUdp {
        let host = match announced.ip() {
            IpAddr::V6(v6) => format!("[{v6}]:{}", announced.port()),
            IpAddr::V4(v4) => format!("{v4}:{}", announced.port()),
        };
        OwnUdp {
            socket,
            routes: Mutex::new(Routes::default()),
            graves: Mutex::new(VecDeque::new()),
            local: Local {
                transport: "UDP",
                contact: format!("sip:ivrd@{host}"),
                sent_by: host,
            },
            start: OnceLock::new(),
        }
    }

    /// Starts answering calls, each started by `start`.
    pub fn serve(&self, start: StartCall) {
        let _ = self.start.set(start);
    }

    /// Takes a datagram the guard passed if it belongs to the own layer (given to its
    /// call, or a new call started); rsipstack should have it when not. `m` is the
    /// guard's reading of `datagram`.
    pub fn take(
        self: &Arc<Self>,
        datagram: &[u8],
        m: &Message,
        from: SocketAddr,
        received: Instant,
    ) -> Taken {
        let Some(start) = self.start.get() else {
            return Taken::No;
        };
        self.forget_expired(received);
        let destination = self.lock_routes().route(m);
        match destination {
            Destination::Leg(Route::Live(inbox)) => {
                // Full (the call is stuck) or gone (it just ended): dropped like a lost
                // datagram; the peer's retransmission comes back.
                if inbox.try_send((datagram.to_vec(), from)).is_err() {
                    debug!(%from, "call inbox full or closed: datagram dropped");
                }
                Taken::Routed
            }
            Destination::Leg(Route::Ended) => {
                self.answer_ended(m, from);
                Taken::Routed
            }
            Destination::NewCall if self.start_call(start, datagram, from, received) => {
                Taken::NewCall
            }
            Destination::NewCall | Destination::Elsewhere => Taken::No,
        }
    }

    /// A new INVITE: its leg is routed before the next datagram is read (so its
    /// retransmissions find it), then its call runs in a task of its own.
    fn start_call(
        self: &Arc<Self>,
        start: &StartCall,
        datagram: &[u8],
        from: SocketAddr,
        received: Instant,
    ) -> bool {
        let tag = format!("{:016x}", rand::random::<u64>());
        let first_cseq = rand::random::<u16>() as u32 + 1;
        let leg = match Leg::new(
            datagram.to_vec(),
            from,
            &tag,
            self.local.clone(),
            first_cseq,
            Timers::default(),
            Reliability::Unreliable,
        ) {
            Ok(leg) => leg,
            Err(why) => {
                // The guard passed it, so this is rare: rsipstack answers it as before.
                debug!(%from, why = why.0, "INVITE left to rsipstack");
                return false;
            }
        };
        let (inbox, rx) = mpsc::channel(INBOX);
        self.lock_routes().add(&leg, Route::Live(inbox));
        let call = OwnLeg {
            leg,
            inbox: Some(rx),
            udp: self.clone(),
            last_ack: None,
        };
        start(call, received);
        true
    }

    /// Sends one message of a leg. Never waits: a full socket buffer loses it like the
    /// network would, and the transaction's retransmission covers it.
    fn send(&self, bytes: Vec<u8>, to: Target) {
        let addr = match to {
            Target::Addr(a) => a,
            Target::Uri(uri) => {
                let Some(h) = hop(&uri) else {
                    debug!(uri, "no next hop in a URI we send to");
                    return;
                };
                match h.host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, h.port),
                    Err(_) => {
                        // A name (a Contact or Record-Route with a host name): resolved
                        // off the call's task.
                        let (socket, host, port) =
                            (self.socket.clone(), h.host.to_string(), h.port);
                        tokio::spawn(async move {
                            match tokio::net::lookup_host((host.as_str(), port)).await {
                                Ok(mut addrs) => {
                                    if let Some(a) = addrs.next() {
                                        let _ = socket.send_to(&bytes, a).await;
                                    }
                                }
                                Err(e) => debug!(host, error = %e, "cannot resolve next hop"),
                            }
                        });
                        return;
                    }
                }
            }
        };
        if let Err(e) = self.socket.try_send_to(&bytes, addr) {
            debug!(%addr, error = %e, "SIP send");
        }
    }

    /// A message for a finished call (see [`Route::Ended`]): a BYE is a retransmission
    /// of one already answered 200, so it gets 200 again, built from itself; another
    /// request inside the dialog gets 481 (the call is gone). ACKs, responses and what
    /// belongs to the INVITE's transaction (a late copy of the INVITE, a CANCEL: no To
    /// tag) are absorbed, as that transaction would have.
    fn answer_ended(&self, m: &Message, from: SocketAddr) {
        let in_dialog = m
            .first("To", Some("t"))
            .is_some_and(crate::sip::guard::has_tag);
        let code = match m.method() {
            None | Some("ACK") => return,
            Some(_) if !in_dialog => return,
            Some("BYE") => 200,
            Some(_) => 481,
        };
        // Inside the dialog, To already carries our tag.
        let bytes = response(m, Some(from), "", (code, phrase(code)), None, &[], None);
        self.send(bytes, Target::Addr(from));
    }

    /// A finished call's leg has nothing left to do: its routes now lead to
    /// [`Route::Ended`] until 64·T1 has passed, then they are forgotten.
    fn bury(&self, leg: &Leg) {
        let mut routes = self.lock_routes();
        let keys = routes.keys_of(leg);
        routes.set(&keys, Route::Ended);
        drop(routes);
        let until = Instant::now() + Timers::default().give_up();
        self.lock_graves().push_back((until, keys));
    }

    /// Forgets the finished calls whose time is up (checked on every datagram: the
    /// oldest grave first, so usually one comparison).
    fn forget_expired(&self, now: Instant) {
        let mut graves = self.lock_graves();
        if graves.front().is_none_or(|(until, _)| *until > now) {
            return;
        }
        let mut routes = self.lock_routes();
        while let Some((until, _)) = graves.front() {
            if *until > now {
                break;
            }
            if let Some((_, keys)) = graves.pop_front() {
                routes.forget(&keys);
            }
        }
    }

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, Routes<Route>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_graves(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, RouteKeys)>> {
        self.graves.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One call's signalling on the own layer: its leg, its inbox and the socket.
pub struct OwnLeg {
    pub leg: Leg,
    /// Taken by the call's loop while it runs (see `take_inbox`).
    inbox: Option<mpsc::Receiver<Datagram>>,
    udp: Arc<OwnUdp>,
    /// The CSeq of the latest ACK (the initial INVITE's or a re-INVITE's).
    pub last_ack: Option<u32>,
}

impl OwnLeg {
    /// Sends what the leg has to send, up to its next event for the call.
    pub fn next_event(&mut self) -> Option<Event> {
        while let Some(out) = self.leg.poll_output() {
            match out {
                Output::Send { bytes, to } => self.udp.send(bytes, to),
                Output::Event(e) => {
                    if let Event::Acked { cseq, .. } = &e {
                        self.last_ack = Some(*cseq);
                    }
                    return Some(e);
                }
            }
        }
        None
    }

    /// The inbox, for a loop that waits on it beside other things.
    pub fn take_inbox(&mut self) -> Option<mpsc::Receiver<Datagram>> {
        self.inbox.take()
    }

    pub fn put_inbox(&mut self, inbox: Option<mpsc::Receiver<Datagram>>) {
        if inbox.is_some() {
            self.inbox = inbox;
        }
    }

    /// A fresh branch for a request of ours.
    pub fn branch() -> String {
        format!("{:016x}", rand::random::<u64>())
    }

    /// Sends a BYE (a call that ended after the answer).
    pub fn bye(&mut self, now: Instant) {
        self.leg.request(now, "BYE", &Self::branch(), &[], None);
    }

    /// After the call: the leg keeps answering until nothing is left to send or wait
    /// for ([`Leg::is_quiet`]: the 200 retransmitted until the ACK, our BYE until
    /// answered), then the call is buried ([`Route::Ended`]). Requests that come meanwhile
    /// get 481: the call is gone. `refusal` answers an INVITE still unanswered (a call that
    /// ended while ringing).
    pub fn linger(mut self, refusal: (u16, &'static str), headers: Vec<(&'static str, String)>) {
        if self.leg.is_ringing() {
            let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            self.leg.refuse(Instant::now(), refusal, &h);
        }
        // What the call left to send (its BYE, the refusal) goes out now, not on the
        // lingering task's first turn: a daemon shutting down may not give it one.
        self.settle();
        if self.leg.is_quiet() {
            // The usual end: ACK in, BYE answered. No task for the rest.
            return self.udp.bury(&self.leg);
        }
        tokio::spawn(async move {
            let mut inbox = self.inbox.take();
            let mut alarm = crate::io::call::alarm::Alarm::default();
            // Every transaction settles by its own timers well before this (64·T1); the
            // bound only keeps a leg that somehow cannot from lingering forever.
            let give_up = tokio::time::sleep(LINGER_MAX);
            tokio::pin!(give_up);
            while !self.leg.is_quiet() {
                alarm.set(self.leg.poll_timeout());
                tokio::select! {
                    got = recv(&mut inbox) => match got {
                        Some((bytes, from)) => self.leg.on_message(Instant::now(), &bytes, from),
                        None => inbox = None,
                    },
                    _ = alarm.ring() => self.leg.on_timeout(Instant::now()),
                    _ = &mut give_up => {
                        debug!("a finished call's leg still busy: buried");
                        break;
                    }
                }
                self.settle();
            }
            self.udp.bury(&self.leg);
        });
    }

    /// Sends what the leg has to send once its call is over; what the peer asks now gets
    /// 481 (the call is gone), and an answer never acknowledged a BYE.
    fn settle(&mut self) {
        while let Some(event) = self.next_event() {
            match event {
                Event::Request { id, .. } => self.leg.respond(
                    Instant::now(),
                    &id,
                    (481, "Call/Transaction Does Not Exist"),
                    &[],
                    None,
                ),
                Event::NoAck => self.bye(Instant::now()),
                _ => {}
            }
        }
    }
}

/// The next datagram of an inbox; pending forever when there is none.
pub async fn recv(inbox: &mut Option<mpsc::Receiver<Datagram>>) -> Option<Datagram> {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
