//! A call's signalling as the call driver (`call.rs`) sees it, whichever layer carries it:
//! rsipstack's dialog (calls over TCP, calls ivrd places) or ivrd's own leg (calls over
//! UDP, see `own.rs`). Both are read into the same few facts and news, so the driver's
//! decisions are written once.

use super::own::OwnLeg;
use super::reply::reply;
use crate::call::CallInput;
use crate::metrics::SIP_MESSAGES_REJECTED_TOTAL;
use crate::sip::guard::address;
use crate::sip::guard::message::{Message, StartLine};
use crate::sip::leg::{Event, RequestId};
use crate::sip::txn::cseq;
use crate::sip::uas::phrase;
use rsipstack::dialog::dialog::TransactionHandle;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{HasHeaders, Header, Request, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use std::time::Instant;

/// A new INVITE, from either layer.
pub enum Inbound {
    Stack(Box<Transaction>),
    Own(Box<OwnLeg>),
}

/// What the call needs to know of its INVITE.
pub struct InviteFacts {
    pub call_id: String,
    /// The Request-URI's user part: which flow answers.
    pub dialled: String,
    /// The From URI.
    pub caller: String,
    pub require: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// `udp` or `tcp` (the metrics and calls-API label).
    pub transport: String,
}

impl Inbound {
    pub fn facts(&self) -> InviteFacts {
        match self {
            Inbound::Stack(tx) => {
                let req = &tx.original;
                InviteFacts {
                    call_id: req
                        .call_id_header()
                        .map(|c| c.value().to_string())
                        .unwrap_or_default(),
                    dialled: req.uri.user().unwrap_or_default().to_string(),
                    caller: req
                        .from_header()
                        .ok()
                        .and_then(|f| f.uri().ok())
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                    require: req.header_value("Require"),
                    content_type: req.header_value("Content-Type"),
                    body: req.body.clone(),
                    transport: tx
                        .connection
                        .as_ref()
                        .map(|c| c.transport().to_string().to_ascii_lowercase())
                        .unwrap_or_else(|| "udp".into()),
                }
            }
            Inbound::Own(own) => {
                let m = Message::read(own.leg.invite());
                let uri = match m.start {
                    Ok(StartLine::Request { uri, .. }) => uri,
                    _ => "",
                };
                let caller = m
                    .first("From", Some("f"))
                    .and_then(|f| address(f).ok())
                    .map(|a| a.uri.to_string())
                    .unwrap_or_default();
                InviteFacts {
                    call_id: own.leg.dialog().id().call_id.clone(),
                    dialled: uri_user(uri).to_string(),
                    caller,
                    require: joined(&m, "Require", None),
                    content_type: m.first("Content-Type", Some("c")).map(str::to_string),
                    body: m.body().to_vec(),
                    transport: "udp".into(),
                }
            }
        }
    }

    /// Refuses the INVITE with a final response and counts why.
    pub fn refuse(self, code: u16, headers: Vec<(&'static str, String)>, reason: &'static str) {
        match self {
            Inbound::Stack(tx) => {
                reply(*tx, StatusCode::from(code), stack_headers(headers), reason)
            }
            Inbound::Own(own) => {
                metrics::counter!(SIP_MESSAGES_REJECTED_TOTAL, "reason" => reason).increment(1);
                own.linger((code, phrase(code)), headers);
            }
        }
    }
}

/// The user part of a SIP URI (`sip:user@host`), or "" when it has none.
fn uri_user(uri: &str) -> &str {
    let Some((_, rest)) = uri.split_once(':') else {
        return "";
    };
    match rest.split_once('@') {
        Some((user, _)) => user.split(':').next().unwrap_or(user),
        None => "",
    }
}

/// Every value of a header, comma-joined (Require may come in several lines).
fn joined(m: &Message, name: &str, short: Option<&str>) -> Option<String> {
    let values: Vec<&str> = m.values(name, short).collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// A request inside the dialog, as the call's handlers read it.
pub struct InDialog {
    pub method: String,
    pub content_type: String,
    /// The Event header (a REFER's NOTIFY says `refer`).
    pub event: Option<String>,
    pub cseq: Option<u32>,
    pub body: Vec<u8>,
}

impl InDialog {
    fn of_stack(req: &Request) -> InDialog {
        let event = req.headers().iter().find_map(|h| {
            let s = h.to_string();
            let (name, value) = s.split_once(':')?;
            let name = name.trim();
            // `o` is Event's compact form (RFC 6665 §8.2.1).
            (name.eq_ignore_ascii_case("event") || name == "o").then(|| value.trim().to_string())
        });
        InDialog {
            method: req.method.to_string(),
            content_type: req.header_value("Content-Type").unwrap_or_default(),
            event,
            cseq: req.cseq_header().ok().and_then(|c| c.seq().ok()),
            body: req.body.clone(),
        }
    }

    fn read(bytes: &[u8]) -> InDialog {
        let m = Message::read(bytes);
        InDialog {
            method: m.method().unwrap_or_default().to_string(),
            content_type: m
                .first("Content-Type", Some("c"))
                .unwrap_or_default()
                .to_string(),
            event: m.first("Event", Some("o")).map(|e| e.trim().to_string()),
            cseq: cseq(&m).map(|(n, _)| n),
            body: m.body().to_vec(),
        }
    }
}

/// Who answers a request inside the dialog.
pub enum Responder {
    Stack(TransactionHandle),
    Own(RequestId),
}

/// What the dialog tells the call.
pub enum News {
    /// The ACK of our 200 (the INVITE's or a re-INVITE's); its body is a late answer.
    Acked { body: Vec<u8> },
    /// The call is over from the signalling's side (CANCEL, BYE, no ACK).
    Ended(CallInput<'static>),
    /// A request the call answers.
    Request(InDialog, Responder),
    /// A request of ours got its final response.
    Answered { method: String, code: u16 },
}

/// rsipstack's dialog state, as news.
pub fn news_of_state(state: DialogState, dialog: &InviteDialog) -> Option<News> {
    Some(match state {
        DialogState::Confirmed(..) => News::Acked {
            body: dialog
                .last_remote_ack()
                .map(|ack| ack.body.clone())
                .unwrap_or_default(),
        },
        DialogState::Terminated(_, reason) => News::Ended(match reason {
            TerminatedReason::UacCancel => CallInput::Cancelled,
            TerminatedReason::Timeout => CallInput::AckTimeout,
            _ => CallInput::PeerHangup,
        }),
        DialogState::Info(_, req, handle)
        | DialogState::Notify(_, req, handle)
        | DialogState::Updated(_, req, handle)
        | DialogState::Options(_, req, handle)
        | DialogState::Refer(_, req, handle)
        | DialogState::Message(_, req, handle)
        | DialogState::Publish(_, req, handle) => {
            News::Request(InDialog::of_stack(&req), Responder::Stack(handle))
        }
        _ => return None,
    })
}

/// The own leg's event, as news (`NoAck` has the leg send its BYE first).
pub fn news_of_event(own: &mut OwnLeg, event: Event) -> News {
    match event {
        Event::Acked { body, .. } => News::Acked { body },
        Event::Cancelled => News::Ended(CallInput::Cancelled),
        Event::HungUp => News::Ended(CallInput::PeerHangup),
        Event::NoAck => {
            // RFC 3261 §13.3.1.4: a 2xx never acknowledged ends the dialog with a BYE.
            own.bye(Instant::now());
            News::Ended(CallInput::AckTimeout)
        }
        Event::Request { id, bytes, .. } => {
            News::Request(InDialog::read(&bytes), Responder::Own(id))
        }
        Event::Answered { method, code, .. } => News::Answered { method, code },
    }
}

/// Headers for rsipstack, typed where it reads them.
pub fn stack_headers(headers: Vec<(&'static str, String)>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|(name, value)| match name {
            "Content-Type" => Header::ContentType(value.into()),
            "Allow" => Header::Allow(value.into()),
            "Accept" => Header::Accept(value.into()),
            "Warning" => Header::Warning(value.into()),
            "Retry-After" => Header::RetryAfter(value.into()),
            "Unsupported" => Header::Unsupported(value.into()),
            "Referred-By" => Header::ReferredBy(value.into()),
            _ => Header::Other(name.into(), value),
        })
        .collect()
}

/// The call's signalling: rsipstack's dialog or the own leg.
pub enum Signalling {
    Stack {
        dialog: InviteDialog,
        /// Tells the endpoint the ACK is in (a re-INVITE that beat it waits for this).
        acked: tokio::sync::watch::Sender<bool>,
        /// Taken by the call's loop.
        states: Option<DialogStateReceiver>,
    },
    Own(Box<OwnLeg>),
}

impl Signalling {
    /// The CSeq of the latest ACK the dialog has seen.
    pub fn last_ack_cseq(&self) -> Option<u32> {
        match self {
            Signalling::Stack { dialog, .. } => dialog
                .last_remote_ack()
                .and_then(|ack| ack.cseq_header().ok().and_then(|c| c.seq().ok())),
            Signalling::Own(own) => own.last_ack,
        }
    }

    /// The own leg's next timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Signalling::Stack { .. } => None,
            Signalling::Own(own) => own.leg.poll_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::uri_user;

    #[test]
    fn the_dialled_number_is_the_request_uris_user_part() {
        assert_eq!(uri_user("sip:support@10.0.0.1:5060"), "support");
        assert_eq!(uri_user("sips:100@example.com;transport=tls"), "100");
        assert_eq!(uri_user("sip:alice:secret@example.com"), "alice");
        assert_eq!(uri_user("sip:example.com"), "");
        assert_eq!(uri_user("garbage"), "");
    }
}
