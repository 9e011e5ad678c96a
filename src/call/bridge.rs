//! The call's link to a queue and an agent: joining, ringing agents (the driver places each
//! leg), the bridge when one answers, and what each side's hang-up means for the other.
//! The queue board decides who is rung; this decides what the call does about it.

use super::{Call, CallOutput};
use crate::flow::runner::{FlowInput, QueueInput, TransferContext};
use crate::media::prompt::Prompt;
use crate::queue::OfferEnd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// News from the queue board for this call (`CallInput::Queue`).
#[derive(Debug, Clone)]
pub enum QueueEvent {
    Joined {
        hold: Vec<Arc<Prompt>>,
    },
    /// The place in line (and, with `callback`, the offer to be called back).
    Announce {
        prompts: Vec<Arc<Prompt>>,
        callback: bool,
    },
    /// The place is kept for a callback: say `confirm`; the call may end.
    PlaceKept {
        confirm: Vec<Arc<Prompt>>,
    },
    CallbackRefused,
    /// Ring this agent (`CallOutput::DialAgent`); the leg's fate comes back as `AgentLeg`.
    Offer {
        agent: String,
        uri: String,
        ring_timeout: Duration,
    },
    /// Stop ringing this agent.
    Withdraw {
        agent: String,
    },
    TimedOut,
    NoAgents,
}

/// What happened to a leg the driver placed to an agent (`CallInput::AgentLeg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    Answered,
    Failed(OfferEnd),
    HungUp,
}

/// What the call tells the queue board (`CallOutput::ToQueue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueReport {
    Leave,
    /// The caller took the callback offer.
    KeepPlace,
    Answered {
        agent: String,
    },
    OfferFailed {
        agent: String,
        why: OfferEnd,
    },
    TalkEnded {
        agent: String,
    },
}

#[derive(Debug, Clone, Default)]
pub(super) enum Link {
    #[default]
    None,
    /// In a queue; these agents are being rung.
    Queued {
        context: Box<TransferContext>,
        dialing: Vec<String>,
    },
    /// Talking to this agent.
    Bridged { agent: String },
}

impl Call {
    /// Whether the caller's media is relayed to an agent (the call plays nothing then).
    pub fn is_bridged(&self) -> bool {
        matches!(self.link, Link::Bridged { .. })
    }

    pub(super) fn join_queue(&mut self, queue: String, context: TransferContext) {
        self.link = Link::Queued {
            context: Box::new(context),
            dialing: Vec::new(),
        };
        self.outputs.push_back(CallOutput::JoinQueue { queue });
    }

    /// The caller leaves the queue (escalation, hang-up): agents ringing for them stop.
    pub(super) fn leave_queue(&mut self) {
        match std::mem::take(&mut self.link) {
            Link::Queued { dialing, .. } => {
                for agent in dialing {
                    self.outputs.push_back(CallOutput::CancelAgent { agent });
                }
                self.outputs
                    .push_back(CallOutput::ToQueue(QueueReport::Leave));
            }
            Link::Bridged { agent } => {
                self.outputs.push_back(CallOutput::CancelAgent {
                    agent: agent.clone(),
                });
                self.outputs
                    .push_back(CallOutput::ToQueue(QueueReport::TalkEnded { agent }));
            }
            Link::None => {}
        }
    }

    pub(super) fn on_queue_event(&mut self, now: Instant, event: QueueEvent) {
        match event {
            QueueEvent::Joined { hold } => self.tell_flow(now, QueueInput::Joined { hold }),
            QueueEvent::Announce { prompts, callback } => {
                self.tell_flow(now, QueueInput::Announce { prompts, callback })
            }
            QueueEvent::PlaceKept { confirm } => {
                // The waiter stays in the queue as a callback: this call no longer
                // speaks for it (its end is not a leave). Bridged meanwhile: the talk wins.
                if self.stop_dialing() {
                    self.tell_flow(now, QueueInput::PlaceKept { confirm })
                }
            }
            QueueEvent::CallbackRefused => self.tell_flow(now, QueueInput::CallbackRefused),
            QueueEvent::Offer {
                agent,
                uri,
                ring_timeout,
            } => match &mut self.link {
                Link::Queued { context, dialing } if !dialing.contains(&agent) => {
                    dialing.push(agent.clone());
                    let context = (**context).clone();
                    self.outputs.push_back(CallOutput::DialAgent {
                        agent,
                        uri,
                        context,
                        ring_timeout,
                    });
                }
                _ => {
                    // Not waiting any more (the news crossed): the agent is free again.
                    self.outputs
                        .push_back(CallOutput::ToQueue(QueueReport::OfferFailed {
                            agent,
                            why: OfferEnd::Failed,
                        }));
                }
            },
            QueueEvent::Withdraw { agent } => {
                if let Link::Queued { dialing, .. } = &mut self.link {
                    if let Some(i) = dialing.iter().position(|a| *a == agent) {
                        dialing.remove(i);
                        self.outputs.push_back(CallOutput::CancelAgent { agent });
                    }
                }
            }
            QueueEvent::TimedOut | QueueEvent::NoAgents => {
                if !self.stop_dialing() {
                    // Bridged as the news crossed: the caller stays with the agent.
                    return;
                }
                let input = match event {
                    QueueEvent::TimedOut => QueueInput::TimedOut,
                    _ => QueueInput::NoAgents,
                };
                self.tell_flow(now, input);
            }
        }
    }

    pub(super) fn on_agent_leg(&mut self, now: Instant, agent: String, event: LegEvent) {
        match event {
            LegEvent::Answered => {
                let wanted = match &mut self.link {
                    Link::Queued { dialing, .. } => {
                        match dialing.iter().position(|a| *a == agent) {
                            Some(i) => {
                                dialing.remove(i);
                                true
                            }
                            None => false,
                        }
                    }
                    _ => false,
                };
                if !wanted {
                    // Answered after the caller left or another agent took the call.
                    self.outputs.push_back(CallOutput::CancelAgent {
                        agent: agent.clone(),
                    });
                    self.outputs
                        .push_back(CallOutput::ToQueue(QueueReport::OfferFailed {
                            agent,
                            why: OfferEnd::Failed,
                        }));
                    return;
                }
                if let Link::Queued { dialing, .. } = std::mem::take(&mut self.link) {
                    for other in dialing {
                        self.outputs
                            .push_back(CallOutput::CancelAgent { agent: other });
                    }
                }
                self.link = Link::Bridged {
                    agent: agent.clone(),
                };
                self.timers.set(super::Timer::MediaSilence, None);
                self.outputs
                    .push_back(CallOutput::ToQueue(QueueReport::Answered {
                        agent: agent.clone(),
                    }));
                self.outputs.push_back(CallOutput::Bridge {
                    agent: agent.clone(),
                });
                self.tell_flow(now, QueueInput::AgentConnected { agent });
            }
            LegEvent::Failed(why) => {
                if let Link::Queued { dialing, .. } = &mut self.link {
                    dialing.retain(|a| *a != agent);
                }
                self.outputs
                    .push_back(CallOutput::ToQueue(QueueReport::OfferFailed { agent, why }));
            }
            LegEvent::HungUp => {
                if matches!(&self.link, Link::Bridged { agent: a } if *a == agent) {
                    self.link = Link::None;
                    // The caller is ours again: their media gets the full time to resume.
                    self.last_media = Some(now);
                    self.arm_media_silence();
                    self.outputs
                        .push_back(CallOutput::ToQueue(QueueReport::TalkEnded { agent }));
                    self.tell_flow(now, QueueInput::AgentHungUp);
                }
            }
        }
    }

    /// Leaves the queue's side of the link: agents still ringing for the caller stop.
    /// False when the call is bridged (then nothing changes).
    fn stop_dialing(&mut self) -> bool {
        match std::mem::take(&mut self.link) {
            Link::Queued { dialing, .. } => {
                for agent in dialing {
                    self.outputs.push_back(CallOutput::CancelAgent { agent });
                }
                true
            }
            bridged @ Link::Bridged { .. } => {
                self.link = bridged;
                false
            }
            Link::None => true,
        }
    }

    fn tell_flow(&mut self, now: Instant, input: QueueInput) {
        self.flow.handle(now, FlowInput::Queue(input));
    }
}
