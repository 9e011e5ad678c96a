use super::*;
use crate::sip::uas::Local;
use std::time::Duration;

const INVITE: &str = "INVITE sip:support@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKinv1;rport\r\n\
From: <sip:ann@127.0.0.1>;tag=f1\r\nTo: <sip:support@127.0.0.1>\r\n\
Call-ID: leg1\r\nCSeq: 7 INVITE\r\nContact: <sip:ann@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n\
Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";

fn peer() -> SocketAddr {
    "127.0.0.1:5061".parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn leg(reliability: Reliability) -> Leg {
    let local = Local {
        transport: "UDP",
        sent_by: "127.0.0.1:5060".into(),
        contact: "sip:ivr@127.0.0.1:5060".into(),
    };
    Leg::new(
        INVITE.as_bytes().to_vec(),
        peer(),
        "us",
        local,
        1,
        Timers::default(),
        reliability,
    )
    .unwrap()
}

/// A leg whose call was answered at `t0` and acknowledged, its output drained.
fn answered(reliability: Reliability, t0: Instant) -> Leg {
    let mut leg = leg(reliability);
    leg.accept(t0, &[], b"v=0\r\n");
    leg.on_message(t0, from_peer("ACK", 7, "a").as_bytes(), peer());
    drain(&mut leg);
    leg
}

/// A request from the peer inside the dialog.
fn from_peer(method: &str, cseq: u32, branch: &str) -> String {
    format!(
        "{method} sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK{branch};rport\r\n\
From: <sip:ann@127.0.0.1>;tag=f1\r\nTo: <sip:support@127.0.0.1>;tag=us\r\nCall-ID: leg1\r\n\
CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Everything the leg put out, each as one line: `send <first line> -> <target>` or the event.
fn drain(leg: &mut Leg) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(o) = leg.poll_output() {
        seen.push(match o {
            Output::Send { bytes, to } => {
                let text = String::from_utf8(bytes).unwrap();
                let first = text.lines().next().unwrap().to_string();
                let cseq = text
                    .lines()
                    .find_map(|l| l.strip_prefix("CSeq: "))
                    .unwrap_or_default()
                    .to_string();
                let to = match to {
                    Target::Addr(a) => a.to_string(),
                    Target::Uri(u) => u,
                };
                format!("send {first} ({cseq}) -> {to}")
            }
            Output::Event(Event::Request { method, .. }) => format!("request {method}"),
            Output::Event(Event::Answered { method, code, .. }) => {
                format!("answered {method} {code}")
            }
            Output::Event(e) => format!("{e:?}"),
        });
    }
    seen
}

fn run_until(leg: &mut Leg, until: Instant) -> Vec<(Instant, String)> {
    let mut seen = Vec::new();
    while let Some(at) = leg.poll_timeout().filter(|&at| at <= until) {
        leg.on_timeout(at);
        seen.extend(drain(leg).into_iter().map(|s| (at, s)));
        assert!(seen.len() < 100, "timers that never stop");
    }
    seen
}

#[test]
fn a_call_rings_is_answered_acknowledged_and_hung_up_by_the_caller() {
    let t0 = Instant::now();
    let mut leg = leg(Reliability::Unreliable);
    assert!(leg.is_ringing());
    leg.provisional(t0, (180, "Ringing"));
    leg.accept(t0, &[("Allow", "INVITE, ACK, BYE")], b"v=0\r\n");
    assert_eq!(
        drain(&mut leg),
        [
            "send SIP/2.0 180 Ringing (7 INVITE) -> 127.0.0.1:5061",
            "send SIP/2.0 200 OK (7 INVITE) -> 127.0.0.1:5061",
        ]
    );
    assert!(!leg.is_ringing());
    // The ACK of a 2xx has a branch of its own (§17.1.1.3).
    let ack = from_peer("ACK", 7, "ack1");
    leg.on_message(t0 + ms(10), ack.as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["Acked { cseq: 7, body: [] }"],
        "the 200 is not retransmitted any more"
    );
    leg.on_message(t0 + ms(11), ack.as_bytes(), peer());
    assert!(drain(&mut leg).is_empty(), "a second ACK is absorbed");
    assert!(run_until(&mut leg, t0 + ms(20_000)).is_empty());

    let bye = from_peer("BYE", 8, "bye1");
    leg.on_message(t0 + ms(20_000), bye.as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 200 OK (8 BYE) -> 127.0.0.1:5061", "HungUp"]
    );
    leg.on_message(t0 + ms(20_500), bye.as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 200 OK (8 BYE) -> 127.0.0.1:5061"],
        "the retransmitted BYE gets the same answer and hangs up nothing more"
    );
    assert!(!leg.is_idle());
    assert!(leg.is_quiet(), "only retransmissions are left to absorb");
    assert!(run_until(&mut leg, t0 + ms(60_000)).is_empty());
    assert!(leg.is_idle(), "every transaction is over after 64·T1");
}

#[test]
fn a_leg_is_quiet_only_once_nothing_is_owed_or_awaited() {
    let t0 = Instant::now();
    let mut leg = leg(Reliability::Unreliable);
    assert!(!leg.is_quiet(), "the INVITE waits for its answer");
    leg.accept(t0, &[], b"v=0\r\n");
    drain(&mut leg);
    assert!(!leg.is_quiet(), "the 200 is retransmitted until the ACK");
    leg.on_message(t0, from_peer("ACK", 7, "a").as_bytes(), peer());
    drain(&mut leg);
    assert!(leg.is_quiet());

    leg.on_message(t0, from_peer("INFO", 8, "i1").as_bytes(), peer());
    let Some(Output::Event(Event::Request { id, .. })) = leg.poll_output() else {
        panic!("the INFO is the call's to answer");
    };
    assert!(!leg.is_quiet(), "the INFO waits for the call's answer");
    leg.respond(t0, &id, (200, "OK"), &[], None);
    assert!(!leg.is_quiet(), "the answer has not gone out yet");
    drain(&mut leg);
    assert!(leg.is_quiet());

    leg.request(t0, "BYE", "b1", &[], None);
    drain(&mut leg);
    assert!(!leg.is_quiet(), "our BYE is retransmitted until answered");
    run_until(&mut leg, t0 + ms(40_000));
    assert!(
        leg.is_quiet(),
        "a BYE nobody answered is over after 64·T1 (408)"
    );

    let mut refused = self::leg(Reliability::Unreliable);
    refused.refuse(t0, (486, "Busy Here"), &[]);
    drain(&mut refused);
    assert!(
        !refused.is_quiet(),
        "the refusal is retransmitted until its ACK"
    );
}

#[test]
fn a_retransmitted_invite_gets_the_last_provisional_response_again() {
    let t0 = Instant::now();
    let mut leg = leg(Reliability::Unreliable);
    leg.on_message(t0, INVITE.as_bytes(), peer());
    assert!(
        drain(&mut leg).is_empty(),
        "nothing sent yet, nothing to repeat"
    );
    leg.provisional(t0, (180, "Ringing"));
    drain(&mut leg);
    leg.on_message(t0 + ms(500), INVITE.as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 180 Ringing (7 INVITE) -> 127.0.0.1:5061"]
    );
}

#[test]
fn cancel_while_ringing_gets_200_and_the_invite_487_and_after_the_answer_changes_nothing() {
    let t0 = Instant::now();
    let mut leg = leg(Reliability::Unreliable);
    leg.provisional(t0, (180, "Ringing"));
    drain(&mut leg);
    // CANCEL: same branch as the INVITE, To without tag (§9.1).
    let cancel = INVITE
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("7 INVITE", "7 CANCEL")
        .replace(
            "Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
            "Content-Length: 0\r\n\r\n",
        );
    leg.on_message(t0 + ms(100), cancel.as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        [
            "send SIP/2.0 200 OK (7 CANCEL) -> 127.0.0.1:5061",
            "send SIP/2.0 487 Request Terminated (7 INVITE) -> 127.0.0.1:5061",
            "Cancelled",
        ]
    );
    leg.on_message(t0 + ms(200), cancel.as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 200 OK (7 CANCEL) -> 127.0.0.1:5061"]
    );
    // The 487 goes out again until its ACK (same branch as the INVITE) comes.
    let resent = run_until(&mut leg, t0 + ms(600));
    assert_eq!(resent.len(), 1, "{resent:?}");
    let ack = INVITE
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("7 INVITE", "7 ACK")
        .replace(
            "To: <sip:support@127.0.0.1>",
            "To: <sip:support@127.0.0.1>;tag=us",
        );
    leg.on_message(t0 + ms(700), ack.as_bytes(), peer());
    assert!(
        drain(&mut leg).is_empty(),
        "the ACK of a refusal tells the call nothing"
    );
    assert!(run_until(&mut leg, t0 + ms(40_000)).is_empty());
    assert!(leg.is_idle());

    // After the answer a CANCEL is answered and ignored.
    let mut leg = super::tests::leg(Reliability::Unreliable);
    leg.accept(t0, &[], b"v=0\r\n");
    drain(&mut leg);
    leg.on_message(t0 + ms(10), cancel.as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 200 OK (7 CANCEL) -> 127.0.0.1:5061"]
    );
}

#[test]
fn an_answer_never_acknowledged_is_retransmitted_then_the_call_is_told_to_end() {
    let t0 = Instant::now();
    let mut leg = leg(Reliability::Unreliable);
    leg.accept(t0, &[], b"v=0\r\n");
    drain(&mut leg);
    let seen = run_until(&mut leg, t0 + ms(40_000));
    let resends = seen.iter().filter(|(_, s)| s.contains("200 OK")).count();
    assert_eq!(resends, 10, "{seen:?}");
    assert_eq!(
        seen.last().unwrap(),
        &(t0 + ms(32_000), "NoAck".to_string())
    );
}

#[test]
fn our_bye_is_retransmitted_until_answered_and_its_answer_reaches_the_call() {
    let t0 = Instant::now();
    let mut leg = answered(Reliability::Unreliable, t0);
    let id = leg.request(t0 + ms(1_000), "BYE", "ourbye", &[], None);
    assert_eq!(
        drain(&mut leg),
        ["send BYE sip:ann@127.0.0.1:5061 SIP/2.0 (1 BYE) -> sip:ann@127.0.0.1:5061"]
    );
    let resent = run_until(&mut leg, t0 + ms(1_600));
    assert_eq!(resent.len(), 1, "timer E at T1: {resent:?}");
    let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKourbye;rport=5060;received=127.0.0.1\r\n\
From: <sip:support@127.0.0.1>;tag=us\r\nTo: <sip:ann@127.0.0.1>;tag=f1\r\nCall-ID: leg1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    leg.on_message(t0 + ms(1_700), ok.as_bytes(), peer());
    assert_eq!(drain(&mut leg), ["answered BYE 200"]);
    leg.on_message(t0 + ms(1_800), ok.as_bytes(), peer());
    assert!(
        drain(&mut leg).is_empty(),
        "a retransmitted 200 is absorbed"
    );
    assert_eq!(
        id,
        RequestId(Key::of_response(&Message::read(ok.as_bytes())).unwrap())
    );
    assert!(run_until(&mut leg, t0 + ms(40_000)).is_empty());
    assert!(leg.is_idle());
}

#[test]
fn a_refer_nobody_answers_fails_with_408_after_64_t1_and_tcp_sends_it_once() {
    let t0 = Instant::now();
    for (reliability, sends) in [(Reliability::Unreliable, 11), (Reliability::Reliable, 1)] {
        let mut leg = answered(reliability, t0);
        leg.request(
            t0,
            "REFER",
            "r",
            &[("Refer-To", "<sip:agent@127.0.0.1>")],
            None,
        );
        let mut seen: Vec<String> = drain(&mut leg);
        seen.extend(
            run_until(&mut leg, t0 + ms(40_000))
                .into_iter()
                .map(|(_, s)| s),
        );
        let refers = seen.iter().filter(|s| s.starts_with("send REFER")).count();
        assert_eq!(refers, sends, "{reliability:?}: {seen:?}");
        assert_eq!(seen.last().unwrap(), "answered REFER 408");
    }
}

#[test]
fn the_call_answers_requests_inside_the_dialog_and_retransmissions_get_the_same_answer() {
    let t0 = Instant::now();
    let mut leg = answered(Reliability::Unreliable, t0);
    let info = from_peer("INFO", 8, "info1");
    leg.on_message(t0, info.as_bytes(), peer());
    let mut out = Vec::new();
    while let Some(o) = leg.poll_output() {
        out.push(o);
    }
    let [Output::Event(Event::Request { id, method, bytes })] = &out[..] else {
        panic!("{out:?}");
    };
    assert_eq!(
        (method.as_str(), bytes.as_slice()),
        ("INFO", info.as_bytes())
    );
    leg.on_message(t0 + ms(100), info.as_bytes(), peer());
    assert!(drain(&mut leg).is_empty(), "not answered yet: absorbed");
    leg.respond(t0 + ms(200), id, (200, "OK"), &[], None);
    leg.respond(t0 + ms(200), id, (500, "Again"), &[], None);
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 200 OK (8 INFO) -> 127.0.0.1:5061"],
        "one final response"
    );
    leg.on_message(t0 + ms(300), info.as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 200 OK (8 INFO) -> 127.0.0.1:5061"]
    );
    // Out of order (§12.2.2): refused by the dialog itself, the call never sees it.
    leg.on_message(t0 + ms(400), from_peer("INFO", 6, "old").as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 500 Server Internal Error (6 INFO) -> 127.0.0.1:5061"]
    );
}

#[test]
fn a_reinvite_is_the_calls_to_answer_and_its_ack_is_found_by_cseq() {
    let t0 = Instant::now();
    let mut leg = answered(Reliability::Unreliable, t0);
    leg.on_message(t0 + ms(1), from_peer("INVITE", 9, "re1").as_bytes(), peer());
    let Some(Output::Event(Event::Request { id, method, .. })) = leg.poll_output() else {
        panic!("no request");
    };
    assert_eq!(method, "INVITE");
    leg.respond(
        t0 + ms(2),
        &id,
        (200, "OK"),
        &[],
        Some(Body {
            content_type: "application/sdp",
            bytes: b"v=0\r\n",
        }),
    );
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 200 OK (9 INVITE) -> 127.0.0.1:5061"]
    );
    assert_eq!(
        run_until(&mut leg, t0 + ms(600)).len(),
        1,
        "retransmitted until the ACK"
    );
    leg.on_message(t0 + ms(700), from_peer("ACK", 9, "ack9").as_bytes(), peer());
    assert_eq!(drain(&mut leg), ["Acked { cseq: 9, body: [] }"]);
    assert!(run_until(&mut leg, t0 + ms(5_000)).is_empty());
}

#[test]
fn a_reinvites_answer_never_acknowledged_ends_the_call_too() {
    let t0 = Instant::now();
    let mut leg = answered(Reliability::Unreliable, t0);
    leg.on_message(t0, from_peer("INVITE", 9, "re2").as_bytes(), peer());
    let Some(Output::Event(Event::Request { id, .. })) = leg.poll_output() else {
        panic!("no request");
    };
    leg.respond(t0, &id, (200, "OK"), &[], None);
    drain(&mut leg);
    let seen = run_until(&mut leg, t0 + ms(40_000));
    let events: Vec<&str> = seen
        .iter()
        .map(|(_, s)| s.as_str())
        .filter(|s| !s.starts_with("send "))
        .collect();
    assert_eq!(events, ["NoAck"], "{seen:?}");
    assert!(seen.len() > 5, "the 200 was retransmitted first: {seen:?}");
}

#[test]
fn a_bye_while_ringing_ends_the_invite_with_487() {
    let t0 = Instant::now();
    let mut leg = leg(Reliability::Reliable);
    leg.provisional(t0, (180, "Ringing"));
    drain(&mut leg);
    leg.on_message(t0, from_peer("BYE", 8, "b").as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        [
            "send SIP/2.0 487 Request Terminated (7 INVITE) -> 127.0.0.1:5061",
            "send SIP/2.0 200 OK (8 BYE) -> 127.0.0.1:5061",
            "HungUp",
        ]
    );
}

#[test]
fn only_an_invite_with_a_via_and_cseq_makes_a_leg() {
    let local = Local {
        transport: "UDP",
        sent_by: "127.0.0.1:5060".into(),
        contact: "sip:ivr@127.0.0.1".into(),
    };
    let make = |text: &str| {
        Leg::new(
            text.as_bytes().to_vec(),
            peer(),
            "us",
            local.clone(),
            1,
            Timers::default(),
            Reliability::Reliable,
        )
        .map(|_| ())
    };
    assert_eq!(
        make(&from_peer("BYE", 1, "x")),
        Err(Unusable("not an INVITE"))
    );
    let no_via = INVITE.replace(
        "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKinv1;rport\r\n",
        "",
    );
    assert_eq!(make(&no_via), Err(Unusable("no Via or CSeq")));
    assert_eq!(make(INVITE), Ok(()));
}

#[test]
fn a_bye_before_the_ack_stops_the_answers_retransmissions() {
    let t0 = Instant::now();
    let mut leg = leg(Reliability::Unreliable);
    leg.accept(t0, &[], b"v=0\r\n");
    drain(&mut leg);
    leg.on_message(t0 + ms(100), from_peer("BYE", 8, "b").as_bytes(), peer());
    assert_eq!(
        drain(&mut leg),
        ["send SIP/2.0 200 OK (8 BYE) -> 127.0.0.1:5061", "HungUp"]
    );
    let later = run_until(&mut leg, t0 + ms(60_000));
    assert!(
        later.is_empty(),
        "no 200 for the INVITE, no NoAck: {later:?}"
    );
    assert!(leg.is_idle());
}
