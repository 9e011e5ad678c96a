//! ivrd's own SIP layer (`sip::route`, `sip::leg`, `sip::txn`, `sip::uas`) on the wire,
//! before the daemon uses it: a signalling-only UAS made of the pure cores and a blocking UDP
//! socket (no call, no media) answers real SIPp scenarios on loopback. SIPp judges the
//! messages: branches, tags, CSeq, retransmissions, CANCEL and the ACK rules are RFC 3261's
//! as SIPp reads them, not as our unit tests assume.

mod support;

use ivrd::sip::guard::message::Message;
use ivrd::sip::leg::{Event, Leg, Output, Target};
use ivrd::sip::route::{Destination, Routes};
use ivrd::sip::txn::{Reliability, Timers};
use ivrd::sip::uas::{hop, Local};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::sipp::{Sipp, SippRun};

/// What the UAS does with a new call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 180, then 200 with an SDP answer.
    Answer,
    /// 180 only: the call rings until the caller gives up.
    Ring,
}

/// What the UAS saw, for the test to check.
#[derive(Default, Debug)]
struct Seen {
    calls: usize,
    acked: usize,
    cancelled: usize,
    hung_up: usize,
    no_ack: usize,
    our_byes_answered: Vec<u16>,
    /// Legs whose transactions were all over (and so were forgotten).
    forgotten: usize,
}

struct Uas {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Uas {
    /// Starts the UAS on a loopback port. Timers are RFC 3261's divided by `speed_up`.
    fn start(mode: Mode, speed_up: u32) -> Uas {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let timers = Timers {
            t1: Timers::default().t1 / speed_up,
            t2: Timers::default().t2 / speed_up,
            t4: Timers::default().t4 / speed_up,
        };
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || serve(socket, mode, timers, &stop2, &seen2));
        Uas {
            addr,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) until `done` holds for what the UAS saw.
    fn wait_for(&self, limit: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        support::wait_for(limit, || done(&self.seen.lock().unwrap()).then_some(())).is_some()
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The whole UAS: read, route, hand to the leg, run timers, send what the legs say.
fn serve(socket: UdpSocket, mode: Mode, timers: Timers, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let here = socket.local_addr().unwrap();
    let local = Local {
        transport: "UDP",
        sent_by: here.to_string(),
        contact: format!("sip:ivr@{here}"),
    };
    let mut routes: Routes<usize> = Routes::default();
    let mut legs: Vec<Option<Leg>> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut branches = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let next = legs.iter().flatten().filter_map(Leg::poll_timeout).min();
        let wait = next
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(50))
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        socket.set_read_timeout(Some(wait)).unwrap();
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let bytes = &buf[..n];
            let m = Message::read(bytes);
            match routes.route(&m) {
                Destination::Leg(i) => {
                    if let Some(leg) = legs[i].as_mut() {
                        leg.on_message(Instant::now(), bytes, from);
                    }
                }
                Destination::NewCall => {
                    let tag = format!("ivr{}", legs.len());
                    let mut leg = Leg::new(
                        bytes.to_vec(),
                        from,
                        &tag,
                        local.clone(),
                        1,
                        timers,
                        Reliability::Unreliable,
                    )
                    .expect("SIPp's INVITE makes a leg");
                    let now = Instant::now();
                    leg.provisional(now, (180, "Ringing"));
                    if mode == Mode::Answer {
                        let sdp = format!(
                            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
                            here.port() + 2
                        );
                        leg.accept(
                            now,
                            &[("Allow", "INVITE, ACK, CANCEL, BYE")],
                            sdp.as_bytes(),
                        );
                    }
                    routes.add(&leg, legs.len());
                    legs.push(Some(leg));
                    seen.lock().unwrap().calls += 1;
                }
                Destination::Elsewhere => {}
            }
        }
        let now = Instant::now();
        for slot in legs.iter_mut() {
            let Some(leg) = slot.as_mut() else { continue };
            if leg.poll_timeout().is_some_and(|at| at <= now) {
                leg.on_timeout(now);
            }
            while let Some(out) = leg.poll_output() {
                match out {
                    Output::Send { bytes, to } => {
                        let to = match to {
                            Target::Addr(a) => a,
                            Target::Uri(uri) => {
                                let h = hop(&uri).expect("a SIP URI");
                                SocketAddr::new(h.host.parse().expect("an IP"), h.port)
                            }
                        };
                        socket.send_to(&bytes, to).unwrap();
                    }
                    Output::Event(event) => {
                        let mut s = seen.lock().unwrap();
                        match event {
                            Event::Acked { .. } => s.acked += 1,
                            Event::Cancelled => s.cancelled += 1,
                            Event::HungUp => s.hung_up += 1,
                            Event::NoAck => {
                                s.no_ack += 1;
                                branches += 1;
                                let branch = format!("bye{branches}");
                                leg.request(now, "BYE", &branch, &[], None);
                            }
                            Event::Answered { method, code, .. } if method == "BYE" => {
                                s.our_byes_answered.push(code)
                            }
                            Event::Answered { .. } => {}
                            Event::Request { id, .. } => {
                                leg.respond(now, &id, (200, "OK"), &[], None);
                            }
                        }
                    }
                }
            }
            // Once every transaction is over the call's signalling is done here.
            if leg.is_idle() {
                routes.remove(leg);
                *slot = None;
                seen.lock().unwrap().forgotten += 1;
            }
        }
    }
}

/// Runs `calls` calls of a scenario against the UAS (10 a second, bounded) and requires
/// SIPp's success; `expect`, if given, is how many responses `(code, method)` SIPp must get.
fn run_scenario(
    uas: &Uas,
    scenario: &str,
    calls: u32,
    expect: Option<(u16, &str, usize)>,
) -> SippRun {
    let run = Sipp::new(scenario, uas.addr)
        .calls(calls)
        .rate(10.0)
        .timeout(Duration::from_secs(45))
        .run();
    run.assert_success();
    if let Some((code, method, count)) = expect {
        let got = run.received_responses(code, method).count();
        assert_eq!(got, count, "{code} for {method}\n{}", run.report());
    }
    run
}

#[test]
fn sipps_basic_calls_are_answered_and_hung_up_through_the_own_sip_layer() {
    let uas = Uas::start(Mode::Answer, 10);
    run_scenario(&uas, "basic_call.xml", 5, Some((200, "BYE", 5)));
    // Timer L (64·T1, here 3.2 s) ends each INVITE transaction after its ACK.
    assert!(
        uas.wait_for(Duration::from_secs(10), |s| s.forgotten == 5),
        "{:?}",
        uas.seen.lock().unwrap()
    );
    let s = uas.seen.lock().unwrap();
    assert_eq!(
        (s.calls, s.acked, s.hung_up, s.no_ack),
        (5, 5, 5, 0),
        "{s:?}"
    );
}

#[test]
fn a_cancelled_call_gets_200_and_487_and_the_487_is_acknowledged() {
    let uas = Uas::start(Mode::Ring, 10);
    run_scenario(&uas, "cancel.xml", 3, Some((487, "INVITE", 3)));
    assert!(
        uas.wait_for(Duration::from_secs(10), |s| s.forgotten == 3),
        "{:?}",
        uas.seen.lock().unwrap()
    );
    assert_eq!(uas.seen.lock().unwrap().cancelled, 3);
}

#[test]
fn an_answer_never_acknowledged_is_retransmitted_then_ended_with_our_bye() {
    // T1 = 50 ms: the 200 goes out at 0, 50, 150, 350, ... and after 64·T1 = 3.2 s the
    // leg tells the call, which hangs up; no_ack.xml answers that BYE.
    let uas = Uas::start(Mode::Answer, 10);
    let run = run_scenario(&uas, "no_ack.xml", 1, None);
    let oks = run.received_responses(200, "INVITE").count();
    assert!(
        oks >= 8,
        "the 200 was retransmitted only {oks} times\n{}",
        run.report()
    );
    assert!(
        uas.wait_for(Duration::from_secs(10), |s| s.our_byes_answered == [200]),
        "{:?}",
        uas.seen.lock().unwrap()
    );
    assert_eq!(uas.seen.lock().unwrap().no_ack, 1);
}

#[test]
fn a_bye_before_the_ack_ends_the_call_and_stops_the_retransmissions() {
    let uas = Uas::start(Mode::Answer, 10);
    run_scenario(&uas, "bye_before_ack.xml", 2, Some((200, "BYE", 2)));
    let s = uas.seen.lock().unwrap();
    assert_eq!((s.hung_up, s.no_ack), (2, 0), "{s:?}");
}
