//! What the answer path's signalling costs in ivrd's own SIP layer (`sip::leg`: INVITE,
//! 180, 200, ACK, BYE and its 200, every transaction and the dialog) against the least
//! rsipstack does with the same three messages before its transactions and dialogs start:
//! parsing them and computing their transaction keys. Same messages, same process,
//! alternating rounds; prints nanoseconds per call and the ratio.
//!
//! `cargo bench --bench sip_leg` measures; under `cargo test` it runs a few calls only, to
//! prove it still works.

use ivrd::sip::leg::{Leg, Output};
use ivrd::sip::txn::{Reliability, Timers};
use ivrd::sip::uas::Local;
use rsipstack::sip::SipMessage;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

// The daemon's allocator: both sides allocate, and the figures should be the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// INVITE, ACK and BYE of call `n`, as SIPp's `uac` scenario sends them.
fn call(n: usize) -> [Vec<u8>; 3] {
    let head = |method: &str, branch: &str, cseq: &str, to_tag: &str| {
        format!(
            "{method} sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-{branch}\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag={n}SIPpTag00{n}\r\n\
To: service <sip:service@127.0.0.1:5060>{to_tag}\r\n\
Call-ID: {n}-4242@127.0.0.1\r\nCSeq: {cseq}\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\nSubject: Performance Test\r\n"
        )
    };
    let sdp =
        "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        head("INVITE", "0", "1 INVITE", ""),
        sdp.len()
    );
    let ack = format!(
        "{}Content-Length: 0\r\n\r\n",
        head("ACK", "2", "1 ACK", ";tag=us")
    );
    let bye = format!(
        "{}Content-Length: 0\r\n\r\n",
        head("BYE", "3", "2 BYE", ";tag=us")
    );
    [invite.into_bytes(), ack.into_bytes(), bye.into_bytes()]
}

fn own(calls: &[[Vec<u8>; 3]]) -> usize {
    let from: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let local = Local {
        transport: "UDP",
        sent_by: "127.0.0.1:5060".into(),
        contact: "sip:ivr@127.0.0.1:5060".into(),
    };
    let mut sent = 0;
    let now = Instant::now();
    for [invite, ack, bye] in calls {
        let mut leg = Leg::new(
            invite.clone(),
            from,
            "us",
            local.clone(),
            1,
            Timers::default(),
            Reliability::Unreliable,
        )
        .expect("a good INVITE");
        leg.provisional(now, (180, "Ringing"));
        leg.accept(now, &[], b"v=0\r\n");
        leg.on_message(now, ack, from);
        leg.on_message(now, bye, from);
        while let Some(o) = leg.poll_output() {
            if let Output::Send { bytes, .. } = o {
                sent += black_box(bytes).len();
            }
        }
    }
    sent
}

fn reference(calls: &[[Vec<u8>; 3]]) -> usize {
    let mut keys = 0;
    for messages in calls {
        for bytes in messages {
            let Ok(SipMessage::Request(r)) = SipMessage::try_from(bytes.as_slice()) else {
                panic!("rsipstack cannot read the message");
            };
            if black_box(TransactionKey::from_request(&r, TransactionRole::Server)).is_ok() {
                keys += 1;
            }
        }
    }
    keys
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (n, rounds) = if measuring { (20_000, 7) } else { (50, 1) };
    let calls: Vec<_> = (0..n).map(call).collect();
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let t = Instant::now();
        assert!(own(&calls) > 0);
        times[0].push(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        assert_eq!(reference(&calls), 3 * n);
        times[1].push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (own, reference) = (median(&mut times[0]), median(&mut times[1]));
    println!("sip_leg: {n} calls x {rounds} rounds, medians per call");
    println!("  own leg, whole answer path (INVITE..BYE, 4 responses built): {own:>8.0} ns");
    println!("  rsipstack, parse + transaction key of the 3 requests only:   {reference:>8.0} ns");
    println!("  ratio own / rsipstack-parse: {:.2}", own / reference);
}
