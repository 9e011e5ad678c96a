//! One tokio task per call: it owns the call's state machine, its RTP socket and its
//! dialog events, and does only I/O — every decision is the pure [`Call`]'s.

use super::agent::{self, Dial, Leg, LegUpdate};
use super::reply::{allow_header, contact_for, contact_for_dialog, reply, respond, respond_sdp};
use crate::call::LegEvent;
use crate::call::{CallInput, Outcome};
use crate::io::call::alarm::Alarm;
use crate::io::call::host::{CallHost, NewCall, Signal};
use crate::io::daemon::Daemon;
use crate::io::media::relay::{CallerKeys, End, Relay};
use crate::io::media::rtp::RtpMedia;
use crate::media::dtmf::parse_info;
use crate::media::g711::Codec;
use crate::media::relay::{LegMedia, RelayPath};
use crate::media::rtp::parse as parse_rtp;
use crate::media::session::StreamSeeds;
use crate::metrics as m;
use crate::sip::context;
use crate::sip::context::TransferContext;
use crate::sip::dialog::{
    check_invite, late_answer, refer_progress, reoffer, DialogRules, Held, InviteView,
    RefusalHeader, ReinviteVerdict, Reoffer,
};
use crate::sip::sdp::{self, LocalAudio, Negotiated, RemoteAudio};
use rsipstack::dialog::dialog::{DialogState, TerminatedReason, TransactionHandle};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{HasHeaders, Header, Request, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

/// The most RTP packets a call reads per 20 ms frame (3,200 a second: far beyond any
/// phone, well past `media.max_rtp_packets_per_s`, which counts what is over its cap).
const MAX_READ_PER_FRAME: usize = 64;

/// Entry point for a new INVITE (no To tag). Refusals are answered here; accepted calls
/// run until they end.
pub async fn run(tx: Transaction, received: Instant, daemon: Arc<Daemon>) {
    let call_id = tx
        .original
        .call_id_header()
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    let dialled = tx.original.uri.user().unwrap_or_default().to_string();
    let flow = daemon.flows.load().route(&dialled);
    let span = info_span!("call", call_id = %call_id, flow = %flow.name);
    async move {
        debug!(dialled = %dialled, "INVITE");
        if daemon.draining.load(std::sync::atomic::Ordering::Acquire) {
            info!("call refused: shutting down");
            m_calls_total("rejected_draining");
            let retry = Header::RetryAfter(daemon.limits.retry_after_s.to_string().into());
            reply(tx, StatusCode::ServiceUnavailable, vec![retry], "draining");
            return;
        }
        let (require, content_type) = (
            tx.original.header_value("Require"),
            tx.original.header_value("Content-Type"),
        );
        let view = InviteView {
            require: require.as_deref(),
            content_type: content_type.as_deref(),
            body: &tx.original.body,
        };
        let offer = match check_invite(&view) {
            Ok(o) => o,
            Err(refusal) => {
                info!(
                    code = refusal.status,
                    reason = refusal.reason,
                    "call refused"
                );
                m_calls_total(refusal.reason);
                let code = StatusCode::from(refusal.status);
                let headers = refusal.header.into_iter().map(refusal_header).collect();
                reply(tx, code, headers, refusal.reason);
                return;
            }
        };
        let Some(admission) = daemon.admit(flow.overflow.is_some()) else {
            info!("call refused: at capacity");
            m_calls_total("rejected_capacity");
            metrics::counter!(m::LIMITS_HIT_TOTAL, "limit" => "calls").increment(1);
            let retry = Header::RetryAfter(daemon.limits.retry_after_s.to_string().into());
            reply(tx, StatusCode::ServiceUnavailable, vec![retry], "capacity");
            return;
        };
        let socket = match daemon.rtp_ports.bind() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "no RTP port");
                m_calls_total("rejected_no_port");
                reply(tx, StatusCode::ServiceUnavailable, vec![], "no_rtp_port");
                return;
            }
        };
        let overflow = admission.overflow;
        metrics::gauge!(m::CALLS_ACTIVE).increment(1.0);
        let outcome = CallTask::start(tx, received, daemon, flow, offer, socket, overflow).await;
        metrics::gauge!(m::CALLS_ACTIVE).decrement(1.0);
        m_calls_total(outcome);
        info!(outcome, "call ended");
        drop(admission);
    }
    .instrument(span)
    .await
}

fn m_calls_total(outcome: &'static str) {
    metrics::counter!(m::CALLS_TOTAL, "outcome" => outcome, "transport" => "sip").increment(1);
}

fn refusal_header(h: RefusalHeader) -> Header {
    match h {
        RefusalHeader::Unsupported(tags) => Header::Unsupported(tags.into()),
        RefusalHeader::Accept(types) => Header::Accept(types.into()),
        RefusalHeader::Warning(w) => Header::Warning(w.into()),
    }
}

/// What [`CallTask::outbound`] takes: an answered client dialog and its media.
pub struct Outbound {
    pub daemon: Arc<Daemon>,
    pub dialog: InviteDialog,
    pub states: rsipstack::dialog::dialog::DialogStateReceiver,
    pub socket: std::net::UdpSocket,
    pub local: LocalAudio,
    pub remote: RemoteAudio,
    pub media: Negotiated,
    pub flow: Arc<crate::flow::Flow>,
    /// The kept place's key in its queue.
    pub key: u64,
    pub number: String,
}

pub struct CallTask {
    host: CallHost,
    dialog: InviteDialog,
    socket: std::net::UdpSocket,
    local: LocalAudio,
    offer: Option<RemoteAudio>,
    media: Option<Negotiated>,
    rtp: RtpMedia,
    /// Where the caller's RTP comes from (symmetric RTP, RFC 4961); wins over the SDP address.
    latched: Option<SocketAddr>,
    /// The dialog's rules: transfers held for the ACK, overlapping re-INVITEs, BYE timing.
    rules: DialogRules,
    /// A re-INVITE waiting for the previous one's ACK (see `DialogRules::on_reinvite`).
    held: Option<(Request, TransactionHandle)>,
    /// Tells the endpoint the ACK is in (a re-INVITE that beat it waits for this).
    acked: tokio::sync::watch::Sender<bool>,
    /// Legs placed to agents, by agent id, and where their news comes in.
    legs: HashMap<String, Leg>,
    leg_updates: (mpsc::Sender<LegUpdate>, Option<mpsc::Receiver<LegUpdate>>),
    /// The media relay while the call is bridged to an agent.
    relay: Option<Relay>,
    /// The caller's From URI (shown to agents).
    caller: String,
    /// The caller's Call-ID (agents get it, to match their leg to the caller's).
    call_id: String,
}

impl CallTask {
    async fn start(
        mut tx: Transaction,
        received: Instant,
        daemon: Arc<Daemon>,
        flow: Arc<crate::flow::Flow>,
        offer: Option<RemoteAudio>,
        socket: std::net::UdpSocket,
        overflow: bool,
    ) -> &'static str {
        let (state_tx, state_rx) = daemon.dialogs.new_dialog_state_channel();
        let contact = contact_for(&daemon, &tx);
        let dialog = match daemon
            .dialogs
            .get_or_create_server_invite(&tx, state_tx, None, contact)
        {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot create dialog");
                let _ = tx.reply(StatusCode::ServerInternalError).await;
                return "failed";
            }
        };
        let media = offer.as_ref().and_then(|o| sdp::negotiate(o).ok());
        let codec = media.as_ref().map(|n| n.codec).unwrap_or(Codec::Pcmu);
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let caller = tx
            .original
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .map(|u| u.to_string())
            .unwrap_or_default();
        let call_id = tx
            .original
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let new = NewCall {
            outbound: None,
            call_id: call_id.clone(),
            transport: tx
                .connection
                .as_ref()
                .map(|c| c.transport().to_string().to_ascii_lowercase())
                .unwrap_or_else(|| "udp".into()),
            caller: caller.clone(),
            dialled: tx.original.uri.user().unwrap_or_default().to_string(),
            flow,
            overflow,
            codec,
            received,
        };
        let local = LocalAudio {
            ip: daemon.media_ip,
            port,
            session_id: rand::random::<u32>() as u64,
            version: 1,
        };
        let (host, events_rx) = CallHost::new(daemon, new);
        let rtp = RtpMedia::new(
            codec,
            media.as_ref().map(|n| n.payload_type).unwrap_or(0),
            media.as_ref().and_then(|n| n.telephone_event),
            "sip",
        )
        .limit_rate(host.daemon.max_rtp_pps);
        let host_acks = host.daemon.acks.track(dialog.id().to_string());
        let (leg_tx, leg_rx) = mpsc::channel(16);
        let mut task = CallTask {
            host,
            dialog: dialog.clone(),
            socket,
            local,
            offer,
            media,
            rtp,
            latched: None,
            rules: DialogRules::default(),
            held: None,
            acked: host_acks,
            legs: HashMap::new(),
            leg_updates: (leg_tx, Some(leg_rx)),
            relay: None,
            caller,
            call_id,
        };
        // Queue 180/200 before the transaction task starts so they go out in order. Every
        // call rings at once (the pure call's first output), so no 100 Trying goes first:
        // RFC 3261 §17.2.1 asks for one only when no provisional follows within 200 ms, and
        // leaving it out spares a packet per call on the answer path.
        let mut outcome = task.carry_out(Instant::now());
        let mut invite_dialog = dialog;
        let invite_tx = tokio::spawn(async move {
            if let Err(e) = invite_dialog.handle(&mut tx).await {
                debug!(error = %e, "INVITE transaction");
            }
        });
        if outcome.is_none() {
            outcome = Some(task.run(state_rx, events_rx).await);
        }
        // A call that ended before the ACK (the caller's BYE crossed our 200) must not keep
        // retransmitting that 200: dropping the transaction stops its timers. A CANCELled
        // one keeps its transaction, which still has to see the 487 acknowledged.
        if !task.host.call.is_acked() && outcome != Some(Outcome::Abandoned) {
            invite_tx.abort();
        }
        task.wind_up();
        outcome.unwrap_or(Outcome::Failed).as_str()
    }

    /// A call ivrd placed that the far end answered (a call back): the same driver, from
    /// the answer on. Returns the outcome once the call has ended.
    pub async fn outbound(out: Outbound) -> &'static str {
        let Outbound {
            daemon,
            dialog,
            states,
            socket,
            local,
            remote,
            media,
            flow,
            key,
            number,
        } = out;
        let call_id = dialog.id().call_id.to_string();
        let new = NewCall {
            outbound: Some(key),
            call_id: call_id.clone(),
            transport: "udp".into(),
            caller: format!("sip:{number}@callback"),
            dialled: String::new(),
            flow,
            overflow: false,
            codec: media.codec,
            received: Instant::now(),
        };
        let (host, events_rx) = CallHost::new(daemon, new);
        let rtp = RtpMedia::new(
            media.codec,
            media.payload_type,
            media.telephone_event,
            "sip",
        )
        .limit_rate(host.daemon.max_rtp_pps);
        let acked = host.daemon.acks.track(dialog.id().to_string());
        acked.send_replace(true);
        let (leg_tx, leg_rx) = mpsc::channel(16);
        let mut rules = DialogRules::default();
        let _ = rules.on_initial_ack();
        let mut task = CallTask {
            host,
            dialog,
            socket,
            local,
            offer: Some(remote),
            media: Some(media),
            rtp,
            latched: None,
            rules,
            held: None,
            acked,
            legs: HashMap::new(),
            leg_updates: (leg_tx, Some(leg_rx)),
            relay: None,
            caller: format!("sip:{number}@callback"),
            call_id,
        };
        let now = Instant::now();
        task.rtp.start(now);
        let mut outcome = task.carry_out(now);
        if outcome.is_none() {
            outcome = Some(task.run(states, events_rx).await);
        }
        task.wind_up();
        outcome.unwrap_or(Outcome::Failed).as_str()
    }

    /// After the call: the relay and every agent leg stop, the dialog is forgotten.
    fn wind_up(&mut self) {
        self.relay = None;
        for (_, leg) in self.legs.drain() {
            leg.stop.cancel();
        }
        self.host.daemon.dialogs.remove_dialog(&self.dialog.id());
        self.host.daemon.acks.forget(&self.dialog.id().to_string());
    }

    async fn run(
        &mut self,
        mut states: rsipstack::dialog::dialog::DialogStateReceiver,
        mut events: mpsc::Receiver<CallInput<'static>>,
    ) -> Outcome {
        let mut buf = vec![0u8; 2048];
        let (mut frame_alarm, mut call_alarm) = (Alarm::default(), Alarm::default());
        let mut dialog_alarm = Alarm::default();
        let shutdown = self.host.daemon.shutdown.clone();
        let mut leg_updates = self.leg_updates.1.take().expect("run is called once");
        loop {
            // Bridged, the relay carries the media: the frame clock sleeps (its pacer
            // catches up, skipping the missed frames, when the call's own audio resumes).
            frame_alarm.set(self.rtp.next_deadline().filter(|_| self.relay.is_none()));
            call_alarm.set_by(self.host.call.poll_timeout());
            dialog_alarm.set(self.rules.poll_timeout());
            tokio::select! {
                _ = frame_alarm.ring() => {
                    let now = Instant::now();
                    self.drain_rtp(now, &mut buf);
                    self.send_frames(now);
                }
                Some(update) = leg_updates.recv() => self.on_leg_update(update),
                _ = call_alarm.ring() => self.host.call.handle(Instant::now(), CallInput::Timeout),
                _ = dialog_alarm.ring() => {
                    let acked = self.last_ack_cseq();
                    if let Some(held) = self.rules.handle_timeout(Instant::now(), acked) {
                        self.settle_held(held).await;
                    }
                }
                state = states.recv() => match state {
                    Some(s) => self.on_dialog_state(s).await,
                    None => self.host.call.handle(Instant::now(), CallInput::PeerHangup),
                },
                Some(ev) = events.recv() => self.host.call.handle(Instant::now(), ev),
                _ = shutdown.cancelled() => self.host.call.handle(Instant::now(), CallInput::Shutdown),
            }
            let now = Instant::now();
            self.host.sync_outages(now);
            if let Some(outcome) = self.carry_out(now) {
                return outcome;
            }
        }
    }

    /// Carries out what the call decided; returns the outcome once it has ended.
    fn carry_out(&mut self, now: Instant) -> Option<Outcome> {
        while let Some(signal) = self.host.next_signal(now) {
            match signal {
                Signal::Ringing => {
                    if let Err(e) = self.dialog.ringing(None, None) {
                        debug!(error = %e, "180 Ringing");
                    }
                }
                Signal::Answer => self.answer(now),
                Signal::Refer { target, context } => {
                    if let Some((target, context)) = self.rules.transfer(target, context) {
                        self.send_refer(target, context);
                    }
                }
                Signal::Hangup => {
                    let d = self.dialog.clone();
                    let at = self.rules.bye_at(now);
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at.into()).await;
                        if let Err(e) = d.bye().await {
                            debug!(error = %e, "BYE");
                        }
                    });
                }
                Signal::Ended(outcome) => return Some(outcome),
                Signal::DialAgent {
                    agent,
                    uri,
                    context,
                    ring_timeout,
                } => {
                    let dial = Dial {
                        agent: agent.clone(),
                        uri,
                        context,
                        ring_timeout,
                        caller: self.caller.clone(),
                        call_id: self.call_id.clone(),
                    };
                    let leg =
                        agent::dial(self.host.daemon.clone(), dial, self.leg_updates.0.clone());
                    if let Some(old) = self.legs.insert(agent, leg) {
                        old.stop.cancel();
                    }
                }
                Signal::CancelAgent { agent } => {
                    if self.relay.as_ref().is_some_and(|r| r.agent == agent) {
                        self.unbridge();
                    }
                    if let Some(leg) = self.legs.remove(&agent) {
                        leg.stop.cancel();
                    }
                }
                Signal::Bridge { agent } => self.bridge(now, agent),
            }
        }
        None
    }

    /// News from an agent leg, for the call (and the leg's media kept for the bridge).
    fn on_leg_update(&mut self, update: LegUpdate) {
        let now = Instant::now();
        let (agent, event) = match update {
            LegUpdate::Answered { agent, leg } => {
                match self.legs.get_mut(&agent) {
                    Some(l) => l.answered = Some(leg),
                    None => return,
                }
                (agent, LegEvent::Answered)
            }
            LegUpdate::Failed { agent, why } => {
                self.legs.remove(&agent);
                (agent, LegEvent::Failed(why))
            }
            LegUpdate::HungUp { agent } => {
                if self.relay.as_ref().is_some_and(|r| r.agent == agent) {
                    self.unbridge();
                }
                self.legs.remove(&agent);
                (agent, LegEvent::HungUp)
            }
        };
        self.host
            .call
            .handle(now, CallInput::AgentLeg { agent, event });
    }

    /// Starts relaying media between the caller and the agent who answered.
    fn bridge(&mut self, now: Instant, agent: String) {
        let leg = self.legs.get_mut(&agent).and_then(|l| l.answered.take());
        let (Some(leg), Some(neg)) = (leg, self.media.as_ref()) else {
            warn!(agent = %agent, "no media to bridge");
            return self.bridge_failed(now, agent);
        };
        let caller_media = LegMedia {
            codec: neg.codec,
            payload_type: neg.payload_type,
            telephone_event: neg.telephone_event,
        };
        let caller_dest = self.latched.or(neg.remote);
        let agent_seeds = StreamSeeds {
            ssrc: rand::random(),
            first_seq: rand::random(),
            first_timestamp: rand::random(),
        };
        let pps = self.host.daemon.max_rtp_pps;
        let to_agent = RelayPath::new(caller_media, leg.media, agent_seeds).limit_rate(pps);
        let to_caller =
            RelayPath::new(leg.media, caller_media, self.rtp.position()).limit_rate(pps);
        let caller_socket = match self.socket.try_clone() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot share the caller's RTP socket with the relay");
                return self.bridge_failed(now, agent);
            }
        };
        let ends = (
            End {
                socket: caller_socket,
                remote: caller_dest,
                latched: self.latched.is_some(),
            },
            End {
                socket: leg.socket,
                remote: leg.remote,
                latched: false,
            },
        );
        let keys = CallerKeys {
            telephone_event: neg.telephone_event,
            call: self.host.events.clone(),
        };
        match Relay::start(agent.clone(), ends.0, ends.1, to_agent, to_caller, keys) {
            Ok(relay) => {
                info!(agent = %agent, "bridged to the agent");
                self.relay = Some(relay);
            }
            Err(e) => {
                warn!(error = %e, "cannot start the media relay");
                self.bridge_failed(now, agent);
            }
        }
    }

    /// A bridge that could not be made: the agent's leg ends (so their phone is not left
    /// holding a dead call) and the call goes on as if they had hung up.
    fn bridge_failed(&mut self, now: Instant, agent: String) {
        if let Some(leg) = self.legs.remove(&agent) {
            leg.stop.cancel();
        }
        self.host.call.handle(
            now,
            CallInput::AgentLeg {
                agent,
                event: LegEvent::HungUp,
            },
        );
    }

    /// Ends the relay; the call's own stream carries on after what the relay sent.
    fn unbridge(&mut self) {
        if let Some(relay) = self.relay.take() {
            self.rtp
                .continue_at(Instant::now(), relay.caller_next_seq());
        }
    }

    fn answer(&mut self, now: Instant) {
        let body = match (&self.offer, &self.media) {
            (Some(offer), Some(neg)) => sdp::answer(&self.local, offer, neg),
            _ => sdp::offer(&self.local),
        };
        let headers = vec![Header::ContentType("application/sdp".into())];
        if let Err(e) = self.dialog.accept(Some(headers), Some(body.into_bytes())) {
            warn!(error = %e, "200 OK");
            return;
        }
        self.rtp.start(now);
    }

    fn send_refer(&mut self, target: String, ctx: TransferContext) {
        let (refer_to, extra) = context::refer(&target, &ctx, self.host.daemon.transfer_context);
        let mut headers: Vec<Header> = extra
            .into_iter()
            .map(|(k, v)| Header::Other(k.into(), v))
            .collect();
        if let Some(c) = contact_for_dialog(&self.host.daemon) {
            headers.push(Header::ReferredBy(format!("<{c}>").into()));
        }
        info!(target = %target, "transferring");
        let d = self.dialog.clone();
        let events = self.host.events.clone();
        tokio::spawn(async move {
            let code = match d
                .refer(rsipstack::sip::ReferTo::new(refer_to), Some(headers), None)
                .await
            {
                Ok(Some(resp)) => u16::from(resp.status_code),
                Ok(None) => 481,
                Err(e) => {
                    debug!(error = %e, "REFER");
                    408
                }
            };
            let result = if (200..300).contains(&code) {
                "accepted"
            } else {
                "refused"
            };
            metrics::counter!(m::TRANSFERS_TOTAL, "result" => result).increment(1);
            let _ = events.send(CallInput::ReferAnswered(code)).await;
        });
    }

    async fn on_dialog_state(&mut self, state: DialogState) {
        let now = Instant::now();
        match state {
            // Confirmed comes again after every re-INVITE's ACK.
            DialogState::Confirmed(..) if self.rules.is_acked() => {
                if let Some(held) = self.rules.on_reinvite_ack(self.last_ack_cseq()) {
                    self.settle_held(held).await;
                }
            }
            DialogState::Confirmed(..) => {
                if self.offer.is_none() && !self.take_late_answer() {
                    self.host.call.handle(now, CallInput::Abort);
                    return;
                }
                self.host.answer_confirmed();
                self.host.call.handle(now, CallInput::Acked);
                self.acked.send_replace(true);
                if let Some((t, c)) = self.rules.on_initial_ack() {
                    self.send_refer(t, c);
                }
            }
            DialogState::Terminated(_, reason) => {
                let input = match reason {
                    TerminatedReason::UacCancel => CallInput::Cancelled,
                    TerminatedReason::Timeout => CallInput::AckTimeout,
                    _ => CallInput::PeerHangup,
                };
                self.host.call.handle(now, input);
            }
            DialogState::Info(_, req, handle) => {
                let ct = req.header_value("Content-Type").unwrap_or_default();
                match parse_info(&ct, &req.body) {
                    Some(key) => {
                        respond(&handle, StatusCode::OK, None, None).await;
                        self.host.call.handle(now, CallInput::Dtmf(key));
                    }
                    None => {
                        let accept =
                            Header::Accept("application/dtmf-relay, application/dtmf".into());
                        respond(
                            &handle,
                            StatusCode::UnsupportedMediaType,
                            Some(vec![accept]),
                            None,
                        )
                        .await;
                    }
                }
            }
            DialogState::Notify(_, req, handle) => {
                respond(&handle, StatusCode::OK, None, None).await;
                if let Some(code) = refer_notify_status(&req) {
                    debug!(code, "transfer progress");
                    self.host.call.handle(now, CallInput::ReferNotify(code));
                }
            }
            DialogState::Updated(_, req, handle) => {
                if req.method != rsipstack::sip::Method::Invite {
                    return self.on_reoffer(&req, &handle).await;
                }
                match self.rules.on_reinvite(now, self.last_ack_cseq()) {
                    ReinviteVerdict::Accept => self.on_reinvite(&req, &handle).await,
                    ReinviteVerdict::Hold => self.held = Some((req, handle)),
                    ReinviteVerdict::Pending => {
                        info!("re-INVITE while another is still open: 491");
                        respond(&handle, StatusCode::RequestPending, None, None).await;
                    }
                }
            }
            DialogState::Options(_, _, handle) => {
                respond(&handle, StatusCode::OK, Some(vec![allow_header()]), None).await
            }
            DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                respond(
                    &handle,
                    StatusCode::MethodNotAllowed,
                    Some(vec![allow_header()]),
                    None,
                )
                .await
            }
            _ => {}
        }
    }

    /// The CSeq of the latest ACK the dialog has seen.
    fn last_ack_cseq(&self) -> Option<u32> {
        self.dialog
            .last_remote_ack()
            .and_then(|ack| ack.cseq_header().ok().and_then(|c| c.seq().ok()))
    }

    /// Answers the held re-INVITE as the dialog's rules decided.
    async fn settle_held(&mut self, held: Held) {
        let Some((req, handle)) = self.held.take() else {
            return;
        };
        match held {
            Held::Accept => self.on_reinvite(&req, &handle).await,
            Held::Pending => {
                info!("re-INVITE while another is still open: 491");
                respond(&handle, StatusCode::RequestPending, None, None).await;
            }
        }
    }

    async fn on_reinvite(&mut self, req: &Request, handle: &TransactionHandle) {
        self.on_reoffer(req, handle).await;
        self.rules
            .reinvite_answered(req.cseq_header().ok().and_then(|c| c.seq().ok()));
    }

    /// Late offer: our offer went in the 200, the answer comes in the ACK.
    fn take_late_answer(&mut self) -> bool {
        let Some(ack) = self.dialog.last_remote_ack() else {
            return false;
        };
        match late_answer(&ack.body) {
            Ok((answer, neg)) => {
                let hold = !neg.local_direction.sends();
                self.apply_media(neg, hold);
                self.offer = Some(answer);
                true
            }
            Err(e) => {
                warn!(error = %e, "ACK carried no usable SDP answer to our offer");
                false
            }
        }
    }

    /// re-INVITE or UPDATE: hold, unhold, a new address or codec.
    async fn on_reoffer(&mut self, req: &Request, handle: &TransactionHandle) {
        match reoffer(&req.body) {
            Reoffer::OfferWanted => {
                // An offerless re-INVITE asks for our offer; the current session stays.
                self.local.version += 1;
                respond_sdp(handle, sdp::offer(&self.local)).await;
            }
            Reoffer::Answer { offer, media, hold } => {
                self.local.version += 1;
                respond_sdp(handle, sdp::answer(&self.local, &offer, &media)).await;
                info!(
                    direction = media.local_direction.attribute(),
                    "session modified"
                );
                self.latched = None;
                self.apply_media(media, hold);
                self.offer = Some(offer);
            }
            Reoffer::Refuse(warning) => {
                let warning = Header::Warning(warning.into());
                respond(
                    handle,
                    StatusCode::NotAcceptableHere,
                    Some(vec![warning]),
                    None,
                )
                .await;
            }
        }
    }

    fn apply_media(&mut self, neg: Negotiated, hold: bool) {
        let now = Instant::now();
        self.host.call.handle(now, CallInput::Codec(neg.codec));
        self.rtp
            .set_negotiated(neg.codec, neg.payload_type, neg.telephone_event);
        self.host.call.handle(now, CallInput::Hold(hold));
        self.media = Some(neg);
    }

    fn on_rtp(&mut self, now: Instant, packet: &[u8], from: SocketAddr) {
        let Ok(p) = parse_rtp(packet) else {
            metrics::counter!(m::SIP_MESSAGES_REJECTED_TOTAL, "reason" => "bad_rtp").increment(1);
            return;
        };
        if self.latched.is_none() {
            self.latched = Some(from);
        }
        let speech = self.host.daemon.asr.is_some();
        self.rtp.on_packet(now, &p, &mut self.host.call, speech);
    }

    /// Takes what the caller sent since the last frame. Reading on the frame clock instead
    /// of on every packet halves a call's wake-ups (at 1,000 calls, 50,000 a second fewer),
    /// which is what keeps the outgoing frames on time; a key press or the start of speech
    /// is seen at most one frame (20 ms) later. At most `MAX_READ_PER_FRAME` packets are
    /// read per frame: a flood beyond that is left to the kernel's socket buffer to drop.
    fn drain_rtp(&mut self, now: Instant, buf: &mut [u8]) {
        for _ in 0..MAX_READ_PER_FRAME {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => self.on_rtp(now, &buf[..n], from),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // ICMP errors reported on the socket (port unreachable): nothing to read.
                Err(_) => continue,
            }
        }
    }

    fn send_frames(&mut self, now: Instant) {
        let dest = self.latched.or(self.media.as_ref().and_then(|n| n.remote));
        let mut packets = Vec::new();
        self.rtp
            .due_packets(now, &mut self.host.call, dest.is_some(), &mut packets);
        if let Some(dest) = dest {
            for p in packets {
                // Non-blocking: a full socket buffer loses this frame, it never stalls the call.
                if self.socket.send_to(&p, dest).is_ok() {
                    self.rtp.sent();
                }
            }
        }
    }
}

/// The status code a REFER NOTIFY reports (its sipfrag body), if it is one.
fn refer_notify_status(req: &Request) -> Option<u16> {
    let event = req.headers().iter().find_map(|h| {
        let s = h.to_string();
        let (name, value) = s.split_once(':')?;
        let name = name.trim();
        // `o` is Event's compact form (RFC 6665 §8.2.1).
        (name.eq_ignore_ascii_case("event") || name == "o").then(|| value.trim().to_string())
    })?;
    refer_progress(&event, &req.body)
}
