//! Waiting in a queue and talking to an agent: joining, the hold audio between
//! announcements, the ways out (timeout, nobody serving) and what follows the agent.

use super::{
    AfterPlay, EscalationReason, FlowEnd, FlowOutput, FlowRunner, QueueInput, State,
    TALK_KEYS_WINDOW,
};
use crate::flow::{NodeId, NodeKind};
use crate::media::prompt::Prompt;
use std::sync::Arc;
use std::time::Instant;

impl FlowRunner {
    pub(super) fn join_queue(&mut self, node: NodeId) {
        let NodeKind::Queue { queue, .. } = &self.flow.node(node).kind else {
            unreachable!("queue state only for queue nodes")
        };
        let queue = queue.clone();
        self.record.queue = Some(queue.clone());
        self.digits.clear();
        self.hold.clear();
        self.announcing = false;
        self.pending_announcement = None;
        self.state = State::Queued { node };
        let context = self.context();
        self.outputs.push_back(FlowOutput::Queue { queue, context });
    }

    pub(super) fn on_queue(&mut self, now: Instant, input: QueueInput) {
        let (node, bridged) = match self.state {
            State::Queued { node } => (node, false),
            State::Bridged { node } => (node, true),
            _ => return,
        };
        let NodeKind::Queue {
            on_timeout,
            on_no_agents,
            after_agent,
            ..
        } = self.flow.node(node).kind
        else {
            unreachable!("queue states only for queue nodes")
        };
        match (input, bridged) {
            (QueueInput::Joined { hold }, false) => {
                self.hold = hold;
                self.hold_again();
            }
            (QueueInput::Announce { prompts, callback }, false) => {
                if self.announcing {
                    self.pending_announcement = Some((prompts, callback));
                } else {
                    self.announce_place(prompts, callback);
                }
            }
            (QueueInput::PlaceKept { confirm }, false) => {
                self.callback_offered = false;
                self.outputs.push_back(FlowOutput::StopPlayback);
                self.play(now, confirm, false, AfterPlay::Hangup);
            }
            (QueueInput::CallbackRefused, false) => self.callback_offered = false,
            (QueueInput::TimedOut, false) => self.leave_for(now, on_timeout),
            (QueueInput::NoAgents, false) => self.leave_for(now, on_no_agents),
            (QueueInput::AgentConnected { agent }, false) => {
                self.outputs.push_back(FlowOutput::StopPlayback);
                self.record.agent = Some(agent);
                self.record.talk_keys = (String::new(), None);
                self.state = State::Bridged { node };
            }
            (QueueInput::AgentHungUp, true) => match after_agent {
                Some(next) => self.enter(now, next),
                None => self.end(FlowEnd::Hangup),
            },
            _ => {}
        }
    }

    /// A key the caller pressed while talking to an agent (it reached the agent too): the
    /// talk escalation sequence, typed within the window, brings the supervisor in.
    pub(super) fn on_talk_key(&mut self, now: Instant, key: char) {
        let Some(seq) = self
            .flow
            .escalation
            .as_ref()
            .and_then(|e| e.during_talk.clone())
        else {
            return;
        };
        let (typed, last) = &mut self.record.talk_keys;
        if last.is_some_and(|t| now.saturating_duration_since(t) > TALK_KEYS_WINDOW) {
            typed.clear();
        }
        typed.push(key);
        *last = Some(now);
        // Keep the longest end of what was typed that could still become the sequence.
        while !seq.starts_with(typed.as_str()) {
            typed.remove(0);
        }
        if *typed == seq {
            self.record.talk_keys = (String::new(), None);
            self.escalate(now, EscalationReason::DuringTalk);
        }
    }

    /// A key while waiting: 1 takes a callback offer; others mean nothing here.
    pub(super) fn on_queued_key(&mut self, key: char) {
        if key == '1' && self.callback_offered {
            self.callback_offered = false;
            self.outputs.push_back(FlowOutput::KeepPlace);
        }
    }

    fn announce_place(&mut self, prompts: Vec<Arc<Prompt>>, callback: bool) {
        self.announcing = true;
        self.callback_offered = callback;
        self.outputs.push_back(FlowOutput::Play {
            prompts,
            bargein: false,
        });
    }

    /// Something finished playing while waiting: the next announcement if one is waiting,
    /// else the hold audio again (it loops until an announcement or an agent).
    pub(super) fn queued_playback_done(&mut self) {
        match self.pending_announcement.take() {
            Some((prompts, callback)) => self.announce_place(prompts, callback),
            None => {
                self.announcing = false;
                self.hold_again();
            }
        }
    }

    /// The survey's score came (or none did): the comment next, if the node asks for one
    /// and speech can be heard; else the end of the survey.
    pub(super) fn survey_scored(&mut self, now: Instant, node: NodeId, score: Option<u8>) {
        let s = self.survey(node);
        if s.listen.is_some() && !s.comment.is_empty() && self.speech_possible {
            let prompts = s.comment.clone();
            self.play(
                now,
                prompts,
                false,
                AfterPlay::SurveyComment { node, score },
            );
        } else {
            self.survey_done(now, node, score, None);
        }
    }

    /// The survey is over: what the caller said goes to the agent's record, then thanks.
    pub(super) fn survey_done(
        &mut self,
        now: Instant,
        node: NodeId,
        score: Option<u8>,
        comment: Option<String>,
    ) {
        if score.is_some() || comment.is_some() {
            self.outputs.push_back(FlowOutput::Feedback {
                score,
                comment,
                agent: self.record.agent.clone(),
                queue: self.record.queue.clone(),
            });
        }
        let s = self.survey(node);
        let (thanks, next) = (s.thanks.clone(), s.next);
        self.play(now, thanks, false, AfterPlay::Goto(next));
    }

    pub(super) fn survey(&self, node: NodeId) -> &crate::flow::Survey {
        match &self.flow.node(node).kind {
            NodeKind::Survey(s) => s,
            _ => unreachable!("survey states only for survey nodes"),
        }
    }

    /// The hold audio again.
    pub(super) fn hold_again(&mut self) {
        if !self.hold.is_empty() {
            self.outputs.push_back(FlowOutput::Play {
                prompts: self.hold.clone(),
                bargein: false,
            });
        }
    }

    fn leave_for(&mut self, now: Instant, next: NodeId) {
        self.outputs.push_back(FlowOutput::StopPlayback);
        self.enter(now, next);
    }
}
