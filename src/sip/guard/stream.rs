//! Cutting SIP messages out of a TCP byte stream (RFC 3261 §18.3): the header section ends
//! at the first blank line and Content-Length says how much body follows. When that cannot
//! be known (a bad or repeated Content-Length, RFC 4475 §3.3.9) or the stream ends inside a
//! message, the stream cannot be resynchronised; the framer says so and the connection is
//! closed after a 400 to whoever sent the request.
//!
//! rsipstack's own codec closes the connection on such input without answering, and waits
//! forever for a body that never comes; this is why ivrd frames TCP itself.

use super::message::Message;
use super::rules::Refusal;
use super::{refuse_or_drop, Policy, Verdict};

/// What the bytes at the front of a stream buffer are.
#[derive(Debug)]
pub enum Frame {
    /// Not enough bytes to tell yet.
    NeedMore,
    /// A CRLFCRLF keep-alive ping (RFC 5626 §3.5.1) of `len` bytes; answer with CRLF.
    Ping { len: usize },
    /// `len` bytes of line ends between messages (a pong, or padding): skip them.
    Skip { len: usize },
    /// One complete message in the first `len` bytes; judge it with
    /// [`super::inspect_frame`].
    Message { len: usize },
    /// The stream cannot be cut any further: act on the verdict (answer or drop), then
    /// close the connection.
    Broken(Verdict),
}

const PING: &[u8] = b"\r\n\r\n";

/// Looks at the front of `buf`. `eof` says the peer has stopped sending, so whatever is
/// incomplete now stays incomplete.
pub fn next_frame(buf: &[u8], policy: &Policy, eof: bool) -> Frame {
    if buf.is_empty() {
        return Frame::NeedMore;
    }
    if buf.starts_with(PING) {
        return Frame::Ping { len: PING.len() };
    }
    if matches!(buf[0], b'\r' | b'\n') {
        if PING.starts_with(buf) && !eof {
            // Could still become a ping.
            return Frame::NeedMore;
        }
        let len = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        return Frame::Skip { len };
    }
    let window = &buf[..buf.len().min(policy.max_bytes.saturating_add(PING.len()))];
    let Some(blank) = super::message::find(window, PING) else {
        if buf.len() > policy.max_bytes {
            return broken(buf, Refusal::too_large());
        }
        if eof {
            return broken(buf, truncated("stream ended inside the header fields"));
        }
        return Frame::NeedMore;
    };
    let head_len = blank + PING.len();
    let head = &buf[..head_len];
    let m = Message::read(head);
    let lengths: Vec<&str> = m.values("Content-Length", Some("l")).collect();
    let body_len = match lengths.as_slice() {
        // Absent: no body (RFC 3261 §20.14 makes it mandatory on streams; reading it as
        // zero is what every stack does).
        [] => 0,
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => {
            match one.parse::<usize>() {
                Ok(n) => n,
                Err(_) => return broken(head, Refusal::too_large()),
            }
        }
        [_] => {
            return broken(
                head,
                bad_length("Content-Length is not a non-negative number"),
            )
        }
        _ => return broken(head, bad_length("more than one Content-Length")),
    };
    let total = head_len.saturating_add(body_len);
    if total > policy.max_bytes {
        return broken(head, Refusal::too_large());
    }
    if buf.len() >= total {
        Frame::Message { len: total }
    } else if eof {
        broken(head, truncated("stream ended inside the body"))
    } else {
        Frame::NeedMore
    }
}

fn broken(bytes: &[u8], refusal: Refusal) -> Frame {
    Frame::Broken(refuse_or_drop(&Message::read(bytes), refusal))
}

fn truncated(why: &'static str) -> Refusal {
    Refusal::new(400, "Bad Request", "truncated", why)
}

fn bad_length(why: &'static str) -> Refusal {
    Refusal::new(400, "Bad Request", "bad_content_length", why)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: x1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

    fn policy() -> Policy {
        Policy::new(super::super::DEFAULT_MAX_MESSAGE_BYTES)
    }

    #[test]
    fn cuts_back_to_back_messages_and_keepalives() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(OPTIONS.as_bytes());
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(OPTIONS.as_bytes());
        let p = policy();
        assert!(matches!(
            next_frame(&stream, &p, false),
            Frame::Ping { len: 4 }
        ));
        let rest = &stream[4..];
        let Frame::Message { len } = next_frame(rest, &p, false) else {
            panic!()
        };
        assert_eq!(len, OPTIONS.len());
        let rest = &rest[len..];
        assert!(matches!(
            next_frame(rest, &p, false),
            Frame::Skip { len: 2 }
        ));
        assert!(matches!(
            next_frame(&rest[2..], &p, false),
            Frame::Message { .. }
        ));
        assert!(matches!(next_frame(b"\r\n", &p, false), Frame::NeedMore));
        assert!(matches!(
            next_frame(b"\r\n", &p, true),
            Frame::Skip { len: 2 }
        ));
    }

    #[test]
    fn waits_for_the_body_and_refuses_what_ended_early() {
        let p = policy();
        let partial = &OPTIONS.as_bytes()[..OPTIONS.len() - 2];
        assert!(matches!(next_frame(partial, &p, false), Frame::NeedMore));
        let Frame::Broken(Verdict::Reply { response, reason }) = next_frame(partial, &p, true)
        else {
            panic!()
        };
        assert!(response.starts_with(b"SIP/2.0 400 "));
        assert_eq!(reason, "truncated");
    }

    #[test]
    fn an_unknowable_length_breaks_the_stream() {
        let p = policy();
        for bad in [
            "Content-Length: -4",
            "Content-Length: 4\r\nl: 5",
            "Content-Length: 99999999",
        ] {
            let m = OPTIONS.replace("Content-Length: 4", bad);
            assert!(
                matches!(
                    next_frame(m.as_bytes(), &p, false),
                    Frame::Broken(Verdict::Reply { .. })
                ),
                "{bad}"
            );
        }
        let endless = vec![b'A'; 70_000];
        assert!(matches!(
            next_frame(&endless, &p, false),
            Frame::Broken(Verdict::Drop { .. })
        ));
    }
}
