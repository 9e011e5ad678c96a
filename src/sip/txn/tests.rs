use super::*;

const INVITE: &str = "INVITE sip:ivr@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-a1;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-proxy\r\n\
From: \"Ann\" <sip:ann@127.0.0.1>;tag=f1\r\nTo: <sip:ivr@127.0.0.1>\r\n\
Call-ID: c1@127.0.0.1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";

fn msg(text: &str) -> Message<'_> {
    Message::read(text.as_bytes())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A transaction whose timers a test runs.
trait Timed {
    fn next(&self) -> Option<Instant>;
    fn fire(&mut self, now: Instant) -> String;
}

impl Timed for ServerInvite {
    fn next(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn fire(&mut self, now: Instant) -> String {
        describe(self.on_timeout(now))
    }
}

impl Timed for ClientNonInvite {
    fn next(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn fire(&mut self, now: Instant) -> String {
        describe(self.on_timeout(now))
    }
}

/// Runs a transaction's timers until `until` after `t0` (or until it stops asking),
/// returning when each went off (ms from `t0`) and what it did.
fn run_timers(txn: &mut impl Timed, t0: Instant, until: Duration) -> Vec<(u128, String)> {
    let mut seen = Vec::new();
    while let Some(at) = txn.next().filter(|&at| at <= t0 + until) {
        let what = txn.fire(at);
        seen.push(((at - t0).as_millis(), what));
        assert!(seen.len() < 100, "a timer that never stops: {seen:?}");
    }
    seen
}

/// When each timer went off, in ms from `t0`.
fn times(seen: &[(u128, String)]) -> Vec<u128> {
    seen.iter().map(|(at, _)| *at).collect()
}

fn describe(t: Timeout) -> String {
    match t {
        Timeout::Resend(b) => format!("resend {}", String::from_utf8_lossy(b)),
        Timeout::GaveUp => "gave up".into(),
        Timeout::Ended => "ended".into(),
        Timeout::Idle => "idle".into(),
    }
}

#[test]
fn an_invite_its_ack_and_its_cancel_key_to_the_same_transaction() {
    let invite = msg(INVITE);
    let key = Key::of_request(&invite).unwrap();
    assert_eq!(key.method, "INVITE");
    assert_eq!(key.id, "z9hG4bK-a1|127.0.0.1:5061");
    let ack = INVITE
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("7 INVITE", "7 ACK");
    assert_eq!(Key::of_request(&msg(&ack)), Some(key.clone()));
    let cancel = INVITE
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("7 INVITE", "7 CANCEL");
    let cancel_key = Key::of_request(&msg(&cancel)).unwrap();
    assert_ne!(cancel_key, key, "a CANCEL is a transaction of its own");
    assert_eq!(cancel_key.cancelled_invite(), key);
    // Same branch from another host: another transaction (§17.2.3 compares sent-by).
    let other = INVITE.replace("127.0.0.1:5061;branch", "127.0.0.2:5061;branch");
    assert_ne!(Key::of_request(&msg(&other)), Some(key));
}

#[test]
fn rfc_2543_requests_are_keyed_by_their_fields_and_a_response_by_our_branch() {
    let old = INVITE.replace("branch=z9hG4bK-a1", "branch=1234");
    let key = Key::of_request(&msg(&old)).unwrap();
    assert!(key.id.starts_with("2543|c1@127.0.0.1|f1|7|"), "{key:?}");
    let again = Key::of_request(&msg(&old)).unwrap();
    assert_eq!(key, again, "a retransmission matches");
    let next = Key::of_request(&msg(&old.replace("7 INVITE", "8 INVITE"))).unwrap();
    assert_ne!(key, next);

    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours;rport=5060\r\n\
From: <sip:ivr@127.0.0.1>;tag=us\r\nTo: <sip:ann@127.0.0.1>;tag=f1\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n\r\n";
    let key = Key::of_response(&msg(response)).unwrap();
    assert_eq!(
        (key.id.as_str(), key.method.as_str()),
        ("z9hG4bKours|127.0.0.1:5060", "BYE")
    );
    assert!(in_dialog(&msg(response)));
    assert!(!in_dialog(&msg(INVITE)));
}

#[test]
fn a_2xx_goes_out_again_at_t1_doubling_to_t2_until_its_ack_comes() {
    let t0 = Instant::now();
    let mut tx = ServerInvite::new(Timers::default(), Reliability::Unreliable);
    assert_eq!(tx.respond(t0, 180, b"180".to_vec()), Some(&b"180"[..]));
    assert_eq!(
        tx.poll_timeout(),
        None,
        "a provisional response is not retransmitted"
    );
    assert_eq!(tx.on_retransmission(), Some(&b"180"[..]));
    tx.respond(t0, 200, b"200".to_vec()).unwrap();
    assert_eq!(tx.state(), InviteState::Accepted { acked: false });
    assert_eq!(
        tx.on_retransmission(),
        None,
        "RFC 6026: the 2xx's own timer covers it"
    );
    let seen = run_timers(&mut tx, t0, ms(12_000));
    assert_eq!(times(&seen), [500, 1500, 3500, 7500, 11500]);
    assert!(seen.iter().all(|(_, what)| what == "resend 200"));
    // The ACK stops them; the transaction stays to absorb stray ACKs until 64·T1.
    let now = t0 + ms(12_000);
    assert_eq!(tx.on_ack(now), AckSeen::Confirms);
    assert_eq!(tx.on_ack(now), AckSeen::Absorbed);
    assert_eq!(tx.respond(now, 200, b"again".to_vec()), None);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
    assert_eq!(tx.on_timeout(t0 + ms(32_000)), Timeout::Ended);
    assert_eq!(tx.state(), InviteState::Terminated);
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn a_2xx_never_acknowledged_gives_up_after_64_t1_even_over_tcp() {
    let t0 = Instant::now();
    let mut tx = ServerInvite::new(Timers::default(), Reliability::Reliable);
    tx.respond(t0, 200, b"200".to_vec()).unwrap();
    let seen = run_timers(&mut tx, t0, ms(40_000));
    // §13.3.1.4: 2xx retransmissions are end to end, so TCP gets them too.
    let resends = seen.iter().filter(|(_, w)| w == "resend 200").count();
    assert_eq!(resends, 10, "{seen:?}");
    assert_eq!(seen.last().unwrap(), &(32_000, "gave up".to_string()));
    assert_eq!(tx.on_ack(t0 + ms(33_000)), AckSeen::Absorbed, "too late");
}

#[test]
fn a_refusal_is_retransmitted_over_udp_until_its_ack_then_lingers_for_t4() {
    let t0 = Instant::now();
    let mut tx = ServerInvite::new(Timers::default(), Reliability::Unreliable);
    tx.respond(t0, 486, b"486".to_vec()).unwrap();
    assert_eq!(tx.state(), InviteState::Completed);
    assert_eq!(tx.on_retransmission(), Some(&b"486"[..]));
    assert_eq!(
        tx.respond(t0, 200, b"200".to_vec()),
        None,
        "one final response"
    );
    assert_eq!(tx.on_timeout(t0 + ms(499)), Timeout::Idle);
    assert_eq!(tx.on_timeout(t0 + ms(500)), Timeout::Resend(b"486"));
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(1500)));
    assert_eq!(tx.on_ack(t0 + ms(600)), AckSeen::EndsRefusal);
    assert_eq!(tx.state(), InviteState::Confirmed);
    assert_eq!(tx.on_ack(t0 + ms(700)), AckSeen::Absorbed);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(5600)), "timer I = T4");
    assert_eq!(tx.on_timeout(t0 + ms(5600)), Timeout::Ended);

    // Unacknowledged: timer H.
    let mut tx = ServerInvite::new(Timers::default(), Reliability::Unreliable);
    tx.respond(t0, 603, b"603".to_vec()).unwrap();
    let seen = run_timers(&mut tx, t0, ms(40_000));
    assert_eq!(seen.last().unwrap(), &(32_000, "gave up".to_string()));
}

#[test]
fn over_tcp_a_refusal_is_sent_once_and_its_ack_ends_the_transaction() {
    let t0 = Instant::now();
    let mut tx = ServerInvite::new(Timers::default(), Reliability::Reliable);
    tx.respond(t0, 487, b"487".to_vec()).unwrap();
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)), "only timer H");
    assert_eq!(tx.on_ack(t0 + ms(10)), AckSeen::EndsRefusal);
    assert_eq!(tx.on_timeout(t0 + ms(10)), Timeout::Ended, "timer I = 0");
}

#[test]
fn a_terminated_invite_transaction_sends_nothing_more() {
    let t0 = Instant::now();
    let mut tx = ServerInvite::new(Timers::default(), Reliability::Unreliable);
    tx.respond(t0, 200, b"200".to_vec()).unwrap();
    tx.terminate();
    assert_eq!(tx.poll_timeout(), None);
    assert_eq!(tx.on_timeout(t0 + ms(500)), Timeout::Idle);
    assert_eq!(tx.on_ack(t0), AckSeen::Absorbed);
}

#[test]
fn a_non_invite_request_answered_once_is_answered_again_from_memory_for_64_t1() {
    let t0 = Instant::now();
    let mut tx = ServerNonInvite::new(Timers::default(), Reliability::Unreliable);
    assert_eq!(tx.on_retransmission(), None, "nothing to repeat yet");
    assert_eq!(tx.respond(t0, 100, b"100".to_vec()), Some(&b"100"[..]));
    assert_eq!(tx.on_retransmission(), Some(&b"100"[..]));
    assert!(!tx.is_answered());
    tx.respond(t0, 200, b"200".to_vec()).unwrap();
    assert!(tx.is_answered());
    assert_eq!(tx.respond(t0, 481, b"481".to_vec()), None);
    assert_eq!(tx.on_retransmission(), Some(&b"200"[..]));
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)), "timer J");
    assert_eq!(tx.on_timeout(t0 + ms(31_999)), Timeout::Idle);
    assert_eq!(tx.on_timeout(t0 + ms(32_000)), Timeout::Ended);

    let mut tcp = ServerNonInvite::new(Timers::default(), Reliability::Reliable);
    tcp.respond(t0, 200, b"200".to_vec()).unwrap();
    assert_eq!(tcp.on_timeout(t0), Timeout::Ended, "timer J = 0 over TCP");
}

#[test]
fn our_request_is_retransmitted_at_t1_doubling_then_every_t2_once_the_peer_is_working() {
    let t0 = Instant::now();
    let mut tx = ClientNonInvite::new(
        t0,
        Timers::default(),
        Reliability::Unreliable,
        b"BYE".to_vec(),
    );
    assert_eq!(tx.request(), b"BYE");
    let seen = run_timers(&mut tx, t0, ms(8_000));
    assert_eq!(times(&seen), [500, 1500, 3500, 7500]);
    assert!(seen.iter().all(|(_, w)| w == "resend BYE"));
    // A 100 at 8 s: the retransmission already due (11.5 s) stays, then every T2.
    assert_eq!(
        tx.on_response(t0 + ms(8_000), 100),
        ResponseSeen::Provisional
    );
    let seen = run_timers(&mut tx, t0, ms(20_000));
    assert_eq!(times(&seen), [11_500, 15_500, 19_500]);
    assert_eq!(tx.on_response(t0 + ms(20_000), 200), ResponseSeen::Final);
    assert_eq!(tx.on_response(t0 + ms(20_100), 200), ResponseSeen::Absorbed);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(25_000)), "timer K = T4");
    assert_eq!(tx.on_timeout(t0 + ms(25_000)), Timeout::Ended);
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn our_request_unanswered_for_64_t1_gives_up_and_tcp_never_retransmits() {
    let t0 = Instant::now();
    let mut udp = ClientNonInvite::new(
        t0,
        Timers::default(),
        Reliability::Unreliable,
        b"REFER".to_vec(),
    );
    let seen = run_timers(&mut udp, t0, ms(60_000));
    assert_eq!(seen.last().unwrap(), &(32_000, "gave up".to_string()));
    assert_eq!(udp.poll_timeout(), None);

    let mut tcp = ClientNonInvite::new(
        t0,
        Timers::default(),
        Reliability::Reliable,
        b"BYE".to_vec(),
    );
    assert_eq!(tcp.poll_timeout(), Some(t0 + ms(32_000)));
    assert_eq!(tcp.on_response(t0 + ms(5), 200), ResponseSeen::Final);
    assert_eq!(
        tcp.on_timeout(t0 + ms(5)),
        Timeout::Ended,
        "timer K = 0 over TCP"
    );
}

#[test]
fn shorter_timers_scale_every_schedule() {
    let timers = Timers {
        t1: ms(100),
        t2: ms(400),
        t4: ms(500),
    };
    assert_eq!(timers.give_up(), ms(6_400));
    let t0 = Instant::now();
    let mut tx = ServerInvite::new(timers, Reliability::Unreliable);
    tx.respond(t0, 200, b"200".to_vec()).unwrap();
    let seen = run_timers(&mut tx, t0, ms(2_000));
    assert_eq!(times(&seen), [100, 300, 700, 1100, 1500, 1900]);
}
