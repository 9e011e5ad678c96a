//! Tests of `call/mod.rs`.

use super::*;
use crate::flow::compile::tests::good_flow;

fn settings(min_ring_ms: u64) -> CallSettings {
    CallSettings {
        facts: Default::default(),
        caller_lookup: false,
        ring_budget: Duration::from_millis(4000),
        min_ring: Duration::from_millis(min_ring_ms),
        overflow: false,
        codec: Codec::Pcmu,
        speech: false,
        rtp_timeout: None,
    }
}

fn kinds(c: &mut Call) -> Vec<String> {
    std::iter::from_fn(|| c.poll_output())
        .filter_map(|o| match o {
            CallOutput::Ringing => Some("ringing".to_string()),
            CallOutput::Answer => Some("answer".into()),
            CallOutput::Refer { target, .. } => Some(format!("refer:{target}")),
            CallOutput::Hangup => Some("bye".into()),
            CallOutput::Ended(o) => Some(format!("ended:{}", o.as_str())),
            _ => None,
        })
        .collect()
}

/// Plays frames until the flow stops asking for audio or `max` frames have passed.
fn play_frames(c: &mut Call, now: &mut Instant, max: usize) {
    let mut buf = [0u8; 160];
    for _ in 0..max {
        *now += Duration::from_millis(20);
        c.next_frame(*now, &mut buf);
        if c.batch_end.is_none() {
            return;
        }
    }
}

#[test]
fn answers_at_once_without_min_ring() {
    let t0 = Instant::now();
    let mut c = Call::new(t0, Arc::new(good_flow()), settings(0));
    assert_eq!(kinds(&mut c), ["ringing", "answer"]);
    assert!(c.is_sending());
}

#[test]
fn ring_deadline_produces_the_answer() {
    let t0 = Instant::now();
    let mut c = Call::new(t0, Arc::new(good_flow()), settings(1000));
    assert_eq!(kinds(&mut c), ["ringing"]);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(1000)));
    c.handle(t0 + Duration::from_millis(999), CallInput::Timeout);
    assert_eq!(kinds(&mut c), Vec::<String>::new());
    c.handle(t0 + Duration::from_millis(1000), CallInput::Timeout);
    assert_eq!(kinds(&mut c), ["answer"]);
}

#[test]
fn min_ring_never_exceeds_the_budget() {
    let t0 = Instant::now();
    let mut s = settings(0);
    s.min_ring = Duration::from_secs(10);
    let c = Call::new(t0, Arc::new(good_flow()), s);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(4000)));
}

#[test]
fn cancel_before_answer_is_abandoned() {
    let t0 = Instant::now();
    let mut c = Call::new(t0, Arc::new(good_flow()), settings(2000));
    kinds(&mut c);
    c.handle(t0 + Duration::from_millis(500), CallInput::Cancelled);
    assert_eq!(kinds(&mut c), ["ended:abandoned"]);
    assert!(c.is_ended());
}

#[test]
fn key_then_transfer_then_bye_after_notify_200() {
    let mut now = Instant::now();
    let mut c = Call::new(now, Arc::new(good_flow()), settings(0));
    kinds(&mut c);
    c.handle(now, CallInput::Acked);
    c.handle(now, CallInput::Dtmf('1'));
    play_frames(&mut c, &mut now, 1000);
    assert_eq!(kinds(&mut c), ["refer:sip:billing@pbx.example.com"]);
    c.handle(now, CallInput::ReferAnswered(202));
    assert_eq!(kinds(&mut c), Vec::<String>::new());
    c.handle(now, CallInput::ReferNotify(100));
    c.handle(now, CallInput::ReferNotify(200));
    assert_eq!(kinds(&mut c), ["bye", "ended:transferred"]);
}

#[test]
fn refused_refer_plays_failure_and_returns_to_menu() {
    let mut now = Instant::now();
    let mut c = Call::new(now, Arc::new(good_flow()), settings(0));
    c.handle(now, CallInput::Dtmf('1'));
    play_frames(&mut c, &mut now, 1000);
    kinds(&mut c);
    c.handle(now, CallInput::ReferAnswered(603));
    assert!(c.batch_end.is_some(), "transfer_failed prompt is playing");
    assert!(!c.is_ended());
}

#[test]
fn transfer_without_notify_times_out_as_failure() {
    let mut now = Instant::now();
    let mut c = Call::new(now, Arc::new(good_flow()), settings(0));
    c.handle(now, CallInput::Dtmf('1'));
    play_frames(&mut c, &mut now, 1000);
    c.handle(now, CallInput::ReferAnswered(202));
    let deadline = c.poll_timeout().unwrap();
    assert_eq!(deadline, now + TRANSFER_TIMEOUT);
    c.handle(deadline, CallInput::Timeout);
    assert!(c.batch_end.is_some(), "transfer_failed prompt is playing");
}

#[test]
fn caller_hangup_ends_without_bye() {
    let now = Instant::now();
    let mut c = Call::new(now, Arc::new(good_flow()), settings(0));
    kinds(&mut c);
    c.handle(now, CallInput::PeerHangup);
    assert_eq!(kinds(&mut c), ["ended:caller_hangup"]);
    // Nothing happens after the end.
    c.handle(now, CallInput::Dtmf('1'));
    assert_eq!(kinds(&mut c), Vec::<String>::new());
}

#[test]
fn prompts_play_in_order_and_flow_waits_for_them() {
    let mut now = Instant::now();
    let mut c = Call::new(now, Arc::new(good_flow()), settings(0));
    kinds(&mut c);
    // Greeting prompt: 800 samples of silence = 5 frames, then the menu prompt.
    let first = c.batch_end;
    play_frames(&mut c, &mut now, 10);
    play_frames(&mut c, &mut now, 1);
    assert_ne!(c.batch_end, first, "menu prompt queued after the greeting");
}

#[test]
fn held_call_does_not_send() {
    let now = Instant::now();
    let mut c = Call::new(now, Arc::new(good_flow()), settings(0));
    c.handle(now, CallInput::Hold(true));
    assert!(!c.is_sending());
    c.handle(now, CallInput::Hold(false));
    assert!(c.is_sending());
}

#[test]
fn silent_media_ends_the_call_but_not_while_on_hold() {
    let t0 = Instant::now();
    let mut s = settings(0);
    s.rtp_timeout = Some(Duration::from_secs(30));
    let mut c = Call::new(t0, Arc::new(good_flow()), s);
    kinds(&mut c);
    c.handle(t0 + Duration::from_secs(10), CallInput::MediaSeen);
    assert!(c.poll_timeout().unwrap() <= t0 + Duration::from_secs(40));
    c.handle(t0 + Duration::from_secs(11), CallInput::Hold(true));
    // On hold the caller may well send nothing: no media deadline.
    assert!(c.timers.get(Timer::MediaSilence).is_none());
    c.handle(t0 + Duration::from_secs(100), CallInput::Hold(false));
    c.handle(t0 + Duration::from_secs(129), CallInput::Timeout);
    assert!(!c.is_ended());
    c.handle(t0 + Duration::from_secs(130), CallInput::Timeout);
    assert_eq!(kinds(&mut c), ["bye", "ended:rtp_timeout"]);
}

fn queued_call(t0: Instant) -> Call {
    let flow = crate::flow::compile(
        std::path::Path::new("q.yaml"),
        crate::flow::compile::tests::QUEUED,
        &mut crate::flow::compile::tests::FakePrompts,
    )
    .unwrap();
    let mut c = Call::new(t0, Arc::new(flow), settings(0));
    c.handle(t0, CallInput::Acked);
    c
}

/// The bridge outputs, compactly.
fn links(c: &mut Call) -> Vec<String> {
    std::iter::from_fn(|| c.poll_output())
        .filter_map(|o| match o {
            CallOutput::JoinQueue { queue } => Some(format!("join:{queue}")),
            CallOutput::DialAgent { agent, context, .. } => {
                Some(format!("dial:{agent}:{}", context.path.join(",")))
            }
            CallOutput::CancelAgent { agent } => Some(format!("cancel:{agent}")),
            CallOutput::Bridge { agent } => Some(format!("bridge:{agent}")),
            CallOutput::ToQueue(r) => Some(format!("report:{r:?}")),
            CallOutput::Hangup => Some("bye".into()),
            CallOutput::Ended(o) => Some(format!("ended:{}", o.as_str())),
            _ => None,
        })
        .collect()
}

fn offer(agent: &str) -> CallInput<'static> {
    CallInput::Queue(QueueEvent::Offer {
        agent: agent.into(),
        uri: format!("sip:{agent}@127.0.0.1"),
        ring_timeout: Duration::from_secs(15),
    })
}

fn leg(agent: &str, event: LegEvent) -> CallInput<'static> {
    CallInput::AgentLeg {
        agent: agent.into(),
        event,
    }
}

/// Plays until the call joins its queue.
fn until_queued(c: &mut Call, now: &mut Instant) {
    for _ in 0..4 {
        play_frames(c, now, 500);
    }
}

#[test]
fn ring_all_bridges_the_first_answer_and_cancels_the_rest() {
    let mut now = Instant::now();
    let mut c = queued_call(now);
    until_queued(&mut c, &mut now);
    assert_eq!(links(&mut c), ["join:support"]);
    c.handle(now, offer("a"));
    c.handle(now, offer("b"));
    assert_eq!(links(&mut c), ["dial:a:greet,wait", "dial:b:greet,wait"]);
    c.handle(now, leg("b", LegEvent::Answered));
    assert_eq!(
        links(&mut c),
        ["cancel:a", "report:Answered { agent: \"b\" }", "bridge:b"]
    );
    assert!(c.is_bridged() && !c.is_sending());
    // A late answer from the cancelled leg is hung up and the agent freed.
    c.handle(now, leg("a", LegEvent::Answered));
    assert_eq!(
        links(&mut c),
        [
            "cancel:a",
            "report:OfferFailed { agent: \"a\", why: Failed }"
        ]
    );
    // The agent hangs up: the caller goes on in the flow (after_agent: goodbye, hangup).
    c.handle(now, leg("b", LegEvent::HungUp));
    assert_eq!(links(&mut c), ["report:TalkEnded { agent: \"b\" }"]);
    assert!(c.is_sending());
    play_frames(&mut c, &mut now, 500);
    assert_eq!(links(&mut c), ["bye", "ended:completed"]);
}

#[test]
fn a_caller_who_hangs_up_ends_the_agent_leg_or_leaves_the_queue() {
    let mut now = Instant::now();
    let mut c = queued_call(now);
    until_queued(&mut c, &mut now);
    links(&mut c);
    c.handle(now, offer("a"));
    c.handle(now, leg("a", LegEvent::Answered));
    links(&mut c);
    c.handle(now, CallInput::PeerHangup);
    assert_eq!(
        links(&mut c),
        [
            "cancel:a",
            "report:TalkEnded { agent: \"a\" }",
            "ended:caller_hangup"
        ]
    );

    let mut c = queued_call(now);
    until_queued(&mut c, &mut now);
    links(&mut c);
    c.handle(now, offer("a"));
    c.handle(
        now,
        leg("a", LegEvent::Failed(crate::queue::OfferEnd::Busy)),
    );
    assert_eq!(
        links(&mut c),
        [
            "dial:a:greet,wait",
            "report:OfferFailed { agent: \"a\", why: Busy }"
        ]
    );
    c.handle(now, offer("b"));
    links(&mut c);
    c.handle(now, CallInput::PeerHangup);
    assert_eq!(
        links(&mut c),
        ["cancel:b", "report:Leave", "ended:caller_hangup"]
    );
}

#[test]
fn an_offer_for_a_caller_no_longer_waiting_frees_the_agent() {
    let mut now = Instant::now();
    let mut c = queued_call(now);
    until_queued(&mut c, &mut now);
    links(&mut c);
    c.handle(now, CallInput::Queue(QueueEvent::NoAgents));
    c.handle(now, offer("a"));
    assert_eq!(
        links(&mut c),
        ["report:OfferFailed { agent: \"a\", why: Failed }"]
    );
}

#[test]
fn news_that_crosses_the_bridge_leaves_the_talk_alone() {
    let mut now = Instant::now();
    let mut c = queued_call(now);
    until_queued(&mut c, &mut now);
    links(&mut c);
    c.handle(now, offer("a"));
    c.handle(now, leg("a", LegEvent::Answered));
    links(&mut c);
    for news in [
        QueueEvent::PlaceKept { confirm: vec![] },
        QueueEvent::TimedOut,
        QueueEvent::NoAgents,
    ] {
        c.handle(now, CallInput::Queue(news));
        assert!(c.is_bridged(), "still talking to the agent");
    }
    c.handle(now, leg("a", LegEvent::HungUp));
    assert_eq!(links(&mut c), ["report:TalkEnded { agent: \"a\" }"]);
}
