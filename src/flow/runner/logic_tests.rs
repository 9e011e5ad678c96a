//! The runner's decisions without the caller, in virtual time: branches (opening hours,
//! the caller's record, outages, the number dialled, variables), texts filled per call,
//! digits typed into variables, and the upset caller.

use super::*;
use crate::flow::compile::tests::FakePrompts;
use crate::flow::compile::{compile_known, Known};
use crate::schedule::Schedule;
use indexmap::IndexMap;
use std::path::Path;

const FLOW: &str = r#"
version: 1
flow: logic
start: route
escalation:
  target: sip:supervisor@pbx.example.com
  play: to_supervisor
  after_failures: 3
upset:
  play: {say: "I am sorry this has been so frustrating."}
  next: offer_person
  after_failures: 2
nodes:
  route:
    branch:
      - if: {dialled: "999"}
        goto: closed
      - if: {not: {schedule: hours}}
        goto: closed
      - if: {caller: named}
        goto: welcome
    else: greet
  welcome:
    play: {say: "Welcome back, {caller.name}."}
    next: again
  again:
    branch:
      - if: {last_intent: billing, within_days: 30}
        goto: repeat
    else: greet
  repeat:
    menu: {say: "Are you calling about your bill again?"}
    intents:
      yes: {dtmf: "1", phrases: [yes], goto: billing}
      no: {dtmf: "2", phrases: [no], goto: greet}
  greet:
    play: greeting
    next: menu
  menu:
    menu: main_menu
    intents:
      billing: {dtmf: "1", phrases: [my bill], goto: account}
      outage_check: {dtmf: "3", goto: status}
  status:
    branch:
      - if: {outage: billing}
        goto: known_problem
    else: menu
  known_problem:
    play: {say: "We know about it."}
    hangup: true
  account:
    digits: {say: "Type your account number, then the hash key."}
    into: account
    min_digits: 4
    max_digits: 8
    no_match: {reprompt: too_short, max: 1}
    next: tag
    on_failure: billing
  tag:
    set: {account_label: "acct-{vars.account}"}
    next: billing
  billing:
    play: {say: "Connecting you about account {vars.account|unknown}."}
    transfer: sip:billing@pbx.example.com
    on_fail: menu
  offer_person:
    menu: {say: "Would you like to speak to a person now? Press 1."}
    intents:
      person: {dtmf: "1", goto: person}
      carry_on: {dtmf: "2", goto: menu}
  person:
    escalate: true
  closed:
    play: {say: "We are closed."}
    hangup: true
"#;

/// Monday 7 December 2026, 10:00 UTC (open) and 22:00 (closed).
const MONDAY_10: i64 = 1_796_637_600;
const MONDAY_22: i64 = MONDAY_10 + 12 * 3600;

fn flow() -> Arc<Flow> {
    let hours = Schedule::new(
        "hours",
        "UTC",
        &[("mon-fri".to_string(), "08:00-20:00".to_string())],
        &[],
        &[],
    )
    .unwrap();
    let mut schedules = IndexMap::new();
    schedules.insert("hours".to_string(), Arc::new(hours));
    let known = Known {
        queues: None,
        schedules: Some(&schedules),
    };
    Arc::new(
        compile_known(Path::new("logic.yaml"), FLOW, &mut FakePrompts, None, known)
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

struct Call {
    r: FlowRunner,
    now: Instant,
}

impl Call {
    fn new(
        unix: i64,
        dialled: &str,
        caller: Option<CallerInfo>,
        outages: Vec<&str>,
    ) -> (Call, Vec<String>) {
        let mut r = FlowRunner::new(flow());
        r.set_facts(CallFacts {
            dialled: dialled.into(),
            caller: Some("+15551000".into()),
            unix_at_start: unix,
        });
        let items = outages
            .into_iter()
            .map(|scope| {
                crate::outage::tests::ann(crate::outage::tests::spec(
                    &format!("o-{scope}"),
                    &[scope],
                ))
            })
            .collect();
        r.set_outages(Arc::new(OutageSet::active(items, 0)));
        r.expect_caller();
        let now = Instant::now();
        r.start(now, false);
        let mut c = Call { r, now };
        let first = c.input(FlowInput::Caller(caller));
        (c, first)
    }
    fn out(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.r.poll_output())
            .filter_map(|o| match o {
                FlowOutput::Play { prompts, .. } => Some(format!(
                    "play:{}",
                    prompts
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join("+")
                )),
                FlowOutput::Transfer { target, context } => {
                    Some(format!("transfer:{target} vars={:?}", context.vars))
                }
                FlowOutput::Escalated(r) => Some(format!("escalated:{}", r.as_str())),
                FlowOutput::Upset(c) => Some(format!("upset:{c}")),
                FlowOutput::End(e) => Some(format!("end:{e:?}")),
                FlowOutput::StopPlayback => Some("stop".into()),
                _ => None,
            })
            .collect()
    }
    fn input(&mut self, i: FlowInput) -> Vec<String> {
        self.r.handle(self.now, i);
        self.out()
    }
    /// The caller speaks (barge-in), then the transcript comes.
    fn say(&mut self, text: &str) -> Vec<String> {
        let mut out = self.input(FlowInput::SpeechStarted);
        out.extend(self.input(FlowInput::Transcript(Heard::text(text))));
        out
    }
    fn done(&mut self) -> Vec<String> {
        self.input(FlowInput::PlaybackDone)
    }
    fn keys(&mut self, keys: &str) -> Vec<String> {
        let mut out = Vec::new();
        for k in keys.chars() {
            out.extend(self.input(FlowInput::Dtmf(k)));
        }
        out
    }
    fn wait(&mut self) -> Vec<String> {
        let t = self.r.poll_timeout().expect("a timer is set");
        self.now = t;
        self.r.handle_timeout(t);
        self.out()
    }
}

fn ann() -> Option<CallerInfo> {
    Some(CallerInfo {
        name: Some("Ann".into()),
        last_intent: Some("billing".into()),
        last_call_at: Some(MONDAY_10 - 3 * 86_400),
        notes: None,
    })
}

#[test]
fn a_named_caller_who_called_about_the_bill_is_greeted_and_asked() {
    let (mut c, first) = Call::new(MONDAY_10, "100", ann(), vec![]);
    assert_eq!(first, ["play:Welcome back, Ann."]);
    assert_eq!(c.done(), ["play:Are you calling about your bill again?"]);
    // Yes: straight to billing (no account asked: that comes from the main menu).
    assert_eq!(
        c.keys("1"),
        ["stop", "play:Connecting you about account unknown."]
    );
}

#[test]
fn the_flow_waits_for_the_callers_record_but_not_for_long() {
    let mut r = FlowRunner::new(flow());
    r.set_facts(CallFacts {
        dialled: "100".into(),
        caller: Some("+15551000".into()),
        unix_at_start: MONDAY_10,
    });
    r.expect_caller();
    let now = Instant::now();
    r.start(now, false);
    assert!(r.poll_output().is_none(), "nothing before the record");
    assert_eq!(r.poll_timeout(), Some(now + CALLER_WAIT));
    // It never comes: the flow starts as for an unknown caller.
    r.handle_timeout(now + CALLER_WAIT);
    let out: Vec<_> = std::iter::from_fn(|| r.poll_output()).collect();
    assert!(
        out.iter().any(
            |o| matches!(o, FlowOutput::Play { prompts, .. } if prompts[0].name == "greeting")
        ),
        "{out:?}"
    );
}

#[test]
fn an_old_last_call_or_an_unknown_caller_gets_the_menu() {
    let mut old = ann().unwrap();
    old.last_call_at = Some(MONDAY_10 - 40 * 86_400);
    let (mut c, first) = Call::new(MONDAY_10, "100", Some(old), vec![]);
    assert_eq!(first, ["play:Welcome back, Ann."]);
    assert_eq!(c.done(), ["play:greeting"]);
    let (_, first) = Call::new(MONDAY_10, "100", None, vec![]);
    assert_eq!(first, ["play:greeting"]);
    // Known without a name: no greeting by name.
    let nameless = CallerInfo {
        name: None,
        ..ann().unwrap()
    };
    let (_, first) = Call::new(MONDAY_10, "100", Some(nameless), vec![]);
    assert_eq!(first, ["play:greeting"]);
}

#[test]
fn opening_hours_and_the_number_dialled_decide() {
    let (_, first) = Call::new(MONDAY_22, "100", ann(), vec![]);
    assert_eq!(first, ["play:We are closed."]);
    let (_, first) = Call::new(MONDAY_10, "999", ann(), vec![]);
    assert_eq!(first, ["play:We are closed."]);
    // Time moves with the call: the branch sees the wall clock when it is entered.
    let (c, _) = Call::new(MONDAY_10, "100", None, vec![]);
    assert_eq!(c.r.unix_at(c.now + Duration::from_secs(90)), MONDAY_10 + 90);
}

#[test]
fn outage_conditions() {
    let (mut c, _) = Call::new(MONDAY_10, "100", None, vec!["billing"]);
    c.done();
    // The menu, then 3: the status branch sees the billing outage.
    assert_eq!(c.keys("3"), ["stop", "play:We know about it."]);
    let (mut c, _) = Call::new(MONDAY_10, "100", None, vec!["support"]);
    c.done();
    assert_eq!(c.keys("3"), ["stop", "play:main_menu"]);
}

#[test]
fn digits_go_into_a_variable_that_travels_with_the_transfer() {
    let (mut c, _) = Call::new(MONDAY_10, "100", None, vec![]);
    c.done();
    assert_eq!(
        c.keys("1"),
        ["stop", "play:Type your account number, then the hash key."]
    );
    c.done();
    // 0 is the escalation key elsewhere; here it is a digit.
    assert!(c.keys("1024").is_empty());
    let out = c.keys("#");
    assert_eq!(out, ["play:Connecting you about account 1024."]);
    assert_eq!(
        c.r.vars().get("vars.account").map(String::as_str),
        Some("1024")
    );
    assert_eq!(
        c.r.vars().get("vars.account_label").map(String::as_str),
        Some("acct-1024")
    );
    let out = c.done();
    assert_eq!(
        out,
        [
            r#"transfer:sip:billing@pbx.example.com vars=[("account", "1024"), ("account_label", "acct-1024")]"#
        ]
    );
}

#[test]
fn digits_end_by_themselves_or_after_a_pause_and_too_few_ask_again() {
    let (mut c, _) = Call::new(MONDAY_10, "100", None, vec![]);
    c.done();
    c.keys("1");
    c.done();
    // Typed ahead during the question, the most keys end the entry at once.
    let (mut d, _) = Call::new(MONDAY_10, "100", None, vec![]);
    d.done();
    d.keys("1");
    let out = d.keys("12345678");
    assert_eq!(out, ["stop", "play:Connecting you about account 12345678."]);
    // Too few, then a pause: asked again with the reprompt.
    assert!(c.keys("12").is_empty());
    let out = c.wait();
    assert_eq!(
        out,
        ["play:too_short+Type your account number, then the hash key."]
    );
    c.done();
    c.keys("98765");
    assert_eq!(c.wait(), ["play:Connecting you about account 98765."]);
}

#[test]
fn an_upset_caller_is_acknowledged_then_offered_a_person() {
    let (mut c, _) = Call::new(MONDAY_10, "100", None, vec![]);
    c.done();
    let out = c.say("this is ridiculous, my bill is wrong again");
    assert_eq!(
        out,
        [
            "stop",
            "upset:words",
            "play:I am sorry this has been so frustrating."
        ]
    );
    assert_eq!(
        c.done(),
        ["play:Would you like to speak to a person now? Press 1."]
    );
    let out = c.keys("1");
    assert_eq!(out, ["stop", "escalated:upset", "play:to_supervisor"]);
    // Once a call: upset words later route as usual.
    let (mut c, _) = Call::new(MONDAY_10, "100", None, vec![]);
    c.done();
    c.say("ridiculous");
    c.done();
    c.keys("2");
    c.done();
    let out = c.say("this is ridiculous, my bill");
    assert!(out.iter().all(|o| !o.starts_with("upset")), "{out:?}");
}

#[test]
fn repeated_failures_count_as_upset_before_escalating() {
    let (mut c, _) = Call::new(MONDAY_10, "100", None, vec![]);
    c.done();
    // Two wrong keys (no escalation yet: that takes three in a row).
    let out = c.keys("9");
    assert_eq!(out[0], "stop");
    c.done();
    let out = c.keys("8");
    assert_eq!(
        out,
        [
            "upset:failures",
            "play:I am sorry this has been so frustrating."
        ]
    );
}
