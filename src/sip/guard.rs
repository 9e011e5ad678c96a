//! The guard in front of the SIP stack: every datagram passes here before rsipstack sees
//! it. rsipstack drops what it cannot parse without a word; a phone or PBX that sent a
//! broken request deserves a `400 Bad Request` saying why, so this module answers those
//! itself and lets everything well-formed through. Pure: bytes in, verdict out.

use rsipstack::sip::SipMessage;

/// Largest SIP message accepted over UDP (RFC 3261 §18.1.1 keeps requests under the MTU
/// unless congestion-controlled; 64 KiB is the datagram limit).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 65_535;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the message to the SIP stack.
    Pass,
    /// Send these bytes back to the sender and drop the message.
    Reply {
        response: Vec<u8>,
        reason: &'static str,
    },
    /// Drop silently (responses and garbage cannot be answered).
    Drop { reason: &'static str },
}

pub fn inspect(datagram: &[u8], max_bytes: usize) -> Verdict {
    if datagram.iter().all(|b| b.is_ascii_whitespace()) {
        return Verdict::Pass; // CRLF keep-alives (RFC 5626)
    }
    let text = String::from_utf8_lossy(datagram);
    let request_line = RequestLine::parse(&text);
    if datagram.len() > max_bytes {
        return match request_line {
            Some(_) => reply(
                &text,
                513,
                "Message Too Large",
                "message too large",
                "too_large",
            ),
            None => Verdict::Drop {
                reason: "too_large",
            },
        };
    }
    let parsed = SipMessage::try_from(datagram);
    match (parsed, request_line) {
        (Ok(SipMessage::Request(_)), Some(_)) => match content_length_problem(&text, datagram) {
            Some(why) => reply(&text, 400, "Bad Request", why, "bad_content_length"),
            None => Verdict::Pass,
        },
        (Ok(SipMessage::Response(_)), _) => Verdict::Pass,
        (Ok(SipMessage::Request(_)), None) => reply(
            &text,
            400,
            "Bad Request",
            "malformed request line",
            "malformed",
        ),
        (Err(_), Some(_)) => reply(&text, 400, "Bad Request", "malformed request", "malformed"),
        (Err(_), None) => Verdict::Drop {
            reason: "unparseable",
        },
    }
}

/// `METHOD SP Request-URI SP SIP/2.0`, loosely: enough to know a response is owed.
struct RequestLine;

impl RequestLine {
    fn parse(text: &str) -> Option<RequestLine> {
        let first = text.lines().next()?;
        let mut parts = first.split(' ');
        let method = parts.next()?;
        let version = first.rsplit(' ').next()?;
        let is_token = !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
        (is_token && version.eq_ignore_ascii_case("SIP/2.0") && first.split(' ').count() >= 3)
            .then_some(RequestLine)
    }
}

/// Over UDP the Content-Length must not claim more bytes than arrived (RFC 3261 §18.3).
fn content_length_problem(text: &str, datagram: &[u8]) -> Option<&'static str> {
    let header_end = find_subslice(datagram, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| find_subslice(datagram, b"\n\n").map(|i| i + 2))?;
    let body_len = datagram.len() - header_end;
    let (_, value) = raw_headers(text)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))?;
    match value.trim().parse::<u64>() {
        Ok(n) if n as usize > body_len => Some("Content-Length is larger than the body"),
        Ok(_) => None,
        Err(_) => Some("Content-Length is not a number"),
    }
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Header lines of a message as (name, value), unfolding continuation lines. Stops at the
/// blank line that ends the headers.
fn raw_headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n').skip(1) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((n, v)) = line.split_once(':') {
            out.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// Builds a response from the request's raw headers (RFC 3261 §8.2.6: copy Via, From,
/// To, Call-ID and CSeq). Without a Via there is nowhere to send it, so drop instead.
fn reply(text: &str, code: u16, phrase: &str, why: &str, reason: &'static str) -> Verdict {
    let headers = raw_headers(text);
    let pick = |long: &str, short: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(long) || n.eq_ignore_ascii_case(short))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let vias = pick("via", "v");
    if vias.is_empty() {
        return Verdict::Drop { reason };
    }
    let mut r = format!("SIP/2.0 {code} {phrase}\r\n");
    for v in vias {
        r.push_str(&format!("Via: {}\r\n", clean(v)));
    }
    for (long, short, name) in [
        ("from", "f", "From"),
        ("to", "t", "To"),
        ("call-id", "i", "Call-ID"),
        ("cseq", "cseq", "CSeq"),
    ] {
        if let Some(v) = pick(long, short).first() {
            let mut v = clean(v);
            if name == "To" && !v.to_ascii_lowercase().contains("tag=") {
                v.push_str(";tag=ivrd400");
            }
            r.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    r.push_str(&format!(
        "Warning: 399 ivrd \"{why}\"\r\nServer: ivrd\r\nContent-Length: 0\r\n\r\n"
    ));
    Verdict::Reply {
        response: r.into_bytes(),
        reason,
    }
}

/// Header values copied into a response: no control characters, bounded.
fn clean(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).take(1024).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: x1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn good_requests_pass() {
        assert_eq!(
            inspect(OPTIONS.as_bytes(), DEFAULT_MAX_MESSAGE_BYTES),
            Verdict::Pass
        );
        assert_eq!(
            inspect(b"\r\n\r\n", DEFAULT_MAX_MESSAGE_BYTES),
            Verdict::Pass
        );
    }

    #[test]
    fn content_length_beyond_the_body_gets_400() {
        let m = OPTIONS.replace("Content-Length: 0", "Content-Length: 50");
        let Verdict::Reply { response, .. } = inspect(m.as_bytes(), DEFAULT_MAX_MESSAGE_BYTES)
        else {
            panic!()
        };
        let r = String::from_utf8(response).unwrap();
        assert!(r.starts_with("SIP/2.0 400 Bad Request\r\n"), "{r}");
        assert!(
            r.contains("Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n"),
            "{r}"
        );
        assert!(r.contains("Call-ID: x1\r\n"), "{r}");
        assert!(r.contains("To: <sip:ivr@127.0.0.1>;tag="), "{r}");
    }

    #[test]
    fn garbage_is_dropped_and_oversize_gets_513() {
        assert!(matches!(
            inspect(b"\x00\x01hello", 100),
            Verdict::Drop { .. }
        ));
        let big = format!("{OPTIONS}{}", "x".repeat(200));
        let Verdict::Reply { response, .. } = inspect(big.as_bytes(), 100) else {
            panic!()
        };
        assert!(response.starts_with(b"SIP/2.0 513"));
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
            let _ = inspect(&bytes, DEFAULT_MAX_MESSAGE_BYTES);
            let mut prefixed = OPTIONS.as_bytes()[..40.min(len + 10)].to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = inspect(&prefixed, DEFAULT_MAX_MESSAGE_BYTES);
        }
    }
}
