//! The runner in virtual time: each test drives one call through a compiled flow.
use super::*;
use crate::asr::matcher::YES;
use crate::flow::compile::tests::good_flow;
use std::time::Duration;

struct Harness {
    r: FlowRunner,
    now: Instant,
}

/// A compact log of outputs: "play:greeting", "stop", "transfer:sip:..", "intent:billing", "end:Hangup".
fn describe(o: &FlowOutput) -> Option<String> {
    Some(match o {
        FlowOutput::Play { prompts, .. } => format!(
            "play:{}",
            prompts
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("+")
        ),
        FlowOutput::StopPlayback => "stop".into(),
        FlowOutput::Transfer { target, .. } => format!("transfer:{target}"),
        FlowOutput::Intent { intent, .. } => format!("intent:{intent}"),
        FlowOutput::Escalated(r) => format!("escalated:{}", r.as_str()),
        FlowOutput::Entered(_) => return None,
        FlowOutput::Upset(cause) => format!("upset:{cause}"),
        FlowOutput::End(e) => format!("end:{e:?}"),
        FlowOutput::EscalationFailed => "escalation_failed".into(),
        FlowOutput::OutageAnnounced(id) => format!("outage:{id}"),
        FlowOutput::CallbackRequested { reason, .. } => format!("callback:{reason}"),
        FlowOutput::Speech(o) => format!("speech:{}", o.as_str()),
        FlowOutput::SpeechConfidence(c) => format!("confidence:{c:.2}"),
        FlowOutput::Queue { queue, .. } => format!("queue:{queue}"),
        FlowOutput::LeaveQueue => "leave_queue".into(),
        FlowOutput::KeepPlace => "keep_place".into(),
        FlowOutput::Feedback { score, .. } => format!("feedback:{score:?}"),
    })
}

impl Harness {
    fn new() -> Self {
        Self::with_outages(Vec::new())
    }
    /// A call on the test flow with these outages in force, started.
    fn with_outages(specs: Vec<crate::outage::OutageSpec>) -> Self {
        let now = Instant::now();
        let mut r = FlowRunner::new(Arc::new(good_flow()));
        let items = specs.into_iter().map(crate::outage::tests::ann).collect();
        r.set_outages(Arc::new(OutageSet::active(items, 0)));
        r.start(now, false);
        Harness { r, now }
    }
    fn out(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.r.poll_output())
            .filter_map(|o| describe(&o))
            .collect()
    }
    fn done(&mut self) -> Vec<String> {
        self.r.handle(self.now, FlowInput::PlaybackDone);
        self.out()
    }
    fn key(&mut self, k: char) -> Vec<String> {
        self.r.handle(self.now, FlowInput::Dtmf(k));
        self.out()
    }
    /// Advances virtual time to the runner's timer and fires it.
    fn wait(&mut self) -> Vec<String> {
        let t = self.r.poll_timeout().expect("a timer is set");
        self.now = t;
        self.r.handle_timeout(t);
        self.out()
    }
}

#[test]
fn greeting_then_menu_then_transfer_by_key() {
    let mut h = Harness::new();
    assert_eq!(h.out(), ["play:greeting"]);
    assert_eq!(h.done(), ["play:main_menu"]);
    assert_eq!(h.done(), Vec::<String>::new());
    assert_eq!(h.r.poll_timeout(), Some(h.now + Duration::from_secs(6)));
    assert_eq!(h.key('1'), ["intent:billing", "play:to_billing"]);
    assert_eq!(h.done(), ["transfer:sip:billing@pbx.example.com"]);
    h.r.handle(h.now, FlowInput::TransferSucceeded);
    assert_eq!(h.out(), ["end:Transferred"]);
    assert!(h.r.is_ended());
}

#[test]
fn key_during_greeting_barges_in_and_is_kept_for_the_menu() {
    let mut h = Harness::new();
    h.out();
    assert_eq!(
        h.key('2'),
        [
            "stop",
            "intent:support",
            "transfer:sip:support@pbx.example.com"
        ]
    );
}

#[test]
fn transfer_context_carries_path_intent_and_input() {
    let mut h = Harness::new();
    h.out();
    h.key('1');
    h.r.handle(h.now, FlowInput::PlaybackDone);
    let t = std::iter::from_fn(|| h.r.poll_output())
        .find_map(|o| match o {
            FlowOutput::Transfer { context, .. } => Some(context),
            _ => None,
        })
        .unwrap();
    assert_eq!(t.flow, "test");
    assert_eq!(t.path, ["greet", "menu", "billing"]);
    assert_eq!(t.intent.as_deref(), Some("billing"));
    assert_eq!(t.last_input.as_deref(), Some("1"));
    assert_eq!(t.reason, None);
}

#[test]
fn failed_transfer_continues_at_on_fail() {
    let mut h = Harness::new();
    h.out();
    h.key('1');
    h.done();
    h.r.handle(h.now, FlowInput::TransferFailed);
    assert_eq!(h.out(), ["play:transfer_failed"]);
    assert_eq!(h.done(), ["play:main_menu"]);
}

#[test]
fn play_node_returns_to_menu() {
    let mut h = Harness::new();
    h.out();
    h.done();
    h.done();
    assert_eq!(h.key('3'), ["intent:hours", "play:hours"]);
    assert_eq!(h.done(), ["play:main_menu"]);
}

#[test]
fn escalation_key_works_in_every_state() {
    // During the greeting prompt.
    let mut h = Harness::new();
    h.out();
    assert_eq!(h.key('0'), ["stop", "escalated:key", "play:to_supervisor"]);
    assert_eq!(h.done(), ["transfer:sip:supervisor@pbx.example.com"]);
    // While a menu waits for input.
    let mut h = Harness::new();
    h.out();
    h.done();
    h.done();
    assert_eq!(h.key('0'), ["escalated:key", "play:to_supervisor"]);
    // During a transfer's lead-in prompt.
    let mut h = Harness::new();
    h.out();
    h.done();
    h.done();
    h.key('1');
    assert_eq!(h.key('0'), ["stop", "escalated:key", "play:to_supervisor"]);
    let ctx = {
        h.r.handle(h.now, FlowInput::PlaybackDone);
        std::iter::from_fn(|| h.r.poll_output())
            .find_map(|o| match o {
                FlowOutput::Transfer { context, .. } => Some(context),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(ctx.reason, Some(EscalationReason::Key));
    assert_eq!(ctx.intent.as_deref(), Some("billing"));
}

#[test]
fn two_failures_escalate_on_their_own() {
    let mut h = Harness::new();
    h.out();
    h.done();
    h.done();
    assert_eq!(h.wait(), ["play:no_input+main_menu"]);
    assert_eq!(h.done(), Vec::<String>::new());
    assert_eq!(h.key('9'), ["escalated:failures", "play:to_supervisor"]);
}

#[test]
fn failed_escalation_goes_to_on_fail() {
    let mut h = Harness::new();
    h.out();
    h.key('0');
    h.done();
    h.r.handle(h.now, FlowInput::TransferFailed);
    assert_eq!(h.out(), ["escalation_failed", "play:main_menu"]);
}

#[test]
fn multi_key_choice_waits_for_inter_digit_timeout() {
    let mut h = Harness::new();
    h.out();
    h.done();
    h.done();
    // "4" is a choice and a prefix of "42": wait.
    assert_eq!(h.key('4'), Vec::<String>::new());
    assert_eq!(h.r.poll_timeout(), Some(h.now + Duration::from_secs(2)));
    assert_eq!(h.key('2'), ["intent:long", "play:hours"]);
    // Alone, "4" wins when the caller stops typing.
    let mut h = Harness::new();
    h.out();
    h.done();
    h.done();
    h.key('4');
    assert_eq!(h.wait(), ["intent:four", "play:goodbye"]);
    assert_eq!(h.done(), ["end:Hangup"]);
}

#[test]
fn retries_exhausted_go_to_on_failure_without_escalation() {
    let text = crate::flow::compile::tests::GOOD.replace(
        "  on_fail: menu\n",
        "  on_fail: menu\n  after_failures: 0\n",
    );
    let flow = crate::flow::compile(
        std::path::Path::new("t.yaml"),
        &text,
        &mut crate::flow::compile::tests::FakePrompts,
    )
    .unwrap();
    let now = Instant::now();
    let mut h = Harness {
        r: FlowRunner::new(Arc::new(flow)),
        now,
    };
    h.r.start(now, false);
    h.out();
    h.done();
    h.done();
    // no_match max is 1: one reprompt, then on_failure (bye).
    assert_eq!(h.key('7'), ["play:no_match+main_menu"]);
    h.done();
    assert_eq!(h.key('8'), ["play:goodbye"]);
    assert_eq!(h.done(), ["end:Hangup"]);
}

#[test]
fn overflow_calls_start_at_the_overflow_node() {
    let now = Instant::now();
    let mut r = FlowRunner::new(Arc::new(good_flow()));
    r.start(now, true);
    let first = std::iter::from_fn(|| r.poll_output())
        .filter_map(|o| describe(&o))
        .collect::<Vec<_>>();
    assert_eq!(first, ["play:overflow"]);
}

#[test]
fn hangup_prompt_cannot_be_interrupted() {
    let mut h = Harness::new();
    h.out();
    h.done();
    h.done();
    h.key('4');
    h.wait();
    assert_eq!(h.key('5'), Vec::<String>::new());
    assert_eq!(h.done(), ["end:Hangup"]);
}

fn outage(id: &str, scope: &[&str], callback: bool) -> crate::outage::OutageSpec {
    let mut s = crate::outage::tests::spec(id, scope);
    s.callback = callback;
    s
}

#[test]
fn outage_for_everyone_comes_right_after_the_greeting_once() {
    let mut h = Harness::with_outages(vec![outage("net", &["all"], false)]);
    assert_eq!(h.out(), ["play:greeting"]);
    assert_eq!(h.done(), ["outage:net", "play:o+outage_options"]);
    assert_eq!(h.done(), ["play:main_menu"]);
    // Back to the menu later: not announced again.
    h.done();
    h.key('3');
    assert_eq!(h.done(), ["play:main_menu"]);
    assert_eq!(h.r.heard(), ["net"]);
}

#[test]
fn type_ahead_does_not_skip_the_outage_but_survives_it() {
    let mut h = Harness::with_outages(vec![outage("net", &["all"], false)]);
    h.out();
    // "1" during the greeting: the greeting stops, the outage is still heard...
    assert_eq!(h.key('1'), ["stop", "outage:net", "play:o+outage_options"]);
    // ...and then the typed-ahead 1 takes the caller to billing.
    assert_eq!(h.done(), ["intent:billing", "play:to_billing"]);
}

#[test]
fn a_key_skips_the_announcement() {
    let mut h = Harness::with_outages(vec![outage("net", &["all"], false)]);
    h.out();
    h.done();
    // The skipping key is not taken as a menu choice.
    assert_eq!(h.key('2'), ["stop", "play:main_menu"]);
}

#[test]
fn scoped_outage_is_announced_when_the_choice_concerns_it() {
    let mut h = Harness::with_outages(vec![outage("bill", &["billing"], false)]);
    h.out();
    assert_eq!(h.done(), ["play:main_menu"], "nothing for everyone");
    h.done();
    assert_eq!(
        h.key('1'),
        ["intent:billing", "outage:bill", "play:o+outage_options"]
    );
    assert_eq!(h.done(), ["play:to_billing"]);
    h.r.handle(h.now, FlowInput::PlaybackDone);
    let ctx = std::iter::from_fn(|| h.r.poll_output())
        .find_map(|o| match o {
            FlowOutput::Transfer { context, .. } => Some(context),
            _ => None,
        })
        .unwrap();
    assert_eq!(ctx.outages, ["bill"]);
}

#[test]
fn outage_callback_offer_records_the_request_and_ends_politely() {
    let mut h = Harness::with_outages(vec![outage("net", &["all"], true)]);
    h.out();
    assert_eq!(h.done(), ["outage:net", "play:o+outage_callback"]);
    // Offer heard, no key yet: the caller has a few seconds.
    assert_eq!(h.done(), Vec::<String>::new());
    assert_eq!(h.r.poll_timeout(), Some(h.now + OUTAGE_CHOICE_TIMEOUT));
    assert_eq!(
        h.key('1'),
        ["callback:outage:net", "play:callback_confirmed"]
    );
    assert_eq!(h.done(), ["end:Hangup"]);
}

#[test]
fn declined_outage_callback_continues_to_the_menu() {
    let mut h = Harness::with_outages(vec![outage("net", &["all"], true)]);
    h.out();
    h.done();
    h.done();
    assert_eq!(h.wait(), ["play:main_menu"]);
}

#[test]
fn escalation_key_still_works_during_an_announcement() {
    let mut h = Harness::with_outages(vec![outage("net", &["all"], true)]);
    h.out();
    h.done();
    assert_eq!(h.key('0'), ["stop", "escalated:key", "play:to_supervisor"]);
}

#[test]
fn callback_node_accepts_key_one_or_moves_on() {
    let now = Instant::now();
    let mut r = FlowRunner::new(Arc::new(good_flow()));
    r.start(now, true);
    let mut h = Harness { r, now };
    assert_eq!(h.out(), ["play:overflow"]);
    assert_eq!(h.done(), ["play:callback_offer"]);
    assert_eq!(
        h.key('1'),
        ["stop", "callback:offer", "play:callback_confirmed"]
    );
    assert_eq!(h.done(), ["play:goodbye"]);
    // Declined by silence.
    let mut r = FlowRunner::new(Arc::new(good_flow()));
    r.start(now, true);
    let mut h = Harness { r, now };
    h.out();
    h.done();
    h.done();
    assert_eq!(h.wait(), ["play:goodbye"]);
}

#[test]
fn escalation_key_again_during_the_lead_in_changes_nothing() {
    let mut h = Harness::new();
    h.out();
    assert_eq!(h.key('0'), ["stop", "escalated:key", "play:to_supervisor"]);
    assert_eq!(h.key('0'), Vec::<String>::new());
    assert_eq!(h.done(), ["transfer:sip:supervisor@pbx.example.com"]);
}

/// A speech menu with a confirmation turn (words-only matching: no embedder).
const SPEECH: &str = r#"
version: 1
flow: speech
start: menu
escalation:
  target: sip:supervisor@pbx.example.com
  phrases: [supervisor, operator]
  after_failures: 3
nodes:
  menu:
    menu: main_menu
    intents:
      billing: {dtmf: "1", phrases: [billing, my bill], confirm: confirm_billing, goto: billing}
      support: {dtmf: "2", phrases: [technical support, my internet is down], confirm: confirm_support, goto: support}
    confirmation: {min_confidence: 0.3, question: confirm_yes_no, timeout_ms: 4000}
    no_input: {reprompt: no_input, max: 2}
    no_match: {reprompt: no_match, max: 2}
  billing: {transfer: "sip:billing@pbx.example.com", on_fail: menu}
  support: {transfer: "sip:support@pbx.example.com", on_fail: menu}
"#;

impl Harness {
    /// A call on the speech flow, waiting in its menu.
    fn speech() -> Self {
        let flow = crate::flow::compile(
            std::path::Path::new("s.yaml"),
            SPEECH,
            &mut crate::flow::compile::tests::FakePrompts,
        )
        .expect("speech flow compiles");
        let now = Instant::now();
        let mut r = FlowRunner::new(Arc::new(flow));
        r.start(now, false);
        let mut h = Harness { r, now };
        assert_eq!(h.out(), ["play:main_menu"]);
        assert!(h.done().is_empty());
        h
    }
    fn say(&mut self, text: &str) -> Vec<String> {
        self.r.handle(self.now, FlowInput::SpeechStarted);
        self.r
            .handle(self.now, FlowInput::Transcript(Heard::text(text)));
        self.out()
    }
}

/// Two intents named at once: a tie, lowered to 0.5, between the confirmation bound
/// (0.3) and min_confidence (0.6).
const UNSURE: &str = "billing and technical support";

#[test]
fn an_unsure_match_is_confirmed_and_yes_routes() {
    let mut h = Harness::speech();
    assert_eq!(
        h.say(UNSURE),
        [
            "confidence:0.50",
            "speech:confirm",
            "play:confirm_billing+confirm_yes_no"
        ]
    );
    // The answer's listening matcher is the yes/no one.
    let listening = h.r.listening().expect("listening");
    assert_eq!(
        listening.matcher.score("yeah that's right").best.unwrap().0,
        YES
    );
    assert!(h.done().is_empty());
    assert_eq!(
        h.say("Yes, please."),
        [
            "speech:confirmed",
            "intent:billing",
            "transfer:sip:billing@pbx.example.com"
        ]
    );
}

#[test]
fn confirmation_answered_by_keys_and_barge_in() {
    // Key 1 during the question: yes.
    let mut h = Harness::speech();
    h.say(UNSURE);
    assert_eq!(
        h.key('1'),
        [
            "stop",
            "speech:confirmed",
            "intent:billing",
            "transfer:sip:billing@pbx.example.com"
        ]
    );
    // Key 2 after it: no, and the menu is asked again.
    let mut h = Harness::speech();
    h.say(UNSURE);
    h.done();
    assert_eq!(h.key('2'), ["speech:rejected", "play:no_match+main_menu"]);
    // Escalation key still works.
    let mut h = Harness::speech();
    h.say(UNSURE);
    h.done();
    assert_eq!(
        h.key('0'),
        ["escalated:key", "transfer:sip:supervisor@pbx.example.com"]
    );
}

#[test]
fn no_with_another_choice_routes_there_and_silence_asks_again() {
    let mut h = Harness::speech();
    h.say(UNSURE);
    h.done();
    assert_eq!(
        h.say("No, my internet is down."),
        [
            "speech:rejected",
            "intent:support",
            "transfer:sip:support@pbx.example.com"
        ]
    );
    let mut h = Harness::speech();
    h.say(UNSURE);
    h.done();
    assert_eq!(
        h.say("nope"),
        ["speech:rejected", "play:no_match+main_menu"]
    );
    // No answer within timeout_ms: like no input in the menu.
    let mut h = Harness::speech();
    h.say(UNSURE);
    h.done();
    let before = h.now;
    assert_eq!(h.wait(), ["play:no_input+main_menu"]);
    assert_eq!(h.now - before, Duration::from_millis(4000));
    // Asking for a person during the question escalates.
    let mut h = Harness::speech();
    h.say(UNSURE);
    assert_eq!(
        h.say("operator"),
        [
            "stop",
            "speech:escalation",
            "escalated:phrase",
            "transfer:sip:supervisor@pbx.example.com"
        ]
    );
}

#[test]
fn sure_matches_route_without_a_question_and_fillers_never_route() {
    let mut h = Harness::speech();
    assert_eq!(
        h.say("My bill, please."),
        [
            "confidence:1.00",
            "speech:match",
            "intent:billing",
            "transfer:sip:billing@pbx.example.com"
        ]
    );
    let mut h = Harness::speech();
    assert_eq!(
        h.say("um hello?"),
        ["speech:no_match", "play:no_match+main_menu"]
    );
}

fn queued() -> Harness {
    let flow = crate::flow::compile(
        std::path::Path::new("q.yaml"),
        crate::flow::compile::tests::QUEUED,
        &mut crate::flow::compile::tests::FakePrompts,
    )
    .unwrap();
    let now = Instant::now();
    let mut h = Harness {
        r: FlowRunner::new(Arc::new(flow)),
        now,
    };
    h.r.start(now, false);
    h
}

fn prompts(names: &[&str]) -> Vec<Arc<Prompt>> {
    use crate::flow::PromptSource;
    names
        .iter()
        .map(|n| crate::flow::compile::tests::FakePrompts.prompt(n).unwrap())
        .collect()
}

#[test]
fn a_queue_node_joins_loops_the_hold_audio_and_announces() {
    let mut h = queued();
    assert_eq!(h.out(), ["play:greeting"]);
    assert_eq!(h.done(), ["play:to_billing"]);
    assert_eq!(h.done(), ["queue:support"]);
    let hold = prompts(&["hold"]);
    h.r.handle(h.now, FlowInput::Queue(QueueInput::Joined { hold }));
    assert_eq!(h.out(), ["play:hold"]);
    assert_eq!(h.done(), ["play:hold"], "the hold audio loops");
    let said = prompts(&["you_are_number", "two"]);
    let announce = QueueInput::Announce {
        prompts: said,
        callback: false,
    };
    h.r.handle(h.now, FlowInput::Queue(announce));
    assert_eq!(h.out(), ["play:you_are_number+two"]);
    // The next one waits for this one to end; then the hold audio again.
    let next = QueueInput::Announce {
        prompts: prompts(&["next_in_line"]),
        callback: false,
    };
    h.r.handle(h.now, FlowInput::Queue(next));
    assert!(h.out().is_empty());
    assert_eq!(h.done(), ["play:next_in_line"]);
    assert_eq!(h.done(), ["play:hold"]);
    // Keys other than the escalation key do nothing while waiting.
    assert!(h.key('5').is_empty());
    h.r.handle(
        h.now,
        FlowInput::Queue(QueueInput::AgentConnected {
            agent: "ann".into(),
        }),
    );
    assert_eq!(h.out(), ["stop"]);
    assert!(h.key('0').is_empty(), "keys go to the agent while bridged");
    assert!(h.r.listening().is_none());
    h.r.handle(h.now, FlowInput::Queue(QueueInput::AgentHungUp));
    assert_eq!(h.out(), ["play:goodbye"]);
    assert_eq!(h.done(), ["end:Hangup"]);
}

#[test]
fn a_queue_sends_callers_on_after_the_wait_or_without_agents() {
    for (input, next) in [
        (QueueInput::TimedOut, "play:sorry"),
        (QueueInput::NoAgents, "play:nobody"),
    ] {
        let mut h = queued();
        h.out();
        h.done();
        assert_eq!(h.done(), ["queue:support"]);
        h.r.handle(h.now, FlowInput::Queue(input));
        assert_eq!(h.out(), ["stop", next]);
    }
}

#[test]
fn escalating_while_waiting_leaves_the_queue_first() {
    let mut h = queued();
    h.out();
    h.done();
    h.done();
    assert_eq!(
        h.key('0'),
        [
            "leave_queue",
            "stop",
            "escalated:key",
            "transfer:sip:supervisor@pbx.example.com"
        ]
    );
    // A late agent answer changes nothing now.
    let agent = "ann".to_string();
    h.r.handle(
        h.now,
        FlowInput::Queue(QueueInput::AgentConnected { agent }),
    );
    assert!(h.out().is_empty());
}

#[test]
fn outages_scoped_to_the_queue_are_heard_before_joining() {
    let mut h = queued();
    let spec = crate::outage::tests::spec("q1", &["support"]);
    let items = vec![crate::outage::tests::ann(spec)];
    h.r.set_outages(Arc::new(OutageSet::active(items, 0)));
    h.out();
    let after_greeting = h.done();
    assert_eq!(after_greeting[0], "outage:q1", "{after_greeting:?}");
    assert_eq!(h.done(), ["play:to_billing"]);
    assert_eq!(h.done(), ["queue:support"]);
}

#[test]
fn star_zero_during_the_talk_drops_the_agent_and_escalates_naming_them() {
    let mut h = queued();
    h.out();
    h.done();
    h.done();
    let agent = "ann".to_string();
    h.r.handle(
        h.now,
        FlowInput::Queue(QueueInput::AgentConnected { agent }),
    );
    h.out();
    // The agent's own menus: single keys, or * then 0 too far apart, do nothing.
    assert!(h.key('*').is_empty());
    h.now += TALK_KEYS_WINDOW + Duration::from_millis(1);
    assert!(h.key('0').is_empty());
    assert!(h.key('5').is_empty());
    assert!(h.key('*').is_empty());
    h.r.handle(h.now, FlowInput::Dtmf('0'));
    let outs: Vec<FlowOutput> = std::iter::from_fn(|| h.r.poll_output()).collect();
    let names: Vec<String> = outs.iter().filter_map(describe).collect();
    assert_eq!(
        names,
        [
            "leave_queue",
            "stop",
            "escalated:during_talk",
            "transfer:sip:supervisor@pbx.example.com"
        ]
    );
    let t = outs.into_iter().find_map(|o| match o {
        FlowOutput::Transfer { context, .. } => Some(context),
        _ => None,
    });
    let t = t.expect("a transfer to the supervisor");
    assert_eq!(t.agent.as_deref(), Some("ann"));
    assert_eq!(t.reason, Some(EscalationReason::DuringTalk));
}

#[test]
fn key_one_takes_the_callback_offer_and_the_confirmation_ends_the_call() {
    let mut h = queued();
    h.out();
    h.done();
    h.done();
    assert!(h.key('1').is_empty(), "no offer yet: 1 does nothing");
    let announce = QueueInput::Announce {
        prompts: prompts(&["wait"]),
        callback: true,
    };
    h.r.handle(h.now, FlowInput::Queue(announce));
    h.out();
    assert_eq!(h.key('1'), ["keep_place"]);
    assert!(h.key('1').is_empty(), "taken once");
    let confirm = prompts(&["kept"]);
    h.r.handle(h.now, FlowInput::Queue(QueueInput::PlaceKept { confirm }));
    assert_eq!(h.out(), ["stop", "play:kept"]);
    assert_eq!(h.done(), ["end:Hangup"]);
}

#[test]
fn a_survey_after_the_agent_takes_a_score_and_a_comment_for_the_agent() {
    let text = crate::flow::compile::tests::QUEUED.replace(
        "  bye:\n    play: goodbye\n    hangup: true\n",
        "  bye:\n    survey: question\n    comment: comment\n    thanks: thanks\n    timeout_ms: 5000\n    next: end\n  end:\n    hangup: true\n",
    );
    let flow = crate::flow::compile(
        std::path::Path::new("q.yaml"),
        &text,
        &mut crate::flow::compile::tests::FakePrompts,
    )
    .unwrap();
    let now = Instant::now();
    let mut h = Harness {
        r: FlowRunner::new(Arc::new(flow)),
        now,
    };
    h.r.start(now, false);
    h.out();
    h.done();
    h.done();
    let agent = "ann".to_string();
    h.r.handle(
        h.now,
        FlowInput::Queue(QueueInput::AgentConnected { agent }),
    );
    h.r.handle(h.now, FlowInput::Queue(QueueInput::AgentHungUp));
    assert_eq!(h.out(), ["stop", "play:question"]);
    assert!(h.done().is_empty(), "waiting for the score");
    assert!(h.key('9').is_empty(), "not a score");
    assert_eq!(h.key('4'), ["play:comment"]);
    h.done();
    assert!(h.r.listening().is_some(), "listening for the comment");
    let heard = Heard {
        text: "Ann was very kind and fixed it".into(),
        closed: None,
        embedding: None,
    };
    h.r.handle(h.now, FlowInput::Transcript(heard));
    let outs: Vec<FlowOutput> = std::iter::from_fn(|| h.r.poll_output()).collect();
    let feedback = outs.iter().find_map(|o| match o {
        FlowOutput::Feedback {
            score,
            comment,
            agent,
            queue,
        } => Some((*score, comment.clone(), agent.clone(), queue.clone())),
        _ => None,
    });
    assert_eq!(
        feedback,
        Some((
            Some(4),
            Some("Ann was very kind and fixed it".into()),
            Some("ann".into()),
            Some("support".into())
        ))
    );
    assert_eq!(h.done(), ["end:Hangup"], "thanks played, then the end");
    // Without a recogniser the comment is not asked for; no key: no feedback at all.
    let flow = crate::flow::compile(
        std::path::Path::new("q.yaml"),
        &text,
        &mut crate::flow::compile::tests::FakePrompts,
    )
    .unwrap();
    let mut h = Harness {
        r: FlowRunner::new(Arc::new(flow)),
        now,
    };
    h.r.set_speech(false);
    h.r.start(now, false);
    h.out();
    h.done();
    h.done();
    let agent = "ann".to_string();
    h.r.handle(
        h.now,
        FlowInput::Queue(QueueInput::AgentConnected { agent }),
    );
    h.r.handle(h.now, FlowInput::Queue(QueueInput::AgentHungUp));
    h.out();
    h.done();
    assert_eq!(h.wait(), ["play:thanks"]);
}
