//! What the caller says: barge-in, a transcript matched against the menu (sure matches
//! route, unsure ones are confirmed, the rest count as failures), escalation phrases, the
//! yes/no of the confirmation turn, and an overloaded recogniser.

use super::{
    AfterPlay, EscalationReason, Failure, FlowOutput, FlowRunner, MenuVisit, SpeechOutcome, State,
    Timer, Wait, SPEECH_RESULT_TIMEOUT, YES_NO_CONFIDENCE,
};
use crate::asr::matcher::{Heard, YES};
use std::time::{Duration, Instant};

impl FlowRunner {
    pub(super) fn on_speech_started(&mut self, now: Instant) {
        let speech_wait = Some(Wait {
            at: now + SPEECH_RESULT_TIMEOUT,
            why: Timer::Speech,
        });
        match self.state.clone() {
            // Speech stops a menu's question like a key does.
            State::Playing {
                after: AfterPlay::Collect(menu),
                bargein: true,
            } if self.menu(menu.node).speech.is_some() && !menu.speech_off => {
                self.outputs.push_back(FlowOutput::StopPlayback);
                self.state = State::Collecting {
                    menu,
                    wait: speech_wait,
                };
            }
            State::Playing {
                after: AfterPlay::Confirm { menu, intent },
                bargein: true,
            } => {
                self.outputs.push_back(FlowOutput::StopPlayback);
                self.state = State::Confirming {
                    menu,
                    intent,
                    wait: speech_wait,
                };
            }
            State::Collecting { menu, .. } => {
                self.state = State::Collecting {
                    menu,
                    wait: speech_wait,
                }
            }
            State::Confirming { menu, intent, .. } => {
                self.state = State::Confirming {
                    menu,
                    intent,
                    wait: speech_wait,
                }
            }
            // The caller is commenting: give the recogniser time to finish.
            State::Commenting { node, score, .. } => {
                self.state = State::Commenting {
                    node,
                    score,
                    until: now + SPEECH_RESULT_TIMEOUT,
                }
            }
            _ => {}
        }
    }

    /// The utterance held no usable speech: nothing was said after all, so the menu (or
    /// the confirmation question) waits for input again and no failure is counted.
    pub(super) fn on_speech_unusable(&mut self, now: Instant) {
        self.outputs
            .push_back(FlowOutput::Speech(SpeechOutcome::NoSpeech));
        match self.state {
            State::Collecting { menu, .. } => self.collect(now, menu),
            State::Confirming { menu, intent, .. } => self.wait_for_answer(now, menu, intent),
            _ => {}
        }
    }

    pub(super) fn on_transcript(&mut self, now: Instant, mut heard: Heard) {
        let said: String = heard
            .text
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        heard.text = said.clone();
        if let State::Commenting { node, score, .. } = self.state {
            let comment = Some(said).filter(|s| !s.trim().is_empty());
            return self.survey_done(now, node, score, comment);
        }
        let Some(listening) = self.listening() else {
            return;
        };
        let result = listening.matcher.score_heard(&heard);
        if result.escalation {
            self.record.transcript = Some(said);
            self.outputs
                .push_back(FlowOutput::Speech(SpeechOutcome::Escalation));
            self.escalate(now, EscalationReason::Phrase);
            return;
        }
        // An upset caller is answered before what they asked for: acknowledged, and
        // offered a person (once a call; only in menus, not while waiting for a person).
        if matches!(
            self.state,
            State::Collecting { .. } | State::Confirming { .. }
        ) {
            let flow = self.flow.clone();
            if let Some(u) = &flow.upset {
                if let Some(cause) = u.detector.check(&heard) {
                    let cause = match cause {
                        crate::asr::upset::UpsetCause::Words => "words",
                        crate::asr::upset::UpsetCause::Meaning(_) => "meaning",
                    };
                    self.record.transcript = Some(said.clone());
                    if self.upset_now(now, cause) {
                        return;
                    }
                }
            }
        }
        if let State::Confirming { menu, intent, .. } = self.state {
            match result.best {
                Some((answer, c)) if answer == YES && c >= YES_NO_CONFIDENCE => {
                    self.confirmed(now, menu, intent)
                }
                _ => self.rejected(now, menu, intent, Some(&heard)),
            }
            return;
        }
        let State::Collecting { menu: visit, .. } = self.state else {
            // Outside a waiting menu only escalation phrases count.
            return;
        };
        let node = visit.node;
        let Some(speech) = self.menu(node).speech.as_ref() else {
            return;
        };
        let min = speech.min_confidence;
        let confirm_min = speech.confirmation.as_ref().map(|c| c.min_confidence);
        self.state = State::Collecting {
            menu: visit,
            wait: None,
        };
        self.record.transcript = Some(said);
        if let Some((_, confidence)) = &result.best {
            self.outputs
                .push_back(FlowOutput::SpeechConfidence(*confidence));
        }
        let position = |intent: &str| {
            self.menu(node)
                .intents
                .iter()
                .position(|x| x.name == intent)
        };
        match result.best {
            Some((intent, confidence)) if confidence >= min => {
                let Some(i) = position(&intent) else {
                    return;
                };
                self.outputs
                    .push_back(FlowOutput::Speech(SpeechOutcome::Match));
                self.digits.clear();
                self.choose(now, node, i);
                // choose() records keys as the last input; this choice was spoken.
                self.record.last_input = None;
            }
            Some((intent, confidence)) if confirm_min.is_some_and(|m| confidence >= m) => {
                let Some(i) = position(&intent) else {
                    return;
                };
                self.outputs
                    .push_back(FlowOutput::Speech(SpeechOutcome::Confirm));
                self.digits.clear();
                let menu = self.menu(node);
                let mut prompts = menu.intents[i].confirm.clone();
                if let Some(c) = menu.speech.as_ref().and_then(|s| s.confirmation.as_ref()) {
                    prompts.extend(c.question.iter().cloned());
                }
                let bargein = self.flow.node(node).bargein;
                self.play(
                    now,
                    prompts,
                    bargein,
                    AfterPlay::Confirm {
                        menu: visit,
                        intent: i,
                    },
                );
            }
            Some(_) => {
                self.outputs
                    .push_back(FlowOutput::Speech(SpeechOutcome::LowConfidence));
                self.failed_input(now, visit, Failure::LowConfidence);
            }
            None => {
                self.outputs
                    .push_back(FlowOutput::Speech(SpeechOutcome::NoMatch));
                self.failed_input(now, visit, Failure::NoMatch);
            }
        }
    }

    /// Waits for the answer to a confirmation question.
    pub(super) fn wait_for_answer(&mut self, now: Instant, menu: MenuVisit, intent: usize) {
        let timeout = self
            .menu(menu.node)
            .speech
            .as_ref()
            .and_then(|s| s.confirmation.as_ref())
            .map_or(Duration::from_secs(5), |c| c.timeout);
        self.state = State::Confirming {
            menu,
            intent,
            wait: Some(Wait {
                at: now + timeout,
                why: Timer::Confirm,
            }),
        };
    }

    /// "Yes": the unsure match was right; route as if it had been sure.
    pub(super) fn confirmed(&mut self, now: Instant, menu: MenuVisit, intent: usize) {
        self.outputs
            .push_back(FlowOutput::Speech(SpeechOutcome::Confirmed));
        self.digits.clear();
        self.choose(now, menu.node, intent);
        self.record.last_input = None;
    }

    /// "No": a caller who says what they want instead ("no, technical support") is
    /// routed there when that is a sure match; otherwise the menu is asked again, as for
    /// a choice that was not understood.
    pub(super) fn rejected(
        &mut self,
        now: Instant,
        menu: MenuVisit,
        intent: usize,
        heard: Option<&Heard>,
    ) {
        self.outputs
            .push_back(FlowOutput::Speech(SpeechOutcome::Rejected));
        self.digits.clear();
        if let (Some(heard), Some(speech)) = (heard, self.menu(menu.node).speech.as_ref()) {
            let instead = speech.matcher.score_heard(heard);
            if let Some((name, _)) = instead.best.filter(|(_, c)| *c >= speech.min_confidence) {
                let other = self
                    .menu(menu.node)
                    .intents
                    .iter()
                    .position(|x| x.name == name);
                if let Some(i) = other.filter(|&i| i != intent) {
                    self.record.transcript = Some(heard.text.clone());
                    self.choose(now, menu.node, i);
                    self.record.last_input = None;
                    return;
                }
            }
        }
        self.failed_input(now, menu, Failure::NoMatch);
    }

    pub(super) fn on_speech_busy(&mut self, now: Instant) {
        self.outputs
            .push_back(FlowOutput::Speech(SpeechOutcome::Overload));
        if let State::Collecting { mut menu, .. } = self.state {
            // Never make a caller wait on an overloaded recogniser: offer the keys.
            menu.speech_off = true;
            let mut prompts = self.flow.speech_busy.clone();
            prompts.extend(self.menu(menu.node).prompts.iter().cloned());
            let bargein = self.flow.node(menu.node).bargein;
            self.play(now, prompts, bargein, AfterPlay::Collect(menu));
        }
    }
}
