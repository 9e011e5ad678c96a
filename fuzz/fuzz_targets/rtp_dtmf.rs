//! RTP and DTMF from the network. The input is a run of packets, each prefixed by a
//! two-byte big-endian length (the last takes whatever is left), fed in order through
//! RTP parsing into one RFC 4733 receiver, so its state sees sequences too. The whole input
//! is also tried as a SIP INFO body of each DTMF content type.
#![no_main]

use ivrd::media::dtmf::{parse_info, Rfc4733Receiver};
use ivrd::media::rtp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for content_type in [
        "application/dtmf-relay",
        "application/dtmf",
        "Application/DTMF-Relay; charset=utf-8",
        "text/plain",
    ] {
        let _ = parse_info(content_type, data);
    }
    let mut receiver = Rfc4733Receiver::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (packet, next) = match rest {
            [hi, lo, tail @ ..] => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
                tail.split_at(len)
            }
            _ => (rest, &rest[rest.len()..]),
        };
        rest = next;
        if let Ok(p) = rtp::parse(packet) {
            if let Some(key) = receiver.on_packet(p.timestamp, p.payload) {
                assert!("0123456789*#ABCD".contains(key), "not a key: {key:?}");
            }
        }
    }
});
