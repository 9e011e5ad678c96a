//! The registrar for agents who log in: a softphone REGISTERs with digest credentials
//! (`agents: [{id, username, password_file}]`); while the binding lasts, the agent is rung
//! at its Contact and counts as logged in. The accounts are `io::registrar`'s, the digest
//! check `crate::sip::digest`'s.

use super::reply::reply;
use crate::io::clock::unix_now;
use crate::io::daemon::Daemon;
use crate::sip::digest::{self, Verdict};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The realm phones are challenged with.
pub const REALM: &str = "ivrd";

/// Registrations last at most this long, and at least `MIN_EXPIRES` (RFC 3261 §10.3: 423).
const MAX_EXPIRES: u64 = 3600;
const MIN_EXPIRES: u64 = 60;

/// Answers a REGISTER: 401 with a challenge until the credentials are right, then 200 with
/// the binding (or its removal).
pub async fn handle(mut tx: Transaction, daemon: Arc<Daemon>) {
    let Some(registrar) = daemon.registrar.as_ref() else {
        return;
    };
    let now = unix_now();
    let auth = tx
        .original
        .header_value("Authorization")
        .and_then(|h| digest::parse(&h));
    let challenge = |stale: bool| {
        let nonce = digest::make_nonce(registrar.secret(), now);
        Header::Other(
            "WWW-Authenticate".into(),
            digest::challenge(REALM, &nonce, stale),
        )
    };
    let Some(auth) = auth else {
        let _ = tx
            .reply_with(StatusCode::Unauthorized, vec![challenge(false)], None)
            .await;
        return;
    };
    let account = registrar.account(&auth.username);
    let verdict = match account {
        Some((_, password)) => {
            digest::verify(&auth, "REGISTER", password, REALM, registrar.secret(), now)
        }
        None => Verdict::Invalid,
    };
    let agent = match (verdict, account) {
        (Verdict::Valid, Some((agent, _))) => agent.to_string(),
        (Verdict::Stale, _) => {
            let _ = tx
                .reply_with(StatusCode::Unauthorized, vec![challenge(true)], None)
                .await;
            return;
        }
        _ => {
            warn!(user = %auth.username, "REGISTER with wrong credentials");
            metrics::counter!(crate::metrics::SIP_MESSAGES_REJECTED_TOTAL, "reason" => "bad_credentials")
                .increment(1);
            let _ = tx
                .reply_with(StatusCode::Unauthorized, vec![challenge(false)], None)
                .await;
            return;
        }
    };
    let Some(queues) = daemon.queues.clone() else {
        return reply(tx, StatusCode::ServiceUnavailable, vec![], "no_queues");
    };
    let contact = tx.original.header_value("Contact").unwrap_or_default();
    let expires_header = tx
        .original
        .header_value("Expires")
        .and_then(|e| e.trim().parse::<u64>().ok());
    let Some((uri, contact_expires)) = parse_contact(&contact) else {
        // A query for the bindings (no Contact): none are listed, but it is no error.
        let _ = tx.reply(StatusCode::OK).await;
        return;
    };
    let expires = contact_expires.or(expires_header).unwrap_or(MAX_EXPIRES);
    if expires == 0 || uri == "*" {
        info!(agent = %agent, "agent unregistered");
        // The store first: another node's news about agents, read in between, then
        // agrees with what this node's board is about to hear.
        remember(&daemon, &agent, None).await;
        queues.unregister(&agent).await;
        let _ = tx.reply(StatusCode::OK).await;
        return;
    }
    if expires < MIN_EXPIRES {
        let min = Header::Other("Min-Expires".into(), MIN_EXPIRES.to_string());
        let _ = tx
            .reply_with(StatusCode::IntervalTooBrief, vec![min], None)
            .await;
        return;
    }
    let expires = expires.min(MAX_EXPIRES);
    debug!(agent = %agent, uri = %uri, expires, "agent registered");
    remember(&daemon, &agent, Some((uri.clone(), now + expires))).await;
    queues
        .register(&agent, &uri, Duration::from_secs(expires))
        .await;
    let headers = vec![
        Header::Other("Contact".into(), format!("<{uri}>;expires={expires}")),
        Header::Other("Expires".into(), expires.to_string()),
    ];
    let _ = tx.reply_with(StatusCode::OK, headers, None).await;
}

/// Keeps the binding in the store: after a restart the agent is still logged in (phones
/// only register again at their own interval, up to an hour later).
async fn remember(daemon: &Daemon, agent: &str, binding: Option<(String, u64)>) {
    let store = daemon.store.clone();
    let agent = agent.to_string();
    let saved = tokio::task::spawn_blocking(move || {
        store.set_registration(&agent, binding.as_ref().map(|(u, t)| (u.as_str(), *t)))
    })
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        warn!("registration NOT stored (lost at a restart)");
    }
}

/// `<sip:a@h:p;transport=udp>;expires=60` -> (`sip:a@h:p;transport=udp`, Some(60)); `*`.
fn parse_contact(contact: &str) -> Option<(String, Option<u64>)> {
    let c = contact.trim();
    if c.is_empty() {
        return None;
    }
    if c == "*" {
        return Some(("*".into(), Some(0)));
    }
    let (uri, params) = match (c.find('<'), c.find('>')) {
        (Some(a), Some(b)) if a < b => (&c[a + 1..b], &c[b + 1..]),
        _ => c.split_once(';').unwrap_or((c, "")),
    };
    let expires = params
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("expires"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Some((uri.trim().to_string(), expires))
}

#[cfg(test)]
mod tests {
    use super::parse_contact;

    #[test]
    fn contacts() {
        assert_eq!(
            parse_contact("<sip:alice@10.0.0.1:5062;transport=udp>;expires=120"),
            Some(("sip:alice@10.0.0.1:5062;transport=udp".into(), Some(120)))
        );
        assert_eq!(
            parse_contact("\"Alice\" <sip:alice@h>"),
            Some(("sip:alice@h".into(), None))
        );
        assert_eq!(parse_contact("*"), Some(("*".into(), Some(0))));
        assert_eq!(parse_contact(""), None);
    }
}
