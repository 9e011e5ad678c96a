//! Text to speech: flow texts (`say:`), texts filled in per call (`Welcome back, {caller.name}.`)
//! and outage messages. One engine behind [`Engine`] (espeak-ng now; a better one is one
//! more implementation), and a cache in two layers: memory (a call's cached text plays
//! at once) and disk under the state directory, keyed by engine, voice and text, so a
//! restart or reload renders nothing it has rendered before.
//!
//! The text goes to espeak-ng as one argument after `--` (never through a shell, never read
//! as an option), length-limited, control characters removed.

use crate::config::TtsConfig;
use crate::media::prompt::Prompt;
use crate::outage::MAX_MESSAGE_CHARS;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Rendering a message longer than this is a stuck engine.
const RENDER_TIMEOUT: Duration = Duration::from_secs(20);

/// Texts kept in memory; beyond this the memory layer starts over (the disk keeps all).
const MEMORY_ENTRIES: usize = 2000;

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

/// A speech engine: text in, a WAV file's bytes out. Blocking.
pub trait Engine: Send + Sync {
    /// Names the engine and its voice settings: part of the cache key, so a new voice
    /// renders anew.
    fn id(&self) -> String;
    fn speak(&self, text: &str) -> Result<Vec<u8>, TtsError>;
}

/// espeak-ng, as a program.
pub struct Espeak {
    program: String,
    voice: String,
    speed: u32,
}

impl Espeak {
    /// Checks the program runs now, so a missing one is a start-up error, not a call-time one.
    pub fn new(cfg: &TtsConfig) -> Result<Espeak, TtsError> {
        let missing = |reason: String| TtsError::Missing {
            program: cfg.program.clone(),
            reason,
        };
        let out = Command::new(&cfg.program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| missing(e.to_string()))?;
        if !out.status.success() {
            return Err(missing(format!("--version exited with {}", out.status)));
        }
        Ok(Espeak {
            program: cfg.program.clone(),
            voice: cfg.voice.clone(),
            speed: cfg.speed,
        })
    }
}

impl Engine for Espeak {
    fn id(&self) -> String {
        format!("espeak-ng voice={} speed={}", self.voice, self.speed)
    }

    fn speak(&self, text: &str) -> Result<Vec<u8>, TtsError> {
        let child = Command::new(&self.program)
            .args([
                "-v",
                &self.voice,
                "-s",
                &self.speed.to_string(),
                "--stdout",
                "--",
                text,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TtsError::Failed(e.to_string()))?;
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(RENDER_TIMEOUT) {
            Ok(out) => out.map_err(|e| TtsError::Failed(e.to_string()))?,
            Err(_) => {
                // A stuck engine: end it (its reader thread then finishes too).
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                return Err(TtsError::Failed("timed out".into()));
            }
        };
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(TtsError::Failed(format!("{}: {}", out.status, err.trim())));
        }
        Ok(fix_streamed_wav_sizes(out.stdout))
    }
}

/// The engine with its caches.
pub struct Tts {
    engine: Box<dyn Engine>,
    /// Rendered WAVs on disk (None: memory only).
    disk: Option<PathBuf>,
    memory: Mutex<HashMap<String, Arc<Prompt>>>,
}

/// Where a render came from (for the render-time metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Memory,
    Disk,
    Engine,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Engine => "engine",
        }
    }
}

impl Tts {
    /// The configured engine, caching on disk under `disk` (created when missing).
    pub fn open(cfg: &TtsConfig, disk: Option<&Path>) -> Result<Tts, TtsError> {
        Ok(Tts::with_engine(Box::new(Espeak::new(cfg)?), disk))
    }

    pub fn with_engine(engine: Box<dyn Engine>, disk: Option<&Path>) -> Tts {
        let disk = disk.and_then(|d| match std::fs::create_dir_all(d) {
            Ok(()) => Some(d.to_path_buf()),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "text-to-speech cache off: cannot create its directory");
                None
            }
        });
        Tts {
            engine,
            disk,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the engine runs now (async form for the daemon's start), memory cache only.
    pub async fn start(program: &str, voice: &str, speed: u32) -> Result<Tts, TtsError> {
        let cfg = TtsConfig {
            program: program.to_string(),
            voice: voice.to_string(),
            speed,
        };
        tokio::task::spawn_blocking(move || Tts::open(&cfg, None))
            .await
            .map_err(|e| TtsError::Failed(e.to_string()))?
    }

    /// A text's audio if it is in memory now (never blocks).
    pub fn cached(&self, text: &str) -> Option<Arc<Prompt>> {
        let clean = clean(text).ok()?;
        self.lock().get(&clean).cloned()
    }

    /// A text's audio: from memory, disk, or the engine (blocking: call it off the async
    /// threads). The prompt is named by its text.
    pub fn render_blocking(&self, text: &str) -> Result<(Arc<Prompt>, Source), TtsError> {
        let clean = clean(text)?;
        if let Some(p) = self.lock().get(&clean) {
            return Ok((p.clone(), Source::Memory));
        }
        let file = self.disk.as_ref().map(|d| d.join(self.file_name(&clean)));
        let from_disk = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|wav| Prompt::from_wav_bytes(&clean, &wav, "tts cache").ok());
        let (prompt, source) = match from_disk {
            Some(p) => (p, Source::Disk),
            None => {
                let wav = self.engine.speak(&clean)?;
                let prompt = Prompt::from_wav_bytes(&clean, &wav, "espeak-ng output")
                    .map_err(|e| TtsError::Failed(e.to_string()))?;
                if let Some(f) = &file {
                    // Written whole, then renamed: a crash never leaves half a WAV.
                    let tmp = f.with_extension("tmp");
                    if std::fs::write(&tmp, &wav)
                        .and_then(|_| std::fs::rename(&tmp, f))
                        .is_err()
                    {
                        let _ = std::fs::remove_file(&tmp);
                    }
                }
                (prompt, Source::Engine)
            }
        };
        let prompt = Arc::new(prompt);
        let mut memory = self.lock();
        if memory.len() >= MEMORY_ENTRIES {
            memory.clear();
        }
        memory.insert(clean, prompt.clone());
        Ok((prompt, source))
    }

    /// `render_blocking` on a blocking thread.
    pub async fn render(self: &Arc<Self>, text: &str) -> Result<Arc<Prompt>, TtsError> {
        if let Some(p) = self.cached(text) {
            return Ok(p);
        }
        let (me, text) = (self.clone(), text.to_string());
        tokio::task::spawn_blocking(move || me.render_blocking(&text).map(|(p, _)| p))
            .await
            .map_err(|e| TtsError::Failed(e.to_string()))?
    }

    fn file_name(&self, text: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.engine.id().as_bytes());
        h.update(b"\n");
        h.update(text.as_bytes());
        let hex: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{hex}.wav")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Prompt>>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Control characters out, trimmed, length-checked.
fn clean(text: &str) -> Result<String, TtsError> {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.is_empty() || clean.chars().count() > MAX_MESSAGE_CHARS {
        return Err(TtsError::BadText);
    }
    Ok(clean.to_string())
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
        let tts = Arc::new(tts);
        let p = tts.render("The billing system is down.").await.unwrap();
        assert!(
            p.duration() > Duration::from_millis(800),
            "{:?}",
            p.duration()
        );
        assert_eq!(p.name, "The billing system is down.");
        // Cached: the same Arc comes back.
        let q = tts.render("The billing system is down.").await.unwrap();
        assert!(Arc::ptr_eq(&p, &q));
        assert!(matches!(tts.render("  ").await, Err(TtsError::BadText)));
        // Text that looks like an option is spoken, not obeyed.
        assert!(tts.render("--help").await.is_ok());
    }

    #[test]
    fn the_disk_cache_outlives_the_process() {
        let dir = std::env::temp_dir().join(format!("ivrd-tts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = TtsConfig::default();
        let first = Tts::open(&cfg, Some(&dir)).expect("espeak-ng (scripts/setup.sh)");
        let (a, source) = first.render_blocking("Welcome back, Ann.").unwrap();
        assert_eq!(source, Source::Engine);
        let (_, source) = first.render_blocking("Welcome back, Ann.").unwrap();
        assert_eq!(source, Source::Memory);
        // A new instance (a restart) finds it on disk, the same audio.
        let second = Tts::open(&cfg, Some(&dir)).unwrap();
        assert!(second.cached("Welcome back, Ann.").is_none());
        let (b, source) = second.render_blocking("Welcome back, Ann.").unwrap();
        assert_eq!(source, Source::Disk);
        assert_eq!(a.pcm, b.pcm);
        // Another voice is another entry.
        let other = Tts::open(
            &TtsConfig {
                voice: "en-gb".into(),
                ..cfg
            },
            Some(&dir),
        )
        .unwrap();
        assert_eq!(
            other.render_blocking("Welcome back, Ann.").unwrap().1,
            Source::Engine
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_engine_is_a_clear_error() {
        let cfg = TtsConfig {
            program: "/nonexistent/espeak".into(),
            ..TtsConfig::default()
        };
        let e = Tts::open(&cfg, None).err().unwrap();
        assert!(e.to_string().contains("apt install espeak-ng"), "{e}");
    }
}
