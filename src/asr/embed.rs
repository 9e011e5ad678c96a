//! Sentence embeddings: what a caller said as a point in meaning space, so that "why was I
//! charged twice" lands near "a charge on my bill" although they share one word.
//!
//! The model is all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions, Apache-2.0), fetched from
//! PyPI by `scripts/fetch-embedder.sh` and run on the CPU with candle (pure Rust). One
//! utterance costs about 10 ms on one core, so it runs where the transcript is made, on the
//! Whisper worker threads, and when flows are compiled, never on the async runtime.
//!
//! Sentence-transformers' recipe: WordPiece tokens, the BERT encoder, the mean of the token
//! vectors, L2-normalised; cosine similarity is then a dot product. The shipped tokenizer
//! pads every input to 128 tokens; padding is turned off here (one sentence at a time needs
//! none), which keeps the mean over real tokens only and the cost proportional to length.

#[cfg(feature = "daemon")]
use candle_core::{DType, Device, Tensor};
#[cfg(feature = "daemon")]
use candle_nn::VarBuilder;
#[cfg(feature = "daemon")]
use candle_transformers::models::bert::{BertModel, Config};
#[cfg(feature = "daemon")]
use std::path::Path;
use std::path::PathBuf;
#[cfg(feature = "daemon")]
use tokenizers::Tokenizer;

/// Tokens per utterance kept (the model was trained on up to 128; a menu answer is ~15).
#[cfg(feature = "daemon")]
const MAX_TOKENS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("cannot load the sentence-embedding model in {dir}: {reason} (scripts/fetch-embedder.sh fetches it)")]
    Load { dir: PathBuf, reason: String },
    #[error("sentence embedding failed: {0}")]
    Run(String),
}

/// Turns text into unit vectors. What the flow compiler needs from the model, as a trait so
/// the compiler stays free of it and tests can hand in vectors of their own.
pub trait TextEmbedder: Send + Sync {
    /// One unit vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// all-MiniLM-L6-v2 on the CPU.
#[cfg(feature = "daemon")]
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

#[cfg(feature = "daemon")]
impl Embedder {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        let error = |reason: String| EmbedError::Load {
            dir: dir.to_owned(),
            reason,
        };
        let config: Config = serde_json::from_slice(
            &std::fs::read(dir.join("config.json"))
                .map_err(|e| error(format!("config.json: {e}")))?,
        )
        .map_err(|e| error(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| error(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| error(format!("tokenizer.json: {e}")))?;
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(error("model.safetensors is missing".into()));
        }
        // SAFETY: the file is memory-mapped read-only; ivrd's model cache is not rewritten
        // while the daemon runs (the fetch script replaces the directory, never the file).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device) }
            .map_err(|e| error(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &config).map_err(|e| error(format!("model: {e}")))?;
        Ok(Embedder {
            model,
            tokenizer,
            device,
        })
    }

    /// The unit vector of one text (an empty text gives the vector of "[CLS] [SEP]").
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let run = |e: candle_core::Error| EmbedError::Run(e.to_string());
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Run(e.to_string()))?;
        let ids = Tensor::new(encoding.get_ids(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(run)?;
        let types = ids.zeros_like().map_err(run)?;
        // [1, tokens, 384] -> mean over tokens -> [384]
        let hidden = self.model.forward(&ids, &types, None).map_err(run)?;
        let mean = hidden.mean(1).and_then(|t| t.squeeze(0)).map_err(run)?;
        let mut v: Vec<f32> = mean.to_vec1().map_err(run)?;
        normalize(&mut v);
        Ok(v)
    }
}

#[cfg(feature = "daemon")]
impl TextEmbedder for Embedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.iter().map(|t| self.embed_one(t)).collect()
    }
}

/// Remembers what an embedder returned, so that text met again (the escalation examples and
/// out-of-scope anchors of every menu, phrases shared by flows) is embedded once per load.
pub struct Memo<'a> {
    inner: &'a dyn TextEmbedder,
    seen: std::sync::Mutex<std::collections::HashMap<String, Vec<f32>>>,
}

impl<'a> Memo<'a> {
    pub fn new(inner: &'a dyn TextEmbedder) -> Self {
        Memo {
            inner,
            seen: Default::default(),
        }
    }
}

impl TextEmbedder for Memo<'_> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !seen.contains_key(*t))
            .collect();
        if !missing.is_empty() {
            for (t, v) in missing.iter().zip(self.inner.embed(&missing)?) {
                seen.insert(t.to_string(), v);
            }
        }
        Ok(texts.iter().map(|t| seen[*t].clone()).collect())
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two unit vectors; 0 when the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);
    impl TextEmbedder for Counting {
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
    }

    #[test]
    fn memo_embeds_each_text_once_and_keeps_order() {
        let inner = Counting(AtomicUsize::new(0));
        let memo = Memo::new(&inner);
        let a = memo.embed(&["ab", "abc", "ab"]).unwrap();
        assert_eq!(a, vec![vec![2.0], vec![3.0], vec![2.0]]);
        let b = memo.embed(&["abc", "abcd"]).unwrap();
        assert_eq!(b, vec![vec![3.0], vec![4.0]]);
        assert_eq!(inner.0.load(Ordering::SeqCst), 4); // "ab" was asked twice in one call
    }
}
