//! The flow interpreter for one call. Pure: events and the current time go in, actions
//! come out of [`FlowRunner::poll_output`]; its one timer is exposed through
//! [`FlowRunner::poll_timeout`] and fired with [`FlowRunner::handle_timeout`].
//!
//! Customer-service rules it encodes: a key press stops a prompt and is kept for the next
//! menu (callers who know the menu never wait); the escalation key reaches a person from
//! any node; repeated failed inputs escalate on their own; every transfer carries what the
//! caller already did so nobody has to ask again.

use super::{Flow, Menu, NodeId, NodeKind};
use crate::media::prompt::Prompt;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Node visits kept for the transfer context (oldest dropped first).
const MAX_PATH: usize = 32;

/// Node changes allowed in one step without waiting for the caller; more means a loop
/// the compiler could not see, and the call is ended rather than spinning.
const MAX_HOPS_PER_STEP: usize = 64;

/// Keys kept while prompts play (type-ahead).
const MAX_TYPEAHEAD: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub enum FlowInput {
    /// The prompts of the last `Play` have all been played.
    PlaybackDone,
    Dtmf(char),
    /// The transfer was accepted and completed (final NOTIFY 2xx).
    TransferSucceeded,
    /// The transfer was refused or failed (REFER rejected, NOTIFY >= 300, timeout).
    TransferFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationReason {
    Key,
    Phrase,
    Failures,
}

impl EscalationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationReason::Key => "key",
            EscalationReason::Phrase => "phrase",
            EscalationReason::Failures => "failures",
        }
    }
}

/// Why the flow ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    /// A hangup node was reached.
    Hangup,
    /// The caller was transferred.
    Transferred,
    /// The flow could not go on (runaway loop, escalation failed with nowhere to go).
    Error,
}

/// What a transfer tells the receiving side, so the caller need not repeat themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferContext {
    pub flow: String,
    /// Nodes visited, oldest first.
    pub path: Vec<String>,
    pub intent: Option<String>,
    /// Set when this transfer is an escalation.
    pub reason: Option<EscalationReason>,
    /// The caller's last input (keys).
    pub last_input: Option<String>,
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
    /// The node the flow is now in (for logs and live views).
    Entered(String),
    /// End the call.
    End(FlowEnd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    NoInput,
    InterDigit,
}

/// What happens when the current prompts finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterPlay {
    Goto(NodeId),
    Collect(NodeId),
    Transfer { node: NodeId },
    Escalate,
    Hangup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    Playing {
        after: AfterPlay,
        bargein: bool,
    },
    Collecting(NodeId),
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
    /// Consecutive failed inputs, across menus (for automatic escalation).
    failures: u32,
    no_input_count: u32,
    no_match_count: u32,
    intent: Option<String>,
    last_input: Option<String>,
    escalation: Option<EscalationReason>,
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
            failures: 0,
            no_input_count: 0,
            no_match_count: 0,
            intent: None,
            last_input: None,
            escalation: None,
            timer: None,
            outputs: VecDeque::new(),
            hops: 0,
        }
    }

    pub fn flow(&self) -> &Arc<Flow> {
        &self.flow
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
        let State::Collecting(node) = self.state else {
            return;
        };
        match kind {
            Timer::NoInput => self.failed_input(now, node, false),
            Timer::InterDigit => {
                // The caller stopped typing: an exact choice wins, anything else is no match.
                let menu = self.menu(node);
                let exact = menu
                    .intents
                    .iter()
                    .position(|i| i.dtmf.as_deref() == Some(self.digits.as_str()));
                match exact {
                    Some(i) => self.choose(now, node, i),
                    None => self.failed_input(now, node, true),
                }
            }
        }
    }

    pub fn handle(&mut self, now: Instant, input: FlowInput) {
        self.hops = 0;
        match input {
            FlowInput::PlaybackDone => {
                if let State::Playing { after, .. } = self.state {
                    self.after_play(now, after);
                }
            }
            FlowInput::Dtmf(key) => self.on_key(now, key),
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
                        None => self.flow.escalation.as_ref().and_then(|e| e.on_fail),
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

    /// Escalates because the caller said so (speech arrives through this too).
    pub fn escalate_now(&mut self, now: Instant, reason: EscalationReason) {
        self.hops = 0;
        self.escalate(now, reason);
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
        match self.state {
            State::Playing {
                after,
                bargein: true,
            } => {
                self.outputs.push_back(FlowOutput::StopPlayback);
                self.after_play(now, after);
            }
            State::Collecting(node) => self.match_digits(now, node),
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
            (None, false) => self.failed_input(now, node, true),
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
        self.outputs.push_back(FlowOutput::Intent {
            node: self.flow.node(node).name.clone(),
            intent: name,
        });
        self.enter(now, goto);
    }

    fn failed_input(&mut self, now: Instant, node: NodeId, no_match: bool) {
        self.timer = None;
        if no_match {
            self.last_input = Some(std::mem::take(&mut self.digits));
            self.no_match_count += 1;
        } else {
            self.no_input_count += 1;
        }
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
        let (retry, count) = if no_match {
            (&menu.no_match, self.no_match_count)
        } else {
            (&menu.no_input, self.no_input_count)
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
        if matches!(self.state, State::Transferring { .. } | State::Ended) {
            return;
        }
        if let State::Playing { .. } = self.state {
            self.outputs.push_back(FlowOutput::StopPlayback);
        }
        self.timer = None;
        self.digits.clear();
        self.escalation = Some(reason);
        self.outputs.push_back(FlowOutput::Escalated(reason));
        let prompts = esc.prompts.clone();
        // The caller asked for a person: the lead-in is not interruptible by keys.
        self.play(now, prompts, false, AfterPlay::Escalate);
    }

    fn enter(&mut self, now: Instant, node: NodeId) {
        self.hops += 1;
        if self.hops > MAX_HOPS_PER_STEP {
            self.end(FlowEnd::Error);
            return;
        }
        self.timer = None;
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
        }
    }

    fn play(&mut self, now: Instant, prompts: Vec<Arc<Prompt>>, bargein: bool, after: AfterPlay) {
        // Keys typed ahead skip prompts that can be interrupted.
        if prompts.is_empty() || (bargein && !self.digits.is_empty()) {
            self.state = State::Playing { after, bargein };
            self.after_play(now, after);
            return;
        }
        self.state = State::Playing { after, bargein };
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
        })
    }

    impl Harness {
        fn new() -> Self {
            let now = Instant::now();
            let mut r = FlowRunner::new(Arc::new(good_flow()));
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
        assert_eq!(h.out(), ["play:main_menu"]);
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
}
