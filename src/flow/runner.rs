//! The flow interpreter for one call. Pure: events and the current time go in, actions
//! come out of [`FlowRunner::poll_output`]; its one timer is exposed through
//! [`FlowRunner::poll_timeout`] and fired with [`FlowRunner::handle_timeout`].
//!
//! Customer-service rules it encodes: known outages are announced right after the greeting
//! (and scoped ones as soon as the caller's choice concerns them), before any menu or
//! transfer, once per call; a key press stops a prompt and is kept for the next menu
//! (callers who know the menu never wait); the escalation key reaches a person from any
//! node; repeated failed inputs escalate on their own; every transfer carries what the
//! caller already did and heard, so nobody has to ask again.

use super::{Flow, Menu, NodeId, NodeKind};
use crate::asr::matcher::{Heard, Matcher, YES};
use crate::asr::vad::EndpointConfig;
use crate::media::prompt::Prompt;
use crate::outage::{Announcement, OutageSet};
pub use crate::sip::context::{EscalationReason, TransferContext};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Node visits kept for the transfer context (oldest dropped first).
const MAX_PATH: usize = 32;

/// Node changes allowed in one step without waiting for the caller; more means a loop
/// the compiler could not see, and the call is ended rather than spinning.
const MAX_HOPS_PER_STEP: usize = 64;

/// Keys kept while prompts play (type-ahead).
const MAX_TYPEAHEAD: usize = 16;

/// How long a caller has to press 1 after an outage's callback offer.
pub const OUTAGE_CHOICE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum FlowInput {
    /// The prompts of the last `Play` have all been played.
    PlaybackDone,
    Dtmf(char),
    /// The transfer was accepted and completed (final NOTIFY 2xx).
    TransferSucceeded,
    /// The transfer was refused or failed (REFER rejected, NOTIFY >= 300, timeout).
    TransferFailed,
    /// The caller started speaking (long enough to count): barge-in for menu prompts.
    SpeechStarted,
    /// What the caller said: the transcript, with the decoder's scores of the listening
    /// matcher's closed set and the transcript's embedding when they were computed.
    Transcript(Heard),
    /// The utterance held no usable speech (noise, a cough, a known hallucination).
    SpeechUnusable,
    /// Speech recognition is overloaded: the caller is asked to use keys.
    SpeechBusy,
}

/// What the flow listens for now, for the call's endpointer and the recogniser.
#[derive(Clone)]
pub struct Listening {
    pub matcher: Arc<Matcher>,
    pub endpoint: EndpointConfig,
}

/// How a transcript was used, the `result` label of `ivrd_asr_results_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechOutcome {
    Match,
    NoMatch,
    LowConfidence,
    NoSpeech,
    Overload,
    Escalation,
    /// An unsure match: the caller is asked "Did you mean ...?".
    Confirm,
    /// The caller said yes (or pressed 1) to the confirmation question.
    Confirmed,
    /// The caller said no (or pressed another key).
    Rejected,
}

impl SpeechOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SpeechOutcome::Match => "match",
            SpeechOutcome::NoMatch => "no_match",
            SpeechOutcome::LowConfidence => "low_confidence",
            SpeechOutcome::NoSpeech => "no_speech",
            SpeechOutcome::Overload => "overload",
            SpeechOutcome::Escalation => "escalation",
            SpeechOutcome::Confirm => "confirm",
            SpeechOutcome::Confirmed => "confirmed",
            SpeechOutcome::Rejected => "rejected",
        }
    }
}

/// Why the flow ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    /// A hangup node was reached (or a callback was taken).
    Hangup,
    /// The caller was transferred.
    Transferred,
    /// The flow could not go on (runaway loop, escalation failed with nowhere to go).
    Error,
}

#[derive(Debug, Clone)]
pub enum FlowOutput {
    /// Play these prompts in order, after anything already queued has been stopped.
    Play {
        prompts: Vec<Arc<Prompt>>,
        bargein: bool,
    },
    /// Stop what is playing now (barge-in); no `PlaybackDone` follows for it.
    StopPlayback,
    /// Transfer the caller (REFER); answer with `TransferSucceeded` or `TransferFailed`.
    Transfer {
        target: String,
        context: TransferContext,
    },
    /// A menu choice was made.
    Intent { node: String, intent: String },
    /// The call is being escalated to a person.
    Escalated(EscalationReason),
    /// The escalation transfer failed (target unreachable or refusing).
    EscalationFailed,
    /// An outage announcement starts now.
    OutageAnnounced(String),
    /// A transcript was used this way.
    Speech(SpeechOutcome),
    /// The confidence of the best intent for a transcript heard in a menu.
    SpeechConfidence(f32),
    /// The caller asked to be called back; `reason` is `outage:ID` or the callback node.
    CallbackRequested { reason: String },
    /// The node the flow is now in (for logs and live views).
    Entered(String),
    /// End the call.
    End(FlowEnd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    NoInput,
    InterDigit,
    Choice,
    /// The caller is speaking or being transcribed; if no result comes, treat as no input.
    Speech,
    /// No answer to a confirmation question.
    Confirm,
}

/// Confidence a "yes" needs to count as one; anything else is a no.
pub const YES_NO_CONFIDENCE: f32 = 0.6;

/// Longest wait for a transcript after speech started (endpointing plus recognition).
const SPEECH_RESULT_TIMEOUT: Duration = Duration::from_secs(25);

/// Ways a menu input can fail; each has its own retry count and reprompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    NoInput,
    NoMatch,
    LowConfidence,
}

/// What happens when the current prompts finish.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterPlay {
    Goto(NodeId),
    Collect(NodeId),
    Transfer {
        node: NodeId,
    },
    Escalate,
    Hangup,
    /// Outage messages played; `callback` names the outage whose callback was offered.
    Announced {
        resume: NodeId,
        callback: Option<String>,
    },
    /// A callback node's offer played.
    CallbackOffered(NodeId),
    /// A confirmation question ("Did you mean billing?") played.
    Confirm {
        node: NodeId,
        intent: usize,
    },
}

/// A yes/no question waiting for key 1.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    OutageCallback { resume: NodeId, outage: String },
    CallbackNode(NodeId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NotStarted,
    Playing {
        after: AfterPlay,
        bargein: bool,
    },
    Collecting(NodeId),
    /// Waiting for yes/no to "Did you mean <intent>?" in a menu.
    Confirming {
        node: NodeId,
        intent: usize,
    },
    Choosing(Choice),
    /// Waiting for a transfer's outcome; `None` node means the escalation target.
    Transferring {
        node: Option<NodeId>,
    },
    Ended,
}

pub struct FlowRunner {
    flow: Arc<Flow>,
    state: State,
    path: Vec<NodeId>,
    /// Keys pressed and not yet consumed by a menu.
    digits: String,
    /// Type-ahead put aside while an outage is announced (keys then answer the announcement).
    saved_digits: Option<String>,
    /// Consecutive failed inputs, across menus (for automatic escalation).
    failures: u32,
    no_input_count: u32,
    no_match_count: u32,
    intent: Option<String>,
    /// Intent just chosen: outages scoped to it are announced before its node.
    scope_hint: Option<String>,
    last_input: Option<String>,
    transcript: Option<String>,
    low_confidence_count: u32,
    /// Speech recognition said it is overloaded in this menu: keys only until the next node.
    speech_off: bool,
    escalation: Option<EscalationReason>,
    outages: Arc<OutageSet>,
    heard: Vec<String>,
    /// Whether any node has been entered yet (the first one is the greeting).
    entered_any: bool,
    timer: Option<(Instant, Timer)>,
    outputs: VecDeque<FlowOutput>,
    hops: usize,
}

impl fmt::Debug for FlowRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowRunner")
            .field("flow", &self.flow.name)
            .field("state", &self.state)
            .field("digits", &self.digits)
            .finish()
    }
}

impl FlowRunner {
    pub fn new(flow: Arc<Flow>) -> Self {
        FlowRunner {
            flow,
            state: State::NotStarted,
            path: Vec::new(),
            digits: String::new(),
            saved_digits: None,
            failures: 0,
            no_input_count: 0,
            no_match_count: 0,
            intent: None,
            scope_hint: None,
            last_input: None,
            transcript: None,
            low_confidence_count: 0,
            speech_off: false,
            escalation: None,
            outages: Arc::new(OutageSet::default()),
            heard: Vec::new(),
            entered_any: false,
            timer: None,
            outputs: VecDeque::new(),
            hops: 0,
        }
    }

    pub fn flow(&self) -> &Arc<Flow> {
        &self.flow
    }

    /// The outages in force now; the caller hears those that concern them, once each.
    pub fn set_outages(&mut self, outages: Arc<OutageSet>) {
        self.outages = outages;
    }

    /// Outage ids this caller has heard.
    pub fn heard(&self) -> &[String] {
        &self.heard
    }

    /// Starts at the flow's start node, or its overflow node for calls beyond capacity.
    pub fn start(&mut self, now: Instant, overflow: bool) {
        if self.state != State::NotStarted {
            return;
        }
        let node = match (overflow, self.flow.overflow) {
            (true, Some(n)) => n,
            _ => self.flow.start,
        };
        self.hops = 0;
        self.enter(now, node);
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Node names visited so far.
    pub fn path(&self) -> Vec<String> {
        self.path
            .iter()
            .map(|&id| self.flow.node(id).name.clone())
            .collect()
    }

    pub fn poll_output(&mut self) -> Option<FlowOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer.map(|(t, _)| t)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((at, kind)) = self.timer else { return };
        if now < at {
            return;
        }
        self.timer = None;
        self.hops = 0;
        match (kind, self.state.clone()) {
            (Timer::NoInput, State::Collecting(node)) => {
                self.failed_input(now, node, Failure::NoInput)
            }
            (Timer::InterDigit, State::Collecting(node)) => {
                // The caller stopped typing: an exact choice wins, anything else is no match.
                let menu = self.menu(node);
                let exact = menu
                    .intents
                    .iter()
                    .position(|i| i.dtmf.as_deref() == Some(self.digits.as_str()));
                match exact {
                    Some(i) => self.choose(now, node, i),
                    None => self.failed_input(now, node, Failure::NoMatch),
                }
            }
            (Timer::Choice, State::Choosing(choice)) => self.decline(now, choice),
            (Timer::Speech, State::Collecting(node))
            | (Timer::Speech | Timer::Confirm, State::Confirming { node, .. }) => {
                self.failed_input(now, node, Failure::NoInput)
            }
            _ => {}
        }
    }

    pub fn handle(&mut self, now: Instant, input: FlowInput) {
        self.hops = 0;
        match input {
            FlowInput::PlaybackDone => {
                if let State::Playing { after, .. } = self.state.clone() {
                    self.after_play(now, after);
                }
            }
            FlowInput::Dtmf(key) => self.on_key(now, key),
            FlowInput::SpeechStarted => self.on_speech_started(now),
            FlowInput::Transcript(heard) => self.on_transcript(now, heard),
            FlowInput::SpeechUnusable => {
                self.outputs
                    .push_back(FlowOutput::Speech(SpeechOutcome::NoSpeech));
                // Nothing was said after all: wait for input again, no failure counted.
                match self.state {
                    State::Collecting(node) => {
                        let timeout = self.menu(node).timeout;
                        self.timer = Some((now + timeout, Timer::NoInput));
                    }
                    State::Confirming { node, .. } => self.wait_for_answer(now, node),
                    _ => {}
                }
            }
            FlowInput::SpeechBusy => self.on_speech_busy(now),
            FlowInput::TransferSucceeded => {
                if let State::Transferring { .. } = self.state {
                    self.end(FlowEnd::Transferred);
                }
            }
            FlowInput::TransferFailed => {
                if let State::Transferring { node } = self.state {
                    let next = match node {
                        Some(n) => match &self.flow.node(n).kind {
                            NodeKind::Transfer { on_fail, .. } => Some(*on_fail),
                            _ => None,
                        },
                        None => {
                            self.outputs.push_back(FlowOutput::EscalationFailed);
                            self.flow.escalation.as_ref().and_then(|e| e.on_fail)
                        }
                    };
                    self.escalation = None;
                    match next {
                        Some(n) => self.enter(now, n),
                        None => self.end(FlowEnd::Error),
                    }
                }
            }
        }
    }

    /// What to listen for now: the menu's intents (while its prompt plays or it waits for
    /// input) or just the escalation phrases; None when nothing can be said.
    pub fn listening(&self) -> Option<Listening> {
        if let State::Confirming { node, .. }
        | State::Playing {
            after: AfterPlay::Confirm { node, .. },
            ..
        } = self.state
        {
            let speech = self.menu(node).speech.as_ref()?;
            let confirmation = speech.confirmation.as_ref()?;
            return Some(Listening {
                matcher: confirmation.matcher.clone(),
                endpoint: speech.endpoint,
            });
        }
        let node = match &self.state {
            State::Collecting(node) => Some(*node),
            State::Playing {
                after: AfterPlay::Collect(node),
                ..
            } => Some(*node),
            State::NotStarted | State::Ended | State::Transferring { .. } => return None,
            _ => None,
        };
        if let Some(speech) = node
            .filter(|_| !self.speech_off)
            .and_then(|n| self.menu(n).speech.as_ref())
        {
            return Some(Listening {
                matcher: speech.matcher.clone(),
                endpoint: speech.endpoint,
            });
        }
        let esc = self.flow.escalation.as_ref()?;
        esc.matcher.as_ref().map(|m| Listening {
            matcher: m.clone(),
            endpoint: self.flow.endpoint,
        })
    }

    fn on_speech_started(&mut self, now: Instant) {
        match self.state.clone() {
            // Speech stops a menu's question like a key does.
            State::Playing {
                after: AfterPlay::Collect(node),
                bargein: true,
            } if self.menu(node).speech.is_some() && !self.speech_off => {
                self.outputs.push_back(FlowOutput::StopPlayback);
                self.state = State::Collecting(node);
            }
            State::Playing {
                after: AfterPlay::Confirm { node, intent },
                bargein: true,
            } => {
                self.outputs.push_back(FlowOutput::StopPlayback);
                self.state = State::Confirming { node, intent };
            }
            State::Collecting(_) | State::Confirming { .. } => {}
            _ => return,
        }
        self.timer = Some((now + SPEECH_RESULT_TIMEOUT, Timer::Speech));
    }

    fn on_transcript(&mut self, now: Instant, mut heard: Heard) {
        let said: String = heard
            .text
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        heard.text = said.clone();
        let Some(listening) = self.listening() else {
            return;
        };
        let result = listening.matcher.score_heard(&heard);
        if result.escalation {
            self.transcript = Some(said);
            self.outputs
                .push_back(FlowOutput::Speech(SpeechOutcome::Escalation));
            self.escalate(now, EscalationReason::Phrase);
            return;
        }
        if let State::Confirming { node, intent } = self.state {
            self.timer = None;
            match result.best {
                Some((answer, c)) if answer == YES && c >= YES_NO_CONFIDENCE => {
                    self.confirmed(now, node, intent)
                }
                _ => self.rejected(now, node, intent, Some(&heard)),
            }
            return;
        }
        let State::Collecting(node) = self.state else {
            // Outside a waiting menu only escalation phrases count.
            return;
        };
        let Some(speech) = self.menu(node).speech.as_ref() else {
            return;
        };
        let min = speech.min_confidence;
        let confirm_min = speech.confirmation.as_ref().map(|c| c.min_confidence);
        self.timer = None;
        self.transcript = Some(said);
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
                self.last_input = None;
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
                    AfterPlay::Confirm { node, intent: i },
                );
            }
            Some(_) => {
                self.outputs
                    .push_back(FlowOutput::Speech(SpeechOutcome::LowConfidence));
                self.failed_input(now, node, Failure::LowConfidence);
            }
            None => {
                self.outputs
                    .push_back(FlowOutput::Speech(SpeechOutcome::NoMatch));
                self.failed_input(now, node, Failure::NoMatch);
            }
        }
    }

    /// Waits for the answer to a confirmation question.
    fn wait_for_answer(&mut self, now: Instant, node: NodeId) {
        let timeout = self
            .menu(node)
            .speech
            .as_ref()
            .and_then(|s| s.confirmation.as_ref())
            .map_or(Duration::from_secs(5), |c| c.timeout);
        self.timer = Some((now + timeout, Timer::Confirm));
    }

    /// "Yes": the unsure match was right; route as if it had been sure.
    fn confirmed(&mut self, now: Instant, node: NodeId, intent: usize) {
        self.outputs
            .push_back(FlowOutput::Speech(SpeechOutcome::Confirmed));
        self.digits.clear();
        self.choose(now, node, intent);
        self.last_input = None;
    }

    /// "No": a caller who says what they want instead ("no, technical support") is
    /// routed there when that is a sure match; otherwise the menu is asked again, as for
    /// a choice that was not understood.
    fn rejected(&mut self, now: Instant, node: NodeId, intent: usize, heard: Option<&Heard>) {
        self.outputs
            .push_back(FlowOutput::Speech(SpeechOutcome::Rejected));
        self.digits.clear();
        if let (Some(heard), Some(speech)) = (heard, self.menu(node).speech.as_ref()) {
            let instead = speech.matcher.score_heard(heard);
            if let Some((name, _)) = instead.best.filter(|(_, c)| *c >= speech.min_confidence) {
                let other = self.menu(node).intents.iter().position(|x| x.name == name);
                if let Some(i) = other.filter(|&i| i != intent) {
                    self.transcript = Some(heard.text.clone());
                    self.choose(now, node, i);
                    self.last_input = None;
                    return;
                }
            }
        }
        self.failed_input(now, node, Failure::NoMatch);
    }

    fn on_speech_busy(&mut self, now: Instant) {
        self.outputs
            .push_back(FlowOutput::Speech(SpeechOutcome::Overload));
        if let State::Collecting(node) = self.state {
            // Never make a caller wait on an overloaded recogniser: offer the keys.
            self.speech_off = true;
            let mut prompts = self.flow.speech_busy.clone();
            prompts.extend(self.menu(node).prompts.iter().cloned());
            let bargein = self.flow.node(node).bargein;
            self.play(now, prompts, bargein, AfterPlay::Collect(node));
        }
    }

    fn on_key(&mut self, now: Instant, key: char) {
        match self.state {
            State::NotStarted | State::Ended | State::Transferring { .. } => return,
            _ => {}
        }
        let esc_key = self.flow.escalation.as_ref().and_then(|e| e.dtmf);
        if self.digits.is_empty() && Some(key) == esc_key {
            self.escalate(now, EscalationReason::Key);
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
            State::Collecting(node) => self.match_digits(now, node),
            State::Confirming { node, intent } => {
                self.timer = None;
                let typed = std::mem::take(&mut self.digits);
                if typed.starts_with('1') {
                    self.confirmed(now, node, intent);
                } else {
                    self.rejected(now, node, intent, None);
                }
            }
            State::Choosing(choice) => {
                self.timer = None;
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

    fn menu(&self, node: NodeId) -> &Menu {
        match &self.flow.node(node).kind {
            NodeKind::Menu(m) => m,
            _ => unreachable!("collecting only happens in menu nodes"),
        }
    }

    fn match_digits(&mut self, now: Instant, node: NodeId) {
        let menu = self.menu(node);
        let typed = self.digits.as_str();
        let mut exact = None;
        let mut longer = false;
        for (i, intent) in menu.intents.iter().enumerate() {
            let Some(k) = intent.dtmf.as_deref() else {
                continue;
            };
            if k == typed {
                exact = Some(i);
            } else if k.starts_with(typed) {
                longer = true;
            }
        }
        let inter_digit = menu.inter_digit;
        match (exact, longer) {
            (Some(i), false) => self.choose(now, node, i),
            // "4" could still become "42": wait a little for the next key.
            (_, true) => self.timer = Some((now + inter_digit, Timer::InterDigit)),
            (None, false) => self.failed_input(now, node, Failure::NoMatch),
        }
    }

    fn choose(&mut self, now: Instant, node: NodeId, intent: usize) {
        let menu = self.menu(node);
        let chosen = &menu.intents[intent];
        let (name, goto) = (chosen.name.clone(), chosen.goto);
        self.timer = None;
        self.failures = 0;
        self.last_input = Some(std::mem::take(&mut self.digits));
        self.intent = Some(name.clone());
        self.scope_hint = Some(name.clone());
        self.outputs.push_back(FlowOutput::Intent {
            node: self.flow.node(node).name.clone(),
            intent: name,
        });
        self.enter(now, goto);
    }

    /// A failed input in a menu: escalate once `after_failures` in a row have failed, go
    /// to `on_failure` once this kind's retries are used up, else ask again.
    fn failed_input(&mut self, now: Instant, node: NodeId, kind: Failure) {
        self.timer = None;
        let count = match kind {
            Failure::NoInput => &mut self.no_input_count,
            Failure::NoMatch => {
                self.last_input = Some(std::mem::take(&mut self.digits));
                &mut self.no_match_count
            }
            Failure::LowConfidence => &mut self.low_confidence_count,
        };
        *count += 1;
        let count = *count;
        self.failures += 1;
        let after_failures = self
            .flow
            .escalation
            .as_ref()
            .map(|e| e.after_failures)
            .unwrap_or(0);
        if after_failures > 0 && self.failures >= after_failures {
            self.escalate(now, EscalationReason::Failures);
            return;
        }
        let menu = self.menu(node);
        let retry = match kind {
            Failure::NoInput => &menu.no_input,
            Failure::NoMatch => &menu.no_match,
            Failure::LowConfidence => match menu.speech.as_ref() {
                Some(speech) => &speech.low_confidence,
                None => &menu.no_match,
            },
        };
        if count > retry.max {
            match menu.on_failure {
                Some(n) => self.enter(now, n),
                None if self.flow.escalation.is_some() => {
                    self.escalate(now, EscalationReason::Failures)
                }
                None => self.end(FlowEnd::Hangup),
            }
            return;
        }
        let mut prompts = retry.prompts.clone();
        prompts.extend(menu.prompts.iter().cloned());
        let bargein = self.flow.node(node).bargein;
        self.play(now, prompts, bargein, AfterPlay::Collect(node));
    }

    fn escalate(&mut self, now: Instant, reason: EscalationReason) {
        let Some(esc) = self.flow.escalation.as_ref() else {
            return;
        };
        // Already escalating (its lead-in is playing): the same request again, not a new one.
        if self.escalation.is_some()
            || matches!(self.state, State::Transferring { .. } | State::Ended)
        {
            return;
        }
        if let State::Playing { .. } = self.state {
            self.outputs.push_back(FlowOutput::StopPlayback);
        }
        self.timer = None;
        self.digits.clear();
        self.saved_digits = None;
        self.escalation = Some(reason);
        self.outputs.push_back(FlowOutput::Escalated(reason));
        let prompts = esc.prompts.clone();
        // The caller asked for a person: the lead-in is not interruptible by keys.
        self.play(now, prompts, false, AfterPlay::Escalate);
    }

    /// Outages the caller must hear before entering `node`: those for everyone once the
    /// greeting is over (or before a first menu/transfer), and those scoped to the node or
    /// to the intent that led here.
    fn due_announcements(&mut self, node: NodeId) -> Vec<Arc<Announcement>> {
        let n = self.flow.node(node);
        if matches!(n.kind, NodeKind::Goto(_)) || self.outages.is_empty() {
            return Vec::new();
        }
        let gate = self.entered_any
            || matches!(
                n.kind,
                NodeKind::Menu(_) | NodeKind::Transfer { .. } | NodeKind::Callback { .. }
            );
        let mut due = Vec::new();
        if gate {
            due.extend(self.outages.for_everyone(&self.heard));
        }
        let mut scopes = vec![n.name.clone()];
        scopes.extend(self.scope_hint.take());
        for scope in scopes {
            for a in self.outages.for_scope(&scope, &self.heard) {
                if !due
                    .iter()
                    .any(|d: &Arc<Announcement>| d.outage.spec.id == a.outage.spec.id)
                {
                    due.push(a);
                }
            }
        }
        due
    }

    fn announce(&mut self, due: Vec<Arc<Announcement>>, resume: NodeId) {
        // Type-ahead is kept for the menu after the announcement; keys pressed during it
        // answer the announcement (skip it, or 1 for a callback).
        if self.saved_digits.is_none() {
            self.saved_digits = Some(std::mem::take(&mut self.digits));
        }
        let prompts_for = &self.flow.outage_prompts;
        let callback = if prompts_for.callback_offer.is_empty() {
            None
        } else {
            due.iter()
                .find(|a| a.outage.spec.callback)
                .map(|a| a.outage.spec.id.clone())
        };
        let mut prompts: Vec<Arc<Prompt>> = Vec::new();
        for a in &due {
            self.heard.push(a.outage.spec.id.clone());
            self.outputs
                .push_back(FlowOutput::OutageAnnounced(a.outage.spec.id.clone()));
            prompts.push(a.prompt.clone());
        }
        prompts.extend(
            if callback.is_some() {
                &prompts_for.callback_offer
            } else {
                &prompts_for.options
            }
            .iter()
            .cloned(),
        );
        self.state = State::Playing {
            after: AfterPlay::Announced { resume, callback },
            bargein: true,
        };
        self.outputs.push_back(FlowOutput::Play {
            prompts,
            bargein: true,
        });
    }

    fn enter(&mut self, now: Instant, node: NodeId) {
        self.hops += 1;
        if self.hops > MAX_HOPS_PER_STEP {
            self.end(FlowEnd::Error);
            return;
        }
        self.timer = None;
        let due = self.due_announcements(node);
        if !due.is_empty() {
            self.announce(due, node);
            return;
        }
        self.entered_any = true;
        if self.path.len() == MAX_PATH {
            self.path.remove(0);
        }
        self.path.push(node);
        let n = self.flow.node(node);
        self.outputs.push_back(FlowOutput::Entered(n.name.clone()));
        let bargein = n.bargein;
        match &n.kind {
            NodeKind::Play { prompts, next } => {
                let (prompts, next) = (prompts.clone(), *next);
                self.play(now, prompts, bargein, AfterPlay::Goto(next));
            }
            NodeKind::Menu(m) => {
                self.no_input_count = 0;
                self.no_match_count = 0;
                self.low_confidence_count = 0;
                self.speech_off = false;
                let prompts = m.prompts.clone();
                self.play(now, prompts, bargein, AfterPlay::Collect(node));
            }
            NodeKind::Transfer { prompts, .. } => {
                let prompts = prompts.clone();
                self.play(now, prompts, bargein, AfterPlay::Transfer { node });
            }
            NodeKind::Goto(t) => {
                let t = *t;
                self.enter(now, t);
            }
            NodeKind::Hangup { prompts } => {
                let prompts = prompts.clone();
                self.play(now, prompts, false, AfterPlay::Hangup);
            }
            NodeKind::Callback { offer, .. } => {
                let offer = offer.clone();
                self.play(now, offer, bargein, AfterPlay::CallbackOffered(node));
            }
        }
    }

    fn play(&mut self, now: Instant, prompts: Vec<Arc<Prompt>>, bargein: bool, after: AfterPlay) {
        self.state = State::Playing {
            after: after.clone(),
            bargein,
        };
        // Keys typed ahead skip prompts that can be interrupted.
        if prompts.is_empty() || (bargein && !self.digits.is_empty()) {
            self.after_play(now, after);
            return;
        }
        self.outputs
            .push_back(FlowOutput::Play { prompts, bargein });
    }

    fn after_play(&mut self, now: Instant, after: AfterPlay) {
        match after {
            AfterPlay::Goto(n) => self.enter(now, n),
            AfterPlay::Collect(node) => {
                self.state = State::Collecting(node);
                if self.digits.is_empty() {
                    let timeout = self.menu(node).timeout;
                    self.timer = Some((now + timeout, Timer::NoInput));
                } else {
                    self.match_digits(now, node);
                }
            }
            AfterPlay::Transfer { node } => {
                let NodeKind::Transfer { target, .. } = &self.flow.node(node).kind else {
                    unreachable!("transfer state only for transfer nodes")
                };
                let target = target.clone();
                self.transfer(target, Some(node));
            }
            AfterPlay::Escalate => {
                let target = self
                    .flow
                    .escalation
                    .as_ref()
                    .map(|e| e.target.clone())
                    .unwrap_or_default();
                self.transfer(target, None);
            }
            AfterPlay::Hangup => self.end(FlowEnd::Hangup),
            AfterPlay::Announced { resume, callback } => {
                let typed = std::mem::take(&mut self.digits);
                match callback {
                    Some(outage) => {
                        let choice = Choice::OutageCallback { resume, outage };
                        if typed.starts_with('1') {
                            self.accept(now, choice);
                        } else if !typed.is_empty() {
                            self.decline(now, choice);
                        } else {
                            self.state = State::Choosing(choice);
                            self.timer = Some((now + OUTAGE_CHOICE_TIMEOUT, Timer::Choice));
                        }
                    }
                    None => self.resume(now, resume),
                }
            }
            AfterPlay::Confirm { node, intent } => {
                self.state = State::Confirming { node, intent };
                let typed = std::mem::take(&mut self.digits);
                if typed.starts_with('1') {
                    self.confirmed(now, node, intent);
                } else if !typed.is_empty() {
                    self.rejected(now, node, intent, None);
                } else {
                    self.wait_for_answer(now, node);
                }
            }
            AfterPlay::CallbackOffered(node) => {
                let typed = std::mem::take(&mut self.digits);
                let choice = Choice::CallbackNode(node);
                if typed.starts_with('1') {
                    self.accept(now, choice);
                } else if !typed.is_empty() {
                    self.decline(now, choice);
                } else {
                    let NodeKind::Callback { timeout, .. } = self.flow.node(node).kind else {
                        unreachable!("callback offers only come from callback nodes")
                    };
                    self.state = State::Choosing(choice);
                    self.timer = Some((now + timeout, Timer::Choice));
                }
            }
        }
    }

    /// Continues after an outage announcement, giving back the keys typed before it.
    fn resume(&mut self, now: Instant, node: NodeId) {
        self.digits = self.saved_digits.take().unwrap_or_default();
        self.enter(now, node);
    }

    fn accept(&mut self, now: Instant, choice: Choice) {
        match choice {
            Choice::OutageCallback { outage, .. } => {
                self.saved_digits = None;
                self.outputs.push_back(FlowOutput::CallbackRequested {
                    reason: format!("outage:{outage}"),
                });
                let confirm = self.flow.outage_prompts.callback_confirmed.clone();
                self.play(now, confirm, false, AfterPlay::Hangup);
            }
            Choice::CallbackNode(node) => {
                let NodeKind::Callback { confirm, next, .. } = &self.flow.node(node).kind else {
                    unreachable!("callback choices only come from callback nodes")
                };
                let (confirm, next) = (confirm.clone(), *next);
                self.outputs.push_back(FlowOutput::CallbackRequested {
                    reason: self.flow.node(node).name.clone(),
                });
                self.play(now, confirm, false, AfterPlay::Goto(next));
            }
        }
    }

    fn decline(&mut self, now: Instant, choice: Choice) {
        match choice {
            Choice::OutageCallback { resume, .. } => self.resume(now, resume),
            Choice::CallbackNode(node) => {
                let NodeKind::Callback { next, .. } = self.flow.node(node).kind else {
                    unreachable!("callback choices only come from callback nodes")
                };
                self.enter(now, next);
            }
        }
    }

    fn transfer(&mut self, target: String, node: Option<NodeId>) {
        self.digits.clear();
        self.state = State::Transferring { node };
        let context = TransferContext {
            flow: self.flow.name.clone(),
            path: self.path(),
            intent: self.intent.clone(),
            reason: self.escalation,
            last_input: self.last_input.clone(),
            transcript: self.transcript.clone(),
            outages: self.heard.clone(),
        };
        self.outputs
            .push_back(FlowOutput::Transfer { target, context });
    }

    fn end(&mut self, how: FlowEnd) {
        self.timer = None;
        self.state = State::Ended;
        self.outputs.push_back(FlowOutput::End(how));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::compile::tests::good_flow;
    use std::time::Duration;

    struct Harness {
        r: FlowRunner,
        now: Instant,
    }

    /// A compact log of outputs: "play:greeting", "stop", "transfer:sip:..", "intent:billing", "end:Hangup".
    fn describe(o: &FlowOutput) -> Option<String> {
        Some(match o {
            FlowOutput::Play { prompts, .. } => format!(
                "play:{}",
                prompts
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            ),
            FlowOutput::StopPlayback => "stop".into(),
            FlowOutput::Transfer { target, .. } => format!("transfer:{target}"),
            FlowOutput::Intent { intent, .. } => format!("intent:{intent}"),
            FlowOutput::Escalated(r) => format!("escalated:{}", r.as_str()),
            FlowOutput::Entered(_) => return None,
            FlowOutput::End(e) => format!("end:{e:?}"),
            FlowOutput::EscalationFailed => "escalation_failed".into(),
            FlowOutput::OutageAnnounced(id) => format!("outage:{id}"),
            FlowOutput::CallbackRequested { reason } => format!("callback:{reason}"),
            FlowOutput::Speech(o) => format!("speech:{}", o.as_str()),
            FlowOutput::SpeechConfidence(c) => format!("confidence:{c:.2}"),
        })
    }

    impl Harness {
        fn new() -> Self {
            Self::with_outages(Vec::new())
        }
        /// A call on the test flow with these outages in force, started.
        fn with_outages(specs: Vec<crate::outage::OutageSpec>) -> Self {
            let now = Instant::now();
            let mut r = FlowRunner::new(Arc::new(good_flow()));
            let items = specs.into_iter().map(crate::outage::tests::ann).collect();
            r.set_outages(Arc::new(OutageSet::active(items, 0)));
            r.start(now, false);
            Harness { r, now }
        }
        fn out(&mut self) -> Vec<String> {
            std::iter::from_fn(|| self.r.poll_output())
                .filter_map(|o| describe(&o))
                .collect()
        }
        fn done(&mut self) -> Vec<String> {
            self.r.handle(self.now, FlowInput::PlaybackDone);
            self.out()
        }
        fn key(&mut self, k: char) -> Vec<String> {
            self.r.handle(self.now, FlowInput::Dtmf(k));
            self.out()
        }
        /// Advances virtual time to the runner's timer and fires it.
        fn wait(&mut self) -> Vec<String> {
            let t = self.r.poll_timeout().expect("a timer is set");
            self.now = t;
            self.r.handle_timeout(t);
            self.out()
        }
    }

    #[test]
    fn greeting_then_menu_then_transfer_by_key() {
        let mut h = Harness::new();
        assert_eq!(h.out(), ["play:greeting"]);
        assert_eq!(h.done(), ["play:main_menu"]);
        assert_eq!(h.done(), Vec::<String>::new());
        assert_eq!(h.r.poll_timeout(), Some(h.now + Duration::from_secs(6)));
        assert_eq!(h.key('1'), ["intent:billing", "play:to_billing"]);
        assert_eq!(h.done(), ["transfer:sip:billing@pbx.example.com"]);
        h.r.handle(h.now, FlowInput::TransferSucceeded);
        assert_eq!(h.out(), ["end:Transferred"]);
        assert!(h.r.is_ended());
    }

    #[test]
    fn key_during_greeting_barges_in_and_is_kept_for_the_menu() {
        let mut h = Harness::new();
        h.out();
        assert_eq!(
            h.key('2'),
            [
                "stop",
                "intent:support",
                "transfer:sip:support@pbx.example.com"
            ]
        );
    }

    #[test]
    fn transfer_context_carries_path_intent_and_input() {
        let mut h = Harness::new();
        h.out();
        h.key('1');
        h.r.handle(h.now, FlowInput::PlaybackDone);
        let t = std::iter::from_fn(|| h.r.poll_output())
            .find_map(|o| match o {
                FlowOutput::Transfer { context, .. } => Some(context),
                _ => None,
            })
            .unwrap();
        assert_eq!(t.flow, "test");
        assert_eq!(t.path, ["greet", "menu", "billing"]);
        assert_eq!(t.intent.as_deref(), Some("billing"));
        assert_eq!(t.last_input.as_deref(), Some("1"));
        assert_eq!(t.reason, None);
    }

    #[test]
    fn failed_transfer_continues_at_on_fail() {
        let mut h = Harness::new();
        h.out();
        h.key('1');
        h.done();
        h.r.handle(h.now, FlowInput::TransferFailed);
        assert_eq!(h.out(), ["play:transfer_failed"]);
        assert_eq!(h.done(), ["play:main_menu"]);
    }

    #[test]
    fn play_node_returns_to_menu() {
        let mut h = Harness::new();
        h.out();
        h.done();
        h.done();
        assert_eq!(h.key('3'), ["intent:hours", "play:hours"]);
        assert_eq!(h.done(), ["play:main_menu"]);
    }

    #[test]
    fn escalation_key_works_in_every_state() {
        // During the greeting prompt.
        let mut h = Harness::new();
        h.out();
        assert_eq!(h.key('0'), ["stop", "escalated:key", "play:to_supervisor"]);
        assert_eq!(h.done(), ["transfer:sip:supervisor@pbx.example.com"]);
        // While a menu waits for input.
        let mut h = Harness::new();
        h.out();
        h.done();
        h.done();
        assert_eq!(h.key('0'), ["escalated:key", "play:to_supervisor"]);
        // During a transfer's lead-in prompt.
        let mut h = Harness::new();
        h.out();
        h.done();
        h.done();
        h.key('1');
        assert_eq!(h.key('0'), ["stop", "escalated:key", "play:to_supervisor"]);
        let ctx = {
            h.r.handle(h.now, FlowInput::PlaybackDone);
            std::iter::from_fn(|| h.r.poll_output())
                .find_map(|o| match o {
                    FlowOutput::Transfer { context, .. } => Some(context),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(ctx.reason, Some(EscalationReason::Key));
        assert_eq!(ctx.intent.as_deref(), Some("billing"));
    }

    #[test]
    fn two_failures_escalate_on_their_own() {
        let mut h = Harness::new();
        h.out();
        h.done();
        h.done();
        assert_eq!(h.wait(), ["play:no_input+main_menu"]);
        assert_eq!(h.done(), Vec::<String>::new());
        assert_eq!(h.key('9'), ["escalated:failures", "play:to_supervisor"]);
    }

    #[test]
    fn failed_escalation_goes_to_on_fail() {
        let mut h = Harness::new();
        h.out();
        h.key('0');
        h.done();
        h.r.handle(h.now, FlowInput::TransferFailed);
        assert_eq!(h.out(), ["escalation_failed", "play:main_menu"]);
    }

    #[test]
    fn multi_key_choice_waits_for_inter_digit_timeout() {
        let mut h = Harness::new();
        h.out();
        h.done();
        h.done();
        // "4" is a choice and a prefix of "42": wait.
        assert_eq!(h.key('4'), Vec::<String>::new());
        assert_eq!(h.r.poll_timeout(), Some(h.now + Duration::from_secs(2)));
        assert_eq!(h.key('2'), ["intent:long", "play:hours"]);
        // Alone, "4" wins when the caller stops typing.
        let mut h = Harness::new();
        h.out();
        h.done();
        h.done();
        h.key('4');
        assert_eq!(h.wait(), ["intent:four", "play:goodbye"]);
        assert_eq!(h.done(), ["end:Hangup"]);
    }

    #[test]
    fn retries_exhausted_go_to_on_failure_without_escalation() {
        let text = crate::flow::compile::tests::GOOD.replace(
            "  on_fail: menu\n",
            "  on_fail: menu\n  after_failures: 0\n",
        );
        let flow = crate::flow::compile(
            std::path::Path::new("t.yaml"),
            &text,
            &mut crate::flow::compile::tests::FakePrompts,
        )
        .unwrap();
        let now = Instant::now();
        let mut h = Harness {
            r: FlowRunner::new(Arc::new(flow)),
            now,
        };
        h.r.start(now, false);
        h.out();
        h.done();
        h.done();
        // no_match max is 1: one reprompt, then on_failure (bye).
        assert_eq!(h.key('7'), ["play:no_match+main_menu"]);
        h.done();
        assert_eq!(h.key('8'), ["play:goodbye"]);
        assert_eq!(h.done(), ["end:Hangup"]);
    }

    #[test]
    fn overflow_calls_start_at_the_overflow_node() {
        let now = Instant::now();
        let mut r = FlowRunner::new(Arc::new(good_flow()));
        r.start(now, true);
        let first = std::iter::from_fn(|| r.poll_output())
            .filter_map(|o| describe(&o))
            .collect::<Vec<_>>();
        assert_eq!(first, ["play:overflow"]);
    }

    #[test]
    fn hangup_prompt_cannot_be_interrupted() {
        let mut h = Harness::new();
        h.out();
        h.done();
        h.done();
        h.key('4');
        h.wait();
        assert_eq!(h.key('5'), Vec::<String>::new());
        assert_eq!(h.done(), ["end:Hangup"]);
    }

    fn outage(id: &str, scope: &[&str], callback: bool) -> crate::outage::OutageSpec {
        let mut s = crate::outage::tests::spec(id, scope);
        s.callback = callback;
        s
    }

    #[test]
    fn outage_for_everyone_comes_right_after_the_greeting_once() {
        let mut h = Harness::with_outages(vec![outage("net", &["all"], false)]);
        assert_eq!(h.out(), ["play:greeting"]);
        assert_eq!(h.done(), ["outage:net", "play:o+outage_options"]);
        assert_eq!(h.done(), ["play:main_menu"]);
        // Back to the menu later: not announced again.
        h.done();
        h.key('3');
        assert_eq!(h.done(), ["play:main_menu"]);
        assert_eq!(h.r.heard(), ["net"]);
    }

    #[test]
    fn type_ahead_does_not_skip_the_outage_but_survives_it() {
        let mut h = Harness::with_outages(vec![outage("net", &["all"], false)]);
        h.out();
        // "1" during the greeting: the greeting stops, the outage is still heard...
        assert_eq!(h.key('1'), ["stop", "outage:net", "play:o+outage_options"]);
        // ...and then the typed-ahead 1 takes the caller to billing.
        assert_eq!(h.done(), ["intent:billing", "play:to_billing"]);
    }

    #[test]
    fn a_key_skips_the_announcement() {
        let mut h = Harness::with_outages(vec![outage("net", &["all"], false)]);
        h.out();
        h.done();
        // The skipping key is not taken as a menu choice.
        assert_eq!(h.key('2'), ["stop", "play:main_menu"]);
    }

    #[test]
    fn scoped_outage_is_announced_when_the_choice_concerns_it() {
        let mut h = Harness::with_outages(vec![outage("bill", &["billing"], false)]);
        h.out();
        assert_eq!(h.done(), ["play:main_menu"], "nothing for everyone");
        h.done();
        assert_eq!(
            h.key('1'),
            ["intent:billing", "outage:bill", "play:o+outage_options"]
        );
        assert_eq!(h.done(), ["play:to_billing"]);
        h.r.handle(h.now, FlowInput::PlaybackDone);
        let ctx = std::iter::from_fn(|| h.r.poll_output())
            .find_map(|o| match o {
                FlowOutput::Transfer { context, .. } => Some(context),
                _ => None,
            })
            .unwrap();
        assert_eq!(ctx.outages, ["bill"]);
    }

    #[test]
    fn outage_callback_offer_records_the_request_and_ends_politely() {
        let mut h = Harness::with_outages(vec![outage("net", &["all"], true)]);
        h.out();
        assert_eq!(h.done(), ["outage:net", "play:o+outage_callback"]);
        // Offer heard, no key yet: the caller has a few seconds.
        assert_eq!(h.done(), Vec::<String>::new());
        assert_eq!(h.r.poll_timeout(), Some(h.now + OUTAGE_CHOICE_TIMEOUT));
        assert_eq!(
            h.key('1'),
            ["callback:outage:net", "play:callback_confirmed"]
        );
        assert_eq!(h.done(), ["end:Hangup"]);
    }

    #[test]
    fn declined_outage_callback_continues_to_the_menu() {
        let mut h = Harness::with_outages(vec![outage("net", &["all"], true)]);
        h.out();
        h.done();
        h.done();
        assert_eq!(h.wait(), ["play:main_menu"]);
    }

    #[test]
    fn escalation_key_still_works_during_an_announcement() {
        let mut h = Harness::with_outages(vec![outage("net", &["all"], true)]);
        h.out();
        h.done();
        assert_eq!(h.key('0'), ["stop", "escalated:key", "play:to_supervisor"]);
    }

    #[test]
    fn callback_node_accepts_key_one_or_moves_on() {
        let now = Instant::now();
        let mut r = FlowRunner::new(Arc::new(good_flow()));
        r.start(now, true);
        let mut h = Harness { r, now };
        assert_eq!(h.out(), ["play:overflow"]);
        assert_eq!(h.done(), ["play:callback_offer"]);
        assert_eq!(
            h.key('1'),
            ["stop", "callback:offer", "play:callback_confirmed"]
        );
        assert_eq!(h.done(), ["play:goodbye"]);
        // Declined by silence.
        let mut r = FlowRunner::new(Arc::new(good_flow()));
        r.start(now, true);
        let mut h = Harness { r, now };
        h.out();
        h.done();
        h.done();
        assert_eq!(h.wait(), ["play:goodbye"]);
    }

    #[test]
    fn escalation_key_again_during_the_lead_in_changes_nothing() {
        let mut h = Harness::new();
        h.out();
        assert_eq!(h.key('0'), ["stop", "escalated:key", "play:to_supervisor"]);
        assert_eq!(h.key('0'), Vec::<String>::new());
        assert_eq!(h.done(), ["transfer:sip:supervisor@pbx.example.com"]);
    }

    /// A speech menu with a confirmation turn (words-only matching: no embedder).
    const SPEECH: &str = r#"
version: 1
flow: speech
start: menu
escalation:
  target: sip:supervisor@pbx.example.com
  phrases: [supervisor, operator]
  after_failures: 3
nodes:
  menu:
    menu: main_menu
    intents:
      billing: {dtmf: "1", phrases: [billing, my bill], confirm: confirm_billing, goto: billing}
      support: {dtmf: "2", phrases: [technical support, my internet is down], confirm: confirm_support, goto: support}
    confirmation: {min_confidence: 0.3, question: confirm_yes_no, timeout_ms: 4000}
    no_input: {reprompt: no_input, max: 2}
    no_match: {reprompt: no_match, max: 2}
  billing: {transfer: "sip:billing@pbx.example.com", on_fail: menu}
  support: {transfer: "sip:support@pbx.example.com", on_fail: menu}
"#;

    impl Harness {
        /// A call on the speech flow, waiting in its menu.
        fn speech() -> Self {
            let flow = crate::flow::compile(
                std::path::Path::new("s.yaml"),
                SPEECH,
                &mut crate::flow::compile::tests::FakePrompts,
            )
            .expect("speech flow compiles");
            let now = Instant::now();
            let mut r = FlowRunner::new(Arc::new(flow));
            r.start(now, false);
            let mut h = Harness { r, now };
            assert_eq!(h.out(), ["play:main_menu"]);
            assert!(h.done().is_empty());
            h
        }
        fn say(&mut self, text: &str) -> Vec<String> {
            self.r.handle(self.now, FlowInput::SpeechStarted);
            self.r
                .handle(self.now, FlowInput::Transcript(Heard::text(text)));
            self.out()
        }
    }

    /// Two intents named at once: a tie, lowered to 0.5, between the confirmation bound
    /// (0.3) and min_confidence (0.6).
    const UNSURE: &str = "billing and technical support";

    #[test]
    fn an_unsure_match_is_confirmed_and_yes_routes() {
        let mut h = Harness::speech();
        assert_eq!(
            h.say(UNSURE),
            [
                "confidence:0.50",
                "speech:confirm",
                "play:confirm_billing+confirm_yes_no"
            ]
        );
        // The answer's listening matcher is the yes/no one.
        let listening = h.r.listening().expect("listening");
        assert_eq!(
            listening.matcher.score("yeah that's right").best.unwrap().0,
            YES
        );
        assert!(h.done().is_empty());
        assert_eq!(
            h.say("Yes, please."),
            [
                "speech:confirmed",
                "intent:billing",
                "transfer:sip:billing@pbx.example.com"
            ]
        );
    }

    #[test]
    fn confirmation_answered_by_keys_and_barge_in() {
        // Key 1 during the question: yes.
        let mut h = Harness::speech();
        h.say(UNSURE);
        assert_eq!(
            h.key('1'),
            [
                "stop",
                "speech:confirmed",
                "intent:billing",
                "transfer:sip:billing@pbx.example.com"
            ]
        );
        // Key 2 after it: no, and the menu is asked again.
        let mut h = Harness::speech();
        h.say(UNSURE);
        h.done();
        assert_eq!(h.key('2'), ["speech:rejected", "play:no_match+main_menu"]);
        // Escalation key still works.
        let mut h = Harness::speech();
        h.say(UNSURE);
        h.done();
        assert_eq!(
            h.key('0'),
            ["escalated:key", "transfer:sip:supervisor@pbx.example.com"]
        );
    }

    #[test]
    fn no_with_another_choice_routes_there_and_silence_asks_again() {
        let mut h = Harness::speech();
        h.say(UNSURE);
        h.done();
        assert_eq!(
            h.say("No, my internet is down."),
            [
                "speech:rejected",
                "intent:support",
                "transfer:sip:support@pbx.example.com"
            ]
        );
        let mut h = Harness::speech();
        h.say(UNSURE);
        h.done();
        assert_eq!(
            h.say("nope"),
            ["speech:rejected", "play:no_match+main_menu"]
        );
        // No answer within timeout_ms: like no input in the menu.
        let mut h = Harness::speech();
        h.say(UNSURE);
        h.done();
        let before = h.now;
        assert_eq!(h.wait(), ["play:no_input+main_menu"]);
        assert_eq!(h.now - before, Duration::from_millis(4000));
        // Asking for a person during the question escalates.
        let mut h = Harness::speech();
        h.say(UNSURE);
        assert_eq!(
            h.say("operator"),
            [
                "stop",
                "speech:escalation",
                "escalated:phrase",
                "transfer:sip:supervisor@pbx.example.com"
            ]
        );
    }

    #[test]
    fn sure_matches_route_without_a_question_and_fillers_never_route() {
        let mut h = Harness::speech();
        assert_eq!(
            h.say("My bill, please."),
            [
                "confidence:1.00",
                "speech:match",
                "intent:billing",
                "transfer:sip:billing@pbx.example.com"
            ]
        );
        let mut h = Harness::speech();
        assert_eq!(
            h.say("um hello?"),
            ["speech:no_match", "play:no_match+main_menu"]
        );
    }
}
