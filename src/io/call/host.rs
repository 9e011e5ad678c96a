//! What every call driver shares, whatever carries the call (SIP + RTP, WebRTC): the pure
//! [`Call`] with its outage set, the call registry entry, telemetry, callback recording,
//! and transcription.
//! A driver only adds its signalling and where its packets go.

use crate::call::{Call, CallInput, CallOutput, CallSettings, Outcome};
use crate::flow::runner::CallFacts;
use crate::flow::Flow;
use crate::io::clock::unix_now;
use crate::io::daemon::Daemon;
use crate::io::queues::Caller;
use crate::io::registry::{CallInfo, Registered};
use crate::media::g711::Codec;
use crate::metrics as m;
use crate::outage::OutageSet;
use crate::sip::context::TransferContext;
use crate::store::callers::is_number;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::{debug, info, warn, Instrument};

/// Signalling the driver carries out; everything else is handled by [`CallHost`].
#[derive(Debug)]
pub enum Signal {
    Ringing,
    Answer,
    Refer {
        target: String,
        context: TransferContext,
    },
    Hangup,
    Ended(Outcome),
    /// Ring an agent: place a leg to `uri` with the call's context.
    DialAgent {
        agent: String,
        uri: String,
        context: TransferContext,
        ring_timeout: std::time::Duration,
    },
    /// Stop ringing this agent, or hang up their leg.
    CancelAgent {
        agent: String,
    },
    /// Relay media between the caller and this agent's leg.
    Bridge {
        agent: String,
    },
}

/// Describes a new call to [`CallHost::new`].
pub struct NewCall {
    pub call_id: String,
    /// `udp`, `tcp` or `webrtc` (the metrics and calls-API label).
    pub transport: String,
    /// The caller's address, kept only for callback requests.
    pub caller: String,
    /// The number dialled (the Request-URI's user part; empty when there is none).
    pub dialled: String,
    pub flow: Arc<Flow>,
    pub overflow: bool,
    pub codec: Codec,
    /// When the call arrived (INVITE received, or the browser's offer).
    pub received: Instant,
    /// A call ivrd placed (a call back): already answered, with this key in its queue.
    pub outbound: Option<u64>,
}

/// Sees every call output before it is carried out; the WebRTC test phone shows the call's
/// progress (nodes, keys, intents) on its page through one.
pub type OutputTap = Box<dyn FnMut(&CallOutput) + Send>;

pub struct CallHost {
    pub daemon: Arc<Daemon>,
    pub call: Call,
    /// Results of helper tasks (REFER responses, transcripts) come back through here.
    pub events: mpsc::Sender<CallInput<'static>>,
    outages: Arc<OutageSet>,
    registered: Registered,
    caller: String,
    /// The `transport` label of metrics: `sip` or `webrtc`.
    transport: &'static str,
    received: Instant,
    answered_at: Option<Instant>,
    /// Answer latency not yet recorded: a SIP 200 counts once the caller shows it got it.
    unconfirmed_answer: Option<std::time::Duration>,
    notice_recorded: bool,
    tap: Option<OutputTap>,
    /// The call's key with the queue service.
    queue_key: u64,
    /// The caller's number when the network gave one (caller memory's key).
    number: Option<String>,
    /// The last intent chosen in this call (remembered for the caller's next call).
    last_intent: Option<String>,
}

impl CallHost {
    pub fn new(
        daemon: Arc<Daemon>,
        new: NewCall,
    ) -> (CallHost, mpsc::Receiver<CallInput<'static>>) {
        let number = Some(number_of(&new.caller)).filter(|n| is_number(n));
        let caller_lookup = number.is_some() && new.flow.uses_caller;
        let settings = CallSettings {
            facts: CallFacts {
                dialled: new.dialled.clone(),
                caller: number.clone(),
                unix_at_start: unix_now() as i64,
            },
            caller_lookup,
            ring_budget: daemon.answer.ring_budget(),
            min_ring: daemon.answer.min_ring(),
            overflow: new.overflow,
            codec: new.codec,
            speech: daemon.asr.is_some(),
            rtp_timeout: (daemon.rtp_timeout_s > 0)
                .then(|| std::time::Duration::from_secs(daemon.rtp_timeout_s)),
        };
        let registered = daemon.registry.register(CallInfo {
            call_id: new.call_id,
            flow: new.flow.name.clone(),
            node: String::new(),
            transport: new.transport.clone(),
            started_at: unix_now(),
            overflow: new.overflow,
        });
        let outages = daemon.outages.current();
        let mut call = match new.outbound {
            Some(_) => Call::new_outbound(new.received, new.flow, settings),
            None => Call::new(new.received, new.flow, settings),
        };
        call.handle(new.received, CallInput::Outages(outages.clone()));
        let (events, events_rx) = mpsc::channel(8);
        if let (true, Some(n)) = (caller_lookup, number.clone()) {
            look_up_caller(&daemon, n, events.clone());
        }
        (
            CallHost {
                daemon,
                call,
                events,
                outages,
                registered,
                caller: new.caller,
                transport: metric_transport(&new.transport),
                received: new.received,
                answered_at: None,
                unconfirmed_answer: None,
                notice_recorded: false,
                tap: None,
                queue_key: new.outbound.unwrap_or(0),
                number,
                last_intent: None,
            },
            events_rx,
        )
    }

    /// Installs the tap that sees every output from now on.
    pub fn set_tap(&mut self, tap: OutputTap) {
        self.tap = Some(tap);
    }

    /// Hands the call the current outage set when it changed.
    pub fn sync_outages(&mut self, now: Instant) {
        let current = self.daemon.outages.current();
        if !Arc::ptr_eq(&current, &self.outages) {
            self.call.handle(now, CallInput::Outages(current.clone()));
            self.outages = current;
        }
    }

    /// The next signalling action, after carrying out every telemetry, callback and
    /// transcription output before it.
    pub fn next_signal(&mut self, now: Instant) -> Option<Signal> {
        while let Some(out) = self.call.poll_output() {
            if let Some(tap) = self.tap.as_mut() {
                tap(&out);
            }
            match out {
                CallOutput::Ringing => return Some(Signal::Ringing),
                CallOutput::Answer => {
                    self.answered(now);
                    return Some(Signal::Answer);
                }
                CallOutput::Refer { target, context } => {
                    return Some(Signal::Refer { target, context })
                }
                CallOutput::Hangup => return Some(Signal::Hangup),
                CallOutput::DialAgent {
                    agent,
                    uri,
                    context,
                    ring_timeout,
                } => {
                    return Some(Signal::DialAgent {
                        agent,
                        uri,
                        context,
                        ring_timeout,
                    })
                }
                CallOutput::CancelAgent { agent } => return Some(Signal::CancelAgent { agent }),
                CallOutput::Bridge { agent } => return Some(Signal::Bridge { agent }),
                CallOutput::JoinQueue { queue } => self.join_queue(queue),
                CallOutput::ToQueue(report) => {
                    if let Some(q) = &self.daemon.queues {
                        q.report(self.queue_key, report);
                    }
                }
                CallOutput::Ended(outcome) => {
                    // A CANCEL that won the race means no 200 ever left; anything else
                    // (BYE before ACK, ACK never came, shutdown) followed a 200 on the wire.
                    if outcome != Outcome::Abandoned {
                        self.answer_confirmed();
                        self.remember_caller();
                    }
                    return Some(Signal::Ended(outcome));
                }
                CallOutput::Dtmf(d) => {
                    debug!(key = %d, "key");
                    metrics::counter!(m::DTMF_TOTAL, "transport" => self.transport).increment(1);
                }
                CallOutput::Node(n) => {
                    debug!(node = %n, "node");
                    self.registered.set_node(&n);
                    self.daemon
                        .traffic
                        .hit(self.call.flow_name(), &n, unix_now());
                }
                CallOutput::Render { text } => self.render(now, text),
                CallOutput::Upset(cause) => {
                    info!(cause, "caller upset: acknowledged, offered a person");
                    metrics::counter!(m::UPSET_CALLERS_TOTAL, "cause" => cause).increment(1);
                }
                CallOutput::Intent { node, intent } => {
                    self.last_intent = Some(intent.clone());
                    info!(node = %node, intent = %intent, "intent");
                    metrics::counter!(m::INTENTS_TOTAL, "flow" => self.call.flow_name().to_string(), "node" => node, "intent" => intent)
                        .increment(1);
                }
                CallOutput::OutageAnnounced(id) => {
                    info!(outage = %id, "outage announced");
                    if let (Some(answered), false) = (self.answered_at, self.notice_recorded) {
                        self.notice_recorded = true;
                        metrics::histogram!(m::TIME_TO_OUTAGE_NOTICE_SECONDS)
                            .record(now.saturating_duration_since(answered).as_secs_f64());
                    }
                    metrics::counter!(m::OUTAGE_ANNOUNCEMENTS_TOTAL, "outage" => id).increment(1);
                }
                CallOutput::Callback {
                    reason,
                    queue: Some(queue),
                } if self.daemon.queues.is_some() => self.keep_place_in(reason, queue),
                CallOutput::Callback { reason, .. } => self.record_callback(reason),
                CallOutput::Feedback {
                    score,
                    comment,
                    agent,
                    queue,
                } => self.record_feedback(score, comment, agent, queue),
                CallOutput::Transcribe {
                    audio,
                    prompt,
                    candidates,
                } => self.transcribe(audio, prompt, candidates),
                CallOutput::Speech(outcome) => {
                    metrics::counter!(m::ASR_RESULTS_TOTAL, "result" => outcome.as_str())
                        .increment(1);
                }
                CallOutput::SpeechConfidence(c) => {
                    metrics::histogram!(m::ASR_CONFIDENCE).record(f64::from(c));
                }
                CallOutput::EscalationFailed => {
                    warn!("escalation target unreachable or refusing");
                    metrics::counter!(m::ESCALATIONS_TOTAL, "reason" => "unreachable").increment(1);
                }
                CallOutput::Escalated(reason) => {
                    info!(reason = reason.as_str(), "escalating to a person");
                    metrics::counter!(m::ESCALATIONS_TOTAL, "reason" => reason.as_str())
                        .increment(1);
                }
            }
        }
        None
    }

    /// Puts the caller in a queue; without a queue service (no queues configured, which
    /// `ivrd check` rejects for flows naming one) the flow hears that nobody serves it.
    fn join_queue(&mut self, queue: String) {
        info!(queue = %queue, "joining queue");
        let events = self.events.clone();
        // The WebRTC test phone has no RTP socket to relay: no agent can take its call, so
        // it goes the flow's no-agents way at once (rather than ringing agents for nothing).
        let queues = self
            .daemon
            .queues
            .clone()
            .filter(|_| self.transport != "webrtc");
        let Some(q) = queues else {
            let _ = events.try_send(CallInput::Queue(crate::call::QueueEvent::NoAgents));
            return;
        };
        if self.queue_key == 0 {
            self.queue_key = q.call_key();
        }
        let key = self.queue_key;
        let caller = Caller {
            number: number_of(&self.caller),
            flow: self.call.flow_name().to_string(),
        };
        q.join(key, queue, caller, events);
    }

    /// Notes the answer latency (call arrived -> answer sent). A WebRTC answer is final once
    /// sent; a SIP 200 can still lose to a CANCEL (the caller then gets 487 instead), so it is
    /// recorded when the ACK (or anything else proving the 200 went out) arrives.
    fn answered(&mut self, now: Instant) {
        self.answered_at = Some(now);
        self.unconfirmed_answer = Some(now.saturating_duration_since(self.received));
        if self.transport == "webrtc" {
            self.answer_confirmed();
        }
    }

    /// Records the answer latency noted by `answered`, once per call.
    pub fn answer_confirmed(&mut self) {
        let Some(waited) = self.unconfirmed_answer.take() else {
            return;
        };
        metrics::histogram!(m::CALL_ANSWER_SECONDS, "transport" => self.transport)
            .record(waited.as_secs_f64());
        if waited > self.daemon.answer.ring_budget() {
            metrics::counter!(m::RING_BUDGET_EXCEEDED_TOTAL).increment(1);
            warn!(
                waited_ms = waited.as_millis() as u64,
                "answered after the ring budget"
            );
        }
    }

    /// Hands an utterance to the Whisper pool (never waits: a full queue answers at once)
    /// and feeds the result back into the call as an event.
    fn transcribe(&self, audio: Vec<i16>, prompt: String, candidates: Vec<String>) {
        let Some(pool) = self.daemon.asr.as_ref() else {
            return;
        };
        let request = crate::asr::whisper::AsrRequest {
            audio_8k: audio,
            prompt: Some(prompt).filter(|p| !p.is_empty()),
            candidates: Some(candidates).filter(|c| !c.is_empty()),
        };
        let events = self.events.clone();
        match pool.submit(request) {
            Ok(reply) => {
                tokio::spawn(
                    async move {
                        let input = match reply.await {
                            Ok(Ok(r)) if r.gate.is_none() && !r.text.is_empty() => {
                                // What callers say can be personal: only at debug level.
                                debug!(transcript = %r.text, "caller said");
                                info!(
                                    asr_ms = r.elapsed.as_millis() as u64,
                                    "utterance transcribed"
                                );
                                CallInput::Transcript {
                                    text: r.text,
                                    closed: r.candidate_scores,
                                    embedding: r.embedding,
                                }
                            }
                            Ok(Ok(r)) => {
                                debug!(raw = %r.raw_text, gate = ?r.gate, "utterance dropped");
                                CallInput::SpeechUnusable
                            }
                            Ok(Err(e)) => {
                                warn!(error = %e, "transcription failed");
                                CallInput::SpeechUnusable
                            }
                            Err(_) => CallInput::SpeechUnusable,
                        };
                        let _ = events.send(input).await;
                    }
                    .in_current_span(),
                );
            }
            Err(e) => {
                warn!(error = %e, "speech recognition overloaded: offering keys");
                let _ = self.events.try_send(CallInput::SpeechBusy);
            }
        }
    }

    /// Stores what the caller said of the call with the agent and queue, off the async
    /// threads; the score goes to `ivrd_survey_score{queue}`.
    fn record_feedback(
        &self,
        score: Option<u8>,
        comment: Option<String>,
        agent: Option<String>,
        queue: Option<String>,
    ) {
        info!(score = ?score, comment = comment.is_some(), agent = ?agent, "survey answered");
        if let (Some(s), Some(q)) = (score, &queue) {
            metrics::histogram!(m::SURVEY_SCORE, "queue" => q.clone()).record(f64::from(s));
        }
        let store = self.daemon.store.clone();
        let feedback = crate::store::Feedback {
            at: unix_now(),
            agent,
            queue,
            flow: self.call.flow_name().to_string(),
            score,
            comment,
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.add_feedback(&feedback) {
                tracing::error!(error = %e, "survey answer NOT stored");
            }
        });
    }

    /// A callback node that names a queue: the caller gets a place at its back, and is
    /// called back from it (the queue service falls back to a recorded request when the
    /// number cannot be called).
    fn keep_place_in(&self, reason: String, queue: String) {
        info!(reason = %reason, queue = %queue, "callback requested from a queue");
        let Some(q) = self.daemon.queues.clone() else {
            return;
        };
        let caller = Caller {
            number: number_of(&self.caller),
            flow: self.call.flow_name().to_string(),
        };
        tokio::spawn(async move { q.keep_place_in(queue, caller).await }.in_current_span());
    }

    /// Stores the caller's callback request durably, off the async threads.
    fn record_callback(&self, reason: String) {
        info!(reason = %reason, "callback requested");
        metrics::counter!(m::CALLBACKS_TOTAL, "state" => "requested").increment(1);
        let store = self.daemon.store.clone();
        let (caller, flow) = (self.caller.clone(), self.call.flow_name().to_string());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.add_callback(&caller, &flow, &reason, unix_now()) {
                tracing::error!(error = %e, "callback request NOT stored");
            }
        });
    }
}

impl CallHost {
    /// A text spoken per call: from memory at once, else rendered on a blocking thread
    /// (the call waits for it, at most `call::RENDER_TIMEOUT`).
    fn render(&mut self, now: Instant, text: String) {
        let Some(tts) = self.daemon.tts.clone() else {
            self.call
                .handle(now, CallInput::Rendered { text, prompt: None });
            return;
        };
        let started = Instant::now();
        if let Some(p) = tts.cached(&text) {
            metrics::histogram!(m::TTS_RENDER_SECONDS, "source" => "memory")
                .record(started.elapsed().as_secs_f64());
            self.call.handle(
                now,
                CallInput::Rendered {
                    text,
                    prompt: Some(p),
                },
            );
            return;
        }
        let events = self.events.clone();
        tokio::spawn(
            async move {
                let rendered = {
                    let text = text.clone();
                    tokio::task::spawn_blocking(move || tts.render_blocking(&text)).await
                };
                let prompt = match rendered {
                    Ok(Ok((p, source))) => {
                        metrics::histogram!(m::TTS_RENDER_SECONDS, "source" => source.as_str())
                            .record(started.elapsed().as_secs_f64());
                        debug!(
                            ms = started.elapsed().as_millis() as u64,
                            source = source.as_str(),
                            "text rendered"
                        );
                        Some(p)
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "text could not be spoken; left out");
                        None
                    }
                    Err(_) => None,
                };
                let _ = events.send(CallInput::Rendered { text, prompt }).await;
            }
            .in_current_span(),
        );
    }

    /// Remembers this call for the caller's next one (its time, its intent), off the
    /// async threads; only callers with a number, and only when `callers.remember`.
    fn remember_caller(&mut self) {
        let Some(number) = self.number.take() else {
            return;
        };
        if !self.daemon.callers.remember {
            return;
        }
        let store = self.daemon.store.clone();
        let intent = self.last_intent.clone();
        let tag = crate::store::callers::number_tag(&self.daemon.number_key, &number);
        tokio::task::spawn_blocking(move || {
            match store.remember_call(&number, intent.as_deref(), unix_now() as i64) {
                Ok(()) => debug!(caller = %tag, "caller remembered"),
                Err(e) => tracing::error!(caller = %tag, error = %e, "caller NOT remembered"),
            }
        });
    }
}

/// Looks up what ivrd remembers of a caller and hands it to the call.
fn look_up_caller(daemon: &Arc<Daemon>, number: String, events: mpsc::Sender<CallInput<'static>>) {
    let store = daemon.store.clone();
    let tag = crate::store::callers::number_tag(&daemon.number_key, &number);
    tokio::spawn(
        async move {
            let found = tokio::task::spawn_blocking(move || store.caller(&number)).await;
            let info = match found {
                Ok(Ok(info)) => info,
                Ok(Err(e)) => {
                    warn!(caller = %tag, error = %e, "caller memory unreadable; treated as unknown");
                    None
                }
                Err(_) => None,
            };
            debug!(caller = %tag, known = info.is_some(), "caller looked up");
            let _ = events.send(CallInput::Caller(info)).await;
        }
        .in_current_span(),
    );
}

/// The user part of a caller's URI (`sip:5551000@host` -> `5551000`): their number.
fn number_of(uri: &str) -> String {
    let rest = uri
        .trim_start_matches('<')
        .split_once(':')
        .map(|(_, r)| r)
        .unwrap_or(uri);
    rest.split(['@', ';', '>']).next().unwrap_or("").to_string()
}

/// `udp`/`tcp` calls are SIP calls in metrics; WebRTC calls keep their own label.
pub fn metric_transport(transport: &str) -> &'static str {
    if transport == "webrtc" {
        "webrtc"
    } else {
        "sip"
    }
}
