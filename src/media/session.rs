//! One call's RTP session, without I/O: the outgoing stream paced by absolute deadlines,
//! and each incoming packet policed (a per-call packet rate) and sorted into a key
//! (RFC 4733), caller audio, or neither. The caller passes `now` and the random values.

use super::dtmf::Rfc4733Receiver;
use super::g711::{Codec, FRAME_SAMPLES};
use super::playout::Pacer;
use super::rtp::{RtpIn, RtpStreamOut};
use std::time::{Duration, Instant};

/// The random starting point of an outgoing stream (RFC 3550 §5.1: SSRC, sequence number
/// and timestamp all start random).
#[derive(Debug, Clone, Copy)]
pub struct StreamSeeds {
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_timestamp: u32,
}

/// What an incoming packet is for the call.
#[derive(Debug, PartialEq)]
pub enum Incoming<'a> {
    /// Over the per-call packet rate and dropped; `first` marks the first drop of a
    /// one-second window (worth one log line).
    OverRate { first: bool },
    /// A key press began (RFC 4733: one per event, however many packets carry it).
    Key(char),
    /// Decoded caller audio (only when speech is on).
    Audio(&'a [i16]),
    /// Media that proves the caller is there but carries nothing for the call: a DTMF
    /// packet that is not the end of a key, audio while speech is off, another payload type.
    Media,
}

pub struct RtpSession {
    out: RtpStreamOut,
    pacer: Option<Pacer>,
    dtmf: Rfc4733Receiver,
    pcm: Vec<i16>,
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
    /// Incoming packets allowed per second (`media.max_rtp_packets_per_s`).
    max_pps: u32,
    /// Start of the current one-second window and the packets seen in it.
    window: Option<(Instant, u32)>,
}

impl RtpSession {
    pub fn new(
        codec: Codec,
        payload_type: u8,
        telephone_event: Option<u8>,
        seeds: StreamSeeds,
    ) -> Self {
        RtpSession {
            out: RtpStreamOut::new(
                seeds.ssrc,
                seeds.first_seq,
                seeds.first_timestamp,
                payload_type,
            ),
            pacer: None,
            dtmf: Rfc4733Receiver::new(),
            pcm: Vec::with_capacity(2 * FRAME_SAMPLES),
            codec,
            payload_type,
            telephone_event,
            max_pps: u32::MAX,
            window: None,
        }
    }

    /// Where the outgoing stream stands (SSRC, next sequence number and timestamp): a
    /// bridged call's relay carries the stream on from here.
    pub fn position(&self) -> StreamSeeds {
        StreamSeeds {
            ssrc: self.out.ssrc(),
            first_seq: self.out.next_seq(),
            first_timestamp: self.out.next_timestamp(),
        }
    }

    /// Takes the stream back at `now` after a relay sent up to `next_seq`: the frames
    /// that fell due meanwhile are skipped (their time passes in the timestamps), not sent
    /// in a burst.
    pub fn continue_at(&mut self, now: Instant, next_seq: u16) {
        self.out.continue_at(next_seq);
        if let Some(pacer) = self.pacer.as_mut() {
            let due = pacer.due(now);
            self.out.skip(due.send + due.skip);
        }
    }

    /// Caps incoming packets per second; a peer flooding a call's port is cut off there.
    pub fn limit_rate(mut self, max_pps: u32) -> Self {
        self.max_pps = max_pps.max(1);
        self
    }

    /// Incoming packets allowed per second.
    pub fn max_pps(&self) -> u32 {
        self.max_pps
    }

    /// A new codec/payload types after a re-negotiation.
    pub fn set_negotiated(&mut self, codec: Codec, payload_type: u8, telephone_event: Option<u8>) {
        self.codec = codec;
        self.payload_type = payload_type;
        self.telephone_event = telephone_event;
        self.out.set_payload_type(payload_type);
    }

    /// Starts sending (once): frame n is due at `now + phase + n * 20 ms`. The caller picks
    /// `phase` at random within one frame: calls answered in step (a trunk's burst, a load
    /// generator's exact 50 calls/s) would otherwise all send at the same instant every
    /// 20 ms and queue behind each other.
    pub fn start(&mut self, now: Instant, phase: Duration) {
        self.pacer.get_or_insert_with(|| Pacer::new(now + phase));
    }

    /// When the next frame is due; `None` before [`RtpSession::start`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pacer.as_ref().map(|p| p.next_deadline())
    }

    /// Appends the packets due at `now` to `out`. `fill` writes a frame of the call's
    /// audio and answers whether the call is sending at all; a frame it does not send (on
    /// hold, or `can_send` false: nowhere to send) still passes on the stream's timestamps.
    pub fn due(
        &mut self,
        now: Instant,
        can_send: bool,
        mut fill: impl FnMut(&mut [u8; FRAME_SAMPLES]) -> bool,
        out: &mut Vec<Vec<u8>>,
    ) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        let due = pacer.due(now);
        if due.skip > 0 {
            self.out.skip(due.skip);
        }
        let mut frame = [0u8; FRAME_SAMPLES];
        for _ in 0..due.send {
            if can_send && fill(&mut frame) {
                let mut packet = Vec::with_capacity(12 + frame.len());
                self.out.write_packet(&frame, &mut packet);
                out.push(packet);
            } else {
                self.out.skip(1);
            }
        }
    }

    /// Sorts a packet received at `now`; `speech` says whether caller audio is wanted.
    pub fn on_packet(&mut self, now: Instant, p: &RtpIn<'_>, speech: bool) -> Incoming<'_> {
        let (start, count) = self.window.get_or_insert((now, 0));
        if now.saturating_duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > self.max_pps {
            return Incoming::OverRate {
                first: *count == self.max_pps + 1,
            };
        }
        if self.telephone_event == Some(p.payload_type) {
            return match self.dtmf.on_packet(p.timestamp, p.payload) {
                Some(key) => Incoming::Key(key),
                None => Incoming::Media,
            };
        }
        if speech && p.payload_type == self.payload_type {
            self.pcm.clear();
            self.codec.decode_into(p.payload, &mut self.pcm);
            return Incoming::Audio(&self.pcm);
        }
        Incoming::Media
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::parse;

    const SEEDS: StreamSeeds = StreamSeeds {
        ssrc: 7,
        first_seq: 100,
        first_timestamp: 1000,
    };

    fn packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = RtpStreamOut::new(9, seq, ts, pt);
        let mut buf = Vec::new();
        out.write_packet(payload, &mut buf);
        buf
    }

    #[test]
    fn nothing_is_due_before_start_then_one_frame_every_20_ms() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(Codec::Pcmu, 0, Some(101), SEEDS);
        let mut out = Vec::new();
        s.due(t0, true, |_| true, &mut out);
        assert!(out.is_empty() && s.next_deadline().is_none());
        s.start(t0, Duration::from_millis(5));
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(5)));
        s.due(t0 + Duration::from_millis(46), true, |_| true, &mut out);
        assert_eq!(out.len(), 3, "frames due at 5, 25 and 45 ms");
        let seqs: Vec<u16> = out.iter().map(|p| parse(p).unwrap().seq).collect();
        assert_eq!(seqs, [100, 101, 102]);
    }

    #[test]
    fn after_a_relay_the_stream_carries_on_from_its_last_packet_without_a_burst() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(Codec::Pcmu, 0, None, SEEDS);
        s.start(t0, Duration::ZERO);
        let mut out = Vec::new();
        s.due(t0, true, |_| true, &mut out);
        assert_eq!(s.position().first_seq, 101);
        // A relay sent 50 packets (1 s) in this stream's name.
        let back = t0 + Duration::from_millis(1005);
        s.continue_at(back, 151);
        out.clear();
        s.due(back, true, |_| true, &mut out);
        assert!(
            out.is_empty(),
            "the frames due meanwhile are not sent in a burst"
        );
        s.due(back + Duration::from_millis(20), true, |_| true, &mut out);
        let p = parse(&out[0]).unwrap();
        assert_eq!((p.seq, p.marker), (151, true));
        assert_eq!(p.timestamp, 1000 + 51 * 160);
    }

    #[test]
    fn frames_not_sent_still_advance_the_timestamps() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(Codec::Pcmu, 0, None, SEEDS);
        s.start(t0, Duration::ZERO);
        let mut out = Vec::new();
        s.due(t0 + Duration::from_millis(30), true, |_| false, &mut out);
        assert!(out.is_empty(), "on hold: nothing sent");
        s.due(t0 + Duration::from_millis(41), true, |_| true, &mut out);
        let p = parse(&out[0]).unwrap();
        assert_eq!(p.timestamp, 1000 + 2 * 160, "two held frames skipped");
        assert_eq!(p.seq, 100, "sequence numbers have no gaps");
    }

    #[test]
    fn keys_and_audio_are_told_apart_and_audio_only_with_speech() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(Codec::Pcmu, 0, Some(101), SEEDS);
        let end_of_5 = packet(101, 1, 8000, &[5, 0x80, 0, 160]);
        assert_eq!(
            s.on_packet(t0, &parse(&end_of_5).unwrap(), true),
            Incoming::Key('5')
        );
        assert_eq!(
            s.on_packet(t0, &parse(&end_of_5).unwrap(), true),
            Incoming::Media,
            "the end packet's retransmission is the same key"
        );
        let audio = packet(0, 2, 8160, &[0xff; 160]);
        assert_eq!(
            s.on_packet(t0, &parse(&audio).unwrap(), false),
            Incoming::Media
        );
        match s.on_packet(t0, &parse(&audio).unwrap(), true) {
            Incoming::Audio(pcm) => assert_eq!(pcm.len(), 160),
            other => panic!("{other:?}"),
        }
        let other_pt = packet(8, 3, 8320, &[0xd5; 160]);
        assert_eq!(
            s.on_packet(t0, &parse(&other_pt).unwrap(), true),
            Incoming::Media
        );
    }

    #[test]
    fn the_rate_limit_drops_the_excess_of_each_second_and_says_so_once() {
        let t0 = Instant::now();
        let mut s = RtpSession::new(Codec::Pcmu, 0, None, SEEDS).limit_rate(3);
        let audio = packet(0, 2, 0, &[0xff; 160]);
        let p = parse(&audio).unwrap();
        let seen: Vec<bool> = (0..5)
            .map(|i| {
                let at = t0 + Duration::from_millis(i * 10);
                matches!(s.on_packet(at, &p, false), Incoming::OverRate { .. })
            })
            .collect();
        assert_eq!(seen, [false, false, false, true, true]);
        assert_eq!(
            s.on_packet(t0 + Duration::from_millis(60), &p, false),
            Incoming::OverRate { first: false }
        );
        assert_eq!(
            s.on_packet(t0 + Duration::from_secs(1), &p, false),
            Incoming::Media,
            "a new second, a new allowance"
        );
    }
}
