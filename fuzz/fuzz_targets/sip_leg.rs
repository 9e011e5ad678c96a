//! ivrd's own SIP layer on network input, as the daemon runs it over UDP: the input is a
//! run of datagrams (split at NUL bytes) from one peer, 700 ms apart. Each one the guard's
//! rules accept goes through the routing table; the first new INVITE becomes a leg that
//! rings and answers, later ones reach it, its timers run, and the call answers every
//! request it is handed (and sends BYE when told its answer was never acknowledged).
//! Nothing may panic, and everything the leg sends must read back as SIP.
#![no_main]

use ivrd::sip::guard::echo::stamp_via;
use ivrd::sip::guard::message::Message;
use ivrd::sip::guard::{read_datagram, Policy, Reading, DEFAULT_MAX_MESSAGE_BYTES};
use ivrd::sip::leg::{Event, Leg, Output};
use ivrd::sip::route::{Destination, Routes};
use ivrd::sip::txn::{Reliability, Timers};
use ivrd::sip::uas::Local;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::new(DEFAULT_MAX_MESSAGE_BYTES);
    let from = SocketAddr::from(([192, 0, 2, 7], 5062));
    let t0 = Instant::now();
    let mut routes: Routes<()> = Routes::default();
    let mut leg: Option<Leg> = None;
    let mut now = t0;
    for datagram in data.split(|&b| b == 0) {
        now += Duration::from_millis(700);
        let Reading::Accepted(m) = read_datagram(datagram, false, &policy) else {
            continue;
        };
        if let Some(via) = m.first("Via", Some("v")) {
            let _ = stamp_via(via, from);
        }
        match (routes.route(&m), &mut leg) {
            (Destination::NewCall, None) => {
                let local = Local {
                    transport: "UDP",
                    sent_by: "192.0.2.1:5060".into(),
                    contact: "sip:ivrd@192.0.2.1:5060".into(),
                };
                let Ok(mut new) = Leg::new(
                    datagram.to_vec(),
                    from,
                    "us",
                    local,
                    1,
                    Timers::default(),
                    Reliability::Unreliable,
                ) else {
                    continue;
                };
                new.provisional(now, (180, "Ringing"));
                new.accept(now, &[("Allow", "INVITE, ACK, BYE")], b"v=0\r\n");
                routes.add(&new, ());
                leg = Some(new);
            }
            (Destination::Leg(()), Some(l)) => l.on_message(now, datagram, from),
            _ => {}
        }
        if let Some(l) = &mut leg {
            if l.poll_timeout().is_some_and(|at| at <= now) {
                l.on_timeout(now);
            }
            settle(l, now);
        }
    }
    let Some(mut l) = leg else {
        return;
    };
    // The call hangs up, then every timer runs out: the leg must end (bounded).
    l.request(now, "BYE", "fuzzbye", &[], None);
    settle(&mut l, now);
    let mut steps = 0;
    while let Some(at) = l.poll_timeout() {
        l.on_timeout(at);
        settle(&mut l, at);
        steps += 1;
        assert!(steps < 100_000, "timers that never stop");
    }
    assert!(l.is_quiet(), "a leg whose timers all ran is quiet");
    let keys = routes.keys_of(&l);
    routes.set(&keys, ());
    routes.forget(&keys);
    assert!(routes.is_empty());
});

/// What the leg sends must read back as SIP; the call answers what it is handed.
fn settle(l: &mut Leg, now: Instant) {
    while let Some(out) = l.poll_output() {
        match out {
            Output::Send { bytes, .. } => {
                let m = Message::read(&bytes);
                assert!(
                    m.start.is_ok() && m.problem.is_none(),
                    "the leg sent what does not read as SIP:\n{}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            Output::Event(Event::Request { id, .. }) => {
                l.respond(now, &id, (200, "OK"), &[], None);
            }
            Output::Event(Event::NoAck) => {
                l.request(now, "BYE", "noack", &[], None);
            }
            Output::Event(_) => {}
        }
    }
}
