//! Edge scenarios of a call, from outside on loopback: the SIP races and media failures a
//! phone line meets (issue 6, part 5).
//!
//! - a retransmitted INVITE (same branch) is answered once;
//! - BYE before the ACK ends the call and the 200 OK retransmissions (SIPp);
//! - CANCEL racing the 200 OK gets exactly one final response for the INVITE, in either
//!   order;
//! - overlapping re-INVITEs: the second gets 491 while the first's ACK is outstanding (SIPp);
//! - a call whose RTP never arrives is ended by `media.rtp_timeout_s`, a held call is not;
//! - the caller hanging up during a prompt stops the prompt's RTP at once;
//! - an RTP flood on a call's port is cut at `media.max_rtp_packets_per_s` and counted, and
//!   the call goes on.
//!
//! Every wait is bounded. `slow_*` tests wait for SIP timers (tens of seconds); skip them
//! with `cargo test --test edge_cases -- --skip slow_` when iterating.

mod support;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::caller::{AudioSource, Caller, CallerOpts, Dir, SipEvent};
use support::sip::{header_uri, uri_socket_addr, Sdp, SipMessage};
use support::sipp::Sipp;
use support::{audio, metric_sum, token, Daemon, DaemonOpts};

/// Generous bound for one SIP exchange on loopback.
const SIP_WAIT: Duration = Duration::from_secs(5);

/// `ivrd_calls_total` for one outcome (all transports).
fn calls_ended(daemon: &Daemon, outcome: &str) -> f64 {
    metric_sum(
        &daemon.metrics(),
        "ivrd_calls_total",
        &[("outcome", outcome)],
    )
}

#[track_caller]
fn assert_no_calls_active(daemon: &Daemon) {
    assert_eq!(
        daemon.wait_metric("ivrd_calls_active", 0.0, Duration::from_secs(5)),
        Some(0.0),
        "calls still counted active"
    );
    let calls = daemon.api_json("/api/calls");
    assert_eq!(calls["active"], 0, "GET /api/calls: {calls}");
}

/// When the caller received the final response to its BYE.
fn bye_answered_at(caller: &Caller) -> Option<Instant> {
    caller
        .sip_log()
        .iter()
        .find(|e| {
            e.dir == Dir::Received
                && e.msg.status().is_some_and(|s| s >= 200)
                && e.msg.cseq().is_some_and(|(_, m)| m == "BYE")
        })
        .map(|e| e.at)
}

// ---------------------------------------------------------------------------------------
// Retransmitted INVITE
// ---------------------------------------------------------------------------------------

/// A bare SIP endpoint on a UDP socket that sends exactly the text it is given. The Rust
/// caller's transaction layer stops resending an INVITE once a provisional response came;
/// this one resends it whenever the test says so.
struct RawUac {
    sock: UdpSocket,
    local: SocketAddr,
    /// Everything received, with its arrival time.
    log: Vec<(Instant, SipMessage)>,
}

impl RawUac {
    fn new() -> RawUac {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind SIP socket");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        RawUac {
            sock,
            local,
            log: Vec::new(),
        }
    }

    fn send(&self, text: &str, to: SocketAddr) {
        self.sock.send_to(text.as_bytes(), to).expect("send SIP");
    }

    /// Reads until `pred` holds for a message received (returned) or `timeout` passes.
    fn read_until(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&SipMessage) -> bool,
    ) -> Option<SipMessage> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let msg = SipMessage::parse(&buf[..n]).expect("daemon sent unparseable SIP");
            self.log.push((Instant::now(), msg.clone()));
            if pred(&msg) {
                return Some(msg);
            }
        }
        None
    }

    /// Reads (and logs) everything for `dur`.
    fn read_for(&mut self, dur: Duration) {
        self.read_until(dur, |_| false);
    }

    /// The responses logged so far to requests of `method`.
    fn responses(&self, method: &str) -> Vec<&SipMessage> {
        self.log
            .iter()
            .map(|(_, m)| m)
            .filter(|m| !m.is_request() && m.cseq().is_some_and(|(_, cm)| cm == method))
            .collect()
    }

    fn trace(&self) -> String {
        self.log
            .iter()
            .map(|(_, m)| format!("<-- {}\n", m.summary()))
            .collect()
    }
}

/// A request as a simple UA would write it; `to_tag` turns it into an in-dialog request.
#[allow(clippy::too_many_arguments)]
fn raw_request(
    method: &str,
    uri: &str,
    local: SocketAddr,
    branch: &str,
    from_tag: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    body: Option<&str>,
) -> String {
    let mut m = format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@{local}>;tag={from_tag}\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:raw@{local}>\r\n"
    );
    match body {
        Some(b) => m.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
    m
}

/// The same INVITE (same branch, Call-ID, From tag and CSeq) arriving four times: twice
/// back to back before any response, once after the 200 OK (as when the 200 is lost) and
/// once after the ACK (a copy the network delayed). RFC 3261 17.2.3 matches them all to
/// the one server transaction: one dialog, one answer.
#[test]
fn retransmitted_invite_is_answered_once() {
    let daemon = Daemon::start_default();
    let mut uac = RawUac::new();
    // The RTP socket only has to exist so that the daemon's packets land somewhere.
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sdp = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        rtp.local_addr().unwrap().port()
    );
    let (call_id, from_tag) = (format!("{}@127.0.0.1", token()), token());
    let uri = format!("sip:support@{}", daemon.sip_udp);
    let to = format!("<{uri}>");
    let invite = raw_request(
        "INVITE",
        &uri,
        uac.local,
        &format!("z9hG4bK{}", token()),
        &from_tag,
        &to,
        &call_id,
        1,
        Some(&sdp),
    );

    uac.send(&invite, daemon.sip_udp);
    uac.send(&invite, daemon.sip_udp);
    let ok = uac
        .read_until(SIP_WAIT, |m| {
            m.status() == Some(200) && m.cseq().is_some_and(|(_, cm)| cm == "INVITE")
        })
        .unwrap_or_else(|| panic!("no 200 OK\n{}", uac.trace()));
    uac.send(&invite, daemon.sip_udp);
    // Long enough for the first 2xx retransmission (T1 = 500 ms) to show its To tag too.
    uac.read_for(Duration::from_millis(700));

    let mut call = RawCall::from_answer(uac, &ok, call_id.clone(), from_tag, &to, daemon.sip_udp);
    call.send(&call.request("ACK", 1, None));
    call.uac.send(&invite, daemon.sip_udp);
    call.uac.read_for(Duration::from_millis(700));

    // Every response to the INVITE belongs to one transaction and one dialog.
    let responses = call.uac.responses("INVITE");
    let codes: Vec<u16> = responses.iter().filter_map(|m| m.status()).collect();
    assert!(
        codes.iter().all(|c| [100, 180, 200].contains(c)),
        "unexpected responses {codes:?}\n{}",
        call.uac.trace()
    );
    let tags: BTreeSet<String> = responses.iter().filter_map(|m| m.tag("To")).collect();
    assert_eq!(
        tags.len(),
        1,
        "responses with different To tags (more than one dialog): {tags:?}\n{}",
        call.uac.trace()
    );
    assert!(
        call.uac.log.iter().all(|(_, m)| !m.is_request()),
        "the daemon sent a request:\n{}",
        call.uac.trace()
    );

    let metrics = daemon.metrics();
    assert_eq!(
        support::metric_value(&metrics, "ivrd_calls_active"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "ivrd_call_answer_seconds_count", &[]),
        1.0,
        "answered more than once:\n{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "ivrd_calls_total", &[]),
        0.0,
        "a retransmission was refused or ended as a call of its own:\n{metrics}"
    );
    let calls = daemon.api_json("/api/calls");
    assert_eq!(calls["active"], 1, "{calls}");
    assert_eq!(calls["calls"][0]["call_id"], call_id.as_str(), "{calls}");

    call.send(&call.request("BYE", 2, None));
    assert_eq!(
        call.final_response("BYE", 2, SIP_WAIT),
        Some(200),
        "{}",
        call.uac.trace()
    );
    assert_no_calls_active(&daemon);
    assert_eq!(calls_ended(&daemon, "caller_hangup"), 1.0);
}

// ---------------------------------------------------------------------------------------
// BYE before ACK
// ---------------------------------------------------------------------------------------

/// Runs tests/sipp/bye_before_ack.xml with `silence_ms` of listening after the BYE's 200
/// and checks what came over the wire and what the daemon counted.
fn bye_before_ack(silence_ms: u64) {
    let daemon = Daemon::start_default();
    let run = Sipp::new("bye_before_ack.xml", daemon.sip_udp)
        .arg("-d")
        .arg(&silence_ms.to_string())
        .timeout(Duration::from_millis(silence_ms) + Duration::from_secs(15))
        .run();
    // SIPp takes a retransmitted 200 OK for a retransmission of what it received before and
    // answers it by re-sending its BYE, so its success proves little: the trace decides.
    run.assert_success();
    assert_eq!(
        run.sent().filter(|t| t.msg.method() == Some("ACK")).count(),
        0,
        "the scenario must not ACK\n{}",
        run.report()
    );
    assert!(
        run.received_responses(200, "BYE").count() >= 1,
        "BYE not answered with 200\n{}",
        run.report()
    );
    assert_eq!(
        run.received_requests("BYE").count(),
        0,
        "the daemon sent a BYE of its own\n{}",
        run.report()
    );
    assert_no_calls_active(&daemon);
    let metrics = daemon.metrics();
    assert_eq!(
        metric_sum(
            &metrics,
            "ivrd_calls_total",
            &[("outcome", "caller_hangup")]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "ivrd_calls_total", &[("outcome", "no_ack")]),
        0.0,
        "{metrics}"
    );
    // The BYE went out right after the first 200 OK, long before its first retransmission
    // (T1 = 500 ms) was due: any further 200 means the daemon kept retransmitting.
    let oks: Vec<f64> = run
        .received_responses(200, "INVITE")
        .map(|t| t.at)
        .collect();
    assert_eq!(
        oks.len(),
        1,
        "200 OK retransmitted after the BYE was answered, at +{:?} s\n{}",
        oks.iter()
            .map(|t| format!("{:.1}", t - oks[0]))
            .collect::<Vec<_>>(),
        run.report()
    );
}

/// BYE before the ACK: 200 for the BYE, the call ends, 200 OK retransmissions stop (4 s of
/// listening covers the retransmissions due at 0.5, 1.5 and 3.5 s).
#[test]
fn bye_before_ack_ends_the_call_and_its_200_retransmissions() {
    bye_before_ack(4000);
}

/// ~45 s: as above, listening past 64*T1 (32 s), when a daemon still waiting for the ACK
/// would give up and send BYE.
#[test]
fn slow_bye_before_ack_gets_no_bye_at_64_t1() {
    bye_before_ack(36_000);
}

// ---------------------------------------------------------------------------------------
// CANCEL racing the 200 OK
// ---------------------------------------------------------------------------------------

/// What one race left behind.
struct Race {
    caller: Caller,
    invite: String,
    cancel: String,
    delay: Duration,
}

/// Places one call per delay: INVITE, `delay`, CANCEL; then completes whatever the INVITE's
/// final response allows (a 200 is ACKed by the caller and ended with BYE; a 487 is ACKed).
fn cancel_races(daemon: &Daemon, delays: &[Duration]) -> Vec<Race> {
    let mut races = Vec::new();
    for &delay in delays {
        let caller = Caller::new(daemon.sip_udp, CallerOpts::default());
        let invite = caller.send_invite();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let cancel = caller.cancel();
        let fin = caller
            .wait_final(&invite, SIP_WAIT)
            .unwrap_or_else(|| panic!("no final response to the INVITE\n{}", caller.sip_trace()));
        caller
            .wait_final(&cancel, SIP_WAIT)
            .unwrap_or_else(|| panic!("no final response to the CANCEL\n{}", caller.sip_trace()));
        if fin.status() == Some(200) {
            let bye = caller.bye(SIP_WAIT);
            assert_eq!(
                bye.status(),
                Some(200),
                "BYE after a 200 that won the race against CANCEL\n{}",
                caller.sip_trace()
            );
        }
        races.push(Race {
            caller,
            invite,
            cancel,
            delay,
        });
    }
    races
}

/// Checks every race once late messages had time to arrive; returns (200s, 487s).
fn check_races(daemon: &Daemon, races: &[Race]) -> (usize, usize) {
    // A second final response or a retransmission would come within T1..2*T1.
    std::thread::sleep(Duration::from_millis(1200));
    let (mut answered, mut cancelled) = (0, 0);
    for r in races {
        let trace = || {
            format!(
                "CANCEL {:?} after the INVITE\n{}",
                r.delay,
                r.caller.sip_trace()
            )
        };
        let final_codes = |request| -> Vec<u16> {
            r.caller
                .responses(request)
                .iter()
                .filter_map(|m| m.status())
                .filter(|s| *s >= 200)
                .collect()
        };
        let finals: BTreeSet<u16> = final_codes(&r.invite).into_iter().collect();
        match finals.iter().copied().collect::<Vec<_>>()[..] {
            [200] => answered += 1,
            [487] => cancelled += 1,
            _ => panic!(
                "INVITE final responses {finals:?}, want exactly one of 200 or 487\n{}",
                trace()
            ),
        }
        let cancel_finals = final_codes(&r.cancel);
        assert!(
            !cancel_finals.is_empty() && cancel_finals.iter().all(|s| [200, 481].contains(s)),
            "CANCEL answered {cancel_finals:?}, want 200 (or 481 once the INVITE completed)\n{}",
            trace()
        );
        assert!(
            r.caller.bye_received().is_none(),
            "the daemon hung up itself\n{}",
            trace()
        );
    }
    assert_no_calls_active(daemon);
    let metrics = daemon.metrics();
    let ended = metric_sum(&metrics, "ivrd_calls_total", &[]);
    let abandoned = metric_sum(&metrics, "ivrd_calls_total", &[("outcome", "abandoned")]);
    let hangups = metric_sum(
        &metrics,
        "ivrd_calls_total",
        &[("outcome", "caller_hangup")],
    );
    assert_eq!(ended, races.len() as f64, "{metrics}");
    assert_eq!(
        (abandoned, hangups),
        (cancelled as f64, answered as f64),
        "outcomes must match what the callers saw\n{metrics}"
    );
    (answered, cancelled)
}

fn ms(v: &[f64]) -> Vec<Duration> {
    v.iter().map(|m| Duration::from_secs_f64(m / 1e3)).collect()
}

/// CANCEL right behind the INVITE while the daemon answers at once, and CANCELs spread
/// around the answer of a daemon that rings 20 ms: the INVITE gets 487 or 200, never both;
/// the CANCEL 200 (481 once the INVITE completed); an answered call ends cleanly with BYE;
/// nothing stays active. Both orders must occur (the 0 ms / 20 ms-ring and 60 ms / no-ring
/// cases decide them; the delays in between race).
#[test]
fn cancel_racing_the_200_gets_one_final_response_in_either_order() {
    let at_once = Daemon::start(DaemonOpts {
        min_ring_ms: 0,
        ..DaemonOpts::default()
    });
    let races = cancel_races(
        &at_once,
        &ms(&[0.0, 0.0, 0.0, 0.0, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 60.0]),
    );
    let (a1, c1) = check_races(&at_once, &races);

    let ringing = Daemon::start(DaemonOpts {
        min_ring_ms: 20,
        ..DaemonOpts::default()
    });
    let races = cancel_races(
        &ringing,
        &ms(&[
            0.0, 5.0, 10.0, 15.0, 18.0, 19.0, 20.0, 21.0, 22.0, 25.0, 30.0, 60.0,
        ]),
    );
    let (a2, c2) = check_races(&ringing, &races);
    println!(
        "CANCEL races: min_ring 0: {a1} answered, {c1} cancelled; min_ring 20 ms: {a2} answered, {c2} cancelled"
    );
    assert!(
        a1 + a2 > 0 && c1 + c2 > 0,
        "both orders must have happened: {} answered, {} cancelled",
        a1 + a2,
        c1 + c2
    );
}

/// `ivrd_call_answer_seconds` is "INVITE received -> 200 OK sent": a call whose CANCEL won
/// the race (the caller got 487, never a 200) must not be counted in it.
#[test]
fn answer_latency_counts_only_200s_that_were_sent() {
    let daemon = Daemon::start_default();
    let races = cancel_races(
        &daemon,
        &ms(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.6, 1.0, 60.0]),
    );
    let (answered, cancelled) = check_races(&daemon, &races);
    let metrics = daemon.metrics();
    assert_eq!(
        metric_sum(&metrics, "ivrd_call_answer_seconds_count", &[]),
        answered as f64,
        "{answered} calls answered, {cancelled} cancelled, but the answer histogram counts:\n{metrics}"
    );
}

// ---------------------------------------------------------------------------------------
// Overlapping re-INVITEs
// ---------------------------------------------------------------------------------------

/// A re-INVITE while the previous one's ACK is outstanding gets 491 Request Pending; once
/// that ACK came, a new re-INVITE gets 200 (tests/sipp/reinvite_491.xml).
#[test]
fn second_reinvite_before_the_first_ack_gets_491() {
    let daemon = Daemon::start_default();
    let run = Sipp::new("reinvite_491.xml", daemon.sip_udp)
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_success();
    let cseq_of = |code: u16| -> Vec<u32> {
        run.received_responses(code, "INVITE")
            .filter_map(|t| t.msg.cseq().map(|(n, _)| n))
            .collect()
    };
    assert_eq!(cseq_of(491), vec![3], "{}", run.report());
    let oks: BTreeSet<u32> = cseq_of(200).into_iter().collect();
    assert_eq!(
        oks,
        BTreeSet::from([1, 2, 4]),
        "200 OK for the call, the first and the third re-INVITE\n{}",
        run.report()
    );
    assert_no_calls_active(&daemon);
    assert_eq!(calls_ended(&daemon, "caller_hangup"), 1.0);
}

// ---------------------------------------------------------------------------------------
// RTP timeout
// ---------------------------------------------------------------------------------------

const RTP_TIMEOUT_S: u64 = 3;

fn rtp_timeout_daemon() -> Daemon {
    Daemon::start(DaemonOpts {
        rtp_timeout_s: Some(RTP_TIMEOUT_S),
        ..DaemonOpts::default()
    })
}

/// Waits for the daemon's BYE and returns how long after `from` it came.
#[track_caller]
fn daemon_bye_after(caller: &Caller, from: Instant, timeout: Duration) -> Duration {
    let bye: SipEvent = caller
        .wait_request("BYE", 0, timeout)
        .unwrap_or_else(|| panic!("no BYE from the daemon\n{}", caller.sip_trace()));
    // The caller answered it in the dialog (a BYE outside it would get 481).
    assert!(
        support::wait_for(SIP_WAIT, || caller
            .sip_log()
            .iter()
            .any(|e| e.dir == Dir::Sent
                && e.msg.status() == Some(200)
                && e.msg.cseq().is_some_and(|(_, m)| m == "BYE"))
            .then_some(()))
        .is_some(),
        "the daemon's BYE was not in the dialog\n{}",
        caller.sip_trace()
    );
    bye.at.duration_since(from)
}

#[track_caller]
fn assert_about_rtp_timeout(after: Duration, what: &str) {
    let t = Duration::from_secs(RTP_TIMEOUT_S);
    assert!(
        after >= t - Duration::from_millis(100) && after <= t + Duration::from_millis(1500),
        "BYE {after:?} after {what}, want ~{t:?}"
    );
}

/// No RTP ever comes from the caller: the daemon hangs up with BYE after
/// `media.rtp_timeout_s`, outcome `rtp_timeout`.
#[test]
fn call_whose_rtp_never_arrives_is_ended_after_the_rtp_timeout() {
    let daemon = rtp_timeout_daemon();
    let caller = daemon.answered_call(CallerOpts {
        audio: AudioSource::Nothing,
        ..CallerOpts::default()
    });
    let after = daemon_bye_after(&caller, caller.answered_at(), Duration::from_secs(10));
    assert_about_rtp_timeout(after, "the answer");
    assert_no_calls_active(&daemon);
    assert_eq!(calls_ended(&daemon, "rtp_timeout"), 1.0);
}

/// A caller that puts the call on hold (a=sendonly) and stops its RTP is not hung up, however
/// long the hold lasts; taken off hold, it gets the whole timeout again to resume its RTP, and
/// when it does not, the call ends.
#[test]
fn held_call_without_rtp_is_not_ended_by_the_rtp_timeout() {
    let daemon = rtp_timeout_daemon();
    let caller = daemon.answered_call(CallerOpts::default());
    assert!(caller.wait_rtp(10, SIP_WAIT), "no RTP from the daemon");

    let hold = caller.reinvite("sendonly", SIP_WAIT);
    assert_eq!(hold.status(), Some(200), "{}", caller.sip_trace());
    let answer = Sdp::parse(&hold.body).expect("SDP answer to the hold");
    assert_eq!(answer.direction, "recvonly", "{}", hold.body);
    caller.stop_rtp();

    // More than twice the timeout on hold without a packet.
    std::thread::sleep(Duration::from_secs(2 * RTP_TIMEOUT_S + 1));
    assert!(
        caller.bye_received().is_none(),
        "held call hung up\n{}",
        caller.sip_trace()
    );
    assert_eq!(daemon.metric("ivrd_calls_active"), Some(1.0));

    let resume = caller.reinvite("sendrecv", SIP_WAIT);
    assert_eq!(resume.status(), Some(200), "{}", caller.sip_trace());
    let resumed_at = Instant::now();
    let after = daemon_bye_after(&caller, resumed_at, Duration::from_secs(10));
    assert_about_rtp_timeout(after, "coming off hold");
    assert_no_calls_active(&daemon);
    assert_eq!(calls_ended(&daemon, "rtp_timeout"), 1.0);
}

// ---------------------------------------------------------------------------------------
// Hanging up during a prompt
// ---------------------------------------------------------------------------------------

/// One call that hangs up `after` the answer, in flow node `node` while its prompt plays.
fn hang_up_during_prompt(daemon: &Daemon, node: &str, after: Duration) {
    let caller = daemon.answered_call(CallerOpts::default());
    caller.wait_audio(Some(caller.answered_at()), after);

    let calls = daemon.api_json("/api/calls");
    assert_eq!(calls["calls"][0]["node"], node, "{calls}");
    // The prompt is audible right now: speech peaks in the last half second.
    let recent: Vec<i16> = caller
        .rtp()
        .iter()
        .filter(|p| p.at.elapsed() < Duration::from_millis(500) && matches!(p.pt, 0 | 8))
        .flat_map(|p| audio::g711_decode(p.pt, &p.payload))
        .collect();
    let peak = recent.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!(peak > 1000, "no prompt audio before the BYE (peak {peak})");

    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
    let bye_ok = bye_answered_at(&caller).expect("BYE answered");
    // Absence is what is tested: no RTP after the BYE, over half a second.
    std::thread::sleep(Duration::from_millis(500));
    // One packet may already be on its way when the BYE is handled; nothing after that.
    let late: Vec<Duration> = caller
        .rtp()
        .iter()
        .filter(|p| p.at > bye_ok)
        .map(|p| p.at.duration_since(bye_ok))
        .collect();
    assert!(
        late.len() <= 1 && late.iter().all(|d| *d < Duration::from_millis(20)),
        "RTP after the BYE's 200 OK (in {node}): {late:?}"
    );
    assert!(
        caller.wait_request("REFER", 0, Duration::ZERO).is_none(),
        "REFER after hanging up\n{}",
        caller.sip_trace()
    );
}

/// BYE during the greeting, then (another call) during the menu prompt: 200, the prompt's
/// RTP stops at once, no REFER, the gauge back to 0, outcome `caller_hangup`.
#[test]
fn caller_hanging_up_during_a_prompt_stops_it_at_once() {
    let daemon = Daemon::start_default();
    let greeting = daemon.prompt_len("greeting");
    assert!(
        greeting > Duration::from_millis(1500),
        "greeting {greeting:?}"
    );
    hang_up_during_prompt(&daemon, "greet", Duration::from_millis(1000));
    assert_no_calls_active(&daemon);

    // The menu prompt starts when the greeting ends; hang up 1.5 s into it.
    assert!(daemon.prompt_len("main_menu") > Duration::from_secs(3));
    hang_up_during_prompt(&daemon, "main_menu", greeting + Duration::from_millis(1500));
    assert_no_calls_active(&daemon);
    // A REFER sent after the BYE would have reached the caller by now.
    std::thread::sleep(Duration::from_millis(500));
    let metrics = daemon.metrics();
    assert_eq!(
        metric_sum(
            &metrics,
            "ivrd_calls_total",
            &[("outcome", "caller_hangup")]
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "ivrd_transfers_total", &[]),
        0.0,
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------------------
// RTP flood
// ---------------------------------------------------------------------------------------

/// A well-formed PCMU packet of silence.
fn rtp_packet(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xFF; 160]);
    p
}

/// 2,000 RTP packets in one second at a call's RTP port (on top of the caller's own 50/s):
/// the daemon takes at most `media.max_rtp_packets_per_s` (default 200) a second, counts
/// the rest in `ivrd_limits_hit_total{limit="rtp_rate"}`, and the call goes on.
#[test]
fn rtp_flood_is_cut_at_the_per_call_rate_and_the_call_goes_on() {
    const FLOOD: u32 = 2000;
    const MAX_PPS: f64 = 200.0;
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts::default());
    assert!(caller.wait_rtp(25, SIP_WAIT), "no RTP from the daemon");
    let target = caller
        .remote_sdp()
        .and_then(|s| s.rtp_addr())
        .expect("daemon's RTP address");

    let packets_in = |m: &str| metric_sum(m, "ivrd_rtp_packets_total", &[("direction", "in")]);
    let dropped = |m: &str| metric_sum(m, "ivrd_limits_hit_total", &[("limit", "rtp_rate")]);
    let before = daemon.metrics();
    let t0 = Instant::now();
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..FLOOD {
        // Paced on absolute deadlines: 2 packets a millisecond.
        let due = t0 + Duration::from_micros(u64::from(i) * 500);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let _ = flood.send_to(&rtp_packet(i as u16, i * 160, 0x0BAD_F00D), target);
    }
    let flood_took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let after = daemon.metrics();
    let window = t0.elapsed();

    let accepted = packets_in(&after) - packets_in(&before);
    let cut = dropped(&after) - dropped(&before);
    // A window of W seconds overlaps at most ceil(W) + 1 of the limiter's one-second windows.
    let max_accepted = MAX_PPS * (window.as_secs_f64().ceil() + 1.0);
    println!(
        "RTP flood: {FLOOD} packets in {flood_took:?}; accepted {accepted}, dropped {cut} \
         over {window:?}"
    );
    assert!(
        accepted <= max_accepted,
        "{accepted} packets accepted in {window:?} (limit {MAX_PPS}/s)"
    );
    assert!(
        cut >= f64::from(FLOOD) - max_accepted,
        "only {cut} packets counted as over the rate limit"
    );

    // The call goes on: no BYE, the prompts keep coming and, once the limiter's current
    // one-second window has passed (the flood used it up, the caller's packets included),
    // the caller's own stream is taken again.
    std::thread::sleep(Duration::from_millis(1100));
    let heard = caller.rtp().len();
    let in_before = packets_in(&daemon.metrics());
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        caller.rtp().len() >= heard + 40,
        "the daemon's RTP stalled after the flood"
    );
    let taken = packets_in(&daemon.metrics()) - in_before;
    assert!(
        taken >= 40.0,
        "the caller's RTP is not taken after the flood ({taken} in 1 s)"
    );
    assert!(
        caller.bye_received().is_none(),
        "flooded call hung up\n{}",
        caller.sip_trace()
    );
    assert_eq!(daemon.metric("ivrd_calls_active"), Some(1.0));
    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
    assert_no_calls_active(&daemon);
}

// ---------------------------------------------------------------------------------------
// In-dialog requests that arrive together
// ---------------------------------------------------------------------------------------

/// An answered call on a `RawUac`, for tests that write in-dialog requests by hand.
struct RawCall {
    uac: RawUac,
    call_id: String,
    from_tag: String,
    /// The To header with the daemon's tag.
    to: String,
    /// The daemon's Contact, where in-dialog requests go.
    target: String,
    dest: SocketAddr,
}

impl RawCall {
    /// INVITE with `sdp`, waits for the 200 OK and ACKs it (CSeq 1).
    fn answered(daemon: &Daemon, sdp: &str) -> RawCall {
        let mut uac = RawUac::new();
        let (call_id, from_tag) = (format!("{}@127.0.0.1", token()), token());
        let uri = format!("sip:support@{}", daemon.sip_udp);
        let to = format!("<{uri}>");
        let branch = format!("z9hG4bK{}", token());
        let invite = raw_request(
            "INVITE",
            &uri,
            uac.local,
            &branch,
            &from_tag,
            &to,
            &call_id,
            1,
            Some(sdp),
        );
        uac.send(&invite, daemon.sip_udp);
        let ok = uac
            .read_until(SIP_WAIT, |m| {
                m.status() == Some(200) && m.cseq().is_some_and(|(_, cm)| cm == "INVITE")
            })
            .unwrap_or_else(|| panic!("no 200 OK\n{}", uac.trace()));
        let call = RawCall::from_answer(uac, &ok, call_id, from_tag, &to, daemon.sip_udp);
        call.send(&call.request("ACK", 1, None));
        call
    }

    /// The dialog that the 200 OK `ok` to our INVITE (To header `to`) set up.
    fn from_answer(
        uac: RawUac,
        ok: &SipMessage,
        call_id: String,
        from_tag: String,
        to: &str,
        fallback: SocketAddr,
    ) -> RawCall {
        let target = header_uri(ok.header("Contact").expect("Contact in 200 OK"));
        RawCall {
            dest: uri_socket_addr(&target).unwrap_or(fallback),
            to: format!("{to};tag={}", ok.tag("To").expect("To tag in 200 OK")),
            target,
            uac,
            call_id,
            from_tag,
        }
    }

    fn request(&self, method: &str, cseq: u32, sdp: Option<&str>) -> String {
        let branch = format!("z9hG4bK{}", token());
        raw_request(
            method,
            &self.target,
            self.uac.local,
            &branch,
            &self.from_tag,
            &self.to,
            &self.call_id,
            cseq,
            sdp,
        )
    }

    fn send(&self, text: &str) {
        self.uac.send(text, self.dest);
    }

    /// The final response to the request `cseq` `method`, if one comes within `timeout`.
    fn final_response(&mut self, method: &str, cseq: u32, timeout: Duration) -> Option<u16> {
        self.uac
            .read_until(timeout, |m| {
                m.status().is_some_and(|s| s >= 200)
                    && m.cseq().is_some_and(|(n, cm)| n == cseq && cm == method)
            })
            .and_then(|m| m.status())
    }
}

/// An SDP offer for a `RawCall`, with `direction` (sendrecv, sendonly, ...).
fn raw_sdp(rtp: &UdpSocket, version: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=raw 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n",
        rtp.local_addr().unwrap().port()
    )
}

/// A BYE and an INFO sent back to back (CSeq 2 and 3), as a phone does when the caller hangs
/// up while a key press is still going out. The dialog discards a request whose CSeq is lower
/// than one it has already seen, so the daemon must take them in arrival order: every BYE gets
/// its 200 and every call ends. Twenty calls make an ordering race show up.
#[test]
fn bye_and_info_sent_together_are_both_answered() {
    let daemon = Daemon::start_default();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sdp = raw_sdp(&rtp, 1, "sendrecv");
    let mut unanswered = Vec::new();
    for n in 0..20 {
        let mut call = RawCall::answered(&daemon, &sdp);
        let info = call.request("INFO", 3, None).replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=100\r\n",
        );
        call.send(&call.request("BYE", 2, None));
        call.send(&info);
        if call.final_response("BYE", 2, Duration::from_secs(2)) != Some(200) {
            unanswered.push(format!("call {n}:\n{}", call.uac.trace()));
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of 20 BYEs got no 200:\n{}",
        unanswered.len(),
        unanswered.join("\n")
    );
    assert_no_calls_active(&daemon);
    assert_eq!(calls_ended(&daemon, "caller_hangup"), 20.0);
}

/// Hold and resume in quick succession: the ACK of the hold re-INVITE and the resume
/// re-INVITE leave back to back. The ACK arrived first, so the resume is not an overlapping
/// re-INVITE and must get 200, not 491. Twenty calls make the race show up.
#[test]
fn reinvite_right_after_the_previous_ack_gets_200() {
    let daemon = Daemon::start_default();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut refused = Vec::new();
    for n in 0..20 {
        let mut call = RawCall::answered(&daemon, &raw_sdp(&rtp, 1, "sendrecv"));
        call.send(&call.request("INVITE", 2, Some(&raw_sdp(&rtp, 2, "sendonly"))));
        let hold = call.final_response("INVITE", 2, SIP_WAIT);
        assert_eq!(hold, Some(200), "call {n}: hold\n{}", call.uac.trace());
        call.send(&call.request("ACK", 2, None));
        call.send(&call.request("INVITE", 3, Some(&raw_sdp(&rtp, 3, "sendrecv"))));
        let resume = call.final_response("INVITE", 3, SIP_WAIT);
        if resume != Some(200) {
            refused.push(format!("call {n}: {resume:?}\n{}", call.uac.trace()));
        }
        call.send(&call.request("ACK", 3, None));
        call.send(&call.request("BYE", 4, None));
        assert_eq!(call.final_response("BYE", 4, SIP_WAIT), Some(200));
    }
    assert!(
        refused.is_empty(),
        "{} of 20 resumes refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert_no_calls_active(&daemon);
}
