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
use std::collections::HashMap;

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

/// The calls' routes: the INVITE's key and (Call-ID, our tag).
#[derive(Debug)]
pub struct Routes<T> {
    invites: HashMap<Key, T>,
    dialogs: HashMap<(String, String), T>,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Routes {
            invites: HashMap::new(),
            dialogs: HashMap::new(),
        }
    }
}

impl<T: Clone> Routes<T> {
    pub fn route(&self, m: &Message) -> Destination<T> {
        let found = |hit: Option<&T>| {
            hit.cloned()
                .map_or(Destination::Elsewhere, Destination::Leg)
        };
        if !m.is_request() {
            // A response to a request of ours: our tag is in From.
            return found(
                DialogId::of_response(m).and_then(|id| self.dialogs.get(&dialog_key(&id))),
            );
        }
        if let Some(id) = DialogId::of_request(m) {
            return found(self.dialogs.get(&dialog_key(&id)));
        }
        let Some(key) = Key::of_request(m) else {
            return Destination::Elsewhere;
        };
        let invite_key = match m.method() {
            Some("CANCEL") => key.cancelled_invite(),
            _ => key,
        };
        match (self.invites.get(&invite_key), m.method()) {
            (Some(inbox), _) => Destination::Leg(inbox.clone()),
            (None, Some("INVITE")) => Destination::NewCall,
            (None, _) => Destination::Elsewhere,
        }
    }

    /// Routes `leg`'s messages to `inbox`.
    pub fn add(&mut self, leg: &Leg, inbox: T) {
        self.invites.insert(leg.invite_key().clone(), inbox.clone());
        self.dialogs.insert(dialog_key(leg.dialog().id()), inbox);
    }

    /// Forgets `leg` (once it is idle and its call over).
    pub fn remove(&mut self, leg: &Leg) {
        self.invites.remove(leg.invite_key());
        self.dialogs.remove(&dialog_key(leg.dialog().id()));
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

    /// How many calls are routed.
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }
}

/// A call's two routes, to change or forget them once its leg is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKeys {
    invite: Key,
    dialog: (String, String),
}

impl RouteKeys {
    pub fn of(leg: &Leg) -> RouteKeys {
        RouteKeys {
            invite: leg.invite_key().clone(),
            dialog: dialog_key(leg.dialog().id()),
        }
    }
}

/// A dialog as the table knows it: our tag is random per call, so with the Call-ID it
/// names one call; the peer's tag adds nothing (and RFC 2543 peers may send none).
fn dialog_key(id: &DialogId) -> (String, String) {
    (id.call_id.clone(), id.local_tag.clone())
}

#[cfg(test)]
mod tests;
