//! Answers the SIP side sends without a dialog's help: refusals, in-dialog responses, our
//! Allow list and Contact.

use crate::io::daemon::Daemon;
use crate::metrics::SIP_MESSAGES_REJECTED_TOTAL;
use rsipstack::dialog::dialog::TransactionHandle;
use rsipstack::sip::{Header, Method, StatusCode, Transport};
use rsipstack::transaction::transaction::Transaction;
use std::net::IpAddr;
use tracing::{debug, warn};

/// Methods we answer; sent in Allow.
pub const ALLOWED: &[Method] = &[
    Method::Invite,
    Method::Ack,
    Method::Cancel,
    Method::Bye,
    Method::Options,
    Method::Info,
    Method::Notify,
    Method::Update,
];

pub fn allow_header() -> Header {
    Header::Allow(allow_value().into())
}

/// The Allow list as a header value.
pub fn allow_value() -> String {
    ALLOWED
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Answers a transaction with a final status in its own task and counts the refusal.
pub fn reply(mut tx: Transaction, code: StatusCode, headers: Vec<Header>, reason: &'static str) {
    metrics::counter!(SIP_MESSAGES_REJECTED_TOTAL, "reason" => reason).increment(1);
    tokio::spawn(async move {
        if let Err(e) = tx.reply_with(code, headers, None).await {
            warn!(error = %e, "could not send SIP response");
        }
    });
}

/// Our Contact for a transaction, on the transport it arrived on.
pub fn contact_for(daemon: &Daemon, tx: &Transaction) -> Option<rsipstack::sip::Uri> {
    let tcp = tx
        .connection
        .as_ref()
        .is_some_and(|c| c.transport() == Transport::Tcp);
    let (addr, suffix) = if tcp {
        (daemon.contact_tcp?, ";transport=tcp")
    } else {
        (daemon.contact_udp.or(daemon.contact_tcp)?, "")
    };
    let host = match addr.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    rsipstack::sip::Uri::try_from(format!("sip:ivrd@{host}:{}{suffix}", addr.port()).as_str()).ok()
}

/// Our address for headers that name us inside a dialog (Referred-By).
pub fn contact_for_dialog(daemon: &Daemon) -> Option<String> {
    daemon
        .contact_udp
        .or(daemon.contact_tcp)
        .map(|a| format!("sip:ivrd@{a}"))
}

/// Answers an in-dialog request.
pub async fn respond(
    handle: &TransactionHandle,
    code: StatusCode,
    headers: Option<Vec<Header>>,
    body: Option<Vec<u8>>,
) {
    if handle.respond(code, headers, body).await.is_err() {
        debug!("in-dialog transaction already gone");
    }
}
