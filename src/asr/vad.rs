//! Endpointing: finds where a caller starts and stops speaking in the 8 kHz stream.
//!
//! Pure: the caller pushes 20 ms frames (160 samples) as they arrive and gets events back.
//! Time is counted in samples pushed, never read from a clock, so tests run in virtual time
//! and a stalled RTP stream stalls the timers with it.
//!
//! # How a frame is judged
//! A frame counts as speech when all three hold:
//! - it is loud enough in absolute terms (telephone speech sits around -35..-10 dBFS);
//! - it stands out from the line's noise floor, tracked per call: the floor follows quiet
//!   frames down quickly and rises slowly while no speech is heard, so a steady hiss or hum
//!   becomes the floor within about a second;
//! - it is *voiced*: its normalised autocorrelation has a clear peak at a pitch period
//!   (2.5-20 ms, i.e. 50-400 Hz). Vowels and voiced consonants are periodic; white and pink
//!   noise, clicks, G.711 quantisation noise and line hiss are not. This is what keeps noise
//!   from ever opening an utterance, even before the floor has adapted to it.
//!
//! Unvoiced sounds ("s", "f", "t") do not pass the voicing test; they sit at word edges and
//! are kept by the lead-in before the first voiced frame, by tolerating gaps inside an
//! utterance, and by the tail kept after the last voiced frame.
//!
//! # Events
//! After `reset()` (or `new`) a listening window is open. `SpeechStarted` comes once
//! `min_speech` of voiced audio has been heard (the call stops its prompt then: barge-in),
//! `Utterance` once `end_of_speech` passes without speech or `max_utterance` is reached,
//! `NoInput` when `no_input` passes without speech starting. After `Utterance` or `NoInput`
//! the window is closed and `push` returns `None` (still tracking the noise floor) until the
//! next `reset()`.

use std::collections::VecDeque;
use std::time::Duration;

/// 8 kHz: samples per millisecond.
const SAMPLES_PER_MS: u64 = 8;
/// Samples in one 20 ms frame, the unit `push` expects.
pub const FRAME_SAMPLES: usize = 160;

/// Audio kept from before the first voiced frame: the unvoiced onset of the first word
/// ("s" in "supervisor", "h" in "hours") precedes voicing by up to ~150 ms.
const LEAD_IN_MS: u64 = 200;
/// Audio kept after the last voiced frame, for final unvoiced consonants ("-ts", "-ce").
const TAIL_MS: u64 = 300;
/// A candidate that has not yet reached `min_speech` is dropped after this much silence:
/// a cough or click followed by quiet is not the start of an utterance.
const CANDIDATE_GAP_MS: u64 = 300;

/// Frames quieter than this are never speech, whatever the floor.
const ABS_MIN_DB: f32 = -50.0;
/// A speech frame must be this far above the noise floor.
const MIN_SNR_DB: f32 = 3.0;
/// Peak normalised autocorrelation at a pitch lag needed to call a frame voiced. Measured
/// on the corpus: voiced espeak frames through G.711 score 0.6-0.95, band-limited pink and
/// white noise stay below 0.35 (see the tests).
const VOICING: f32 = 0.5;
/// The floor is never assumed quieter than this: after digital silence (a muted phone,
/// a comfort-noise gap) the first faint noise must not look like a big jump.
const FLOOR_MIN_DB: f32 = -75.0;
/// Assumed floor before anything has been heard: a quiet line.
const FLOOR_INIT_DB: f32 = -60.0;
/// Per-frame smoothing of the floor towards quieter frames (fast) and louder non-speech
/// frames (slow: ~50 frames = 1 s to adapt to a new steady noise).
const FLOOR_DOWN: f32 = 0.3;
const FLOOR_UP: f32 = 0.04;

/// Pitch lags searched, in samples at 8 kHz: 400 Hz down to 50 Hz.
const MIN_LAG: usize = 20;
const MAX_LAG: usize = 160;
/// One-pole coefficient of the voicing analysis' low-pass: 1 - exp(-2 pi 1000 / 8000).
const LOWPASS: f64 = 0.544;
/// Pole of the DC blocker in front of it: exp(-2 pi 200 / 8000).
const HIGHPASS: f64 = 0.855;
/// The voicing analysis looks at the last 40 ms (two frames) so that a 20 ms pitch period
/// (50 Hz, deep voices) still repeats inside the window.
const ANALYSIS_SAMPLES: usize = 2 * FRAME_SAMPLES;

/// Timers of one listening window. Per node in the flow, with defaults from the flow file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Give up with `NoInput` when speech has not started within this time of `reset`.
    pub no_input: Duration,
    /// Silence after speech that ends the utterance.
    pub end_of_speech: Duration,
    /// Cut the utterance off at this length (from its detected start).
    pub max_utterance: Duration,
    /// Voiced speech needed before `SpeechStarted` (and before an utterance counts at all).
    pub min_speech: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            no_input: Duration::from_millis(6000),
            end_of_speech: Duration::from_millis(700),
            max_utterance: Duration::from_millis(15000),
            min_speech: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VadEvent {
    /// `min_speech` of speech heard: stop the prompt (barge-in). At most once per window.
    SpeechStarted,
    /// The caller's utterance, 8 kHz, from `LEAD_IN_MS` before the first voiced frame to
    /// `TAIL_MS` after the last one. Ends the window.
    Utterance(Vec<i16>),
    /// Nothing said within `no_input`. Ends the window.
    NoInput,
}

/// Per-frame measurements, public so tests and the benchmark can report what the detector saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameAnalysis {
    /// RMS level of the frame, dBFS.
    pub level_db: f32,
    /// The noise floor before this frame, dBFS.
    pub floor_db: f32,
    /// Peak normalised autocorrelation at a pitch lag, 0..1 (0 when not computed because
    /// the frame was too quiet to matter).
    pub voicing: f32,
    /// The frame's verdict.
    pub speech: bool,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for speech.
    Listening,
    /// Voiced frames seen, not yet `min_speech` of them.
    Candidate { voiced: u64, silence: u64 },
    /// `SpeechStarted` sent; `silence` = samples since the last voiced frame.
    Speaking { silence: u64 },
    /// Window closed until `reset`.
    Closed,
}

/// The endpointer of one call. Keeps the noise floor across windows: it is a property of
/// the line, not of the question asked.
pub struct Endpointer {
    cfg: EndpointConfig,
    phase: Phase,
    /// Samples pushed since the window opened.
    elapsed: u64,
    floor_db: f32,
    /// The last `ANALYSIS_SAMPLES` samples, DC not removed.
    history: VecDeque<i16>,
    /// Lead-in ring while listening; the utterance so far while in a candidate or speaking.
    audio: Vec<i16>,
    /// In `audio`: where the first voiced frame began and where the last voiced frame ended.
    speech_start: usize,
    speech_end: usize,
    last: Option<FrameAnalysis>,
}

fn samples(d: Duration) -> u64 {
    (d.as_millis() as u64).saturating_mul(SAMPLES_PER_MS)
}

impl Endpointer {
    /// A new endpointer with a listening window already open.
    pub fn new(cfg: EndpointConfig) -> Self {
        Endpointer {
            cfg,
            phase: Phase::Listening,
            elapsed: 0,
            floor_db: FLOOR_INIT_DB,
            history: VecDeque::with_capacity(ANALYSIS_SAMPLES),
            audio: Vec::new(),
            speech_start: 0,
            speech_end: 0,
            last: None,
        }
    }

    /// Opens a new listening window: `no_input` counts from here. Any utterance in progress
    /// is discarded. The noise floor is kept.
    pub fn reset(&mut self) {
        self.phase = Phase::Listening;
        self.elapsed = 0;
        self.audio.clear();
    }

    /// Like `reset`, with this node's timers.
    pub fn reset_with(&mut self, cfg: EndpointConfig) {
        self.cfg = cfg;
        self.reset();
    }

    /// True between `SpeechStarted` and the end of the utterance.
    pub fn is_in_speech(&self) -> bool {
        matches!(self.phase, Phase::Speaking { .. })
    }

    /// The current noise floor estimate, dBFS.
    pub fn noise_floor_db(&self) -> f32 {
        self.floor_db
    }

    /// What the detector saw in the last frame pushed.
    pub fn last_frame(&self) -> Option<FrameAnalysis> {
        self.last
    }

    /// Feeds one frame (160 samples = 20 ms expected; other lengths work, time advances by
    /// the samples given). Returns at most one event.
    pub fn push(&mut self, frame: &[i16]) -> Option<VadEvent> {
        if frame.is_empty() {
            return None;
        }
        let analysis = self.analyse(frame);
        self.last = Some(analysis);
        let n = frame.len() as u64;

        if matches!(self.phase, Phase::Closed) {
            return None;
        }
        self.elapsed += n;

        // Keep the audio: a short lead-in ring while listening, everything once voiced.
        self.audio.extend_from_slice(frame);
        let lead_in = samples(Duration::from_millis(LEAD_IN_MS)) as usize;
        if matches!(self.phase, Phase::Listening) && self.audio.len() > lead_in + frame.len() {
            let excess = self.audio.len() - lead_in - frame.len();
            self.audio.drain(..excess);
        }

        match self.phase {
            Phase::Listening => {
                if analysis.speech {
                    self.speech_start = self.audio.len() - frame.len();
                    self.speech_end = self.audio.len();
                    self.phase = Phase::Candidate {
                        voiced: n,
                        silence: 0,
                    };
                    return self.after_voiced();
                }
                self.check_no_input()
            }
            Phase::Candidate { voiced, silence } => {
                if analysis.speech {
                    self.speech_end = self.audio.len();
                    self.phase = Phase::Candidate {
                        voiced: voiced + n,
                        silence: 0,
                    };
                    return self.after_voiced();
                }
                let silence = silence + n;
                if silence > samples(Duration::from_millis(CANDIDATE_GAP_MS)) {
                    // Too little speech: a click or cough. Back to listening; keep only
                    // a lead-in's worth of audio.
                    self.phase = Phase::Listening;
                    let keep = lead_in.min(self.audio.len());
                    self.audio.drain(..self.audio.len() - keep);
                    return self.check_no_input();
                }
                self.phase = Phase::Candidate { voiced, silence };
                None
            }
            Phase::Speaking { silence } => {
                if analysis.speech {
                    self.speech_end = self.audio.len();
                    self.phase = Phase::Speaking { silence: 0 };
                } else {
                    self.phase = Phase::Speaking {
                        silence: silence + n,
                    };
                }
                let done_talking = matches!(self.phase, Phase::Speaking { silence }
                    if silence >= samples(self.cfg.end_of_speech));
                let too_long = (self.audio.len() - self.speech_start) as u64
                    >= samples(self.cfg.max_utterance);
                if done_talking || too_long {
                    return Some(self.finish());
                }
                None
            }
            Phase::Closed => None,
        }
    }

    /// After a voiced frame in a candidate: promote to speaking once `min_speech` is heard.
    fn after_voiced(&mut self) -> Option<VadEvent> {
        if let Phase::Candidate { voiced, .. } = self.phase {
            // A zero min_speech still needs the one voiced frame just seen.
            if voiced >= samples(self.cfg.min_speech) {
                self.phase = Phase::Speaking { silence: 0 };
                return Some(VadEvent::SpeechStarted);
            }
        }
        None
    }

    fn check_no_input(&mut self) -> Option<VadEvent> {
        if self.elapsed >= samples(self.cfg.no_input) {
            self.phase = Phase::Closed;
            self.audio.clear();
            return Some(VadEvent::NoInput);
        }
        None
    }

    fn finish(&mut self) -> VadEvent {
        let lead_in = samples(Duration::from_millis(LEAD_IN_MS)) as usize;
        let tail = samples(Duration::from_millis(TAIL_MS)) as usize;
        let start = self.speech_start.saturating_sub(lead_in);
        let end = (self.speech_end + tail).min(self.audio.len());
        let utterance = self.audio[start..end].to_vec();
        self.audio.clear();
        self.phase = Phase::Closed;
        VadEvent::Utterance(utterance)
    }

    /// Measures a frame, decides speech or not, and updates the noise floor.
    fn analyse(&mut self, frame: &[i16]) -> FrameAnalysis {
        for &s in frame {
            if self.history.len() == ANALYSIS_SAMPLES {
                self.history.pop_front();
            }
            self.history.push_back(s);
        }
        let level_db = super::audio::rms_dbfs(frame);
        let floor_db = self.floor_db;
        let loud_enough = level_db >= ABS_MIN_DB && level_db >= floor_db + MIN_SNR_DB;
        // The autocorrelation is the costly part: only for frames that could be speech.
        let voicing = if loud_enough {
            voicing(self.history.make_contiguous())
        } else {
            0.0
        };
        let speech = loud_enough && voicing >= VOICING;

        let target = level_db.max(FLOOR_MIN_DB);
        if target < self.floor_db {
            self.floor_db += FLOOR_DOWN * (target - self.floor_db);
        } else if !speech {
            self.floor_db += FLOOR_UP * (target - self.floor_db);
        }
        FrameAnalysis {
            level_db,
            floor_db,
            voicing,
            speech,
        }
    }
}

/// Peak normalised autocorrelation of `x` at lags `MIN_LAG..=MAX_LAG`, searched only past
/// the first lag where the autocorrelation turns negative. Low-frequency noise is strongly
/// correlated at short lags; a real pitch peak comes back after the correlation has decayed.
/// Returns 0..1 (0 for windows too short or silent).
fn voicing(x: &[i16]) -> f32 {
    let n = x.len();
    if n < 2 * MIN_LAG {
        return 0.0;
    }
    let mean = x.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
    // Band-pass the analysis to ~200-1000 Hz. Above: the pitch harmonics that carry the
    // periodicity are below 1 kHz, while hiss spreads to 4 kHz and would bury the peak
    // (two one-pole low-pass stages). Below: rumble and 1/f noise are smooth enough to
    // correlate at pitch lags without being periodic, and a telephone line carries no
    // speech below 300 Hz anyway (one-pole DC blocker).
    let (mut prev, mut hp, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    let x: Vec<f64> = x
        .iter()
        .map(|&s| {
            let s = f64::from(s) - mean;
            hp = s - prev + HIGHPASS * hp;
            prev = s;
            y1 += LOWPASS * (hp - y1);
            y2 += LOWPASS * (y1 - y2);
            y2
        })
        .collect();
    let max_lag = MAX_LAG.min(n / 2);
    // Cumulative energy for the normalisation of each lag's overlapping parts.
    let mut cum = vec![0.0; n + 1];
    for (i, v) in x.iter().enumerate() {
        cum[i + 1] = cum[i] + v * v;
    }
    let mut decayed = false;
    let mut best: f64 = 0.0;
    for lag in 1..=max_lag {
        let dot: f64 = x[..n - lag].iter().zip(&x[lag..]).map(|(a, b)| a * b).sum();
        let e0 = cum[n - lag];
        let e1 = cum[n] - cum[lag];
        let denom = (e0 * e1).sqrt();
        if denom <= f64::EPSILON {
            return 0.0;
        }
        let r = dot / denom;
        if !decayed {
            decayed = r < 0.0;
            continue;
        }
        if lag >= MIN_LAG {
            best = best.max(r);
        }
    }
    best.clamp(0.0, 1.0) as f32
}

#[cfg(test)]
mod tests;
