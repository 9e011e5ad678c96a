//! SDP offers from the network: parse, negotiate, answer. Nothing may panic, and the answer
//! ivrd would send must be SDP that reads back as exactly what was negotiated.
#![no_main]

use ivrd::sip::sdp::{self, Direction, LocalAudio};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const OUR_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = sdp::parse(data) else {
        return;
    };
    let _ = sdp::accept_answer(&offer);
    let Ok(neg) = sdp::negotiate(&offer) else {
        return;
    };
    let local = LocalAudio {
        ip: OUR_IP,
        port: 40_000,
        session_id: 7,
        version: 1,
    };
    let answer = sdp::answer(&local, &offer, &neg);
    let back = sdp::parse(answer.as_bytes())
        .unwrap_or_else(|e| panic!("our answer does not parse ({e}):\n{answer}"));
    assert_eq!(
        back.codecs.first(),
        Some(&(neg.payload_type, neg.codec)),
        "answer codec:\n{answer}"
    );
    assert_eq!(
        back.telephone_event, neg.telephone_event,
        "answer events:\n{answer}"
    );
    assert_eq!(
        back.rtp,
        Some(SocketAddr::new(OUR_IP, 40_000)),
        "answer address:\n{answer}"
    );
    let expected: Direction = neg.local_direction;
    assert_eq!(back.direction, expected, "answer direction:\n{answer}");
});
