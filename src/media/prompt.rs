//! Prompts: audio played to callers. Each one is loaded once at start-up (or synthesised
//! once), converted to 8 kHz mono and pre-encoded in both G.711 laws, so that playing it
//! during a call is a memcpy of 160 bytes per frame and never touches files or codecs.
//!
//! Any WAV an admin is likely to drop into `sounds/` is accepted: any sample rate,
//! 8/16/24/32-bit integer or 32-bit float, any number of channels (averaged to mono).
//! Other rates are converted with a high-quality FFT resampler (rubato), time-aligned so
//! that the prompt neither starts late nor loses its last syllable.

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use rubato::{FftFixedInOut, Resampler};

use super::g711::{Codec, SAMPLE_RATE};

/// Longest prompt accepted. Anything longer is almost certainly the wrong file (music on
/// hold, a recording) and would cost memory for every codec it is encoded in.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 60);

/// Sample rates accepted as input; this covers every real audio rate with room to spare
/// and keeps the resampler's FFT sizes sane for odd rates.
const MIN_INPUT_RATE: u32 = 1_000;
const MAX_INPUT_RATE: u32 = 768_000;

/// Approximate resampler input chunk. The FFT resampler's anti-aliasing filter is as long
/// as its chunk, so this sets the filter's sharpness; ~1000 samples is plenty for speech.
const RESAMPLER_CHUNK: usize = 1024;

/// One prompt, ready to play: 8 kHz mono linear PCM plus both G.711 encodings.
/// Cloning is cheap (reference-counted buffers).
#[derive(Clone)]
pub struct Prompt {
    pub name: String,
    /// 8 kHz mono samples; never empty.
    pub pcm: Arc<[i16]>,
    pcmu: Arc<[u8]>,
    pcma: Arc<[u8]>,
}

/// Why a prompt could not be loaded. Every message starts with the file (or, for
/// synthesised audio, the prompt name) and says what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{origin}: cannot open: {error}")]
    Open { origin: String, error: io::Error },
    #[error("{origin}: cannot read: {error}")]
    Read { origin: String, error: io::Error },
    #[error("{origin}: truncated: the audio data ends before the length in its header")]
    Truncated { origin: String },
    #[error("{origin}: not a valid WAV file: {reason}")]
    NotWav { origin: String, reason: String },
    #[error(
        "{origin}: unsupported WAV encoding (only uncompressed PCM is read: \
         8, 16, 24 or 32-bit integer, or 32-bit float)"
    )]
    UnsupportedEncoding { origin: String },
    #[error(
        "{origin}: {bits}-bit {kind} samples are not supported \
         (use 8, 16, 24 or 32-bit integer, or 32-bit float)"
    )]
    UnsupportedSampleFormat {
        origin: String,
        bits: u16,
        kind: &'static str,
    },
    #[error(
        "{origin}: sample rate {rate} Hz is not supported \
         (must be {MIN_INPUT_RATE} to {MAX_INPUT_RATE} Hz)"
    )]
    UnsupportedSampleRate { origin: String, rate: u32 },
    #[error("{origin}: no audio samples")]
    Empty { origin: String },
    #[error("{origin}: {seconds} seconds of audio; a prompt may be at most 10 minutes long")]
    TooLong { origin: String, seconds: u64 },
    #[error("{origin}: resampling from {rate} Hz to 8000 Hz failed: {reason}")]
    Resample {
        origin: String,
        rate: u32,
        reason: String,
    },
}

impl Prompt {
    /// Decodes a WAV file's bytes; `origin` (the file) names the source in error messages.
    pub fn from_wav_bytes(name: &str, bytes: &[u8], origin: &str) -> Result<Prompt, PromptError> {
        Self::from_wav_reader(name, std::io::Cursor::new(bytes), origin)
    }

    /// Loads WAV data from any reader; `origin` names the source in error messages.
    pub fn from_wav_reader<R: Read>(
        name: &str,
        reader: R,
        origin: &str,
    ) -> Result<Prompt, PromptError> {
        let wav = hound::WavReader::new(reader).map_err(|e| wav_error(origin, e))?;
        let spec = wav.spec();
        check_rate(origin, spec.sample_rate)?;
        check_length(origin, u64::from(wav.duration()), spec.sample_rate)?;

        // Full scale of a `bits`-bit integer maps to 1.0. Power-of-two scaling is exact in
        // f32 for up to 24 bits, so 16-bit input at 8 kHz comes out bit-identical.
        let int_scale = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
                Some(1.0 / (1u64 << (bits - 1)) as f32)
            }
            (hound::SampleFormat::Float, 32) => None,
            (format, bits) => {
                return Err(PromptError::UnsupportedSampleFormat {
                    origin: origin.to_owned(),
                    bits,
                    kind: match format {
                        hound::SampleFormat::Int => "integer",
                        hound::SampleFormat::Float => "float",
                    },
                });
            }
        };

        let mut mono = Downmix::new(spec.channels, To8k::new(origin, spec.sample_rate)?);
        match int_scale {
            Some(scale) => {
                for sample in wav.into_samples::<i32>() {
                    let sample = sample.map_err(|e| wav_error(origin, e))?;
                    mono.push(sample as f32 * scale)?;
                }
            }
            None => {
                for sample in wav.into_samples::<f32>() {
                    mono.push(sample.map_err(|e| wav_error(origin, e))?)?;
                }
            }
        }
        Self::build(name, mono.finish()?, origin)
    }

    /// Builds a prompt from mono float samples in -1.0..=1.0 at any supported rate (for
    /// speech synthesis). Values outside that range are clipped. Errors name the prompt.
    pub fn from_samples(
        name: &str,
        samples: &[f32],
        sample_rate: u32,
    ) -> Result<Prompt, PromptError> {
        let origin = format!("prompt {name:?}");
        check_rate(&origin, sample_rate)?;
        check_length(&origin, samples.len() as u64, sample_rate)?;
        let mut to_8k = To8k::new(&origin, sample_rate)?;
        for &sample in samples {
            to_8k.push(sample)?;
        }
        Self::build(name, to_8k.finish()?, &origin)
    }

    /// Builds a prompt from 8 kHz mono linear PCM as is.
    pub fn from_pcm_8k(name: &str, pcm: Vec<i16>) -> Result<Prompt, PromptError> {
        Self::build(name, pcm, &format!("prompt {name:?}"))
    }

    fn build(name: &str, pcm: Vec<i16>, origin: &str) -> Result<Prompt, PromptError> {
        check_length(origin, pcm.len() as u64, SAMPLE_RATE)?;
        if pcm.is_empty() {
            return Err(PromptError::Empty {
                origin: origin.to_owned(),
            });
        }
        let encode = |codec: Codec| {
            let mut bytes = Vec::with_capacity(pcm.len());
            codec.encode_into(&pcm, &mut bytes);
            Arc::<[u8]>::from(bytes)
        };
        Ok(Prompt {
            name: name.to_owned(),
            pcmu: encode(Codec::Pcmu),
            pcma: encode(Codec::Pcma),
            pcm: pcm.into(),
        })
    }

    /// The prompt pre-encoded for `codec`, one byte per 8 kHz sample.
    pub fn encoded(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    /// Playing time (one sample is exactly 125 µs at 8 kHz).
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.pcm.len() as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }
}

impl fmt::Debug for Prompt {
    /// Name and length only: dumping the samples would bury everything else in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("name", &self.name)
            .field("samples", &self.pcm.len())
            .field("duration", &self.duration())
            .finish()
    }
}

fn check_rate(origin: &str, rate: u32) -> Result<(), PromptError> {
    if (MIN_INPUT_RATE..=MAX_INPUT_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(PromptError::UnsupportedSampleRate {
            origin: origin.to_owned(),
            rate,
        })
    }
}

/// Rejects more than [`MAX_DURATION`] of audio. Checked against the header before any
/// sample is decoded, and again while decoding in case the header understates it.
fn check_length(origin: &str, frames: u64, rate: u32) -> Result<(), PromptError> {
    if frames > MAX_DURATION.as_secs() * u64::from(rate) {
        Err(PromptError::TooLong {
            origin: origin.to_owned(),
            seconds: frames / u64::from(rate.max(1)),
        })
    } else {
        Ok(())
    }
}

fn wav_error(origin: &str, e: hound::Error) -> PromptError {
    let origin = origin.to_owned();
    match e {
        hound::Error::IoError(error) if is_end_of_data(&error) => PromptError::Truncated { origin },
        hound::Error::IoError(error) => PromptError::Read { origin, error },
        hound::Error::UnfinishedSample => PromptError::Truncated { origin },
        hound::Error::Unsupported => PromptError::UnsupportedEncoding { origin },
        hound::Error::FormatError(reason) => PromptError::NotWav {
            origin,
            reason: reason.to_owned(),
        },
        other @ (hound::Error::TooWide | hound::Error::InvalidSampleFormat) => {
            PromptError::NotWav {
                origin,
                reason: other.to_string(),
            }
        }
    }
}

/// Whether a read failed because the data ran out. hound reports that as a plain
/// `ErrorKind::Other` error with a fixed message rather than `UnexpectedEof`.
fn is_end_of_data(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::UnexpectedEof
        || (error.kind() == io::ErrorKind::Other
            && error.to_string() == "Failed to read enough bytes.")
}

/// Averages interleaved multi-channel samples into mono frames.
struct Downmix {
    channels: u16,
    /// Sum of the current frame's channels so far, and how many were added.
    sum: f32,
    filled: u16,
    sink: To8k,
}

impl Downmix {
    fn new(channels: u16, sink: To8k) -> Self {
        Downmix {
            // hound rejects zero channels; max(1) keeps the division below total anyway.
            channels: channels.max(1),
            sum: 0.0,
            filled: 0,
            sink,
        }
    }

    fn push(&mut self, sample: f32) -> Result<(), PromptError> {
        self.sum += sample;
        self.filled += 1;
        if self.filled == self.channels {
            let mono = self.sum / f32::from(self.channels);
            self.sum = 0.0;
            self.filled = 0;
            self.sink.push(mono)?;
        }
        Ok(())
    }

    /// A trailing incomplete frame (a file cut mid-frame) is dropped.
    fn finish(self) -> Result<Vec<i16>, PromptError> {
        self.sink.finish()
    }
}

/// Streams mono float samples at the input rate into 8 kHz i16 samples. Streaming means
/// a long high-rate file is never held in memory at its original rate.
struct To8k {
    origin: String,
    input_rate: u32,
    /// Input frames received so far.
    frames_in: u64,
    out: Vec<i16>,
    /// `None` when the input already is 8 kHz: samples are only converted.
    resampler: Option<FftStage>,
}

struct FftStage {
    resampler: FftFixedInOut<f32>,
    /// Input waiting for a full chunk; the resampler takes fixed-size chunks.
    pending: Vec<f32>,
    chunk_in: usize,
    output: Vec<f32>,
    /// Output samples still to drop at the start: the resampler's filter delay.
    delay_left: usize,
}

impl To8k {
    fn new(origin: &str, input_rate: u32) -> Result<Self, PromptError> {
        let resampler = if input_rate == SAMPLE_RATE {
            None
        } else {
            Some(FftStage::new(origin, input_rate)?)
        };
        Ok(To8k {
            origin: origin.to_owned(),
            input_rate,
            frames_in: 0,
            out: Vec::new(),
            resampler,
        })
    }

    fn push(&mut self, sample: f32) -> Result<(), PromptError> {
        self.frames_in += 1;
        if self.frames_in % u64::from(self.input_rate) == 0 {
            check_length(&self.origin, self.frames_in, self.input_rate)?;
        }
        match self.resampler.as_mut() {
            None => self.out.push(to_i16(sample)),
            Some(stage) => {
                stage.pending.push(sample);
                if stage.pending.len() == stage.chunk_in {
                    stage.run(&mut self.out, &self.origin, self.input_rate)?;
                }
            }
        }
        Ok(())
    }

    /// Flushes the resampler and returns exactly `ceil(frames_in * 8000 / rate)` samples,
    /// so the prompt's duration matches the input's.
    fn finish(mut self) -> Result<Vec<i16>, PromptError> {
        if let Some(stage) = self.resampler.as_mut() {
            let rate = u64::from(self.input_rate);
            let wanted = (self.frames_in * u64::from(SAMPLE_RATE)).div_ceil(rate);
            // The output lags the input by the filter delay, so the last input samples
            // are still inside the resampler: push zeros through until they are out.
            while (self.out.len() as u64) < wanted {
                stage.pending.resize(stage.chunk_in, 0.0);
                stage.run(&mut self.out, &self.origin, self.input_rate)?;
            }
            self.out.truncate(wanted as usize);
        }
        Ok(self.out)
    }
}

impl FftStage {
    fn new(origin: &str, input_rate: u32) -> Result<Self, PromptError> {
        let error = |reason: String| PromptError::Resample {
            origin: origin.to_owned(),
            rate: input_rate,
            reason,
        };
        // The resampler works in chunks of `k * input_rate / gcd` input samples. An even
        // k makes its delay (half a chunk) a whole number of output samples, so it can
        // be removed exactly.
        let (input_rate, output_rate) = (input_rate as usize, SAMPLE_RATE as usize);
        let unit_in = input_rate / gcd(input_rate, output_rate);
        let k = RESAMPLER_CHUNK.div_ceil(unit_in).next_multiple_of(2);
        let resampler = FftFixedInOut::<f32>::new(input_rate, output_rate, k * unit_in, 1)
            .map_err(|e| error(e.to_string()))?;
        let chunk_in = resampler.input_frames_next();
        let chunk_out = resampler.output_frames_next();
        Ok(FftStage {
            delay_left: resampler.output_delay(),
            pending: Vec::with_capacity(chunk_in),
            chunk_in,
            output: vec![0.0; chunk_out],
            resampler,
        })
    }

    /// Resamples one full chunk of `pending` and appends the result to `out`, minus the
    /// part of the initial delay not yet dropped.
    fn run(&mut self, out: &mut Vec<i16>, origin: &str, rate: u32) -> Result<(), PromptError> {
        let (_, produced) = self
            .resampler
            .process_into_buffer(&[&self.pending], &mut [&mut self.output], None)
            .map_err(|e| PromptError::Resample {
                origin: origin.to_owned(),
                rate,
                reason: e.to_string(),
            })?;
        self.pending.clear();
        let skip = self.delay_left.min(produced);
        self.delay_left -= skip;
        out.extend(self.output[skip..produced].iter().map(|&s| to_i16(s)));
        Ok(())
    }
}

/// Full scale 1.0 maps to 32768 (the inverse of the integer input scaling), clipped to
/// the i16 range. NaN becomes 0 (`as` saturates and maps NaN to zero).
fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::TAU;
    use std::io::Cursor;
    use std::path::Path;

    /// Writes an in-memory WAV with `frames` frames, each produced by `frame(i)`.
    fn wav<S: hound::Sample + Copy>(
        spec: hound::WavSpec,
        frames: usize,
        frame: impl Fn(usize) -> Vec<S>,
    ) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
        for i in 0..frames {
            for s in frame(i) {
                writer.write_sample(s).expect("write");
            }
        }
        writer.finalize().expect("finalize");
        cursor.into_inner()
    }

    fn int_spec(rate: u32, channels: u16, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    fn float_spec(rate: u32, channels: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        }
    }

    fn load(bytes: Vec<u8>) -> Result<Prompt, PromptError> {
        Prompt::from_wav_reader("test", Cursor::new(bytes), "sounds/test.wav")
    }

    fn sine(freq: f32, rate: u32, amplitude: f32, i: usize) -> f32 {
        amplitude * (TAU * freq * i as f32 / rate as f32).sin()
    }

    /// Number of sign changes.
    fn zero_crossings(pcm: &[i16]) -> usize {
        pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    fn peak(pcm: &[i16]) -> i32 {
        pcm.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0)
    }

    /// Largest difference between `pcm` (at 8 kHz) and the ideal sine, away from the
    /// edges where the band-limited resampled signal rings. A small value shows that
    /// frequency, amplitude *and* timing (delay compensation) are all right.
    fn max_error_vs_ideal(pcm: &[i16], freq: f32, amplitude: f32) -> f32 {
        let margin = 200;
        pcm[margin..pcm.len() - margin]
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let ideal = sine(freq, SAMPLE_RATE, amplitude, i + margin) * 32768.0;
                (f32::from(s) - ideal).abs()
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn passthrough_at_8k_is_exact() {
        let samples: Vec<i16> = (0..8000)
            .map(|i| ((i * 7919) % 65536 - 32768) as i16)
            .collect();
        let prompt = load(wav(int_spec(8000, 1, 16), samples.len(), |i| {
            vec![samples[i]]
        }))
        .expect("loads");
        assert_eq!(&prompt.pcm[..], &samples[..]);
        let mut pcmu = Vec::new();
        Codec::Pcmu.encode_into(&samples, &mut pcmu);
        assert_eq!(prompt.encoded(Codec::Pcmu), &pcmu[..]);
        let mut pcma = Vec::new();
        Codec::Pcma.encode_into(&samples, &mut pcma);
        assert_eq!(prompt.encoded(Codec::Pcma), &pcma[..]);
        assert_eq!(prompt.duration(), Duration::from_secs(1));
        assert_eq!(prompt.name, "test");
    }

    #[test]
    fn other_bit_depths_at_8k() {
        // 8-bit: hound yields -128..=127, which must scale by 256.
        let p = load(wav(int_spec(8000, 1, 8), 3, |i| vec![[-128i8, 0, 127][i]])).unwrap();
        assert_eq!(&p.pcm[..], &[-32768, 0, 32512]);
        // 24-bit keeps the top 16 bits.
        let p = load(wav(int_spec(8000, 1, 24), 2, |i| {
            vec![[0x12_3400i32, -0x80_0000][i]]
        }))
        .unwrap();
        assert_eq!(&p.pcm[..], &[0x1234, -32768]);
        // 32-bit int and float, with a clipped over-range float.
        let p = load(wav(int_spec(8000, 1, 32), 2, |i| {
            vec![[i32::MAX, 0x4000_0000][i]]
        }))
        .unwrap();
        assert_eq!(&p.pcm[..], &[32767, 16384]);
        let p = load(wav(float_spec(8000, 1), 4, |i| {
            vec![[0.5f32, -1.0, 1.5, -7.0][i]]
        }))
        .unwrap();
        assert_eq!(&p.pcm[..], &[16384, -32768, 32767, -32768]);
    }

    #[test]
    fn channels_are_averaged() {
        let p = load(wav(int_spec(8000, 3, 16), 2, |i| {
            if i == 0 {
                vec![300i16, 600, 900]
            } else {
                vec![-3000, 3000, 0]
            }
        }))
        .unwrap();
        assert_eq!(&p.pcm[..], &[600, 0]);
    }

    #[test]
    fn sine_16k_i16() {
        let rate = 16_000;
        let frames = 16_000; // 1 s
        let bytes = wav(int_spec(rate, 1, 16), frames, |i| {
            vec![(sine(440.0, rate, 0.5, i) * 32767.0) as i16]
        });
        let p = load(bytes).expect("loads");
        assert_eq!(p.pcm.len(), 8000);
        assert_eq!(p.duration(), Duration::from_secs(1));
        // 440 Hz for 1 s: 880 sign changes.
        assert!((878..=882).contains(&zero_crossings(&p.pcm)));
        let err = max_error_vs_ideal(&p.pcm, 440.0, 0.5);
        assert!(err < 100.0, "max error {err}");
    }

    #[test]
    fn stereo_f32_44k1() {
        let rate = 44_100;
        let frames = 44_100 * 3 / 2; // 1.5 s
                                     // Same tone in both channels, opposite DC offsets that cancel when averaged.
        let bytes = wav(float_spec(rate, 2), frames, |i| {
            let s = sine(300.0, rate, 0.25, i);
            vec![s + 0.1, s - 0.1]
        });
        let p = load(bytes).expect("loads");
        assert_eq!(p.pcm.len(), 12_000);
        let d = p.duration().as_secs_f64();
        assert!((d - 1.5).abs() < 0.001, "{d}");
        let err = max_error_vs_ideal(&p.pcm, 300.0, 0.25);
        assert!(err < 100.0, "max error {err}");
        assert_eq!(p.encoded(Codec::Pcmu).len(), p.pcm.len());
        assert_eq!(p.encoded(Codec::Pcma).len(), p.pcm.len());
    }

    /// Durations that do not divide evenly keep their length to within one sample.
    #[test]
    fn duration_is_preserved() {
        for (rate, frames) in [
            (22_050, 12_345),
            (11_025, 999),
            (48_000, 7),
            (96_000, 100_001),
        ] {
            let bytes = wav(int_spec(rate, 1, 16), frames, |i| vec![(i % 100) as i16]);
            let p = load(bytes).expect("loads");
            let want = frames as f64 / f64::from(rate);
            let got = p.duration().as_secs_f64();
            assert!(
                (got - want).abs() < 0.001,
                "{rate} Hz x {frames}: {got} s vs {want} s"
            );
        }
    }

    #[test]
    fn sine_1k_at_48k_keeps_frequency_amplitude_and_timing() {
        let rate = 48_000;
        let frames = 48_000 * 2;
        let amplitude = 0.8;
        let bytes = wav(int_spec(rate, 1, 16), frames, |i| {
            vec![(sine(1000.0, rate, amplitude, i) * 32767.0).round() as i16]
        });
        let p = load(bytes).expect("loads");
        assert_eq!(p.pcm.len(), 16_000);
        // 1 kHz for 2 s: 4000 sign changes (one fewer or more at the ends).
        let crossings = zero_crossings(&p.pcm);
        assert!((3998..=4001).contains(&crossings), "{crossings} crossings");
        let want_peak = amplitude * 32768.0;
        let got_peak = peak(&p.pcm[100..p.pcm.len() - 100]) as f32;
        assert!(
            (got_peak - want_peak).abs() < want_peak * 0.02,
            "peak {got_peak} vs {want_peak}"
        );
        // Sample-by-sample against the ideal: also proves there is no time shift (a
        // shift of one sample at 1 kHz would give an error of ~0.7 * full amplitude).
        let err = max_error_vs_ideal(&p.pcm, 1000.0, amplitude);
        assert!(err < 150.0, "max error {err}");
    }

    #[test]
    fn resampled_onset_is_not_delayed() {
        // Silence, then a 500 Hz tone starting at exactly 0.25 s, at 22.05 kHz (espeak's rate).
        let rate = 22_050;
        let start = rate as usize / 4;
        let bytes = wav(int_spec(rate, 1, 16), rate as usize, |i| {
            let s = if i < start {
                0.0
            } else {
                sine(500.0, rate, 0.5, i - start)
            };
            vec![(s * 32767.0) as i16]
        });
        let p = load(bytes).expect("loads");
        let first_loud = p.pcm.iter().position(|&s| s.abs() > 1000);
        // The onset at sample 2000 reaches 1000/16384 of the amplitude within a few samples.
        assert!(matches!(first_loud, Some(2000..=2004)), "{first_loud:?}");
    }

    #[test]
    fn from_samples_resamples() {
        let rate = 24_000;
        let samples: Vec<f32> = (0..24_000).map(|i| sine(800.0, rate, 0.5, i)).collect();
        let p = Prompt::from_samples("tts", &samples, rate).expect("ok");
        assert_eq!(p.pcm.len(), 8000);
        assert!(max_error_vs_ideal(&p.pcm, 800.0, 0.5) < 100.0);
        let err = Prompt::from_samples("tts", &[], 16_000).unwrap_err();
        assert_eq!(err.to_string(), "prompt \"tts\": no audio samples");
    }

    #[test]
    fn errors_name_the_file() {
        let msg = |bytes: Vec<u8>| load(bytes).unwrap_err().to_string();

        let m = msg(b"this is not a wav file".to_vec());
        assert!(
            m.starts_with("sounds/test.wav: not a valid WAV file"),
            "{m}"
        );

        let m = msg(wav::<i16>(int_spec(8000, 1, 16), 0, |_| vec![]));
        assert_eq!(m, "sounds/test.wav: no audio samples");

        let m = msg(wav(int_spec(16000, 1, 16), 0, |_| Vec::<i16>::new()));
        assert_eq!(m, "sounds/test.wav: no audio samples");

        let mut truncated = wav(int_spec(8000, 1, 16), 1000, |_| vec![1i16]);
        truncated.truncate(500);
        let m = msg(truncated);
        assert!(m.starts_with("sounds/test.wav: truncated"), "{m}");

        let m = msg(wav(int_spec(500, 1, 16), 10, |_| vec![0i16]));
        assert!(
            m.starts_with("sounds/test.wav: sample rate 500 Hz is not supported"),
            "{m}"
        );
    }

    #[test]
    fn unsupported_sample_formats_are_rejected() {
        // A 32-bit float file patched to claim 64-bit samples (bits per sample is at
        // byte 34 of the fmt chunk).
        let mut bytes = wav(float_spec(8000, 1), 4, |_| vec![0.0f32]);
        bytes[34] = 64;
        let m = load(bytes).unwrap_err().to_string();
        assert!(
            m.starts_with("sounds/test.wav: not a valid WAV file"),
            "{m}"
        );
    }

    /// Every prompt listed in `sounds/prompts.tsv` ships as a WAV that loads: catches a
    /// list edited without re-running `scripts/make-sounds.sh`.
    #[test]
    fn default_prompt_set_loads() {
        let sounds = Path::new(env!("CARGO_MANIFEST_DIR")).join("sounds");
        let list = std::fs::read_to_string(sounds.join("prompts.tsv")).expect("prompts.tsv");
        let names: Vec<&str> = list
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t').map(|(name, _)| name))
            .collect();
        assert!(names.contains(&"greeting") && names.contains(&"goodbye"));
        for name in names {
            let path = sounds.join(format!("{name}.wav"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let p = Prompt::from_wav_bytes(name, &bytes, name).unwrap_or_else(|e| panic!("{e}"));
            let secs = p.duration().as_secs_f64();
            assert!((0.5..30.0).contains(&secs), "{name}: {secs} s");
            assert!(peak(&p.pcm) > 3000, "{name} is nearly silent");
        }
    }

    #[test]
    fn too_long_is_rejected_from_the_header() {
        // A header claiming 11 minutes at 8 kHz, without the data: rejected before reading.
        let mut bytes = wav(int_spec(8000, 1, 16), 1, |_| vec![0i16]);
        let data_len: u32 = 11 * 60 * 8000 * 2;
        // A 16-bit mono file has the canonical 44-byte header: data length at 40.
        bytes[40..44].copy_from_slice(&data_len.to_le_bytes());
        let m = load(bytes).unwrap_err().to_string();
        assert_eq!(
            m,
            "sounds/test.wav: 660 seconds of audio; a prompt may be at most 10 minutes long"
        );

        let samples = vec![0.0f32; 601 * 8000];
        let m = Prompt::from_samples("long", &samples, 8000)
            .unwrap_err()
            .to_string();
        assert!(m.contains("601 seconds"), "{m}");
    }
}
