//! Moving through the flow: entering nodes (outages announced first), playing prompts and
//! what follows them, yes/no offers, escalation, transfers and the end.

use super::{
    AfterPlay, Choice, EscalationReason, FlowEnd, FlowOutput, FlowRunner, MenuVisit, State, Timer,
    TransferContext, Wait, MAX_HOPS_PER_STEP, MAX_PATH, OUTAGE_CHOICE_TIMEOUT,
};
use crate::flow::{NodeId, NodeKind};
use crate::media::prompt::Prompt;
use crate::outage::Announcement;
use std::sync::Arc;
use std::time::Instant;

impl FlowRunner {
    pub(super) fn on_transfer_failed(&mut self, now: Instant) {
        let State::Transferring { node } = self.state else {
            return;
        };
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
        self.record.escalation = None;
        match next {
            Some(n) => self.enter(now, n),
            None => self.end(FlowEnd::Error),
        }
    }

    pub(super) fn escalate(&mut self, now: Instant, reason: EscalationReason) {
        let Some(esc) = self.flow.escalation.as_ref() else {
            return;
        };
        // Already escalating (its lead-in is playing): the same request again, not a new one.
        if self.record.escalation.is_some()
            || matches!(self.state, State::Transferring { .. } | State::Ended)
        {
            return;
        }
        if let State::Queued { .. } | State::Bridged { .. } = self.state {
            self.outputs.push_back(FlowOutput::LeaveQueue);
            self.outputs.push_back(FlowOutput::StopPlayback);
        }
        // (Once: a key's barge-in may have stopped it already.)
        let stopped = self
            .outputs
            .iter()
            .rev()
            .take_while(|o| !matches!(o, FlowOutput::Play { .. }))
            .any(|o| matches!(o, FlowOutput::StopPlayback));
        if matches!(self.state, State::Playing { .. }) && !stopped {
            self.outputs.push_back(FlowOutput::StopPlayback);
        }
        self.digits.clear();
        self.saved_digits = None;
        self.record.escalation = Some(reason);
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
        if matches!(
            n.kind,
            NodeKind::Goto(_) | NodeKind::Branch { .. } | NodeKind::Set { .. }
        ) || self.outages.is_empty()
        {
            return Vec::new();
        }
        let gate = self.record.entered_any
            || matches!(
                n.kind,
                NodeKind::Menu(_)
                    | NodeKind::Transfer { .. }
                    | NodeKind::Queue { .. }
                    | NodeKind::Callback { .. }
            );
        let heard = &self.record.heard;
        let mut due = Vec::new();
        if gate {
            due.extend(self.outages.for_everyone(heard));
        }
        let mut scopes = vec![n.name.clone()];
        if let NodeKind::Queue { queue, .. } = &n.kind {
            scopes.push(queue.clone());
        }
        scopes.extend(self.record.scope_hint.take());
        for scope in scopes {
            for a in self.outages.for_scope(&scope, &self.record.heard) {
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
            self.record.heard.push(a.outage.spec.id.clone());
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

    pub(super) fn enter(&mut self, now: Instant, node: NodeId) {
        self.hops += 1;
        if self.hops > MAX_HOPS_PER_STEP {
            self.end(FlowEnd::Error);
            return;
        }
        let due = self.due_announcements(node);
        if !due.is_empty() {
            self.announce(due, node);
            return;
        }
        let flow = self.flow.clone();
        let n = flow.node(node);
        // Deciding nodes are not what a caller hears first: the greeting after them still
        // comes before outages for everyone.
        if !matches!(n.kind, NodeKind::Branch { .. } | NodeKind::Set { .. }) {
            self.record.entered_any = true;
        }
        if self.record.path.len() == MAX_PATH {
            self.record.path.remove(0);
        }
        self.record.path.push(node);
        self.outputs.push_back(FlowOutput::Entered(n.name.clone()));
        let bargein = n.bargein;
        match &n.kind {
            NodeKind::Digits(d) => {
                let visit = super::DigitsVisit {
                    node,
                    no_input: 0,
                    no_match: 0,
                };
                self.play(
                    now,
                    d.prompts.clone(),
                    bargein,
                    AfterPlay::TypeDigits(visit),
                );
            }
            NodeKind::Branch { arms, otherwise } => {
                let to = self.branch_target(now, arms, *otherwise);
                self.enter(now, to);
            }
            NodeKind::Set { vars, next } => {
                self.set_vars(vars);
                self.enter(now, *next);
            }
            NodeKind::Escalate { prompts } => {
                self.play(now, prompts.clone(), bargein, AfterPlay::EscalateNode);
            }
            NodeKind::Play { prompts, next } => {
                let (prompts, next) = (prompts.clone(), *next);
                self.play(now, prompts, bargein, AfterPlay::Goto(next));
            }
            NodeKind::Menu(m) => {
                let prompts = m.prompts.clone();
                let visit = MenuVisit::new(node);
                self.play(now, prompts, bargein, AfterPlay::Collect(visit));
            }
            NodeKind::Transfer { prompts, .. } => {
                let prompts = prompts.clone();
                self.play(now, prompts, bargein, AfterPlay::Transfer { node });
            }
            NodeKind::Queue { prompts, .. } => {
                let prompts = prompts.clone();
                self.play(now, prompts, bargein, AfterPlay::Queue { node });
            }
            NodeKind::Survey(s) => {
                let prompts = s.question.clone();
                self.play(now, prompts, bargein, AfterPlay::SurveyQuestion(node));
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

    pub(super) fn play(
        &mut self,
        now: Instant,
        prompts: Vec<Arc<Prompt>>,
        bargein: bool,
        after: AfterPlay,
    ) {
        self.state = State::Playing {
            after: after.clone(),
            bargein,
        };
        let prompts = self.fill_texts(prompts);
        // Keys typed ahead skip prompts that can be interrupted.
        if prompts.is_empty() || (bargein && !self.digits.is_empty()) {
            self.after_play(now, after);
            return;
        }
        self.outputs
            .push_back(FlowOutput::Play { prompts, bargein });
    }

    pub(super) fn after_play(&mut self, now: Instant, after: AfterPlay) {
        match after {
            AfterPlay::Goto(n) => self.enter(now, n),
            AfterPlay::Collect(menu) => {
                if self.digits.is_empty() {
                    self.collect(now, menu);
                } else {
                    self.state = State::Collecting { menu, wait: None };
                    self.match_digits(now, menu);
                }
            }
            AfterPlay::Transfer { node } => {
                let NodeKind::Transfer { target, .. } = &self.flow.node(node).kind else {
                    unreachable!("transfer state only for transfer nodes")
                };
                let target = target.clone();
                self.transfer(target, Some(node));
            }
            AfterPlay::Queue { node } => self.join_queue(node),
            AfterPlay::SurveyQuestion(node) => {
                let typed = std::mem::take(&mut self.digits);
                match typed.chars().next().and_then(super::score_of) {
                    Some(score) => self.survey_scored(now, node, Some(score)),
                    None => {
                        let timeout = self.survey(node).timeout;
                        self.state = State::Surveying {
                            node,
                            until: now + timeout,
                        };
                    }
                }
            }
            AfterPlay::SurveyComment { node, score } => {
                let timeout = self.survey(node).timeout;
                self.state = State::Commenting {
                    node,
                    score,
                    until: now + timeout.max(super::COMMENT_WINDOW),
                };
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
                        self.offered(now, choice, &typed, OUTAGE_CHOICE_TIMEOUT)
                    }
                    None => self.resume(now, resume),
                }
            }
            AfterPlay::Confirm { menu, intent } => {
                let typed = std::mem::take(&mut self.digits);
                if typed.starts_with('1') {
                    self.confirmed(now, menu, intent);
                } else if !typed.is_empty() {
                    self.rejected(now, menu, intent, None);
                } else {
                    self.wait_for_answer(now, menu, intent);
                }
            }
            AfterPlay::TypeDigits(visit) => self.type_digits(now, visit),
            AfterPlay::EscalateNode => {
                let reason = if self.record.upset {
                    EscalationReason::Upset
                } else {
                    EscalationReason::Flow
                };
                self.escalate(now, reason);
            }
            AfterPlay::CallbackOffered(node) => {
                let typed = std::mem::take(&mut self.digits);
                let NodeKind::Callback { timeout, .. } = self.flow.node(node).kind else {
                    unreachable!("callback offers only come from callback nodes")
                };
                self.offered(now, Choice::CallbackNode(node), &typed, timeout);
            }
        }
    }

    /// A menu waits for input, until its no-input timeout.
    pub(super) fn collect(&mut self, now: Instant, menu: MenuVisit) {
        let timeout = self.menu(menu.node).timeout;
        self.state = State::Collecting {
            menu,
            wait: Some(Wait {
                at: now + timeout,
                why: Timer::NoInput,
            }),
        };
    }

    /// A yes/no offer has played: keys typed during it answer it (1 is yes), else the
    /// caller has `timeout` to press 1.
    fn offered(&mut self, now: Instant, choice: Choice, typed: &str, timeout: std::time::Duration) {
        if typed.starts_with('1') {
            self.accept(now, choice);
        } else if !typed.is_empty() {
            self.decline(now, choice);
        } else {
            self.state = State::Choosing {
                choice,
                until: now + timeout,
            };
        }
    }

    /// Continues after an outage announcement, giving back the keys typed before it.
    fn resume(&mut self, now: Instant, node: NodeId) {
        self.digits = self.saved_digits.take().unwrap_or_default();
        self.enter(now, node);
    }

    pub(super) fn accept(&mut self, now: Instant, choice: Choice) {
        match choice {
            Choice::OutageCallback { outage, .. } => {
                self.saved_digits = None;
                self.outputs.push_back(FlowOutput::CallbackRequested {
                    reason: format!("outage:{outage}"),
                    queue: None,
                });
                let confirm = self.flow.outage_prompts.callback_confirmed.clone();
                self.play(now, confirm, false, AfterPlay::Hangup);
            }
            Choice::CallbackNode(node) => {
                let NodeKind::Callback {
                    confirm,
                    next,
                    queue,
                    ..
                } = &self.flow.node(node).kind
                else {
                    unreachable!("callback choices only come from callback nodes")
                };
                let (confirm, next, queue) = (confirm.clone(), *next, queue.clone());
                self.outputs.push_back(FlowOutput::CallbackRequested {
                    reason: self.flow.node(node).name.clone(),
                    queue,
                });
                self.play(now, confirm, false, AfterPlay::Goto(next));
            }
        }
    }

    pub(super) fn decline(&mut self, now: Instant, choice: Choice) {
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
        let context = self.context();
        self.outputs
            .push_back(FlowOutput::Transfer { target, context });
    }

    /// What the person who takes the call is told: what the caller did and heard.
    pub(super) fn context(&self) -> TransferContext {
        let record = &self.record;
        TransferContext {
            flow: self.flow.name.clone(),
            path: self.path(),
            intent: record.intent.clone(),
            reason: record.escalation,
            last_input: record.last_input.clone(),
            transcript: record.transcript.clone(),
            outages: record.heard.clone(),
            agent: record.agent.clone(),
            vars: record
                .vars
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("vars.")?.to_string(), v.clone())))
                .collect(),
            caller_name: match &self.caller {
                super::CallerRecord::Known(c) => c.name.clone().filter(|n| !n.trim().is_empty()),
                _ => None,
            },
        }
    }

    pub(super) fn end(&mut self, how: FlowEnd) {
        self.state = State::Ended;
        self.outputs.push_back(FlowOutput::End(how));
    }
}
