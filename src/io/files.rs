//! Reading what the cores compile: the flow files of the flows directory and the prompt
//! catalogue over the sounds directory (WAV files, each loaded once and shared by every
//! flow and call that uses it).

use super::tts::Tts;
use crate::flow::{is_flow_file, FlowDir, PromptSource};
use crate::media::prompt::{Prompt, PromptError};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Reads every flow file of `dir`; a directory that cannot be listed is the error.
pub fn read_flow_dir(dir: &Path) -> Result<FlowDir, std::io::Error> {
    let files = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_flow_file(p))
        .map(|p| {
            let text = std::fs::read_to_string(&p);
            (p, text)
        })
        .collect();
    Ok(FlowDir {
        dir: dir.to_path_buf(),
        files,
    })
}

/// The prompt catalogue over a sounds directory, and text to speech for `say:` texts.
pub struct SoundLibrary {
    dir: PathBuf,
    cache: HashMap<String, Arc<Prompt>>,
    /// The engine for `say:` texts, or why there is none.
    tts: Result<Arc<Tts>, String>,
}

impl SoundLibrary {
    pub fn new(dir: &Path) -> Self {
        SoundLibrary {
            dir: dir.to_path_buf(),
            cache: HashMap::new(),
            tts: Err("no text-to-speech engine (tts: ~ in the config); use a sound file".into()),
        }
    }

    /// With an engine for `say:` texts (or why it cannot run, reported where one is used).
    pub fn with_tts(mut self, tts: Result<Arc<Tts>, String>) -> Self {
        self.tts = tts;
        self
    }

    /// `greeting` -> `DIR/greeting.wav`; `menus/main.wav` -> `DIR/menus/main.wav`.
    /// Names may not leave the sounds directory.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, PromptError> {
        let rel = Path::new(name);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(PromptError::Name {
                name: name.to_string(),
            });
        }
        let file = if name.ends_with(".wav") {
            rel.to_path_buf()
        } else {
            PathBuf::from(format!("{name}.wav"))
        };
        Ok(self.dir.join(file))
    }

    /// Prompts loaded so far.
    pub fn len(&self) -> usize {
        self.cache.len()
    }
}

impl PromptSource for SoundLibrary {
    fn say(&mut self, text: &str) -> Result<Arc<Prompt>, PromptError> {
        let speech = |reason: String| PromptError::Speech {
            text: text.to_string(),
            reason,
        };
        let tts = self.tts.as_ref().map_err(|e| speech(e.clone()))?;
        tts.render_blocking(text)
            .map(|(p, _)| p)
            .map_err(|e| speech(e.to_string()))
    }

    fn prompt(&mut self, name: &str) -> Result<Arc<Prompt>, PromptError> {
        if let Some(p) = self.cache.get(name) {
            return Ok(p.clone());
        }
        let path = self.path_of(name)?;
        let origin = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|error| PromptError::Open {
            origin: origin.clone(),
            error,
        })?;
        let prompt = Arc::new(Prompt::from_wav_bytes(name, &bytes, &origin)?);
        self.cache.insert(name.to_string(), prompt.clone());
        Ok(prompt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_prompt_names_its_file() {
        let mut lib = SoundLibrary::new(Path::new("/nonexistent/sounds"));
        let m = lib.prompt("x").unwrap_err().to_string();
        assert!(
            m.starts_with("/nonexistent/sounds/x.wav: cannot open: No such file"),
            "{m}"
        );
        let m = lib.prompt("../etc/passwd").unwrap_err().to_string();
        assert!(m.contains("may not contain '..'"), "{m}");
    }
}
