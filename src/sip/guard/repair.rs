//! Rewrites valid messages that rsipstack would misread, so that it reads them the way
//! RFC 3261 means them. Three cases, all from RFC 4475:
//! - whitespace around `;` and `=` in parameters (`tag = 1`, §3.1.1.1): rsipstack then
//!   finds no tag and treats an in-dialog request as a new one;
//! - a From without a tag (RFC 2543, §3.4.1): rsipstack cannot key the transaction and drops
//!   it. A tag derived from Call-ID and From stands in, the same for every request of the
//!   call, so the dialog holds together;
//! - an INVITE without Contact (RFC 2543 allowed it, §3.4.1): rsipstack cannot build the
//!   dialog. The From URI stands in, which is where RFC 2543 sent later requests anyway;
//! - a UDP request without Content-Length (§3.4.1): the body is the rest of the datagram
//!   (§18.3), but rsipstack reads it as empty.
//!
//! Messages that need none of this (nearly all) pass byte for byte.

use super::has_tag;
use super::message::{Header, Message};
use super::rules::{address, Transport};

/// Fields whose parameters rsipstack parses.
const PARAM_FIELDS: &[(&str, Option<&str>)] = &[
    ("Via", Some("v")),
    ("From", Some("f")),
    ("To", Some("t")),
    ("Contact", Some("m")),
    ("Route", None),
    ("Record-Route", None),
];

/// A corrected copy of `bytes`, or None when they can go to rsipstack as they are.
/// `m` must be `Message::read(bytes)` and judged acceptable.
pub fn repair(m: &Message, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let param_field = |h: &Header| PARAM_FIELDS.iter().any(|(long, short)| h.is(long, *short));
    let contact = (m.method() == Some("INVITE") && m.count("Contact", Some("m")) == 0)
        .then(|| m.first("From", Some("f")).and_then(|f| address(f).ok()))
        .flatten()
        .map(|from| format!("<{}>", from.uri));
    let add_length = transport == Transport::Datagram
        && !m.rest.is_empty()
        && m.first("Content-Length", Some("l")).is_none();
    // Nearly every message needs nothing, and the guard sees every message: find that out
    // before copying a single header.
    let loose = m
        .headers
        .iter()
        .any(|h| param_field(h) && may_tighten(&h.value));
    let untagged_from = m.is_request()
        && m.first("From", Some("f"))
            .is_some_and(|from| !has_tag(from));
    if !loose && !untagged_from && contact.is_none() && !add_length {
        return None;
    }
    let mut changed = contact.is_some();
    let mut fields: Vec<(&str, String)> = Vec::with_capacity(m.headers.len() + 1);
    for h in &m.headers {
        let mut value = h.value.to_string();
        if param_field(h) {
            let tight = tighten_params(&value);
            changed |= tight != value;
            value = tight;
        }
        fields.push((h.name, value));
    }
    if m.is_request() {
        let from = fields
            .iter_mut()
            .find(|(name, _)| name.eq_ignore_ascii_case("From") || name.eq_ignore_ascii_case("f"));
        if let Some((_, from)) = from {
            if !has_tag(from) {
                let call_id = m.first("Call-ID", Some("i")).unwrap_or_default();
                let tag = format!(
                    "2543-{:016x}",
                    fnv1a(&[call_id.as_bytes(), from.as_bytes()])
                );
                from.push_str(";tag=");
                from.push_str(&tag);
                changed = true;
            }
        }
    }
    if !changed && !add_length {
        return None;
    }
    let start_end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(bytes.len());
    let mut out = Vec::with_capacity(bytes.len() + 48);
    out.extend_from_slice(&bytes[..start_end]);
    out.extend_from_slice(b"\r\n");
    for (name, value) in &fields {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(contact) = contact {
        out.extend_from_slice(format!("Contact: {contact}\r\n").as_bytes());
    }
    if add_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", m.rest.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(m.rest);
    Some(out)
}

/// Whether [`tighten_params`] could change `value`: it only drops whitespace next to a
/// separator (or at the very end), so a value with none of that stays as it is.
fn may_tighten(value: &str) -> bool {
    let space = |c: u8| c == b' ' || c == b'\t';
    let separator = |c: u8| matches!(c, b';' | b'=' | b',');
    let b = value.as_bytes();
    b.last().is_some_and(|&c| space(c))
        || b.windows(2)
            .any(|w| (space(w[0]) && separator(w[1])) || (separator(w[0]) && space(w[1])))
}

/// Drops whitespace next to `;`, `=` and `,` outside quoted strings and <...>, which is
/// where RFC 3261's SEMI, EQUAL and COMMA allow it.
fn tighten_params(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut pending_space = String::new();
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for c in value.chars() {
        if !quoted && !angle && (c == ' ' || c == '\t') {
            pending_space.push(c);
            continue;
        }
        let separator = |c: char| !quoted && !angle && matches!(c, ';' | '=' | ',');
        if !pending_space.is_empty() {
            let after_separator = out.chars().last().is_some_and(separator);
            if !after_separator && !separator(c) {
                out.push_str(&pending_space);
            }
            pending_space.clear();
        }
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            _ => {}
        }
        out.push(c);
    }
    out
}

/// FNV-1a over the parts: stable across runs and builds, which a stateless tag must be.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightens_only_outside_quotes_and_brackets() {
        assert_eq!(
            tighten_params("sip:v@h.example.com ;   tag    = 1918181833n"),
            "sip:v@h.example.com;tag=1918181833n"
        );
        assert_eq!(
            tighten_params("\"J R \\\\\\\" ; x\"   <sip:a@b ; c> ; tag = 98"),
            "\"J R \\\\\\\" ; x\"   <sip:a@b ; c>;tag=98"
        );
        assert_eq!(
            tighten_params("SIP / 2.0 / TCP h ; branch = z9 , SIP/2.0/UDP k"),
            "SIP / 2.0 / TCP h;branch=z9,SIP/2.0/UDP k"
        );
    }

    #[test]
    fn the_quick_check_agrees_with_tightening() {
        for v in [
            "sip:v@h.example.com ;   tag    = 1918181833n",
            "\"J R\" <sip:a@b ; c>;tag=98",
            "\"J R\" <sip:a@b>;tag=98",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/UDP h;branch=z9, SIP/2.0/UDP k",
            "<sip:a@b>;tag=1 ",
            "<sip:a@b>;tag=1\t",
        ] {
            if !may_tighten(v) {
                assert_eq!(tighten_params(v), v, "{v}");
            }
        }
        assert!(may_tighten("a ;b") && may_tighten("a= b") && may_tighten("a,\tb"));
        assert!(!may_tighten("\"A B\" <sip:a@b>;tag=1"));
    }

    #[test]
    fn adds_from_tag_and_content_length_and_leaves_good_messages_alone() {
        let good = b"OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:c@d>;tag=1\r\n\r\n";
        assert_eq!(
            repair(&Message::read(good), good, Transport::Datagram),
            None
        );

        let old = b"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:c@d>\r\nCall-ID: x\r\n\r\nv=0\r\n";
        let fixed = repair(&Message::read(old), old, Transport::Datagram).unwrap();
        let text = String::from_utf8(fixed.clone()).unwrap();
        assert!(text.contains("From: <sip:c@d>;tag=2543-"), "{text}");
        assert!(text.contains("Content-Length: 5\r\n\r\nv=0\r\n"), "{text}");
        assert!(text.contains("Contact: <sip:c@d>\r\n"), "{text}");
        // Deterministic: a retransmission or a later request of the call gets the same tag.
        assert_eq!(
            repair(&Message::read(old), old, Transport::Datagram),
            Some(fixed)
        );
        // Over a stream the framer decides the body; no Content-Length is added.
        let text = String::from_utf8(repair(&Message::read(old), old, Transport::Stream).unwrap())
            .unwrap();
        assert!(!text.contains("Content-Length"), "{text}");
    }
}
