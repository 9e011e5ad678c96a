//! What the flow decides without asking the caller (branches on the time, the caller's
//! record, outages, the number dialled and call variables; `set`), texts filled in per
//! call, numbers typed on the keypad (digits nodes), and the upset caller: acknowledged
//! first and offered a person.

use super::{
    AfterPlay, CallerRecord, DigitsVisit, EscalationReason, Failure, FlowOutput, FlowRunner, State,
    Timer, Wait,
};
use crate::flow::cond::{Cond, Facts};
use crate::flow::NodeId;
use crate::media::prompt::Prompt;
use crate::template::Template;
use std::sync::Arc;
use std::time::Instant;

impl FlowRunner {
    /// The wall clock (Unix seconds) at `now`.
    pub(super) fn unix_at(&self, now: Instant) -> i64 {
        let since = self
            .started
            .map(|s| now.saturating_duration_since(s).as_secs() as i64)
            .unwrap_or(0);
        self.facts.unix_at_start + since
    }

    /// A value a text or condition may use (see `compile::logic::CALL_VALUES`).
    pub(super) fn value(&self, name: &str) -> Option<&str> {
        let caller = match &self.caller {
            CallerRecord::Known(c) => Some(c),
            _ => None,
        };
        match name {
            "caller.name" => caller?.name.as_deref(),
            "caller.last_intent" => caller?.last_intent.as_deref(),
            "caller.notes" => caller?.notes.as_deref(),
            "call.caller" => self.facts.caller.as_deref(),
            "call.dialled" => Some(self.facts.dialled.as_str()),
            "intent" => self.record.intent.as_deref(),
            "last_input" => self.record.last_input.as_deref(),
            _ => self.record.vars.get(name).map(String::as_str),
        }
    }

    pub(super) fn branch_target(
        &self,
        now: Instant,
        arms: &[(Cond, NodeId)],
        otherwise: NodeId,
    ) -> NodeId {
        let caller = match &self.caller {
            CallerRecord::Known(c) => Some(c),
            _ => None,
        };
        let facts = Facts {
            unix: self.unix_at(now),
            caller,
            outages: &self.outages,
            dialled: &self.facts.dialled,
            vars: &self.record.vars,
        };
        arms.iter()
            .find(|(c, _)| c.holds(&facts))
            .map(|(_, to)| *to)
            .unwrap_or(otherwise)
    }

    pub(super) fn set_vars(&mut self, vars: &[(String, Template)]) {
        let values: Vec<(String, String)> = vars
            .iter()
            .map(|(name, t)| (name.clone(), t.fill(|n| self.value(n))))
            .collect();
        self.record.vars.extend(values);
    }

    /// Texts spoken per call get their values now; one that comes out empty is left out.
    pub(super) fn fill_texts(&self, prompts: Vec<Arc<Prompt>>) -> Vec<Arc<Prompt>> {
        if prompts.iter().all(|p| p.to_render.is_none()) {
            return prompts;
        }
        prompts
            .into_iter()
            .filter_map(|p| match &p.to_render {
                None => Some(p),
                Some(t) => {
                    let text = t.fill(|n| self.value(n));
                    (!text.is_empty())
                        .then(|| Arc::new(Prompt::to_render(Template::literal(&text))))
                }
            })
            .collect()
    }

    /// A digits node's question has played: keys typed during it count, else wait.
    pub(super) fn type_digits(&mut self, now: Instant, visit: DigitsVisit) {
        if self.digits.is_empty() {
            let timeout = self.digits_node(visit.node).timeout;
            self.state = State::Typing {
                visit,
                wait: Some(Wait {
                    at: now + timeout,
                    why: Timer::NoInput,
                }),
            };
        } else {
            self.state = State::Typing { visit, wait: None };
            self.digit_typed(now, visit);
        }
    }

    /// The keys so far: the end key or the most keys end the entry, else wait for more.
    pub(super) fn digit_typed(&mut self, now: Instant, visit: DigitsVisit) {
        let d = self.digits_node(visit.node);
        let ended = d.end_key.is_some_and(|k| self.digits.contains(k));
        if ended || self.digits.chars().count() >= d.max {
            return self.digits_done(now, visit);
        }
        let at = now + d.inter_digit;
        self.state = State::Typing {
            visit,
            wait: Some(Wait {
                at,
                why: Timer::InterDigit,
            }),
        };
    }

    /// The entry is over: enough keys go into the variable, too few ask again.
    pub(super) fn digits_done(&mut self, now: Instant, visit: DigitsVisit) {
        let all = std::mem::take(&mut self.digits);
        let d = self.digits_node(visit.node);
        let typed: String = all
            .chars()
            .take_while(|c| Some(*c) != d.end_key)
            .take(d.max)
            .collect();
        if typed.is_empty() {
            return self.digits_failed(now, visit, Failure::NoInput);
        }
        if typed.chars().count() < d.min || !typed.chars().all(|c| c.is_ascii_digit()) {
            self.record.last_input = Some(typed);
            return self.digits_failed(now, visit, Failure::NoMatch);
        }
        let (var, next) = (format!("vars.{}", d.into), d.next);
        self.record.failures = 0;
        self.record.last_input = Some(typed.clone());
        self.record.vars.insert(var, typed);
        self.enter(now, next);
    }

    /// Nothing or too little typed: ask again, or go on at `on_failure` once the retries
    /// are used up. Counts toward automatic escalation and the upset handler.
    pub(super) fn digits_failed(&mut self, now: Instant, mut visit: DigitsVisit, kind: Failure) {
        self.digits.clear();
        self.state = State::Typing { visit, wait: None };
        if self.count_failure(now) {
            return;
        }
        let count = match kind {
            Failure::NoInput => &mut visit.no_input,
            _ => &mut visit.no_match,
        };
        *count += 1;
        let count = *count;
        let d = self.digits_node(visit.node);
        let retry = match kind {
            Failure::NoInput => &d.no_input,
            _ => &d.no_match,
        };
        if count > retry.max {
            return self.retries_used_up(now, d.on_failure);
        }
        let mut prompts = retry.prompts.clone();
        prompts.extend(d.prompts.iter().cloned());
        let bargein = self.flow.node(visit.node).bargein;
        self.play(now, prompts, bargein, AfterPlay::TypeDigits(visit));
    }

    /// Counts one failed input; true when that was one too many and the call has moved
    /// on (the upset handler, or escalation after failures in a row).
    pub(super) fn count_failure(&mut self, now: Instant) -> bool {
        self.record.failures += 1;
        self.record.all_failures += 1;
        if let Some(u) = &self.flow.upset {
            if u.after_failures > 0
                && self.record.all_failures >= u.after_failures
                && self.upset_now(now, "failures")
            {
                return true;
            }
        }
        let after_failures = self
            .flow
            .escalation
            .as_ref()
            .map(|e| e.after_failures)
            .unwrap_or(0);
        if after_failures > 0 && self.record.failures >= after_failures {
            self.escalate(now, EscalationReason::Failures);
            return true;
        }
        false
    }

    /// The caller is upset: stop, acknowledge it, then the handler's node (a person
    /// offered at once). Once per call; false when it has run already (or there is none).
    pub(super) fn upset_now(&mut self, now: Instant, cause: &'static str) -> bool {
        let Some(u) = self.flow.upset.as_ref() else {
            return false;
        };
        if self.record.upset || self.record.escalation.is_some() {
            return false;
        }
        self.record.upset = true;
        self.record.failures = 0;
        let (prompts, next) = (u.prompts.clone(), u.next);
        self.outputs.push_back(FlowOutput::Upset(cause));
        if let State::Playing { .. } = self.state {
            self.outputs.push_back(FlowOutput::StopPlayback);
        }
        self.digits.clear();
        self.saved_digits = None;
        // Heard to its end: an apology is not something to skip by accident.
        self.play(now, prompts, false, AfterPlay::Goto(next));
        true
    }
}
