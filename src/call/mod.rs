//! One call as a state machine: ringing and answering within the ring budget, running the
//! flow, playing its prompts, transfers (REFER and its NOTIFY outcome) and the end.
//!
//! Pure, in the str0m/quinn-proto style: the driver feeds every event as one [`CallInput`]
//! with the current time (`CallInput::Timeout` once [`Call::poll_timeout`] has come), pulls
//! one 20 ms audio frame per tick with [`Call::next_frame`], and carries out each
//! [`CallOutput`]. The call's own deadlines live in one timer table.

mod bridge;

pub use bridge::{LegEvent, QueueEvent, QueueReport};

use crate::asr::matcher::Heard;
use crate::asr::vad::{EndpointConfig, Endpointer, VadEvent};
use crate::flow::cond::CallerInfo;
use crate::flow::runner::{
    CallFacts, EscalationReason, FlowEnd, FlowInput, FlowOutput, FlowRunner, TransferContext,
};
use crate::flow::Flow;
use crate::media::g711::Codec;
use crate::media::playout::{PlayId, Playout};
use crate::media::prompt::Prompt;
use crate::outage::OutageSet;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long after a REFER is accepted we wait for the NOTIFY that says how it ended.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(32);

/// The longest a text spoken per call may take to render before it is left out (the rest
/// of its prompts play without it: never silence).
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct CallSettings {
    /// The caller hears ringing for at most this long (INVITE received -> 200 OK).
    pub ring_budget: Duration,
    /// Ring at least this long before answering.
    pub min_ring: Duration,
    /// Beyond capacity: run the flow's overflow node.
    pub overflow: bool,
    pub codec: Codec,
    /// Whether a speech recogniser is available (the endpointer runs only then).
    pub speech: bool,
    /// End the call when no RTP arrived for this long while answered and not on hold.
    pub rtp_timeout: Option<Duration>,
    /// The number dialled, the caller's number, the wall clock.
    pub facts: CallFacts,
    /// The caller's record is being looked up (`CallInput::Caller` follows).
    pub caller_lookup: bool,
}

/// Everything that happens to a call. `Audio` borrows the caller's samples for the moment
/// it is handled; inputs sent between tasks are `CallInput<'static>`.
#[derive(Debug, Clone)]
pub enum CallInput<'a> {
    /// The deadline given by [`Call::poll_timeout`] has come.
    Timeout,
    /// Caller media arrived (any RTP packet, keys included).
    MediaSeen,
    /// 20 ms of the caller's audio (8 kHz PCM), for the endpointer while the flow listens:
    /// speech starting is barge-in, a finished utterance goes out to be transcribed.
    Audio(&'a [i16]),
    /// The outages in force now (the flow announces those that concern this caller).
    Outages(Arc<OutageSet>),
    /// A new codec after a re-negotiation.
    Codec(Codec),
    /// The ACK for our 200 OK arrived.
    Acked,
    Dtmf(char),
    /// The caller hung up (BYE).
    PeerHangup,
    /// The caller gave up before we answered (CANCEL).
    Cancelled,
    /// Our 200 OK was never acknowledged; the SIP stack has ended the dialog.
    AckTimeout,
    /// The caller put us on hold (true) or took us off hold (false).
    Hold(bool),
    /// Final response to our REFER.
    ReferAnswered(u16),
    /// Status line of a NOTIFY (message/sipfrag) about our REFER.
    ReferNotify(u16),
    /// The call cannot go on (e.g. no usable SDP answer in the ACK): hang up.
    Abort,
    /// The daemon is stopping and the drain time is over: hang up.
    Shutdown,
    /// The transcript of the utterance sent with `Transcribe`.
    Transcript {
        text: String,
        closed: Option<Vec<f32>>,
        embedding: Option<Vec<f32>>,
    },
    /// The utterance sent with `Transcribe` held no usable speech.
    SpeechUnusable,
    /// The recogniser could not take the utterance (queue full).
    SpeechBusy,
    /// News from the queue board.
    Queue(QueueEvent),
    /// What happened to the leg placed to this agent.
    AgentLeg {
        agent: String,
        event: LegEvent,
    },
    /// What ivrd remembers of the caller (None: nothing), after `CallSettings::caller_lookup`.
    Caller(Option<CallerInfo>),
    /// The audio of a text asked for with `CallOutput::Render` (None: it could not be made).
    Rendered {
        text: String,
        prompt: Option<Arc<Prompt>>,
    },
}

/// Why a call ended; the `outcome` label of `ivrd_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The caller hung up after being answered.
    CallerHangup,
    /// The caller hung up before being answered.
    Abandoned,
    /// The caller was transferred (to a queue, an agent or a supervisor).
    Transferred,
    /// The flow reached a hangup node.
    Completed,
    /// The caller's side never acknowledged our answer.
    NoAck,
    /// Something went wrong on our side or on the wire.
    Failed,
    /// Hung up by us because the daemon was stopping.
    Drained,
    /// The caller's media stopped arriving (a dead phone or a lost network path).
    RtpTimeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::CallerHangup => "caller_hangup",
            Outcome::Abandoned => "abandoned",
            Outcome::Transferred => "transferred",
            Outcome::Completed => "completed",
            Outcome::NoAck => "no_ack",
            Outcome::Failed => "failed",
            Outcome::Drained => "drained",
            Outcome::RtpTimeout => "rtp_timeout",
        }
    }
}

#[derive(Debug, Clone)]
pub enum CallOutput {
    /// Send 180 Ringing.
    Ringing,
    /// Send 200 OK with our SDP.
    Answer,
    /// Send a REFER; report back with `ReferAnswered` and `ReferNotify`.
    Refer {
        target: String,
        context: TransferContext,
    },
    /// Send BYE.
    Hangup,
    /// The call is over; the driver stops after this.
    Ended(Outcome),
    /// Telemetry: a key was received.
    Dtmf(char),
    /// Telemetry: the flow entered a node.
    Node(String),
    /// Telemetry: a menu choice was made.
    Intent { node: String, intent: String },
    /// Telemetry: the call is escalating to a person.
    Escalated(EscalationReason),
    /// Telemetry: the escalation could not reach a person.
    EscalationFailed,
    /// An outage announcement starts now.
    OutageAnnounced(String),
    /// Record a callback request for this caller durably; with `queue`, keep a place at
    /// the back of that queue and call back from it.
    Callback {
        reason: String,
        queue: Option<String>,
    },
    /// Transcribe this utterance (8 kHz) and answer with `Transcript`, `SpeechUnusable`
    /// or `SpeechBusy`. `prompt` biases the recogniser to the phrases expected now;
    /// `candidates` is the closed set it may score.
    Transcribe {
        audio: Vec<i16>,
        prompt: String,
        candidates: Vec<String>,
    },
    /// Telemetry: how a transcript was used.
    Speech(crate::flow::runner::SpeechOutcome),
    /// Telemetry: the best intent's confidence for a transcript heard in a menu.
    SpeechConfidence(f32),
    /// Put the caller in this queue (the board answers with `CallInput::Queue`).
    JoinQueue { queue: String },
    /// Tell the queue board.
    ToQueue(QueueReport),
    /// Ring this agent with the call's context; report with `CallInput::AgentLeg`.
    DialAgent {
        agent: String,
        uri: String,
        context: TransferContext,
        ring_timeout: Duration,
    },
    /// Stop ringing this agent, or hang up their leg.
    CancelAgent { agent: String },
    /// Relay the caller's media to this agent's leg and back, from now on.
    Bridge { agent: String },
    /// Speak this text (TTS) and answer with `CallInput::Rendered`.
    Render { text: String },
    /// Telemetry: the caller sounded upset (`words`, `meaning`) or failed too often.
    Upset(&'static str),
    /// Store what the caller said of the call (a survey), for the agent's record.
    Feedback {
        score: Option<u8>,
        comment: Option<String>,
        agent: Option<String>,
        queue: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Idle,
    /// REFER sent, waiting for its response or a NOTIFY (until `Timer::TransferReply`).
    Pending {
        accepted: bool,
    },
}

/// The call's own deadlines (the flow keeps its own, merged in `poll_timeout`).
#[derive(Debug, Clone, Copy)]
enum Timer {
    /// The answer is due (min_ring passed, or the ring budget about to be spent).
    Answer = 0,
    /// A transfer's outcome must be known by then.
    TransferReply = 1,
    /// No media since `rtp_timeout`: the call has gone silent.
    MediaSilence = 2,
    /// Texts of the prompts waiting to play must be rendered by then.
    Render = 3,
}

/// One slot per [`Timer`].
#[derive(Debug, Default)]
struct TimerTable([Option<Instant>; 4]);

impl TimerTable {
    fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.0[timer as usize] = at;
    }

    fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Whether `timer` has expired at `now`; an expired timer is cleared.
    fn expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.get(timer) {
            Some(at) if now >= at => {
                self.set(timer, None);
                true
            }
            _ => false,
        }
    }
}

pub struct Call {
    settings: CallSettings,
    phase: Phase,
    flow: FlowRunner,
    playout: Playout,
    /// The last prompt id of the batch the flow is waiting on.
    batch_end: Option<PlayId>,
    next_play_id: PlayId,
    acked: bool,
    held: bool,
    transfer: Transfer,
    timers: TimerTable,
    outputs: VecDeque<CallOutput>,
    /// The caller's speech endpointer, when speech is on.
    vad: Option<Endpointer>,
    /// Which matcher the endpointer's window listens for (a new one starts a new window).
    listening_to: Option<usize>,
    /// An utterance is being transcribed; further utterances wait for its result.
    transcribing: bool,
    /// When the caller's media last arrived (or the call was answered / taken off hold).
    last_media: Option<Instant>,
    /// The queue and agent this call is waiting for or talking to.
    link: bridge::Link,
    /// Prompts waiting for their texts to be rendered before they play.
    rendering: Vec<Arc<Prompt>>,
}

impl Call {
    /// A new call whose INVITE arrived at `invite_at`.
    pub fn new(invite_at: Instant, flow: Arc<Flow>, settings: CallSettings) -> Self {
        // Answering when the ring budget is spent at the latest, however min_ring is set.
        let answer_at = invite_at + settings.min_ring.min(settings.ring_budget);
        let mut timers = TimerTable::default();
        timers.set(Timer::Answer, Some(answer_at));
        let mut call = Call {
            playout: Playout::new(settings.codec),
            settings,
            phase: Phase::Ringing,
            timers,
            flow: FlowRunner::new(flow),
            batch_end: None,
            next_play_id: 1,
            acked: false,
            held: false,
            transfer: Transfer::Idle,
            outputs: VecDeque::new(),
            vad: None,
            listening_to: None,
            transcribing: false,
            last_media: None,
            link: bridge::Link::None,
            rendering: Vec::new(),
        };
        call.flow.set_facts(call.settings.facts.clone());
        if call.settings.caller_lookup {
            call.flow.expect_caller();
        }
        if call.settings.speech {
            call.vad = Some(Endpointer::new(EndpointConfig::default()));
        }
        call.flow.set_speech(call.settings.speech);
        call.outputs.push_back(CallOutput::Ringing);
        call.handle(invite_at, CallInput::Timeout);
        call
    }

    /// A call ivrd placed and the far end answered (a call back): the flow starts now.
    pub fn new_outbound(now: Instant, flow: Arc<Flow>, settings: CallSettings) -> Self {
        let mut call = Call::new(
            now,
            flow,
            CallSettings {
                min_ring: Duration::ZERO,
                ..settings
            },
        );
        // No ringing, no answer of ours: only what the flow does from here.
        call.outputs
            .retain(|o| !matches!(o, CallOutput::Ringing | CallOutput::Answer));
        call.acked = true;
        call
    }

    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Whether our own RTP should go out now (answered, not on hold, not bridged).
    pub fn is_sending(&self) -> bool {
        self.phase == Phase::Answered && !self.held && !self.is_bridged()
    }

    pub fn flow_name(&self) -> &str {
        &self.flow.flow().name
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    /// When to feed `CallInput::Timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flow = match self.phase {
            Phase::Answered => self.flow.poll_timeout(),
            _ => None,
        };
        match (self.timers.next(), flow) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Ringing if self.timers.expired(Timer::Answer, now) => {
                self.phase = Phase::Answered;
                self.last_media = Some(now);
                self.arm_media_silence();
                self.outputs.push_back(CallOutput::Answer);
                self.flow.start(now, self.settings.overflow);
            }
            Phase::Answered => {
                if self.timers.expired(Timer::MediaSilence, now) {
                    self.end(Outcome::RtpTimeout, true);
                    return;
                }
                if self.timers.expired(Timer::TransferReply, now) {
                    self.transfer = Transfer::Idle;
                    self.flow.handle(now, FlowInput::TransferFailed);
                }
                if self.timers.expired(Timer::Render, now) {
                    // Texts not rendered in time are left out; the rest plays.
                    let ready = std::mem::take(&mut self.rendering)
                        .into_iter()
                        .filter(|p| p.to_render.is_none())
                        .collect();
                    self.start_batch(now, ready);
                }
                self.flow.handle_timeout(now);
            }
            _ => {}
        }
    }

    pub fn handle(&mut self, now: Instant, input: CallInput<'_>) {
        if self.phase == Phase::Ended {
            return;
        }
        match input {
            CallInput::Timeout => self.on_timeout(now),
            CallInput::MediaSeen => {
                self.last_media = Some(now);
                if !self.is_bridged() {
                    self.arm_media_silence();
                }
                return;
            }
            CallInput::Audio(pcm) => return self.on_audio(now, pcm),
            CallInput::Outages(outages) => self.flow.set_outages(outages),
            CallInput::Codec(codec) => {
                self.settings.codec = codec;
                self.playout.set_codec(codec);
            }
            CallInput::Acked => self.acked = true,
            CallInput::Dtmf(d) => {
                self.outputs.push_back(CallOutput::Dtmf(d));
                if self.phase == Phase::Answered {
                    self.flow.handle(now, FlowInput::Dtmf(d));
                }
            }
            CallInput::PeerHangup => {
                let outcome = match self.phase {
                    Phase::Ringing => Outcome::Abandoned,
                    _ if self.transfer_pending_accepted() => Outcome::Transferred,
                    _ => Outcome::CallerHangup,
                };
                self.end(outcome, false);
            }
            CallInput::Cancelled => self.end(Outcome::Abandoned, false),
            CallInput::AckTimeout => self.end(Outcome::NoAck, false),
            CallInput::Abort => self.end(Outcome::Failed, true),
            CallInput::Shutdown => self.end(Outcome::Drained, true),
            CallInput::Transcript {
                text,
                closed,
                embedding,
            } => {
                self.transcribing = false;
                let heard = Heard {
                    text,
                    closed,
                    embedding,
                };
                self.flow.handle(now, FlowInput::Transcript(heard));
            }
            CallInput::SpeechUnusable => {
                self.transcribing = false;
                self.flow.handle(now, FlowInput::SpeechUnusable);
            }
            CallInput::SpeechBusy => {
                self.transcribing = false;
                self.flow.handle(now, FlowInput::SpeechBusy);
            }
            CallInput::Queue(event) => self.on_queue_event(now, event),
            CallInput::Caller(info) => self.flow.handle(now, FlowInput::Caller(info)),
            CallInput::Rendered { text, prompt } => self.on_rendered(now, &text, prompt),
            CallInput::AgentLeg { agent, event } => self.on_agent_leg(now, agent, event),
            CallInput::Hold(h) => {
                self.held = h;
                // Coming off hold: the caller's media gets the full time to resume.
                self.last_media = Some(now);
                self.arm_media_silence();
            }
            CallInput::ReferAnswered(code) => {
                if let Transfer::Pending { .. } = self.transfer {
                    if (200..300).contains(&code) {
                        self.transfer = Transfer::Pending { accepted: true };
                    } else if code >= 300 {
                        self.transfer_settled();
                        self.flow.handle(now, FlowInput::TransferFailed);
                    }
                }
            }
            CallInput::ReferNotify(code) => {
                // A NOTIFY can overtake the REFER's 202; it settles the transfer either way.
                if let Transfer::Pending { .. } = self.transfer {
                    if (200..300).contains(&code) {
                        self.transfer_settled();
                        self.flow.handle(now, FlowInput::TransferSucceeded);
                    } else if code >= 300 {
                        self.transfer_settled();
                        self.flow.handle(now, FlowInput::TransferFailed);
                    }
                }
            }
        }
        self.drain_flow(now);
    }

    /// Fills the next 20 ms of audio for the caller and lets the flow know when the
    /// prompts it asked for have been heard.
    pub fn next_frame(&mut self, now: Instant, out: &mut [u8; 160]) {
        let finished = self.playout.next_frame(out);
        if let Some(end) = self.batch_end {
            if finished.contains(&end) {
                self.batch_end = None;
                self.flow.handle(now, FlowInput::PlaybackDone);
                self.drain_flow(now);
            }
        }
    }

    fn on_audio(&mut self, now: Instant, pcm: &[i16]) {
        if self.phase != Phase::Answered {
            return;
        }
        let Some(vad) = self.vad.as_mut() else {
            return;
        };
        let Some(listening) = self.flow.listening() else {
            self.listening_to = None;
            return;
        };
        let key = Arc::as_ptr(&listening.matcher) as usize;
        if self.listening_to != Some(key) {
            vad.reset_with(listening.endpoint);
            self.listening_to = Some(key);
        }
        match vad.push(pcm) {
            Some(VadEvent::SpeechStarted) => {
                self.flow.handle(now, FlowInput::SpeechStarted);
                self.drain_flow(now);
            }
            Some(VadEvent::Utterance(audio)) => {
                vad.reset_with(listening.endpoint);
                if !self.transcribing {
                    self.transcribing = true;
                    self.outputs.push_back(CallOutput::Transcribe {
                        audio,
                        prompt: listening.matcher.initial_prompt(),
                        candidates: listening.matcher.closed_set(),
                    });
                }
            }
            Some(VadEvent::NoInput) => vad.reset_with(listening.endpoint),
            None => {}
        }
    }

    /// Sets when the call ends for lack of media, if it can (answered, not on hold).
    fn arm_media_silence(&mut self) {
        let at = match (self.phase, self.settings.rtp_timeout, self.last_media) {
            (Phase::Answered, Some(t), Some(last)) if !self.held => Some(last + t),
            _ => None,
        };
        self.timers.set(Timer::MediaSilence, at);
    }

    fn transfer_settled(&mut self) {
        self.transfer = Transfer::Idle;
        self.timers.set(Timer::TransferReply, None);
    }

    fn transfer_pending_accepted(&self) -> bool {
        matches!(self.transfer, Transfer::Pending { accepted: true, .. })
    }

    fn drain_flow(&mut self, now: Instant) {
        while let Some(o) = self.flow.poll_output() {
            if self.phase == Phase::Ended {
                return;
            }
            match o {
                FlowOutput::Play { prompts, .. } => {
                    self.playout.stop();
                    self.batch_end = None;
                    self.rendering.clear();
                    self.timers.set(Timer::Render, None);
                    let texts: Vec<String> = prompts
                        .iter()
                        .filter_map(|p| p.to_render.as_ref().map(|t| t.source.clone()))
                        .collect();
                    if texts.is_empty() {
                        self.start_batch(now, prompts);
                    } else {
                        // Played once every text has its audio (cached ones come back at once).
                        self.rendering = prompts;
                        self.timers.set(Timer::Render, Some(now + RENDER_TIMEOUT));
                        for text in texts {
                            self.outputs.push_back(CallOutput::Render { text });
                        }
                    }
                }
                FlowOutput::StopPlayback => {
                    self.playout.stop();
                    self.batch_end = None;
                    self.rendering.clear();
                    self.timers.set(Timer::Render, None);
                }
                FlowOutput::Upset(cause) => self.outputs.push_back(CallOutput::Upset(cause)),
                FlowOutput::Transfer { target, context } => {
                    self.transfer = Transfer::Pending { accepted: false };
                    self.timers
                        .set(Timer::TransferReply, Some(now + TRANSFER_TIMEOUT));
                    self.outputs
                        .push_back(CallOutput::Refer { target, context });
                }
                FlowOutput::Queue { queue, context } => self.join_queue(queue, context),
                FlowOutput::LeaveQueue => self.leave_queue(),
                FlowOutput::Feedback {
                    score,
                    comment,
                    agent,
                    queue,
                } => self.outputs.push_back(CallOutput::Feedback {
                    score,
                    comment,
                    agent,
                    queue,
                }),
                FlowOutput::KeepPlace => self
                    .outputs
                    .push_back(CallOutput::ToQueue(QueueReport::KeepPlace)),
                FlowOutput::Intent { node, intent } => {
                    self.outputs.push_back(CallOutput::Intent { node, intent })
                }
                FlowOutput::Escalated(r) => self.outputs.push_back(CallOutput::Escalated(r)),
                FlowOutput::EscalationFailed => {
                    self.outputs.push_back(CallOutput::EscalationFailed)
                }
                FlowOutput::OutageAnnounced(id) => {
                    self.outputs.push_back(CallOutput::OutageAnnounced(id))
                }
                FlowOutput::CallbackRequested { reason, queue } => self
                    .outputs
                    .push_back(CallOutput::Callback { reason, queue }),
                FlowOutput::Speech(o) => self.outputs.push_back(CallOutput::Speech(o)),
                FlowOutput::SpeechConfidence(c) => {
                    self.outputs.push_back(CallOutput::SpeechConfidence(c))
                }
                FlowOutput::Entered(n) => self.outputs.push_back(CallOutput::Node(n)),
                FlowOutput::End(how) => {
                    let outcome = match how {
                        FlowEnd::Hangup => Outcome::Completed,
                        FlowEnd::Transferred => Outcome::Transferred,
                        FlowEnd::Error => Outcome::Failed,
                    };
                    self.end(outcome, true);
                }
            }
        }
    }

    /// Plays a batch of prompts; the flow hears `PlaybackDone` when its last one ends.
    fn start_batch(&mut self, now: Instant, prompts: Vec<Arc<Prompt>>) {
        for p in prompts {
            let id = self.next_play_id;
            self.next_play_id += 1;
            self.playout.enqueue(id, p);
            self.batch_end = Some(id);
        }
        if self.batch_end.is_none() {
            self.flow.handle(now, FlowInput::PlaybackDone);
        }
    }

    /// A text's audio is here: once the waiting batch has all of its audio, it plays.
    fn on_rendered(&mut self, now: Instant, text: &str, prompt: Option<Arc<Prompt>>) {
        let mut changed = false;
        self.rendering = std::mem::take(&mut self.rendering)
            .into_iter()
            .filter_map(|p| match &p.to_render {
                Some(t) if t.source == text => {
                    changed = true;
                    prompt.clone()
                }
                _ => Some(p),
            })
            .collect();
        if changed && self.rendering.iter().all(|p| p.to_render.is_none()) {
            self.timers.set(Timer::Render, None);
            let ready = std::mem::take(&mut self.rendering);
            self.start_batch(now, ready);
        }
    }

    fn end(&mut self, outcome: Outcome, send_bye: bool) {
        if self.phase == Phase::Ended {
            return;
        }
        let answered = self.phase == Phase::Answered;
        self.leave_queue();
        self.phase = Phase::Ended;
        self.timers = TimerTable::default();
        self.playout.stop();
        self.rendering.clear();
        if send_bye && answered {
            self.outputs.push_back(CallOutput::Hangup);
        }
        self.outputs.push_back(CallOutput::Ended(outcome));
    }

    /// Whether the caller's ACK has arrived (for diagnostics).
    pub fn is_acked(&self) -> bool {
        self.acked
    }
}

#[cfg(test)]
mod tests;
