//! Routing by what the caller said: scores a transcript against the intents of a flow node.
//!
//! Pure. Transcripts of telephone audio are rough ("I want to talk about my meal" for "my
//! bill", "Feeling." for "billing"), so a phrase is matched by aligning its words against
//! the transcript, word by word, with a similarity that accepts near-misses:
//! - spelling: character edit distance ("invoice" / "invoices");
//! - sound: Double Metaphone codes compared by edit distance ("billing" / "feeling" differ
//!   in one of four sounds; "their" / "there" are the same);
//! - word boundaries: one phrase word may match two transcript words and the other way
//!   round ("tech support" / "techsupport", "supervisor" / "super visor").
//!
//! The alignment is a *fitting* alignment: the whole phrase must be matched, but anywhere
//! inside the transcript, so "uh I think it's about my bill please" contains "my bill".
//! Filler words ("my", "a", "the", "please") weigh less than content words both in the
//! phrase and as extra words inside the matched stretch.
//!
//! Confidence is the best phrase score of an intent (0..1), lowered when another intent
//! scores nearly as well: a caller who says something between two menu entries should get
//! `low_confidence` (and be asked again), not a coin toss.

mod words;
pub use words::normalize;

use crate::asr::embed::{cosine, EmbedError, TextEmbedder};
use rphonetic::DoubleMetaphone;
use std::collections::HashMap;
use words::{phrase_score, words, Words};

/// One menu entry of a flow node: the intent name and example phrases callers say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub intent: String,
    pub phrases: Vec<String>,
}

/// The outcome of scoring one transcript.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchResult {
    /// The best intent and its confidence (0..1); `None` when nothing matched at all.
    /// Compare the confidence with the node's `min_confidence` to choose between the
    /// match and `low_confidence` exits.
    pub best: Option<(String, f32)>,
    /// The caller asked for a person (an escalation phrase matched); this wins over `best`.
    pub escalation: bool,
    /// The transcript as compared: lower case, no punctuation, digits as words.
    pub normalized: String,
    /// Every intent's score (0..1), in candidate order: by words and closed set alone, or
    /// the calibrated combination with meaning (see [`combine`]).
    pub scores: Vec<(String, f32)>,
    /// The same for asking for a person; `escalation` is this >= `ESCALATION_THRESHOLD`.
    pub escalation_score: f32,
    /// The evidence, in candidate order: the best phrase's word alignment (0..1) and the
    /// decoder's closed-set posterior mass of the intent's phrases (0..1); then the same
    /// for the escalation phrases.
    pub words: Vec<f32>,
    pub closed: Vec<f32>,
    pub escalation_words: f32,
    pub escalation_closed: f32,
    /// Per intent (candidate order), the best cosine similarity of the transcript's
    /// embedding to the intent's examples; empty without embeddings.
    pub similarity: Vec<(String, f32)>,
    /// The same for the escalation examples and for the out-of-scope anchors (fillers,
    /// greetings, chit-chat); 0 without embeddings.
    pub escalation_similarity: f32,
    pub none_similarity: f32,
}

/// Score an escalation phrase needs to count. Higher than a typical `min_confidence`: a
/// wrong escalation costs a person's time, and the key (0) is always there as well.
pub const ESCALATION_THRESHOLD: f32 = 0.8;
/// Closed-set posterior mass of the escalation phrases that counts as asking for a person.
pub const CLOSED_ESCALATION_THRESHOLD: f32 = 0.5;
/// Below this raw score an intent is not a candidate at all (`best` is `None`).
const FLOOR: f32 = 0.5;
/// The same for calibrated confidences (`combine`).
const CALIBRATED_FLOOR: f32 = 0.1;
/// If the runner-up intent is within this margin of the best one, confidence is lowered
/// by `TIE_PENALTY` times the shortfall, so that a tie (two intents named) loses half its
/// score and falls under any sensible `min_confidence`.
const MARGIN: f32 = 0.2;
const TIE_PENALTY: f32 = 2.5;
struct Entry {
    intent: String,
    phrases: Vec<Words>,
}

/// Scores transcripts against one node's intents and the flow's escalation phrases.
pub struct Matcher {
    entries: Vec<Entry>,
    escalation: Vec<Words>,
    raw_escalation: Vec<String>,
    /// Phrases as written, for the Whisper prompt and closed-set scoring.
    raw_phrases: Vec<(String, String)>,
    dm: DoubleMetaphone,
    /// What routes nowhere, as examples for the semantic pass.
    none_anchors: &'static [&'static str],
    /// Example embeddings, when the matcher also scores by meaning.
    semantic: Option<SemanticIndex>,
    /// Transcripts of hesitations only ("um", "hello?") never route (off for yes/no).
    filler_gate: bool,
    /// With embeddings, keep the words-and-closed-set score as a floor (yes/no: two short
    /// answers, where the decoder's closed set is reliable and the confidence model, fitted
    /// on menus, is not).
    lexical_floor: bool,
}

/// One node's example embeddings (unit vectors).
#[derive(Clone, Debug)]
struct SemanticIndex {
    /// Per intent (candidate order): its phrases and name.
    intents: Vec<Vec<Vec<f32>>>,
    escalation: Vec<Vec<f32>>,
    none: Vec<Vec<f32>>,
}

/// What the recogniser heard, as the matcher scores it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heard {
    pub text: String,
    /// The decoder's closed-set posteriors (`Matcher::closed_set` order).
    pub closed: Option<Vec<f32>>,
    /// The transcript's sentence embedding (unit vector).
    pub embedding: Option<Vec<f32>>,
}

impl Heard {
    pub fn text(text: impl Into<String>) -> Heard {
        Heard {
            text: text.into(),
            ..Heard::default()
        }
    }
}

impl Matcher {
    pub fn new(candidates: Vec<Candidate>, escalation_phrases: Vec<String>) -> Self {
        let dm = DoubleMetaphone::new(None);
        let prepare = |p: &str| words(&normalize(p), &dm);
        let mut raw_phrases = Vec::new();
        let entries = candidates
            .into_iter()
            .map(|c| {
                for p in &c.phrases {
                    raw_phrases.push((c.intent.clone(), p.clone()));
                }
                Entry {
                    phrases: c
                        .phrases
                        .iter()
                        .map(|p| prepare(p))
                        .filter(|w| !w.is_empty())
                        .collect(),
                    intent: c.intent,
                }
            })
            .collect();
        let escalation = escalation_phrases
            .iter()
            .map(|p| prepare(p))
            .filter(|w| !w.is_empty())
            .collect();
        Matcher {
            entries,
            escalation,
            raw_escalation: escalation_phrases,
            raw_phrases,
            dm,
            none_anchors: NONE_ANCHORS,
            semantic: None,
            filler_gate: true,
            lexical_floor: false,
        }
    }

    /// A yes/no question's matcher ("Did you mean billing?"): intents `yes` and `no`,
    /// plus the escalation phrases, which work here as everywhere.
    pub fn yes_no(escalation_phrases: Vec<String>) -> Matcher {
        Matcher::yes_no_with(&[], &[], escalation_phrases)
    }

    /// A flow's own yes/no question (a menu whose intents are `yes` and `no`): the usual
    /// ways to say each, plus the flow's own phrases; scored like the confirmation turn,
    /// where a plain "yes" is an answer, not a hesitation.
    pub fn yes_no_with(yes: &[String], no: &[String], escalation_phrases: Vec<String>) -> Matcher {
        let c = |intent: &str, phrases: &[&str], own: &[String]| {
            let mut all: Vec<String> = phrases.iter().map(|p| p.to_string()).collect();
            for p in own {
                if !all.iter().any(|a| a.eq_ignore_ascii_case(p)) {
                    all.push(p.clone());
                }
            }
            Candidate {
                intent: intent.into(),
                phrases: all,
            }
        };
        let mut m = Matcher::new(
            vec![c(YES, YES_PHRASES, yes), c(NO, NO_PHRASES, no)],
            escalation_phrases,
        );
        m.none_anchors = YES_NO_NONE_ANCHORS;
        m.filler_gate = false;
        m.lexical_floor = true;
        m
    }

    /// Scores a transcript. Never fails: empty or unmatched text gives `best: None`.
    pub fn score(&self, transcript: &str) -> MatchResult {
        self.score_with(transcript, None)
    }

    /// The closed set for the decoder (`AsrRequest::candidates`): every intent phrase in
    /// candidate order, then the escalation phrases.
    pub fn closed_set(&self) -> Vec<String> {
        self.raw_phrases
            .iter()
            .map(|(_, p)| p.clone())
            .chain(self.raw_escalation.iter().cloned())
            .collect()
    }

    /// Scores a transcript together with the decoder's closed-set posteriors
    /// (`AsrResult::candidate_scores`, in `closed_set()` order). An intent's closed-set
    /// score is the posterior mass of its phrases; its final score is the better of that
    /// and its text score. The two fail differently: the text match handles long
    /// utterances that contain a phrase, the closed set handles short ones that Whisper
    /// mis-transcribed ("a food reminder" for "a supervisor").
    pub fn score_with(&self, transcript: &str, closed: Option<&[f32]>) -> MatchResult {
        self.score_all(transcript, closed, None)
    }

    /// Scores what was heard: the transcript's words (the lexical pass), the decoder's
    /// closed-set posteriors and the transcript's sentence embedding (`embed`), each when
    /// present. See [`combine`] for how they make one confidence.
    pub fn score_heard(&self, heard: &Heard) -> MatchResult {
        self.score_all(
            &heard.text,
            heard.closed.as_deref(),
            heard.embedding.as_deref(),
        )
    }

    pub fn score_all(
        &self,
        transcript: &str,
        closed: Option<&[f32]>,
        embedding: Option<&[f32]>,
    ) -> MatchResult {
        let normalized = normalize(transcript);
        let text = words(&normalized, &self.dm);
        let best_of = |phrases: &[Words]| {
            phrases
                .iter()
                .map(|p| phrase_score(p, &text))
                .fold(0.0f32, f32::max)
        };
        let words: Vec<f32> = self.entries.iter().map(|e| best_of(&e.phrases)).collect();
        let escalation_words = best_of(&self.escalation);
        let mut closed_mass = vec![0.0f32; self.entries.len()];
        let mut escalation_closed = 0.0f32;
        if let Some(closed) =
            closed.filter(|c| c.len() == self.raw_phrases.len() + self.raw_escalation.len())
        {
            for ((intent, _), &p) in self.raw_phrases.iter().zip(closed) {
                if let Some(k) = self.entries.iter().position(|e| e.intent == *intent) {
                    closed_mass[k] += p.clamp(0.0, 1.0);
                }
            }
            escalation_closed = closed[self.raw_phrases.len()..]
                .iter()
                .map(|p| p.clamp(0.0, 1.0))
                .sum();
        }
        // Only hesitations and courtesies ("um", "hello?", "okay"): nothing to route on,
        // whatever the closed set made of them.
        let filler = self.filler_gate && is_filler_only(&normalized);
        let mut result = MatchResult {
            best: None,
            escalation: false,
            normalized,
            scores: Vec::new(),
            escalation_score: 0.0,
            words,
            closed: closed_mass,
            escalation_words,
            escalation_closed,
            similarity: Vec::new(),
            escalation_similarity: 0.0,
            none_similarity: 0.0,
        };
        match (&self.semantic, embedding) {
            _ if filler => {
                result.scores = self
                    .entries
                    .iter()
                    .map(|e| (e.intent.clone(), 0.0))
                    .collect();
            }
            (Some(index), Some(e)) => {
                combine(&mut result, index, e, &self.entries);
                if self.lexical_floor {
                    for ((_, score), (&w, &c)) in result
                        .scores
                        .iter_mut()
                        .zip(result.words.iter().zip(&result.closed))
                    {
                        *score = score.max(w.max(c));
                    }
                }
            }
            _ => lexical_only(&mut result, &self.entries),
        }
        result.best = pick(
            &result.scores,
            self.semantic.is_some() && embedding.is_some(),
        );
        result.escalation = result.escalation_score >= ESCALATION_THRESHOLD;
        result
    }

    /// The texts whose embeddings [`Matcher::with_semantic`] needs, in index order: per
    /// intent its phrases and its name, then the escalation examples, then the anchors of
    /// what routes nowhere.
    fn semantic_texts(&self) -> (Vec<Vec<String>>, Vec<String>, Vec<String>) {
        let intents = self
            .entries
            .iter()
            .map(|e| {
                let mut texts: Vec<String> = self
                    .raw_phrases
                    .iter()
                    .filter(|(i, _)| *i == e.intent)
                    .map(|(_, p)| p.clone())
                    .collect();
                // The name an admin gave the intent says what it is about ("billing").
                let name = e.intent.replace(['_', '-'], " ");
                if !texts.iter().any(|t| normalize(t) == normalize(&name)) {
                    texts.push(name);
                }
                texts
            })
            .collect();
        let mut escalation = self.raw_escalation.clone();
        if !self.raw_escalation.is_empty() {
            escalation.extend(ESCALATION_EXAMPLES.iter().map(|s| s.to_string()));
        }
        let none = self.none_anchors.iter().map(|s| s.to_string()).collect();
        (intents, escalation, none)
    }

    /// The same matcher, also scoring by meaning: the example embeddings are computed now
    /// (once per flow load, off the async runtime), the transcript's by the recogniser.
    pub fn with_semantic(mut self, embedder: &dyn TextEmbedder) -> Result<Matcher, EmbedError> {
        self.attach_semantic(embedder)?;
        Ok(self)
    }

    /// [`Matcher::with_semantic`] in place; on an error the matcher stays lexical.
    pub fn attach_semantic(&mut self, embedder: &dyn TextEmbedder) -> Result<(), EmbedError> {
        let (intents, escalation, none) = self.semantic_texts();
        let embed = |texts: &[String]| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed(&refs)
        };
        self.semantic = Some(SemanticIndex {
            intents: intents.iter().map(|t| embed(t)).collect::<Result<_, _>>()?,
            escalation: embed(&escalation)?,
            none: Vec::new(),
        });
        let anchors = embed(&none)?;
        if let Some(index) = &mut self.semantic {
            let examples: Vec<&Vec<f32>> = index.intents.iter().flatten().collect();
            index.none = anchors
                .into_iter()
                .filter(|a| {
                    examples
                        .iter()
                        .all(|x| cosine(a, x) < ANCHOR_MAX_SIMILARITY)
                })
                .collect();
        }
        Ok(())
    }

    /// Whether transcripts are also scored by meaning.
    pub fn is_semantic(&self) -> bool {
        self.semantic.is_some()
    }

    /// Problems for `ivrd check` with embeddings: examples of two intents so close in
    /// meaning that callers saying one may be routed to the other.
    pub fn confusable(&self) -> Vec<String> {
        let Some(index) = &self.semantic else {
            return Vec::new();
        };
        let (texts, _, _) = self.semantic_texts();
        let mut out = Vec::new();
        for a in 0..self.entries.len() {
            for b in a + 1..self.entries.len() {
                let mut worst: Option<(f32, usize, usize)> = None;
                for (i, va) in index.intents[a].iter().enumerate() {
                    for (j, vb) in index.intents[b].iter().enumerate() {
                        let sim = cosine(va, vb);
                        if worst.is_none_or(|w| sim > w.0) {
                            worst = Some((sim, i, j));
                        }
                    }
                }
                if let Some((sim, i, j)) = worst.filter(|w| w.0 >= CONFUSABLE_SIMILARITY) {
                    out.push(format!(
                        "intents '{}' and '{}' are confusable: '{}' and '{}' mean nearly the same ({sim:.2} similarity); callers saying one may be routed to the other",
                        self.entries[a].intent, self.entries[b].intent, texts[a][i], texts[b][j]
                    ));
                }
            }
        }
        out
    }

    /// A Whisper initial prompt that makes the node's phrases likely: the phrases as a
    /// comma-separated list, as if said before. Short on purpose: every prompt token is
    /// decoder work, and a long list dilutes the bias.
    pub fn initial_prompt(&self) -> String {
        let mut seen = Vec::new();
        // The escalation phrases too: a caller may ask for a person in any node, and these
        // are the words telephone audio mangles most ("super mimer").
        let phrases = self.raw_phrases.iter().map(|(_, p)| p);
        for p in phrases.chain(&self.raw_escalation) {
            let p = p.trim();
            if !p.is_empty() && !seen.iter().any(|s: &&str| s.eq_ignore_ascii_case(p)) {
                seen.push(p);
            }
        }
        let mut prompt = seen.join(", ");
        if !prompt.is_empty() {
            prompt.push('.');
        }
        prompt
    }

    /// Every (intent, phrase) in candidate order: the closed set to score with the decoder.
    pub fn phrases(&self) -> &[(String, String)] {
        &self.raw_phrases
    }
}

/// Without embeddings: an intent scores the better of its word alignment and its
/// closed-set mass; asking for a person needs a strong phrase match, or most of the
/// closed-set mass.
fn lexical_only(result: &mut MatchResult, entries: &[Entry]) {
    result.scores = entries
        .iter()
        .zip(result.words.iter().zip(&result.closed))
        .map(|(e, (&w, &c))| (e.intent.clone(), w.max(c)))
        .collect();
    result.escalation_score = result.escalation_words;
    // The closed-set mass is a probability against every other phrase and the transcript:
    // more likely than all of them together is enough.
    if result.escalation_closed >= CLOSED_ESCALATION_THRESHOLD {
        result.escalation_score = result
            .escalation_score
            .max(ESCALATION_THRESHOLD.max(result.escalation_closed));
    }
}

/// The calibrated confidence that an option (an intent, or asking for a person) is what
/// the caller wants, from four pieces of evidence: `sim`, the best cosine similarity of the
/// utterance to the option's examples; `margin`, how far that is above the strongest
/// competitor (another option or the out-of-scope anchors); `words`, the best phrase's
/// word alignment; `closed`, the decoder's closed-set mass. A logistic model fitted by
/// `benches/fit_confidence.py` on the tuning half of the corpus only (tiny.en transcripts
/// of telephone audio); the held-out half measures it.
pub fn confidence(sim: f32, margin: f32, words: f32, closed: f32) -> f32 {
    let z = CONF_BIAS
        + CONF_SIMILARITY * sim
        + CONF_MARGIN * margin
        + CONF_WORDS * words
        + CONF_CLOSED * closed;
    1.0 / (1.0 + (-z).exp())
}
const CONF_BIAS: f32 = -2.14;
const CONF_SIMILARITY: f32 = 3.90;
const CONF_MARGIN: f32 = 7.03;
const CONF_WORDS: f32 = 0.49;
const CONF_CLOSED: f32 = 0.91;
/// A word alignment this good is a keyword hit (the phrase said as written, or nearly):
/// it routes whatever the embedding says (the lexical first pass).
const KEYWORD_HIT: f32 = 0.9;
/// Two intents' examples this similar are reported by `ivrd check`.
pub const CONFUSABLE_SIMILARITY: f32 = 0.8;

/// Scores every intent and escalation with [`confidence`]. The out-of-scope anchors
/// ("hello?", "um", chit-chat) compete like an option that routes nowhere, so an utterance
/// closer to them than to any intent has a negative margin everywhere.
fn combine(result: &mut MatchResult, index: &SemanticIndex, e: &[f32], entries: &[Entry]) {
    let best = |examples: &[Vec<f32>]| {
        examples
            .iter()
            .map(|x| cosine(e, x))
            .fold(-1.0f32, f32::max)
    };
    let sims: Vec<f32> = index.intents.iter().map(|x| best(x)).collect();
    let esc = if index.escalation.is_empty() {
        -1.0
    } else {
        best(&index.escalation)
    };
    let none = if index.none.is_empty() {
        -1.0
    } else {
        best(&index.none)
    };
    // Option k's strongest competitor: every other intent, escalation and none.
    let rival = |k: Option<usize>, with_esc: bool| {
        let others = sims
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != k)
            .map(|(_, &v)| v)
            .fold(none, f32::max);
        if with_esc {
            others.max(esc)
        } else {
            others
        }
    };
    result.scores = entries
        .iter()
        .enumerate()
        .map(|(k, entry)| {
            let (sim, words, closed) = (sims[k], result.words[k], result.closed[k]);
            let mut p = confidence(sim, sim - rival(Some(k), true), words, closed);
            if words >= KEYWORD_HIT {
                p = p.max(words);
            }
            (entry.intent.clone(), p)
        })
        .collect();
    if !index.escalation.is_empty() {
        let (words, closed) = (result.escalation_words, result.escalation_closed);
        let mut p = confidence(esc, esc - rival(None, false), words, closed);
        if words >= KEYWORD_HIT {
            p = p.max(words);
        }
        result.escalation_score = p;
    }
    result.similarity = entries.iter().map(|x| x.intent.clone()).zip(sims).collect();
    result.escalation_similarity = esc;
    result.none_similarity = none;
}

/// Words that alone say nothing a menu can act on.
const HESITATIONS: &[&str] = &[
    "um", "umm", "uh", "uhm", "er", "erm", "ah", "eh", "hmm", "hm", "mm", "mhm", "oh", "huh",
    "hello", "hi", "hey", "okay", "ok", "alright", "yes", "yeah", "yep", "no", "nope", "so",
    "well", "sorry", "what", "wait", "please", "thanks", "thank", "you", "is", "anyone", "anybody",
    "there", "right", "i", "mean", "like", "a", "the", "oops", "just", "second", "moment", "one",
    "let", "me", "think", "see", "can", "hear",
];

/// True when the transcript has words and every one is a hesitation or courtesy.
fn is_filler_only(normalized: &str) -> bool {
    let mut words = normalized.split(' ').filter(|w| !w.is_empty()).peekable();
    words.peek().is_some() && words.all(|w| HESITATIONS.contains(&w))
}

/// Sentences that ask for a person, beyond a flow's own escalation phrases: the semantic
/// pass compares callers with these as well (rule 3: a human is always one step away).
const ESCALATION_EXAMPLES: &[&str] = &[
    "I want to speak to a real person",
    "let me talk to somebody",
    "can I talk to someone please",
    "transfer me to a representative",
    "I need a live agent",
    "get me a human being",
    "put me through to your manager",
];

/// What callers say that asks for nothing: greetings, hesitations, courtesies.
const NONE_ANCHORS: &[&str] = &[
    "hello",
    "hello, is anyone there?",
    "um",
    "uh",
    "hmm",
    "okay",
    "yes",
    "no",
    "sorry, what did you say?",
    "wait a moment",
    "thank you",
    "goodbye",
    "I don't know",
    "what?",
    // Requests no service line takes: they keep unrelated asks from the nearest intent.
    // Dropped for a flow whose own examples come close to one (see `with_semantic`).
    "I want to order food",
    "what's the weather forecast",
    "tell me a joke",
    "I think I have the wrong number",
    "I'd like to make a reservation",
    "what's the score of the game",
];
/// An out-of-scope anchor this similar to one of a flow's examples is not used for it
/// (a pizzeria's menu wants orders).
const ANCHOR_MAX_SIMILARITY: f32 = 0.5;
const YES_NO_NONE_ANCHORS: &[&str] = &[
    "hello",
    "um",
    "hmm",
    "sorry, what did you say?",
    "wait a moment",
    "I don't know",
    "what?",
];

/// Intents of the yes/no matcher.
pub const YES: &str = "yes";
pub const NO: &str = "no";
const YES_PHRASES: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "correct",
    "that's right",
    "right",
    "sure",
    "exactly",
    "yes please",
    "that's it",
];
const NO_PHRASES: &[&str] = &[
    "no",
    "nope",
    "wrong",
    "that's wrong",
    "not that",
    "no thanks",
    "that's not it",
    "not really",
];

/// The best intent with a confidence lowered by a close runner-up.
/// The calibrated scores have their own floor: below it nothing is worth even a question.
fn pick(scores: &[(String, f32)], calibrated: bool) -> Option<(String, f32)> {
    let mut order: Vec<&(String, f32)> = scores.iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (intent, best) = order.first()?;
    if *best < if calibrated { CALIBRATED_FLOOR } else { FLOOR } {
        return None;
    }
    let runner_up = order.get(1).map_or(0.0, |e| e.1);
    let shortfall = TIE_PENALTY * (MARGIN - (best - runner_up)).max(0.0);
    Some((intent.clone(), (best - shortfall).clamp(0.0, 1.0)))
}

/// Problems for `ivrd check`: phrases that appear in two intents, or that are so alike that
/// one would be heard as the other. Each message names both intents and phrases.
pub fn collisions(candidates: &[Candidate]) -> Vec<String> {
    /// Above this a phrase of one intent matches another intent's phrase about as well as
    /// a clean transcript would: the matcher could not tell them apart.
    const TOO_CLOSE: f32 = 0.85;
    let dm = DoubleMetaphone::new(None);
    let mut out = Vec::new();
    let mut owner: HashMap<String, &str> = HashMap::new();
    for c in candidates {
        for p in &c.phrases {
            let n = normalize(p);
            if n.is_empty() {
                out.push(format!(
                    "intent '{}': phrase '{p}' has no words to match",
                    c.intent
                ));
                continue;
            }
            match owner.get(&n) {
                Some(&other) if other != c.intent => out.push(format!(
                    "phrase '{p}' is in both intent '{other}' and intent '{}'",
                    c.intent
                )),
                Some(_) => {}
                None => {
                    owner.insert(n, &c.intent);
                }
            }
        }
    }
    for (a_i, a) in candidates.iter().enumerate() {
        for b in &candidates[a_i + 1..] {
            if a.intent == b.intent {
                continue;
            }
            for pa in &a.phrases {
                for pb in &b.phrases {
                    let (na, nb) = (normalize(pa), normalize(pb));
                    if na == nb || na.is_empty() || nb.is_empty() {
                        continue;
                    }
                    let (wa, wb) = (words(&na, &dm), words(&nb, &dm));
                    // Symmetric: the closer of "a heard as b" and "b heard as a". A phrase
                    // contained in the other ("bill" / "my bill") counts as close.
                    let score = phrase_score(&wa, &wb).max(phrase_score(&wb, &wa));
                    if score >= TOO_CLOSE {
                        out.push(format!(
                            "phrase '{pa}' of intent '{}' and phrase '{pb}' of intent '{}' are too alike ({:.2}): callers saying one may be routed to the other",
                            a.intent, b.intent, score
                        ));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
