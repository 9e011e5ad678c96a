//! The text vocabulary, from the Hugging Face `tokenizer.json` shipped next to `model.bin`.
//!
//! ggml files list the ordinary BPE tokens as raw bytes, ids 0 up to `<|endoftext|>`
//! (exclusive); whisper.cpp numbers `<|endoftext|>` and every special token after it itself.
//! tokenizer.json spells tokens in GPT-2's byte-level alphabet, where every byte is shown as a
//! printable character (a space is `Ġ`, a newline `Ċ`), so each one is mapped back to bytes.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::ModelError;

pub(super) const END_OF_TEXT: &str = "<|endoftext|>";

#[derive(Deserialize)]
struct TokenizerJson {
    model: BpeModel,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(Deserialize)]
struct BpeModel {
    vocab: HashMap<String, u64>,
}

#[derive(Deserialize)]
struct AddedToken {
    id: u64,
    content: String,
}

/// The few `config.json` fields the importer cross-checks; CTranslate2 keeps decoding hints
/// there (suppressed ids, alignment heads) that whisper.cpp derives on its own.
#[derive(Deserialize)]
pub(super) struct ConfigJson {
    #[serde(default)]
    pub(super) lang_ids: Vec<u64>,
}

/// Ordinary tokens as raw bytes, index = token id; the length is the id of `<|endoftext|>`.
pub(super) fn load_vocab(path: &Path) -> Result<Vec<Vec<u8>>, ModelError> {
    let text = std::fs::read(path).map_err(|cause| ModelError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let json: TokenizerJson = serde_json::from_slice(&text).map_err(|cause| ModelError::Json {
        path: path.to_owned(),
        cause,
    })?;
    vocab_from(json, path)
}

pub(super) fn load_config(path: &Path) -> Result<ConfigJson, ModelError> {
    let text = std::fs::read(path).map_err(|cause| ModelError::Read {
        path: path.to_owned(),
        cause,
    })?;
    serde_json::from_slice(&text).map_err(|cause| ModelError::Json {
        path: path.to_owned(),
        cause,
    })
}

fn vocab_from(json: TokenizerJson, path: &Path) -> Result<Vec<Vec<u8>>, ModelError> {
    let bad = |what: String| ModelError::Tokenizer {
        path: path.to_owned(),
        what,
    };
    let eot = json
        .model
        .vocab
        .get(END_OF_TEXT)
        .copied()
        .or_else(|| {
            json.added_tokens
                .iter()
                .find(|t| t.content == END_OF_TEXT)
                .map(|t| t.id)
        })
        .ok_or_else(|| bad(format!("no `{END_OF_TEXT}` token")))?;
    // Every id below <|endoftext|> must be present once, so the ids index a dense table.
    // The vocabulary size bounds the table, not a number read from the file.
    let count = usize::try_from(eot)
        .ok()
        .filter(|&n| n <= json.model.vocab.len())
        .ok_or_else(|| {
            bad(format!(
                "`{END_OF_TEXT}` has id {eot} but model.vocab has only {} entries",
                json.model.vocab.len()
            ))
        })?;

    let decoder = ByteDecoder::new();
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; count];
    for (token, &id) in &json.model.vocab {
        let Some(slot) = usize::try_from(id).ok().and_then(|i| tokens.get_mut(i)) else {
            continue; // <|endoftext|> and specials after it: whisper.cpp adds its own
        };
        if slot.is_some() {
            return Err(bad(format!("token id {id} is used twice")));
        }
        let bytes = decoder.decode(token).ok_or_else(|| {
            bad(format!(
                "token {id} `{token}` is not in GPT-2 byte-level form"
            ))
        })?;
        *slot = Some(bytes);
    }
    tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| t.ok_or_else(|| bad(format!("no token with id {id}"))))
        .collect()
}

/// Inverse of GPT-2's `bytes_to_unicode`: printable Latin-1 bytes (`!`..`~`, `¡`..`¬`,
/// `®`..`ÿ`) stand for themselves; the other 68 bytes, in increasing order, are shown as
/// U+0100 onwards.
pub(super) struct ByteDecoder {
    /// Indexed by code point; every code point the alphabet uses is below 256 + 68.
    table: [Option<u8>; 256 + 68],
}

impl ByteDecoder {
    pub(super) fn new() -> Self {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        let mut table = [None; 256 + 68];
        let mut shifted = 256;
        for b in 0..=255u8 {
            if printable(b) {
                table[usize::from(b)] = Some(b);
            } else {
                table[shifted] = Some(b);
                shifted += 1;
            }
        }
        ByteDecoder { table }
    }

    /// `None` when a character is outside the byte-level alphabet.
    pub(super) fn decode(&self, token: &str) -> Option<Vec<u8>> {
        token
            .chars()
            .map(|c| self.table.get(c as usize).copied().flatten())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_map_back_to_bytes() {
        let d = ByteDecoder::new();
        assert_eq!(d.decode("Ġhello").as_deref(), Some(&b" hello"[..]));
        assert_eq!(d.decode("hello").as_deref(), Some(&b"hello"[..]));
        assert_eq!(d.decode("Ċ").as_deref(), Some(&b"\n"[..]));
        assert_eq!(d.decode("ĉ").as_deref(), Some(&b"\t"[..]));
        assert_eq!(d.decode("Ā").as_deref(), Some(&[0u8][..]));
        // "é" is the two UTF-8 bytes C3 A9, shown as "Ã©".
        assert_eq!(d.decode("Ã©").as_deref(), Some("é".as_bytes()));
        assert_eq!(d.decode("ĠâĢĻ").as_deref(), Some(" \u{2019}".as_bytes()));
        assert_eq!(d.decode("").as_deref(), Some(&b""[..]));
        assert_eq!(d.decode("Ń"), Some(vec![0xad])); // soft hyphen, the last shifted byte
        assert_eq!(d.decode("ń"), None); // U+0144 is past the alphabet
        assert_eq!(d.decode(" "), None); // a raw space is never used
    }

    #[test]
    fn every_byte_has_exactly_one_character() {
        let d = ByteDecoder::new();
        let mut seen = [0u32; 256];
        for b in d.table.iter().flatten() {
            seen[usize::from(*b)] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1));
    }

    fn json(vocab: &[(&str, u64)]) -> TokenizerJson {
        TokenizerJson {
            model: BpeModel {
                vocab: vocab.iter().map(|&(t, id)| (t.to_owned(), id)).collect(),
            },
            added_tokens: Vec::new(),
        }
    }

    #[test]
    fn vocab_stops_at_end_of_text_and_keeps_empty_tokens() {
        let v = vocab_from(
            json(&[
                ("!", 0),
                ("Ġhi", 1),
                ("", 2),
                (END_OF_TEXT, 3),
                ("<|x|>", 4),
            ]),
            Path::new("t.json"),
        )
        .expect("valid vocab");
        assert_eq!(v, vec![b"!".to_vec(), b" hi".to_vec(), Vec::new()]);
    }

    #[test]
    fn vocab_gaps_and_missing_eot_are_errors() {
        let p = Path::new("t.json");
        assert!(vocab_from(json(&[("!", 0), ("a", 2), (END_OF_TEXT, 2)]), p).is_err());
        assert!(vocab_from(json(&[("!", 0)]), p).is_err());
        assert!(vocab_from(json(&[("!", 0), (END_OF_TEXT, u64::MAX)]), p).is_err());
    }
}
