//! Text to speech with espeak-ng, for outage messages. The text goes to espeak-ng as one
//! argument after `--` (never through a shell, never read as an option), length-limited,
//! control characters removed; the audio is cached by text so each message renders once.

use crate::media::prompt::Prompt;
use crate::outage::MAX_MESSAGE_CHARS;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rendering a message longer than this is a stuck engine.
const RENDER_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("text to speech is disabled (tts: ~ in the config); use a prompt file instead")]
    Disabled,
    #[error(
        "'{program}' cannot run: {reason}. Install it (apt install espeak-ng) or set `tts: ~`"
    )]
    Missing { program: String, reason: String },
    #[error("espeak-ng failed: {0}")]
    Failed(String),
    #[error("text is empty or longer than {MAX_MESSAGE_CHARS} characters")]
    BadText,
}

pub struct Tts {
    program: String,
    voice: String,
    speed: u32,
    cache: Mutex<HashMap<String, Arc<Prompt>>>,
}

impl Tts {
    /// Checks the engine runs now, so a missing one is a start-up error, not a call-time one.
    pub async fn start(program: &str, voice: &str, speed: u32) -> Result<Tts, TtsError> {
        let missing = |reason: String| TtsError::Missing {
            program: program.to_string(),
            reason,
        };
        let out = tokio::process::Command::new(program)
            .arg("--version")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| missing(e.to_string()))?;
        if !out.status.success() {
            return Err(missing(format!("--version exited with {}", out.status)));
        }
        Ok(Tts {
            program: program.to_string(),
            voice: voice.to_string(),
            speed,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub async fn render(&self, text: &str) -> Result<Arc<Prompt>, TtsError> {
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let clean = clean.trim();
        if clean.is_empty() || clean.chars().count() > MAX_MESSAGE_CHARS {
            return Err(TtsError::BadText);
        }
        if let Some(p) = self.lock().get(clean) {
            return Ok(p.clone());
        }
        let child = tokio::process::Command::new(&self.program)
            .args([
                "-v",
                &self.voice,
                "-s",
                &self.speed.to_string(),
                "--stdout",
                "--",
                clean,
            ])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(RENDER_TIMEOUT, child)
            .await
            .map_err(|_| TtsError::Failed("timed out".into()))?
            .map_err(|e| TtsError::Failed(e.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(TtsError::Failed(format!("{}: {}", out.status, err.trim())));
        }
        let wav = fix_streamed_wav_sizes(out.stdout);
        let prompt = Prompt::from_wav_reader("tts", std::io::Cursor::new(wav), "espeak-ng output")
            .map_err(|e| TtsError::Failed(e.to_string()))?;
        let prompt = Arc::new(prompt);
        self.lock().insert(clean.to_string(), prompt.clone());
        Ok(prompt)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Prompt>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// espeak-ng writing to a pipe cannot seek back, so its RIFF and data sizes are
/// placeholders (0x7ffff000). Set them to what actually arrived.
fn fix_streamed_wav_sizes(mut wav: Vec<u8>) -> Vec<u8> {
    if wav.len() < 12 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return wav;
    }
    let riff = (wav.len() - 8) as u32;
    wav[4..8].copy_from_slice(&riff.to_le_bytes());
    let mut pos = 12;
    while pos + 8 <= wav.len() {
        let size =
            u32::from_le_bytes([wav[pos + 4], wav[pos + 5], wav[pos + 6], wav[pos + 7]]) as usize;
        if &wav[pos..pos + 4] == b"data" {
            let actual = (wav.len() - pos - 8) as u32;
            wav[pos + 4..pos + 8].copy_from_slice(&actual.to_le_bytes());
            break;
        }
        pos += 8 + size + (size & 1);
    }
    wav
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_text_with_espeak_when_installed() {
        let Ok(tts) = Tts::start("espeak-ng", "en-us", 150).await else {
            panic!("espeak-ng is required (scripts/setup.sh installs it)");
        };
        let p = tts.render("The billing system is down.").await.unwrap();
        assert!(
            p.duration() > Duration::from_millis(800),
            "{:?}",
            p.duration()
        );
        // Cached: the same Arc comes back.
        let q = tts.render("The billing system is down.").await.unwrap();
        assert!(Arc::ptr_eq(&p, &q));
        assert!(matches!(tts.render("  ").await, Err(TtsError::BadText)));
        // Text that looks like an option is spoken, not obeyed.
        assert!(tts.render("--help").await.is_ok());
    }

    #[tokio::test]
    async fn missing_engine_is_a_clear_error() {
        let e = Tts::start("/nonexistent/espeak", "en-us", 150)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("apt install espeak-ng"), "{e}");
    }
}
