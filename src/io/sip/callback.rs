//! Calling callers back: when a kept place comes up (an agent is already reserved), ivrd
//! places a call to the caller's number through `callbacks.trunk`, as the UAC. Answered,
//! the call runs the queue's callback flow (why ivrd is calling, then the queue, where the
//! reserved agent is offered at once) on the usual call driver. Not answered, busy or
//! failed: the queue service is told, and the place waits for its next attempt.

use super::call::{CallTask, Outbound};
use super::reply::contact_for_dialog;
use crate::io::daemon::Daemon;
use crate::io::queues::{CallbackJob, Queues};
use crate::sip::dialog::late_answer;
use crate::sip::sdp::{self, LocalAudio};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::{StatusCodeKind, Uri};
use rsipstack::transport::SipAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

/// How long a CANCEL may take to settle.
const CANCEL_GRACE: Duration = Duration::from_secs(4);

/// Starts placing calls back for the queue service.
pub async fn start(daemon: Arc<Daemon>, queues: Queues, trunk: String, ring_timeout: Duration) {
    let (tx, mut rx) = mpsc::channel::<CallbackJob>(256);
    queues.set_dialer(tx).await;
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let (daemon, queues, trunk) = (daemon.clone(), queues.clone(), trunk.clone());
            let span = info_span!("callback", key = job.key);
            tokio::spawn(
                async move {
                    let key = job.key;
                    let reached = place(&daemon, &queues, job, &trunk, ring_timeout).await;
                    queues.callback_ended(key, reached).await;
                }
                .instrument(span),
            );
        }
    });
}

/// Places one call back; true when the caller answered (whatever happened after).
async fn place(
    daemon: &Arc<Daemon>,
    queues: &Queues,
    job: CallbackJob,
    trunk: &str,
    ring_timeout: Duration,
) -> bool {
    let Some(flow) = queues.callback_flow(&job.queue) else {
        return false;
    };
    let Some(admission) = daemon.admit(false) else {
        info!("no call slot for the call back now");
        return false;
    };
    let socket = match daemon.rtp_ports.bind() {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no RTP port for the call back");
            return false;
        }
    };
    let Some((option, local)) = invite_option(daemon, &job.number, trunk, &socket) else {
        return false;
    };
    let (state_tx, states) = daemon.dialogs.new_dialog_state_channel();
    let (dialog, mut invite) = match daemon.dialogs.do_invite_async(option, state_tx) {
        Ok(x) => x,
        Err(e) => {
            warn!(error = %e, "cannot place the call back");
            return false;
        }
    };
    info!("calling the caller back");
    let outcome = tokio::select! {
        r = &mut invite => Some(r),
        _ = tokio::time::sleep(ring_timeout) => None,
    };
    let resp = match outcome {
        Some(Ok(Ok((_, Some(resp))))) if resp.status_code.kind() == StatusCodeKind::Successful => {
            resp
        }
        Some(Ok(Ok((_, resp)))) => {
            info!(code = ?resp.map(|r| u16::from(r.status_code)), "the caller did not take the call back");
            return false;
        }
        Some(_) => return false,
        None => {
            info!("the caller did not answer the call back");
            let _ = dialog.cancel().await;
            let _ = tokio::time::timeout(CANCEL_GRACE, &mut invite).await;
            daemon.dialogs.remove_dialog(&dialog.id());
            return false;
        }
    };
    let (remote, media) = match late_answer(&resp.body) {
        Ok(x) => x,
        Err(e) => {
            warn!(error = %e, "the call back was answered without a usable SDP answer");
            let _ = dialog.bye().await;
            daemon.dialogs.remove_dialog(&dialog.id());
            return false;
        }
    };
    let outcome = CallTask::outbound(Outbound {
        daemon: daemon.clone(),
        dialog,
        states,
        socket,
        local,
        remote,
        media,
        flow,
        key: job.key,
        number: job.number,
    })
    .await;
    debug!(outcome, "call back ended");
    drop(admission);
    true
}

/// The INVITE to the caller: `sip:NUMBER@` the trunk's host, sent to the trunk.
fn invite_option(
    daemon: &Daemon,
    number: &str,
    trunk: &str,
    socket: &std::net::UdpSocket,
) -> Option<(InviteOption, LocalAudio)> {
    let trunk_uri = Uri::try_from(trunk).ok()?;
    let host = trunk_uri.host_with_port.to_string();
    let callee = Uri::try_from(format!("sip:{number}@{host}").as_str()).ok()?;
    let contact = Uri::try_from(contact_for_dialog(daemon)?.as_str()).ok()?;
    let caller = contact.clone();
    let local = LocalAudio {
        ip: daemon.media_ip,
        port: socket.local_addr().ok()?.port(),
        session_id: rand::random::<u32>() as u64,
        version: 1,
    };
    let option = InviteOption {
        caller,
        callee,
        contact,
        destination: SipAddr::try_from(&trunk_uri).ok(),
        content_type: Some("application/sdp".into()),
        offer: Some(sdp::offer(&local).into_bytes()),
        ..Default::default()
    };
    Some((option, local))
}
