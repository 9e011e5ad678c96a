//! One browser call's WebRTC peer connection (webrtc-rs): PCMU audio both ways and RFC 4733
//! keys in, answered without trickle ICE (the answer carries every candidate), on one UDP
//! socket bound to the configured address.

use crate::config::{PortRange, WebrtcConfig};
use crate::media::rtp::RtpIn;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceGatheringState, RTCPeerConnectionState};
use rtc::peer_connection::transport::RTCIceCandidateType;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc_sdp::description::session::SessionDescription;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::debug;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, Registry,
};

/// Gathering host candidates on one socket takes milliseconds; this only bounds a stuck one.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// Ports tried from a configured range before giving up (another call may hold one).
const PORT_ATTEMPTS: usize = 8;
/// The payload type we offer for telephone-event; the answer uses the browser's own.
const TELEPHONE_EVENT_PT: u8 = 101;
/// Caller audio waiting for the call task: 1 s of 20 ms packets. Audio is real time, so a
/// stalled task drops packets rather than queueing them without bound.
const MEDIA_QUEUE: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the offer is not a usable SDP offer: {0}")]
    BadOffer(String),
    #[error("the offer has no PCMU audio (the test phone speaks G.711 mu-law only)")]
    NoPcmu,
    #[error("no UDP port for ICE on {ip}: {reason}")]
    Bind { ip: IpAddr, reason: String },
    #[error("ICE candidates were not gathered within {0:?}")]
    Gathering(Duration),
    #[error("WebRTC: {0}")]
    Webrtc(String),
}

fn internal(e: impl std::fmt::Display) -> PeerError {
    PeerError::Webrtc(e.to_string())
}

/// A peer connection that is closed when dropped. webrtc-rs stops a connection's driver task
/// and releases its socket on `close()`; one that is merely dropped (say, by a request
/// cancelled halfway through negotiation) could outlive its call.
struct Connection(Arc<dyn PeerConnection>);

impl Drop for Connection {
    fn drop(&mut self) {
        // Closing again after an explicit close is a no-op.
        let pc = self.0.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// A negotiated peer connection, before or after its media connected.
pub struct Peer {
    pc: Connection,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    /// PCMU's payload type in this session (what we send with).
    pub payload_type: u8,
    /// telephone-event's payload type, when the browser offered it (keys arrive with it).
    pub telephone_event: Option<u8>,
    /// Our SDP answer, with every ICE candidate in it.
    pub answer: String,
    /// The connection state, as the peer connection reports it.
    pub state: watch::Receiver<RTCPeerConnectionState>,
    /// The browser's tracks, as they arrive.
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
}

/// Receives the peer connection's events (webrtc-rs requires a handler) and hands them to
/// the call task through channels.
struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(?state, "WebRTC connection state");
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // One audio track is expected; a page sending more gets the rest ignored.
        let _ = self.tracks.try_send(track);
    }
}

fn pcmu() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_PCMU.to_owned(),
        clock_rate: 8000,
        channels: 1,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// PCMU and telephone-event only: nothing else can be negotiated, so the payload the call
/// produces (G.711 mu-law, 20 ms) goes out as it is, without transcoding.
fn media_engine() -> Result<MediaEngine, PeerError> {
    let mut engine = MediaEngine::default();
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: pcmu(),
                payload_type: 0,
            },
            RtpCodecKind::Audio,
        )
        .map_err(internal)?;
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
                    clock_rate: 8000,
                    channels: 1,
                    sdp_fmtp_line: "0-16".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: TELEPHONE_EVENT_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(internal)?;
    Ok(engine)
}

impl Peer {
    /// Answers the browser's offer: builds the connection on a port of the configured
    /// range, adds our audio track and waits until every local candidate is in the answer.
    pub async fn answer(cfg: &WebrtcConfig, offer: String) -> Result<Peer, PeerError> {
        let offer =
            RTCSessionDescription::offer(offer).map_err(|e| PeerError::BadOffer(e.to_string()))?;
        let parsed = offer
            .unmarshal()
            .map_err(|e| PeerError::BadOffer(e.to_string()))?;
        // Checked here: webrtc-rs would only fail later, building an answer with no codec.
        if !offers_pcmu(&parsed) {
            return Err(PeerError::NoPcmu);
        }
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (tracks_tx, tracks) = mpsc::channel(4);
        let handler = Arc::new(Handler {
            state: state_tx,
            gathered: gathered_tx,
            tracks: tracks_tx,
        });
        let pc = Connection(bind(cfg, handler).await?);
        let n = negotiate(&pc.0, offer, &mut gathered).await?;
        Ok(Peer {
            pc,
            track: n.track,
            ssrc: n.ssrc,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
            answer: n.answer,
            state,
            tracks,
        })
    }

    /// Sends one RTP packet built by the call's media path, under our track's SSRC and the
    /// negotiated payload type. False when the connection cannot take it.
    pub async fn send(&self, packet: &RtpIn<'_>) -> bool {
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: packet.marker,
                payload_type: self.payload_type,
                sequence_number: packet.seq,
                timestamp: packet.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(packet.payload),
        };
        self.track.write_rtp(packet).await.is_ok()
    }

    /// Closes the connection (idempotent): the socket is released and the driver stops.
    pub async fn close(&self) {
        if let Err(e) = self.pc.0.close().await {
            debug!(error = %e, "closing the peer connection");
        }
    }
}

/// Whether an audio section of the offer carries PCMU: static payload type 0 (RFC 3551) or
/// a dynamic one mapped to `PCMU/8000`.
fn offers_pcmu(offer: &SessionDescription) -> bool {
    offer
        .media_descriptions
        .iter()
        .filter(|m| m.media_name.media == "audio" && m.media_name.port.value != 0)
        .any(|m| {
            m.media_name.formats.iter().any(|pt| {
                pt == "0"
                    || m.attributes.iter().any(|a| {
                        a.key == "rtpmap"
                            && a.value.as_deref().is_some_and(|v| {
                                v.split_once(' ').is_some_and(|(p, codec)| {
                                    p == pt && codec.eq_ignore_ascii_case("PCMU/8000")
                                })
                            })
                    })
            })
        })
}

/// Builds the connection on the configured address; with a port range, on the first free
/// port of a few random ones (building is what binds, and it fails on a taken port).
async fn bind(
    cfg: &WebrtcConfig,
    handler: Arc<Handler>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    let ports: Vec<u16> = match cfg.ports {
        PortRange::Ephemeral => vec![0],
        PortRange::Range(lo, hi) => (0..PORT_ATTEMPTS)
            .map(|_| rand::random_range(lo..=hi))
            .collect(),
    };
    let mut last = String::new();
    for port in ports {
        let media = media_engine()?;
        // RTCP sender/receiver reports only: the browser's stats need them; NACK, TWCC and
        // simulcast extensions are for video.
        let interceptors = configure_rtcp_reports(Registry::new());
        let disconnect = cfg.disconnect_timeout();
        let mut settings = SettingEngineBuilder::new()
            // ICE's own view of a vanished browser; the call task's media timeout usually
            // acts first (see `disconnect_timeout_ms`).
            .with_ice_timeouts(Some(disconnect), Some(disconnect), None)
            // No multicast DNS socket per call: the page has the microphone, so the browser
            // shows its real addresses, and one hidden behind a `.local` name is still
            // reached as a peer-reflexive candidate when its checks arrive.
            .with_multicast_dns_mode(MulticastDnsMode::Disabled);
        if !cfg.nat_1to1_ips.is_empty() {
            settings = settings.with_nat_1to1_ips(
                cfg.nat_1to1_ips.iter().map(|ip| ip.to_string()).collect(),
                RTCIceCandidateType::Host,
            );
        }
        let built = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(interceptors)
            .with_handler(handler.clone())
            // A concrete address: a wildcard would bind every interface except loopback.
            .with_udp_addrs(vec![SocketAddr::new(cfg.ice_ip, port)])
            .build()
            .await;
        match built {
            Ok(pc) => return Ok(Arc::new(pc)),
            Err(e) => last = e.to_string(),
        }
    }
    Err(PeerError::Bind {
        ip: cfg.ice_ip,
        reason: last,
    })
}

/// What offer/answer settled.
struct Negotiated {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    answer: String,
    payload_type: u8,
    telephone_event: Option<u8>,
}

async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    offer: RTCSessionDescription,
    gathered: &mut watch::Receiver<bool>,
) -> Result<Negotiated, PeerError> {
    // webrtc-rs sends a local track only under an SSRC its encoding names.
    let ssrc: u32 = rand::random();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "ivrd".to_owned(),
        "ivrd-audio".to_owned(),
        "ivrd".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: pcmu(),
            ..Default::default()
        }],
    )));
    let sender = pc.add_track(track.clone()).await.map_err(internal)?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| PeerError::BadOffer(e.to_string()))?;
    let answer = pc.create_answer(None).await.map_err(internal)?;
    pc.set_local_description(answer).await.map_err(internal)?;
    // The payload types are the browser's numbers, known once the answer is applied.
    let params = sender.get_parameters().await.map_err(internal)?;
    let find = |mime: &str| {
        params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type)
    };
    let payload_type = find(MIME_TYPE_PCMU).ok_or(PeerError::NoPcmu)?;
    let telephone_event = find(MIME_TYPE_TELEPHONE_EVENT);
    // Non-trickle: the answer goes out once it lists every candidate.
    let wait = gathered.wait_for(|done| *done);
    match tokio::time::timeout(GATHER_TIMEOUT, wait).await {
        Ok(Ok(_)) => {}
        _ => return Err(PeerError::Gathering(GATHER_TIMEOUT)),
    }
    let answer = pc
        .local_description()
        .await
        .ok_or_else(|| internal("no local description after set_local_description"))?;
    Ok(Negotiated {
        track,
        ssrc,
        answer: answer.sdp,
        payload_type,
        telephone_event,
    })
}

/// Forwards the browser's RTP from one remote track to the call task until the track ends
/// or the task stops listening.
pub async fn forward_track(track: Arc<dyn TrackRemote>, to: mpsc::Sender<rtp::Packet>) {
    while let Some(event) = track.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(packet) = event {
            match to.try_send(packet) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// The channel [`forward_track`] writes to.
pub fn media_channel() -> (mpsc::Sender<rtp::Packet>, mpsc::Receiver<rtp::Packet>) {
    mpsc::channel(MEDIA_QUEUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(m_line: &str, attributes: &[&str]) -> SessionDescription {
        let mut sdp = format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{m_line}\r\n");
        for a in attributes {
            sdp.push_str(&format!("a={a}\r\n"));
        }
        SessionDescription::unmarshal(&mut std::io::Cursor::new(sdp.into_bytes())).unwrap()
    }

    #[test]
    fn pcmu_is_found_by_static_or_mapped_payload_type() {
        let chrome = offer(
            "m=audio 9 UDP/TLS/RTP/SAVPF 0 126",
            &["rtpmap:0 PCMU/8000", "rtpmap:126 telephone-event/8000"],
        );
        assert!(offers_pcmu(&chrome));
        assert!(offers_pcmu(&offer("m=audio 9 UDP/TLS/RTP/SAVPF 0", &[])));
        let dynamic = offer("m=audio 9 UDP/TLS/RTP/SAVPF 98", &["rtpmap:98 pcmu/8000"]);
        assert!(offers_pcmu(&dynamic));
    }

    #[test]
    fn offers_without_usable_pcmu_are_refused() {
        let opus = offer(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            &["rtpmap:111 opus/48000/2"],
        );
        assert!(!offers_pcmu(&opus));
        // A rejected (port 0) section and video do not count.
        assert!(!offers_pcmu(&offer("m=audio 0 UDP/TLS/RTP/SAVPF 0", &[])));
        assert!(!offers_pcmu(&offer("m=video 9 UDP/TLS/RTP/SAVPF 0", &[])));
        // PCMU mapped to a payload type the m-line does not list.
        let unlisted = offer("m=audio 9 UDP/TLS/RTP/SAVPF 8", &["rtpmap:98 PCMU/8000"]);
        assert!(!offers_pcmu(&unlisted));
    }
}
