//! The guard in front of the SIP stack: every datagram, and every message cut from a TCP
//! stream, passes here before rsipstack sees it. rsipstack drops what it cannot parse
//! without a word and is lenient where RFC 3261 is not; a phone or PBX that sent a broken
//! request deserves an answer saying why. So this module
//! - answers malformed requests itself (400, or 505 for another SIP version),
//! - answers what RFC 3261 §8.2 settles without call state: unknown methods (501),
//!   unsupported URI schemes (416), required extensions (420), an INVITE whose Accept
//!   rules out SDP (406),
//! - drops garbage, malformed responses and responses no UA can own,
//! - repairs valid messages rsipstack would misread (see [`repair`]),
//! - and lets everything else through unchanged.
//!
//! Pure: bytes in, verdict out. The RFC 4475 torture messages are its test suite
//! (`tests/rfc4475.rs`).

pub mod echo;
pub mod message;
mod repair;
mod rules;
pub mod stream;

pub use rules::{address, address_param, split_top, Address, Transport};

use message::Message;
use rsipstack::sip::SipMessage;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rules::{Outcome, Refusal};

/// Largest SIP message accepted (RFC 3261 §18.1.1 keeps requests under the MTU unless
/// congestion-controlled; 64 KiB is the datagram limit).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 65_535;

/// What the guard is told about the endpoint behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub max_bytes: usize,
    /// Allow header value sent with 501 (the methods the endpoint answers); empty: none.
    pub allow: String,
}

impl Policy {
    pub fn new(max_bytes: usize) -> Self {
        Policy {
            max_bytes,
            allow: String::new(),
        }
    }
}

/// What to do with one message.
#[derive(Debug)]
pub enum Verdict {
    /// Hand it to the SIP stack.
    Pass(Box<Passed>),
    /// A CRLF keep-alive (RFC 5626 §3.5.1); the transport answers it.
    KeepAlive,
    /// Send these bytes back to the sender and drop the message.
    Reply {
        response: Vec<u8>,
        reason: &'static str,
    },
    /// Drop silently (responses and garbage cannot be answered).
    Drop { reason: &'static str },
}

#[derive(Debug)]
pub struct Passed {
    /// The message as rsipstack parses it.
    pub message: SipMessage,
    /// Bytes to give rsipstack instead of the original, when they had to be repaired.
    pub repaired: Option<Vec<u8>>,
}

impl Verdict {
    /// Label for `ivrd_sip_messages_rejected_total{reason}`, None for messages that pass.
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            Verdict::Reply { reason, .. } | Verdict::Drop { reason } => Some(reason),
            Verdict::Pass(_) | Verdict::KeepAlive => None,
        }
    }
}

/// Whether a To (or From) value carries a tag: for a message the guard passed, the same
/// answer rsipstack's typed header gives, without building one (this runs for every
/// request, twice).
pub fn has_tag(value: &str) -> bool {
    address_param(value, "tag").is_ok_and(|tag| tag.is_some())
}

/// Judges one UDP datagram (RFC 3261 §18.3: one datagram, one message; Content-Length may
/// be absent and must not exceed what arrived).
pub fn inspect(datagram: &[u8], policy: &Policy) -> Verdict {
    if datagram.iter().all(u8::is_ascii_whitespace) {
        return Verdict::KeepAlive;
    }
    examine(datagram, policy, Transport::Datagram)
}

/// Judges one message cut from a stream by [`stream::next_frame`].
pub fn inspect_frame(frame: &[u8], policy: &Policy) -> Verdict {
    examine(frame, policy, Transport::Stream)
}

/// The verdict on a message over the size limit: 513 to a request (RFC 3261 §21.5.14),
/// silence otherwise. Also for a datagram that filled the receive buffer and so may have
/// lost its end.
pub fn too_large(bytes: &[u8]) -> Verdict {
    refuse_or_drop(&Message::read(bytes), Refusal::too_large())
}

fn examine(bytes: &[u8], policy: &Policy, transport: Transport) -> Verdict {
    match read(bytes, policy, transport) {
        Reading::Accepted(m) => for_stack(&m, bytes, transport),
        Reading::Judged(verdict) => verdict,
    }
}

/// The guard's own reading of a message, before any stack parses it.
pub enum Reading<'a> {
    /// The rules accept it: ivrd's own SIP layer reads it as is; rsipstack needs
    /// [`for_stack`] first.
    Accepted(Message<'a>),
    /// Refused, dropped or a keep-alive: what to do instead.
    Judged(Verdict),
}

/// The guard's rules on one UDP datagram, without rsipstack's parse (which only messages
/// for rsipstack need: [`for_stack`]). `filled`: the datagram filled the receive buffer.
pub fn read_datagram<'a>(datagram: &'a [u8], filled: bool, policy: &Policy) -> Reading<'a> {
    if filled {
        return Reading::Judged(too_large(datagram));
    }
    if datagram.iter().all(u8::is_ascii_whitespace) {
        return Reading::Judged(Verdict::KeepAlive);
    }
    read(datagram, policy, Transport::Datagram)
}

fn read<'a>(bytes: &'a [u8], policy: &Policy, transport: Transport) -> Reading<'a> {
    if bytes.len() > policy.max_bytes {
        return Reading::Judged(too_large(bytes));
    }
    let m = Message::read(bytes);
    match rules::judge(&m, transport, &policy.allow) {
        Outcome::Refuse(refusal) => Reading::Judged(refuse_or_drop(&m, refusal)),
        Outcome::Discard(reason) => Reading::Judged(Verdict::Drop { reason }),
        Outcome::Accept => Reading::Accepted(m),
    }
}

/// A message the rules accepted ([`read`]), made ready for rsipstack: repaired where it
/// would misread it, and parsed by its parser.
pub fn for_stack(m: &Message, bytes: &[u8], transport: Transport) -> Verdict {
    let repaired = repair::repair(m, bytes, transport);
    let for_stack = repaired.as_deref().unwrap_or(bytes);
    match SipMessage::try_from(for_stack) {
        Ok(message) if stack_can_match(&message) => {
            Verdict::Pass(Box::new(Passed { message, repaired }))
        }
        // Our rules accepted what rsipstack cannot read or cannot key to a
        // transaction, which it would drop without a word: answer the sender.
        _ => refuse_or_drop(
            m,
            Refusal::new(400, "Bad Request", "unparseable", "message not understood"),
        ),
    }
}

/// Whether rsipstack can compute the transaction key, the first thing it does with every
/// message (top Via, From tag, Call-ID, CSeq); it drops silently what fails here.
fn stack_can_match(message: &SipMessage) -> bool {
    match message {
        SipMessage::Request(r) => TransactionKey::from_request(r, TransactionRole::Server).is_ok(),
        SipMessage::Response(r) => {
            TransactionKey::from_response(r, TransactionRole::Client).is_ok()
        }
    }
}

/// A refusal for a request, a silent drop for anything else.
/// 403 Forbidden to a request refused by policy (the shield's allow-list), built like
/// every other guard response; `reason` labels the rejection metric.
pub fn forbidden(bytes: &[u8], reason: &'static str) -> Verdict {
    refuse_or_drop(
        &Message::read(bytes),
        Refusal::new(403, "Forbidden", reason, "not allowed to call this service"),
    )
}

fn refuse_or_drop(m: &Message, refusal: Refusal) -> Verdict {
    if m.is_request() && m.method() != Some("ACK") {
        respond(m, &refusal)
    } else {
        Verdict::Drop {
            reason: refusal.reason,
        }
    }
}

/// Builds the response statelessly from the request's own fields (RFC 3261 §8.2.6: copy
/// Via, From, To, Call-ID and CSeq; §8.2.7: a stateless UAS derives the To tag from the
/// request, so retransmissions get the same one). The I/O layer sends it back to where
/// the request came from, so a request without Via is answered too.
fn respond(m: &Message, refusal: &Refusal) -> Verdict {
    // The tag for a To without one: derived from the request, so a retransmission gets
    // the same (§8.2.7).
    let key = [
        m.first("Call-ID", Some("i")).unwrap_or_default().as_bytes(),
        m.first("From", Some("f")).unwrap_or_default().as_bytes(),
        m.first("Via", Some("v")).unwrap_or_default().as_bytes(),
    ];
    let tag = format!("{:016x}", repair::fnv1a(&key));
    let mut r = echo::response_head(m, refusal.code, refusal.phrase, &tag, None);
    for (name, value) in &refusal.headers {
        echo::line(&mut r, name, value);
    }
    echo::line(&mut r, "Warning", &format!("399 ivrd \"{}\"", refusal.why));
    r.push_str("Server: ivrd\r\nContent-Length: 0\r\n\r\n");
    Verdict::Reply {
        response: r.into_bytes(),
        reason: refusal.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: x1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    fn policy() -> Policy {
        Policy {
            max_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            allow: "INVITE, ACK, BYE".into(),
        }
    }

    /// The response's status line and the whole text, or a panic saying what came instead.
    fn reply(bytes: &[u8]) -> (String, String) {
        match inspect(bytes, &policy()) {
            Verdict::Reply { response, .. } => {
                let text = String::from_utf8(response).unwrap();
                (text.lines().next().unwrap().to_string(), text)
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn good_requests_pass_unchanged() {
        match inspect(OPTIONS.as_bytes(), &policy()) {
            Verdict::Pass(p) => assert!(p.repaired.is_none()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            inspect(b"\r\n\r\n", &policy()),
            Verdict::KeepAlive
        ));
    }

    #[test]
    fn content_length_beyond_the_body_gets_400_with_the_request_fields() {
        let m = OPTIONS.replace("Content-Length: 0", "Content-Length: 50");
        let (status, r) = reply(m.as_bytes());
        assert_eq!(status, "SIP/2.0 400 Bad Request");
        assert!(
            r.contains("Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n"),
            "{r}"
        );
        assert!(r.contains("Call-ID: x1\r\n"), "{r}");
        assert!(r.contains("To: <sip:ivr@127.0.0.1>;tag="), "{r}");
        // Stateless: the same request gets the same tag.
        assert_eq!(reply(m.as_bytes()).1, r);
    }

    #[test]
    fn garbage_is_dropped_and_oversize_gets_513() {
        assert!(matches!(
            inspect(b"\x00\x01hello", &policy()),
            Verdict::Drop { .. }
        ));
        let big = format!("{OPTIONS}{}", "x".repeat(200));
        let small = Policy::new(100);
        let Verdict::Reply { response, .. } = inspect(big.as_bytes(), &small) else {
            panic!()
        };
        assert!(response.starts_with(b"SIP/2.0 513"));
    }

    #[test]
    fn method_and_semantic_answers() {
        let unknown = OPTIONS.replace("OPTIONS", "FROBNICATE");
        let (status, r) = reply(unknown.as_bytes());
        assert_eq!(status, "SIP/2.0 501 Not Implemented");
        assert!(r.contains("Allow: INVITE, ACK, BYE\r\n"), "{r}");
        // Methods are case-sensitive (RFC 3261 §7.1): "options" is not OPTIONS.
        let lower = OPTIONS
            .replacen("OPTIONS", "options", 1)
            .replace("1 OPTIONS", "1 options");
        assert_eq!(reply(lower.as_bytes()).0, "SIP/2.0 501 Not Implemented");

        let tel = OPTIONS.replace("sip:ivr@127.0.0.1 SIP", "tel:+15551234 SIP");
        assert!(matches!(
            inspect(tel.as_bytes(), &policy()),
            Verdict::Pass(_)
        ));
        let im = OPTIONS.replace("sip:ivr@127.0.0.1 SIP", "im:ivr@example.com SIP");
        assert_eq!(reply(im.as_bytes()).0, "SIP/2.0 416 Unsupported URI Scheme");

        let require = OPTIONS.replace("Max-Forwards", "Require: 100rel, timer\r\nMax-Forwards");
        let (status, r) = reply(require.as_bytes());
        assert_eq!(status, "SIP/2.0 420 Bad Extension");
        assert!(r.contains("Unsupported: 100rel, timer\r\n"), "{r}");

        let version = OPTIONS.replace("127.0.0.1 SIP/2.0", "127.0.0.1 SIP/3.0");
        assert_eq!(
            reply(version.as_bytes()).0,
            "SIP/2.0 505 Version Not Supported"
        );
    }

    #[test]
    fn a_tag_is_a_header_parameter_not_a_uri_one() {
        assert!(has_tag("<sip:ivr@127.0.0.1>;tag=abc"));
        assert!(has_tag("\"A; tag=x\" <sip:ivr@h> ;tag=1"));
        assert!(!has_tag("<sip:ivr@127.0.0.1;tag=abc>"));
        assert!(!has_tag("\"x;tag=1\" <sip:ivr@h>"));
        assert!(!has_tag("sip:ivr@h"));
    }

    #[test]
    fn an_ack_is_never_answered() {
        let ack = OPTIONS
            .replace("OPTIONS sip", "ACK sip")
            .replace("1 OPTIONS", "1 ACK")
            .replace("Content-Length: 0", "Content-Length: 99");
        assert!(matches!(
            inspect(ack.as_bytes(), &policy()),
            Verdict::Drop { .. }
        ));
    }

    #[test]
    fn responses_for_a_proxy_are_dropped() {
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: y\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            inspect(ok.as_bytes(), &policy()),
            Verdict::Pass(_)
        ));
        let two = ok.replace(
            "Via:",
            "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKb\r\nVia:",
        );
        assert!(matches!(
            inspect(two.as_bytes(), &policy()),
            Verdict::Drop {
                reason: "response_via"
            }
        ));
    }

    #[test]
    fn never_panics_on_noise() {
        let mut x: u32 = 12345;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = inspect(&bytes, &policy());
            let mut prefixed = OPTIONS.as_bytes()[..40.min(len + 10)].to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = inspect(&prefixed, &policy());
        }
    }
}
