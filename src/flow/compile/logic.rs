//! Compiling the nodes that decide without the caller (branch, set), ask for a number
//! (digits) or hand over to a person (escalate), the flow's upset handler, and the
//! placeholders of spoken text, each checked against what the flow can know.

use super::{Compiler, DTMF_KEYS, UNRESOLVED};
use crate::asr::upset::UpsetDetector;
use crate::diag::Diagnostic;
use crate::flow::cond::{CallerIs, Cond};
use crate::flow::schema::{CondDef, FlowFile, NodeDef, UpsetDef};
use crate::flow::{Digits, NodeKind, Upset};
use crate::template::Template;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Values every call has, besides `vars.*`: what templates and conditions may use.
pub const CALL_VALUES: &[&str] = &[
    "caller.name",
    "caller.last_intent",
    "caller.notes",
    "call.caller",
    "call.dialled",
    "intent",
    "last_input",
];

/// Most keys a digits node takes.
const MAX_DIGITS: usize = 32;

/// Variables some node of the flow sets, so texts and conditions may use them.
pub(super) fn declared_vars(def: &FlowFile) -> HashSet<String> {
    let mut vars = HashSet::new();
    for n in def.nodes.values() {
        if let Some(set) = &n.set {
            vars.extend(set.keys().cloned());
        }
        if let Some(v) = &n.into {
            vars.insert(v.clone());
        }
    }
    vars
}

fn valid_var_name(v: &str) -> bool {
    !v.is_empty() && v.len() <= 32 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Compiler<'_> {
    /// Parses a text's placeholders against the values a call can have.
    pub(super) fn template(&mut self, text: &str) -> Result<Template, String> {
        let vars = &self.vars;
        let t = Template::parse(text, |name| {
            if CALL_VALUES.contains(&name) {
                return Ok(());
            }
            match name.strip_prefix("vars.") {
                Some(v) if vars.contains(v) => Ok(()),
                Some(v) => Err(format!("no node sets '{v}' (set: or digits: with into:)")),
                None => Err(format!(
                    "use vars.NAME or one of {}",
                    CALL_VALUES.join(", ")
                )),
            }
        })
        .map_err(|e| e.to_string())?;
        if t.names().any(|n| n.starts_with("caller.")) {
            self.uses_caller = true;
        }
        Ok(t)
    }

    fn required_target(
        &mut self,
        node: &str,
        field: &str,
        value: &Option<String>,
        kind: &str,
        why: &str,
    ) -> usize {
        match value {
            Some(t) => self.target(node, field, t),
            None => {
                self.err_node(
                    node,
                    Some(kind),
                    format!("a {kind} node needs '{field}': {why}"),
                );
                UNRESOLVED
            }
        }
    }

    pub(super) fn digits_node(&mut self, name: &str, n: &NodeDef, def: &FlowFile) -> NodeKind {
        let next = self.required_target(
            name,
            "next",
            &n.next,
            "digits",
            "where the call goes with the number",
        );
        let into = match &n.into {
            Some(v) if valid_var_name(v) => v.clone(),
            Some(v) => {
                self.err_node(
                    name,
                    Some("into"),
                    format!("into: '{v}' must be letters, digits or '_' (at most 32)"),
                );
                v.clone()
            }
            None => {
                self.err_node(
                    name,
                    Some("digits"),
                    "a digits node needs 'into': the variable that keeps the number".into(),
                );
                String::new()
            }
        };
        let min = n.min_digits.unwrap_or(1);
        let max = n.max_digits.unwrap_or(16);
        if min == 0 || max < min || max > MAX_DIGITS {
            self.err_node(
                name,
                Some(if n.max_digits.is_some() { "max_digits" } else { "min_digits" }),
                format!("min_digits ({min}) must be at least 1 and at most max_digits ({max}), which is at most {MAX_DIGITS}"),
            );
        }
        let end_key = match n.end_key.as_deref() {
            None => Some('#'),
            Some("") => None,
            Some(k) if k.len() == 1 && DTMF_KEYS.contains(k) => k.chars().next(),
            Some(k) => {
                self.err_node(
                    name,
                    Some("end_key"),
                    format!("end_key: '{k}' is not one key (0-9, *, #, A-D; \"\" for none)"),
                );
                None
            }
        };
        if let Some(k) = end_key.filter(|k| k.is_ascii_digit()) {
            self.err_node(
                name,
                Some("end_key"),
                format!("end_key: '{k}' is a digit, so it could not be part of the number"),
            );
        }
        let timeout_ms = n.timeout_ms.unwrap_or(def.defaults.no_input_ms);
        if !(500..=120_000).contains(&timeout_ms) {
            self.err_node(
                name,
                Some("timeout_ms"),
                format!("timeout_ms {timeout_ms} must be between 500 and 120000"),
            );
        }
        let no_input = self.retry(name, "no_input", n.no_input.as_ref());
        let no_match = self.retry(name, "no_match", n.no_match.as_ref());
        NodeKind::Digits(Box::new(Digits {
            prompts: self.load_prompts(Some(name), "digits", n.digits.as_ref()),
            into,
            min,
            max,
            end_key,
            timeout: Duration::from_millis(timeout_ms),
            inter_digit: Duration::from_millis(def.defaults.inter_digit_ms.max(3000)),
            no_input,
            no_match,
            next,
            on_failure: n
                .on_failure
                .as_ref()
                .map(|t| self.target(name, "on_failure", t)),
        }))
    }

    pub(super) fn branch_node(&mut self, name: &str, n: &NodeDef) -> NodeKind {
        let otherwise = self.required_target(
            name,
            "else",
            &n.otherwise,
            "branch",
            "where the call goes when no condition holds",
        );
        let mut arms = Vec::new();
        for arm in n.branch.as_deref().unwrap_or_default() {
            let cond = self.cond(name, &arm.cond);
            let to = self.target(name, "goto", &arm.goto);
            arms.push((cond, to));
        }
        if arms.is_empty() {
            self.err_node(
                name,
                Some("branch"),
                "a branch node needs at least one arm ({if: ..., goto: ...})".into(),
            );
        }
        NodeKind::Branch { arms, otherwise }
    }

    /// One condition; every field given must hold.
    fn cond(&mut self, node: &str, c: &CondDef) -> Cond {
        let mut all = Vec::new();
        let schedule = |me: &mut Self, s: &str| -> Option<Arc<crate::schedule::Schedule>> {
            match me.schedules {
                Some(known) => match known.get(s) {
                    Some(sch) => Some(sch.clone()),
                    None => {
                        let have = if known.is_empty() {
                            "the config has no schedules".to_string()
                        } else {
                            format!(
                                "the config's schedules are {}",
                                known.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        };
                        me.err_node(
                            node,
                            Some("branch"),
                            format!("schedule: no schedule named '{s}' ({have})"),
                        );
                        None
                    }
                },
                // Compiled alone (no config): an always-closed stand-in.
                None => crate::schedule::Schedule::new(s, "UTC", &[], &[], &[])
                    .ok()
                    .map(Arc::new),
            }
        };
        if let Some(s) = &c.schedule {
            if let Some(sch) = schedule(self, s) {
                all.push(Cond::Open(sch));
            }
        }
        if let Some(s) = &c.holiday {
            if let Some(sch) = schedule(self, s) {
                all.push(Cond::Holiday(sch));
            }
        }
        if let Some(who) = &c.caller {
            let is = match who.as_str() {
                "known" => Some(CallerIs::Known),
                "unknown" => Some(CallerIs::Unknown),
                "named" => Some(CallerIs::Named),
                other => {
                    self.err_node(
                        node,
                        Some("branch"),
                        format!("caller: '{other}' must be known, unknown or named"),
                    );
                    None
                }
            };
            all.extend(is.map(Cond::Caller));
        }
        if c.last_intent.is_some() || c.within_days.is_some() {
            all.push(Cond::LastCall {
                intent: c.last_intent.clone(),
                within_days: c.within_days,
            });
        }
        if let Some(o) = &c.outage {
            all.push(Cond::Outage(o.clone()));
        }
        if let Some(d) = &c.dialled {
            all.push(Cond::Dialled(d.to_vec()));
        }
        match (&c.var, &c.equals) {
            (Some(v), equals) => {
                let name = v.strip_prefix("vars.").unwrap_or(v);
                if !self.vars.contains(name) {
                    self.err_node(
                        node,
                        Some("branch"),
                        format!("var: no node sets '{name}' (set: or digits: with into:)"),
                    );
                }
                all.push(Cond::Var {
                    name: format!("vars.{name}"),
                    equals: equals.clone(),
                });
            }
            (None, Some(_)) => self.err_node(node, Some("branch"), "equals: needs var:".into()),
            (None, None) => {}
        }
        if let Some(any) = &c.any {
            let any = any.iter().map(|c| self.cond(node, c)).collect();
            all.push(Cond::Any(any));
        }
        if let Some(not) = &c.not {
            let not = self.cond(node, not);
            all.push(Cond::Not(Box::new(not)));
        }
        if all.is_empty() {
            self.err_node(node, Some("branch"), "an empty condition: give schedule, holiday, caller, last_intent, outage, dialled, var, any or not".into());
        }
        let cond = if all.len() == 1 {
            all.remove(0)
        } else {
            Cond::All(all)
        };
        if cond.uses_caller() {
            self.uses_caller = true;
        }
        cond
    }

    pub(super) fn set_node(&mut self, name: &str, n: &NodeDef) -> NodeKind {
        let next = self.required_target(name, "next", &n.next, "set", "where the call goes after");
        let mut vars = Vec::new();
        for (var, text) in n.set.iter().flatten() {
            if !valid_var_name(var) {
                self.err_node(
                    name,
                    Some("set"),
                    format!("set: '{var}' must be letters, digits or '_' (at most 32)"),
                );
            }
            match self.template(text) {
                Ok(t) => vars.push((format!("vars.{var}"), t)),
                Err(e) => self.err_node(name, Some("set"), format!("set: {var}: {e}")),
            }
        }
        NodeKind::Set { vars, next }
    }

    pub(super) fn escalate_node(&mut self, name: &str, n: &NodeDef, def: &FlowFile) -> NodeKind {
        if def.escalation.is_none() {
            self.err_node(name, Some("escalate"), "escalate: the flow has no 'escalation' block (its target is where the caller goes)".into());
        }
        if n.escalate == Some(false) {
            self.err_node(
                name,
                Some("escalate"),
                "'escalate: false' does nothing; remove it or use true".into(),
            );
        }
        NodeKind::Escalate {
            prompts: self.load_prompts(Some(name), "play", n.play.as_ref()),
        }
    }

    pub(super) fn upset(&mut self, u: &UpsetDef) -> Upset {
        if !(0.0..=1.0).contains(&u.min_similarity) {
            let line = self.map.top_field("upset", "min_similarity");
            self.errors.push(
                Diagnostic::new(
                    self.file,
                    format!(
                        "upset.min_similarity {} must be between 0 and 1",
                        u.min_similarity
                    ),
                )
                .at(line),
            );
        }
        let next = self.top_target("upset", Some("next"), &u.next);
        let prompts = self.load_top_prompts("upset", "play", u.play.as_ref());
        let detector =
            match UpsetDetector::new(&u.phrases, &u.examples, u.min_similarity, self.embedder) {
                Ok(d) => d,
                Err(e) => {
                    let line = self.map.top_field("upset", "examples");
                    self.errors.push(
                        Diagnostic::new(self.file, format!("upset.examples: cannot embed: {e}"))
                            .at(line),
                    );
                    UpsetDetector::new(&u.phrases, &[], u.min_similarity, None)
                        .expect("words only cannot fail")
                }
            };
        Upset {
            detector: Arc::new(detector),
            after_failures: u.after_failures,
            prompts,
            next,
        }
    }
}
