//! One tokio task per call: it owns the call's state machine, its RTP socket and its
//! dialog events, and does only I/O — every decision is the pure [`Call`]'s.

use super::agent::{self, Dial, Leg, LegUpdate};
use super::own::{self, OwnLeg};
use super::reply::{allow_value, contact_for, contact_for_dialog, reply, respond};
use super::signalling::{
    news_of_event, news_of_state, stack_headers, InDialog, Inbound, InviteFacts, News, Responder,
    Signalling,
};
use crate::call::LegEvent;
use crate::call::{CallInput, Outcome};
use crate::io::call::alarm::Alarm;
use crate::io::call::host::{CallHost, NewCall, Signal};
use crate::io::daemon::Daemon;
use crate::io::media::ports::RtpSocket;
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
use crate::sip::uas::{phrase, Body};
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

/// The most RTP packets a call reads per 20 ms frame (3,200 a second: far beyond any
/// phone, well past `media.max_rtp_packets_per_s`, which counts what is over its cap).
const MAX_READ_PER_FRAME: usize = 64;

/// Entry point for a new INVITE (no To tag), from rsipstack or the own layer. Refusals
/// are answered here; accepted calls run until they end.
pub async fn run(invite: Inbound, received: Instant, daemon: Arc<Daemon>) {
    let facts = invite.facts();
    let flow = daemon.flows.load().route(&facts.dialled);
    let span = info_span!("call", call_id = %facts.call_id, flow = %flow.name);
    async move {
        debug!(dialled = %facts.dialled, "INVITE");
        let retry = || vec![("Retry-After", daemon.limits.retry_after_s.to_string())];
        if daemon.draining.load(std::sync::atomic::Ordering::Acquire) {
            info!("call refused: shutting down");
            m_calls_total("rejected_draining");
            invite.refuse(503, retry(), "draining");
            return;
        }
        let view = InviteView {
            require: facts.require.as_deref(),
            content_type: facts.content_type.as_deref(),
            body: &facts.body,
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
                let headers = refusal.header.into_iter().map(refusal_header).collect();
                invite.refuse(refusal.status, headers, refusal.reason);
                return;
            }
        };
        let Some(admission) = daemon.admit(flow.overflow.is_some()) else {
            info!("call refused: at capacity");
            m_calls_total("rejected_capacity");
            metrics::counter!(m::LIMITS_HIT_TOTAL, "limit" => "calls").increment(1);
            invite.refuse(503, retry(), "capacity");
            return;
        };
        let socket = match daemon.rtp_ports.bind() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "no RTP port");
                m_calls_total("rejected_no_port");
                invite.refuse(503, vec![], "no_rtp_port");
                return;
            }
        };
        let overflow = admission.overflow;
        metrics::gauge!(m::CALLS_ACTIVE).increment(1.0);
        let start = Start {
            received,
            daemon,
            flow,
            facts,
            offer,
            socket,
            overflow,
        };
        let outcome = CallTask::start(invite, start).await;
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

fn refusal_header(h: RefusalHeader) -> (&'static str, String) {
    match h {
        RefusalHeader::Unsupported(tags) => ("Unsupported", tags),
        RefusalHeader::Accept(types) => ("Accept", types.to_string()),
        RefusalHeader::Warning(w) => ("Warning", w),
    }
}

/// What [`CallTask::start`] takes besides the INVITE: an admitted call and its media.
struct Start {
    received: Instant,
    daemon: Arc<Daemon>,
    flow: Arc<crate::flow::Flow>,
    facts: InviteFacts,
    offer: Option<RemoteAudio>,
    socket: RtpSocket,
    overflow: bool,
}

/// What [`CallTask::outbound`] takes: an answered client dialog and its media.
pub struct Outbound {
    pub daemon: Arc<Daemon>,
    pub dialog: InviteDialog,
    pub states: rsipstack::dialog::dialog::DialogStateReceiver,
    pub socket: RtpSocket,
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
    /// The call's dialog: rsipstack's or the own layer's leg.
    sig: Signalling,
    socket: RtpSocket,
    local: LocalAudio,
    offer: Option<RemoteAudio>,
    media: Option<Negotiated>,
    rtp: RtpMedia,
    /// Where the caller's RTP comes from (symmetric RTP, RFC 4961); wins over the SDP address.
    latched: Option<SocketAddr>,
    /// The dialog's rules: transfers held for the ACK, overlapping re-INVITEs, BYE timing.
    rules: DialogRules,
    /// A re-INVITE waiting for the previous one's ACK (see `DialogRules::on_reinvite`).
    held: Option<(InDialog, Responder)>,
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
    async fn start(invite: Inbound, start: Start) -> &'static str {
        let (daemon, facts, socket) = (start.daemon, start.facts, start.socket);
        let (sig, mut stack_tx) = match invite {
            Inbound::Stack(tx) => {
                let tx = *tx;
                let (state_tx, state_rx) = daemon.dialogs.new_dialog_state_channel();
                let contact = contact_for(&daemon, &tx);
                let dialog = match daemon
                    .dialogs
                    .get_or_create_server_invite(&tx, state_tx, None, contact)
                {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(error = %e, "cannot create dialog");
                        reply(tx, StatusCode::ServerInternalError, vec![], "no_dialog");
                        return "failed";
                    }
                };
                let acked = daemon.acks.track(dialog.id().to_string());
                let sig = Signalling::Stack {
                    dialog,
                    acked,
                    states: Some(state_rx),
                };
                (sig, Some(tx))
            }
            Inbound::Own(own) => (Signalling::Own(own), None),
        };
        let media = start.offer.as_ref().and_then(|o| sdp::negotiate(o).ok());
        let codec = media.as_ref().map(|n| n.codec).unwrap_or(Codec::Pcmu);
        let port = socket.port();
        let new = NewCall {
            outbound: None,
            call_id: facts.call_id.clone(),
            transport: facts.transport,
            caller: facts.caller.clone(),
            dialled: facts.dialled,
            flow: start.flow,
            overflow: start.overflow,
            codec,
            received: start.received,
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
        let mut task = CallTask::new(host, sig, socket, local, rtp);
        (task.offer, task.media) = (start.offer, media);
        (task.caller, task.call_id) = (facts.caller, facts.call_id);
        // Queue 180/200 before the transaction task starts so they go out in order. Every
        // call rings at once (the pure call's first output), so no 100 Trying goes first:
        // RFC 3261 §17.2.1 asks for one only when no provisional follows within 200 ms, and
        // leaving it out spares a packet per call on the answer path.
        let mut outcome = task.carry_out(Instant::now());
        let invite_tx = match (&task.sig, stack_tx.take()) {
            (Signalling::Stack { dialog, .. }, Some(mut tx)) => {
                let mut invite_dialog = dialog.clone();
                Some(tokio::spawn(async move {
                    if let Err(e) = invite_dialog.handle(&mut tx).await {
                        debug!(error = %e, "INVITE transaction");
                    }
                }))
            }
            _ => None,
        };
        if outcome.is_none() {
            outcome = Some(task.run(events_rx).await);
        }
        // A call that ended before the ACK (the caller's BYE crossed our 200) must not keep
        // retransmitting that 200: dropping the transaction stops its timers. A CANCELled
        // one keeps its transaction, which still has to see the 487 acknowledged. (The own
        // leg does both itself.)
        if !task.host.call.is_acked() && outcome != Some(Outcome::Abandoned) {
            if let Some(t) = invite_tx {
                t.abort();
            }
        }
        let outcome = outcome.unwrap_or(Outcome::Failed);
        task.wind_up(outcome);
        outcome.as_str()
    }

    /// A call with no media negotiated yet and no caller named (set by the caller of this).
    fn new(
        host: CallHost,
        sig: Signalling,
        socket: RtpSocket,
        local: LocalAudio,
        rtp: RtpMedia,
    ) -> CallTask {
        let (leg_tx, leg_rx) = mpsc::channel(16);
        CallTask {
            host,
            sig,
            socket,
            local,
            offer: None,
            media: None,
            rtp,
            latched: None,
            rules: DialogRules::default(),
            held: None,
            legs: HashMap::new(),
            leg_updates: (leg_tx, Some(leg_rx)),
            relay: None,
            caller: String::new(),
            call_id: String::new(),
        }
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
        let sig = Signalling::Stack {
            dialog,
            acked,
            states: Some(states),
        };
        let mut task = CallTask::new(host, sig, socket, local, rtp);
        let _ = task.rules.on_initial_ack();
        (task.offer, task.media) = (Some(remote), Some(media));
        (task.caller, task.call_id) = (format!("sip:{number}@callback"), call_id);
        let now = Instant::now();
        task.rtp.start(now);
        let mut outcome = task.carry_out(now);
        if outcome.is_none() {
            outcome = Some(task.run(events_rx).await);
        }
        let outcome = outcome.unwrap_or(Outcome::Failed);
        task.wind_up(outcome);
        outcome.as_str()
    }

    /// After the call: the relay and every agent leg stop, the dialog is forgotten (the
    /// own leg first lingers until its transactions are over).
    fn wind_up(mut self, outcome: Outcome) {
        self.relay = None;
        for (_, leg) in self.legs.drain() {
            leg.stop.cancel();
        }
        match self.sig {
            Signalling::Stack { dialog, .. } => {
                self.host.daemon.dialogs.remove_dialog(&dialog.id());
                self.host.daemon.acks.forget(&dialog.id().to_string());
            }
            Signalling::Own(mut own) => {
                // A re-INVITE held for an ACK that never came is answered: the call is gone.
                if let Some((_, Responder::Own(id))) = self.held.take() {
                    let status = (481, "Call/Transaction Does Not Exist");
                    own.leg.respond(Instant::now(), &id, status, &[], None);
                }
                // A call that ended while still ringing (shutdown, or the ring budget
                // spent without an answer) gets a final response here.
                let (status, headers) = match outcome {
                    Outcome::Drained => (
                        (503, "Service Unavailable"),
                        vec![(
                            "Retry-After",
                            self.host.daemon.limits.retry_after_s.to_string(),
                        )],
                    ),
                    _ => ((480, "Temporarily Unavailable"), vec![]),
                };
                own.linger(status, headers);
            }
        }
    }

    async fn run(&mut self, mut events: mpsc::Receiver<CallInput<'static>>) -> Outcome {
        let mut buf = vec![0u8; 2048];
        let (mut frame_alarm, mut call_alarm) = (Alarm::default(), Alarm::default());
        let (mut dialog_alarm, mut leg_alarm) = (Alarm::default(), Alarm::default());
        let shutdown = self.host.daemon.shutdown.clone();
        let mut leg_updates = self.leg_updates.1.take().expect("run is called once");
        // The signalling's inputs, held here so the loop can wait on them beside the rest.
        let (mut states, mut inbox) = match &mut self.sig {
            Signalling::Stack { states, .. } => (states.take(), None),
            Signalling::Own(own) => (None, own.take_inbox()),
        };
        self.drain_leg().await;
        let outcome = loop {
            // Bridged, the relay carries the media: the frame clock sleeps (its pacer
            // catches up, skipping the missed frames, when the call's own audio resumes).
            frame_alarm.set(self.rtp.next_deadline().filter(|_| self.relay.is_none()));
            call_alarm.set_by(self.host.call.poll_timeout());
            dialog_alarm.set(self.rules.poll_timeout());
            leg_alarm.set(self.sig.poll_timeout());
            tokio::select! {
                _ = frame_alarm.ring() => {
                    let now = Instant::now();
                    self.drain_rtp(now, &mut buf);
                    self.send_frames(now);
                }
                Some(update) = leg_updates.recv() => self.on_leg_update(update),
                _ = call_alarm.ring() => self.host.call.handle(Instant::now(), CallInput::Timeout),
                _ = dialog_alarm.ring() => {
                    let acked = self.sig.last_ack_cseq();
                    if let Some(held) = self.rules.handle_timeout(Instant::now(), acked) {
                        self.settle_held(held).await;
                    }
                }
                state = next_state(&mut states) => match state {
                    Some(s) => {
                        let news = match &self.sig {
                            Signalling::Stack { dialog, .. } => news_of_state(s, dialog),
                            Signalling::Own(_) => None,
                        };
                        if let Some(news) = news {
                            self.on_news(news).await;
                        }
                    }
                    None => self.host.call.handle(Instant::now(), CallInput::PeerHangup),
                },
                Some((bytes, from)) = own::recv(&mut inbox) => {
                    if let Signalling::Own(own) = &mut self.sig {
                        own.leg.on_message(Instant::now(), &bytes, from);
                    }
                    self.drain_leg().await;
                }
                _ = leg_alarm.ring() => {
                    if let Signalling::Own(own) = &mut self.sig {
                        own.leg.on_timeout(Instant::now());
                    }
                    self.drain_leg().await;
                }
                Some(ev) = events.recv() => self.host.call.handle(Instant::now(), ev),
                _ = shutdown.cancelled() => self.host.call.handle(Instant::now(), CallInput::Shutdown),
            }
            let now = Instant::now();
            self.host.sync_outages(now);
            if let Some(outcome) = self.carry_out(now) {
                break outcome;
            }
            self.drain_leg().await;
        };
        if let Signalling::Own(own) = &mut self.sig {
            own.put_inbox(inbox);
        }
        outcome
    }

    /// Sends what the own leg has to send and handles what it reports, until it has
    /// nothing more (handling a request queues its response).
    async fn drain_leg(&mut self) {
        loop {
            let news = match &mut self.sig {
                Signalling::Own(own) => match own.next_event() {
                    Some(event) => news_of_event(own, event),
                    None => return,
                },
                Signalling::Stack { .. } => return,
            };
            self.on_news(news).await;
        }
    }

    /// Carries out what the call decided; returns the outcome once it has ended.
    fn carry_out(&mut self, now: Instant) -> Option<Outcome> {
        while let Some(signal) = self.host.next_signal(now) {
            match signal {
                Signal::Ringing => match &mut self.sig {
                    Signalling::Stack { dialog, .. } => {
                        if let Err(e) = dialog.ringing(None, None) {
                            debug!(error = %e, "180 Ringing");
                        }
                    }
                    Signalling::Own(own) => own.leg.provisional(now, (180, "Ringing")),
                },
                Signal::Answer => self.answer(now),
                Signal::Refer { target, context } => {
                    if let Some((target, context)) = self.rules.transfer(target, context) {
                        self.send_refer(target, context);
                    }
                }
                Signal::Hangup => match &mut self.sig {
                    Signalling::Stack { dialog, .. } => {
                        let d = dialog.clone();
                        let at = self.rules.bye_at(now);
                        tokio::spawn(async move {
                            tokio::time::sleep_until(at.into()).await;
                            if let Err(e) = d.bye().await {
                                debug!(error = %e, "BYE");
                            }
                        });
                    }
                    // One owner sends in order: the BYE cannot overtake the 200.
                    Signalling::Own(own) => own.bye(now),
                },
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
        let caller_socket = match self.socket.share() {
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
        match &mut self.sig {
            Signalling::Stack { dialog, .. } => {
                let headers = vec![Header::ContentType("application/sdp".into())];
                if let Err(e) = dialog.accept(Some(headers), Some(body.into_bytes())) {
                    warn!(error = %e, "200 OK");
                    return;
                }
            }
            Signalling::Own(own) => {
                let allow = allow_value();
                let server = &self.host.daemon.user_agent;
                let headers = [("Allow", allow.as_str()), ("Server", server.as_str())];
                own.leg.accept(now, &headers, body.as_bytes());
            }
        }
        self.rtp.start(now);
    }

    fn send_refer(&mut self, target: String, ctx: TransferContext) {
        let (refer_to, extra) = context::refer(&target, &ctx, self.host.daemon.transfer_context);
        let referred_by = contact_for_dialog(&self.host.daemon).map(|c| format!("<{c}>"));
        info!(target = %target, "transferring");
        let dialog = match &mut self.sig {
            Signalling::Stack { dialog, .. } => dialog.clone(),
            Signalling::Own(own) => {
                let mut headers: Vec<(&str, &str)> = vec![("Refer-To", refer_to.as_str())];
                headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
                if let Some(by) = &referred_by {
                    headers.push(("Referred-By", by.as_str()));
                }
                own.leg
                    .request(Instant::now(), "REFER", &OwnLeg::branch(), &headers, None);
                return;
            }
        };
        let mut headers: Vec<Header> = extra
            .into_iter()
            .map(|(k, v)| Header::Other(k.into(), v))
            .collect();
        if let Some(by) = referred_by {
            headers.push(Header::ReferredBy(by.into()));
        }
        let events = self.host.events.clone();
        tokio::spawn(async move {
            let code = match dialog
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
            refer_answered(code);
            let _ = events.send(CallInput::ReferAnswered(code)).await;
        });
    }

    async fn on_news(&mut self, news: News) {
        let now = Instant::now();
        match news {
            // An ACK comes again after every re-INVITE's 200.
            News::Acked { .. } if self.rules.is_acked() => {
                if let Some(held) = self.rules.on_reinvite_ack(self.sig.last_ack_cseq()) {
                    self.settle_held(held).await;
                }
            }
            News::Acked { body } => {
                if self.offer.is_none() && !self.take_late_answer(&body) {
                    self.host.call.handle(now, CallInput::Abort);
                    return;
                }
                self.host.answer_confirmed();
                self.host.call.handle(now, CallInput::Acked);
                if let Signalling::Stack { acked, .. } = &self.sig {
                    acked.send_replace(true);
                }
                if let Some((t, c)) = self.rules.on_initial_ack() {
                    self.send_refer(t, c);
                }
            }
            News::Ended(input) => self.host.call.handle(now, input),
            News::Answered { method, code } => {
                if method == "REFER" {
                    refer_answered(code);
                    self.host.call.handle(now, CallInput::ReferAnswered(code));
                }
            }
            News::Request(req, responder) => self.on_request(now, req, responder).await,
        }
    }

    /// A request inside the dialog.
    async fn on_request(&mut self, now: Instant, req: InDialog, responder: Responder) {
        match req.method.as_str() {
            "INFO" => match parse_info(&req.content_type, &req.body) {
                Some(key) => {
                    self.respond(&responder, 200, vec![], None).await;
                    self.host.call.handle(now, CallInput::Dtmf(key));
                }
                None => {
                    let accept = "application/dtmf-relay, application/dtmf".to_string();
                    self.respond(&responder, 415, vec![("Accept", accept)], None)
                        .await;
                }
            },
            "NOTIFY" => {
                self.respond(&responder, 200, vec![], None).await;
                let code = req
                    .event
                    .as_deref()
                    .and_then(|event| refer_progress(event, &req.body));
                if let Some(code) = code {
                    debug!(code, "transfer progress");
                    self.host.call.handle(now, CallInput::ReferNotify(code));
                }
            }
            "UPDATE" => self.on_reoffer(&req, &responder).await,
            "INVITE" => match self.rules.on_reinvite(now, self.sig.last_ack_cseq()) {
                ReinviteVerdict::Accept => self.on_reinvite(&req, &responder).await,
                ReinviteVerdict::Hold => self.held = Some((req, responder)),
                ReinviteVerdict::Pending => {
                    info!("re-INVITE while another is still open: 491");
                    self.respond(&responder, 491, vec![], None).await;
                }
            },
            "OPTIONS" => {
                self.respond(&responder, 200, vec![("Allow", allow_value())], None)
                    .await
            }
            method => {
                // Methods we know and do not take inside a call get 405 with what we
                // take; methods we do not know at all, 501 (RFC 3261 §8.2.1).
                let known = matches!(
                    method,
                    "REFER" | "MESSAGE" | "PUBLISH" | "SUBSCRIBE" | "PRACK" | "REGISTER"
                );
                let code = if known { 405 } else { 501 };
                self.respond(&responder, code, vec![("Allow", allow_value())], None)
                    .await
            }
        }
    }

    /// Answers a request inside the dialog through whichever layer carries it.
    async fn respond(
        &mut self,
        responder: &Responder,
        code: u16,
        headers: Vec<(&'static str, String)>,
        sdp: Option<String>,
    ) {
        match (responder, &mut self.sig) {
            (Responder::Stack(handle), _) => {
                let mut headers = stack_headers(headers);
                if sdp.is_some() {
                    headers.push(Header::ContentType("application/sdp".into()));
                }
                let body = sdp.map(String::into_bytes);
                respond(handle, StatusCode::from(code), Some(headers), body).await
            }
            (Responder::Own(id), Signalling::Own(own)) => {
                let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let body = sdp.as_ref().map(|s| Body {
                    content_type: "application/sdp",
                    bytes: s.as_bytes(),
                });
                own.leg
                    .respond(Instant::now(), id, (code, phrase(code)), &h, body);
            }
            (Responder::Own(_), Signalling::Stack { .. }) => {}
        }
    }

    /// Answers the held re-INVITE as the dialog's rules decided.
    async fn settle_held(&mut self, held: Held) {
        let Some((req, responder)) = self.held.take() else {
            return;
        };
        match held {
            Held::Accept => self.on_reinvite(&req, &responder).await,
            Held::Pending => {
                info!("re-INVITE while another is still open: 491");
                self.respond(&responder, 491, vec![], None).await;
            }
        }
    }

    async fn on_reinvite(&mut self, req: &InDialog, responder: &Responder) {
        self.on_reoffer(req, responder).await;
        self.rules.reinvite_answered(req.cseq);
    }

    /// Late offer: our offer went in the 200, the answer comes in the ACK.
    fn take_late_answer(&mut self, ack_body: &[u8]) -> bool {
        match late_answer(ack_body) {
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
    async fn on_reoffer(&mut self, req: &InDialog, responder: &Responder) {
        match reoffer(&req.body) {
            Reoffer::OfferWanted => {
                // An offerless re-INVITE asks for our offer; the current session stays.
                self.local.version += 1;
                let sdp = sdp::offer(&self.local);
                self.respond(responder, 200, vec![], Some(sdp)).await;
            }
            Reoffer::Answer { offer, media, hold } => {
                self.local.version += 1;
                let sdp = sdp::answer(&self.local, &offer, &media);
                self.respond(responder, 200, vec![], Some(sdp)).await;
                info!(
                    direction = media.local_direction.attribute(),
                    "session modified"
                );
                self.latched = None;
                self.apply_media(media, hold);
                self.offer = Some(offer);
            }
            Reoffer::Refuse(warning) => {
                self.respond(responder, 488, vec![("Warning", warning)], None)
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

/// Counts a REFER's answer.
fn refer_answered(code: u16) {
    let result = if (200..300).contains(&code) {
        "accepted"
    } else {
        "refused"
    };
    metrics::counter!(m::TRANSFERS_TOTAL, "result" => result).increment(1);
}

/// The next state of rsipstack's dialog; pending forever for a call without one.
async fn next_state(states: &mut Option<DialogStateReceiver>) -> Option<DialogState> {
    match states {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
