//! The start of any response to a request: the status line and the fields RFC 3261 §8.2.6
//! copies from the request (every Via, From, To, Call-ID, CSeq), values cleaned of control
//! characters. Shared by the guard's stateless refusals and the dialog's own responses.

use super::has_tag;
use super::message::Message;

/// Status line plus the copied fields, each line ending in CRLF. `to_tag` is added to a To
/// that has none (the request opened no dialog yet); a To that has one keeps it.
pub fn response_head(m: &Message, code: u16, phrase: &str, to_tag: &str) -> String {
    let mut r = status_line(code, phrase);
    r.push_str(&copied_fields(m, to_tag));
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
pub fn copied_fields(m: &Message, to_tag: &str) -> String {
    let mut r = String::with_capacity(512);
    for via in m.values("Via", Some("v")) {
        line(&mut r, "Via", via);
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
