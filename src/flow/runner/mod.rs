//! The flow interpreter for one call. Pure: events and the current time go in, actions
//! come out of [`FlowRunner::poll_output`]; the current state's deadline is exposed through
//! [`FlowRunner::poll_timeout`] and fired with [`FlowRunner::handle_timeout`].
//!
//! Each state carries what only it needs (a menu's retry counts, the deadline it waits
//! for); what the whole call builds up (path, intent, outages heard, failures in a row)
//! is its [`Record`]. The steps live in `steps` (entering nodes, playing, announcing
//! outages, escalating, transferring), `keys` (key presses and menu failures) and
//! `speech` (what the caller said, and the confirmation turn).
//!
//! Customer-service rules it encodes: known outages are announced right after the greeting
//! (and scoped ones as soon as the caller's choice concerns them), before any menu or
//! transfer, once per call; a key press stops a prompt and is kept for the next menu
//! (callers who know the menu never wait); the escalation key reaches a person from any
//! node; repeated failed inputs escalate on their own; every transfer carries what the
//! caller already did and heard, so nobody has to ask again.

mod keys;
mod logic;
#[cfg(test)]
mod logic_tests;
mod queue;
mod speech;
mod steps;
#[cfg(test)]
mod tests;

use super::cond::CallerInfo;
use super::{Digits, Flow, Menu, NodeId, NodeKind};
use crate::asr::matcher::{Heard, Matcher};
use crate::asr::vad::EndpointConfig;
use crate::media::prompt::Prompt;
use crate::outage::OutageSet;
pub use crate::sip::context::{EscalationReason, TransferContext};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Node visits kept for the transfer context (oldest dropped first).
const MAX_PATH: usize = 32;

/// How long a survey listens for a comment at least.
const COMMENT_WINDOW: Duration = Duration::from_secs(10);

/// A survey score key: 1 to 5.
fn score_of(key: char) -> Option<u8> {
    matches!(key, '1'..='5').then(|| key as u8 - b'0')
}

/// The talk escalation keys (`*0`) must follow each other within this.
const TALK_KEYS_WINDOW: Duration = Duration::from_secs(3);

/// Node changes allowed in one step without waiting for the caller; more means a loop
/// the compiler could not see, and the call is ended rather than spinning.
const MAX_HOPS_PER_STEP: usize = 64;

/// Keys kept while prompts play (type-ahead; a digits node takes up to 32).
const MAX_TYPEAHEAD: usize = 33;

/// How long a flow that uses the caller's record waits for it before starting without.
pub const CALLER_WAIT: Duration = Duration::from_millis(500);

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
    /// What happens to the caller in the queue (after `FlowOutput::Queue`).
    Queue(QueueInput),
    /// What ivrd remembers of this caller (None: nothing), after `expect_caller`.
    Caller(Option<CallerInfo>),
}

/// News from the queue the caller waits in, and from the agent they talk to.
#[derive(Debug, Clone)]
pub enum QueueInput {
    /// The caller is in the queue; this plays between announcements (may be empty).
    Joined { hold: Vec<Arc<Prompt>> },
    /// Say this (the place in line and the wait), then go back to the hold audio.
    /// `callback`: the prompts end with an offer to keep the place and be called back
    /// (key 1 takes it: `FlowOutput::KeepPlace`).
    Announce {
        prompts: Vec<Arc<Prompt>>,
        callback: bool,
    },
    /// The caller's place is kept and they will be called back: say this, then hang up.
    PlaceKept { confirm: Vec<Arc<Prompt>> },
    /// The callback could not be kept (the number cannot be called, too many callbacks):
    /// the caller stays on the line.
    CallbackRefused,
    /// The queue's longest wait is over: the caller left it.
    TimedOut,
    /// Nobody serves the queue: the caller left it.
    NoAgents,
    /// An agent answered: the call is bridged to them.
    AgentConnected { agent: String },
    /// The agent hung up.
    AgentHungUp,
}

impl PartialEq for QueueInput {
    fn eq(&self, other: &Self) -> bool {
        use QueueInput::*;
        let same = |a: &[Arc<Prompt>], b: &[Arc<Prompt>]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
        };
        match (self, other) {
            (Joined { hold: a }, Joined { hold: b })
            | (PlaceKept { confirm: a }, PlaceKept { confirm: b }) => same(a, b),
            (
                Announce {
                    prompts: a,
                    callback: x,
                },
                Announce {
                    prompts: b,
                    callback: y,
                },
            ) => same(a, b) && x == y,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
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
    /// Put the caller in this queue; news comes back as `FlowInput::Queue`.
    Queue {
        queue: String,
        context: TransferContext,
    },
    /// The caller leaves the queue (they escalated): stop ringing agents for them, or end
    /// the talk with the agent.
    LeaveQueue,
    /// The caller took the callback offer: keep their place and call them back.
    KeepPlace,
    /// What the caller said of the call after it (a survey node): for the agent's record.
    Feedback {
        score: Option<u8>,
        comment: Option<String>,
        agent: Option<String>,
        queue: Option<String>,
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
    CallbackRequested {
        reason: String,
        /// Keep a place in this queue and call back from it (else: a request for people).
        queue: Option<String>,
    },
    /// The node the flow is now in (for logs and live views).
    Entered(String),
    /// The caller sounds upset (`words`, `meaning`) or failed too often (`failures`):
    /// acknowledged and offered a person.
    Upset(&'static str),
    /// End the call.
    End(FlowEnd),
}

/// What a state waits for until its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    NoInput,
    InterDigit,
    /// The caller is speaking or being transcribed; if no result comes, treat as no input.
    Speech,
    /// No answer to a confirmation question.
    Confirm,
}

/// A state's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wait {
    at: Instant,
    why: Timer,
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

/// One visit of a menu node: its retry counts and whether speech is off. Each entry into
/// the node starts a new visit with the counts at zero; reprompts keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MenuVisit {
    node: NodeId,
    no_input: u32,
    no_match: u32,
    low_confidence: u32,
    /// Speech recognition said it is overloaded here: keys only until the next node.
    speech_off: bool,
}

impl MenuVisit {
    fn new(node: NodeId) -> Self {
        MenuVisit {
            node,
            no_input: 0,
            no_match: 0,
            low_confidence: 0,
            speech_off: false,
        }
    }
}

/// What happens when the current prompts finish.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterPlay {
    Goto(NodeId),
    Collect(MenuVisit),
    Transfer {
        node: NodeId,
    },
    Queue {
        node: NodeId,
    },
    /// A survey's question played: wait for the score.
    SurveyQuestion(NodeId),
    /// A survey's comment request played: listen.
    SurveyComment {
        node: NodeId,
        score: Option<u8>,
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
        menu: MenuVisit,
        intent: usize,
    },
    /// A digits node's question played: take the keys.
    TypeDigits(DigitsVisit),
    /// An escalate node's lead-in played.
    EscalateNode,
}

/// One visit of a digits node: its retry counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DigitsVisit {
    node: NodeId,
    no_input: u32,
    no_match: u32,
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
    /// A menu waiting for keys or speech.
    Collecting {
        menu: MenuVisit,
        wait: Option<Wait>,
    },
    /// Waiting for yes/no to "Did you mean <intent>?" in a menu.
    Confirming {
        menu: MenuVisit,
        intent: usize,
        wait: Option<Wait>,
    },
    /// A digits node takes keys (until the end key, the most keys, or its wait).
    Typing {
        visit: DigitsVisit,
        wait: Option<Wait>,
    },
    /// The flow uses the caller's record and waits for it (at most `CALLER_WAIT`).
    AwaitingCaller {
        node: NodeId,
        until: Instant,
    },
    /// Waiting for key 1 until `until`.
    Choosing {
        choice: Choice,
        until: Instant,
    },
    /// Waiting for a transfer's outcome; `None` node means the escalation target.
    Transferring {
        node: Option<NodeId>,
    },
    /// In a queue node's queue: hold audio and announcements until an agent answers.
    Queued {
        node: NodeId,
    },
    /// Talking to an agent (the media is bridged; the flow waits for the agent to hang up).
    Bridged {
        node: NodeId,
    },
    /// A survey waits for a key from 1 to 5 until `until`.
    Surveying {
        node: NodeId,
        until: Instant,
    },
    /// A survey listens for the caller's comment until `until`.
    Commenting {
        node: NodeId,
        score: Option<u8>,
        until: Instant,
    },
    Ended,
}

/// What the call has done so far: what a transfer tells the agent, and what deciding the
/// next step needs (outages heard, failed inputs in a row, whether the greeting is over).
#[derive(Debug, Default)]
struct Record {
    path: Vec<NodeId>,
    intent: Option<String>,
    /// Intent just chosen: outages scoped to it are announced before its node.
    scope_hint: Option<String>,
    last_input: Option<String>,
    transcript: Option<String>,
    /// Consecutive failed inputs, across menus (for automatic escalation).
    failures: u32,
    escalation: Option<EscalationReason>,
    heard: Vec<String>,
    /// The agent the caller was last bridged to, and the queue.
    agent: Option<String>,
    queue: Option<String>,
    /// Keys pressed while talking to an agent, and when the last one came (the talk
    /// escalation sequence must be typed within `TALK_KEYS_WINDOW`).
    talk_keys: (String, Option<Instant>),
    /// Whether any node has been entered yet (the first one is the greeting).
    entered_any: bool,
    /// Call variables (`vars.NAME`), set by `set` and `digits` nodes.
    vars: BTreeMap<String, String>,
    /// Failed inputs in the whole call (for the upset handler).
    all_failures: u32,
    /// The upset handler has run (it runs once a call).
    upset: bool,
}

/// What the call knows from the network and the clock when it starts.
#[derive(Debug, Clone, Default)]
pub struct CallFacts {
    /// The number dialled (the Request-URI's user part).
    pub dialled: String,
    /// The caller's number (From user part) when it is one.
    pub caller: Option<String>,
    /// The wall clock (Unix seconds) when the flow starts.
    pub unix_at_start: i64,
}

/// Whether the caller's record is known yet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CallerRecord {
    /// No lookup is coming (or it came back empty).
    None,
    Pending,
    Known(CallerInfo),
}

pub struct FlowRunner {
    flow: Arc<Flow>,
    state: State,
    record: Record,
    /// Keys pressed and not yet consumed by a menu.
    digits: String,
    /// What plays between queue announcements.
    hold: Vec<Arc<Prompt>>,
    /// The last announcement offered a callback (key 1 takes it).
    callback_offered: bool,
    /// Whether the call can hear speech (a recogniser is there): a survey asks for a
    /// spoken comment only then.
    speech_possible: bool,
    /// An announcement is playing; one that comes meanwhile waits for it (a caller must
    /// hear an announcement to its end, offer included).
    announcing: bool,
    pending_announcement: Option<(Vec<Arc<Prompt>>, bool)>,
    /// Type-ahead put aside while an outage is announced (keys then answer the announcement).
    saved_digits: Option<String>,
    outages: Arc<OutageSet>,
    outputs: VecDeque<FlowOutput>,
    hops: usize,
    facts: CallFacts,
    /// When the flow started (its clock's zero for `facts.unix_at_start`).
    started: Option<Instant>,
    caller: CallerRecord,
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
            record: Record::default(),
            digits: String::new(),
            hold: Vec::new(),
            callback_offered: false,
            announcing: false,
            pending_announcement: None,
            speech_possible: true,
            saved_digits: None,
            outages: Arc::new(OutageSet::default()),
            outputs: VecDeque::new(),
            hops: 0,
            facts: CallFacts::default(),
            started: None,
            caller: CallerRecord::None,
        }
    }

    /// The number dialled, the caller's number and the wall clock; before `start`.
    pub fn set_facts(&mut self, facts: CallFacts) {
        self.facts = facts;
    }

    /// A lookup of the caller's record is on its way (`FlowInput::Caller`); a flow that
    /// uses it waits for it at the start, for at most `CALLER_WAIT`.
    pub fn expect_caller(&mut self) {
        if self.caller == CallerRecord::None {
            self.caller = CallerRecord::Pending;
        }
    }

    /// Call variables set so far (`vars.NAME` -> value).
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.record.vars
    }

    pub fn flow(&self) -> &Arc<Flow> {
        &self.flow
    }

    /// The outages in force now; the caller hears those that concern them, once each.
    pub fn set_outages(&mut self, outages: Arc<OutageSet>) {
        self.outages = outages;
    }

    /// Whether speech can be heard on this call (no recogniser: no spoken comments).
    pub fn set_speech(&mut self, possible: bool) {
        self.speech_possible = possible;
    }

    /// Outage ids this caller has heard.
    pub fn heard(&self) -> &[String] {
        &self.record.heard
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
        self.started = Some(now);
        if self.flow.uses_caller && self.caller == CallerRecord::Pending {
            self.state = State::AwaitingCaller {
                node,
                until: now + CALLER_WAIT,
            };
            return;
        }
        self.enter(now, node);
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Node names visited so far.
    pub fn path(&self) -> Vec<String> {
        self.record
            .path
            .iter()
            .map(|&id| self.flow.node(id).name.clone())
            .collect()
    }

    pub fn poll_output(&mut self) -> Option<FlowOutput> {
        self.outputs.pop_front()
    }

    /// The current state's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Collecting { wait, .. }
            | State::Confirming { wait, .. }
            | State::Typing { wait, .. } => wait.map(|w| w.at),
            State::AwaitingCaller { until, .. }
            | State::Choosing { until, .. }
            | State::Surveying { until, .. }
            | State::Commenting { until, .. } => Some(until),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|at| now < at) {
            return;
        }
        self.hops = 0;
        match self.state.clone() {
            State::Collecting {
                menu,
                wait: Some(wait),
            } => match wait.why {
                Timer::InterDigit => {
                    // The caller stopped typing: an exact choice wins, anything else is no match.
                    let exact = self
                        .menu(menu.node)
                        .intents
                        .iter()
                        .position(|i| i.dtmf.as_deref() == Some(self.digits.as_str()));
                    match exact {
                        Some(i) => self.choose(now, menu.node, i),
                        None => self.failed_input(now, menu, Failure::NoMatch),
                    }
                }
                Timer::NoInput | Timer::Speech | Timer::Confirm => {
                    self.failed_input(now, menu, Failure::NoInput)
                }
            },
            State::Confirming { menu, .. } => self.failed_input(now, menu, Failure::NoInput),
            State::Typing {
                visit,
                wait: Some(wait),
            } => match wait.why {
                Timer::InterDigit => self.digits_done(now, visit),
                _ => self.digits_failed(now, visit, Failure::NoInput),
            },
            State::AwaitingCaller { node, .. } => {
                self.caller = CallerRecord::None;
                self.enter(now, node);
            }
            State::Choosing { choice, .. } => self.decline(now, choice),
            State::Surveying { node, .. } => self.survey_done(now, node, None, None),
            State::Commenting { node, score, .. } => self.survey_done(now, node, score, None),
            _ => {}
        }
    }

    pub fn handle(&mut self, now: Instant, input: FlowInput) {
        self.hops = 0;
        match input {
            FlowInput::PlaybackDone => match self.state.clone() {
                State::Playing { after, .. } => self.after_play(now, after),
                State::Queued { .. } => self.queued_playback_done(),
                _ => {}
            },
            FlowInput::Queue(q) => self.on_queue(now, q),
            FlowInput::Dtmf(key) => self.on_key(now, key),
            FlowInput::SpeechStarted => self.on_speech_started(now),
            FlowInput::Transcript(heard) => self.on_transcript(now, heard),
            FlowInput::SpeechUnusable => self.on_speech_unusable(now),
            FlowInput::SpeechBusy => self.on_speech_busy(now),
            FlowInput::TransferSucceeded => {
                if let State::Transferring { .. } = self.state {
                    self.end(FlowEnd::Transferred);
                }
            }
            FlowInput::TransferFailed => self.on_transfer_failed(now),
            FlowInput::Caller(info) => {
                self.caller = match info {
                    Some(i) => CallerRecord::Known(i),
                    None => CallerRecord::None,
                };
                if let State::AwaitingCaller { node, .. } = self.state {
                    self.enter(now, node);
                }
            }
        }
    }

    /// What to listen for now: the menu's intents (while its prompt plays or it waits for
    /// input) or just the escalation phrases; None when nothing can be said.
    pub fn listening(&self) -> Option<Listening> {
        if let State::Commenting { node, .. } = &self.state {
            if let NodeKind::Survey(s) = &self.flow.node(*node).kind {
                return s.listen.as_ref().map(|m| Listening {
                    matcher: m.clone(),
                    endpoint: s.endpoint,
                });
            }
        }
        if let State::Confirming { menu, .. }
        | State::Playing {
            after: AfterPlay::Confirm { menu, .. },
            ..
        } = &self.state
        {
            let speech = self.menu(menu.node).speech.as_ref()?;
            let confirmation = speech.confirmation.as_ref()?;
            return Some(Listening {
                matcher: confirmation.matcher.clone(),
                endpoint: speech.endpoint,
            });
        }
        let menu = match &self.state {
            State::Collecting { menu, .. }
            | State::Playing {
                after: AfterPlay::Collect(menu),
                ..
            } => Some(*menu),
            State::NotStarted
            | State::Ended
            | State::AwaitingCaller { .. }
            | State::Transferring { .. }
            | State::Bridged { .. } => return None,
            _ => None,
        };
        if let Some(speech) = menu
            .filter(|m| !m.speech_off)
            .and_then(|m| self.menu(m.node).speech.as_ref())
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

    fn digits_node(&self, node: NodeId) -> &Digits {
        match &self.flow.node(node).kind {
            NodeKind::Digits(d) => d,
            _ => unreachable!("typing only happens in digits nodes"),
        }
    }

    fn menu(&self, node: NodeId) -> &Menu {
        match &self.flow.node(node).kind {
            NodeKind::Menu(m) => m,
            _ => unreachable!("collecting only happens in menu nodes"),
        }
    }
}
