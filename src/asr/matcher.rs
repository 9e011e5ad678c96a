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

use rphonetic::DoubleMetaphone;
use std::collections::HashMap;

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
    /// Every intent's raw score (best phrase), in candidate order, for logs and tests.
    pub scores: Vec<(String, f32)>,
    /// Score of the best escalation phrase.
    pub escalation_score: f32,
}

/// Score an escalation phrase needs to count. Higher than a typical `min_confidence`: a
/// wrong escalation costs a person's time, and the key (0) is always there as well.
pub const ESCALATION_THRESHOLD: f32 = 0.8;
/// Closed-set posterior mass of the escalation phrases that counts as asking for a person.
pub const CLOSED_ESCALATION_THRESHOLD: f32 = 0.5;
/// Below this raw score an intent is not a candidate at all (`best` is `None`).
const FLOOR: f32 = 0.5;
/// If the runner-up intent is within this margin of the best one, confidence is lowered
/// by `TIE_PENALTY` times the shortfall, so that a tie (two intents named) loses half its
/// score and falls under any sensible `min_confidence`.
const MARGIN: f32 = 0.2;
const TIE_PENALTY: f32 = 2.5;
/// Weight of filler words, as phrase words and as extra words inside a match.
const FILLER_WEIGHT: f32 = 0.3;
/// Cost of an extra transcript word inside the matched stretch, times its weight.
const INSERT_COST: f32 = 0.5;
/// Similarity of two words that sound the same (equal Double Metaphone codes) but are
/// spelt differently: a little less than the same word.
const SAME_SOUND: f32 = 0.85;
/// ... provided the spellings are not too far apart either: codes keep only a word's first
/// vowel, so "I can't" run together (AKNT) codes like "agent".
const SAME_SOUND_MIN_SPELLING: f32 = 0.5;
/// Similarities below this count as no match: random short words share a letter or sound.
const MIN_WORD_SIM: f32 = 0.4;

/// Words that carry little meaning on their own in caller speech.
const FILLER: &[&str] = &[
    "a", "an", "the", "my", "i", "im", "me", "to", "is", "it", "its", "on", "of", "about", "for",
    "please", "uh", "um", "er", "so", "and", "with", "want", "like", "would", "id", "can", "you",
    "your", "some", "this", "that", "just", "be", "do", "have", "has", "in", "at", "are", "am",
    "there", "get", "need", "okay", "ok", "yes", "hi", "hello", "think",
];

const DIGITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Transcript normal form: lower case, letters and digits only, digits spelt out one by
/// one ("24/7" -> "two four seven"), apostrophes dropped ("it's" -> "its"), everything
/// else a word break. Words are what both Whisper and the flow author would write; digits
/// are spelt so that "press 1" and "press one" compare equal and phonetically.
pub fn normalize(text: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            flush(&mut word, &mut words);
            words.push(DIGITS[(c as u8 - b'0') as usize].to_owned());
        } else if c.is_alphabetic() {
            word.extend(c.to_lowercase());
        } else if c == '\'' || c == '\u{2019}' {
            // "it's" stays one word.
        } else {
            flush(&mut word, &mut words);
        }
    }
    flush(&mut word, &mut words);
    words.join(" ")
}

/// A word with what the comparisons need, computed once.
#[derive(Clone, Debug)]
struct Word {
    text: String,
    codes: [String; 2],
    weight: f32,
}

impl Word {
    fn new(text: &str, dm: &DoubleMetaphone) -> Word {
        let r = dm.double_metaphone(text);
        let weight = if FILLER.contains(&text) {
            FILLER_WEIGHT
        } else {
            1.0
        };
        Word {
            text: text.to_owned(),
            codes: [r.primary(), r.alternate()],
            weight,
        }
    }
}

/// The words of a text plus each pair of neighbours run together, prepared once.
#[derive(Clone, Debug)]
struct Words {
    words: Vec<Word>,
    /// `pairs[k]` = `words[k]` and `words[k + 1]` as one word ("tech" "support").
    pairs: Vec<Word>,
}

/// Transcripts are cut to this many words: a menu answer is a few words, and the cost
/// of matching grows with the length.
const MAX_WORDS: usize = 100;

fn words(normalized: &str, dm: &DoubleMetaphone) -> Words {
    let words: Vec<Word> = normalized
        .split(' ')
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(|w| Word::new(w, dm))
        .collect();
    let pairs = words.windows(2).map(|w| joined(&w[0], &w[1], dm)).collect();
    Words { words, pairs }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Double Metaphone sound classes that telephone audio and Whisper confuse: lips (p/b,
/// f/v, m), tongue tip (t/d, th, s, sh), back (k/g, j), nasals (n, m) and liquids (l, r).
/// Swapping sounds within a class costs half an edit: "bill" (PL) heard as "meal" (ML).
const SOUND_CLASSES: &[&str] = &["PFM", "T0SX", "KJ", "NM", "LR"];

fn substitution_cost(a: char, b: char) -> f32 {
    if a == b {
        0.0
    } else if SOUND_CLASSES
        .iter()
        .any(|class| class.contains(a) && class.contains(b))
    {
        0.5
    } else {
        1.0
    }
}

/// Similarity of two phonetic codes, 0..1: edit distance with class-aware substitutions.
fn code_ratio(a: &str, b: &str) -> f32 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 0.0;
    }
    let mut row: Vec<f32> = (0..=b.len()).map(|j| j as f32).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = (i + 1) as f32;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + substitution_cost(ca, cb))
                .min(row[j] + 1.0)
                .min(row[j + 1] + 1.0);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    1.0 - row[b.len()] / longest as f32
}

fn ratio(a: &str, b: &str) -> f32 {
    let longest = a.chars().count().max(b.chars().count());
    if longest == 0 {
        return 0.0;
    }
    1.0 - edit_distance(a, b) as f32 / longest as f32
}

/// How alike two words are, 0..1.
fn similarity(a: &Word, b: &Word) -> f32 {
    if a.text == b.text {
        return 1.0;
    }
    // Short words ("a", "to", "on") are too easily near something else.
    if a.text.len() <= 2 || b.text.len() <= 2 {
        return 0.0;
    }
    let spelling = ratio(&a.text, &b.text);
    let mut phonetic: f32 = 0.0;
    for ca in &a.codes {
        for cb in &b.codes {
            if !ca.is_empty() && !cb.is_empty() {
                phonetic = phonetic.max(code_ratio(ca, cb));
            }
        }
    }
    // Sound and spelling must agree: phonetic codes drop vowels, so unrelated words
    // often have close codes ("jumps" JMPS / "invoice" ANFS). The same code with a
    // similar spelling ("there" / "their") is strong evidence on its own.
    let sim = if phonetic >= 1.0 && spelling >= SAME_SOUND_MIN_SPELLING {
        spelling.max(SAME_SOUND)
    } else {
        spelling.max(0.5 * (spelling + phonetic))
    };
    if sim < MIN_WORD_SIM {
        0.0
    } else {
        sim
    }
}

fn joined(a: &Word, b: &Word, dm: &DoubleMetaphone) -> Word {
    let mut w = Word::new(&format!("{}{}", a.text, b.text), dm);
    w.weight = a.weight + b.weight;
    w
}

/// Fitting alignment of `phrase` inside `text`: 0..1, 1 when the phrase appears verbatim.
fn phrase_score(phrase: &Words, text: &Words) -> f32 {
    let (phrase_pairs, text_pairs) = (&phrase.pairs, &text.pairs);
    let (phrase, text) = (&phrase.words, &text.words);
    let n = phrase.len();
    let m = text.len();
    let total: f32 = phrase.iter().map(|w| w.weight).sum();
    if n == 0 || m == 0 || total <= 0.0 {
        return 0.0;
    }
    // d[i][j]: least cost of aligning phrase[..i] so that it ends at text position j.
    let mut d = vec![vec![f32::INFINITY; m + 1]; n + 1];
    d[0].fill(0.0);
    for i in 1..=n {
        let p = &phrase[i - 1];
        d[i][0] = d[i - 1][0] + p.weight;
        for j in 1..=m {
            let t = &text[j - 1];
            let mut best = d[i - 1][j - 1] + p.weight * (1.0 - similarity(p, t));
            best = best.min(d[i - 1][j] + p.weight);
            if i > 1 {
                // An extra word between phrase words.
                best = best.min(d[i][j - 1] + INSERT_COST * t.weight);
                // Two phrase words heard as one.
                let merged = &phrase_pairs[i - 2];
                best = best.min(d[i - 2][j - 1] + merged.weight * (1.0 - similarity(merged, t)));
            }
            if j > 1 {
                // One phrase word heard as two.
                let merged = &text_pairs[j - 2];
                best = best.min(d[i - 1][j - 2] + p.weight * (1.0 - similarity(p, merged)));
            }
            d[i][j] = best;
        }
    }
    let cost = d[n].iter().cloned().fold(f32::INFINITY, f32::min);
    (1.0 - cost / total).clamp(0.0, 1.0)
}

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
                        .filter(|w| !w.words.is_empty())
                        .collect(),
                    intent: c.intent,
                }
            })
            .collect();
        let escalation = escalation_phrases
            .iter()
            .map(|p| prepare(p))
            .filter(|w| !w.words.is_empty())
            .collect();
        Matcher {
            entries,
            escalation,
            raw_escalation: escalation_phrases,
            raw_phrases,
            dm,
        }
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
        let normalized = normalize(transcript);
        let text = words(&normalized, &self.dm);
        let best_of = |phrases: &[Words]| {
            phrases
                .iter()
                .map(|p| phrase_score(p, &text))
                .fold(0.0f32, f32::max)
        };
        let mut scores: Vec<(String, f32)> = self
            .entries
            .iter()
            .map(|e| (e.intent.clone(), best_of(&e.phrases)))
            .collect();
        let mut escalation_score = best_of(&self.escalation);
        if let Some(closed) =
            closed.filter(|c| c.len() == self.raw_phrases.len() + self.raw_escalation.len())
        {
            let mut mass: HashMap<&str, f32> = HashMap::new();
            for ((intent, _), &p) in self.raw_phrases.iter().zip(closed) {
                *mass.entry(intent.as_str()).or_default() += p.clamp(0.0, 1.0);
            }
            for (intent, score) in &mut scores {
                *score = score.max(mass.get(intent.as_str()).copied().unwrap_or(0.0));
            }
            let escalation_mass: f32 = closed[self.raw_phrases.len()..]
                .iter()
                .map(|p| p.clamp(0.0, 1.0))
                .sum();
            // The closed-set mass is a probability against every other phrase and the
            // transcript: more likely than all of them together is enough.
            if escalation_mass >= CLOSED_ESCALATION_THRESHOLD {
                escalation_score = escalation_score.max(ESCALATION_THRESHOLD.max(escalation_mass));
            }
        }
        MatchResult {
            best: pick(&scores),
            escalation: escalation_score >= ESCALATION_THRESHOLD,
            normalized,
            scores,
            escalation_score,
        }
    }

    /// A Whisper initial prompt that makes the node's phrases likely: the phrases as a
    /// comma-separated list, as if said before. Short on purpose: every prompt token is
    /// decoder work, and a long list dilutes the bias.
    pub fn initial_prompt(&self) -> String {
        let mut seen = Vec::new();
        for (_, p) in &self.raw_phrases {
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

/// The best intent with a confidence lowered by a close runner-up.
fn pick(scores: &[(String, f32)]) -> Option<(String, f32)> {
    let mut order: Vec<&(String, f32)> = scores.iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (intent, best) = order.first()?;
    if *best < FLOOR {
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
