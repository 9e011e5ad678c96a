//! Which call a message belongs to, for the calls ivrd's own SIP layer answers
//! ([`super::leg`]): the INVITE's transaction key catches its retransmissions and CANCEL;
//! the Call-ID with our tag catches everything inside the dialog (the ACK, BYE, INFO,
//! re-INVITE, and the responses to our own requests). A new INVITE starts a call; anything
//! else is not ours (REGISTER, OPTIONS, the dialogs ivrd opens as the UAC).
//!
//! Generic over what a call is reached by (its inbox), so the table is pure.

use super::guard::message::Message;
use super::leg::Leg;
use super::txn::Key;
use super::uas::DialogId;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination<T> {
    /// To the call that has it.
    Leg(T),
    /// An INVITE outside any dialog and not a retransmission: a new call.
    NewCall,
    /// Not one of ours.
    Elsewhere,
}

/// The calls' routes: the INVITE's key and (Call-ID, our tag), each stored as a 64-bit
/// digest keyed with this table's random seed rather than as the strings. A finished
/// call's routes stay for 64·T1 (32 s): at thousands of calls a second the strings were
/// most of the daemon's memory traffic, and each lookup missed the cache; a digest is
/// 8 bytes. Two routes alive at once share a digest with odds of about n²/2⁶⁵ (n = 100,000
/// routes: 1 in 3·10⁹), and the seed is unknown outside the process, so no caller can
/// choose keys that collide.
#[derive(Debug)]
pub struct Routes<T> {
    seed: RandomState,
    invites: HashMap<u64, T, Digested>,
    dialogs: HashMap<u64, T, Digested>,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Routes {
            seed: RandomState::new(),
            invites: HashMap::default(),
            dialogs: HashMap::default(),
        }
    }
}

impl<T: Clone> Routes<T> {
    /// Where `m` goes.
    pub fn route(&self, m: &Message) -> Destination<T> {
        let found = |hit: Option<&T>| {
            hit.cloned()
                .map_or(Destination::Elsewhere, Destination::Leg)
        };
        // A request inside a dialog (our tag in To), or a response to a request of ours
        // (our tag in From).
        if let Some((call_id, ours)) = DialogId::ours(m) {
            return found(self.dialogs.get(&self.dialog_digest(call_id, ours)));
        }
        if !m.is_request() {
            return Destination::Elsewhere;
        }
        let Some(key) = Key::of_request(m) else {
            return Destination::Elsewhere;
        };
        // A CANCEL names the INVITE it cancels by the same branch (RFC 3261 §9.2).
        let invite_key = match m.method() {
            Some("CANCEL") => key.cancelled_invite(),
            _ => key,
        };
        match (self.invites.get(&self.digest(&invite_key)), m.method()) {
            (Some(inbox), _) => Destination::Leg(inbox.clone()),
            (None, Some("INVITE")) => Destination::NewCall,
            (None, _) => Destination::Elsewhere,
        }
    }

    /// Routes `leg`'s messages to `inbox`.
    pub fn add(&mut self, leg: &Leg, inbox: T) {
        let keys = self.keys_of(leg);
        self.invites.insert(keys.invite, inbox.clone());
        self.dialogs.insert(keys.dialog, inbox);
    }

    /// Forgets `leg` (once it is idle and its call over).
    pub fn remove(&mut self, leg: &Leg) {
        let keys = self.keys_of(leg);
        self.forget(&keys);
    }

    /// Points both routes of a call at `inbox` instead (a finished call whose leg is
    /// gone, say); routes not in the table stay out of it.
    pub fn set(&mut self, keys: &RouteKeys, inbox: T) {
        if let Some(r) = self.invites.get_mut(&keys.invite) {
            *r = inbox.clone();
        }
        if let Some(r) = self.dialogs.get_mut(&keys.dialog) {
            *r = inbox;
        }
    }

    /// Forgets a call by its keys.
    pub fn forget(&mut self, keys: &RouteKeys) {
        self.invites.remove(&keys.invite);
        self.dialogs.remove(&keys.dialog);
    }

    /// A leg's routes, to set or forget after the leg is gone.
    pub fn keys_of(&self, leg: &Leg) -> RouteKeys {
        RouteKeys {
            invite: self.digest(leg.invite_key()),
            dialog: {
                let id = leg.dialog().id();
                self.dialog_digest(&id.call_id, &id.local_tag)
            },
        }
    }

    /// How many calls are routed.
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    fn digest(&self, key: &Key) -> u64 {
        self.seed.hash_one(key)
    }

    /// A dialog as the table knows it: our tag is random per call, so with the Call-ID it
    /// names one call; the peer's tag adds nothing (and RFC 2543 peers may send none).
    fn dialog_digest(&self, call_id: &str, ours: &str) -> u64 {
        self.seed.hash_one((call_id, ours))
    }
}

/// A call's two routes, to change or forget them once its leg is gone: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteKeys {
    invite: u64,
    dialog: u64,
}

/// The tables' keys are already keyed digests: hashing them again would only cost time.
type Digested = BuildHasherDefault<AsIs>;

#[derive(Default)]
struct AsIs(u64);

impl Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in rather than lose it.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests;
