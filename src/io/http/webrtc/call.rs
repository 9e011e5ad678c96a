//! One task per browser call, the WebRTC counterpart of the SIP call task: it owns the call
//! (through [`CallHost`]), its peer connection and its page events, and does only I/O.
//!
//! Signalling maps onto the call like this: the offer is the INVITE (the call rings), our
//! SDP answer is the 200 OK (sent when the call answers), the page's hang-up request or the
//! browser going silent is the BYE, and a transfer, which has no SIP peer to REFER, is shown
//! on the page and settled as `webrtc.transfers` says.

use super::events::PageEvent;
use super::peer::{forward_track, media_channel, Peer};
use super::PhoneCall;
use crate::call::{CallInput, Outcome};
use crate::config::{WebrtcConfig, WebrtcTransfers};
use crate::io::call::alarm::{sleep_until, Alarm};
use crate::io::call::host::{CallHost, NewCall, Signal};
use crate::io::daemon::{Admission, Daemon};
use crate::io::media::rtp::RtpMedia;
use crate::media::g711::Codec;
use crate::media::rtp::parse as parse_rtp;
use crate::media::rtp::RtpIn;
use crate::metrics as m;
use crate::sip::context::TransferContext;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtp;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Everything a browser call starts with, once its offer has been answered by a peer.
pub struct Start {
    pub daemon: Arc<Daemon>,
    pub new: NewCall,
    pub peer: Peer,
    pub page: Arc<PhoneCall>,
    /// The request waiting for our SDP answer.
    pub answer_to: oneshot::Sender<Answered>,
    /// Its slot among `limits.max_calls`, held until the call has ended.
    pub admission: Admission,
    pub config: WebrtcConfig,
}

/// The call's task: runs it to its end, then counts it and tells the page.
pub async fn run(start: Start) {
    info!("browser call");
    metrics::gauge!(m::CALLS_ACTIVE).increment(1.0);
    let received = start.new.received;
    let (host, events) = CallHost::new(start.daemon, start.new);
    let rtp = RtpMedia::new(
        Codec::Pcmu,
        start.peer.payload_type,
        start.peer.telephone_event,
        "webrtc",
    );
    let mut call = BrowserCall {
        host,
        peer: start.peer,
        rtp,
        page: start.page.clone(),
        answer_to: Some(start.answer_to),
        received,
        connect_timeout: start.config.connect_timeout(),
        disconnect_timeout: start.config.disconnect_timeout(),
        transfers: start.config.transfers,
        connected: None,
        last_media: received,
        reason: EndReason::Flow,
    };
    let outcome = call.run(events).await;
    let reason = call.reason;
    // The registry entry and the call slot go before the call counts as ended.
    drop(call);
    drop(start.admission);
    metrics::gauge!(m::CALLS_ACTIVE).decrement(1.0);
    metrics::counter!(m::CALLS_TOTAL, "outcome" => outcome.as_str(), "transport" => "webrtc")
        .increment(1);
    info!(
        outcome = outcome.as_str(),
        reason = reason.as_str(),
        "call ended"
    );
    let page = start.page;
    let _ = page.ended_at.set(Instant::now());
    page.events.push(PageEvent::Ended {
        outcome: outcome.as_str().into(),
        reason: reason.as_str().into(),
    });
}

/// What the HTTP request that carried the offer gets back once the call answers.
pub struct Answered {
    pub sdp: String,
    pub answer_ms: f64,
}

/// Why the call is ending, when it was not the flow's decision (shown on the page and logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The flow hung up or transferred the caller.
    Flow,
    /// The page asked to hang up (button, tab closed).
    Page,
    /// The request that carried the offer went away before the answer.
    RequestGone,
    /// ICE/DTLS never connected within `connect_timeout_ms`.
    NeverConnected,
    /// No audio from the browser for `disconnect_timeout_ms`.
    MediaTimeout,
    /// The connection failed or was closed under us.
    ConnectionLost,
    /// The daemon is stopping.
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Flow => "flow",
            EndReason::Page => "page_hangup",
            EndReason::RequestGone => "request_gone",
            EndReason::NeverConnected => "never_connected",
            EndReason::MediaTimeout => "media_timeout",
            EndReason::ConnectionLost => "connection_lost",
            EndReason::Shutdown => "shutdown",
        }
    }
}

struct BrowserCall {
    host: CallHost,
    peer: Peer,
    rtp: RtpMedia,
    page: Arc<PhoneCall>,
    /// The request waiting for our SDP answer; taken when the call answers.
    answer_to: Option<oneshot::Sender<Answered>>,
    received: Instant,
    connect_timeout: Duration,
    disconnect_timeout: Duration,
    transfers: WebrtcTransfers,
    /// When the browser's media connected: its first packet arrived, which also proves that
    /// its end of DTLS-SRTP is up (ours can be a few packets ahead, and packets the browser
    /// cannot decrypt yet would cut the start of the greeting).
    connected: Option<Instant>,
    /// When the last packet from the browser arrived.
    last_media: Instant,
    reason: EndReason,
}

impl BrowserCall {
    /// Runs the call until it ends; the peer connection is closed and every helper task
    /// stopped before this returns.
    async fn run(&mut self, mut events: mpsc::Receiver<CallInput<'static>>) -> Outcome {
        let page = self.page.clone();
        self.host.set_tap(Box::new(move |out| {
            if let Some(e) = PageEvent::from_output(out) {
                page.events.push(e);
            }
        }));
        let (media_tx, mut media) = media_channel();
        let mut readers = JoinSet::new();
        let mut state = self.peer.state.clone();
        let shutdown = self.host.daemon.shutdown.clone();
        let hangup = self.page.hangup.clone();
        let mut outcome = self.carry_out(Instant::now());
        let (mut frame_alarm, mut call_alarm) = (Alarm::default(), Alarm::default());
        while outcome.is_none() {
            frame_alarm.set(self.rtp.next_deadline());
            call_alarm.set_by(self.host.call.poll_timeout());
            let watchdog = self.watchdog();
            tokio::select! {
                _ = frame_alarm.ring() => self.send_frames(Instant::now()).await,
                _ = call_alarm.ring() => self.host.call.handle(Instant::now(), CallInput::Timeout),
                _ = sleep_until(Some(watchdog)) => {
                    if self.connected.is_some() {
                        self.peer_gone(EndReason::MediaTimeout);
                    } else {
                        // No media path ever came up: a failed call, not a caller leaving.
                        self.reason = EndReason::NeverConnected;
                        self.host.call.handle(Instant::now(), CallInput::Abort);
                    }
                }
                changed = state.changed() => match changed {
                    Ok(()) => {
                        let s = *state.borrow_and_update();
                        self.on_state(s);
                    }
                    Err(_) => self.peer_gone(EndReason::ConnectionLost),
                },
                Some(track) = self.peer.tracks.recv() => {
                    readers.spawn(forward_track(track, media_tx.clone()));
                }
                Some(packet) = media.recv() => self.on_rtp(&packet),
                Some(input) = events.recv() => {
                    if let CallInput::Transcript { text, .. } = &input {
                        self.page.events.push(PageEvent::Transcript { text: text.clone() });
                    }
                    self.host.call.handle(Instant::now(), input);
                }
                _ = request_gone(&mut self.answer_to) => {
                    self.reason = EndReason::RequestGone;
                    self.answer_to = None;
                    self.host.call.handle(Instant::now(), CallInput::Cancelled);
                }
                _ = hangup.cancelled() => self.peer_gone(EndReason::Page),
                _ = shutdown.cancelled() => {
                    self.reason = EndReason::Shutdown;
                    self.host.call.handle(Instant::now(), CallInput::Shutdown);
                }
            }
            let now = Instant::now();
            self.host.sync_outages(now);
            outcome = self.carry_out(now);
        }
        self.peer.close().await;
        readers.shutdown().await;
        outcome.unwrap_or(Outcome::Failed)
    }

    /// The browser is gone (or asked to go): the caller hung up.
    fn peer_gone(&mut self, reason: EndReason) {
        self.reason = reason;
        self.host.call.handle(Instant::now(), CallInput::PeerHangup);
    }

    /// When to give up on the browser: its audio must arrive within the connect timeout,
    /// then keep arriving (browsers send silence too, so a gap means it is gone).
    fn watchdog(&self) -> Instant {
        match self.connected {
            None => self.received + self.connect_timeout,
            Some(_) => self.last_media + self.disconnect_timeout,
        }
    }

    fn on_state(&mut self, state: RTCPeerConnectionState) {
        match state {
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                self.peer_gone(EndReason::ConnectionLost)
            }
            // Connected: media starts with the browser's first packet. Disconnected may
            // pass: the media watchdog decides.
            _ => {}
        }
    }

    /// Carries out what the call decided; the outcome once it has ended.
    fn carry_out(&mut self, now: Instant) -> Option<Outcome> {
        while let Some(signal) = self.host.next_signal(now) {
            match signal {
                Signal::Ringing => self.page.events.push_at(now, PageEvent::Ringing),
                Signal::Answer => self.answer(now),
                Signal::Refer { target, context } => self.transfer(now, target, context),
                // The connection is closed once the call has ended, whoever ended it.
                Signal::Hangup => debug!("hanging up the browser"),
                Signal::Ended(outcome) => return Some(outcome),
                // The test phone has no RTP to relay and never joins a queue (see
                // `CallHost::join_queue`); should an offer come all the same, it fails.
                Signal::DialAgent { agent, .. } => {
                    info!(agent = %agent, "the test phone cannot be bridged to an agent");
                    let why = crate::queue::OfferEnd::Failed;
                    let event = crate::call::LegEvent::Failed(why);
                    self.host
                        .call
                        .handle(now, CallInput::AgentLeg { agent, event });
                }
                Signal::CancelAgent { .. } | Signal::Bridge { .. } => {}
            }
        }
        None
    }

    /// The call answers: our SDP answer goes to the waiting request, and media starts.
    fn answer(&mut self, now: Instant) {
        let answer_ms = ms(now.saturating_duration_since(self.received));
        let Some(to) = self.answer_to.take() else {
            return;
        };
        let sent = to.send(Answered {
            sdp: self.peer.answer.clone(),
            answer_ms,
        });
        if sent.is_err() {
            self.reason = EndReason::RequestGone;
            self.host.call.handle(now, CallInput::Cancelled);
            return;
        }
        self.page
            .events
            .push_at(now, PageEvent::Answered { answer_ms });
        // Frames are paced from now on; until the media connects none goes out and the
        // greeting waits (see `send_frames`), so the browser hears it from the start.
        self.rtp.start(now);
    }

    /// There is no SIP peer to REFER: the page shows the transfer with the context a REFER
    /// would carry, and the call settles it as if a PBX had answered.
    fn transfer(&mut self, now: Instant, target: String, context: TransferContext) {
        let headers = crate::sip::context::headers(&context)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let result = match self.transfers {
            WebrtcTransfers::End => "accepted",
            WebrtcTransfers::Fail => "refused",
        };
        info!(target = %target, result, "transfer shown on the test phone");
        self.page.events.push_at(
            now,
            PageEvent::Transfer {
                target,
                headers,
                result,
            },
        );
        match self.transfers {
            WebrtcTransfers::End => {
                self.host.call.handle(now, CallInput::ReferAnswered(202));
                self.host.call.handle(now, CallInput::ReferNotify(200));
            }
            WebrtcTransfers::Fail => self.host.call.handle(now, CallInput::ReferAnswered(603)),
        }
    }

    fn on_rtp(&mut self, packet: &rtp::Packet) {
        let now = Instant::now();
        self.last_media = now;
        if self.connected.is_none() {
            self.connected = Some(now);
            let connect_ms = ms(now.saturating_duration_since(self.received));
            info!(connect_ms, "browser media connected");
            self.page
                .events
                .push_at(now, PageEvent::Connected { connect_ms });
        }
        let p = RtpIn {
            payload_type: packet.header.payload_type,
            marker: packet.header.marker,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            ssrc: packet.header.ssrc,
            payload: &packet.payload,
        };
        let speech = self.host.daemon.asr.is_some();
        self.rtp.on_packet(now, &p, &mut self.host.call, speech);
    }

    async fn send_frames(&mut self, now: Instant) {
        let mut packets = Vec::new();
        let connected = self.connected.is_some();
        self.rtp
            .due_packets(now, &mut self.host.call, connected, &mut packets);
        for bytes in &packets {
            let Ok(p) = parse_rtp(bytes) else {
                // Built by RtpMedia a moment ago: cannot be malformed.
                warn!("dropping an outgoing RTP packet that does not parse");
                continue;
            };
            if self.peer.send(&p).await {
                self.rtp.sent();
            }
        }
    }
}

/// Resolves when the request waiting for the answer has gone away (never when there is none).
async fn request_gone(to: &mut Option<oneshot::Sender<Answered>>) {
    match to {
        Some(to) => to.closed().await,
        None => std::future::pending().await,
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}
