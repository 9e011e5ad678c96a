//! SIP from the network: the guard on the bytes as one datagram, the stream framer and the
//! guard on the same bytes as a TCP stream, and rsipstack's parser on its own. Nothing may
//! panic, and every answer the guard builds must itself read as a SIP response.
#![no_main]

use ivrd::sip::guard::stream::{next_frame, Frame};
use ivrd::sip::guard::{self, Policy, Verdict};
use libfuzzer_sys::fuzz_target;
use rsipstack::sip::{SipMessage, Transport};
use rsipstack::transport::SipConnection;
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    let policy = Policy {
        max_bytes: guard::DEFAULT_MAX_MESSAGE_BYTES,
        allow: "INVITE, ACK, BYE, CANCEL, OPTIONS".into(),
    };
    check(guard::inspect(data, &policy));
    let _ = SipMessage::try_from(data);
    // A small limit, picked by the input, reaches the too-large paths too.
    let small = Policy::new(usize::from(data.first().copied().unwrap_or(0)) * 8);
    check(guard::inspect(data, &small));
    for policy in [&policy, &small] {
        let mut rest = data;
        loop {
            match next_frame(rest, policy, true) {
                Frame::NeedMore => break,
                Frame::Ping { len } | Frame::Skip { len } => rest = &rest[len..],
                Frame::Message { len } => {
                    check(guard::inspect_frame(&rest[..len], policy));
                    rest = &rest[len..];
                }
                Frame::Broken(verdict) => {
                    check(verdict);
                    break;
                }
            }
        }
    }
});

/// A reply goes back on the wire: it must be a response a SIP stack can read. A message
/// let through must survive what the transports do next (note the sender in Via), or
/// rsipstack would drop it without an answer.
fn check(verdict: Verdict) {
    match verdict {
        Verdict::Reply { response, .. } => {
            if !matches!(
                SipMessage::try_from(response.as_slice()),
                Ok(SipMessage::Response(_))
            ) {
                panic!(
                    "the guard built a reply that is not a SIP response:\n{}",
                    String::from_utf8_lossy(&response)
                );
            }
        }
        Verdict::Pass(passed) => {
            let from = SocketAddr::from(([192, 0, 2, 7], 5062));
            if let Err(e) = SipConnection::update_msg_received(passed.message, from, Transport::Udp)
            {
                panic!("the guard let through a message whose Via rsipstack rejects: {e}");
            }
        }
        Verdict::KeepAlive | Verdict::Drop { .. } => {}
    }
}
