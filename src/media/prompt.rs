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
use crate::template::Template;

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
    /// Text spoken per call that has no audio yet (a `say:` with placeholders, or its
    /// filled-in text): the call has it rendered before playing it. None for audio.
    pub to_render: Option<Arc<Template>>,
}

/// Why a prompt could not be loaded. Every message starts with the file (or, for
/// synthesised audio, the prompt name) and says what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{name}: prompt names are relative to the sounds directory and may not contain '..'")]
    Name { name: String },
    /// The catalogue has no prompt of this name (test catalogues, synthesised sets).
    #[error("{origin}: no such prompt")]
    Missing { origin: String },
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
    /// Text could not be spoken (no engine, the engine failed).
    #[error("say \"{text}\": {reason}")]
    Speech { text: String, reason: String },
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
            to_render: None,
        })
    }

    /// Text to be rendered per call: no audio until the call has it spoken. Named by its
    /// text, as every `say:` prompt is.
    pub fn to_render(template: Template) -> Prompt {
        Prompt {
            name: template.source.clone(),
            pcm: Arc::from(Vec::new()),
            pcmu: Arc::from(Vec::new()),
            pcma: Arc::from(Vec::new()),
            to_render: Some(Arc::new(template)),
        }
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
mod tests;
