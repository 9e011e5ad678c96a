//! One direction of a bridged call's media: each packet from one leg rewritten for the
//! other. The receiving leg sees one continuous stream from us (our SSRC, sequence numbers
//! and timestamps carrying on from where our own prompts left off), in the codec and
//! payload types it negotiated: G.711 passes through or is transcoded A-law <-> mu-law
//! sample by sample, RFC 4733 events are forwarded with their payload type mapped (or
//! dropped when the other leg negotiated none), anything else is dropped.
//!
//! Pure: the io relay task feeds packets and `now` (for the per-leg packet-rate cap).

use super::g711::Codec;
use super::rtp::RtpIn;
use super::session::StreamSeeds;
use std::time::{Duration, Instant};

/// What one leg negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

/// What became of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// Audio, written to `out` (passed through or transcoded).
    Audio,
    /// An RFC 4733 event, written to `out`.
    Event,
    /// Nothing to send: another payload type, an event the other leg cannot take, or over
    /// the packet-rate cap.
    Dropped,
}

pub struct RelayPath {
    from: LegMedia,
    to: LegMedia,
    ssrc: u32,
    next_seq: u16,
    next_ts: u32,
    /// The source stream's SSRC and the offsets that map it onto ours.
    source: Option<(u32, u16, u32)>,
    max_pps: u32,
    window: Option<(Instant, u32)>,
}

impl RelayPath {
    /// `start` continues our stream towards the receiving leg (its SSRC and next values).
    pub fn new(from: LegMedia, to: LegMedia, start: StreamSeeds) -> Self {
        RelayPath {
            from,
            to,
            ssrc: start.ssrc,
            next_seq: start.first_seq,
            next_ts: start.first_timestamp,
            source: None,
            max_pps: u32::MAX,
            window: None,
        }
    }

    /// Caps packets per second from the sending leg (`media.max_rtp_packets_per_s`).
    pub fn limit_rate(mut self, max_pps: u32) -> Self {
        self.max_pps = max_pps.max(1);
        self
    }

    /// Where our stream stands: the next packet's sequence number and timestamp.
    pub fn position(&self) -> StreamSeeds {
        StreamSeeds {
            ssrc: self.ssrc,
            first_seq: self.next_seq,
            first_timestamp: self.next_ts,
        }
    }

    /// Rewrites `p` for the other leg into `out` (cleared first).
    pub fn forward(&mut self, now: Instant, p: &RtpIn<'_>, out: &mut Vec<u8>) -> Relayed {
        let (start, count) = self.window.get_or_insert((now, 0));
        if now.saturating_duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > self.max_pps {
            return Relayed::Dropped;
        }
        let (kind, payload_type) = if p.payload_type == self.from.payload_type {
            (Relayed::Audio, self.to.payload_type)
        } else if self.from.telephone_event == Some(p.payload_type) {
            match self.to.telephone_event {
                Some(pt) => (Relayed::Event, pt),
                None => return Relayed::Dropped,
            }
        } else {
            return Relayed::Dropped;
        };
        // A new source stream (the first, or the far end restarted its stream) is mapped
        // to carry on from our last packet, so the receiver sees no jump.
        let marker_new = match self.source {
            Some((ssrc, _, _)) if ssrc == p.ssrc => false,
            _ => {
                let seq_delta = self.next_seq.wrapping_sub(p.seq);
                let ts_delta = self.next_ts.wrapping_sub(p.timestamp);
                self.source = Some((p.ssrc, seq_delta, ts_delta));
                true
            }
        };
        let (_, seq_delta, ts_delta) = self.source.expect("set above");
        let seq = p.seq.wrapping_add(seq_delta);
        let ts = p.timestamp.wrapping_add(ts_delta);
        // Sequence numbers only move forward for our stream's bookkeeping (a late packet
        // keeps its own number, as the source sent it).
        if seq.wrapping_sub(self.next_seq) < 0x8000 {
            self.next_seq = seq.wrapping_add(1);
            let samples = if kind == Relayed::Audio {
                p.payload.len() as u32
            } else {
                0
            };
            self.next_ts = ts.wrapping_add(samples);
        }
        out.clear();
        out.reserve(12 + p.payload.len());
        out.push(0x80);
        out.push(((p.marker || (marker_new && kind == Relayed::Audio)) as u8) << 7 | payload_type);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        if kind == Relayed::Audio && self.from.codec != self.to.codec {
            out.extend(p.payload.iter().map(|&b| {
                self.to
                    .codec
                    .encode_sample(self.from.codec.decode_sample(b))
            }));
        } else {
            out.extend_from_slice(p.payload);
        }
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{parse, RtpStreamOut};

    const PCMU: LegMedia = LegMedia {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
    };
    const PCMA_NO_TE: LegMedia = LegMedia {
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event: None,
    };

    fn seeds() -> StreamSeeds {
        StreamSeeds {
            ssrc: 0xabcd,
            first_seq: 500,
            first_timestamp: 16_000,
        }
    }

    fn packet(ssrc: u32, pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut s = RtpStreamOut::new(ssrc, seq, ts, pt);
        let mut out = Vec::new();
        s.write_packet(payload, &mut out);
        out[1] &= 0x7f; // unmarked, as in the middle of a stream
        out
    }

    #[test]
    fn passes_audio_through_as_one_continuous_stream_of_ours() {
        let now = Instant::now();
        let mut path = RelayPath::new(PCMU, PCMU, seeds());
        let mut out = Vec::new();
        let frame = [0x55u8; 160];
        for i in 0..3u16 {
            let p = packet(9, 0, 60_000 + i, 1_000 + 160 * i as u32, &frame);
            let p = parse(&p).unwrap();
            assert_eq!(path.forward(now, &p, &mut out), Relayed::Audio);
            let o = parse(&out).unwrap();
            assert_eq!(
                (o.ssrc, o.seq, o.timestamp),
                (0xabcd, 500 + i, 16_000 + 160 * i as u32)
            );
            assert_eq!(o.payload, frame);
            assert_eq!(o.marker, i == 0, "a new source is marked");
        }
        // The far end restarts its stream: ours carries on.
        let p = packet(77, 0, 3, 9, &frame);
        path.forward(now, &parse(&p).unwrap(), &mut out);
        let o = parse(&out).unwrap();
        assert_eq!((o.seq, o.timestamp), (503, 16_480));
        assert_eq!(path.position().first_seq, 504);
    }

    #[test]
    fn transcodes_between_g711_laws_and_maps_or_drops_events() {
        let now = Instant::now();
        let mut to_pcma = RelayPath::new(PCMU, PCMA_NO_TE, seeds());
        let mut out = Vec::new();
        let ulaw: Vec<u8> = (0..160)
            .map(|i| Codec::Pcmu.encode_sample(i * 100))
            .collect();
        let p = packet(9, 0, 1, 1, &ulaw);
        assert_eq!(
            to_pcma.forward(now, &parse(&p).unwrap(), &mut out),
            Relayed::Audio
        );
        let o = parse(&out).unwrap();
        assert_eq!(o.payload_type, 8);
        for (a, u) in o.payload.iter().zip(&ulaw) {
            let (x, y) = (
                Codec::Pcma.decode_sample(*a) as i32,
                Codec::Pcmu.decode_sample(*u) as i32,
            );
            assert!((x - y).abs() <= 64 + x.abs() / 16, "{x} vs {y}");
        }
        let event = packet(9, 101, 2, 161, &[5, 0x0a, 0, 160]);
        assert_eq!(
            to_pcma.forward(now, &parse(&event).unwrap(), &mut out),
            Relayed::Dropped
        );
        let mut to_pcmu = RelayPath::new(PCMA_NO_TE, PCMU, seeds());
        let other = packet(9, 13, 2, 161, &[1]);
        assert_eq!(
            to_pcmu.forward(now, &parse(&other).unwrap(), &mut out),
            Relayed::Dropped,
            "comfort noise and other types stay behind"
        );
        let mut events = RelayPath::new(
            PCMU,
            LegMedia {
                telephone_event: Some(96),
                ..PCMU
            },
            seeds(),
        );
        assert_eq!(
            events.forward(now, &parse(&event).unwrap(), &mut out),
            Relayed::Event
        );
        let o = parse(&out).unwrap();
        assert_eq!((o.payload_type, o.payload), (96, &[5, 0x0a, 0, 160][..]));
    }

    #[test]
    fn caps_the_packet_rate() {
        let now = Instant::now();
        let mut path = RelayPath::new(PCMU, PCMU, seeds()).limit_rate(2);
        let mut out = Vec::new();
        let p = packet(9, 0, 1, 1, &[0xff; 160]);
        let p = parse(&p).unwrap();
        assert_eq!(path.forward(now, &p, &mut out), Relayed::Audio);
        assert_eq!(path.forward(now, &p, &mut out), Relayed::Audio);
        assert_eq!(path.forward(now, &p, &mut out), Relayed::Dropped);
        let later = now + Duration::from_secs(1);
        assert_eq!(path.forward(later, &p, &mut out), Relayed::Audio);
    }
}
