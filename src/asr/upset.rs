//! Noticing an upset caller in what they say: plain words ("ridiculous", "third time") in
//! the transcript, or a sentence close in meaning to the flow's examples of upset callers
//! ("I have called three times and nothing is fixed") and closer to them than to calm
//! requests ("my internet is not working" is a problem, not anger).
//!
//! Pure: the transcript's sentence embedding comes with what was heard (made on the
//! recogniser's threads); the examples are embedded when the flow is compiled.

use crate::asr::embed::{cosine, EmbedError, TextEmbedder};
use crate::asr::matcher::{normalize, Heard};

/// How a calm request may come closer to upset than to its own kind: by less than this.
const CALM_MARGIN: f32 = 0.1;

/// Calm sentences a caller may say: problems and requests without anger. Upset must come
/// nearer to the examples than to these.
const CALM: &[&str] = &[
    "I have a question about my bill",
    "there is a charge on my bill I do not recognise",
    "my internet is not working",
    "my internet has been down since this morning",
    "I want to cancel my account",
    "what are your opening hours",
    "I would like to speak to someone about my account",
    "can you help me with a payment",
    "I moved house and need to change my address",
    "the connection keeps dropping",
    "yes please",
    "no thank you",
    "hello",
    "I am calling about my order",
    "end my service",
    "I want to switch to another provider",
    "I want to report a fault",
    "my phone line is not working",
    "I was charged twice",
    "put me through to someone please",
    "I think I dialled the wrong number",
    "I would like to make a complaint",
    "I got a letter about a late payment",
];

/// Why a caller counts as upset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpsetCause {
    /// One of the flow's upset phrases is in the transcript.
    Words,
    /// Close in meaning to the examples (the similarity).
    Meaning(f32),
}

pub struct UpsetDetector {
    /// Phrases in normal form, matched as whole words.
    phrases: Vec<String>,
    examples: Vec<Vec<f32>>,
    calm: Vec<Vec<f32>>,
    min_similarity: f32,
}

impl UpsetDetector {
    /// With an embedder the examples are embedded (meaning); without, words only.
    pub fn new(
        phrases: &[String],
        examples: &[String],
        min_similarity: f32,
        embedder: Option<&dyn TextEmbedder>,
    ) -> Result<UpsetDetector, EmbedError> {
        let phrases = phrases
            .iter()
            .map(|p| normalize(p))
            .filter(|p| !p.is_empty())
            .collect();
        let (examples, calm) = match embedder {
            Some(e) if !examples.is_empty() => {
                let ex: Vec<&str> = examples.iter().map(String::as_str).collect();
                (e.embed(&ex)?, e.embed(CALM)?)
            }
            _ => (Vec::new(), Vec::new()),
        };
        Ok(UpsetDetector {
            phrases,
            examples,
            calm,
            min_similarity,
        })
    }

    /// Whether what was heard sounds upset, and why.
    pub fn check(&self, heard: &Heard) -> Option<UpsetCause> {
        let text = format!(" {} ", normalize(&heard.text));
        if self
            .phrases
            .iter()
            .any(|p| text.contains(&format!(" {p} ")))
        {
            return Some(UpsetCause::Words);
        }
        let e = heard.embedding.as_deref()?;
        let best = |set: &[Vec<f32>]| set.iter().map(|x| cosine(e, x)).fold(f32::MIN, f32::max);
        let upset = best(&self.examples);
        let calm = best(&self.calm);
        (upset >= self.min_similarity && upset > calm + CALM_MARGIN)
            .then_some(UpsetCause::Meaning(upset))
    }

    /// How close a transcript's embedding comes to the upset examples and to the calm
    /// sentences (for tuning `min_similarity`).
    pub fn similarities(&self, embedding: &[f32]) -> (f32, f32) {
        let best = |set: &[Vec<f32>]| {
            set.iter()
                .map(|x| cosine(embedding, x))
                .fold(f32::MIN, f32::max)
        };
        (best(&self.examples), best(&self.calm))
    }

    /// Whether the detector compares meaning (an embedder was there).
    pub fn by_meaning(&self) -> bool {
        !self.examples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_matched_whole() {
        let d = UpsetDetector::new(&["ridiculous".into(), "third time".into()], &[], 0.6, None)
            .unwrap();
        assert_eq!(
            d.check(&Heard::text("This is RIDICULOUS!")),
            Some(UpsetCause::Words)
        );
        assert_eq!(
            d.check(&Heard::text("it's the third time I call")),
            Some(UpsetCause::Words)
        );
        assert_eq!(d.check(&Heard::text("my bill please")), None);
        // Part of a word is not the word.
        assert_eq!(d.check(&Heard::text("a third timer")), None);
    }
}
