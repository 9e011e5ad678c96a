//! RTP (RFC 3550) packets: the state of one outgoing stream, and a panic-free parser for
//! incoming packets. Header layout and validation come from `rtp-rs`; this module owns
//! the sequence/timestamp/marker rules.

use rtp_rs::{RtpPacketBuilder, RtpReader, RtpReaderError, Seq};

use super::g711::FRAME_SAMPLES;

/// The highest RTP payload type: the field has 7 bits.
const MAX_PAYLOAD_TYPE: u8 = 0x7F;

/// One outgoing RTP stream: a fixed SSRC plus the sequence number and timestamp of the
/// next packet.
///
/// Both counters start at caller-chosen (random, per RFC 3550 section 5.1) values and wrap.
/// The timestamp counts samples of the 8 kHz G.711 clock, so it advances by the payload
/// length per packet and keeps advancing across frames that were never sent, which is how
/// the receiver learns about the gap and keeps its playout in step with ours.
#[derive(Debug, Clone)]
pub struct RtpStreamOut {
    ssrc: u32,
    next_seq: u16,
    next_timestamp: u32,
    payload_type: u8,
    /// Set at the start of the stream and after a gap: the next packet carries the marker
    /// bit, telling the receiver's jitter buffer that a talkspurt begins and it may resync.
    marker_pending: bool,
}

impl RtpStreamOut {
    /// `payload_type` must fit the 7-bit field (0..=127); higher bits are dropped. The SDP
    /// layer only negotiates valid payload types, so this is a local invariant.
    pub fn new(ssrc: u32, first_seq: u16, first_timestamp: u32, payload_type: u8) -> Self {
        debug_assert!(payload_type <= MAX_PAYLOAD_TYPE);
        RtpStreamOut {
            ssrc,
            next_seq: first_seq,
            next_timestamp: first_timestamp,
            payload_type: payload_type & MAX_PAYLOAD_TYPE,
            marker_pending: true,
        }
    }

    /// Builds one packet carrying `payload` (normally one 20 ms G.711 frame, 160 bytes)
    /// into `out`, which is cleared first so one buffer can be reused for every packet.
    /// Sequence +1 per packet; timestamp + `payload.len()` samples per packet (G.711 has
    /// one byte per sample); marker on the very first packet and on the first after
    /// [`skip`](Self::skip).
    pub fn write_packet(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let builder = RtpPacketBuilder::new()
            .payload_type(self.payload_type)
            .marked(self.marker_pending)
            .sequence(Seq::from(self.next_seq))
            .timestamp(self.next_timestamp)
            .ssrc(self.ssrc)
            .payload(payload);
        out.clear();
        out.resize(builder.target_length(), 0);
        let written = builder
            .build_into(out)
            .expect("buffer sized by target_length and payload type masked to 7 bits");
        out.truncate(written);

        self.marker_pending = false;
        self.next_seq = self.next_seq.wrapping_add(1);
        // A payload longer than u32::MAX samples is not an RTP packet; truncating the
        // length here would only matter for such impossible sizes.
        self.next_timestamp = self.next_timestamp.wrapping_add(payload.len() as u32);
    }

    /// Accounts for `frames` 20 ms frames that were not sent because the sender fell
    /// behind: the timestamp advances by `frames * 160`, the sequence does not (a
    /// sequence gap would look like packet loss to the receiver), and the next packet is
    /// marked so the receiver resynchronises instead of stretching audio over the gap.
    pub fn skip(&mut self, frames: u32) {
        if frames == 0 {
            return;
        }
        let samples = frames.wrapping_mul(FRAME_SAMPLES as u32);
        self.next_timestamp = self.next_timestamp.wrapping_add(samples);
        self.marker_pending = true;
    }

    /// Changes the payload type of the following packets (e.g. after a re-INVITE changed
    /// the codec). Same 7-bit rule as [`new`](Self::new).
    pub fn set_payload_type(&mut self, pt: u8) {
        debug_assert!(pt <= MAX_PAYLOAD_TYPE);
        self.payload_type = pt & MAX_PAYLOAD_TYPE;
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Timestamp the next packet will carry.
    pub fn next_timestamp(&self) -> u32 {
        self.next_timestamp
    }

    /// Carries on after packets someone else sent in this stream's name (a bridged
    /// call's relay): the next packet gets `seq`, and is marked.
    pub fn continue_at(&mut self, seq: u16) {
        self.next_seq = seq;
        self.marker_pending = true;
    }
}

/// The fields of a received RTP packet that the media layer uses, borrowing the payload
/// from the receive buffer. CSRCs and header extensions are skipped; padding is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpIn<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet too short: {0} bytes, the fixed header alone is 12")]
    TooShort(usize),
    #[error("unsupported RTP version {0}, expected 2")]
    UnsupportedVersion(u8),
    #[error("RTP headers truncated: need {header_len} bytes, packet has {buffer_len}")]
    HeadersTruncated {
        header_len: usize,
        buffer_len: usize,
    },
    #[error("invalid RTP padding length {0}")]
    InvalidPadding(u8),
}

impl From<RtpReaderError> for RtpError {
    fn from(e: RtpReaderError) -> Self {
        match e {
            RtpReaderError::BufferTooShort(len) => RtpError::TooShort(len),
            RtpReaderError::UnsupportedVersion(v) => RtpError::UnsupportedVersion(v),
            RtpReaderError::HeadersTruncated {
                header_len,
                buffer_len,
            } => RtpError::HeadersTruncated {
                header_len,
                buffer_len,
            },
            RtpReaderError::PaddingLengthInvalid(len) => RtpError::InvalidPadding(len),
        }
    }
}

/// Parses one received datagram. Never panics: every length the header implies
/// (CSRC list, extension, padding) is checked against the buffer before use. Note that
/// RTCP sent to the same port (rtcp-mux) also has version 2 and parses; callers tell it
/// apart by payload type (RTCP packet types 200-204 show up as PT 72-76 here).
pub fn parse(buf: &[u8]) -> Result<RtpIn<'_>, RtpError> {
    let reader = RtpReader::new(buf)?;
    Ok(RtpIn {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        seq: reader.sequence_number().into(),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        payload: reader.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; FRAME_SAMPLES] = [0xFF; FRAME_SAMPLES];

    /// The header fields of a packet `stream` builds for `payload`.
    #[derive(Debug, PartialEq, Eq)]
    struct Sent {
        payload_type: u8,
        marker: bool,
        seq: u16,
        timestamp: u32,
    }

    fn send(stream: &mut RtpStreamOut, payload: &[u8]) -> Sent {
        let mut buf = Vec::new();
        stream.write_packet(payload, &mut buf);
        let p = parse(&buf).expect("our own packet parses");
        assert_eq!(p.payload, payload);
        assert_eq!(p.ssrc, stream.ssrc());
        Sent {
            payload_type: p.payload_type,
            marker: p.marker,
            seq: p.seq,
            timestamp: p.timestamp,
        }
    }

    #[test]
    fn header_bytes_are_as_specified() {
        let mut stream = RtpStreamOut::new(0x1234_5678, 0x0102, 0x0A0B_0C0D, 8);
        let mut buf = vec![0xEE; 500];
        stream.write_packet(&[1, 2, 3], &mut buf);
        assert_eq!(
            buf,
            [0x80, 0x88, 0x01, 0x02, 0x0A, 0x0B, 0x0C, 0x0D, 0x12, 0x34, 0x56, 0x78, 1, 2, 3]
        );
    }

    #[test]
    fn parse_reads_what_write_packet_builds() {
        let mut stream = RtpStreamOut::new(0xDEAD_BEEF, 1000, 5000, 0);
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let mut buf = Vec::new();
        stream.write_packet(&payload, &mut buf);
        assert_eq!(buf.len(), 12 + 160);
        assert_eq!(
            parse(&buf),
            Ok(RtpIn {
                payload_type: 0,
                marker: true,
                seq: 1000,
                timestamp: 5000,
                ssrc: 0xDEAD_BEEF,
                payload: &payload,
            })
        );
        let p = send(&mut stream, &payload);
        assert_eq!((p.marker, p.seq, p.timestamp), (false, 1001, 5160));
        assert_eq!(stream.ssrc(), 0xDEAD_BEEF);
        assert_eq!(stream.payload_type(), 0);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let mut stream = RtpStreamOut::new(7, u16::MAX - 1, u32::MAX - 200, 0);
        let seen: Vec<(u16, u32)> = (0..4)
            .map(|_| {
                let p = send(&mut stream, &FRAME);
                (p.seq, p.timestamp)
            })
            .collect();
        assert_eq!(
            seen,
            [
                (u16::MAX - 1, u32::MAX - 200),
                (u16::MAX, u32::MAX - 40),
                (0, 119),
                (1, 279)
            ]
        );
        assert_eq!((stream.next_seq(), stream.next_timestamp()), (2, 439));
        stream.skip(u32::MAX / 160 + 1);
        assert_eq!(stream.next_seq(), 2);
        assert_eq!(
            stream.next_timestamp(),
            439u32.wrapping_add((u32::MAX / 160 + 1).wrapping_mul(160))
        );
    }

    #[test]
    fn marker_on_first_packet_and_after_skip_only() {
        let mut stream = RtpStreamOut::new(1, 10, 0, 0);
        let markers: Vec<bool> = (0..3).map(|_| send(&mut stream, &FRAME).marker).collect();
        assert_eq!(markers, [true, false, false]);

        stream.skip(0); // nothing skipped: no gap, no marker
        assert!(!send(&mut stream, &FRAME).marker);

        let before = stream.next_timestamp();
        stream.skip(5);
        assert_eq!(stream.next_seq(), 14);
        let p = send(&mut stream, &FRAME);
        assert!(p.marker);
        assert_eq!(p.seq, 14);
        assert_eq!(p.timestamp, before + 5 * 160);
        assert!(!send(&mut stream, &FRAME).marker);
    }

    #[test]
    fn payload_type_changes_apply_to_next_packet() {
        let mut stream = RtpStreamOut::new(1, 0, 0, 0);
        assert_eq!(send(&mut stream, &FRAME).payload_type, 0);
        stream.set_payload_type(8);
        assert_eq!(send(&mut stream, &FRAME).payload_type, 8);
        stream.set_payload_type(101);
        let p = send(&mut stream, &[0x01, 0x8A, 0x00, 0xA0]);
        assert_eq!(p.payload_type, 101);
        assert_eq!(p.timestamp, 320);
    }

    #[test]
    fn parse_rejects_malformed_headers() {
        assert_eq!(parse(&[]), Err(RtpError::TooShort(0)));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort(11)));
        // Version 1.
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::UnsupportedVersion(1)));
        // Two CSRCs announced, none present.
        let mut p = vec![0x82, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            parse(&p),
            Err(RtpError::HeadersTruncated { header_len: 20, .. })
        ));
        // Extension flag set but no extension header.
        p[0] = 0x90;
        assert!(matches!(parse(&p), Err(RtpError::HeadersTruncated { .. })));
        // Padding flag with a padding length larger than the payload.
        let mut p = vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 9];
        assert_eq!(parse(&p), Err(RtpError::InvalidPadding(9)));
        // Zero padding length is invalid too; a valid one is removed from the payload.
        *p.last_mut().unwrap() = 0;
        assert_eq!(parse(&p), Err(RtpError::InvalidPadding(0)));
        *p.last_mut().unwrap() = 2;
        assert_eq!(parse(&p).map(|r| r.payload), Ok(&[1u8][..]));
    }

    #[test]
    fn parse_skips_csrcs_and_extension() {
        let mut p = vec![0x91, 0x65, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0xAA; 4]); // one CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1]); // extension header, 1 word
        p.extend_from_slice(&[0x55; 4]);
        p.extend_from_slice(&[9, 8, 7]);
        let r = parse(&p).expect("valid packet");
        assert_eq!(r.payload, &[9, 8, 7]);
        assert_eq!((r.payload_type, r.marker, r.seq), (101, false, 1));
    }

    /// xorshift64: a tiny deterministic generator so the fuzz loop is reproducible
    /// without pulling in a crate.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut buf = Vec::new();
        for round in 0..100_000 {
            let len = match round % 100 {
                0 => (rng.next() % 70_000) as usize,
                1..=40 => (rng.next() % 16) as usize,
                41..=80 => (rng.next() % 64) as usize,
                _ => (rng.next() % 400) as usize,
            };
            buf.clear();
            while buf.len() < len {
                buf.extend_from_slice(&rng.next().to_le_bytes());
            }
            buf.truncate(len);
            // Bias half the inputs towards version 2 so the deeper checks (CSRC count,
            // extension length, padding) are exercised, not just the version test.
            if round % 2 == 0 && !buf.is_empty() {
                buf[0] = (buf[0] & 0x3F) | 0x80;
            }
            if let Ok(p) = parse(&buf) {
                assert!(p.payload.len() + 12 <= buf.len());
                assert!(p.payload_type <= MAX_PAYLOAD_TYPE);
            }
        }
    }

    #[test]
    fn huge_input_parses() {
        let mut buf = vec![0u8; 1 << 20];
        buf[0] = 0xB0; // padding + extension
        buf[14] = 0xFF; // extension length: 65535 words
        buf[15] = 0xFF;
        *buf.last_mut().unwrap() = 200;
        let r = parse(&buf).expect("fits");
        assert_eq!(r.payload.len(), (1 << 20) - 12 - 4 - 4 * 0xFFFF - 200);
    }
}
