//! G.711 (ITU-T) narrowband audio: mu-law (PCMU, RTP payload type 0) and A-law
//! (PCMA, payload type 8), the two codecs every SIP phone and gateway speaks.
//!
//! The per-sample companding comes from `ezk-g711`; this module adds the codec identity
//! used in SDP/RTP and slice-at-a-time helpers. Decoding goes through 256-entry tables
//! because it runs on every received packet; encoding is mostly done once per prompt at
//! start-up, so it calls the companding functions directly.

use std::sync::LazyLock;
use std::time::Duration;

/// G.711 is always sampled at 8 kHz (also the RTP clock rate for PT 0 and 8).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (and, since G.711 is one byte per sample, payload bytes) in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 160;
/// The packetisation interval ivrd sends with: 20 ms is the `ptime` every endpoint accepts.
pub const FRAME: Duration = Duration::from_millis(20);

/// One of the two G.711 companding laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Mu-law, used in North America and Japan. Static RTP payload type 0.
    Pcmu,
    /// A-law, used in Europe and most of the rest of the world. Static RTP payload type 8.
    Pcma,
}

static PCMU_DECODE: LazyLock<[i16; 256]> =
    LazyLock::new(|| std::array::from_fn(|b| ezk_g711::mulaw::decode(b as u8)));
static PCMA_DECODE: LazyLock<[i16; 256]> =
    LazyLock::new(|| std::array::from_fn(|b| ezk_g711::alaw::decode(b as u8)));

impl Codec {
    /// The static RTP payload type (RFC 3551, table 4).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The encoding name as written in an SDP `a=rtpmap` line.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Parses an SDP encoding name; SDP says these are case-insensitive (RFC 4855).
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// The byte that encodes a zero sample (0xFF for mu-law, 0xD5 for A-law). Used to pad
    /// frames: sending real encoded silence rather than 0x00 matters, because 0x00 is a
    /// loud negative sample in both laws.
    pub fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    /// Encodes one linear 16-bit sample.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ezk_g711::mulaw::encode(sample),
            Codec::Pcma => ezk_g711::alaw::encode(sample),
        }
    }

    /// Decodes one byte to a linear 16-bit sample.
    pub fn decode_sample(self, byte: u8) -> i16 {
        self.decode_table()[usize::from(byte)]
    }

    /// Appends the encoding of `pcm` to `out` (one byte per sample).
    pub fn encode_into(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm.len());
        match self {
            Codec::Pcmu => out.extend(pcm.iter().map(|&s| ezk_g711::mulaw::encode(s))),
            Codec::Pcma => out.extend(pcm.iter().map(|&s| ezk_g711::alaw::encode(s))),
        }
    }

    /// Appends the decoding of `bytes` to `out` (one sample per byte). Every byte value is
    /// a valid code word, so any network payload decodes.
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<i16>) {
        let table = self.decode_table();
        out.extend(bytes.iter().map(|&b| table[usize::from(b)]));
    }

    fn decode_table(self) -> &'static [i16; 256] {
        match self {
            Codec::Pcmu => &PCMU_DECODE,
            Codec::Pcma => &PCMA_DECODE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    #[test]
    fn payload_types_and_names() {
        for codec in BOTH {
            assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
            assert_eq!(
                Codec::from_encoding_name(codec.encoding_name()),
                Some(codec)
            );
        }
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_payload_type(101), None);
        assert_eq!(Codec::from_encoding_name("pcmu"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_encoding_name("PcMa"), Some(Codec::Pcma));
        assert_eq!(Codec::from_encoding_name("G722"), None);
        assert_eq!(Codec::from_encoding_name(""), None);
    }

    #[test]
    fn frame_constants_agree() {
        assert_eq!(
            FRAME_SAMPLES as u128,
            u128::from(SAMPLE_RATE) * FRAME.as_millis() / 1000
        );
    }

    #[test]
    fn known_code_words() {
        assert_eq!(Codec::Pcmu.decode_sample(0xFF), 0);
        assert_eq!(Codec::Pcmu.decode_sample(0x7F), 0);
        assert_eq!(Codec::Pcma.decode_sample(0xD5), 8);
        assert_eq!(Codec::Pcma.decode_sample(0x55), -8);
        // The loudest code words: 8031 * 4 (mu-law) and 4032 * 8 (A-law).
        assert_eq!(Codec::Pcmu.decode_sample(0x80), 32124);
        assert_eq!(Codec::Pcmu.decode_sample(0x00), -32124);
        assert_eq!(Codec::Pcma.decode_sample(0xAA), 32256);
        assert_eq!(Codec::Pcma.decode_sample(0x2A), -32256);
    }

    #[test]
    fn silence_is_encoded_zero() {
        for codec in BOTH {
            assert_eq!(codec.encode_sample(0), codec.silence());
            assert!(codec.decode_sample(codec.silence()).abs() <= 8);
            let mut out = Vec::new();
            codec.encode_into(&[0; FRAME_SAMPLES], &mut out);
            assert_eq!(out, vec![codec.silence(); FRAME_SAMPLES]);
        }
    }

    /// Companding keeps roughly 12-13 bits of precision: the quantisation step grows with
    /// the magnitude, so the error bound is relative (plus a small floor near zero, and
    /// the clipping above each law's largest code word).
    #[test]
    fn round_trip_error_is_bounded() {
        for codec in BOTH {
            let max_code =
                i32::from(codec.decode_sample(if codec == Codec::Pcmu { 0x80 } else { 0xAA }));
            let mut previous = i16::MIN;
            for x in i16::MIN..=i16::MAX {
                let y = codec.decode_sample(codec.encode_sample(x));
                let x32 = i32::from(x).clamp(-max_code, max_code);
                let err = (x32 - i32::from(y)).abs();
                let bound = x32.abs() / 32 + 16;
                assert!(
                    err <= bound,
                    "{codec:?}: {x} -> {y}, error {err} > bound {bound}"
                );
                // Companding is monotonic: louder input never decodes quieter.
                assert!(y >= previous, "{codec:?} not monotonic at {x}");
                previous = y;
            }
        }
    }

    #[test]
    fn decode_table_matches_reference_and_round_trips_code_words() {
        for codec in BOTH {
            for b in 0..=255u8 {
                let reference = match codec {
                    Codec::Pcmu => ezk_g711::mulaw::decode(b),
                    Codec::Pcma => ezk_g711::alaw::decode(b),
                };
                assert_eq!(codec.decode_sample(b), reference);
                let y = codec.decode_sample(b);
                // Every decoded level re-encodes to itself (mu-law has two zeros, 0x7F
                // and 0xFF; both decode to 0 and 0 encodes as 0xFF).
                assert_eq!(codec.decode_sample(codec.encode_sample(y)), y);
            }
        }
    }

    #[test]
    fn slices_append() {
        for codec in BOTH {
            let pcm: Vec<i16> = (0..400)
                .map(|i| ((i * 97) % 20000 - 10000) as i16)
                .collect();
            let mut bytes = vec![0xAB];
            codec.encode_into(&pcm, &mut bytes);
            assert_eq!(bytes.len(), 401);
            assert_eq!(bytes[0], 0xAB);
            let mut decoded = vec![1];
            codec.decode_into(&bytes[1..], &mut decoded);
            assert_eq!(decoded.len(), 401);
            for (i, (&x, &y)) in pcm.iter().zip(&decoded[1..]).enumerate() {
                assert_eq!(y, codec.decode_sample(codec.encode_sample(x)), "sample {i}");
            }
        }
    }
}
