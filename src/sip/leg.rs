//! The signalling of one call we answer, as one pure state machine: the INVITE's server
//! transaction, the dialog it opens ([`Dialog`]), the peer's requests inside it (each with
//! its server transaction, so retransmissions are answered from memory) and ours (each
//! with its client transaction, retransmitted until answered). Messages the router gives
//! this call go in as bytes with their source; what to send and what the call must know
//! come out, in order, from [`Leg::poll_output`]; time comes in as `now` and goes out as a
//! deadline ([`Leg::poll_timeout`]).
//!
//! Protocol only: whether to answer, what to offer, when a transfer may go and what a
//! re-INVITE gets are the call's and [`super::dialog::DialogRules`]'s decisions. Because
//! one owner sends everything in order, a BYE can no longer overtake the 200 it follows,
//! which is what `dialog::BYE_DELAY` waits for under rsipstack's task per transaction.

use super::guard::echo::{copied_fields, status_line};
use super::guard::message::Message;
use super::txn::{
    cseq, AckSeen, ClientNonInvite, InviteState, Key, Reliability, ResponseSeen, ServerInvite,
    ServerNonInvite, Timeout, Timers, MAGIC_COOKIE,
};
use super::uas::{finish, opens, Body, Dialog, Local};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Back to where a request came from (responses: symmetric, RFC 3581).
    Addr(SocketAddr),
    /// A request of ours: the URI of its next hop (the first route, or the peer's Contact),
    /// for the driver to resolve.
    Uri(String),
}

/// What the call must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The ACK of our answer (or of a re-INVITE's): `cseq` says which, `body` is a late
    /// answer when the INVITE had no offer.
    Acked { cseq: u32, body: Vec<u8> },
    /// The caller gave up before the answer: CANCEL answered 200, the INVITE 487.
    Cancelled,
    /// The peer hung up: its BYE was answered 200.
    HungUp,
    /// A request inside the dialog the call must answer ([`Leg::respond`]): a re-INVITE,
    /// UPDATE, INFO, NOTIFY, OPTIONS, REFER, MESSAGE...
    Request {
        id: RequestId,
        method: String,
        /// The whole request as received.
        bytes: Vec<u8>,
    },
    /// Our request got its final response (or 408 when none came in 64·T1).
    Answered {
        id: RequestId,
        method: String,
        code: u16,
    },
    /// The answer was never acknowledged (RFC 3261 §13.3.1.4): the call should end, with a
    /// BYE.
    NoAck,
}

/// A request of the peer's waiting for the call's response, or one of ours.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Key);

/// What comes out, in the order it must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send { bytes: Vec<u8>, to: Target },
    Event(Event),
}

/// A request the peer sent inside the dialog, with its transaction.
#[derive(Debug)]
struct Incoming {
    key: Key,
    /// Its CSeq number: the ACK of a 2xx to a re-INVITE is a new transaction, found by it.
    cseq: u32,
    from: SocketAddr,
    /// The request, to build the response from when the call answers.
    request: Vec<u8>,
    txn: Txn,
}

#[derive(Debug)]
enum Txn {
    Invite(ServerInvite),
    Other(ServerNonInvite),
}

/// A request of ours inside the dialog, with its transaction.
#[derive(Debug)]
struct Outgoing {
    key: Key,
    next_hop: String,
    txn: ClientNonInvite,
}

#[derive(Debug)]
pub struct Leg {
    timers: Timers,
    reliability: Reliability,
    /// The INVITE as received, its key, where it came from and its transaction.
    invite: Vec<u8>,
    invite_key: Key,
    invite_cseq: u32,
    invite_from: SocketAddr,
    invite_txn: ServerInvite,
    /// The fields every response to the INVITE copies, and those a 101-299 adds.
    invite_fields: (String, String),
    dialog: Dialog,
    incoming: Vec<Incoming>,
    outgoing: Vec<Outgoing>,
    out: VecDeque<Output>,
}

/// Why an INVITE cannot become a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unusable(pub &'static str);

impl Leg {
    /// The leg of a new INVITE (no To tag), answered with `local_tag` in every response.
    pub fn new(
        invite: Vec<u8>,
        from: SocketAddr,
        local_tag: &str,
        local: Local,
        first_cseq: u32,
        timers: Timers,
        reliability: Reliability,
    ) -> Result<Leg, Unusable> {
        let m = Message::read(&invite);
        if m.method() != Some("INVITE") {
            return Err(Unusable("not an INVITE"));
        }
        let key = Key::of_request(&m).ok_or(Unusable("no Via or CSeq"))?;
        let (invite_cseq, _) = cseq(&m).ok_or(Unusable("no CSeq"))?;
        let dialog = Dialog::new(&m, local_tag, local, first_cseq).map_err(Unusable)?;
        // Every call answers its INVITE at least once: the fields each response copies
        // are taken from this reading rather than a second one.
        let copied = copied_fields(&m, local_tag, Some(from));
        let invite_fields = (copied, dialog.opening_fields(&m));
        drop(m);
        Ok(Leg {
            timers,
            reliability,
            invite,
            invite_key: key,
            invite_cseq,
            invite_from: from,
            invite_txn: ServerInvite::new(timers, reliability),
            invite_fields,
            dialog,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            out: VecDeque::new(),
        })
    }

    pub fn dialog(&self) -> &Dialog {
        &self.dialog
    }

    /// The INVITE as received.
    pub fn invite(&self) -> &[u8] {
        &self.invite
    }

    /// The INVITE's transaction key (the router sends its retransmissions, ACK and CANCEL
    /// here).
    pub fn invite_key(&self) -> &Key {
        &self.invite_key
    }

    /// Whether the INVITE still waits for its final response.
    pub fn is_ringing(&self) -> bool {
        self.invite_txn.state() == InviteState::Proceeding
    }

    /// 180 Ringing (or another provisional response).
    pub fn provisional(&mut self, now: Instant, status: (u16, &str)) {
        self.answer_invite(now, status, &[], None);
    }

    /// The 200 OK with our SDP.
    pub fn accept(&mut self, now: Instant, headers: &[(&str, &str)], sdp: &[u8]) {
        let body = Body {
            content_type: "application/sdp",
            bytes: sdp,
        };
        self.answer_invite(now, (200, "OK"), headers, Some(body));
    }

    /// A final refusal of the INVITE (486, 487, 503...).
    pub fn refuse(&mut self, now: Instant, status: (u16, &str), headers: &[(&str, &str)]) {
        self.answer_invite(now, status, headers, None);
    }

    fn answer_invite(
        &mut self,
        now: Instant,
        status: (u16, &str),
        headers: &[(&str, &str)],
        body: Option<Body>,
    ) {
        // Every response to the INVITE copies the same fields: read and written once.
        let (copied, opening) = &self.invite_fields;
        let mut r = status_line(status.0, status.1);
        r.push_str(copied);
        if opens(status.0) {
            r.push_str(opening);
        }
        let bytes = finish(r, headers, body);
        if let Some(sent) = self.invite_txn.respond(now, status.0, bytes) {
            self.out.push_back(Output::Send {
                bytes: sent.to_vec(),
                to: Target::Addr(self.invite_from),
            });
        }
    }

    /// The call's response to a request it was given ([`Event::Request`]). A request
    /// already answered (or unknown) is left alone.
    pub fn respond(
        &mut self,
        now: Instant,
        id: &RequestId,
        status: (u16, &str),
        headers: &[(&str, &str)],
        body: Option<Body>,
    ) {
        let Some(i) = self.incoming.iter().position(|r| r.key == id.0) else {
            return;
        };
        let bytes = {
            let m = Message::read(&self.incoming[i].request);
            self.dialog
                .response(&m, self.incoming[i].from, status, headers, body)
        };
        let entry = &mut self.incoming[i];
        let sent = match &mut entry.txn {
            Txn::Invite(t) => t.respond(now, status.0, bytes),
            Txn::Other(t) => t.respond(now, status.0, bytes),
        };
        if let Some(sent) = sent {
            self.out.push_back(Output::Send {
                bytes: sent.to_vec(),
                to: Target::Addr(entry.from),
            });
        }
    }

    /// Sends a request of ours inside the dialog (BYE, REFER, INFO...). `branch` must be
    /// unique (random); the answer comes back as [`Event::Answered`] with the id returned.
    pub fn request(
        &mut self,
        now: Instant,
        method: &str,
        branch: &str,
        headers: &[(&str, &str)],
        body: Option<Body>,
    ) -> RequestId {
        let out = self.dialog.request(method, branch, headers, body);
        let key = Key {
            id: format!("{MAGIC_COOKIE}{branch}|{}", self.dialog.local().sent_by),
            method: method.to_string(),
        };
        let txn = ClientNonInvite::new(now, self.timers, self.reliability, out.bytes);
        self.out.push_back(Output::Send {
            bytes: txn.request().to_vec(),
            to: Target::Uri(out.next_hop.clone()),
        });
        self.outgoing.push(Outgoing {
            key: key.clone(),
            next_hop: out.next_hop,
            txn,
        });
        RequestId(key)
    }

    /// A message the router matched to this call (by the INVITE's key, the dialog or one
    /// of our requests' keys).
    pub fn on_message(&mut self, now: Instant, bytes: &[u8], from: SocketAddr) {
        let m = Message::read(bytes);
        if m.is_request() {
            self.on_request(now, &m, bytes, from);
        } else {
            self.on_response(now, &m);
        }
    }

    fn on_request(&mut self, now: Instant, m: &Message, bytes: &[u8], from: SocketAddr) {
        let (Some(method), Some(key)) = (m.method(), Key::of_request(m)) else {
            return;
        };
        if method == "ACK" {
            return self.on_ack(now, m, &key);
        }
        if key == self.invite_key {
            return self.resend_invite_response();
        }
        if let Some(i) = self.incoming.iter().position(|r| r.key == key) {
            // A retransmission: answered from memory.
            let entry = &mut self.incoming[i];
            let to = Target::Addr(from);
            match &mut entry.txn {
                Txn::Invite(t) => {
                    if let Some(r) = t.on_retransmission() {
                        self.out.push_back(Output::Send {
                            bytes: r.to_vec(),
                            to,
                        });
                    }
                }
                Txn::Other(t) => {
                    if let Some(r) = t.on_retransmission() {
                        self.out.push_back(Output::Send {
                            bytes: r.to_vec(),
                            to,
                        });
                    }
                }
            }
            return;
        }
        if method == "CANCEL" && key.cancelled_invite() == self.invite_key {
            return self.on_cancel(now, m, bytes, key, from);
        }
        let txn = if method == "INVITE" {
            Txn::Invite(ServerInvite::new(self.timers, self.reliability))
        } else {
            Txn::Other(ServerNonInvite::new(self.timers, self.reliability))
        };
        self.incoming.push(Incoming {
            key: key.clone(),
            cseq: cseq(m).map_or(0, |(n, _)| n),
            from,
            request: bytes.to_vec(),
            txn,
        });
        let id = RequestId(key);
        if let Err(refused) = self.dialog.check_request(m) {
            return self.respond(now, &id, (refused.code, refused.phrase), &[], None);
        }
        if method == "BYE" {
            // A BYE before the answer (allowed for the caller's early dialog only by
            // stacks that bend §15) still ends the INVITE properly.
            if self.is_ringing() {
                self.refuse(now, (487, "Request Terminated"), &[]);
            } else if self.invite_txn.state() == (InviteState::Accepted { acked: false }) {
                // The BYE crossed our 200: the dialog is over, so the 200 stops going out
                // (and no "no ACK" comes of it).
                self.invite_txn.terminate();
            }
            self.respond(now, &id, (200, "OK"), &[], None);
            self.out.push_back(Output::Event(Event::HungUp));
            return;
        }
        self.out.push_back(Output::Event(Event::Request {
            id,
            method: method.to_string(),
            bytes: bytes.to_vec(),
        }));
    }

    /// An ACK: of a refusal it shares the INVITE's key; of a 2xx it is a transaction of
    /// its own (§17.1.1.3), found by the CSeq number of the INVITE it acknowledges.
    fn on_ack(&mut self, now: Instant, m: &Message, key: &Key) {
        let number = cseq(m).map_or(0, |(n, _)| n);
        let txn = if *key == self.invite_key || number == self.invite_cseq {
            Some(&mut self.invite_txn)
        } else {
            self.incoming.iter_mut().find_map(|r| match &mut r.txn {
                Txn::Invite(t) if r.key == *key || r.cseq == number => Some(t),
                _ => None,
            })
        };
        if txn.is_some_and(|t| t.on_ack(now) == AckSeen::Confirms) {
            self.out.push_back(Output::Event(Event::Acked {
                cseq: number,
                body: m.body().to_vec(),
            }));
        }
    }

    fn resend_invite_response(&mut self) {
        if let Some(r) = self.invite_txn.on_retransmission() {
            self.out.push_back(Output::Send {
                bytes: r.to_vec(),
                to: Target::Addr(self.invite_from),
            });
        }
    }

    /// CANCEL (§9.2): 200 to the CANCEL itself; while the INVITE still rings, 487 to it
    /// and the call is told. A CANCEL after the final response changes nothing.
    fn on_cancel(&mut self, now: Instant, m: &Message, bytes: &[u8], key: Key, from: SocketAddr) {
        let mut txn = ServerNonInvite::new(self.timers, self.reliability);
        let ok = self.dialog.response(m, from, (200, "OK"), &[], None);
        if let Some(sent) = txn.respond(now, 200, ok) {
            self.out.push_back(Output::Send {
                bytes: sent.to_vec(),
                to: Target::Addr(from),
            });
        }
        self.incoming.push(Incoming {
            key,
            cseq: self.invite_cseq,
            from,
            request: bytes.to_vec(),
            txn: Txn::Other(txn),
        });
        if self.is_ringing() {
            self.refuse(now, (487, "Request Terminated"), &[]);
            self.out.push_back(Output::Event(Event::Cancelled));
        }
    }

    fn on_response(&mut self, now: Instant, m: &Message) {
        let Some(key) = Key::of_response(m) else {
            return;
        };
        let code = match m.start {
            Ok(super::guard::message::StartLine::Response { code, .. }) => code.parse().ok(),
            _ => None,
        };
        let (Some(code), Some(entry)) = (code, self.outgoing.iter_mut().find(|o| o.key == key))
        else {
            return;
        };
        if entry.txn.on_response(now, code) == ResponseSeen::Final {
            self.out.push_back(Output::Event(Event::Answered {
                id: RequestId(key.clone()),
                method: key.method.clone(),
                code,
            }));
        }
    }

    /// The next deadline of any transaction of this call.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let incoming = self.incoming.iter().filter_map(|r| match &r.txn {
            Txn::Invite(t) => t.poll_timeout(),
            Txn::Other(t) => t.poll_timeout(),
        });
        let outgoing = self.outgoing.iter().filter_map(|o| o.txn.poll_timeout());
        self.invite_txn
            .poll_timeout()
            .into_iter()
            .chain(incoming)
            .chain(outgoing)
            .min()
    }

    /// Runs every timer that is due: retransmissions, give-ups, transactions that are
    /// over (forgotten).
    pub fn on_timeout(&mut self, now: Instant) {
        let invite_to = Target::Addr(self.invite_from);
        let accepted = matches!(self.invite_txn.state(), InviteState::Accepted { .. });
        loop {
            match self.invite_txn.on_timeout(now) {
                Timeout::Resend(r) => self.out.push_back(Output::Send {
                    bytes: r.to_vec(),
                    to: invite_to.clone(),
                }),
                Timeout::GaveUp if accepted => self.out.push_back(Output::Event(Event::NoAck)),
                Timeout::Idle => break,
                Timeout::GaveUp | Timeout::Ended => {}
            }
        }
        let out = &mut self.out;
        self.incoming.retain_mut(|r| loop {
            let (timeout, accepted) = match &mut r.txn {
                Txn::Invite(t) => {
                    let accepted = matches!(t.state(), InviteState::Accepted { .. });
                    (t.on_timeout(now), accepted)
                }
                Txn::Other(t) => (t.on_timeout(now), false),
            };
            match timeout {
                Timeout::Resend(b) => out.push_back(Output::Send {
                    bytes: b.to_vec(),
                    to: Target::Addr(r.from),
                }),
                Timeout::Idle => break true,
                // A re-INVITE's 2xx never acknowledged ends the dialog like the first
                // one's (RFC 3261 §13.3.1.4).
                Timeout::GaveUp if accepted => {
                    out.push_back(Output::Event(Event::NoAck));
                    break false;
                }
                Timeout::GaveUp | Timeout::Ended => break false,
            }
        });
        self.outgoing.retain_mut(|o| loop {
            match o.txn.on_timeout(now) {
                Timeout::Resend(b) => out.push_back(Output::Send {
                    bytes: b.to_vec(),
                    to: Target::Uri(o.next_hop.clone()),
                }),
                Timeout::GaveUp => {
                    out.push_back(Output::Event(Event::Answered {
                        id: RequestId(o.key.clone()),
                        method: o.key.method.clone(),
                        code: 408,
                    }));
                    break false;
                }
                Timeout::Ended => break false,
                Timeout::Idle => break true,
            }
        });
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Whether nothing is left to send or to wait for: the INVITE answered (a 2xx
    /// acknowledged, a refusal's ACK in), every request of the peer's answered and every
    /// one of ours answered, nothing waiting to go out. What is left until
    /// [`is_idle`](Self::is_idle) (64·T1 over UDP) is absorbing retransmissions and
    /// answering them as before, which a finished call can do without its leg: a
    /// retransmitted BYE gets the same 200 built from itself, and the rest needs nothing.
    pub fn is_quiet(&self) -> bool {
        let settled = |s: InviteState| {
            matches!(
                s,
                InviteState::Accepted { acked: true }
                    | InviteState::Confirmed
                    | InviteState::Terminated
            )
        };
        settled(self.invite_txn.state())
            && self.incoming.iter().all(|r| match &r.txn {
                Txn::Invite(t) => settled(t.state()),
                Txn::Other(t) => t.is_answered(),
            })
            && self.outgoing.iter().all(|o| o.txn.is_answered())
            && self.out.is_empty()
    }

    /// Whether no transaction is left, the INVITE's included, and nothing waits to go
    /// out: once the call has ended too, the router may forget it.
    pub fn is_idle(&self) -> bool {
        self.invite_txn.state() == InviteState::Terminated
            && self.incoming.is_empty()
            && self.outgoing.is_empty()
            && self.out.is_empty()
    }
}

#[cfg(test)]
mod tests;
