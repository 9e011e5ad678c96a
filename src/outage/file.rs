//! The watched outages file (`flows/outages.yaml` by default): admins list current outages
//! in it; the daemon reloads it when it changes. Parsing only; watching is in `io`.

use super::OutageSpec;
use crate::diag::{yaml_diagnostic, Diagnostic, Diagnostics};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OutageFile {
    #[serde(default)]
    outages: Vec<OutageSpec>,
}

/// Parses and validates the file; every problem is reported with its line.
pub fn parse(path: &Path, text: &str) -> Result<Vec<OutageSpec>, Diagnostics> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let file: OutageFile =
        serde_yaml::from_str(text).map_err(|e| Diagnostics(vec![yaml_diagnostic(path, &e)]))?;
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for spec in &file.outages {
        let line = text
            .lines()
            .position(|l| {
                let t = l.trim_start().trim_start_matches("- ").trim_start();
                t.strip_prefix("id:")
                    .is_some_and(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == spec.id)
            })
            .map(|i| i + 1);
        if let Err(e) = spec.validate() {
            errors.push(Diagnostic::new(path, format!("outage '{}': {e}", spec.id)).at(line));
        }
        if !seen.insert(spec.id.clone()) {
            errors.push(
                Diagnostic::new(path, format!("outage '{}' is listed twice", spec.id)).at(line),
            );
        }
    }
    if errors.is_empty() {
        Ok(file.outages)
    } else {
        Err(Diagnostics(errors))
    }
}

/// Timestamps in files and the API: unix seconds or RFC 3339 text in, RFC 3339 text out.
pub mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, UNIX_EPOCH};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(secs) => {
                let t = UNIX_EPOCH + Duration::from_secs(*secs);
                s.serialize_str(&humantime::format_rfc3339_seconds(t).to_string())
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Secs(s)) => Ok(Some(s)),
            Some(Raw::Text(t)) => parse(&t).map(Some).map_err(serde::de::Error::custom),
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum TimeError {
        #[error("'{time}' is not an RFC 3339 time: {reason}")]
        NotRfc3339 { time: String, reason: String },
        #[error("'{0}' is before 1970")]
        BeforeEpoch(String),
    }

    /// RFC 3339 (`2026-11-23T18:00:00Z`) to unix seconds.
    pub fn parse(t: &str) -> Result<u64, TimeError> {
        humantime::parse_rfc3339_weak(t.trim())
            .map_err(|e| TimeError::NotRfc3339 {
                time: t.to_string(),
                reason: e.to_string(),
            })?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .map_err(|_| TimeError::BeforeEpoch(t.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_file_with_times() {
        let text = "outages:\n  - id: net\n    message: The network is down in the north.\n    expires_at: 2030-01-01T00:00:00Z\n  - id: bill\n    prompt: billing_down\n    scope: [billing]\n    callback: true\n";
        let v = parse(Path::new("o.yaml"), text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].scope, ["all"]);
        assert_eq!(v[0].expires_at, Some(1_893_456_000));
        assert!(v[1].callback);
    }

    #[test]
    fn reports_each_bad_outage_with_its_line() {
        let text = "outages:\n  - id: a\n    scope: [all]\n  - id: a\n    message: x\n";
        let e = parse(Path::new("o.yaml"), text).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("o.yaml:2: outage 'a': an outage needs a 'message'"),
            "{s}"
        );
        assert!(
            s.contains("o.yaml:2: outage 'a' is listed twice") || s.contains("listed twice"),
            "{s}"
        );
    }

    #[test]
    fn empty_file_is_no_outages() {
        assert!(parse(Path::new("o.yaml"), "").unwrap().is_empty());
        assert!(parse(Path::new("o.yaml"), "outages: []\n")
            .unwrap()
            .is_empty());
    }
}
