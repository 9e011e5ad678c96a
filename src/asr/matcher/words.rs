//! Matching by words: the transcript normal form, and the fitting alignment of a phrase's
//! words inside a transcript with a similarity that accepts near-misses in spelling, sound
//! and word boundaries (see the matcher's opening comment).

use rphonetic::DoubleMetaphone;

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
        // Double Metaphone is made for English spelling, and rphonetic slices its input at
        // byte offsets: a letter outside ASCII ("café", any script Whisper or a flow author
        // may write) panicked it (found by the flow_yaml fuzz target). Such words are coded
        // by their own spelling: they sound alike only when spelt alike.
        let codes = if text.is_ascii() {
            let r = dm.double_metaphone(text);
            [r.primary(), r.alternate()]
        } else {
            let own = text.to_uppercase();
            [own.clone(), own]
        };
        let weight = if FILLER.contains(&text) {
            FILLER_WEIGHT
        } else {
            1.0
        };
        Word {
            text: text.to_owned(),
            codes,
            weight,
        }
    }
}

/// The words of a text plus each pair of neighbours run together, prepared once.
#[derive(Clone, Debug)]
pub(super) struct Words {
    words: Vec<Word>,
    /// `pairs[k]` = `words[k]` and `words[k + 1]` as one word ("tech" "support").
    pairs: Vec<Word>,
}

impl Words {
    /// Nothing left to match (the phrase or transcript was only punctuation).
    pub(super) fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// Transcripts are cut to this many words: a menu answer is a few words, and the cost
/// of matching grows with the length.
const MAX_WORDS: usize = 100;

pub(super) fn words(normalized: &str, dm: &DoubleMetaphone) -> Words {
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
pub(super) fn phrase_score(phrase: &Words, text: &Words) -> f32 {
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
