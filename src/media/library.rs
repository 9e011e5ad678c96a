//! The prompt library: WAV files under the sounds directory, loaded once, converted to
//! 8 kHz G.711 and shared by every flow and call that uses them.

use crate::flow::PromptSource;
use crate::media::prompt::Prompt;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub struct SoundLibrary {
    dir: PathBuf,
    cache: HashMap<String, Arc<Prompt>>,
}

impl SoundLibrary {
    pub fn new(dir: &Path) -> Self {
        SoundLibrary {
            dir: dir.to_path_buf(),
            cache: HashMap::new(),
        }
    }

    /// `greeting` -> `DIR/greeting.wav`; `menus/main.wav` -> `DIR/menus/main.wav`.
    /// Names may not leave the sounds directory.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, String> {
        let rel = Path::new(name);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(
                "prompt names are relative to the sounds directory and may not contain '..'".into(),
            );
        }
        let file = if name.ends_with(".wav") {
            rel.to_path_buf()
        } else {
            PathBuf::from(format!("{name}.wav"))
        };
        Ok(self.dir.join(file))
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

impl PromptSource for SoundLibrary {
    fn prompt(&mut self, name: &str) -> Result<Arc<Prompt>, String> {
        if let Some(p) = self.cache.get(name) {
            return Ok(p.clone());
        }
        let path = self.path_of(name)?;
        let prompt = Arc::new(Prompt::from_wav_file(name, &path).map_err(|e| e.to_string())?);
        self.cache.insert(name.to_string(), prompt.clone());
        Ok(prompt)
    }
}
