//! The agent leg of a bridged call: ivrd as the UAC (rsipstack's client dialog) ringing an
//! agent with the call's context, until the agent answers, refuses, the ring timeout passes
//! or the call no longer wants them; then, once answered, until either side hangs up.
//! Each leg is one task; what happens to it comes back to the call's driver as
//! [`LegUpdate`]s.

use super::reply::contact_for_dialog;
use crate::io::daemon::Daemon;
use crate::media::relay::LegMedia;
use crate::metrics as m;
use crate::queue::OfferEnd;
use crate::sip::context::{self, TransferContext};
use crate::sip::dialog::late_answer;
use crate::sip::sdp::{self, LocalAudio};
use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::{Header, StatusCode, StatusCodeKind, Uri};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// How long a CANCEL may take to settle (a 200 OK crossing it is ACKed and ended by the stack).
const CANCEL_GRACE: Duration = Duration::from_secs(4);

/// An answered agent leg's media: its RTP socket and what it negotiated.
pub struct AnsweredLeg {
    pub socket: std::net::UdpSocket,
    pub remote: Option<SocketAddr>,
    pub media: LegMedia,
}

pub enum LegUpdate {
    Answered { agent: String, leg: AnsweredLeg },
    Failed { agent: String, why: OfferEnd },
    HungUp { agent: String },
}

/// A leg in progress: cancelling `stop` stops its ringing or hangs it up.
pub struct Leg {
    pub stop: CancellationToken,
    /// Set once the agent answered, until the bridge takes it.
    pub answered: Option<AnsweredLeg>,
}

/// What the agent is told about the caller, besides the flow's context.
pub struct Dial {
    pub agent: String,
    pub uri: String,
    pub context: TransferContext,
    pub ring_timeout: Duration,
    /// The caller's From URI (its user part becomes ours towards the agent).
    pub caller: String,
    /// The caller's Call-ID.
    pub call_id: String,
}

/// Starts ringing an agent.
pub fn dial(daemon: Arc<Daemon>, dial: Dial, updates: mpsc::Sender<LegUpdate>) -> Leg {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let agent = dial.agent.clone();
    tokio::spawn(
        async move {
            let result = run(&daemon, &dial, &token, &updates).await;
            let label = match result {
                LegResult::Answered => "answered",
                LegResult::Failed(OfferEnd::NoAnswer) => "no_answer",
                LegResult::Failed(OfferEnd::Busy) => "busy",
                LegResult::Failed(OfferEnd::Failed) => "failed",
                LegResult::Stopped => "cancelled",
            };
            metrics::counter!(m::AGENT_LEGS_TOTAL, "result" => label).increment(1);
            if let LegResult::Failed(why) = result {
                let _ = updates
                    .send(LegUpdate::Failed {
                        agent: dial.agent.clone(),
                        why,
                    })
                    .await;
            }
        }
        .instrument(tracing::info_span!("agent_leg", agent = %agent)),
    );
    Leg {
        stop,
        answered: None,
    }
}

enum LegResult {
    Answered,
    Failed(OfferEnd),
    /// The call stopped wanting this leg: nothing to report.
    Stopped,
}

async fn run(
    daemon: &Arc<Daemon>,
    dial: &Dial,
    stop: &CancellationToken,
    updates: &mpsc::Sender<LegUpdate>,
) -> LegResult {
    let socket = match daemon.rtp_ports.bind() {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no RTP port for the agent leg");
            return LegResult::Failed(OfferEnd::Failed);
        }
    };
    let Some(option) = invite_option(daemon, dial, &socket) else {
        return LegResult::Failed(OfferEnd::Failed);
    };
    let (state_tx, mut states) = daemon.dialogs.new_dialog_state_channel();
    let (dialog, mut invite) = match daemon.dialogs.do_invite_async(option, state_tx) {
        Ok(x) => x,
        Err(e) => {
            warn!(error = %e, "cannot ring the agent");
            return LegResult::Failed(OfferEnd::Failed);
        }
    };
    info!(uri = %dial.uri, "ringing agent");
    let outcome = tokio::select! {
        r = &mut invite => Some(r),
        _ = tokio::time::sleep(dial.ring_timeout) => None,
        _ = stop.cancelled() => None,
    };
    let response = match outcome {
        Some(Ok(Ok((_, resp)))) => resp,
        Some(Ok(Err(e))) => {
            debug!(error = %e, "agent INVITE failed");
            return LegResult::Failed(OfferEnd::Failed);
        }
        Some(Err(_)) => return LegResult::Failed(OfferEnd::Failed),
        None => {
            // Ring timeout or not wanted: CANCEL; a 200 OK that crosses it is ended by the stack.
            let _ = dialog.cancel().await;
            let _ = tokio::time::timeout(CANCEL_GRACE, &mut invite).await;
            daemon.dialogs.remove_dialog(&dialog.id());
            return if stop.is_cancelled() {
                LegResult::Stopped
            } else {
                info!("agent did not answer in time");
                LegResult::Failed(OfferEnd::NoAnswer)
            };
        }
    };
    let resp = match response {
        Some(r) if r.status_code.kind() == StatusCodeKind::Successful => r,
        Some(r) => {
            info!(code = u16::from(r.status_code.clone()), "agent refused");
            return LegResult::Failed(refusal(r.status_code));
        }
        None => return LegResult::Failed(OfferEnd::Failed),
    };
    let media = match late_answer(&resp.body) {
        Ok((_, neg)) => neg,
        Err(e) => {
            warn!(error = %e, "agent answered without a usable SDP answer");
            let _ = dialog.bye().await;
            daemon.dialogs.remove_dialog(&dialog.id());
            return LegResult::Failed(OfferEnd::Failed);
        }
    };
    info!(codec = media.codec.encoding_name(), "agent answered");
    let answered = AnsweredLeg {
        // The relay takes it when the call is bridged: not kept for reuse.
        socket: socket.into_std(),
        remote: media.remote,
        media: LegMedia {
            codec: media.codec,
            payload_type: media.payload_type,
            telephone_event: media.telephone_event,
        },
    };
    let sent = updates
        .send(LegUpdate::Answered {
            agent: dial.agent.clone(),
            leg: answered,
        })
        .await;
    if sent.is_err() {
        let _ = dialog.bye().await;
        daemon.dialogs.remove_dialog(&dialog.id());
        return LegResult::Stopped;
    }
    // Talking: until the agent hangs up or the call ends this leg.
    loop {
        tokio::select! {
            state = states.recv() => match state {
                Some(DialogState::Terminated(..)) | None => {
                    info!("agent hung up");
                    let _ = updates.send(LegUpdate::HungUp { agent: dial.agent.clone() }).await;
                    break;
                }
                Some(_) => {}
            },
            _ = stop.cancelled() => {
                if let Err(e) = dialog.bye().await {
                    debug!(error = %e, "BYE to the agent");
                }
                break;
            }
        }
    }
    daemon.dialogs.remove_dialog(&dialog.id());
    LegResult::Answered
}

/// The INVITE to the agent: our SDP offer, the caller's number as ours, and the call's
/// context as headers (`X-IVR-*`, User-to-User) so the agent never has to ask again.
fn invite_option(
    daemon: &Daemon,
    dial: &Dial,
    socket: &std::net::UdpSocket,
) -> Option<InviteOption> {
    let callee = match Uri::try_from(dial.uri.as_str()) {
        Ok(u) => u,
        Err(e) => {
            warn!(uri = %dial.uri, error = %e, "agent URI");
            return None;
        }
    };
    let contact = Uri::try_from(contact_for_dialog(daemon)?.as_str()).ok()?;
    let user = Uri::try_from(dial.caller.as_str())
        .ok()
        .and_then(|u| u.user().map(|u| u.to_string()))
        .filter(|u| {
            u.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.*#".contains(c))
        })
        .unwrap_or_else(|| "ivrd".to_string());
    let host = contact.host_with_port.to_string();
    let caller = Uri::try_from(format!("sip:{user}@{host}").as_str()).ok()?;
    let local = LocalAudio {
        ip: daemon.media_ip,
        port: socket.local_addr().ok()?.port(),
        session_id: rand::random::<u32>() as u64,
        version: 1,
    };
    let mut headers: Vec<Header> = context::headers(&dial.context)
        .into_iter()
        .map(|(k, v)| Header::Other(k.into(), v))
        .collect();
    headers.push(Header::Other("X-IVR-Agent".into(), dial.agent.clone()));
    headers.push(Header::Other(
        "X-IVR-Caller".into(),
        context::clean(&dial.caller),
    ));
    headers.push(Header::Other(
        "X-IVR-Call-ID".into(),
        context::clean(&dial.call_id),
    ));
    Some(InviteOption {
        caller,
        callee,
        contact,
        content_type: Some("application/sdp".into()),
        offer: Some(sdp::offer(&local).into_bytes()),
        headers: Some(headers),
        ..Default::default()
    })
}

/// What an agent's refusal means: busy (on another call, do not disturb), no answer
/// (unavailable, timed out), or a failure (anything else).
fn refusal(code: StatusCode) -> OfferEnd {
    match u16::from(code) {
        486 | 600 | 603 => OfferEnd::Busy,
        408 | 480 | 487 => OfferEnd::NoAnswer,
        _ => OfferEnd::Failed,
    }
}
