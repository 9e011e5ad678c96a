//! SDP offer/answer (RFC 3264) for one audio stream: G.711 (PCMU, PCMA) and RFC 4733
//! telephone-event. Parsing uses the `rtc-sdp` crate (also used by the WebRTC leg);
//! negotiation and the answer text are ours.

use crate::media::g711::Codec;
use rtc_sdp::description::media::MediaDescription;
use rtc_sdp::description::session::SessionDescription;
use std::fmt::Write;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

/// Largest SDP body we parse; real offers are a few hundred bytes.
const MAX_SDP_BYTES: usize = 16 * 1024;

/// Payload type we offer for telephone-event when we make the offer (late offer).
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP body is not valid: {0}")]
    Malformed(String),
    #[error("SDP has no RTP audio stream")]
    NoAudio,
    #[error("no common codec: ivrd speaks PCMU and PCMA")]
    NoCommonCodec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answer takes for an offer with this one.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the side using this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The audio stream described by the remote side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAudio {
    /// Where to send RTP; None when on hold with c=0.0.0.0.
    pub rtp: Option<SocketAddr>,
    /// G.711 codecs offered, in the offerer's order of preference.
    pub codecs: Vec<(u8, Codec)>,
    pub telephone_event: Option<u8>,
    pub direction: Direction,
    /// Index of the audio m= line; other m= lines are refused in the answer.
    index: usize,
    /// The m= lines (media, proto, first format) to mirror with port 0 in the answer.
    others: Vec<(String, String, String)>,
}

/// The outcome of negotiation: what both sides use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    pub remote: Option<SocketAddr>,
    /// Our direction: whether we should send media at all (false while held).
    pub local_direction: Direction,
}

/// Our side of the session.
#[derive(Debug, Clone)]
pub struct LocalAudio {
    pub ip: IpAddr,
    pub port: u16,
    pub session_id: u64,
    /// Incremented each time our SDP changes (RFC 3264 §8).
    pub version: u64,
}

pub fn parse(body: &[u8]) -> Result<RemoteAudio, SdpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::Malformed(format!(
            "{} bytes is larger than {MAX_SDP_BYTES}",
            body.len()
        )));
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8".into()))?;
    // rtc-sdp wants CRLF-free lines to be consistent; normalise bare LF bodies.
    let normalised: String = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push_str("\r\n");
            s
        });
    let sd = SessionDescription::unmarshal(&mut Cursor::new(normalised.as_bytes()))
        .map_err(|e| SdpError::Malformed(e.to_string()))?;
    let session_conn = connection_ip(sd.connection_information.as_ref());
    let session_dir = direction_of(sd.attributes.iter().map(|a| a.key.as_str()));
    let mut audio: Option<RemoteAudio> = None;
    let mut others = Vec::new();
    for (index, md) in sd.media_descriptions.iter().enumerate() {
        let name = &md.media_name;
        let proto = name.protos.join("/");
        let first_fmt = name.formats.first().cloned().unwrap_or_else(|| "0".into());
        let usable = audio.is_none()
            && name.media == "audio"
            && (proto == "RTP/AVP" || proto == "RTP/AVPF")
            && name.port.value > 0;
        if !usable {
            others.push((name.media.clone(), proto, first_fmt));
            continue;
        }
        audio = Some(describe_audio(md, index, session_conn, session_dir)?);
    }
    let mut audio = audio.ok_or(SdpError::NoAudio)?;
    audio.others = others;
    Ok(audio)
}

fn describe_audio(
    md: &MediaDescription,
    index: usize,
    session_conn: Option<IpAddr>,
    session_dir: Option<Direction>,
) -> Result<RemoteAudio, SdpError> {
    let port = u16::try_from(md.media_name.port.value)
        .map_err(|_| SdpError::Malformed("audio port out of range".into()))?;
    let ip = connection_ip(md.connection_information.as_ref())
        .or(session_conn)
        .ok_or_else(|| SdpError::Malformed("no connection address (c=)".into()))?;
    let mut direction = direction_of(md.attributes.iter().map(|a| a.key.as_str()))
        .or(session_dir)
        .unwrap_or(Direction::SendRecv);
    // RFC 2543 style hold: c=0.0.0.0 means "do not send to me".
    let rtp = if ip.is_unspecified() {
        if direction == Direction::SendRecv {
            direction = Direction::SendOnly;
        } else if direction == Direction::RecvOnly {
            direction = Direction::Inactive;
        }
        None
    } else {
        Some(SocketAddr::new(ip, port))
    };
    let rtpmaps = md.codecs();
    let mut codecs = Vec::new();
    let mut telephone_event = None;
    for f in &md.media_name.formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        let mapped = rtpmaps.get(&pt);
        let codec = match mapped {
            Some(c) if c.clock_rate == 8000 || c.clock_rate == 0 => {
                if c.name.eq_ignore_ascii_case("telephone-event") {
                    telephone_event.get_or_insert(pt);
                    None
                } else {
                    Codec::from_encoding_name(&c.name)
                }
            }
            Some(_) => None,
            // Static payload types need no rtpmap (RFC 3551).
            None => Codec::from_payload_type(pt),
        };
        if let Some(c) = codec {
            codecs.push((pt, c));
        }
    }
    Ok(RemoteAudio {
        rtp,
        codecs,
        telephone_event,
        direction,
        index,
        others: Vec::new(),
    })
}

fn connection_ip(
    c: Option<&rtc_sdp::description::common::ConnectionInformation>,
) -> Option<IpAddr> {
    c.and_then(|c| c.address.as_ref())
        .and_then(|a| a.address.split('/').next()?.parse().ok())
}

fn direction_of<'a>(keys: impl Iterator<Item = &'a str>) -> Option<Direction> {
    keys.filter_map(|k| match k {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
    .last()
}

/// Picks the offerer's most preferred G.711 codec.
pub fn negotiate(offer: &RemoteAudio) -> Result<Negotiated, SdpError> {
    let &(payload_type, codec) = offer.codecs.first().ok_or(SdpError::NoCommonCodec)?;
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: offer.telephone_event,
        remote: offer.rtp,
        local_direction: offer.direction.answer(),
    })
}

/// Reads the answer to our own offer (late offer: the answer comes in the ACK).
pub fn accept_answer(answer: &RemoteAudio) -> Result<Negotiated, SdpError> {
    let &(payload_type, codec) = answer
        .codecs
        .iter()
        .find(|(_, c)| matches!(c, Codec::Pcmu | Codec::Pcma))
        .ok_or(SdpError::NoCommonCodec)?;
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: answer.telephone_event,
        remote: answer.rtp,
        local_direction: answer.direction.answer(),
    })
}

/// Builds the answer to `offer`: the chosen codec (and telephone-event) on the audio line,
/// every other m= line refused with port 0, as RFC 3264 §6 requires.
pub fn answer(local: &LocalAudio, offer: &RemoteAudio, neg: &Negotiated) -> String {
    let mut s = session_header(local);
    let mut others = offer.others.iter();
    let total = offer.others.len() + 1;
    for i in 0..total {
        if i == offer.index {
            let mut fmts = vec![neg.payload_type.to_string()];
            if let Some(te) = neg.telephone_event {
                fmts.push(te.to_string());
            }
            let _ = write!(s, "m=audio {} RTP/AVP {}\r\n", local.port, fmts.join(" "));
            let _ = write!(
                s,
                "a=rtpmap:{} {}/8000\r\n",
                neg.payload_type,
                neg.codec.encoding_name()
            );
            if let Some(te) = neg.telephone_event {
                let _ = write!(
                    s,
                    "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
                );
            }
            let _ = write!(s, "a=ptime:20\r\na={}\r\n", neg.local_direction.attribute());
        } else if let Some((media, proto, fmt)) = others.next() {
            let _ = write!(s, "m={media} 0 {proto} {fmt}\r\n");
        }
    }
    s
}

/// Our offer when the INVITE had none: PCMU, PCMA and telephone-event.
pub fn offer(local: &LocalAudio) -> String {
    let mut s = session_header(local);
    let te = OFFER_TELEPHONE_EVENT_PT;
    let _ = write!(
        s,
        "m=audio {} RTP/AVP 0 8 {te}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        local.port
    );
    s
}

fn session_header(local: &LocalAudio) -> String {
    let family = if local.ip.is_ipv6() { "IP6" } else { "IP4" };
    format!(
        "v=0\r\no=ivrd {} {} IN {family} {ip}\r\ns=ivrd\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        local.session_id,
        local.version,
        ip = local.ip
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    fn local() -> LocalAudio {
        LocalAudio {
            ip: "127.0.0.1".parse().unwrap(),
            port: 20000,
            session_id: 42,
            version: 1,
        }
    }

    #[test]
    fn offerer_preference_wins() {
        let o = parse(SIPP_OFFER.as_bytes()).unwrap();
        let n = negotiate(&o).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(n.local_direction, Direction::SendRecv);
        let a = answer(&local(), &o, &n);
        assert!(a.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:8 PCMA/8000\r\n"), "{a}");
        assert!(a.contains("a=sendrecv\r\n"), "{a}");
        // The answer parses back.
        let back = parse(a.as_bytes()).unwrap();
        assert_eq!(back.codecs, vec![(8, Codec::Pcma)]);
    }

    #[test]
    fn static_payload_types_need_no_rtpmap_and_lf_bodies_parse() {
        let o =
            "v=0\no=- 1 1 IN IP4 10.0.0.2\ns=-\nc=IN IP4 10.0.0.2\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
        let n = negotiate(&parse(o.as_bytes()).unwrap()).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event, None);
    }

    #[test]
    fn no_g711_is_no_common_codec() {
        let o = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9 18\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n";
        assert_eq!(
            negotiate(&parse(o.as_bytes()).unwrap()),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn hold_and_unhold() {
        let held = SIPP_OFFER.replace("a=fmtp:101 0-15\r\n", "a=fmtp:101 0-15\r\na=sendonly\r\n");
        let o = parse(held.as_bytes()).unwrap();
        let n = negotiate(&o).unwrap();
        assert_eq!(n.local_direction, Direction::RecvOnly);
        assert!(answer(&local(), &o, &n).contains("a=recvonly\r\n"));
        let old_style = SIPP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let n = negotiate(&parse(old_style.as_bytes()).unwrap()).unwrap();
        assert_eq!(n.remote, None);
        assert!(!n.local_direction.sends());
    }

    #[test]
    fn other_streams_are_refused_with_port_zero() {
        let o = SIPP_OFFER.replace(
            "m=audio",
            "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\nm=audio",
        );
        let o = parse(o.as_bytes()).unwrap();
        let a = answer(&local(), &o, &negotiate(&o).unwrap());
        let m: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m, ["m=video 0 RTP/AVP 96", "m=audio 20000 RTP/AVP 8 101"]);
    }

    #[test]
    fn late_offer_round_trip() {
        let off = offer(&local());
        let remote = parse(off.as_bytes()).unwrap();
        assert_eq!(remote.codecs, vec![(0, Codec::Pcmu), (8, Codec::Pcma)]);
        assert_eq!(remote.telephone_event, Some(101));
        let n = accept_answer(&remote).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
    }

    #[test]
    fn garbage_never_panics() {
        for body in [
            &b""[..],
            b"v=0",
            b"\xff\xfe",
            b"m=audio x RTP/AVP 0",
            b"v=0\r\nm=audio 99999999 RTP/AVP 0\r\n",
        ] {
            assert!(parse(body).is_err());
        }
    }
}
