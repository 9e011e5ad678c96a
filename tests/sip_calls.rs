//! SIP behaviour of `ivrd run`, asserted from outside on loopback with real peers: the Rust
//! test caller (tests/support/caller.rs) and SIPp scenarios (tests/sipp/).
//!
//! Each test starts its own daemon on ephemeral ports with the repository's default flow
//! (flows/support-line.yaml) and prompts. `slow_*` tests take 30-60 s by nature (SIP
//! timers, no-input timeouts); filter them with `cargo test -- --skip slow_` when iterating.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use support::caller::{Caller, CallerOpts, Dir, ReferPolicy, SipEvent};
use support::sip::{header_uri, uri_socket_addr, Sdp, SipMessage};
use support::sipp::Sipp;
use support::{audio, token, wait_for, Daemon, DaemonOpts};

/// Generous bound for one SIP exchange on loopback.
const SIP_WAIT: Duration = Duration::from_secs(5);

/// The REFER's headers as the contract describes them.
#[track_caller]
fn assert_refer(refer: &SipMessage, target_user: &str, node_path: &str, intent: Option<&str>) {
    let refer_to = refer.header("Refer-To").expect("Refer-To header");
    let uri = header_uri(refer_to);
    assert!(
        uri.starts_with(&format!("sip:{target_user}@pbx.example.com")),
        "Refer-To {refer_to:?}"
    );
    assert_eq!(refer.header("X-IVR-Flow"), Some("support-line"), "{refer}");
    assert_eq!(refer.header("X-IVR-Node"), Some(node_path), "{refer}");
    if let Some(intent) = intent {
        assert_eq!(refer.header("X-IVR-Intent"), Some(intent), "{refer}");
    }
    assert!(
        refer.header("Referred-By").is_some(),
        "Referred-By missing:\n{refer}"
    );
}

/// Final responses the daemon gave to the NOTIFYs we sent.
fn notify_responses(caller: &Caller) -> Vec<u16> {
    caller
        .sip_log()
        .iter()
        .filter(|e| {
            e.dir == Dir::Received
                && !e.retransmission
                && e.msg.status().is_some_and(|s| s >= 200)
                && e.msg.cseq().is_some_and(|(_, m)| m == "NOTIFY")
        })
        .filter_map(|e| e.msg.status())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Answering
// ---------------------------------------------------------------------------------------

#[test]
fn basic_call_is_answered_within_ring_budget_and_bye_gets_200() {
    let daemon = Daemon::start_default();
    let caller = Caller::new(daemon.sip_udp, CallerOpts::default());
    let invite = caller.send_invite();
    let ok = caller
        .wait_final(&invite, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no final response\n{}", caller.sip_trace()));
    assert_eq!(ok.status(), Some(200), "{}", caller.sip_trace());

    // 180 at once (it stands in for 100 Trying, RFC 3261 §17.2.1), then 200 within the
    // ring budget.
    let codes: Vec<u16> = caller
        .responses(&invite)
        .iter()
        .filter_map(|r| r.status())
        .collect();
    assert_eq!(codes.first(), Some(&180), "responses {codes:?}");
    let ringing = caller.time_to_status(180).unwrap();
    assert!(
        ringing < Duration::from_millis(200),
        "180 Ringing after {ringing:?}"
    );
    let answer = caller.time_to_status(200).unwrap();
    assert!(
        answer <= Duration::from_millis(daemon.opts.ring_budget_ms),
        "answered after {answer:?}, ring budget {} ms",
        daemon.opts.ring_budget_ms
    );

    // The 200 establishes a usable dialog and a G.711 answer to our offer.
    assert!(
        ok.tag("To").is_some_and(|t| !t.is_empty()),
        "200 without To tag:\n{ok}"
    );
    let contact = ok.header("Contact").expect("Contact in 200");
    assert_eq!(
        uri_socket_addr(&header_uri(contact)),
        Some(daemon.sip_udp),
        "Contact {contact:?} must reach the daemon"
    );
    assert_eq!(ok.content_type().as_deref(), Some("application/sdp"));
    let sdp = Sdp::parse(&ok.body).unwrap();
    assert_eq!(
        sdp.first_audio_pt(),
        Some(0),
        "PCMU was offered first:\n{}",
        ok.body
    );
    assert!(
        sdp.payload_types.iter().all(|pt| [0, 8, 101].contains(pt)),
        "answer only what was offered:\n{}",
        ok.body
    );
    assert_eq!(
        sdp.telephone_event_pt(),
        Some(101),
        "telephone-event was offered:\n{}",
        ok.body
    );
    assert_eq!(sdp.connection, Some("127.0.0.1".parse().unwrap()));
    assert_ne!(sdp.audio_port, 0);
    assert_eq!(sdp.direction, "sendrecv");

    assert!(
        caller.wait_rtp(25, Duration::from_secs(3)),
        "no RTP from the daemon after answer"
    );
    assert_eq!(
        daemon.stdout_after_ready(),
        "",
        "stdout carries only the ready line"
    );
    let bye = caller.bye(SIP_WAIT);
    assert_eq!(bye.status(), Some(200), "{}", caller.sip_trace());
    assert_eq!(
        daemon.wait_metric("ivrd_calls_active", 0.0, Duration::from_secs(5)),
        Some(0.0),
        "call still counted active after BYE"
    );
}

#[test]
fn sipp_basic_call_passes_over_udp_and_tcp() {
    let daemon = Daemon::start_default();
    let udp = Sipp::new("basic_call.xml", daemon.sip_udp)
        .timeout(Duration::from_secs(20))
        .run();
    udp.assert_success();
    let tcp = Sipp::new("basic_call.xml", daemon.sip_tcp)
        .tcp()
        .timeout(Duration::from_secs(20))
        .run();
    tcp.assert_success();
}

/// Calls over UDP are answered by ivrd's own SIP layer unless `sip.udp_layer: rsipstack`
/// asks for the one before it; both must carry a SIPp call and a hang-up. The own layer's
/// 200 names us in Server (rsipstack's writes User-Agent), which tells them apart.
#[test]
fn either_sip_layer_answers_over_udp_and_the_setting_picks_which() {
    for (layer, own) in [("own", true), ("rsipstack", false)] {
        let daemon = Daemon::start(DaemonOpts {
            udp_layer: Some(layer.into()),
            ..DaemonOpts::default()
        });
        Sipp::new("basic_call.xml", daemon.sip_udp)
            .timeout(Duration::from_secs(20))
            .run()
            .assert_success();
        let caller = Caller::new(daemon.sip_udp, CallerOpts::default());
        let ok = caller.invite(SIP_WAIT);
        assert_eq!(ok.status(), Some(200), "{layer}: {}", caller.sip_trace());
        let server = ok.header("Server").is_some_and(|s| s.starts_with("ivrd/"));
        assert_eq!(server, own, "{layer}: 200 OK was\n{ok}");
        assert_eq!(caller.bye(SIP_WAIT).status(), Some(200), "{layer}");
    }
}

#[test]
fn batch_of_calls_is_counted_in_answer_latency_metric() {
    const N: u32 = 10;
    let daemon = Daemon::start_default();
    let before = support::metric_sum(&daemon.metrics(), "ivrd_call_answer_seconds_count", &[]);
    assert_eq!(before, 0.0, "fresh daemon");
    let run = Sipp::new("basic_call.xml", daemon.sip_udp)
        .calls(N)
        .rate(5.0)
        .limit(N)
        .timeout(Duration::from_secs(30))
        .run();
    run.assert_success();
    assert_eq!(
        run.received_responses(200, "BYE").count() as u32,
        N,
        "{}",
        run.report()
    );
    let metrics = daemon.metrics();
    assert_eq!(
        support::metric_value(
            &metrics,
            "ivrd_call_answer_seconds_count{transport=\"sip\"}"
        ),
        Some(f64::from(N)),
        "{metrics}"
    );
    let exceeded =
        support::metric_value(&metrics, "ivrd_ring_budget_exceeded_total").unwrap_or(0.0);
    assert_eq!(
        exceeded, 0.0,
        "no call may exceed the 4 s budget on loopback"
    );
    assert_eq!(
        daemon.wait_metric("ivrd_calls_active", 0.0, Duration::from_secs(5)),
        Some(0.0)
    );
}

#[test]
fn options_gets_200() {
    let daemon = Daemon::start_default();
    Sipp::new("options.xml", daemon.sip_udp)
        .timeout(Duration::from_secs(10))
        .run()
        .assert_success();
    let caller = Caller::new(daemon.sip_udp, CallerOpts::default());
    assert_eq!(caller.options(SIP_WAIT).status(), Some(200));
}

#[test]
fn cancel_before_answer_gets_200_then_487() {
    // The daemon answers within milliseconds; make it ring 3 s so CANCEL can win.
    let daemon = Daemon::start(DaemonOpts {
        min_ring_ms: 3000,
        ..DaemonOpts::default()
    });
    let run = Sipp::new("cancel.xml", daemon.sip_udp)
        .timeout(Duration::from_secs(15))
        .run();
    run.assert_success();
    assert_eq!(
        run.received_responses(487, "INVITE").count(),
        1,
        "{}",
        run.report()
    );
    assert_eq!(
        run.received_responses(200, "INVITE").count(),
        0,
        "{}",
        run.report()
    );
    assert_eq!(
        daemon.wait_metric("ivrd_calls_active", 0.0, Duration::from_secs(5)),
        Some(0.0)
    );
}

#[test]
fn min_ring_delays_answer_but_stays_inside_ring_budget() {
    let daemon = Daemon::start(DaemonOpts {
        min_ring_ms: 1000,
        ..DaemonOpts::default()
    });
    let caller = daemon.answered_call(CallerOpts::default());
    let t = caller.time_to_status(200).unwrap();
    assert!(
        t >= Duration::from_millis(1000) && t <= Duration::from_millis(4000),
        "answered after {t:?}"
    );
}

#[test]
fn late_offer_gets_offer_in_200_and_media_flows_after_answer_in_ack() {
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts {
        late_offer: true,
        ..CallerOpts::default()
    });
    let ok = caller
        .sip_log()
        .into_iter()
        .find(|e| e.dir == Dir::Received && e.msg.status() == Some(200))
        .unwrap()
        .msg;
    let offer =
        Sdp::parse(&ok.body).unwrap_or_else(|e| panic!("200 without SDP offer ({e}):\n{ok}"));
    assert!(
        offer.payload_types.contains(&0) || offer.payload_types.contains(&8),
        "offer without G.711:\n{}",
        ok.body
    );
    let ack = caller
        .sip_log()
        .into_iter()
        .find(|e| e.dir == Dir::Sent && e.msg.method() == Some("ACK"))
        .expect("ACK sent");
    assert_eq!(
        ack.msg.content_type().as_deref(),
        Some("application/sdp"),
        "answer goes in the ACK"
    );
    let (audio_pt, _) = caller.negotiated().expect("negotiated");
    assert!(
        caller.wait_rtp(25, Duration::from_secs(3)),
        "no RTP after late-offer answer"
    );
    assert!(caller
        .rtp()
        .iter()
        .all(|p| p.pt == audio_pt || Some(p.pt) == offer.telephone_event_pt()));
    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
}

#[test]
fn offer_without_g711_is_rejected_with_488() {
    let daemon = Daemon::start_default();
    let caller = Caller::new(
        daemon.sip_udp,
        CallerOpts {
            codecs: vec![9], // G.722 only
            telephone_event: None,
            ..CallerOpts::default()
        },
    );
    let resp = caller.invite(Duration::from_secs(10));
    assert_eq!(resp.status(), Some(488), "{}", caller.sip_trace());
    assert!(
        caller
            .sip_log()
            .iter()
            .any(|e| e.dir == Dir::Sent && e.msg.method() == Some("ACK")),
        "the 488 is ACKed (and must not be retransmitted after that)"
    );
    // Absence is what is tested: a retransmitted 488 would come within 1.5 s (T1 x 3).
    std::thread::sleep(Duration::from_millis(1500));
    let retrans = caller
        .sip_log()
        .iter()
        .filter(|e| e.msg.status() == Some(488) && e.retransmission)
        .count();
    assert_eq!(
        retrans,
        0,
        "488 retransmitted after ACK\n{}",
        caller.sip_trace()
    );
    assert!(caller.rtp().is_empty());
}

#[test]
fn reinvite_hold_is_answered_recvonly_and_unhold_returns_to_sendrecv() {
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts::default());
    assert!(caller.wait_rtp(10, Duration::from_secs(3)));

    let hold = caller.reinvite("sendonly", SIP_WAIT);
    assert_eq!(hold.status(), Some(200), "{}", caller.sip_trace());
    let sdp =
        Sdp::parse(&hold.body).unwrap_or_else(|e| panic!("hold 200 without SDP ({e}):\n{hold}"));
    assert_eq!(
        sdp.direction, "recvonly",
        "answer to sendonly:\n{}",
        hold.body
    );
    // RFC 3264: a recvonly answerer sends no media while held.
    std::thread::sleep(Duration::from_millis(200));
    let held_from = caller.rtp().len();
    std::thread::sleep(Duration::from_secs(1));
    let during_hold = caller.rtp().len() - held_from;
    assert!(during_hold <= 2, "{during_hold} RTP packets while on hold");

    let resume = caller.reinvite("sendrecv", SIP_WAIT);
    assert_eq!(resume.status(), Some(200), "{}", caller.sip_trace());
    let sdp = Sdp::parse(&resume.body).unwrap();
    assert_eq!(
        sdp.direction, "sendrecv",
        "answer to sendrecv:\n{}",
        resume.body
    );
    let resumed_from = caller.rtp().len();
    assert!(
        caller.wait_rtp(resumed_from + 10, Duration::from_secs(2)),
        "RTP did not resume after unhold"
    );
    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
}

#[test]
fn unknown_dialog_bye_gets_481_and_garbage_is_survived() {
    let daemon = Daemon::start_default();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(SIP_WAIT)).unwrap();
    let local = sock.local_addr().unwrap();
    sock.send_to(b"\x00\x01garbage that is not SIP\r\n\r\n", daemon.sip_udp)
        .unwrap();
    let bye = format!(
        "BYE sip:support@{d} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:x@{local}>;tag={t1}\r\nTo: <sip:support@{d}>;tag={t2}\r\n\
         Call-ID: {cid}@127.0.0.1\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n",
        d = daemon.sip_udp,
        b = token(),
        t1 = token(),
        t2 = token(),
        cid = token()
    );
    sock.send_to(bye.as_bytes(), daemon.sip_udp).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + SIP_WAIT;
    let mut got = None;
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        let m = SipMessage::parse(&buf[..n]).expect("daemon sent unparseable SIP");
        if m.status().is_some_and(|s| s >= 200) {
            got = Some(m);
            break;
        }
    }
    let resp = got.expect("no final response to a BYE for an unknown dialog");
    assert_eq!(resp.status(), Some(481), "{resp}");
    // Still alive and answering.
    let caller = Caller::new(daemon.sip_udp, CallerOpts::default());
    assert_eq!(caller.options(SIP_WAIT).status(), Some(200));
}

/// After the call, a retransmission of the caller's BYE (its 200 was lost) gets 200 again,
/// and a new request in the ended dialog gets 481: what the call's transactions would say,
/// though the daemon keeps only its routes by then (a finished call is "buried").
#[test]
fn a_finished_calls_retransmitted_bye_gets_200_again_and_a_late_request_481() {
    let daemon = Daemon::start_default();
    let caller = Caller::new(daemon.sip_udp, CallerOpts::default());
    assert_eq!(caller.invite(SIP_WAIT).status(), Some(200));
    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
    let bye = caller
        .sip_log()
        .into_iter()
        .find(|e| e.dir == Dir::Sent && e.msg.method() == Some("BYE"))
        .expect("the caller sent a BYE")
        .msg
        .to_string();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(SIP_WAIT)).unwrap();
    let final_answer = |request: &str| {
        sock.send_to(request.as_bytes(), daemon.sip_udp).unwrap();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + SIP_WAIT;
        while Instant::now() < deadline {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            let m = SipMessage::parse(&buf[..n]).expect("daemon sent unparseable SIP");
            if m.status().is_some_and(|s| s >= 200) {
                return Some(m);
            }
        }
        None
    };
    let again = final_answer(&bye).expect("no answer to the retransmitted BYE");
    assert_eq!(again.status(), Some(200), "{again}");
    assert_eq!(
        again.header("CSeq"),
        caller_cseq(&bye).as_deref(),
        "{again}"
    );
    let cseq = caller_cseq(&bye).unwrap();
    let number: u32 = cseq.split_whitespace().next().unwrap().parse().unwrap();
    let info = bye
        .replacen("BYE ", "INFO ", 1)
        .replace(
            &format!("CSeq: {cseq}"),
            &format!("CSeq: {} INFO", number + 1),
        )
        .replace("branch=z9hG4bK", &format!("branch=z9hG4bK{}", token()));
    let late = final_answer(&info).expect("no answer to a request after the call");
    assert_eq!(late.status(), Some(481), "{late}");
}

/// The CSeq value of a request as text.
fn caller_cseq(request: &str) -> Option<String> {
    request
        .lines()
        .find_map(|l| l.strip_prefix("CSeq: "))
        .map(|v| v.trim().to_string())
}

// ---------------------------------------------------------------------------------------
// Limits

/// OPTIONS (a load balancer's keepalive) says 503 while every call slot is taken, and 200
/// once one is free again, so calls go to other nodes before any is refused.
#[test]
fn options_is_503_while_full() {
    let daemon = Daemon::start(DaemonOpts {
        max_calls: 1,
        overflow: "reject".into(),
        ..DaemonOpts::default()
    });
    let probe = Caller::new(daemon.sip_udp, CallerOpts::default());
    assert_eq!(probe.options(SIP_WAIT).status(), Some(200));
    let caller = daemon.answered_call(CallerOpts::default());
    let full = probe.options(SIP_WAIT);
    assert_eq!(full.status(), Some(503), "{full}");
    assert!(
        full.header("Warning").unwrap_or("").contains("at capacity"),
        "{full}"
    );
    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
    let again = wait_for(Duration::from_secs(5), || {
        (probe.options(SIP_WAIT).status() == Some(200)).then_some(())
    });
    assert!(again.is_some(), "still 503 after the call ended");
}
// ---------------------------------------------------------------------------------------

#[test]
fn overflow_reject_answers_503_with_retry_after_beyond_max_calls() {
    let daemon = Daemon::start(DaemonOpts {
        max_calls: 1,
        overflow: "reject".into(),
        ..DaemonOpts::default()
    });
    let first = daemon.answered_call(CallerOpts::default());
    let second = Caller::new(daemon.sip_udp, CallerOpts::default());
    let resp = second.invite(Duration::from_secs(10));
    assert_eq!(resp.status(), Some(503), "{}", second.sip_trace());
    let retry = resp.header("Retry-After").expect("Retry-After on 503");
    assert!(
        retry.trim().starts_with(|c: char| c.is_ascii_digit()),
        "Retry-After {retry:?} is not delta-seconds"
    );
    assert_eq!(first.bye(SIP_WAIT).status(), Some(200));
}

/// Rule 1: beyond capacity the caller is still answered (inside the ring budget) and hears
/// the overflow message instead of ringing out; the flow then ends the call itself.
#[test]
fn overflow_answer_still_answers_beyond_max_calls_with_the_overflow_message() {
    let daemon = Daemon::start(DaemonOpts {
        max_calls: 1,
        overflow: "answer".into(),
        ..DaemonOpts::default()
    });
    let _first = daemon.answered_call(CallerOpts::default());
    let second = daemon.answered_call(CallerOpts::default());
    let t = second.time_to_status(200).unwrap();
    assert!(
        t <= Duration::from_millis(daemon.opts.ring_budget_ms),
        "overflow call answered after {t:?}"
    );
    let message = daemon.prompt_len("overflow");
    let packets = (message.as_millis() / 20) as usize + 50;
    assert!(
        second.wait_rtp(packets, message + Duration::from_secs(3)),
        "no audio for the overflow call"
    );
    let heard: Vec<i16> = second
        .rtp()
        .iter()
        .filter(|p| matches!(p.pt, 0 | 8))
        .flat_map(|p| audio::g711_decode(p.pt, &p.payload))
        .collect();
    let reference = audio::load_8k(&daemon.opts.sounds_dir.join("overflow.wav"));
    let m = audio::find_best_match(&reference, &heard);
    assert!(m.ncc >= 0.9, "overflow message not heard: {m:?}");
    // Whatever the flow offers next (a callback, a goodbye), it ends the call itself.
    assert!(
        second
            .wait_request("BYE", 0, Duration::from_secs(60))
            .is_some(),
        "overflow call not ended by the daemon within 60 s\n{}",
        second.sip_trace()
    );
}

// ---------------------------------------------------------------------------------------
// DTMF and transfers
// ---------------------------------------------------------------------------------------

#[test]
fn dtmf_1_from_pcap_during_greeting_transfers_to_billing_with_context_headers() {
    let daemon = Daemon::start_default();
    let run = Sipp::new("dtmf_transfer.xml", daemon.sip_udp)
        .timeout(Duration::from_secs(40))
        .run();
    run.assert_success();
    let refer = run
        .received_requests("REFER")
        .next()
        .expect("REFER in trace");
    assert_refer(
        &refer.msg,
        "billing",
        "greet,known_caller,main_menu,billing",
        Some("billing"),
    );
    // Barge-in + type-ahead: the key cuts the greeting and skips the menu prompt, so the
    // REFER comes about one to_billing prompt after the ACK, not after greeting + menu.
    let ack = run.sent().find(|t| t.msg.method() == Some("ACK")).unwrap();
    let after = refer.at - ack.at;
    let bound = daemon.prompt_len("to_billing").as_secs_f64() + 1.5;
    assert!(
        after < bound,
        "REFER {after:.2}s after ACK, expected < {bound:.2}s (barge-in/type-ahead)\n{}",
        run.report()
    );
}

#[test]
fn info_dtmf_2_transfers_to_support_and_daemon_hangs_up_after_notify_200() {
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts::default());
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    assert_eq!(caller.info_dtmf('2', SIP_WAIT).status(), Some(200));
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    assert_refer(
        &refer.msg,
        "support",
        "greet,known_caller,main_menu,support",
        Some("support"),
    );
    let bye = caller.wait_request("BYE", 0, Duration::from_secs(10));
    assert!(
        bye.is_some(),
        "daemon did not hang up after NOTIFY 200\n{}",
        caller.sip_trace()
    );
    let notified = notify_responses(&caller);
    assert!(
        !notified.is_empty() && notified.iter().all(|s| *s == 200),
        "NOTIFY responses {notified:?}"
    );
    assert_eq!(
        daemon.wait_metric("ivrd_calls_active", 0.0, Duration::from_secs(5)),
        Some(0.0)
    );
}

#[test]
fn rfc4733_key_0_escalates_to_supervisor_from_the_greeting() {
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts::default());
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    caller.send_dtmf("0", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    let to = header_uri(refer.msg.header("Refer-To").unwrap_or(""));
    assert!(
        to.starts_with("sip:supervisor@pbx.example.com"),
        "Refer-To {to}"
    );
    assert_eq!(refer.msg.header("X-IVR-Flow"), Some("support-line"));
    assert!(
        caller
            .wait_request("BYE", 0, Duration::from_secs(10))
            .is_some(),
        "{}",
        caller.sip_trace()
    );
}

#[test]
fn key_3_plays_hours_and_returns_to_the_menu() {
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts::default());
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    let pressed = Instant::now();
    caller.send_dtmf("3", 100);
    // Let "hours" play out (a key would cut it), then choose billing from the menu.
    caller.wait_audio(
        Some(pressed),
        daemon.prompt_len("hours") + Duration::from_millis(800),
    );
    assert!(
        caller.wait_request("REFER", 0, Duration::ZERO).is_none(),
        "key 3 must not transfer"
    );
    caller.send_dtmf("1", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no REFER after hours\n{}", caller.sip_trace()));
    let to = header_uri(refer.msg.header("Refer-To").unwrap_or(""));
    assert!(
        to.starts_with("sip:billing@pbx.example.com"),
        "Refer-To {to}"
    );
}

/// After a REFER, collect what the daemon played until `until` and correlate it with a
/// prompt.
fn played_between(caller: &Caller, from: Instant, until: Instant) -> Vec<i16> {
    caller
        .rtp()
        .iter()
        .filter(|p| p.at >= from && p.at <= until && matches!(p.pt, 0 | 8))
        .flat_map(|p| audio::g711_decode(p.pt, &p.payload))
        .collect()
}

#[test]
fn rejected_refer_plays_transfer_failed_and_returns_to_menu() {
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts {
        refer: ReferPolicy::Reject(603),
        ..CallerOpts::default()
    });
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    caller.send_dtmf("1", 100);
    let first = caller
        .wait_request("REFER", 0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    assert_refer(
        &first.msg,
        "billing",
        "greet,known_caller,main_menu,billing",
        Some("billing"),
    );
    let failed_len = daemon.prompt_len("transfer_failed");
    // The whole "transfer failed" prompt and a second more: no BYE meanwhile.
    caller.wait_audio(Some(first.at), failed_len + Duration::from_secs(1));
    assert!(
        caller.bye_received().is_none(),
        "daemon hung up after a refused transfer\n{}",
        caller.sip_trace()
    );
    let played = played_between(&caller, first.at, Instant::now());
    let reference = audio::load_8k(&daemon.opts.sounds_dir.join("transfer_failed.wav"));
    let m = audio::find_best_match(&reference, &played);
    assert!(
        m.ncc >= 0.9,
        "transfer_failed not heard after the 603: {m:?}"
    );

    // Back in the menu: the same key transfers again.
    caller.send_dtmf("1", 100);
    let second = caller
        .wait_request("REFER", 1, Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "no second REFER: not back in the menu\n{}",
                caller.sip_trace()
            )
        });
    assert_ne!(second.msg.cseq(), first.msg.cseq());
    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
}

#[test]
fn notify_486_after_202_returns_to_menu() {
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts {
        refer: ReferPolicy::accept(486),
        ..CallerOpts::default()
    });
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    caller.send_dtmf("2", 100);
    let first: SipEvent = caller
        .wait_request("REFER", 0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    assert_refer(
        &first.msg,
        "support",
        "greet,known_caller,main_menu,support",
        Some("support"),
    );
    caller.wait_audio(
        Some(first.at),
        daemon.prompt_len("transfer_failed") + Duration::from_secs(1),
    );
    assert!(
        caller.bye_received().is_none(),
        "daemon hung up after a failed transfer\n{}",
        caller.sip_trace()
    );
    let notified = notify_responses(&caller);
    assert_eq!(
        notified,
        vec![200, 200],
        "both NOTIFYs (100 and 486) get 200"
    );
    caller.send_dtmf("1", 100);
    let second = caller
        .wait_request("REFER", 1, Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "no second REFER: not back in the menu\n{}",
                caller.sip_trace()
            )
        });
    let to = header_uri(second.msg.header("Refer-To").unwrap_or(""));
    assert!(
        to.starts_with("sip:billing@pbx.example.com"),
        "Refer-To {to}"
    );
    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
}

// ---------------------------------------------------------------------------------------
// Slow: SIP timers and no-input timeouts
// ---------------------------------------------------------------------------------------

/// ~35 s: RFC 3261 13.3.1.4, 2xx retransmitted at T1, 2T1, ... capped at T2, BYE at 64*T1.
#[test]
fn slow_no_ack_200_is_retransmitted_then_call_ends_with_bye() {
    let daemon = Daemon::start_default();
    let run = Sipp::new("no_ack.xml", daemon.sip_udp)
        .timeout(Duration::from_secs(50))
        .run();
    run.assert_success();
    let oks: Vec<f64> = run
        .received_responses(200, "INVITE")
        .map(|t| t.at)
        .collect();
    let gaps: Vec<f64> = oks.windows(2).map(|w| w[1] - w[0]).collect();
    // 0.5, 1, 2, 4, 4, ... until 32 s: 9 or 10 retransmissions depending on the last one.
    assert!(
        gaps.len() >= 9,
        "{} retransmissions: gaps {gaps:?}\n{}",
        gaps.len(),
        run.report()
    );
    for (i, gap) in gaps.iter().enumerate() {
        let want = (0.5 * f64::powi(2.0, i as i32)).min(4.0);
        assert!(
            (gap - want).abs() < 0.25,
            "retransmission {i}: {gap:.3}s, want {want}s; gaps {gaps:?}"
        );
    }
    let bye = run.received_requests("BYE").next().expect("BYE");
    let after = bye.at - oks[0];
    assert!(
        (30.0..=34.0).contains(&after),
        "BYE {after:.1}s after the first 200 (64*T1 = 32 s)"
    );
    assert_eq!(
        daemon.wait_metric("ivrd_calls_active", 0.0, Duration::from_secs(5)),
        Some(0.0)
    );
}

/// ~40 s: two no-input timeouts (6 s each, after the menu and its reprompt) escalate.
#[test]
fn slow_no_input_twice_escalates_to_supervisor() {
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts::default());
    let answered = Instant::now();
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(75))
        .unwrap_or_else(|| panic!("no escalation REFER\n{}", caller.sip_trace()));
    let to = header_uri(refer.msg.header("Refer-To").unwrap_or(""));
    assert!(
        to.starts_with("sip:supervisor@pbx.example.com"),
        "Refer-To {to}"
    );
    let waited = refer.at.duration_since(answered);
    let min = daemon.prompt_len("greeting")
        + daemon.prompt_len("main_menu") * 2
        + Duration::from_secs(12);
    assert!(
        waited >= min - Duration::from_secs(1),
        "escalated after {waited:?}, before two 6 s timeouts ({min:?})"
    );
}
