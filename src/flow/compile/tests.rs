//! Tests of `flow/compile.rs`.

use super::*;

/// Prompts made of silence; names containing "missing" do not exist.
pub struct FakePrompts;
impl PromptSource for FakePrompts {
    fn prompt(&mut self, name: &str) -> Result<Arc<Prompt>, PromptError> {
        if name.contains("missing") {
            return Err(PromptError::Missing {
                origin: "sounds/missing.wav".into(),
            });
        }
        Ok(Arc::new(
            Prompt::from_samples(name, &vec![0.0; 800], 8000).unwrap(),
        ))
    }

    /// Spoken text: silence named by the text.
    fn say(&mut self, text: &str) -> Result<Arc<Prompt>, PromptError> {
        self.prompt(text)
    }
}

pub const GOOD: &str = r#"
version: 1
flow: test
start: greet
overflow: busy
escalation:
  target: sip:supervisor@pbx.example.com
  play: to_supervisor
  on_fail: menu
outages:
  options: outage_options
  callback_offer: outage_callback
  callback_confirmed: callback_confirmed
nodes:
  greet: {play: greeting, next: menu}
  menu:
    menu: main_menu
    intents:
      billing: {dtmf: "1", goto: billing}
      support: {dtmf: "2", goto: support}
      hours: {dtmf: "3", goto: hours}
      long: {dtmf: "42", goto: hours}
      four: {dtmf: "4", goto: bye}
    no_input: {reprompt: no_input, max: 2}
    no_match: {reprompt: no_match, max: 1}
    on_failure: bye
  hours: {play: hours, next: menu}
  billing: {transfer: "sip:billing@pbx.example.com", play: to_billing, on_fail: failed}
  support: {transfer: "sip:support@pbx.example.com", on_fail: failed}
  failed: {play: transfer_failed, next: menu}
  bye: {hangup: true, play: goodbye}
  busy: {play: overflow, next: offer}
  offer: {callback: callback_offer, confirm: callback_confirmed, next: bye, timeout_ms: 3000}
"#;

/// A flow whose greeting leads to a queue node.
pub const QUEUED: &str = "\
version: 1
flow: queued
start: greet
escalation:
  target: sip:supervisor@pbx.example.com
nodes:
  greet:
    play: greeting
    next: wait
  wait:
    play: to_billing
    queue: support
    on_timeout: sorry
    on_no_agents: nobody
    after_agent: bye
  sorry:
    play: sorry
    hangup: true
  nobody:
    play: nobody
    hangup: true
  bye:
    play: goodbye
    hangup: true
";

pub fn good_flow() -> Flow {
    compile(Path::new("t.yaml"), GOOD, &mut FakePrompts).unwrap()
}

#[test]
fn good_flow_compiles() {
    let f = good_flow();
    assert_eq!(f.name, "test");
    assert_eq!(f.node(f.start).name, "greet");
    assert_eq!(f.escalation.as_ref().unwrap().dtmf, Some('0'));
    let NodeKind::Menu(m) = &f.node(f.node_id("menu").unwrap()).kind else {
        panic!("menu")
    };
    assert_eq!(m.intents.len(), 5);
    assert_eq!(m.timeout, Duration::from_millis(6000));
    assert_eq!(m.no_match.max, 1);
}

#[test]
fn confirmation_turns_need_a_question_per_intent_and_a_lower_bound() {
    let text = r#"version: 1
flow: c
start: menu
nodes:
  menu:
    menu: main_menu
    min_confidence: 0.5
    intents:
      billing: {dtmf: "1", phrases: [billing], confirm: confirm_billing, goto: bye}
      support: {dtmf: "2", phrases: [technical support], goto: bye}
    confirmation: {min_confidence: 0.5}
  bye: {hangup: true}
"#;
    let e = compile(Path::new("c.yaml"), text, &mut FakePrompts).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("c.yaml:10: node 'menu': intent 'support' needs a 'confirm' prompt"),
        "{text}"
    );
    assert!(
            text.contains("confirmation.min_confidence 0.5 must be at least 0 and below the menu's min_confidence 0.5"),
            "{text}"
        );
    assert_eq!(e.0.len(), 2, "{text}");
}

#[test]
fn reports_every_error_with_line_and_node() {
    let bad = r#"version: 1
flow: bad
start: greet
nodes:
  greet: {play: greeting, next: nowhere}
  menu:
    menu: missing_prompt
    intents:
      a: {dtmf: "1", goto: greet}
      b: {dtmf: "1", goto: greet}
      c: {dtmf: "0", goto: greet}
  xfer:
    transfer: "not a uri"
    on_fail: greet
  orphan: {play: greeting, next: greet}
"#;
    let bad = bad.replace(
        "flow: bad\n",
        "flow: bad\nescalation: {target: \"sip:s@x\"}\n",
    );
    let e = compile(Path::new("bad.yaml"), &bad, &mut FakePrompts).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("bad.yaml:6: node 'greet': next: no node named 'nowhere'"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml:8: node 'menu': menu: prompt 'missing_prompt'"),
        "{text}"
    );
    assert!(
        text.contains("node 'menu': intent 'b': key '1' is already used by intent 'a'"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml:12: node 'menu': intent 'c': key '0' is the flow's escalation key"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml:14: node 'xfer': transfer:"),
        "{text}"
    );
    // ...and, because greet leads nowhere, the nodes after it are unreachable.
    assert!(
        text.contains("bad.yaml:16: node 'orphan': unreachable"),
        "{text}"
    );
    assert_eq!(e.0.len(), 8, "{text}");
}

#[test]
fn unreachable_nodes_and_goto_loops_are_errors() {
    let text = r#"version: 1
flow: g
start: a
nodes:
  a: {play: p, next: b}
  b: {goto: c}
  c: {goto: b}
  lonely: {hangup: true}
"#;
    let e = compile(Path::new("g.yaml"), text, &mut FakePrompts).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("g.yaml:8: node 'lonely': unreachable"), "{s}");
    assert!(s.contains("node 'b': goto loop"), "{s}");
    assert!(s.contains("node 'c': goto loop"), "{s}");
}

#[test]
fn unknown_fields_and_syntax_errors_have_lines() {
    let text = "version: 1\nflow: u\nstart: a\nnodes:\n  a:\n    play: p\n    nxt: a\n";
    let e = compile(Path::new("u.yaml"), text, &mut FakePrompts).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(e.0[0].message.contains("nxt"), "{e}");
    assert_eq!(e.0[0].line, Some(7), "{e}");
    assert!(!e.0[0].message.contains("line 7"), "{e}");
}

#[test]
fn node_with_two_actions_is_rejected() {
    let text = "version: 1\nflow: u\nstart: a\nnodes:\n  a: {goto: a, hangup: true}\n";
    let e = compile(Path::new("u.yaml"), text, &mut FakePrompts).unwrap_err();
    assert!(e.to_string().contains("has goto and hangup"), "{e}");
}

#[test]
fn an_intent_with_an_empty_name_compiles_to_a_diagnostic() {
    // Found by fuzzing (flow_yaml): locating the line of intent "" never returned.
    let text = "version: 1\nflow: e\nstart: m\nnodes:\n  m:\n    menu: p\n    intents:\n      \"\": {goto: m}\n";
    let e = compile(Path::new("e.yaml"), text, &mut FakePrompts).unwrap_err();
    assert!(e.to_string().contains("intent ''"), "{e}");
}

#[test]
fn queue_nodes_name_a_configured_queue_and_every_way_out() {
    use crate::flow::{compile_dir, DirSettings, FlowDir};
    let dir = |text: &str| FlowDir {
        dir: "flows".into(),
        files: vec![("flows/q.yaml".into(), Ok(text.to_string()))],
    };
    let routes = IndexMap::new();
    let schedules = IndexMap::new();
    let settings = |queues: &'static [String]| DirSettings {
        config_file: Path::new("ivrd.yaml"),
        default: "queued",
        routes: &routes,
        queues,
        schedules: &schedules,
    };
    static SUPPORT: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["support".to_string()]);
    assert!(compile_dir(&dir(QUEUED), &settings(&SUPPORT), &mut FakePrompts, None).is_ok());
    let err = compile_dir(&dir(QUEUED), &settings(&[]), &mut FakePrompts, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("q.yaml:12")
            && err.contains("no queue named 'support' (the config has no queues)"),
        "{err}"
    );
    let callback = QUEUED.replace(
        "  nobody:\n    play: nobody\n    hangup: true\n",
        "  nobody:\n    callback: offer\n    callback_queue: sales\n    next: sorry\n",
    );
    let err = compile_dir(&dir(&callback), &settings(&SUPPORT), &mut FakePrompts, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("callback_queue: no queue named 'sales'"),
        "{err}"
    );
    let text = QUEUED.replace("    on_no_agents: nobody\n", "");
    let err = compile(Path::new("q.yaml"), &text, &mut FakePrompts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs 'on_no_agents'"), "{err}");
    let text = QUEUED.replace(
        "    next: wait\n",
        "    next: wait\n    on_timeout: sorry\n",
    );
    let err = compile(Path::new("q.yaml"), &text, &mut FakePrompts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'on_timeout' only belongs on queue nodes"),
        "{err}"
    );
}
