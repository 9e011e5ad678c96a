//! SIP transactions (RFC 3261 §17, with RFC 6026's "Accepted" state) as pure state
//! machines: which bytes go out again and when, which requests and responses are
//! retransmissions to absorb, and when a transaction is over. They never read the clock or
//! touch a socket: every call takes `now`, [`poll_timeout`](ServerInvite::poll_timeout)
//! says when to call `on_timeout` next, and the driver sends what they return.
//!
//! They hold the bytes they last sent, so a retransmission costs no rebuilding.
//!
//! One simplification, on purpose: RFC 3261 §13.3.1.4 gives the retransmission of a 2xx to
//! the UAS core, not the transaction. Here the server INVITE transaction does it in its
//! Accepted state (same timers: T1 doubling up to T2, for 64·T1, over every transport),
//! so the dialog code has one thing to drive instead of two.

use super::guard::message::Message;
use super::guard::{address, has_tag};
use std::time::{Duration, Instant};

/// RFC 3261's timer values (§17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate: the first retransmission interval.
    pub t1: Duration,
    /// The longest retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// How long a message stays in the network: how long retransmissions are absorbed.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64·T1: how long a transaction waits for its answer (timers B, F, H, L).
    pub fn give_up(&self) -> Duration {
        self.t1 * 64
    }
}

/// Whether the transport carries messages reliably (TCP, TLS) or not (UDP). Only
/// unreliable ones get retransmissions of requests and non-2xx responses, and linger to
/// absorb the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    Unreliable,
    Reliable,
}

/// What identifies a transaction (RFC 3261 §17.2.3): the top Via's branch and sent-by,
/// and the method, with ACK counted as INVITE (it belongs to the INVITE's transaction).
/// Requests from RFC 2543 peers (no `z9hG4bK` branch) are keyed by Call-ID, From tag,
/// CSeq number, the whole top Via and the method instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub id: String,
    pub method: String,
}

/// The RFC 3261 branch prefix ("magic cookie", §8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Key {
    /// The key of a received request (a server transaction). `None` when the request has
    /// no Via or CSeq to key it by (the guard refuses those first).
    pub fn of_request(m: &Message) -> Option<Key> {
        let method = m.method()?;
        let method = if method == "ACK" { "INVITE" } else { method };
        let via = top_via(m)?;
        let id = match via_param(via, "branch").filter(|b| b.starts_with(MAGIC_COOKIE)) {
            Some(branch) => format!("{branch}|{}", sent_by(via)),
            None => {
                let from = m.first("From", Some("f"))?;
                let from_tag = address(from)
                    .ok()
                    .and_then(|a| a.param("tag").flatten().map(str::to_string))
                    .unwrap_or_default();
                let call_id = m.first("Call-ID", Some("i"))?;
                let (number, _) = cseq(m)?;
                format!("2543|{call_id}|{from_tag}|{number}|{via}")
            }
        };
        Some(Key {
            id,
            method: method.to_string(),
        })
    }

    /// The key of a received response (a client transaction of ours): the top Via's
    /// branch, which we chose, and the CSeq method.
    pub fn of_response(m: &Message) -> Option<Key> {
        let via = top_via(m)?;
        let branch = via_param(via, "branch")?;
        let (_, method) = cseq(m)?;
        Some(Key {
            id: format!("{branch}|{}", sent_by(via)),
            method: method.to_string(),
        })
    }

    /// The key of the INVITE transaction a CANCEL with this key cancels (§9.2: same
    /// branch, method INVITE).
    pub fn cancelled_invite(&self) -> Key {
        Key {
            id: self.id.clone(),
            method: "INVITE".into(),
        }
    }
}

/// The first Via field value (a field may carry several, comma-separated).
pub fn top_via<'m>(m: &'m Message) -> Option<&'m str> {
    let first = m.first("Via", Some("v"))?;
    super::guard::split_top(first, b',')
        .next()
        .map(|v| v.trim_matches([' ', '\t']))
}

/// `host[:port]` of a Via value, as written.
fn sent_by(via: &str) -> &str {
    let after_protocol = via
        .split_once([' ', '\t'])
        .map(|(_, rest)| rest.trim_start())
        .unwrap_or(via);
    after_protocol
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_end()
}

/// A Via parameter's value (`branch=...`); names are case-insensitive.
pub fn via_param<'v>(via: &'v str, name: &str) -> Option<&'v str> {
    via.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// CSeq as (number, method).
pub fn cseq<'m>(m: &'m Message) -> Option<(u32, &'m str)> {
    let value = m.first("CSeq", None)?;
    let (number, method) = value.trim().split_once([' ', '\t'])?;
    Some((number.parse().ok()?, method.trim()))
}

/// Whether a request is inside a dialog (its To carries a tag).
pub fn in_dialog(m: &Message) -> bool {
    m.first("To", Some("t")).is_some_and(has_tag)
}

/// A retransmission schedule: the next time, and the interval after it (doubling up to a
/// cap), until a deadline.
#[derive(Debug, Clone, Copy)]
struct Resend {
    at: Instant,
    interval: Duration,
    cap: Duration,
}

impl Resend {
    fn start(now: Instant, first: Duration, cap: Duration) -> Resend {
        Resend {
            at: now + first,
            interval: first,
            cap,
        }
    }

    /// Whether a retransmission is due at `now`; if so the schedule moves on to the next.
    fn fire(schedule: &mut Option<Resend>, now: Instant) -> bool {
        match schedule {
            Some(r) if now >= r.at => {
                r.interval = (r.interval * 2).min(r.cap);
                r.at = now + r.interval;
                true
            }
            _ => false,
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Where a server INVITE transaction is (RFC 3261 figure 7, RFC 6026 figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    /// No final response yet.
    Proceeding,
    /// A 2xx was sent: it is retransmitted until the ACK, then ACKs and INVITEs that are
    /// retransmissions are absorbed until 64·T1 has passed.
    Accepted {
        acked: bool,
    },
    /// A 3xx-6xx was sent; waiting for its ACK.
    Completed,
    /// The ACK of a 3xx-6xx came; absorbing its retransmissions for T4.
    Confirmed,
    Terminated,
}

/// What the ACK meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckSeen {
    /// The ACK of our 2xx, the first one: the dialog is confirmed.
    Confirms,
    /// The ACK of our 3xx-6xx: nothing for the call, the transaction winds down.
    EndsRefusal,
    /// A retransmitted ACK, or one with no final response to acknowledge: absorbed.
    Absorbed,
}

/// What a timer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timeout<'a> {
    /// Send these bytes again.
    Resend(&'a [u8]),
    /// The peer never acknowledged (or answered) in 64·T1. For a 2xx the dialog should be
    /// ended with a BYE (RFC 3261 §13.3.1.4); for a request of ours it failed (408).
    GaveUp,
    /// The transaction is over: forget it.
    Ended,
    /// Not due yet.
    Idle,
}

/// An INVITE we received.
#[derive(Debug)]
pub struct ServerInvite {
    timers: Timers,
    reliability: Reliability,
    state: InviteState,
    last: Vec<u8>,
    resend: Option<Resend>,
    /// Timer H (Completed), L (Accepted) or I (Confirmed).
    end_at: Option<Instant>,
}

impl ServerInvite {
    pub fn new(timers: Timers, reliability: Reliability) -> ServerInvite {
        ServerInvite {
            timers,
            reliability,
            state: InviteState::Proceeding,
            last: Vec::new(),
            resend: None,
            end_at: None,
        }
    }

    pub fn state(&self) -> InviteState {
        self.state
    }

    /// Records a response the transaction user sends, moves the state on and returns the
    /// bytes to send. A response after the final one is refused (returns `None`), except
    /// the same 2xx again.
    pub fn respond(&mut self, now: Instant, code: u16, bytes: Vec<u8>) -> Option<&[u8]> {
        match (self.state, code) {
            (InviteState::Proceeding, 100..=199) => {}
            (InviteState::Proceeding, 200..=299) => {
                self.state = InviteState::Accepted { acked: false };
                self.resend = Some(Resend::start(now, self.timers.t1, self.timers.t2));
                self.end_at = Some(now + self.timers.give_up());
            }
            (InviteState::Proceeding, 300..=699) => {
                self.state = InviteState::Completed;
                self.resend = (self.reliability == Reliability::Unreliable)
                    .then(|| Resend::start(now, self.timers.t1, self.timers.t2));
                self.end_at = Some(now + self.timers.give_up());
            }
            (InviteState::Accepted { acked: false }, 200..=299) => {}
            _ => return None,
        }
        self.last = bytes;
        Some(&self.last)
    }

    /// The INVITE came again: the last response goes out again, if any (in Accepted the
    /// 2xx's own schedule covers it, so nothing is sent: RFC 6026 §7.1).
    pub fn on_retransmission(&mut self) -> Option<&[u8]> {
        match self.state {
            InviteState::Proceeding | InviteState::Completed if !self.last.is_empty() => {
                Some(&self.last)
            }
            _ => None,
        }
    }

    pub fn on_ack(&mut self, now: Instant) -> AckSeen {
        match self.state {
            InviteState::Accepted { acked: false } => {
                self.state = InviteState::Accepted { acked: true };
                self.resend = None;
                AckSeen::Confirms
            }
            InviteState::Completed => {
                self.state = InviteState::Confirmed;
                self.resend = None;
                self.end_at = Some(match self.reliability {
                    Reliability::Unreliable => now + self.timers.t4,
                    Reliability::Reliable => now,
                });
                AckSeen::EndsRefusal
            }
            _ => AckSeen::Absorbed,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == InviteState::Terminated {
            return None;
        }
        earliest(self.resend.map(|r| r.at), self.end_at)
    }

    pub fn on_timeout(&mut self, now: Instant) -> Timeout<'_> {
        if self.end_at.is_some_and(|at| now >= at) {
            let unacknowledged = matches!(
                self.state,
                InviteState::Accepted { acked: false } | InviteState::Completed
            );
            self.state = InviteState::Terminated;
            self.resend = None;
            self.end_at = None;
            return if unacknowledged {
                Timeout::GaveUp
            } else {
                Timeout::Ended
            };
        }
        if Resend::fire(&mut self.resend, now) {
            Timeout::Resend(&self.last)
        } else {
            Timeout::Idle
        }
    }

    /// Ends the transaction at once (the call is gone; nothing more to send or absorb).
    pub fn terminate(&mut self) {
        self.state = InviteState::Terminated;
        self.resend = None;
        self.end_at = None;
    }
}

/// A request other than INVITE or ACK that we received (BYE, INFO, OPTIONS, NOTIFY...).
#[derive(Debug)]
pub struct ServerNonInvite {
    timers: Timers,
    reliability: Reliability,
    last: Vec<u8>,
    final_sent: bool,
    /// Timer J: how long retransmitted requests are answered from `last`.
    end_at: Option<Instant>,
}

impl ServerNonInvite {
    pub fn new(timers: Timers, reliability: Reliability) -> ServerNonInvite {
        ServerNonInvite {
            timers,
            reliability,
            last: Vec::new(),
            final_sent: false,
            end_at: None,
        }
    }

    /// Records the transaction user's response and returns the bytes to send; `None` once
    /// a final response went out (§17.2.2: later ones are discarded).
    pub fn respond(&mut self, now: Instant, code: u16, bytes: Vec<u8>) -> Option<&[u8]> {
        if self.final_sent {
            return None;
        }
        if code >= 200 {
            self.final_sent = true;
            self.end_at = Some(match self.reliability {
                Reliability::Unreliable => now + self.timers.give_up(),
                Reliability::Reliable => now,
            });
        }
        self.last = bytes;
        Some(&self.last)
    }

    /// The request came again: the last response goes out again (none yet: absorbed).
    pub fn on_retransmission(&self) -> Option<&[u8]> {
        (!self.last.is_empty()).then_some(&self.last[..])
    }

    pub fn is_answered(&self) -> bool {
        self.final_sent
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.end_at
    }

    /// `Ended` once Timer J has run out.
    pub fn on_timeout(&mut self, now: Instant) -> Timeout<'_> {
        match self.end_at {
            Some(at) if now >= at => {
                self.end_at = None;
                Timeout::Ended
            }
            _ => Timeout::Idle,
        }
    }
}

/// What a response to our request meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseSeen {
    /// 1xx: the peer is working on it.
    Provisional,
    /// The first final response: the answer to hand to whoever asked.
    Final,
    /// A retransmitted final response: absorbed.
    Absorbed,
}

/// A request other than INVITE that we sent (BYE, REFER, NOTIFY...): RFC 3261 figure 6.
#[derive(Debug)]
pub struct ClientNonInvite {
    timers: Timers,
    reliability: Reliability,
    request: Vec<u8>,
    resend: Option<Resend>,
    /// Timer F until the final response, then timer K.
    end_at: Option<Instant>,
    answered: bool,
}

impl ClientNonInvite {
    /// A new transaction for `request`, which the driver sends now ([`request`](Self::request)).
    pub fn new(
        now: Instant,
        timers: Timers,
        reliability: Reliability,
        request: Vec<u8>,
    ) -> ClientNonInvite {
        ClientNonInvite {
            timers,
            reliability,
            request,
            resend: (reliability == Reliability::Unreliable)
                .then(|| Resend::start(now, timers.t1, timers.t2)),
            end_at: Some(now + timers.give_up()),
            answered: false,
        }
    }

    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Whether its final response (or 408) is in: nothing left to retransmit.
    pub fn is_answered(&self) -> bool {
        self.answered
    }

    pub fn on_response(&mut self, now: Instant, code: u16) -> ResponseSeen {
        if self.answered {
            return ResponseSeen::Absorbed;
        }
        if code < 200 {
            // Proceeding: after the retransmission already due, every T2 (§17.1.2.2).
            if let Some(r) = &mut self.resend {
                r.interval = self.timers.t2;
                r.cap = self.timers.t2;
            }
            return ResponseSeen::Provisional;
        }
        self.answered = true;
        self.resend = None;
        self.end_at = Some(match self.reliability {
            Reliability::Unreliable => now + self.timers.t4,
            Reliability::Reliable => now,
        });
        ResponseSeen::Final
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(self.resend.map(|r| r.at), self.end_at)
    }

    /// `GaveUp` when timer F ran out without a final response (the request failed: 408),
    /// `Ended` when timer K ran out after one.
    pub fn on_timeout(&mut self, now: Instant) -> Timeout<'_> {
        if self.end_at.is_some_and(|at| now >= at) {
            self.end_at = None;
            self.resend = None;
            return if self.answered {
                Timeout::Ended
            } else {
                Timeout::GaveUp
            };
        }
        if Resend::fire(&mut self.resend, now) {
            Timeout::Resend(&self.request)
        } else {
            Timeout::Idle
        }
    }
}

#[cfg(test)]
mod tests;
