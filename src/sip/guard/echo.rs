//! The start of any response to a request: the status line and the fields RFC 3261 §8.2.6
//! copies from the request (every Via, From, To, Call-ID, CSeq), values cleaned of control
//! characters. Shared by the guard's stateless refusals and the dialog's own responses.

use super::message::Message;
use super::{has_tag, split_top};
use std::net::SocketAddr;

/// Status line plus the copied fields, each line ending in CRLF. `to_tag` is added to a To
/// that has none (the request opened no dialog yet); a To that has one keeps it. `source`
/// (where the request came from) stamps the top Via ([`stamp_via`]).
pub fn response_head(
    m: &Message,
    code: u16,
    phrase: &str,
    to_tag: &str,
    source: Option<SocketAddr>,
) -> String {
    let mut r = status_line(code, phrase);
    r.push_str(&copied_fields(m, to_tag, source));
    r
}

/// `SIP/2.0 code phrase` CRLF, in a string with room for the rest of a response.
pub fn status_line(code: u16, phrase: &str) -> String {
    let mut r = String::with_capacity(768);
    r.push_str("SIP/2.0 ");
    r.push_str(&code.to_string());
    r.push(' ');
    r.push_str(phrase);
    r.push_str("\r\n");
    r
}

/// The fields every response to `m` copies, as [`response_head`] writes them after its
/// status line: the same for all responses to one request, so they can be kept.
pub fn copied_fields(m: &Message, to_tag: &str, source: Option<SocketAddr>) -> String {
    let mut r = String::with_capacity(512);
    for (i, via) in m.values("Via", Some("v")).enumerate() {
        match source {
            Some(from) if i == 0 => line(&mut r, "Via", &stamp_via(via, from)),
            _ => line(&mut r, "Via", via),
        }
    }
    if let Some(from) = m.first("From", Some("f")) {
        line(&mut r, "From", from);
    }
    if let Some(to) = m.first("To", Some("t")) {
        if has_tag(to) {
            line(&mut r, "To", to);
        } else {
            line(&mut r, "To", &format!("{to};tag={to_tag}"));
        }
    }
    if let Some(call_id) = m.first("Call-ID", Some("i")) {
        line(&mut r, "Call-ID", call_id);
    }
    if let Some(cseq) = m.first("CSeq", None) {
        line(&mut r, "CSeq", cseq);
    }
    r
}

/// The top Via of a request as its response carries it back: `received` with the source
/// address when it differs from the sent-by host (RFC 3261 §18.2.1), and with `rport`
/// asked for, the source port in it and `received` always (RFC 3581 §4). Phones behind NAT
/// learn their public address from these. Only the first value of a comma-joined line is
/// the top Via.
pub fn stamp_via(via: &str, from: SocketAddr) -> String {
    let (top, others) = match split_top(via, b',').next() {
        Some(top) if top.len() < via.len() => (top, &via[top.len()..]),
        _ => (via, ""),
    };
    let mut parts = top.split(';');
    let sent = parts.next().unwrap_or_default().trim_end();
    let host = sent
        .split_whitespace()
        .nth(1)
        .map(|hostport| match hostport.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => hostport.split(':').next().unwrap_or(hostport),
        })
        .unwrap_or_default();
    let ip = from.ip().to_string();
    let mut params: Vec<String> = Vec::new();
    let mut rport = false;
    for p in parts {
        let name = p.split('=').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("rport") {
            rport = true;
            params.push(format!("rport={}", from.port()));
        } else if !name.eq_ignore_ascii_case("received") {
            params.push(p.to_string());
        }
    }
    if rport || host != ip {
        params.push(format!("received={ip}"));
    }
    let mut out = String::with_capacity(via.len() + 40);
    out.push_str(sent);
    for p in params {
        out.push(';');
        out.push_str(&p);
    }
    out.push_str(others);
    out
}

/// Appends `name: value` CRLF, the value without control characters and bounded (it may
/// come from the network).
pub fn line(r: &mut String, name: &str, value: &str) {
    r.push_str(name);
    r.push_str(": ");
    // Almost every value is printable ASCII: copied whole, not char by char.
    if value.len() <= 1024 && value.bytes().all(|b| (b' '..0x7f).contains(&b)) {
        r.push_str(value);
    } else {
        r.extend(value.chars().filter(|c| !c.is_control()).take(1024));
    }
    r.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::stamp_via;

    fn stamp(via: &str, from: &str) -> String {
        stamp_via(via, from.parse().unwrap())
    }

    #[test]
    fn a_phone_behind_nat_learns_its_public_address_and_port() {
        assert_eq!(
            stamp(
                "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;rport",
                "192.0.2.7:40000"
            ),
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;rport=40000;received=192.0.2.7"
        );
        // Without rport only the address differs, so only `received` is added.
        assert_eq!(
            stamp("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKx", "192.0.2.7:40000"),
            "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKx;received=192.0.2.7"
        );
    }

    #[test]
    fn a_via_that_already_names_the_source_is_kept_unless_rport_asks() {
        let via = "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKa1";
        assert_eq!(stamp(via, "127.0.0.1:5061"), via);
        assert_eq!(
            stamp("SIP/2.0/UDP [::1]:5061;branch=z9hG4bKa1", "[::1]:5061"),
            "SIP/2.0/UDP [::1]:5061;branch=z9hG4bKa1"
        );
        // RFC 3581 §4: with rport, `received` goes in even when it is the same address.
        assert_eq!(
            stamp(&format!("{via};rport"), "127.0.0.1:5061"),
            format!("{via};rport=5061;received=127.0.0.1")
        );
    }

    #[test]
    fn only_the_top_via_of_a_joined_line_is_stamped_and_a_stale_received_is_replaced() {
        assert_eq!(
            stamp(
                "SIP/2.0/UDP a.example.com;received=1.1.1.1;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
                "192.0.2.7:5060"
            ),
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=192.0.2.7, SIP/2.0/UDP b;branch=z9hG4bK2"
        );
    }
}
