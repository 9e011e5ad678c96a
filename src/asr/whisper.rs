//! The Whisper engine: a pool of whisper-rs states on dedicated OS threads behind a bounded
//! queue.
//!
//! Whisper is CPU-bound for hundreds of milliseconds per utterance and ggml's worker threads
//! busy-wait, so it never runs on the async runtime: each worker is a `std::thread` owning
//! one `WhisperState` (the model weights are loaded once and shared). The call task submits
//! an utterance and awaits a `oneshot`; `submit` never blocks, and a full queue is an
//! immediate `Overloaded` so the flow can offer keys instead of making the caller wait.
//!
//! What one job does (see `engine`): resample 8 kHz -> 16 kHz, transcribe greedily with the
//! encoder window trimmed to the utterance and the node's phrases as a prompt, then score
//! the node's candidate phrases directly with the decoder (closed set), then gate the result
//! against hallucinations (`gate`).

mod engine;
mod gate;

pub use engine::{Engine, SpecialTokens};
pub use gate::{hallucination_reason, Gate};

use crate::asr::embed::TextEmbedder;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::{ASR_QUEUE_DEPTH, ASR_SECONDS};

/// How much of Whisper's 30 s encoder window to run.
///
/// Whisper's encoder always sees 30 s (1500 positions of 20 ms); for a 2 s utterance that
/// is 93% padding and dominates the cost. whisper.cpp's `audio_ctx` runs only the first
/// N positions. Too tight a window makes the decoder loop ("my bill my bill my bill...")
/// because it was trained on full windows, so trimming keeps a margin and a floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioCtx {
    /// The full 30 s window: slowest, the reference for accuracy.
    Full,
    /// The utterance's length plus `margin_ms`, rounded up to a multiple of 64 positions
    /// (1.28 s), and at least `floor` positions.
    Trim { margin_ms: u32, floor: u16 },
    /// A fixed number of positions (1..=1500).
    Fixed(u16),
}

impl AudioCtx {
    /// The recommended default (see the benchmark in the module's report).
    pub const DEFAULT: AudioCtx = AudioCtx::Trim {
        margin_ms: 1000,
        floor: 384,
    };

    /// Encoder positions for an utterance of `samples_16k` samples; 0 means the full window.
    pub fn positions(self, samples_16k: usize) -> i32 {
        const FULL: i32 = 1500;
        match self {
            AudioCtx::Full => 0,
            AudioCtx::Fixed(n) => i32::from(n).clamp(1, FULL),
            AudioCtx::Trim { margin_ms, floor } => {
                // 16 kHz samples -> 20 ms positions.
                let ms = (samples_16k / 16) as u64 + u64::from(margin_ms);
                let needed = ms.div_ceil(20).max(1).next_multiple_of(64);
                let n = needed.max(u64::from(floor)).min(FULL as u64) as i32;
                if n >= FULL {
                    0
                } else {
                    n
                }
            }
        }
    }
}

/// The engine's settings (the daemon's `asr:` config section).
#[derive(Clone)]
pub struct AsrConfig {
    /// The ggml model file (`scripts/fetch-model.sh` prints its path).
    pub model: PathBuf,
    /// Worker threads, each with its own Whisper state: utterances transcribed at once.
    pub workers: usize,
    /// ggml threads per worker. `workers * threads_per_worker` must not exceed the cores
    /// left free by the rest of the daemon: ggml threads spin, and an oversubscribed core
    /// makes a 0.3 s transcription take seconds.
    pub threads_per_worker: usize,
    /// Utterances that may wait for a free worker; beyond that `submit` says `Overloaded`.
    pub queue: usize,
    pub audio_ctx: AudioCtx,
    /// Bound on decoded tokens: a phrase is under 20 tokens; the bound stops a runaway
    /// repetition loop from costing seconds.
    pub max_tokens: u32,
    /// Drop a transcript when the model's no-speech probability is above this.
    pub no_speech_threshold: f32,
    /// Score the request's candidate phrases with the decoder (closed set).
    pub closed_set: bool,
    /// Embeds each transcript for the semantic matcher, on the same worker thread.
    pub embedder: Option<Arc<dyn TextEmbedder>>,
}

impl AsrConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        AsrConfig {
            model: model.into(),
            workers: 1,
            threads_per_worker: 2,
            queue: 4,
            audio_ctx: AudioCtx::DEFAULT,
            max_tokens: 32,
            no_speech_threshold: 0.6,
            closed_set: true,
            embedder: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error("cannot load Whisper model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("invalid ASR settings: {0}")]
    Config(String),
    #[error("all speech recognisers are busy")]
    Overloaded,
    #[error("the speech recogniser has stopped")]
    Stopped,
    #[error("Whisper failed: {0}")]
    Whisper(String),
}

/// One utterance to transcribe.
#[derive(Clone, Debug, Default)]
pub struct AsrRequest {
    /// 8 kHz audio as the endpointer returned it.
    pub audio_8k: Vec<i16>,
    /// Text to bias decoding with (`Matcher::initial_prompt`).
    pub prompt: Option<String>,
    /// Closed set to score with the decoder (`Matcher::closed_set`); scores come back in
    /// the same order.
    pub candidates: Option<Vec<String>>,
}

/// What the engine heard.
#[derive(Clone, Debug, PartialEq)]
pub struct AsrResult {
    /// The transcript, trimmed; empty when gated.
    pub text: String,
    /// The transcript before gating, for logs.
    pub raw_text: String,
    /// Why the transcript was dropped, if it was.
    pub gate: Option<Gate>,
    /// Probability of Whisper's no-speech token right after start-of-transcript.
    pub no_speech_prob: f32,
    /// Mean log-probability of the transcript's tokens.
    pub avg_logprob: f32,
    /// Per candidate (request order), the closed-set posterior 0..1: the probability the
    /// decoder gives that phrase against the other candidates and its own transcript.
    pub candidate_scores: Option<Vec<f32>>,
    /// Per candidate, the decoder's total log-probability of the phrase followed by an end.
    pub candidate_logprobs: Option<Vec<f32>>,
    /// The same for the transcript itself (NaN when it is one of the candidates).
    pub transcript_logprob: f32,
    /// Single-token decoder steps spent on the no-speech probability and the closed set.
    pub decoder_steps: u32,
    /// Encoder positions used (0 = full window).
    pub audio_ctx: i32,
    /// The transcript's sentence embedding, when the pool has an embedder and the
    /// transcript passed the gates.
    pub embedding: Option<Vec<f32>>,
    /// Time spent in the worker.
    pub elapsed: Duration,
    /// Time spent waiting for a worker.
    pub queued: Duration,
}

pub type AsrReply = Result<AsrResult, AsrError>;

struct Job {
    request: AsrRequest,
    submitted: Instant,
    reply: tokio::sync::oneshot::Sender<AsrReply>,
}

/// Handle to the worker pool. Cheap to clone; the workers stop when the last handle is
/// dropped and the queue has drained.
#[derive(Clone)]
pub struct AsrPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    tokens: SpecialTokens,
}

impl AsrPool {
    /// Loads the model once and starts `workers` threads, each with its own state.
    pub fn start(cfg: &AsrConfig) -> Result<AsrPool, AsrError> {
        if cfg.workers == 0 || cfg.threads_per_worker == 0 {
            return Err(AsrError::Config(
                "workers and threads_per_worker must be at least 1".into(),
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cfg.workers * cfg.threads_per_worker > cores {
            tracing::warn!(
                workers = cfg.workers,
                threads_per_worker = cfg.threads_per_worker,
                cores,
                "more Whisper threads than cores: transcription will be slow under load"
            );
        }
        let model = Arc::new(engine::load_model(&cfg.model)?);
        let (tx, rx) = mpsc::sync_channel::<Job>(cfg.queue);
        let rx = Arc::new(Mutex::new(rx));
        let depth = Arc::new(AtomicUsize::new(0));
        let mut tokens = None;
        for i in 0..cfg.workers {
            let engine = Engine::with_model(Arc::clone(&model), cfg)?;
            tokens.get_or_insert(engine.tokens());
            let (rx, depth) = (Arc::clone(&rx), Arc::clone(&depth));
            let embedder = cfg.embedder.clone();
            std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || worker(engine, embedder.as_deref(), &rx, &depth))
                .map_err(|e| AsrError::Config(format!("cannot start ASR thread: {e}")))?;
        }
        metrics::gauge!(ASR_QUEUE_DEPTH).set(0.0);
        Ok(AsrPool {
            inner: Arc::new(PoolInner {
                tx,
                depth,
                tokens: tokens.expect("at least one worker"),
            }),
        })
    }

    /// Queues an utterance. Never blocks: `Overloaded` at once when the queue is full.
    pub fn submit(
        &self,
        request: AsrRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<AsrReply>, AsrError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            request,
            submitted: Instant::now(),
            reply,
        };
        // Count before sending so a fast worker never decrements below zero.
        let depth = self.inner.depth.fetch_add(1, Ordering::SeqCst) + 1;
        match self.inner.tx.try_send(job) {
            Ok(()) => {
                metrics::gauge!(ASR_QUEUE_DEPTH).set(depth as f64);
                Ok(rx)
            }
            Err(e) => {
                self.inner.depth.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => AsrError::Overloaded,
                    TrySendError::Disconnected(_) => AsrError::Stopped,
                })
            }
        }
    }

    /// Utterances submitted and not yet picked up by a worker.
    pub fn queue_depth(&self) -> usize {
        self.inner.depth.load(Ordering::SeqCst)
    }

    /// The model's special tokens (tells whether it is English-only, for diagnostics).
    pub fn tokens(&self) -> SpecialTokens {
        self.inner.tokens
    }
}

fn worker(
    mut engine: Engine,
    embedder: Option<&dyn TextEmbedder>,
    rx: &Mutex<Receiver<Job>>,
    depth: &AtomicUsize,
) {
    loop {
        // The lock is held only while waiting for the next job; a poisoned lock means
        // another worker panicked inside `recv`, which does not happen, but stop cleanly.
        let job = match rx.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // every AsrPool handle dropped
            },
            Err(_) => return,
        };
        let waiting = depth.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        metrics::gauge!(ASR_QUEUE_DEPTH).set(waiting as f64);
        if job.reply.is_closed() {
            // The call hung up or stopped listening while this waited: skip the work.
            continue;
        }
        let queued = job.submitted.elapsed();
        let reply = engine.transcribe(&job.request).map(|mut r| {
            r.queued = queued;
            embed_transcript(&mut r, embedder);
            r
        });
        metrics::histogram!(ASR_SECONDS).record(job.submitted.elapsed().as_secs_f64());
        let _ = job.reply.send(reply);
    }
}

/// Adds the transcript's embedding to a result that passed the gates. A failure only costs
/// the semantic pass (the lexical one still runs), so it is logged, not returned.
pub fn embed_transcript(result: &mut AsrResult, embedder: Option<&dyn TextEmbedder>) {
    let Some(embedder) = embedder.filter(|_| result.gate.is_none() && !result.text.is_empty())
    else {
        return;
    };
    let started = Instant::now();
    match embedder.embed(&[result.text.as_str()]) {
        Ok(mut v) => result.embedding = v.pop(),
        Err(e) => tracing::warn!(error = %e, "transcript not embedded"),
    }
    result.elapsed += started.elapsed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_positions() {
        assert_eq!(AudioCtx::Full.positions(16000), 0);
        assert_eq!(AudioCtx::Fixed(0).positions(1), 1);
        assert_eq!(AudioCtx::Fixed(2000).positions(1), 1500);
        let trim = AudioCtx::Trim {
            margin_ms: 1000,
            floor: 384,
        };
        // 2 s + 1 s margin = 150 positions -> 192 -> floor 384.
        assert_eq!(trim.positions(32000), 384);
        // 10 s + 1 s = 550 -> 576.
        assert_eq!(trim.positions(160_000), 576);
        // 29 s + 1 s = 1500 -> full window.
        assert_eq!(trim.positions(29 * 16000), 0);
        assert_eq!(trim.positions(usize::MAX / 2), 0);
        let tight = AudioCtx::Trim {
            margin_ms: 0,
            floor: 0,
        };
        assert_eq!(tight.positions(0), 64);
        assert_eq!(tight.positions(16), 64);
    }
}
