//! Key presses (type-ahead, barge-in, menu choices, the escalation key, yes/no by key) and
//! what a failed menu input leads to.

use super::{
    AfterPlay, EscalationReason, Failure, FlowEnd, FlowOutput, FlowRunner, MenuVisit, State, Timer,
    Wait, MAX_TYPEAHEAD,
};
use crate::flow::NodeId;
use std::time::Instant;

impl FlowRunner {
    pub(super) fn on_key(&mut self, now: Instant, key: char) {
        match self.state {
            State::NotStarted | State::Ended | State::Transferring { .. } => return,
            State::Bridged { .. } => return self.on_talk_key(now, key),
            _ => {}
        }
        let esc_key = self.flow.escalation.as_ref().and_then(|e| e.dtmf);
        // A number being typed may contain the escalation key (0): there it is a digit
        // (escalation phrases still work).
        let typing = matches!(
            self.state,
            State::Typing { .. }
                | State::Playing {
                    after: AfterPlay::TypeDigits(_),
                    ..
                }
        );
        if self.digits.is_empty() && Some(key) == esc_key && !typing {
            self.escalate(now, EscalationReason::Key);
            return;
        }
        if let State::Queued { .. } = self.state {
            // Waiting for an agent: the escalation key, or 1 for a callback offer.
            return self.on_queued_key(key);
        }
        if let State::Surveying { node, .. } = self.state {
            if let Some(score) = super::score_of(key) {
                self.survey_scored(now, node, Some(score));
            }
            return;
        }
        if let State::Commenting { .. } = self.state {
            return;
        }
        if self.digits.len() < MAX_TYPEAHEAD {
            self.digits.push(key);
        }
        match self.state.clone() {
            State::Playing {
                after,
                bargein: true,
            } => {
                self.outputs.push_back(FlowOutput::StopPlayback);
                self.after_play(now, after);
            }
            State::Collecting { menu, .. } => self.match_digits(now, menu),
            State::Typing { visit, .. } => self.digit_typed(now, visit),
            State::Confirming { menu, intent, .. } => {
                let typed = std::mem::take(&mut self.digits);
                if typed.starts_with('1') {
                    self.confirmed(now, menu, intent);
                } else {
                    self.rejected(now, menu, intent, None);
                }
            }
            State::Choosing { choice, .. } => {
                let typed = std::mem::take(&mut self.digits);
                if typed.starts_with('1') {
                    self.accept(now, choice);
                } else {
                    self.decline(now, choice);
                }
            }
            _ => {}
        }
    }

    /// The keys typed so far against the menu's choices: an exact, unambiguous one is
    /// taken, a prefix of a longer one waits for the next key, anything else is no match.
    pub(super) fn match_digits(&mut self, now: Instant, menu: MenuVisit) {
        let choices = self.menu(menu.node);
        let typed = self.digits.as_str();
        let mut exact = None;
        let mut longer = false;
        for (i, intent) in choices.intents.iter().enumerate() {
            let Some(k) = intent.dtmf.as_deref() else {
                continue;
            };
            if k == typed {
                exact = Some(i);
            } else if k.starts_with(typed) {
                longer = true;
            }
        }
        let inter_digit = choices.inter_digit;
        match (exact, longer) {
            (Some(i), false) => self.choose(now, menu.node, i),
            // "4" could still become "42": wait a little for the next key.
            (_, true) => {
                self.state = State::Collecting {
                    menu,
                    wait: Some(Wait {
                        at: now + inter_digit,
                        why: Timer::InterDigit,
                    }),
                }
            }
            (None, false) => self.failed_input(now, menu, Failure::NoMatch),
        }
    }

    pub(super) fn choose(&mut self, now: Instant, node: NodeId, intent: usize) {
        let menu = self.menu(node);
        let chosen = &menu.intents[intent];
        let (name, goto) = (chosen.name.clone(), chosen.goto);
        let record = &mut self.record;
        record.failures = 0;
        record.last_input = Some(std::mem::take(&mut self.digits));
        record.intent = Some(name.clone());
        record.scope_hint = Some(name.clone());
        self.outputs.push_back(FlowOutput::Intent {
            node: self.flow.node(node).name.clone(),
            intent: name,
        });
        self.enter(now, goto);
    }

    /// A failed input in a menu: escalate once `after_failures` in a row have failed, go
    /// to `on_failure` once this kind's retries are used up, else ask again.
    pub(super) fn failed_input(&mut self, now: Instant, mut visit: MenuVisit, kind: Failure) {
        let count = match kind {
            Failure::NoInput => &mut visit.no_input,
            Failure::NoMatch => {
                self.record.last_input = Some(std::mem::take(&mut self.digits));
                &mut visit.no_match
            }
            Failure::LowConfidence => &mut visit.low_confidence,
        };
        *count += 1;
        let count = *count;
        // No deadline any more; the steps below move on from here.
        self.state = State::Collecting {
            menu: visit,
            wait: None,
        };
        if self.count_failure(now) {
            return;
        }
        let menu = self.menu(visit.node);
        let retry = match kind {
            Failure::NoInput => &menu.no_input,
            Failure::NoMatch => &menu.no_match,
            Failure::LowConfidence => match menu.speech.as_ref() {
                Some(speech) => &speech.low_confidence,
                None => &menu.no_match,
            },
        };
        if count > retry.max {
            return self.retries_used_up(now, menu.on_failure);
        }
        let mut prompts = retry.prompts.clone();
        prompts.extend(menu.prompts.iter().cloned());
        let bargein = self.flow.node(visit.node).bargein;
        self.play(now, prompts, bargein, AfterPlay::Collect(visit));
    }

    /// A node's retries are used up: its `on_failure` node, else a person, else goodbye.
    pub(super) fn retries_used_up(&mut self, now: Instant, on_failure: Option<NodeId>) {
        match on_failure {
            Some(n) => self.enter(now, n),
            None if self.flow.escalation.is_some() => {
                self.escalate(now, EscalationReason::Failures)
            }
            None => self.end(FlowEnd::Hangup),
        }
    }
}
