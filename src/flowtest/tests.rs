//! `ivrd test` on the compiler's test flow: passing cases pass, a broken expectation
//! fails with its case, step and line.

use super::*;
use crate::flow::compile::tests::good_flow;
use indexmap::IndexMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

fn flows() -> FlowSet {
    let f = Arc::new(good_flow());
    let mut flows = IndexMap::new();
    flows.insert(f.name.clone(), f.clone());
    FlowSet {
        flows,
        default: f,
        routes: HashMap::new(),
    }
}

const TESTS: &str = r#"flow: test
cases:
  - name: press 1 after the menu
    steps:
      - key: "1"
    expect:
      path: [greet, menu, billing]
      heard: [greeting, main_menu, to_billing]
      transfer: sip:billing@pbx.example.com
      headers: {X-IVR-Intent: billing, X-IVR-Input: "1"}
      ends: transferred

  - name: typed ahead during the greeting
    steps:
      - {key: "2", at_ms: 50}
    expect:
      path: [greet, menu, support]
      heard: [greeting]
      transfer: sip:support@pbx.example.com

  - name: silence reprompts then gives up
    steps:
      - silence_ms: 60000
    expect:
      heard: [greeting, main_menu, no_input, main_menu, to_supervisor]
      ends: transferred
      escalated: failures

  - name: the escalation key anywhere
    steps:
      - {key: "0", at_ms: 10}
      - expect: {escalated: key}
      - transfer: fail
    expect:
      node: menu
      ends: waiting

  - name: an outage first
    given:
      outages: [{id: net, message: "Our network is down."}]
    steps:
      - key: "3"
    expect:
      heard: [greeting, "Our network is down.", outage_options, main_menu, hours, main_menu]
"#;

#[test]
fn cases_pass() {
    let out = run_file(
        Path::new("t.test.yaml"),
        TESTS,
        &flows(),
        None,
        &Instant::now,
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    let failures: Vec<_> = out
        .cases
        .iter()
        .flat_map(|c| c.failures.iter().map(move |f| (c.name.clone(), f.clone())))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(out.cases.len(), 5);
    assert_eq!(out.cases[0].line, Some(3));
}

#[test]
fn a_broken_expectation_names_its_case_step_and_line() {
    let broken = TESTS
        .replace(
            "      transfer: sip:billing@pbx.example.com\n",
            "      transfer: sip:sales@pbx.example.com\n",
        )
        .replace(
            "      - expect: {escalated: key}",
            "      - expect: {escalated: phrase}",
        );
    let out = run_file(
        Path::new("t.test.yaml"),
        &broken,
        &flows(),
        None,
        &Instant::now,
    );
    let first = &out.cases[0].failures;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].what, "transfer");
    assert_eq!(first[0].line, Some(9));
    assert!(
        first[0].message.contains("sip:sales@pbx.example.com"),
        "{}",
        first[0].message
    );
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let step_line = line_of("- expect: {escalated: phrase}");
    let esc = &out.cases[3].failures;
    assert_eq!(
        (esc[0].step, esc[0].line),
        (Some(1), Some(step_line)),
        "{esc:?}"
    );
    let text = report::text(std::slice::from_ref(&out), Duration::from_millis(10));
    assert!(
        text.contains("FAIL t.test.yaml:9: case \"press 1 after the menu\": transfer:"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "t.test.yaml:{step_line}: case \"the escalation key anywhere\", step 2: escalated"
        )),
        "{text}"
    );
    assert!(text.contains("5 cases: 3 passed, 2 failed"), "{text}");
    let xml = report::junit(&[out], Duration::from_millis(10));
    assert!(xml.contains("failures=\"2\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"t.test.yaml:9: transfer: expected"),
        "{xml}"
    );
}

#[test]
fn bad_files_and_steps_are_reported() {
    let out = run_file(
        Path::new("x.test.yaml"),
        "flow: nope\ncases: []\n",
        &flows(),
        None,
        &Instant::now,
    );
    assert!(out.error.unwrap().contains("no flow named 'nope'"));
    let out = run_file(
        Path::new("x.test.yaml"),
        "cases:\n  - name: a\n    stepz: []\n",
        &flows(),
        None,
        &Instant::now,
    );
    assert!(out.error.unwrap().contains("x.test.yaml:3"));
    let two = "cases:\n  - name: two things\n    steps:\n      - {key: \"1\", say: billing}\n";
    let out = run_file(Path::new("x.test.yaml"), two, &flows(), None, &Instant::now);
    assert!(out.cases[0].failures[0]
        .message
        .contains("a step does one thing"));
    assert_eq!(out.cases[0].failures[0].line, Some(4));
}

#[test]
fn hundreds_of_cases_run_offline() {
    let many: String = std::iter::once("cases:\n".to_string())
        .chain((0..300).map(|i| {
            format!("  - name: case {i}\n    steps:\n      - key: \"{}\"\n    expect: {{ends: transferred}}\n", 1 + i % 2)
        }))
        .collect();
    let out = run_file(
        Path::new("m.test.yaml"),
        &many,
        &flows(),
        None,
        &Instant::now,
    );
    assert_eq!(out.cases.len(), 300);
    assert!(out.cases.iter().all(|c| c.failures.is_empty()));
}
