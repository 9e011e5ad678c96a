//! What every call driver shares, whatever carries the call (SIP + RTP, WebRTC): the pure
//! [`Call`] with its outage set, the call registry entry, telemetry, callback recording,
//! transcription, and the RTP media path (pacing out, DTMF and caller audio in).
//! A driver only adds its signalling and where its packets go.

use super::calls::{CallInfo, Registered};
use super::sip_endpoint::Shared;
use crate::call::{Call, CallInput, CallOutput, CallSettings, Outcome};
use crate::flow::runner::TransferContext;
use crate::flow::Flow;
use crate::media::dtmf::Rfc4733Receiver;
use crate::media::g711::Codec;
use crate::media::playout::Pacer;
use crate::media::rtp::{RtpIn, RtpStreamOut};
use crate::metrics as m;
use crate::outage::OutageSet;
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
}

/// Describes a new call to [`CallHost::new`].
pub struct NewCall {
    pub call_id: String,
    /// `udp`, `tcp` or `webrtc` (the metrics and calls-API label).
    pub transport: String,
    /// The caller's address, kept only for callback requests.
    pub caller: String,
    pub flow: Arc<Flow>,
    pub overflow: bool,
    pub codec: Codec,
    /// When the call arrived (INVITE received, or the browser's offer).
    pub received: Instant,
}

/// Sees every call output before it is carried out; the WebRTC test phone shows the call's
/// progress (nodes, keys, intents) on its page through one.
pub type OutputTap = Box<dyn FnMut(&CallOutput) + Send>;

pub struct CallHost {
    pub shared: Arc<Shared>,
    pub call: Call,
    /// Results of helper tasks (REFER responses, transcripts) come back through here.
    pub events: mpsc::Sender<CallInput>,
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
}

impl CallHost {
    pub fn new(shared: Arc<Shared>, new: NewCall) -> (CallHost, mpsc::Receiver<CallInput>) {
        let settings = CallSettings {
            ring_budget: shared.answer.ring_budget(),
            min_ring: shared.answer.min_ring(),
            overflow: new.overflow,
            codec: new.codec,
            speech: shared.asr.is_some(),
            rtp_timeout: (shared.rtp_timeout_s > 0)
                .then(|| std::time::Duration::from_secs(shared.rtp_timeout_s)),
        };
        let registered = shared.registry.register(CallInfo {
            call_id: new.call_id,
            flow: new.flow.name.clone(),
            node: String::new(),
            transport: new.transport.clone(),
            started_at: super::outages::unix_now(),
            overflow: new.overflow,
        });
        let outages = shared.outages.current();
        let mut call = Call::new(new.received, new.flow, settings);
        call.set_outages(outages.clone());
        let (events, events_rx) = mpsc::channel(8);
        (
            CallHost {
                shared,
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
            },
            events_rx,
        )
    }

    /// Installs the tap that sees every output from now on.
    pub fn set_tap(&mut self, tap: OutputTap) {
        self.tap = Some(tap);
    }

    /// Hands the call the current outage set when it changed.
    pub fn sync_outages(&mut self) {
        let current = self.shared.outages.current();
        if !Arc::ptr_eq(&current, &self.outages) {
            self.call.set_outages(current.clone());
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
                CallOutput::Ended(outcome) => {
                    // A CANCEL that won the race means no 200 ever left; anything else
                    // (BYE before ACK, ACK never came, shutdown) followed a 200 on the wire.
                    if outcome != Outcome::Abandoned {
                        self.answer_confirmed();
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
                }
                CallOutput::Intent { node, intent } => {
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
                CallOutput::Callback { reason } => self.record_callback(reason),
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
        if waited > self.shared.answer.ring_budget() {
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
        let Some(pool) = self.shared.asr.as_ref() else {
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

    /// Stores the caller's callback request durably, off the async threads.
    fn record_callback(&self, reason: String) {
        info!(reason = %reason, "callback requested");
        let kind = if reason.starts_with("outage:") {
            "outage"
        } else {
            "node"
        };
        metrics::counter!(m::CALLBACKS_TOTAL, "reason" => kind).increment(1);
        let store = self.shared.store.clone();
        let (caller, flow) = (self.caller.clone(), self.call.flow_name().to_string());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.add_callback(&caller, &flow, &reason, super::outages::unix_now())
            {
                tracing::error!(error = %e, "callback request NOT stored");
            }
        });
    }
}

/// `udp`/`tcp` calls are SIP calls in metrics; WebRTC calls keep their own label.
pub fn metric_transport(transport: &str) -> &'static str {
    if transport == "webrtc" {
        "webrtc"
    } else {
        "sip"
    }
}

/// One call's RTP: the outgoing stream paced by absolute deadlines, and the incoming one
/// split into keys (RFC 4733) and caller audio (for the endpointer).
pub struct RtpMedia {
    out: RtpStreamOut,
    pacer: Option<Pacer>,
    dtmf: Rfc4733Receiver,
    pcm: Vec<i16>,
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
    received: metrics::Counter,
    sent: metrics::Counter,
    /// Incoming packets allowed per second (`media.max_rtp_packets_per_s`).
    max_pps: u32,
    /// Start of the current one-second window and packets seen in it.
    window: Option<(Instant, u32)>,
}

impl RtpMedia {
    pub fn new(
        codec: Codec,
        payload_type: u8,
        telephone_event: Option<u8>,
        transport: &'static str,
    ) -> Self {
        RtpMedia {
            out: RtpStreamOut::new(rand::random(), rand::random(), rand::random(), payload_type),
            pacer: None,
            dtmf: Rfc4733Receiver::new(),
            pcm: Vec::with_capacity(320),
            codec,
            payload_type,
            telephone_event,
            received: metrics::counter!(m::RTP_PACKETS_TOTAL, "direction" => "in", "transport" => transport),
            sent: metrics::counter!(m::RTP_PACKETS_TOTAL, "direction" => "out", "transport" => transport),
            max_pps: u32::MAX,
            window: None,
        }
    }

    /// A new codec/payload types after a re-negotiation.
    pub fn set_negotiated(&mut self, codec: Codec, payload_type: u8, telephone_event: Option<u8>) {
        self.codec = codec;
        self.payload_type = payload_type;
        self.telephone_event = telephone_event;
        self.out.set_payload_type(payload_type);
    }

    /// Starts sending: frame n is due at `now + n * 20 ms`.
    /// Starts the outgoing stream within one frame of `now`, at a random point of it: calls
    /// answered in step (a trunk's burst, a load generator's exact 50 calls/s) would
    /// otherwise all send at the same instant every 20 ms and queue behind each other.
    pub fn start(&mut self, now: Instant) {
        let phase = std::time::Duration::from_micros(rand::random_range(0..20_000));
        self.pacer.get_or_insert_with(|| Pacer::new(now + phase));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.pacer.as_ref().map(|p| p.next_deadline())
    }

    /// The packets due now, built from the call's audio. When the call is not sending (on
    /// hold) or there is nowhere to send, time still passes on the stream (timestamps
    /// skip) and the prompt waits.
    pub fn due_packets(
        &mut self,
        now: Instant,
        call: &mut Call,
        can_send: bool,
        out: &mut Vec<Vec<u8>>,
    ) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        let due = pacer.due(now);
        if due.skip > 0 {
            self.out.skip(due.skip);
        }
        let mut frame = [0u8; 160];
        for _ in 0..due.send {
            if can_send && call.is_sending() {
                call.next_frame(now, &mut frame);
                let mut packet = Vec::with_capacity(12 + frame.len());
                self.out.write_packet(&frame, &mut packet);
                out.push(packet);
            } else {
                self.out.skip(1);
            }
        }
    }

    /// Counts a packet that went out.
    pub fn sent(&self) {
        self.sent.increment(1);
    }

    /// Caps incoming packets per second; a peer flooding a call's port is cut off there.
    pub fn limit_rate(mut self, max_pps: u32) -> Self {
        self.max_pps = max_pps.max(1);
        self
    }

    /// An incoming packet: keys to the call, caller audio to the endpointer (when speech is on).
    pub fn on_packet(&mut self, p: &RtpIn<'_>, call: &mut Call, speech: bool) {
        let now = Instant::now();
        let (start, count) = self.window.get_or_insert((now, 0));
        if now.saturating_duration_since(*start) >= std::time::Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > self.max_pps {
            if *count == self.max_pps + 1 {
                warn!(
                    max = self.max_pps,
                    "RTP over the per-call rate: dropping the excess"
                );
            }
            metrics::counter!(m::LIMITS_HIT_TOTAL, "limit" => "rtp_rate").increment(1);
            return;
        }
        self.received.increment(1);
        call.media_seen(now);
        if self.telephone_event == Some(p.payload_type) {
            if let Some(key) = self.dtmf.on_packet(p.timestamp, p.payload) {
                call.handle(Instant::now(), CallInput::Dtmf(key));
            }
        } else if speech && p.payload_type == self.payload_type {
            self.pcm.clear();
            self.codec.decode_into(p.payload, &mut self.pcm);
            call.on_audio(Instant::now(), &self.pcm);
        }
    }
}

/// Sleeps until `t`, or forever when there is no deadline (for `select!` arms).
pub async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// A timer for a call's `select!` loop that survives the loop's iterations.
///
/// A fresh `sleep_until` per iteration re-registers a timer in tokio's wheel for every
/// packet a call receives (50 a second per call); at 1,000 calls that was a tenth of the
/// daemon's CPU and made the frames that were due wait behind it. An `Alarm` touches the
/// wheel only when its deadline really moves.
pub struct Alarm {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm {
            sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            armed: None,
        }
    }
}

impl Alarm {
    /// Rings exactly at `t` (never, for `None`).
    pub fn set(&mut self, t: Option<Instant>) {
        if t != self.armed {
            if let Some(t) = t {
                self.sleep.as_mut().reset(t.into());
            }
            self.armed = t;
        }
    }

    /// Rings at `t` or earlier: an alarm already set to ring sooner is left alone. For
    /// deadlines that keep moving later (the RTP timeout, pushed on by every packet) when
    /// ringing early is harmless because the woken state machine checks its deadlines.
    pub fn set_by(&mut self, t: Option<Instant>) {
        match (self.armed, t) {
            (Some(armed), Some(t)) if armed <= t => {}
            _ => self.set(t),
        }
    }

    /// Completes when the alarm rings; pending forever while it is not set.
    pub async fn ring(&mut self) {
        if self.armed.is_none() {
            return std::future::pending().await;
        }
        self.sleep.as_mut().await;
        self.armed = None;
    }
}
