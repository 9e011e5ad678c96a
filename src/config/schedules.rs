//! The `schedules:` section (opening hours and holidays, by name, for flow `branch` nodes)
//! and `callers:` (what ivrd remembers of returning callers). Schedules are built here,
//! so a bad zone, day or hour is reported at its line when the config loads.

use crate::diag::source_map::SourceMap;
use crate::diag::Diagnostic;
use crate::schedule::Schedule;
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// One schedule as written:
/// ```yaml
/// support_hours:
///   timezone: Europe/London
///   open: {mon-fri: "08:00-20:00", sat: "09:00-13:00"}
///   holidays: [2026-12-25, 01-01]          # a date, or MM-DD every year
///   exceptions: {2026-12-24: "08:00-12:00", 2026-12-31: closed}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// IANA zone name; the hours are local times there (daylight saving included).
    #[serde(default = "default_zone")]
    pub timezone: String,
    /// Day or day range (mon, mon-fri, weekdays, weekends, daily) -> hours
    /// ("08:00-12:00, 13:00-17:30"; "22:00-06:00" runs past midnight; "24h"; "closed").
    #[serde(default)]
    pub open: IndexMap<String, String>,
    /// Whole days closed.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Dates with other hours than usual (or "closed").
    #[serde(default)]
    pub exceptions: IndexMap<String, String>,
}

fn default_zone() -> String {
    "UTC".into()
}

/// What ivrd remembers of callers, keyed by the network's caller ID (never by what they say).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallersConfig {
    /// Remember callers' last intent and time (their name and notes come from the admin).
    pub remember: bool,
    /// Records untouched for this many days are erased (0: kept until erased by hand).
    pub retention_days: u32,
}

impl Default for CallersConfig {
    fn default() -> Self {
        CallersConfig {
            remember: true,
            retention_days: 365,
        }
    }
}

/// Builds every schedule; the errors name the schedule and its line.
pub fn build(
    path: &Path,
    map: &SourceMap,
    defs: &IndexMap<String, ScheduleDef>,
) -> (IndexMap<String, Arc<Schedule>>, Vec<Diagnostic>) {
    let mut out = IndexMap::new();
    let mut errors = Vec::new();
    for (name, def) in defs {
        let line = map
            .setting(&format!("schedules.{name}"))
            .or_else(|| map.setting("schedules"));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            errors.push(
                Diagnostic::new(
                    path,
                    format!("schedules.{name}: names are letters, digits, '-', '_' or '.'"),
                )
                .at(line),
            );
            continue;
        }
        let pairs = |m: &IndexMap<String, String>| {
            m.iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect::<Vec<_>>()
        };
        match Schedule::new(
            name,
            &def.timezone,
            &pairs(&def.open),
            &def.holidays,
            &pairs(&def.exceptions),
        ) {
            Ok(s) => {
                out.insert(name.clone(), Arc::new(s));
            }
            Err(e) => errors.push(Diagnostic::new(path, format!("schedules.{name}: {e}")).at(line)),
        }
    }
    (out, errors)
}
