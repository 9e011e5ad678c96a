//! `ivrd probe`: mystery-shopper calls over real SIP and RTP. ivrd places each probe's call
//! as a UAC (rsipstack, as for agent legs), listens to what the far end says (G.711),
//! presses keys (RFC 4733) and says words (text to speech) when the far end has gone quiet
//! or at given times, takes the transfer it is asked for (REFER: 202, then NOTIFY 200 as a
//! transferee would), and measures answer time, first audio, the outage notice (found in the
//! audio) and the time to a person. `crate::probe` judges and reports.

use super::tts::Tts;
use crate::media::correlate;
use crate::media::dtmf::{event_code, event_payload};
use crate::media::g711::Codec;
use crate::media::rtp::parse as parse_rtp;
use crate::probe::{judge, Observed, ProbeDef, ProbeFile, ProbeStep, Verdict};
use crate::sip::dialog::late_answer;
use crate::sip::sdp::{self, LocalAudio};
use rsipstack::dialog::dialog::{Dialog, DialogState};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Method, StatusCode, StatusCodeKind, Uri};
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// A frame is audible above this mean level (G.711 silence and line hiss stay far below).
const AUDIBLE: f32 = 300.0;
/// The far end has finished a prompt after this long without audible audio.
const QUIET: Duration = Duration::from_millis(1200);
/// A found notice must match its rendering this well (envelope correlation).
const NOTICE_MATCH: f32 = 0.8;
/// How long a key is held, in 20 ms packets, and the gap after it.
const KEY_PACKETS: u16 = 5;
const KEY_GAP: Duration = Duration::from_millis(120);

/// The probe's SIP side: one endpoint for every call of a run.
struct Uac {
    dialogs: Arc<DialogLayer>,
    contact: SocketAddr,
    stop: CancellationToken,
}

impl Uac {
    async fn start(ip: IpAddr) -> Result<Uac, String> {
        let stop = CancellationToken::new();
        let transport = TransportLayer::new(stop.clone());
        let conn = UdpConnection::create_connection(
            SocketAddr::new(ip, 0),
            None,
            Some(stop.child_token()),
        )
        .await
        .map_err(|e| format!("SIP socket on {ip}: {e}"))?;
        let contact = SocketAddr::try_from(conn.get_addr().addr.clone())
            .map_err(|e| format!("SIP socket address: {e}"))?;
        transport.add_transport(conn.into());
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(stop.clone())
            .with_transport_layer(transport)
            .with_user_agent("ivrd-probe")
            .build();
        let mut incoming = endpoint
            .incoming_transactions()
            .map_err(|e| e.to_string())?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        tokio::spawn(async move { endpoint.serve().await });
        let layer = dialogs.clone();
        tokio::spawn(async move {
            while let Some(mut tx) = incoming.recv().await {
                match layer.match_dialog(&tx) {
                    Some(Dialog::Invite(mut d)) => {
                        tokio::spawn(async move {
                            if let Err(e) = d.handle(&mut tx).await {
                                debug!(error = %e, "probe: in-dialog request");
                            }
                        });
                    }
                    _ if tx.original.method == Method::Ack => {}
                    _ => {
                        tokio::spawn(async move {
                            let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                        });
                    }
                }
            }
        });
        Ok(Uac {
            dialogs,
            contact,
            stop,
        })
    }
}

/// Runs every probe of `file`, one after another.
pub async fn run(file: &ProbeFile, tts: Option<Arc<Tts>>) -> Result<Vec<Verdict>, String> {
    let ip = file.local_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let uac = Uac::start(ip).await?;
    let mut verdicts = Vec::new();
    for def in &file.probes {
        let limit = Duration::from_secs(file.timeout_s.unwrap_or(60));
        let observed =
            match tokio::time::timeout(limit, call(&uac, file, def, ip, tts.clone())).await {
                Ok(o) => o,
                Err(_) => Observed {
                    error: Some(format!(
                        "the probe call took longer than {} s",
                        limit.as_secs()
                    )),
                    ..Observed::default()
                },
            };
        let failures = judge(&def.expect, &observed);
        verdicts.push(Verdict {
            name: def.name.clone(),
            human: def.expect.human == Some(true),
            observed,
            failures,
        });
    }
    uac.stop.cancel();
    Ok(verdicts)
}

/// What the probe sends next: nothing but silence, a key being held, or words.
enum Sending {
    Silence,
    Key {
        code: u8,
        timestamp: u32,
        sent: u16,
        ends_left: u8,
    },
    Words(Vec<i16>, usize),
}

async fn call(
    uac: &Uac,
    file: &ProbeFile,
    def: &ProbeDef,
    ip: IpAddr,
    tts: Option<Arc<Tts>>,
) -> Observed {
    let mut o = Observed::default();
    let target = def.target.as_deref().unwrap_or(&file.target);
    let fail = |mut o: Observed, why: String| {
        o.error = Some(why);
        o
    };
    let rtp = match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
        Ok(s) => s,
        Err(e) => return fail(o, format!("RTP socket: {e}")),
    };
    let local_rtp = match rtp.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(o, format!("RTP socket: {e}")),
    };
    let user = file.from_user.clone().unwrap_or_else(|| "probe".into());
    let (Ok(callee), Ok(caller), Ok(contact)) = (
        Uri::try_from(target),
        Uri::try_from(format!("sip:{user}@{}", uac.contact).as_str()),
        Uri::try_from(format!("sip:{user}@{}", uac.contact).as_str()),
    ) else {
        return fail(o, format!("target '{target}' is not a SIP URI"));
    };
    let offer = sdp::offer(&LocalAudio {
        ip,
        port: local_rtp.port(),
        session_id: rand::random::<u32>() as u64,
        version: 1,
    });
    let option = InviteOption {
        caller,
        callee,
        contact,
        content_type: Some("application/sdp".into()),
        offer: Some(offer.into_bytes()),
        ..Default::default()
    };
    let (state_tx, mut states) = uac.dialogs.new_dialog_state_channel();
    let started = Instant::now();
    let ms = |at: Instant| at.saturating_duration_since(started).as_secs_f64() * 1000.0;
    let (dialog, invite) = match uac.dialogs.do_invite_async(option, state_tx) {
        Ok(x) => x,
        Err(e) => return fail(o, format!("INVITE: {e}")),
    };
    let response = match tokio::time::timeout(Duration::from_secs(30), invite).await {
        Ok(Ok(Ok((_, resp)))) => resp,
        Ok(Ok(Err(e))) => return fail(o, format!("INVITE failed: {e}")),
        _ => return fail(o, "no final answer to the INVITE within 30 s".into()),
    };
    let Some(resp) = response else {
        return fail(o, "no final answer to the INVITE".into());
    };
    o.status = Some(u16::from(resp.status_code.clone()));
    if resp.status_code.kind() != StatusCodeKind::Successful {
        uac.dialogs.remove_dialog(&dialog.id());
        return o;
    }
    let answered = Instant::now();
    o.answer_ms = Some(ms(answered));
    let media = match late_answer(&resp.body) {
        Ok((_, neg)) => neg,
        Err(e) => {
            let _ = dialog.bye().await;
            return fail(o, format!("the answer has no usable SDP: {e}"));
        }
    };
    let Some(remote) = media.remote else {
        let _ = dialog.bye().await;
        return fail(o, "the answer has no RTP address".into());
    };
    let codec = media.codec;
    let event_pt = media.telephone_event;

    // The media loop: 20 ms ticks; listen, act, send.
    let mut heard: Vec<i16> = Vec::new();
    let mut first_packet_ms: Option<f64> = None;
    let mut last_audible: Option<Instant> = None;
    let mut audible_since_step = false;
    let mut steps = def.steps.iter().peekable();
    let mut last_step_at = answered;
    let mut queued_keys: Vec<char> = Vec::new();
    let mut sending = Sending::Silence;
    let mut key_gap_until: Option<Instant> = None;
    let (ssrc, mut seq, mut ts): (u32, u16, u32) = (rand::random(), rand::random(), rand::random());
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After the last step: a few seconds to hear what comes, longer when a transfer is
    // expected (the far end says its lead-in first).
    let waits_for_transfer = def.expect.transfer.is_some() || def.expect.human == Some(true);
    let for_notice = def
        .expect
        .outage
        .as_ref()
        .map(|_| def.expect.outage_within_ms.unwrap_or(15_000) + 2000);
    let listen = Duration::from_millis(def.listen_ms.unwrap_or(
        match (waits_for_transfer, for_notice) {
            (_, Some(n)) => n.max(if waits_for_transfer { 20_000 } else { 0 }),
            (true, None) => 20_000,
            (false, None) => 3000,
        },
    ));
    let mut done_at: Option<Instant> = None;
    let mut buf = [0u8; 2048];
    let mut decoded = Vec::with_capacity(160);
    'call: loop {
        tokio::select! {
            _ = tick.tick() => {}
            state = states.recv() => match state {
                Some(DialogState::Refer(_, req, handle)) => {
                    o.transfer_ms = Some(ms(Instant::now()));
                    o.transfer = req.header_value("Refer-To").map(|v| refer_target(&v));
                    o.headers = req
                        .headers
                        .iter()
                        .filter(|h| {
                            let n = h.name().to_ascii_lowercase();
                            n.starts_with("x-ivr-") || n == "user-to-user"
                        })
                        .map(|h| (h.name().to_string(), h.value().trim().to_string()))
                        .collect();
                    let _ = handle.reply(StatusCode::Accepted).await;
                    // As a transferee whose new call went through: the transferor hangs up.
                    let _ = dialog.notify_refer(StatusCode::OK, "terminated;reason=noresource").await;
                    let bye = tokio::time::timeout(Duration::from_secs(3), async {
                        while let Some(s) = states.recv().await {
                            if matches!(s, DialogState::Terminated(..)) {
                                return true;
                            }
                        }
                        false
                    })
                    .await;
                    if !matches!(bye, Ok(true)) {
                        let _ = dialog.bye().await;
                    }
                    break 'call;
                }
                Some(DialogState::Terminated(..)) | None => break 'call,
                Some(DialogState::Notify(_, _, handle)) | Some(DialogState::Info(_, _, handle)) | Some(DialogState::Options(_, _, handle)) => {
                    let _ = handle.reply(StatusCode::OK).await;
                    continue;
                }
                Some(_) => continue,
            },
        }
        let now = Instant::now();
        // Listen.
        while let Ok((n, _from)) = rtp.try_recv_from(&mut buf) {
            let Ok(p) = parse_rtp(&buf[..n]) else {
                continue;
            };
            if p.payload_type != codec.payload_type() {
                continue;
            }
            first_packet_ms.get_or_insert(ms(now));
            decoded.clear();
            codec.decode_into(p.payload, &mut decoded);
            let level = decoded.iter().map(|s| f32::from(*s).abs()).sum::<f32>()
                / decoded.len().max(1) as f32;
            if level > AUDIBLE {
                if o.first_audio_ms.is_none() {
                    o.first_audio_ms = Some(ms(now));
                }
                last_audible = Some(now);
                audible_since_step = true;
            }
            heard.extend_from_slice(&decoded);
        }
        // Act: the next step when its time has come.
        let idle = matches!(sending, Sending::Silence) && queued_keys.is_empty();
        if idle && done_at.is_none() {
            match steps.peek() {
                Some(step)
                    if due(
                        step,
                        now,
                        answered,
                        last_step_at,
                        last_audible,
                        audible_since_step,
                    ) =>
                {
                    let step = steps.next().expect("peeked");
                    last_step_at = now;
                    audible_since_step = false;
                    if let Some(keys) = &step.key {
                        queued_keys = keys.chars().rev().collect();
                    } else if let Some(text) = &step.say {
                        match speak(tts.as_ref(), text).await {
                            Ok(pcm) => sending = Sending::Words(pcm, 0),
                            Err(e) => {
                                o.error = Some(format!("say \"{text}\": {e}"));
                                let _ = dialog.bye().await;
                                break 'call;
                            }
                        }
                    }
                }
                Some(_) => {}
                None => done_at = Some(now),
            }
        }
        if done_at.is_some_and(|d| now >= d + listen) {
            let _ = dialog.bye().await;
            break 'call;
        }
        // Send one packet.
        if matches!(sending, Sending::Silence) && key_gap_until.is_none_or(|g| now >= g) {
            if let (Some(k), Some(_)) = (queued_keys.last().copied(), event_pt) {
                queued_keys.pop();
                if let Some(code) = event_code(k) {
                    sending = Sending::Key {
                        code,
                        timestamp: ts,
                        sent: 0,
                        ends_left: 3,
                    };
                }
            } else if !queued_keys.is_empty() {
                o.error = Some("the far end did not take telephone-events (RFC 4733)".into());
                queued_keys.clear();
            }
        }
        let packet = match &mut sending {
            Sending::Key {
                code,
                timestamp,
                sent,
                ends_left,
            } => {
                let first = *sent == 0;
                let end = *sent >= KEY_PACKETS;
                *sent += 1;
                let duration = (*sent).min(KEY_PACKETS) * 160;
                let p = packet(
                    event_pt.unwrap_or(101),
                    first,
                    seq,
                    *timestamp,
                    ssrc,
                    &event_payload(*code, end, duration),
                );
                if end {
                    *ends_left -= 1;
                    if *ends_left == 0 {
                        sending = Sending::Silence;
                        key_gap_until = Some(now + KEY_GAP);
                    }
                }
                p
            }
            Sending::Words(pcm, at) => {
                let frame: Vec<i16> = (0..160)
                    .map(|i| pcm.get(*at + i).copied().unwrap_or(0))
                    .collect();
                *at += 160;
                if *at >= pcm.len() {
                    sending = Sending::Silence;
                }
                audio_packet(codec, seq, ts, ssrc, &frame)
            }
            Sending::Silence => audio_packet(codec, seq, ts, ssrc, &[0; 160]),
        };
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
        let _ = rtp.send_to(&packet, remote).await;
    }
    uac.dialogs.remove_dialog(&dialog.id());
    o.heard_s = heard.len() as f64 / 8000.0;
    if let (Some(text), Some(start)) = (&def.expect.outage, first_packet_ms) {
        match speak(tts.as_ref(), text).await {
            Ok(reference) => {
                if let Some((offset, score)) = correlate::find(&reference, &heard) {
                    debug!(score, offset, "outage notice search");
                    if score >= NOTICE_MATCH {
                        o.outage_ms = Some(start + offset as f64 / 8.0);
                    }
                }
            }
            Err(e) => o.error = Some(format!("rendering the outage text: {e}")),
        }
    }
    o
}

/// Whether a step's time has come.
fn due(
    step: &ProbeStep,
    now: Instant,
    answered: Instant,
    last_step_at: Instant,
    last_audible: Option<Instant>,
    audible_since_step: bool,
) -> bool {
    match (step.at_ms, step.after_ms) {
        (Some(at), _) => now >= answered + Duration::from_millis(at),
        (None, Some(after)) => now >= last_step_at + Duration::from_millis(after),
        // Once the far end has said something and gone quiet (a bound: 30 s of nothing).
        (None, None) => match last_audible {
            Some(t) if audible_since_step => now >= t + QUIET,
            _ => now >= last_step_at + Duration::from_secs(30),
        },
    }
}

/// Text to 8 kHz samples, with the configured engine.
async fn speak(tts: Option<&Arc<Tts>>, text: &str) -> Result<Vec<i16>, String> {
    let tts = tts.ok_or("no text-to-speech engine (tts: ~ in the config)")?;
    tts.render(text)
        .await
        .map(|p| p.pcm.to_vec())
        .map_err(|e| e.to_string())
}

/// `<sip:billing@pbx>;x=y` or `sip:billing@pbx?X-IVR=..` -> `sip:billing@pbx`.
fn refer_target(value: &str) -> String {
    let v = value.trim();
    let inner = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if b > a => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v),
    };
    inner.split('?').next().unwrap_or(inner).to_string()
}

fn audio_packet(codec: Codec, seq: u16, ts: u32, ssrc: u32, pcm: &[i16]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(160);
    codec.encode_into(pcm, &mut payload);
    packet(codec.payload_type(), false, seq, ts, ssrc, &payload)
}

/// An RTP packet (RFC 3550): version 2, no padding, extension or CSRCs.
fn packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push((pt & 0x7f) | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// How `ivrd probe` runs.
pub struct ProbeRun {
    pub file: std::path::PathBuf,
    /// The text-to-speech settings (the config's `tts`, or espeak-ng's defaults).
    pub tts: crate::config::TtsConfig,
    /// Write the metrics here (a node exporter textfile; replaced whole).
    pub textfile: Option<std::path::PathBuf>,
    /// Serve the metrics here and run again every `every`.
    pub listen: Option<SocketAddr>,
    pub every: Duration,
}

/// `ivrd probe`: runs the probes once (exit code: all passed), or for ever behind a
/// metrics endpoint.
pub fn cli(run_opts: ProbeRun) -> Result<bool, String> {
    let text = std::fs::read_to_string(&run_opts.file)
        .map_err(|e| format!("{}: {e}", run_opts.file.display()))?;
    let file: ProbeFile = serde_yaml::from_str(&text)
        .map_err(|e| crate::diag::yaml_diagnostic(&run_opts.file, &e).to_string())?;
    if file.probes.is_empty() {
        return Err(format!("{}: no probes", run_opts.file.display()));
    }
    let tts = Tts::open(&run_opts.tts, None).map(Arc::new).ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let once = || async {
            let verdicts = run(&file, tts.clone()).await?;
            print!("{}", crate::probe::report(&verdicts));
            let metrics = crate::probe::metrics(&verdicts, super::clock::unix_now());
            if let Some(path) = &run_opts.textfile {
                write_whole(path, &metrics).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok::<_, String>((verdicts.iter().all(|v| v.failures.is_empty()), metrics))
        };
        let Some(addr) = run_opts.listen else {
            return once().await.map(|(ok, _)| ok);
        };
        let latest = Arc::new(std::sync::Mutex::new(String::new()));
        let served = latest.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = served.lock().map(|m| m.clone()).unwrap_or_default();
                async move { m }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        println!(
            "ivrd probe: metrics on http://{}/metrics",
            listener.local_addr().unwrap_or(addr)
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        loop {
            match once().await {
                Ok((_, m)) => *latest.lock().unwrap_or_else(|p| p.into_inner()) = m,
                Err(e) => eprintln!("ivrd probe: {e}"),
            }
            tokio::time::sleep(run_opts.every).await;
        }
    })
}

/// Writes a file whole (a reader never sees half of it).
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refer_targets_without_parameters() {
        assert_eq!(
            refer_target("<sip:billing@pbx.example.com>"),
            "sip:billing@pbx.example.com"
        );
        assert_eq!(
            refer_target("<sip:billing@pbx.example.com?X-IVR-Flow=x>;method=INVITE"),
            "sip:billing@pbx.example.com"
        );
        assert_eq!(refer_target("sip:a@b;transport=udp"), "sip:a@b");
    }

    #[test]
    fn rtp_header_fields() {
        let p = packet(101, true, 7, 1600, 0xdead_beef, &[1, 2, 3, 4]);
        let parsed = parse_rtp(&p).unwrap();
        assert_eq!(parsed.payload_type, 101);
        assert!(parsed.marker);
        assert_eq!(parsed.seq, 7);
        assert_eq!(parsed.timestamp, 1600);
        assert_eq!(parsed.payload, &[1, 2, 3, 4]);
    }
}
