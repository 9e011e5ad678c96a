//! Short call flows for tests that need many calls or timeouts: they reuse the repository's
//! prompt WAVs, picking short ones, so a call reaches its menu within a few seconds.

use super::TempDir;
use std::path::PathBuf;

/// Name of the flow [`quick_flow`] writes (`flows.default` must name it).
pub const QUICK: &str = "quick";

/// What [`quick_flow`] can vary.
#[derive(Clone, Debug)]
pub struct QuickFlow {
    /// `defaults.no_input_ms` of the menu.
    pub no_input_ms: u64,
    /// Play `to_supervisor` before the escalation REFER (`escalation.play`).
    pub escalation_play: bool,
    /// Transfer target of intent `billing` (key 1).
    pub billing_target: String,
}

impl Default for QuickFlow {
    fn default() -> Self {
        QuickFlow {
            no_input_ms: 4000,
            escalation_play: true,
            billing_target: "sip:billing@pbx.example.com".into(),
        }
    }
}

/// Prompt lengths of the quick flow (from `sounds/`): the "greeting" is `to_billing`
/// (~1.8 s), the menu prompt `no_match` (~2.8 s).
pub const GREETING_PROMPT: &str = "to_billing";
pub const MENU_PROMPT: &str = "no_match";

/// The quick flow:
///
/// ```text
/// greet (to_billing) -> menu (no_match; 1 billing, 2 support; retries replay the prompt)
/// billing -> REFER billing_target, support -> REFER sip:support@pbx.example.com (fail: menu)
/// escalation: key 0, [to_supervisor], after 2 failures, on_fail supervisor_unavailable
/// supervisor_unavailable -> offer_callback (callback_offer; 1 = callback, callback_thanks) -> bye
/// outages: callback offer outage_callback, confirmation goodbye; no options prompt
/// ```
pub fn quick_flow(q: &QuickFlow) -> String {
    let play = if q.escalation_play {
        "  play: to_supervisor\n"
    } else {
        ""
    };
    format!(
        "\
version: 1
flow: {QUICK}
description: short test flow
start: greet

escalation:
  dtmf: \"0\"
  target: sip:supervisor@pbx.example.com
{play}  after_failures: 2
  on_fail: supervisor_unavailable

outages:
  callback_offer: outage_callback
  callback_confirmed: goodbye

defaults:
  no_input_ms: {no_input}
  inter_digit_ms: 1000
  bargein: true

nodes:
  greet:
    play: {GREETING_PROMPT}
    next: menu

  menu:
    menu: {MENU_PROMPT}
    intents:
      billing: {{dtmf: \"1\", goto: billing}}
      support: {{dtmf: \"2\", goto: support}}
    no_input: {{max: 2}}
    no_match: {{max: 2}}

  billing:
    transfer: {billing}
    on_fail: menu

  support:
    transfer: sip:support@pbx.example.com
    on_fail: menu

  supervisor_unavailable:
    play: supervisor_unavailable
    next: offer_callback

  offer_callback:
    callback: callback_offer
    confirm: callback_thanks
    timeout_ms: 5000
    next: bye

  bye:
    hangup: true
",
        no_input = q.no_input_ms,
        billing = q.billing_target,
    )
}

/// A temp dir holding one flow file `NAME.yaml` per entry; pass it as `DaemonOpts.flows_dir`
/// and keep it alive as long as the daemon.
pub fn flows_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new("flows");
    for (name, yaml) in files {
        let path = dir.join(&format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    dir
}

/// The path of flow `name` in a dir made by [`flows_dir`].
pub fn flow_path(dir: &TempDir, name: &str) -> PathBuf {
    dir.join(&format!("{name}.yaml"))
}
