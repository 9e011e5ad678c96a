//! The flow test file format (`*.test.yaml` next to the flows), as admins write it.
//!
//! ```yaml
//! flow: support-line              # the flow under test (default: the config's default)
//! given: {at: "2026-12-07T10:00:00Z"}   # for every case (each case may override)
//! cases:
//!   - name: pressing 1 during the greeting reaches billing at once
//!     steps:
//!       - {key: "1", at_ms: 500}
//!     expect:
//!       path: [greet, main_menu, billing]
//!       transfer: sip:billing@pbx.example.com
//!       headers: {X-IVR-Intent: billing}
//! ```

use crate::flow::schema::StringOrList;
use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The flow the cases call (default: the config's default flow).
    pub flow: Option<String>,
    /// Conditions for every case (a case's own `given` wins, field by field).
    #[serde(default)]
    pub given: Given,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub given: Given,
    /// What the caller does, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// What must be true when the steps are done and the flow has nothing more to say.
    #[serde(default)]
    pub expect: Expect,
}

/// The world the call happens in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Given {
    /// The wall clock when the call is answered (RFC 3339). Default: Monday 7 December
    /// 2026, 12:00 UTC, so results never depend on when the tests run.
    pub at: Option<String>,
    /// What ivrd remembers of the caller (absent: nothing, an unknown caller).
    pub caller: Option<CallerGiven>,
    /// The caller's number (default +15550100).
    pub number: Option<String>,
    /// The number dialled (default empty).
    pub dialled: Option<String>,
    /// Outages in force.
    pub outages: Option<Vec<OutageGiven>>,
    /// The call is beyond capacity (the flow's overflow node).
    pub overflow: Option<bool>,
    /// Whether speech is understood (default true; false: keys only).
    pub speech: Option<bool>,
}

impl Given {
    /// `self` with the fields `over` sets replaced.
    pub fn merged(&self, over: &Given) -> Given {
        Given {
            at: over.at.clone().or_else(|| self.at.clone()),
            caller: over.caller.clone().or_else(|| self.caller.clone()),
            number: over.number.clone().or_else(|| self.number.clone()),
            dialled: over.dialled.clone().or_else(|| self.dialled.clone()),
            outages: over.outages.clone().or_else(|| self.outages.clone()),
            overflow: over.overflow.or(self.overflow),
            speech: over.speech.or(self.speech),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerGiven {
    pub name: Option<String>,
    pub last_intent: Option<String>,
    /// The last call was this many days before this one.
    pub last_call_days_ago: Option<u32>,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageGiven {
    pub id: String,
    /// What callers hear (the text is the prompt's name in `heard`).
    pub message: Option<String>,
    /// "all" (default), or intents/nodes.
    pub scope: Option<StringOrList>,
    #[serde(default)]
    pub callback: bool,
}

/// One thing the caller does (exactly one of `key`, `say`, `silence_ms`, `hangup`,
/// `transfer`, `queue`), or an expectation checked at that point (`expect` alone).
/// Without `at_ms`/`after_ms` it happens once the flow has finished speaking.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Keys pressed one after another (150 ms apart).
    pub key: Option<String>,
    /// Words said (through the real matcher: words, and meaning with the embedding model).
    pub say: Option<String>,
    /// Nothing for this long: timers run (no-input reprompts, timeouts).
    pub silence_ms: Option<u64>,
    /// The caller hangs up.
    pub hangup: Option<bool>,
    /// How the transfer asked for ends: `ok` (the default when not given) or `fail`.
    pub transfer: Option<String>,
    /// What happens in the queue: `answered`, `agent_hangs_up`, `timeout`, `no_agents`.
    pub queue: Option<String>,
    /// When, from the answer (milliseconds).
    pub at_ms: Option<u64>,
    /// When, after the previous step.
    pub after_ms: Option<u64>,
    /// Checked here (after this step's action, if any).
    pub expect: Option<Expect>,
}

/// What must be true. Every field given is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Every node entered, in order.
    pub path: Option<Vec<String>>,
    /// Every prompt that started playing, in order: a sound's name, or a text.
    pub heard: Option<Vec<String>>,
    /// The node the call is in now.
    pub node: Option<String>,
    /// The transfer target (REFER).
    pub transfer: Option<String>,
    /// The queue joined.
    pub queue: Option<String>,
    /// Context headers of the transfer or queue (`X-IVR-Intent: billing`).
    pub headers: Option<IndexMap<String, String>>,
    /// How the call stands: `hangup`, `transferred`, `queued`, `waiting`, `caller_hangup`,
    /// `error`.
    pub ends: Option<String>,
    /// Call variables (without `vars.`).
    pub vars: Option<IndexMap<String, String>>,
    /// The last intent chosen.
    pub intent: Option<String>,
    /// The escalation reason (`key`, `phrase`, `failures`, `upset`, `flow`).
    pub escalated: Option<String>,
    /// Whether the caller was found upset.
    pub upset: Option<bool>,
    /// Whether a callback was asked for.
    pub callback: Option<bool>,
}
