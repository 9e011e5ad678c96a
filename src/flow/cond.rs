//! Branch conditions, compiled and evaluated. Pure: the facts of the call (the time as
//! Unix seconds, the caller's record, the outages in force, the number dialled, the call
//! variables) come in as one [`Facts`].

use crate::outage::OutageSet;
use crate::schedule::Schedule;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What ivrd remembers of a caller (keyed by the network's caller ID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerInfo {
    /// The name they prefer to be called by (set by the admin or an import).
    pub name: Option<String>,
    /// What they called about last time, and when (Unix seconds).
    pub last_intent: Option<String>,
    pub last_call_at: Option<i64>,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerIs {
    /// ivrd has a record of this number.
    Known,
    Unknown,
    /// Known, with a preferred name.
    Named,
}

#[derive(Debug, Clone)]
pub enum Cond {
    Open(Arc<Schedule>),
    Holiday(Arc<Schedule>),
    Caller(CallerIs),
    /// The last call's intent (any when None) within so many days (any time when None).
    LastCall {
        intent: Option<String>,
        within_days: Option<u32>,
    },
    /// `any`, an outage id, or a scope an outage concerns.
    Outage(String),
    Dialled(Vec<String>),
    /// `vars.NAME` is set (to `equals`, when given).
    Var {
        name: String,
        equals: Option<String>,
    },
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

/// What a condition is decided on.
pub struct Facts<'a> {
    pub unix: i64,
    pub caller: Option<&'a CallerInfo>,
    pub outages: &'a OutageSet,
    pub dialled: &'a str,
    /// Call variables by full name (`vars.account`).
    pub vars: &'a BTreeMap<String, String>,
}

impl Cond {
    pub fn holds(&self, f: &Facts<'_>) -> bool {
        match self {
            Cond::Open(s) => s.is_open(f.unix),
            Cond::Holiday(s) => s.is_holiday_at(f.unix),
            Cond::Caller(is) => match (is, f.caller) {
                (CallerIs::Known, c) => c.is_some(),
                (CallerIs::Unknown, c) => c.is_none(),
                (CallerIs::Named, c) => c
                    .and_then(|c| c.name.as_deref())
                    .is_some_and(|n| !n.trim().is_empty()),
            },
            Cond::LastCall {
                intent,
                within_days,
            } => {
                let Some(c) = f.caller else { return false };
                let intent_ok = match intent {
                    Some(i) => c.last_intent.as_deref() == Some(i.as_str()),
                    None => c.last_intent.is_some(),
                };
                let recent = match (within_days, c.last_call_at) {
                    (None, _) => true,
                    (Some(d), Some(at)) => f.unix.saturating_sub(at) <= i64::from(*d) * 86_400,
                    (Some(_), None) => false,
                };
                intent_ok && recent
            }
            Cond::Outage(what) => {
                f.outages.items.iter().any(|a| {
                    what == "any" || a.outage.spec.id == *what || a.outage.applies_to(what)
                })
            }
            Cond::Dialled(numbers) => numbers.iter().any(|n| n == f.dialled),
            Cond::Var { name, equals } => match (f.vars.get(name), equals) {
                (Some(v), Some(e)) => v == e,
                (Some(v), None) => !v.is_empty(),
                (None, _) => false,
            },
            Cond::All(all) => all.iter().all(|c| c.holds(f)),
            Cond::Any(any) => any.iter().any(|c| c.holds(f)),
            Cond::Not(c) => !c.holds(f),
        }
    }

    /// Whether deciding it needs the caller's record.
    pub fn uses_caller(&self) -> bool {
        match self {
            Cond::Caller(_) | Cond::LastCall { .. } => true,
            Cond::All(v) | Cond::Any(v) => v.iter().any(Cond::uses_caller),
            Cond::Not(c) => c.uses_caller(),
            _ => false,
        }
    }

    /// A short description for graphs and test reports.
    pub fn describe(&self) -> String {
        match self {
            Cond::Open(s) => format!("{} open", s.name),
            Cond::Holiday(s) => format!("{} holiday", s.name),
            Cond::Caller(CallerIs::Known) => "known caller".into(),
            Cond::Caller(CallerIs::Unknown) => "unknown caller".into(),
            Cond::Caller(CallerIs::Named) => "caller with a name".into(),
            Cond::LastCall {
                intent,
                within_days,
            } => {
                let mut s = format!("last call {}", intent.as_deref().unwrap_or("any"));
                if let Some(d) = within_days {
                    s.push_str(&format!(" within {d} days"));
                }
                s
            }
            Cond::Outage(o) => format!("outage {o}"),
            Cond::Dialled(n) => format!("dialled {}", n.join("|")),
            Cond::Var { name, equals } => match equals {
                Some(e) => format!("{name} = {e}"),
                None => format!("{name} set"),
            },
            Cond::All(v) => v
                .iter()
                .map(Cond::describe)
                .collect::<Vec<_>>()
                .join(" and "),
            Cond::Any(v) => format!(
                "({})",
                v.iter()
                    .map(Cond::describe)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Cond::Not(c) => format!("not {}", c.describe()),
        }
    }
}
