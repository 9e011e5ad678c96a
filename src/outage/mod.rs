//! Outages as first-class objects: what is broken, who it concerns, since when, until when,
//! and what callers can do about it. Pure: validation, activity at a given time, which
//! outages a caller must hear at a point of the call, how sources (the file, Alertmanager)
//! map onto outages and reconcile with them. Storage and I/O live elsewhere (`store`,
//! `io::outages`, `io::http`).

pub mod alertmanager;
pub mod file;
pub mod reconcile;

use crate::media::prompt::Prompt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Longest outage message rendered to speech.
pub const MAX_MESSAGE_CHARS: usize = 600;

/// Where an outage came from; file outages are owned by the watched file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    File,
    Api,
    Alertmanager,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Api => "api",
            Source::Alertmanager => "alertmanager",
        }
    }
}

/// An outage as admins describe it (API body, file entry, stored row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    /// Short stable name: letters, digits, '-', '_', '.' (used in metrics and URLs).
    pub id: String,
    /// What callers hear, as text rendered to speech...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// ...or a prompt file from the sounds directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// `all` (every caller, right after the greeting), or intents/services such as `billing`.
    #[serde(default = "default_scope")]
    pub scope: Vec<String>,
    /// When it starts (RFC 3339 or unix seconds); absent = now.
    #[serde(
        default,
        with = "file::timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub starts_at: Option<u64>,
    /// When it ends by itself (RFC 3339 or unix seconds); absent = until stopped.
    #[serde(
        default,
        with = "file::timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<u64>,
    /// Offer "press 1 to be called back when it is fixed".
    #[serde(default)]
    pub callback: bool,
}

fn default_scope() -> Vec<String> {
    vec!["all".to_string()]
}

/// A stored outage: the spec plus bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    #[serde(flatten)]
    pub spec: OutageSpec,
    pub source: Source,
    /// Unix seconds when it was created or last changed.
    pub updated_at: u64,
    /// Who changed it last (API actor, "file", "alertmanager").
    pub updated_by: String,
}

impl Outage {
    pub fn is_active(&self, now: u64) -> bool {
        self.spec.starts_at.is_none_or(|s| s <= now) && self.spec.expires_at.is_none_or(|e| now < e)
    }

    pub fn applies_to_all(&self) -> bool {
        self.spec.scope.iter().any(|s| s == "all")
    }

    /// Whether a caller at `intent` or node `name` is concerned.
    pub fn applies_to(&self, name: &str) -> bool {
        self.spec.scope.iter().any(|s| s.eq_ignore_ascii_case(name))
    }
}

impl OutageSpec {
    /// Checks a spec from any source; the message says what is wrong, for a 400 or a log line.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(SpecError::Id(self.id.clone()));
        }
        match (&self.message, &self.prompt) {
            (None, None) => return Err(SpecError::NoAudio),
            (Some(_), Some(_)) => return Err(SpecError::BothAudio),
            (Some(m), None) => {
                let n = m.chars().count();
                if m.trim().is_empty() || n > MAX_MESSAGE_CHARS {
                    return Err(SpecError::MessageLength(n));
                }
            }
            (None, Some(_)) => {}
        }
        if self.scope.is_empty()
            || self
                .scope
                .iter()
                .any(|s| s.trim().is_empty() || s.len() > 64)
        {
            return Err(SpecError::Scope);
        }
        if let (Some(s), Some(e)) = (self.starts_at, self.expires_at) {
            if e <= s {
                return Err(SpecError::EndsBeforeStart);
            }
        }
        Ok(())
    }
}

/// What is wrong with an outage as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("id '{0}' must be 1-64 letters, digits, '-', '_' or '.'")]
    Id(String),
    #[error("an outage needs a 'message' (text) or a 'prompt' (file)")]
    NoAudio,
    #[error("give either 'message' or 'prompt', not both")]
    BothAudio,
    #[error("message must be 1-{MAX_MESSAGE_CHARS} characters (it has {0})")]
    MessageLength(usize),
    #[error("scope must list 'all' or intent/service names")]
    Scope,
    #[error("expires_at must be after starts_at")]
    EndsBeforeStart,
    #[error("expires_at is in the past")]
    Expired,
}

/// An outage ready to be announced: its audio is rendered.
#[derive(Debug)]
pub struct Announcement {
    pub outage: Outage,
    pub prompt: Arc<Prompt>,
}

/// The outages callers hear now: only active ones. Swapped atomically as a whole whenever
/// one starts, changes or ends, so a call reads a consistent set without locks or clocks.
#[derive(Debug, Default)]
pub struct OutageSet {
    pub items: Vec<Arc<Announcement>>,
}

impl OutageSet {
    /// The set active at `now` (unix seconds).
    pub fn active(mut items: Vec<Arc<Announcement>>, now: u64) -> Self {
        items.retain(|a| a.outage.is_active(now));
        items.sort_by(|a, b| a.outage.spec.id.cmp(&b.outage.spec.id));
        OutageSet { items }
    }

    /// Outages for every caller, not yet in `heard`.
    pub fn for_everyone(&self, heard: &[String]) -> Vec<Arc<Announcement>> {
        self.select(heard, |o| o.applies_to_all())
    }

    /// Outages scoped to `name` (an intent or a node), not yet in `heard`.
    pub fn for_scope(&self, name: &str, heard: &[String]) -> Vec<Arc<Announcement>> {
        self.select(heard, |o| !o.applies_to_all() && o.applies_to(name))
    }

    fn select(&self, heard: &[String], f: impl Fn(&Outage) -> bool) -> Vec<Arc<Announcement>> {
        self.items
            .iter()
            .filter(|a| f(&a.outage) && !heard.contains(&a.outage.spec.id))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Outages by id, the shape stores and sources exchange.
pub type OutageMap = HashMap<String, Outage>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn spec(id: &str, scope: &[&str]) -> OutageSpec {
        OutageSpec {
            id: id.into(),
            message: Some("Our billing system is down.".into()),
            prompt: None,
            scope: scope.iter().map(|s| s.to_string()).collect(),
            starts_at: None,
            expires_at: None,
            callback: false,
        }
    }

    pub fn ann(spec: OutageSpec) -> Arc<Announcement> {
        Arc::new(Announcement {
            outage: Outage {
                spec,
                source: Source::Api,
                updated_at: 0,
                updated_by: "test".into(),
            },
            prompt: Arc::new(Prompt::from_samples("o", &[0.0; 80], 8000).unwrap()),
        })
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(spec("net-1", &["all"]).validate().is_ok());
        assert!(spec("bad id", &["all"])
            .validate()
            .unwrap_err()
            .to_string()
            .contains("id"));
        let mut s = spec("x", &["all"]);
        s.message = None;
        assert!(s.validate().unwrap_err().to_string().contains("message"));
        s.message = Some("a".repeat(MAX_MESSAGE_CHARS + 1));
        assert!(s.validate().is_err());
        let mut s = spec("x", &[]);
        assert!(s.validate().is_err());
        s = spec("x", &["all"]);
        s.starts_at = Some(10);
        s.expires_at = Some(5);
        assert!(s.validate().unwrap_err().to_string().contains("expires_at"));
    }

    #[test]
    fn activity_window() {
        let mut s = spec("x", &["all"]);
        s.starts_at = Some(100);
        s.expires_at = Some(200);
        let a = ann(s);
        assert!(!a.outage.is_active(99));
        assert!(a.outage.is_active(100));
        assert!(!a.outage.is_active(200));
    }

    #[test]
    fn selection_by_scope_and_heard() {
        let mut later = spec("later", &["all"]);
        later.starts_at = Some(1000);
        let set = OutageSet::active(
            vec![
                ann(spec("all-1", &["all"])),
                ann(spec("bill", &["billing"])),
                ann(later),
            ],
            10,
        );
        let ids = |v: Vec<Arc<Announcement>>| {
            v.iter()
                .map(|a| a.outage.spec.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(set.for_everyone(&[])), ["all-1"]);
        assert_eq!(
            ids(set.for_everyone(&["all-1".into()])),
            Vec::<String>::new()
        );
        assert_eq!(ids(set.for_scope("Billing", &[])), ["bill"]);
        assert_eq!(ids(set.for_scope("support", &[])), Vec::<String>::new());
        assert_eq!(set.len(), 2);
    }
}
