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
}

impl Gate {
    /// Label for `ivrd_asr_results_total{result}` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Empty => "empty",
            Gate::NoSpeech => "no_speech",
            Gate::Hallucination => "hallucination",
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
    if normalize(&clean(text)).is_empty() {
        return Some(Gate::Empty);
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

/// Removes immediate repeats of any 1..=4-word sequence repeated three or more times.
/// Twice is normal speech ("no no", "bye bye"); three times in a row is a decoder loop.
fn collapse_loops<'a>(words: &[&'a str]) -> Vec<&'a str> {
    let key = |w: &str| normalize(w);
    let mut out: Vec<&'a str> = Vec::with_capacity(words.len());
    let mut i = 0;
    'outer: while i < words.len() {
        for n in 1..=4 {
            if i + 3 * n > words.len() {
                break;
            }
            let same = |a: usize, b: usize| (0..n).all(|k| key(words[a + k]) == key(words[b + k]));
            if same(i, i + n) && same(i, i + 2 * n) {
                // Keep one copy, skip every further repeat.
                out.extend_from_slice(&words[i..i + n]);
                let mut j = i + n;
                while j + n <= words.len() && same(i, j) {
                    j += n;
                }
                i = j;
                continue 'outer;
            }
        }
        out.push(words[i]);
        i += 1;
    }
    out
}

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
    fn cleaning() {
        assert_eq!(clean(" My bill."), "My bill.");
        assert_eq!(clean("[Music] Billing (laughs) please"), "Billing please");
        assert_eq!(clean("*sigh* operator"), "operator");
        assert_eq!(clean("my bill my bill my bill my bill"), "my bill");
        assert_eq!(clean("Bill, bill, bill, bill."), "Bill,");
        assert_eq!(clean("no no I said billing"), "no no I said billing");
        assert_eq!(clean("a b c d a b c d a b c d x"), "a b c d x");
        assert_eq!(clean("unbalanced ) ] ( text"), "unbalanced");
        assert_eq!(clean(""), "");
    }
}
