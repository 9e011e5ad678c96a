//! Audio plumbing between the telephone side (8 kHz, 16-bit PCM decoded from G.711) and
//! Whisper (16 kHz mono f32 in -1..1), plus a small WAV reader for the test corpus and the
//! benchmark, whose files are 8 kHz mu-law WAVs that `hound` cannot read.
//!
//! Pure: no I/O beyond what the caller hands in.

use rubato::{FftFixedInOut, Resampler};

/// The telephone sample rate (G.711).
pub const RATE_8K: u32 = 8000;
/// The sample rate Whisper's mel front end expects.
pub const WHISPER_RATE: u32 = 16000;

/// Input samples the resampler takes per call. The FFT resampler's delay is half a chunk;
/// an even chunk keeps that a whole number of output samples so it can be dropped exactly.
/// 512 input samples (64 ms) keeps the delay short and the FFTs small.
const CHUNK_IN: usize = 512;

/// 8 kHz -> 16 kHz converter. Owns the FFT plans, so a worker builds one and reuses it for
/// every utterance (planning costs more than resampling a short utterance).
pub struct Upsampler {
    resampler: FftFixedInOut<f32>,
    chunk_in: usize,
    delay: usize,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl Upsampler {
    pub fn new() -> Self {
        // A fixed 1:2 ratio with a valid chunk size cannot fail; the error type only
        // covers zero rates and channel counts.
        let resampler =
            FftFixedInOut::<f32>::new(RATE_8K as usize, WHISPER_RATE as usize, CHUNK_IN, 1)
                .expect("8 kHz -> 16 kHz with a non-zero chunk is a valid resampler");
        let chunk_in = resampler.input_frames_next();
        let chunk_out = resampler.output_frames_next();
        Upsampler {
            delay: resampler.output_delay(),
            input: Vec::with_capacity(chunk_in),
            output: vec![0.0; chunk_out],
            chunk_in,
            resampler,
        }
    }

    /// Resamples one whole utterance: returns exactly `2 * pcm.len()` samples, time-aligned
    /// with the input (the filter delay removed), scaled to -1..1.
    pub fn process(&mut self, pcm_8k: &[i16]) -> Vec<f32> {
        let wanted = pcm_8k.len() * 2;
        let mut out = Vec::with_capacity(wanted + self.output.len());
        // Each utterance is independent: start from a clean filter state.
        self.resampler.reset();
        let mut skip = self.delay;
        let mut samples = pcm_8k.iter().map(|&s| f32::from(s) / 32768.0);
        while out.len() < wanted {
            self.input.clear();
            self.input.extend(samples.by_ref().take(self.chunk_in));
            // Past the end, zeros push the last real samples out of the filter.
            self.input.resize(self.chunk_in, 0.0);
            let produced = match self.resampler.process_into_buffer(
                &[&self.input],
                &mut [&mut self.output],
                None,
            ) {
                Ok((_, produced)) => produced,
                // Buffers are sized from the resampler's own figures; it cannot refuse
                // them, but if it ever did, fail soft with silence rather than panic.
                Err(_) => {
                    out.resize(wanted, 0.0);
                    break;
                }
            };
            let dropped = skip.min(produced);
            skip -= dropped;
            out.extend_from_slice(&self.output[dropped..produced]);
        }
        out.truncate(wanted);
        out
    }
}

impl Default for Upsampler {
    fn default() -> Self {
        Self::new()
    }
}

/// Root-mean-square level of 16-bit samples in dBFS (a full-scale sine is -3 dBFS);
/// -120 for empty or all-zero input.
pub fn rms_dbfs(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return -120.0;
    }
    let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / pcm.len() as f64).sqrt() / 32768.0;
    if rms <= 1e-6 {
        -120.0
    } else {
        (20.0 * rms.log10()) as f32
    }
}

/// Why a WAV file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("no fmt or data chunk")]
    MissingChunk,
    #[error("unsupported WAV encoding: format tag {format}, {bits} bits, {channels} channels (want mono 16-bit PCM, mu-law or A-law)")]
    Unsupported {
        format: u16,
        bits: u16,
        channels: u16,
    },
}

/// A decoded mono WAV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

/// Reads a mono WAV holding 16-bit PCM (format 1), A-law (6) or mu-law (7) into 16-bit
/// samples. G.711 WAVs are what telephony tools (sox `-e u-law`) write and what the corpus
/// keeps; `hound` reads only PCM and float.
pub fn decode_wav(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut data: Option<&[u8]> = None;
    let mut rest = &bytes[12..];
    while rest.len() >= 8 {
        let id = &rest[0..4];
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let body = &rest[8..];
        // A truncated last chunk (common when a recorder was killed) keeps what is there.
        let body = &body[..len.min(body.len())];
        match id {
            b"fmt " if body.len() >= 16 => {
                let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                fmt = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
            }
            b"data" => data = Some(body),
            _ => {}
        }
        // Chunks are padded to an even length.
        let advance = 8usize.saturating_add(len).saturating_add(len & 1);
        rest = rest.get(advance..).unwrap_or(&[]);
    }
    let ((format, channels, sample_rate, bits), data) = match (fmt, data) {
        (Some(f), Some(d)) => (f, d),
        _ => return Err(WavError::MissingChunk),
    };
    let samples = match (format, channels, bits) {
        (1, 1, 16) => data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
        (6, 1, 8) => data.iter().map(|&b| ezk_g711::alaw::decode(b)).collect(),
        (7, 1, 8) => data.iter().map(|&b| ezk_g711::mulaw::decode(b)).collect(),
        _ => {
            return Err(WavError::Unsupported {
                format,
                bits,
                channels,
            })
        }
    };
    Ok(Wav {
        sample_rate,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;

    fn sine_8k(freq: f32, amplitude: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amplitude * (TAU * freq * i as f32 / 8000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn upsampling_doubles_length_and_keeps_time_alignment() {
        let mut up = Upsampler::new();
        for n in [0, 1, 159, 160, 511, 512, 513, 8000, 12345] {
            assert_eq!(up.process(&vec![1000; n]).len(), 2 * n, "length for {n}");
        }
        // A 1 kHz tone at 16 kHz: sample 2i must match the 8 kHz sample i (no shift).
        let pcm = sine_8k(1000.0, 16000.0, 4000);
        let out = up.process(&pcm);
        for i in (200..3800).step_by(37) {
            let want = f32::from(pcm[i]) / 32768.0;
            assert!(
                (out[2 * i] - want).abs() < 0.01,
                "sample {i}: {} vs {want}",
                out[2 * i]
            );
        }
        // The in-between samples are interpolated (the tone's value half a step later).
        let mid = (16000.0 / 32768.0) * (TAU * 1000.0 * 1000.5 / 8000.0).sin();
        assert!((out[2001] - mid).abs() < 0.01, "{} vs {mid}", out[2001]);
    }

    #[test]
    fn upsampler_is_reusable_and_stateless_between_utterances() {
        let mut up = Upsampler::new();
        let a = up.process(&sine_8k(440.0, 8000.0, 3000));
        let _ = up.process(&sine_8k(2000.0, 30000.0, 777));
        let b = up.process(&sine_8k(440.0, 8000.0, 3000));
        assert_eq!(a, b);
    }

    #[test]
    fn extreme_input_stays_finite() {
        let mut up = Upsampler::new();
        let harsh: Vec<i16> = (0..5000)
            .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        assert!(up.process(&harsh).iter().all(|s| s.is_finite()));
    }

    #[test]
    fn levels() {
        assert_eq!(rms_dbfs(&[]), -120.0);
        assert_eq!(rms_dbfs(&[0; 100]), -120.0);
        let full_sine = sine_8k(1000.0, 32767.0, 8000);
        assert!((rms_dbfs(&full_sine) + 3.01).abs() < 0.05);
    }

    fn wav_bytes(format: u16, bits: u16, rate: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&format.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(bits) / 8).to_le_bytes());
        v.extend_from_slice(&(bits / 8).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_pcm_and_g711_wavs() {
        let pcm = wav_bytes(1, 16, 8000, &[0x01, 0x00, 0xff, 0xff]);
        assert_eq!(
            decode_wav(&pcm),
            Ok(Wav {
                sample_rate: 8000,
                samples: vec![1, -1]
            })
        );
        let ulaw = decode_wav(&wav_bytes(7, 8, 8000, &[0xff, 0x00, 0x80])).unwrap();
        assert_eq!(ulaw.samples[0], 0, "0xff is mu-law zero");
        assert!(ulaw.samples[1] < -30000 && ulaw.samples[2] > 30000);
        let alaw = decode_wav(&wav_bytes(6, 8, 8000, &[0xd5])).unwrap();
        assert!(alaw.samples[0].abs() < 16, "0xd5 is A-law near-zero");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(decode_wav(b""), Err(WavError::NotWave));
        assert_eq!(decode_wav(b"RIFF\0\0\0\0WAVE"), Err(WavError::MissingChunk));
        assert!(matches!(
            decode_wav(&wav_bytes(3, 32, 8000, &[0; 8])),
            Err(WavError::Unsupported { format: 3, .. })
        ));
        // Truncated and lying chunk lengths.
        let mut bad = wav_bytes(1, 16, 8000, &[1, 2, 3, 4, 5, 6]);
        bad.truncate(bad.len() - 3);
        assert!(decode_wav(&bad).is_ok());
        let mut huge = wav_bytes(1, 16, 8000, &[1, 2]);
        let n = huge.len();
        huge[n - 6..n - 2].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_wav(&huge).is_ok());
        for cut in 0..44 {
            let _ = decode_wav(&pcm_prefix(cut));
        }
    }

    fn pcm_prefix(n: usize) -> Vec<u8> {
        let mut v = wav_bytes(1, 16, 8000, &[0; 10]);
        v.truncate(n);
        v
    }
}
