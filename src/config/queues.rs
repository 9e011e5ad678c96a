//! The `agents:` and `queues:` sections: the people ivrd routes calls to, and the queues
//! callers wait in for them. Checked here (ids, URIs, references); run by `crate::queue`.

use crate::diag::source_map::SourceMap;
use crate::diag::Diagnostic;
use crate::queue::{AgentSettings, CallbackPolicy, QueueSettings, Strategy};
use crate::sip::uri::validate_transfer_target;
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// An agent: reached at a fixed SIP URI (a desk phone, a softphone with a static address),
/// or logging in from any phone that REGISTERs to ivrd with digest credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    /// Stable id: used by queues, the API, the CLI and in the call context sent to agents.
    pub id: String,
    /// Display name (never a metric label).
    #[serde(default)]
    pub name: Option<String>,
    /// Where the agent's phone is rung (a fixed agent).
    #[serde(default)]
    pub uri: Option<String>,
    /// The SIP user name the agent's phone registers with (an agent who logs in).
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding that user's password (relative to the config file; keep it 0600).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyDef {
    LongestIdle,
    RingAll,
    RoundRobin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDef {
    /// Agent ids serving the queue, in the order round robin follows.
    pub agents: Vec<String>,
    #[serde(default = "default_strategy")]
    pub strategy: StrategyDef,
    /// How long an agent's phone rings before the next agent is tried.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_s: u64,
    /// After a call, how long an agent has before the next one.
    #[serde(default = "default_wrap_up")]
    pub wrap_up_s: u64,
    /// The longest a caller waits; then the flow's `on_timeout` node. 0 = no limit.
    #[serde(default = "default_max_wait")]
    pub max_wait_s: u64,
    /// What callers hear while waiting: a prompt name in the sounds directory.
    #[serde(default)]
    pub hold: Option<String>,
    /// How often a waiting caller hears their place and the estimated wait; 0 = only once.
    #[serde(default = "default_announce_every")]
    pub announce_every_s: u64,
    /// Offer to keep the caller's place and call back when the estimated wait is longer
    /// than this (seconds; needs `callbacks.trunk`).
    #[serde(default)]
    pub callback_after_s: Option<u64>,
    /// The handle time estimates assume until the queue has real ones (seconds; without
    /// it, a new queue announces no estimate).
    #[serde(default)]
    pub handle_time_s: Option<u64>,
}

/// Calling callers back when their kept place comes up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// Where calls to callers go: an outbound proxy or trunk URI (`sip:10.0.0.5:5060`);
    /// the request is `sip:NUMBER@` its host. Without it no callback is offered in queues.
    pub trunk: Option<String>,
    /// Kept places per queue at most (beyond it callers are not offered one).
    pub max_per_queue: usize,
    /// Calls placed to a caller before their callback is given up.
    pub attempts: u32,
    /// Wait before the second attempt (doubling for each one after), seconds.
    pub retry_s: u64,
    /// How long the caller's phone rings.
    pub ring_timeout_s: u64,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        CallbacksConfig {
            trunk: None,
            max_per_queue: 50,
            attempts: 3,
            retry_s: 60,
            ring_timeout_s: 30,
        }
    }
}

impl CallbacksConfig {
    pub fn policy(&self) -> CallbackPolicy {
        CallbackPolicy {
            // No trunk: nothing to call back through, so nothing is offered.
            max_per_queue: if self.trunk.is_some() {
                self.max_per_queue
            } else {
                0
            },
            attempts: self.attempts.max(1),
            retry: Duration::from_secs(self.retry_s),
        }
    }
}

fn default_strategy() -> StrategyDef {
    StrategyDef::LongestIdle
}
fn default_ring_timeout() -> u64 {
    15
}
fn default_wrap_up() -> u64 {
    10
}
fn default_max_wait() -> u64 {
    900
}
fn default_announce_every() -> u64 {
    45
}

/// Every problem in `agents` and `queues`, each at its line.
pub fn check(
    path: &Path,
    map: &SourceMap,
    agents: &[AgentDef],
    queues: &IndexMap<String, QueueDef>,
    callbacks: &CallbacksConfig,
) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    if let Some(trunk) = &callbacks.trunk {
        if let Err(e) = validate_transfer_target(trunk) {
            errors.push(
                Diagnostic::new(path, format!("callbacks.trunk: {e}"))
                    .at(map.setting("callbacks.trunk")),
            );
        }
    }
    if !(5..=120).contains(&callbacks.ring_timeout_s) {
        errors.push(
            Diagnostic::new(path, "callbacks.ring_timeout_s must be between 5 and 120")
                .at(map.setting("callbacks.ring_timeout_s")),
        );
    }
    let mut ids = HashSet::new();
    for a in agents {
        let at = map.setting("agents");
        if a.id.is_empty()
            || !a
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            errors.push(
                Diagnostic::new(
                    path,
                    format!(
                        "agents: id '{}' must be letters, digits, '_', '-' or '.'",
                        a.id
                    ),
                )
                .at(at),
            );
        }
        if !ids.insert(a.id.as_str()) {
            errors.push(
                Diagnostic::new(path, format!("agents: id '{}' is given twice", a.id)).at(at),
            );
        }
        match (&a.uri, &a.username, &a.password_file) {
            (Some(uri), None, None) => {
                if let Err(e) = validate_transfer_target(uri) {
                    errors.push(Diagnostic::new(path, format!("agents.{}: uri: {e}", a.id)).at(at));
                }
            }
            (None, Some(user), Some(_)) => {
                if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || "_-.+".contains(c)) {
                    errors.push(
                        Diagnostic::new(path, format!("agents.{}: username '{user}' must be letters, digits, '_', '-', '.' or '+'", a.id))
                            .at(at),
                    );
                }
            }
            _ => errors.push(
                Diagnostic::new(
                    path,
                    format!(
                        "agents.{}: give either uri (a fixed phone) or username and password_file (a phone that registers)",
                        a.id
                    ),
                )
                .at(at),
            ),
        }
    }
    for (name, q) in queues {
        let at = map.setting(&format!("queues.{name}"));
        let fail = |msg: String| Diagnostic::new(path, format!("queues.{name}: {msg}")).at(at);
        if q.agents.is_empty() {
            errors.push(fail("needs at least one agent".into()));
        }
        for id in &q.agents {
            if !ids.contains(id.as_str()) {
                errors.push(fail(format!("agent '{id}' is not in agents")));
            }
        }
        if !(1..=300).contains(&q.ring_timeout_s) {
            errors.push(fail("ring_timeout_s must be between 1 and 300".into()));
        }
        if q.wrap_up_s > 3600 {
            errors.push(fail("wrap_up_s must be at most 3600".into()));
        }
    }
    errors
}

pub fn agent_settings(agents: &[AgentDef]) -> Vec<AgentSettings> {
    agents
        .iter()
        .map(|a| AgentSettings {
            id: a.id.clone(),
            name: a.name.clone().unwrap_or_else(|| a.id.clone()),
            uri: a.uri.clone().unwrap_or_default(),
        })
        .collect()
}

pub fn queue_settings(queues: &IndexMap<String, QueueDef>) -> Vec<QueueSettings> {
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    queues
        .iter()
        .map(|(name, q)| QueueSettings {
            name: name.clone(),
            agents: q.agents.clone(),
            strategy: match q.strategy {
                StrategyDef::LongestIdle => Strategy::LongestIdle,
                StrategyDef::RingAll => Strategy::RingAll,
                StrategyDef::RoundRobin => Strategy::RoundRobin,
            },
            ring_timeout: Duration::from_secs(q.ring_timeout_s),
            wrap_up: Duration::from_secs(q.wrap_up_s),
            max_wait: secs(q.max_wait_s),
            announce_every: secs(q.announce_every_s),
            callback_after: q.callback_after_s.map(Duration::from_secs),
            handle_time: q.handle_time_s.map(Duration::from_secs),
        })
        .collect()
}
