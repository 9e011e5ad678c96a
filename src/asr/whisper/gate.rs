//! Hallucination gates: Whisper, given silence, noise or a cough, still writes something,
//! usually a stock phrase from its training subtitles ("Thank you.", "Thanks for watching!",
//! "you"). A call must never be routed on that. Pure.

use crate::asr::matcher::normalize;

/// Why a transcript was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Nothing was transcribed (or only punctuation / annotations).
    Empty,
    /// The model says there is no speech: high no-speech probability and an unsure
    /// transcript (OpenAI's rule: both, since either alone misfires on short words).
    NoSpeech,
    /// A stock phrase Whisper produces from non-speech, heard on quiet or doubtful audio.
    Hallucination,
    /// Still a loop after `clean` (compression ratio above the reference's 2.4).
    Repetition,
}

impl Gate {
    /// Label for `ivrd_asr_results_total{result}` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Empty => "empty",
            Gate::NoSpeech => "no_speech",
            Gate::Hallucination => "hallucination",
            Gate::Repetition => "repetition",
        }
    }
}

/// Stock outputs of Whisper on non-speech, normalised.
const HALLUCINATIONS: &[&str] = &[
    "you",
    "thank you",
    "thanks",
    "thank you very much",
    "thank you so much",
    "thanks for watching",
    "thank you for watching",
    "thanks for watching and ill see you next time",
    "please subscribe",
    "subscribe",
    "bye",
    "bye bye",
    "so",
    "oh",
    "uh",
    "um",
    "hmm",
    "mm",
    "the end",
    "subtitles by the amaraorg community",
    "transcription by castingwords",
    "i",
    "okay",
];

/// A transcript below this mean token log-probability is "unsure" (OpenAI's logprob
/// threshold).
const UNSURE_LOGPROB: f32 = -1.0;
/// Stock phrases are dropped when the audio is this quiet (active speech level, dBFS)...
const QUIET_DB: f32 = -40.0;
/// ...or when the model itself gives this much probability to "no speech".
const DOUBTFUL_NO_SPEECH: f32 = 0.15;

/// If the stock phrase list matches, the reason; for tests and diagnostics.
pub fn hallucination_reason(text: &str) -> Option<&'static str> {
    let n = normalize(text);
    HALLUCINATIONS.iter().copied().find(|h| *h == n)
}

/// Decides whether a transcript may be used. `level_db` is the utterance's active speech
/// level (see `engine::speech_level_db`).
pub fn check(
    text: &str,
    no_speech_prob: f32,
    avg_logprob: f32,
    level_db: f32,
    no_speech_threshold: f32,
) -> Option<Gate> {
    let cleaned = clean(text);
    if normalize(&cleaned).is_empty() {
        return Some(Gate::Empty);
    }
    if compression_ratio(&cleaned) > MAX_COMPRESSION_RATIO {
        return Some(Gate::Repetition);
    }
    // NaN compares false everywhere; treat it as the worst case.
    let no_speech_prob = if no_speech_prob.is_nan() {
        1.0
    } else {
        no_speech_prob
    };
    let unsure = avg_logprob.is_nan() || avg_logprob < UNSURE_LOGPROB;
    if no_speech_prob > no_speech_threshold && unsure {
        return Some(Gate::NoSpeech);
    }
    if hallucination_reason(text).is_some()
        && (level_db < QUIET_DB || no_speech_prob > DOUBTFUL_NO_SPEECH || unsure)
    {
        return Some(Gate::Hallucination);
    }
    None
}

/// The transcript as shown and matched: annotations like "[BLANK_AUDIO]" or "(music)"
/// removed, a word or phrase repeated in a loop ("my bill my bill my bill") kept once,
/// whitespace collapsed.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut depth, mut starred) = (0usize, false);
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = depth.saturating_sub(1),
            '*' => starred = !starred,
            _ if depth == 0 && !starred => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    collapse_loops(&words).join(" ")
}

/// Longest word sequence looked for as a repeated unit.
const MAX_LOOP_WORDS: usize = 24;

/// Removes decoder loops: a 1- or 2-word sequence repeated three or more times in a row
/// ("bill, bill, bill"; twice is normal speech: "no no", "bye bye"), or a sequence of three
/// or more words repeated at all ("How much do I owe you? How much do I owe you?": greedy
/// decoding on a trimmed window re-reads the utterance). One copy is kept; a copy cut off
/// at the end ("... my browser keeps disconnecting, my browser keeps disconnecti") goes too.
fn collapse_loops<'a>(words: &[&'a str]) -> Vec<&'a str> {
    let keys: Vec<String> = words.iter().map(|w| normalize(w)).collect();
    let mut out: Vec<&'a str> = Vec::with_capacity(words.len());
    let mut i = 0;
    'outer: while i < words.len() {
        for n in 1..=MAX_LOOP_WORDS {
            let copies = if n <= 2 { 3 } else { 2 };
            if i + copies * n > words.len() {
                break;
            }
            let same = |a: usize, b: usize| (0..n).all(|k| keys[a + k] == keys[b + k]);
            if (1..copies).all(|c| same(i, i + c * n)) {
                // Keep one copy, skip every further repeat.
                out.extend_from_slice(&words[i..i + n]);
                let mut j = i + n;
                while j + n <= words.len() && same(i, j) {
                    j += n;
                }
                // A last copy cut short by the token budget: a prefix of the unit, or the
                // unit with its last word cut ("disconnecti").
                let rest = words.len() - j;
                if rest > 0 && rest <= n {
                    let whole = (0..rest - 1).all(|k| keys[j + k] == keys[i + k]);
                    let last = &keys[words.len() - 1];
                    if whole && keys[i + rest - 1].starts_with(last.as_str()) {
                        j = words.len();
                    }
                }
                i = j;
                continue 'outer;
            }
        }
        out.push(words[i]);
        i += 1;
    }
    drop_cut_repeat(&mut out);
    out
}

/// Drops a final copy of the words before it that the token budget cut short: "my
/// browser keeps disconnecting, my browser keeps disconnecti". At least three words, so
/// "no no" and "bye bye" stay.
fn drop_cut_repeat(words: &mut Vec<&str>) {
    let keys: Vec<String> = words.iter().map(|w| normalize(w)).collect();
    let len = keys.len();
    for j in 1..len {
        let rest = len - j;
        if rest < 3 {
            break;
        }
        for n in rest..=j.min(MAX_LOOP_WORDS) {
            let start = j - n;
            let whole = (0..rest - 1).all(|k| keys[start + k] == keys[j + k]);
            if whole && keys[start + rest - 1].starts_with(keys[len - 1].as_str()) {
                words.truncate(j);
                return;
            }
        }
    }
}

/// How much a transcript compresses (bytes / deflated bytes), the reference Whisper's
/// test for a decoder stuck in a loop: it re-decodes above 2.4. Loops are cut by `clean`
/// first; what still compresses this well is repetition with variations, not speech.
pub fn compression_ratio(text: &str) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    let packed = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), 6);
    text.len() as f32 / packed.len().max(1) as f32
}

/// Above this compression ratio a transcript is dropped (the reference's threshold).
pub const MAX_COMPRESSION_RATIO: f32 = 2.4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates() {
        let t = 0.6;
        assert_eq!(check("", 0.0, -0.1, -20.0, t), Some(Gate::Empty));
        assert_eq!(
            check(" [BLANK_AUDIO]", 0.0, -0.1, -20.0, t),
            Some(Gate::Empty)
        );
        assert_eq!(check("...", 0.0, -0.1, -20.0, t), Some(Gate::Empty));
        assert_eq!(check("My bill.", 0.9, -1.5, -20.0, t), Some(Gate::NoSpeech));
        // A confident transcript survives a high no-speech probability.
        assert_eq!(check("My bill.", 0.9, -0.3, -20.0, t), None);
        assert_eq!(
            check("Thank you.", 0.01, -0.2, -55.0, t),
            Some(Gate::Hallucination)
        );
        assert_eq!(
            check("Thank you.", 0.3, -0.2, -20.0, t),
            Some(Gate::Hallucination)
        );
        assert_eq!(
            check("you", 0.01, -1.2, -20.0, t),
            Some(Gate::Hallucination)
        );
        // A caller who clearly says "thank you" is heard.
        assert_eq!(check("Thank you.", 0.01, -0.2, -20.0, t), None);
        assert_eq!(
            check("Billing.", f32::NAN, f32::NAN, -20.0, t),
            Some(Gate::NoSpeech)
        );
        assert_eq!(
            hallucination_reason("Thanks for watching!"),
            Some("thanks for watching")
        );
        assert_eq!(hallucination_reason("My bill"), None);
    }

    #[test]
    fn compression() {
        let speech = "I think you took too much money from my card this month.";
        assert!(compression_ratio(speech) < MAX_COMPRESSION_RATIO);
        let looped = "billing, billing, billing, billing, billing, billing, billing, billing,";
        assert!(compression_ratio(looped) > MAX_COMPRESSION_RATIO);
        assert_eq!(compression_ratio(""), 0.0);
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean(" My bill."), "My bill.");
        assert_eq!(clean("[Music] Billing (laughs) please"), "Billing please");
        assert_eq!(clean("*sigh* operator"), "operator");
        assert_eq!(clean("my bill my bill my bill my bill"), "my bill");
        assert_eq!(clean("Bill, bill, bill, bill."), "Bill,");
        assert_eq!(clean("no no I said billing"), "no no I said billing");
        assert_eq!(clean("a b c d a b c d a b c d x"), "a b c d x");
        assert_eq!(clean("unbalanced ) ] ( text"), "unbalanced");
        // Sentences of three or more words are never said twice in a row by a caller at a
        // menu; the decoder re-reading a trimmed window does that.
        assert_eq!(
            clean("How much do I owe you? How much do I owe you?"),
            "How much do I owe you?"
        );
        assert_eq!(
            clean("There is a strange amount on my statement. There is a strange amount on my statement. There is a strange amount on my statement."),
            "There is a strange amount on my statement."
        );
        assert_eq!(
            clean("My browser keeps disconnecting, my browser keeps disconnecti"),
            "My browser keeps disconnecting,"
        );
        assert_eq!(
            clean("until when can I call until when"),
            "until when can I call until when"
        );
        assert_eq!(clean("bye bye"), "bye bye");
        assert_eq!(clean(""), "");
    }
}
