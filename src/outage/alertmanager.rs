//! Alertmanager's webhook (payload version 4) mapped onto outages. A batch is checked whole
//! before anything changes: one alert that cannot be mapped refuses the batch.

use super::OutageSpec;
use crate::config::AlertmanagerConfig;
use serde::Deserialize;
use std::collections::HashMap;

/// The payload; unknown fields are ignored, as Alertmanager adds some.
#[derive(Debug, Deserialize)]
pub struct Webhook {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default, rename = "endsAt")]
    pub ends_at: Option<String>,
}

/// What one alert asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A firing alert: start (or update) this outage.
    Start(OutageSpec),
    /// A resolved alert: end the outage with this id (if there is one).
    Stop(String),
}

impl Change {
    pub fn id(&self) -> &str {
        match self {
            Change::Start(spec) => &spec.id,
            Change::Stop(id) => id,
        }
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AlertError {
    #[error("alert {index}: has neither fingerprint nor alertname")]
    NoName { index: usize },
    #[error("alert {index}: status '{status}' is neither firing nor resolved")]
    Status { index: usize, status: String },
    #[error("alert {index} ({id}): {reason}")]
    Invalid {
        index: usize,
        id: String,
        reason: super::SpecError,
    },
}

/// The changes a webhook asks for, in order, or the first alert that makes the batch
/// unusable. `now` (Unix seconds) filters `endsAt` values that are past or absurdly far.
pub fn changes(
    hook: &Webhook,
    cfg: &AlertmanagerConfig,
    now: u64,
) -> Result<Vec<Change>, AlertError> {
    hook.alerts
        .iter()
        .enumerate()
        .map(|(index, alert)| {
            let spec = outage_for(alert, cfg, now).ok_or(AlertError::NoName { index })?;
            match alert.status.as_str() {
                "firing" => {
                    spec.validate().map_err(|reason| AlertError::Invalid {
                        index,
                        id: spec.id.clone(),
                        reason,
                    })?;
                    Ok(Change::Start(spec))
                }
                "resolved" => Ok(Change::Stop(spec.id)),
                other => Err(AlertError::Status {
                    index,
                    status: other.to_string(),
                }),
            }
        })
        .collect()
}

/// What a batch amounts to when applied in order: for each outage id the last change wins
/// (a firing alert then its resolution stops it; a resolution then a new firing starts it).
/// Kept in the order of those last changes.
pub fn net_effect(changes: &[Change]) -> Vec<Change> {
    let mut seen = std::collections::HashSet::new();
    let mut net: Vec<Change> = changes
        .iter()
        .rev()
        .filter(|c| seen.insert(c.id().to_string()))
        .cloned()
        .collect();
    net.reverse();
    net
}

/// Maps an alert to an outage: id from the fingerprint (or alert name), scope from the
/// configured label, message from the first configured annotation present. `None` when the
/// alert has nothing to name it by.
pub fn outage_for(a: &Alert, cfg: &AlertmanagerConfig, now: u64) -> Option<OutageSpec> {
    let basis = if !a.fingerprint.is_empty() {
        a.fingerprint.clone()
    } else {
        a.labels.get("alertname").cloned().unwrap_or_default()
    };
    let slug: String = basis
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    if slug.is_empty() {
        return None;
    }
    let scope = match a.labels.get(&cfg.scope_label) {
        Some(v) => cfg.scopes.get(v).cloned().unwrap_or_else(|| v.clone()),
        None => "all".into(),
    };
    let message = cfg
        .message_annotations
        .iter()
        .find_map(|k| {
            a.annotations
                .get(k)
                .filter(|v| !v.trim().is_empty())
                .cloned()
        })
        .unwrap_or_else(|| {
            let name = a
                .labels
                .get("alertname")
                .map(String::as_str)
                .unwrap_or("a system");
            format!("We are aware of a problem with {name} and are working on it.")
        });
    let expires_at = a
        .ends_at
        .as_deref()
        .and_then(|t| super::file::timestamp::parse(t).ok())
        .filter(|&t| t > now && t < now + 30 * 86_400);
    Some(OutageSpec {
        id: format!("am-{slug}"),
        message: Some(message),
        prompt: None,
        scope: vec![scope],
        starts_at: None,
        // Firing alerts usually carry a zero endsAt (filtered out above): the outage then
        // lasts until the resolved notification. A real future endsAt is kept.
        expires_at,
        callback: cfg.callback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: &str, fingerprint: &str) -> Alert {
        Alert {
            status: status.into(),
            labels: [
                ("alertname".into(), "PaymentsDown".into()),
                ("service".into(), "payments".into()),
            ]
            .into(),
            annotations: [("summary".into(), "Card payments are failing.".into())].into(),
            fingerprint: fingerprint.into(),
            ends_at: Some("0001-01-01T00:00:00Z".into()),
        }
    }

    #[test]
    fn alert_maps_to_outage() {
        let mut cfg = AlertmanagerConfig::default();
        cfg.scopes.insert("payments".into(), "billing".into());
        let spec = outage_for(&alert("firing", "abc123"), &cfg, 1_700_000_000).unwrap();
        assert_eq!(spec.id, "am-abc123");
        assert_eq!(spec.scope, ["billing"]);
        assert_eq!(spec.message.as_deref(), Some("Card payments are failing."));
        assert_eq!(spec.expires_at, None);
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn a_batch_with_one_bad_alert_is_refused_whole() {
        let cfg = AlertmanagerConfig::default();
        let now = 1_700_000_000;
        let good = Webhook {
            alerts: vec![alert("firing", "a1"), alert("resolved", "b2")],
        };
        let planned = changes(&good, &cfg, now).unwrap();
        assert_eq!(planned.len(), 2);
        assert!(matches!(&planned[0], Change::Start(s) if s.id == "am-a1"));
        assert_eq!(planned[1], Change::Stop("am-b2".into()));

        let bad = Webhook {
            alerts: vec![alert("firing", "a1"), alert("pending", "c3")],
        };
        assert_eq!(
            changes(&bad, &cfg, now),
            Err(AlertError::Status {
                index: 1,
                status: "pending".into()
            })
        );
        let mut nameless = alert("firing", "");
        nameless.labels.clear();
        let bad = Webhook {
            alerts: vec![alert("firing", "a1"), nameless],
        };
        assert_eq!(
            changes(&bad, &cfg, now),
            Err(AlertError::NoName { index: 1 })
        );
    }

    #[test]
    fn within_a_batch_the_last_change_of_an_outage_wins() {
        let cfg = AlertmanagerConfig::default();
        let now = 1_700_000_000;
        let hook = Webhook {
            alerts: vec![
                alert("firing", "a"),
                alert("resolved", "b"),
                alert("resolved", "a"),
                alert("firing", "b"),
                alert("firing", "c"),
            ],
        };
        let net = net_effect(&changes(&hook, &cfg, now).unwrap());
        let ids: Vec<(&str, bool)> = net
            .iter()
            .map(|c| (c.id(), matches!(c, Change::Start(_))))
            .collect();
        assert_eq!(ids, [("am-a", false), ("am-b", true), ("am-c", true)]);
    }

    #[test]
    fn a_future_ends_at_is_kept_a_past_one_is_not() {
        let cfg = AlertmanagerConfig::default();
        let mut a = alert("firing", "x");
        a.ends_at = Some("2023-11-14T22:13:20Z".into()); // 1_700_000_000
        assert_eq!(
            outage_for(&a, &cfg, 1_699_999_000).unwrap().expires_at,
            Some(1_700_000_000)
        );
        assert_eq!(
            outage_for(&a, &cfg, 1_700_000_001).unwrap().expires_at,
            None
        );
    }
}
