//! One Whisper worker's state and the work done per utterance. Synchronous: the pool runs it
//! on its own threads; tests and the benchmark call it directly.
//!
//! Longer than most files (~700 lines) because one utterance's path is one story: level
//! checks, resampling, the decode with its prompt, the closed-set scoring pass and the
//! transcript gates read best in order; the gates' rules themselves live in `gate.rs`.

use super::gate::{self, Gate};
use super::{AsrConfig, AsrError, AsrRequest, AsrResult};
use crate::asr::audio::{rms_dbfs, Upsampler};
use crate::asr::matcher::normalize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
    WhisperTokenId,
};

/// Whisper's window: audio beyond 30 s would start a second segment. Utterances are cut
/// by the endpointer long before; this only guards the engine.
const MAX_SAMPLES_16K: usize = 30 * 16000 - 1600;
/// Most tokens a closed-set phrase may have; longer phrases are cut (they are examples of
/// what callers say, a few words each).
const MAX_PHRASE_TOKENS: usize = 16;
/// Prompt tokens kept (the last ones): whisper.cpp keeps at most half the text context,
/// and a long prompt costs decoder time on every utterance.
const MAX_PROMPT_TOKENS: usize = 96;

/// Text tokens allowed for an utterance: fast speech is about 4 tokens a second, so more
/// than 8 + 6 per second is a decoder loop, whatever `configured` allows.
fn max_tokens(configured: u32, samples_16k: usize) -> i32 {
    let by_length = 8 + 6 * samples_16k.div_ceil(16000);
    configured
        .min(u32::try_from(by_length).unwrap_or(u32::MAX))
        .max(1) as i32
}

/// What the logits filter needs, handed to it through whisper.cpp's user-data pointer.
struct LoopGuard {
    eot: WhisperTokenId,
    n_vocab: usize,
}

/// True when the sequence ends with the same 1..=8 tokens three times in a row. Greedy
/// decoding on a trimmed window can fall into such a loop ("billing, billing, billing,");
/// a caller repeating a word twice ("no no") is normal speech, three times is not worth
/// more decoding either.
pub(super) fn ends_in_loop(ids: &[WhisperTokenId]) -> bool {
    (1..=8).any(|n| {
        let len = ids.len();
        len >= 3 * n && {
            let last = &ids[len - n..];
            last == &ids[len - 2 * n..len - n] && last == &ids[len - 3 * n..len - 2 * n]
        }
    })
}

/// whisper.cpp logits filter: once the transcript ends in a loop, make end-of-text the only
/// sensible next token, so the loop costs three repetitions instead of `max_tokens`.
unsafe extern "C" fn stop_loops(
    _ctx: *mut whisper_rs::WhisperSysContext,
    _state: *mut whisper_rs::WhisperSysState,
    tokens: *const whisper_rs::WhisperTokenData,
    n_tokens: std::ffi::c_int,
    logits: *mut f32,
    user_data: *mut std::ffi::c_void,
) {
    if tokens.is_null() || logits.is_null() || user_data.is_null() || n_tokens < 3 {
        return;
    }
    // SAFETY: whisper.cpp passes `n_tokens` valid records and `n_vocab` logits for the
    // duration of this call; `user_data` is the `LoopGuard` set in `transcribe`.
    let guard = unsafe { &*(user_data as *const LoopGuard) };
    let tokens = unsafe { std::slice::from_raw_parts(tokens, n_tokens as usize) };
    let ids: Vec<WhisperTokenId> = tokens.iter().map(|t| t.id).collect();
    if !ends_in_loop(&ids) {
        return;
    }
    let logits = unsafe { std::slice::from_raw_parts_mut(logits, guard.n_vocab) };
    let Some(eot) = usize::try_from(guard.eot)
        .ok()
        .filter(|&e| e < logits.len())
    else {
        return;
    };
    let best = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::MIN, f32::max);
    logits[eot] = best + 100.0;
}

/// Log prior odds that a caller at a menu says one of its phrases rather than something
/// else: the closed-set posterior weighs the free transcript (the "something else") down by
/// this many nats. 2 nats = 7.4:1, i.e. a phrase the decoder finds 2 nats less likely than
/// its own transcript still gets about half the mass. Chosen on the corpus: it turns
/// Whisper's misspellings of menu phrases ("Thanks, the board." for "tech support") into
/// matches, while off-menu speech ("what is the weather like") stays below 0.3.
const OTHER_PRIOR_NATS: f32 = 2.0;

/// Closed-set sequences whose prefix is this far (e^-12 = 6e-6) below the best complete
/// sequence are not decoded further: their posterior could not reach 1e-5.
const PRUNE_NATS: f32 = 12.0;

/// Token ids the engine needs, read from the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    pub sot: WhisperTokenId,
    pub eot: WhisperTokenId,
    pub prev: WhisperTokenId,
    pub no_speech: WhisperTokenId,
    pub no_timestamps: WhisperTokenId,
    /// `<|en|>` and `<|transcribe|>` for multilingual models; English-only models (".en")
    /// have neither in their start sequence.
    pub multilingual: Option<(WhisperTokenId, WhisperTokenId)>,
}

pub(super) fn load_model(path: &Path) -> Result<WhisperContext, AsrError> {
    // whisper.cpp and ggml print to stderr unless told otherwise; send them to `tracing`
    // like everything else (whisper-rs's `tracing_backend`). Idempotent.
    whisper_rs::install_logging_hooks();
    let error = |reason: String| AsrError::Load {
        path: path.to_owned(),
        reason,
    };
    let path_str = path
        .to_str()
        .ok_or_else(|| error("the path is not UTF-8".into()))?;
    if !path.is_file() {
        return Err(error(
            "no such file (scripts/fetch-model.sh fetches and converts one)".into(),
        ));
    }
    let mut params = WhisperContextParameters::default();
    // CPU only: ivrd's machines have no GPU, and a GPU backend would change latency
    // characteristics silently if one appeared.
    params.use_gpu(false);
    WhisperContext::new_with_params(path_str, params).map_err(|e| error(format!("{e}")))
}

/// A Whisper state plus what is reused between utterances.
pub struct Engine {
    // The state borrows the model's weights through an Arc inside whisper-rs; keep the
    // context too for tokenising prompts and phrases.
    model: Arc<WhisperContext>,
    state: WhisperState,
    cfg: AsrConfig,
    tokens: SpecialTokens,
    /// Sentence ends that may follow a phrase: ".", "?", "!".
    end_tokens: Vec<WhisperTokenId>,
    upsampler: Upsampler,
    /// The last prompt and its tokens: a node asks the same question many times.
    prompt_cache: Option<(String, Vec<WhisperTokenId>)>,
    /// Single-token decoder steps of the current utterance's closed-set pass.
    steps: u32,
}

impl Engine {
    /// Loads the model and creates one state: for tests, the benchmark and tools.
    pub fn load(cfg: &AsrConfig) -> Result<Engine, AsrError> {
        Engine::with_model(Arc::new(load_model(&cfg.model)?), cfg)
    }

    pub(super) fn with_model(
        model: Arc<WhisperContext>,
        cfg: &AsrConfig,
    ) -> Result<Engine, AsrError> {
        let state = model
            .create_state()
            .map_err(|e| AsrError::Whisper(format!("cannot create a Whisper state: {e}")))?;
        let multilingual = if model.is_multilingual() {
            let en = whisper_rs::get_lang_id("en")
                .ok_or_else(|| AsrError::Whisper("the model has no English token".into()))?;
            Some((model.token_lang(en), model.token_transcribe()))
        } else {
            None
        };
        let tokens = SpecialTokens {
            sot: model.token_sot(),
            eot: model.token_eot(),
            prev: model.token_prev(),
            no_speech: model.token_nosp(),
            no_timestamps: model.token_not(),
            multilingual,
        };
        let end_tokens = [".", "?", "!"]
            .iter()
            .filter_map(|p| match model.tokenize(p, 4) {
                Ok(t) if t.len() == 1 => Some(t[0]),
                _ => None,
            })
            .collect();
        Ok(Engine {
            model,
            state,
            cfg: cfg.clone(),
            tokens,
            end_tokens,
            upsampler: Upsampler::new(),
            prompt_cache: None,
            steps: 0,
        })
    }

    pub fn tokens(&self) -> SpecialTokens {
        self.tokens
    }

    /// Changes settings that apply per utterance (audio_ctx, threads, closed set...), for
    /// the benchmark's comparisons. The model path is ignored.
    pub fn set_config(&mut self, cfg: &AsrConfig) {
        self.cfg = cfg.clone();
    }

    /// Transcribes one utterance, scores the request's candidates and applies the gates.
    pub fn transcribe(&mut self, req: &AsrRequest) -> Result<AsrResult, AsrError> {
        let started = Instant::now();
        self.steps = 0;
        let audio_8k = &req.audio_8k[..req.audio_8k.len().min(MAX_SAMPLES_16K / 2)];
        let pcm = self.upsampler.process(audio_8k);
        let audio_ctx = self.cfg.audio_ctx.positions(pcm.len());
        let level_db = speech_level_db(audio_8k);
        let prompt = self.prompt_tokens(req.prompt.as_deref())?;

        let mut result = AsrResult {
            text: String::new(),
            raw_text: String::new(),
            gate: None,
            no_speech_prob: 1.0,
            avg_logprob: f32::NEG_INFINITY,
            candidate_scores: None,
            candidate_logprobs: None,
            transcript_logprob: f32::NAN,
            decoder_steps: 0,
            audio_ctx,
            embedding: None,
            elapsed: Default::default(),
            queued: Default::default(),
        };
        if pcm.is_empty() {
            result.gate = Some(Gate::Empty);
            result.elapsed = started.elapsed();
            return Ok(result);
        }

        let threads = self.cfg.threads_per_worker.max(1);
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(threads as i32);
        params.set_language(Some("en"));
        params.set_translate(false);
        params.set_no_timestamps(true);
        params.set_single_segment(true);
        params.set_no_context(true);
        // No fallback re-decoding at higher temperatures: it would silently double the
        // latency of exactly the utterances that are already hard.
        params.set_temperature(0.0);
        params.set_temperature_inc(0.0);
        params.set_max_tokens(max_tokens(self.cfg.max_tokens, pcm.len()));
        params.set_audio_ctx(audio_ctx);
        // "[Music]", "(laughs)" and the like are never menu answers.
        params.set_suppress_nst(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        if !prompt.is_empty() {
            params.set_tokens(&prompt);
        }
        let guard = LoopGuard {
            eot: self.tokens.eot,
            n_vocab: usize::try_from(self.model.n_vocab()).unwrap_or(0),
        };
        // SAFETY: `stop_loops` only reads `n_tokens` token records and writes within the
        // `n_vocab` logits whisper.cpp passes (its documented contract), and reads `guard`
        // through `user_data`; `guard` outlives the synchronous `full` call below, and
        // nothing else aliases it.
        unsafe {
            params.set_filter_logits_callback(Some(stop_loops));
            params.set_filter_logits_callback_user_data(
                &guard as *const LoopGuard as *mut std::ffi::c_void,
            );
        }
        self.state
            .full(params, &pcm)
            .map_err(|e| AsrError::Whisper(format!("transcription failed: {e}")))?;

        let t_full = started.elapsed();
        let (raw_text, text_tokens, avg_logprob) = self.read_transcript();
        result.raw_text = raw_text.trim().to_owned();
        result.avg_logprob = avg_logprob;

        // One more decoder pass over the encoder output that `full` left in the state:
        // the no-speech probability (read where OpenAI's Whisper reads it, right after
        // start-of-transcript, which whisper.cpp 1.7 does not expose reliably) and, if
        // asked, the closed-set scores.
        let candidates: &[String] = match (&req.candidates, self.cfg.closed_set) {
            (Some(c), true) => c,
            _ => &[],
        };
        let scored = self.score(&prompt, candidates, &text_tokens, &result.raw_text, threads)?;
        if std::env::var("ASR_DEBUG").is_ok() {
            eprintln!(
                "full {:?} score {:?} prompt {}",
                t_full,
                started.elapsed() - t_full,
                prompt.len()
            );
        }
        result.no_speech_prob = scored.no_speech_prob;
        if req.candidates.is_some() && self.cfg.closed_set {
            result.candidate_scores = Some(scored.posteriors);
            result.candidate_logprobs = Some(scored.logprobs);
            result.transcript_logprob = scored.transcript_logprob;
        }

        result.gate = gate::check(
            &result.raw_text,
            result.no_speech_prob,
            result.avg_logprob,
            level_db,
            self.cfg.no_speech_threshold,
        );
        if result.gate.is_none() {
            result.text = gate::clean(&result.raw_text);
        } else {
            // A gated result must not route by any path.
            result.candidate_scores = result.candidate_scores.map(|s| vec![0.0; s.len()]);
        }
        result.decoder_steps = self.steps;
        result.elapsed = started.elapsed();
        Ok(result)
    }

    fn prompt_tokens(&mut self, prompt: Option<&str>) -> Result<Vec<WhisperTokenId>, AsrError> {
        let Some(prompt) = prompt.map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(Vec::new());
        };
        if let Some((cached, tokens)) = &self.prompt_cache {
            if cached == prompt {
                return Ok(tokens.clone());
            }
        }
        // A leading space: the prompt stands for earlier speech, which Whisper writes
        // with a space before each word.
        let mut tokens = self
            .model
            .tokenize(&format!(" {prompt}"), 4 * prompt.len() + 8)
            .map_err(|e| AsrError::Whisper(format!("cannot tokenise the prompt: {e}")))?;
        if tokens.len() > MAX_PROMPT_TOKENS {
            tokens.drain(..tokens.len() - MAX_PROMPT_TOKENS);
        }
        self.prompt_cache = Some((prompt.to_owned(), tokens.clone()));
        Ok(tokens)
    }

    /// (text, text token ids, mean token log-probability) of the single segment.
    fn read_transcript(&self) -> (String, Vec<WhisperTokenId>, f32) {
        let mut text = String::new();
        let mut ids = Vec::new();
        let (mut sum, mut n) = (0.0f32, 0usize);
        for segment in self.state.as_iter() {
            if let Ok(t) = segment.to_str_lossy() {
                text.push_str(&t);
            }
            for i in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(i) else {
                    continue;
                };
                let id = token.token_id();
                // Special tokens (start, timestamps, end) sit at and above end-of-text.
                if id >= self.tokens.eot {
                    continue;
                }
                ids.push(id);
                sum += token.token_data().plog;
                n += 1;
            }
        }
        let avg = if n == 0 {
            f32::NEG_INFINITY
        } else {
            sum / n as f32
        };
        (text, ids, avg)
    }

    /// Decodes `tokens` (one or more) at position `n_past` and returns the log-softmax
    /// of the next-token logits after the last one.
    ///
    /// whisper.cpp fills logits only for the last token of a batch, but whisper-rs 0.16's
    /// `get_logits` returns the first row, so a batch is decoded in two calls: all but the
    /// last token, then the last token alone, whose logits are then row 0.
    fn step(
        &mut self,
        tokens: &[WhisperTokenId],
        n_past: usize,
        threads: usize,
    ) -> Result<LogProbs, AsrError> {
        let err = |e| AsrError::Whisper(format!("decoder step failed: {e}"));
        self.steps += 1;
        let Some((&last, head)) = tokens.split_last() else {
            return Err(AsrError::Whisper("empty decoder step".into()));
        };
        if !head.is_empty() {
            self.state.decode(head, n_past, threads).map_err(err)?;
        }
        self.state
            .decode(&[last], n_past + head.len(), threads)
            .map_err(err)?;
        let logits = self.state.get_logits().map_err(err)?;
        Ok(LogProbs::new(logits))
    }

    fn score(
        &mut self,
        prompt: &[WhisperTokenId],
        candidates: &[String],
        transcript_tokens: &[WhisperTokenId],
        transcript: &str,
        threads: usize,
    ) -> Result<Scored, AsrError> {
        let t = self.tokens;
        // The start of the decoder input exactly as `full` built it: the prompt as
        // "previous text", start-of-transcript, then the task tokens.
        let mut pos = 0;
        if !prompt.is_empty() {
            let mut head = vec![t.prev];
            head.extend_from_slice(prompt);
            // Logits of the prompt are not needed; decode it as one batch.
            self.state
                .decode(&head, 0, threads)
                .map_err(|e| AsrError::Whisper(format!("decoder step failed: {e}")))?;
            pos = head.len();
        }
        let after_sot = self.step(&[t.sot], pos, threads)?;
        pos += 1;
        let no_speech_prob = after_sot.get(t.no_speech).exp();
        if candidates.is_empty() {
            return Ok(Scored {
                no_speech_prob,
                posteriors: Vec::new(),
                logprobs: Vec::new(),
                transcript_logprob: f32::NAN,
            });
        }
        let mut task = Vec::new();
        if let Some((lang, transcribe)) = t.multilingual {
            task.extend([lang, transcribe]);
        }
        task.push(t.no_timestamps);
        let root = self.step(&task, pos, threads)?;
        pos += task.len();

        // Sequences to score: each candidate as Whisper would write it (leading space,
        // capital first letter), then the model's own transcript as the competitor that
        // stands for "something else".
        let mut seqs: Vec<Vec<WhisperTokenId>> = Vec::with_capacity(candidates.len() + 1);
        for c in candidates {
            let mut ids = self
                .model
                .tokenize(&format!(" {}", capitalise(c.trim())), 4 * c.len() + 8)
                .unwrap_or_default();
            ids.truncate(MAX_PHRASE_TOKENS);
            seqs.push(ids);
        }
        let own = normalize(transcript);
        let own_is_candidate = own.is_empty()
            || candidates.iter().any(|c| normalize(c) == own)
            || transcript_tokens.is_empty();
        if !own_is_candidate {
            seqs.push(
                transcript_tokens
                    .iter()
                    .copied()
                    .take(2 * MAX_PHRASE_TOKENS)
                    .collect(),
            );
        }

        let totals = self.score_sequences(&seqs, root, pos, threads)?;
        // Posterior over the scored sequences; each candidate's share. The transcript, as
        // the stand-in for "anything else", gets a prior penalty: at a menu, callers
        // mostly do say one of its phrases.
        let mut weighted = totals.clone();
        if let Some(own) = weighted.get_mut(candidates.len()) {
            *own -= OTHER_PRIOR_NATS;
        }
        let max = weighted.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = weighted
            .iter()
            .map(|&l| if l.is_finite() { (l - max).exp() } else { 0.0 })
            .collect();
        let sum: f32 = weights.iter().sum();
        let posteriors = weights
            .iter()
            .take(candidates.len())
            .map(|w| if sum > 0.0 { w / sum } else { 0.0 })
            .collect();
        Ok(Scored {
            no_speech_prob,
            posteriors,
            transcript_logprob: if own_is_candidate {
                f32::NAN
            } else {
                totals[candidates.len()]
            },
            logprobs: totals[..candidates.len()].to_vec(),
        })
    }

    /// Total log-probability of each sequence followed by an end (end-of-text or a
    /// sentence end), given the decoder state after the prefix (`root`, at `base`).
    ///
    /// Sequences share prefixes (" My bill", " My internet is down"), so they are put in a
    /// trie and each node is decoded once, depth first: decoding a node at its depth
    /// overwrites the KV cache from that position on, so siblings reuse their parent's.
    fn score_sequences(
        &mut self,
        seqs: &[Vec<WhisperTokenId>],
        root: LogProbs,
        base: usize,
        threads: usize,
    ) -> Result<Vec<f32>, AsrError> {
        let trie = Trie::build(seqs);
        let mut totals = vec![f32::NEG_INFINITY; seqs.len()];
        // Log-probability of each node's token given its parent, known once the parent
        // is decoded; depth-first stack of (node, log-probability of reaching its parent).
        let mut token_lp = vec![0.0f32; trie.nodes.len()];
        let mut stack: Vec<(usize, f32)> = Vec::new();
        let ends: Vec<WhisperTokenId> = self
            .end_tokens
            .iter()
            .copied()
            .chain([self.tokens.eot])
            .collect();
        let mut walk = Walk {
            trie: &trie,
            ends: &ends,
            totals: &mut totals,
            token_lp: &mut token_lp,
            stack: &mut stack,
        };
        walk.expand(0, 0.0, &root);
        while let Some((id, parent_cum)) = walk.stack.pop() {
            let cum = parent_cum + walk.token_lp[id];
            // A sequence is never more likely than its prefix: once a prefix is far below
            // the best complete sequence so far, nothing under it can matter.
            let best = walk
                .totals
                .iter()
                .cloned()
                .fold(f32::NEG_INFINITY, f32::max);
            if cum < best - PRUNE_NATS {
                continue;
            }
            let node = &trie.nodes[id];
            let probs = self.step(&[node.token], base + node.depth - 1, threads)?;
            walk.expand(id, cum, &probs);
        }
        Ok(totals)
    }
}

struct Scored {
    no_speech_prob: f32,
    posteriors: Vec<f32>,
    logprobs: Vec<f32>,
    transcript_logprob: f32,
}

/// Next-token log-probabilities: logits and their log-sum-exp.
struct LogProbs {
    logits: Vec<f32>,
    lse: f32,
}

impl LogProbs {
    fn new(logits: &[f32]) -> LogProbs {
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
        LogProbs {
            logits: logits.to_vec(),
            lse: max + sum.ln(),
        }
    }

    fn get(&self, token: WhisperTokenId) -> f32 {
        usize::try_from(token)
            .ok()
            .and_then(|i| self.logits.get(i))
            .map_or(f32::NEG_INFINITY, |&l| l - self.lse)
    }

    /// log of the summed probabilities of `tokens`.
    fn log_sum(&self, tokens: impl Iterator<Item = WhisperTokenId>) -> f32 {
        let p: f32 = tokens.map(|t| self.get(t).exp()).sum();
        p.ln()
    }
}

/// Bookkeeping of the depth-first walk in `score_sequences`.
struct Walk<'a> {
    trie: &'a Trie,
    /// Tokens that may end a phrase.
    ends: &'a [WhisperTokenId],
    totals: &'a mut [f32],
    token_lp: &'a mut [f32],
    stack: &'a mut Vec<(usize, f32)>,
}

impl Walk<'_> {
    /// With the next-token distribution after node `id` (reached with log-probability
    /// `cum`): completes the sequences ending there and queues the children.
    fn expand(&mut self, id: usize, cum: f32, probs: &LogProbs) {
        let node = &self.trie.nodes[id];
        if !node.ends.is_empty() {
            let end = probs.log_sum(self.ends.iter().copied());
            for &s in &node.ends {
                self.totals[s] = cum + end;
            }
        }
        for &c in &node.children {
            self.token_lp[c] = probs.get(self.trie.nodes[c].token);
        }
        // Most likely child on top of the stack: good sequences complete early, which
        // lets the pruning in `score_sequences` skip the hopeless ones.
        let mut children = node.children.clone();
        children.sort_by(|&a, &b| self.token_lp[a].total_cmp(&self.token_lp[b]));
        self.stack.extend(children.into_iter().map(|c| (c, cum)));
    }
}

struct TrieNode {
    token: WhisperTokenId,
    depth: usize,
    children: Vec<usize>,
    /// Sequences that end at this node.
    ends: Vec<usize>,
}

struct Trie {
    nodes: Vec<TrieNode>,
}

impl Trie {
    fn build(seqs: &[Vec<WhisperTokenId>]) -> Trie {
        let mut nodes = vec![TrieNode {
            token: -1,
            depth: 0,
            children: Vec::new(),
            ends: Vec::new(),
        }];
        for (s, seq) in seqs.iter().enumerate() {
            if seq.is_empty() {
                // Nothing to score: leave its total at -inf (probability 0).
                continue;
            }
            let mut at = 0;
            for &tok in seq {
                let found = nodes[at]
                    .children
                    .iter()
                    .copied()
                    .find(|&c| nodes[c].token == tok);
                at = match found {
                    Some(c) => c,
                    None => {
                        let depth = nodes[at].depth + 1;
                        nodes.push(TrieNode {
                            token: tok,
                            depth,
                            children: Vec::new(),
                            ends: Vec::new(),
                        });
                        let id = nodes.len() - 1;
                        nodes[at].children.push(id);
                        id
                    }
                };
            }
            nodes[at].ends.push(s);
        }
        Trie { nodes }
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Active speech level of an utterance: the mean level of its loudest 20% of 20 ms frames,
/// dBFS. Unlike the plain RMS it does not depend on how much silence surrounds the speech.
pub fn speech_level_db(pcm_8k: &[i16]) -> f32 {
    let mut levels: Vec<f32> = pcm_8k.chunks(160).map(rms_dbfs).collect();
    if levels.is_empty() {
        return -120.0;
    }
    levels.sort_by(|a, b| b.total_cmp(a));
    let top = levels.len().div_ceil(5);
    levels[..top].iter().sum::<f32>() / top as f32
}
