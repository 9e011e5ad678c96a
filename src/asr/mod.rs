//! Speech: Whisper model import (CTranslate2 -> ggml), endpointing (VAD), matching
//! transcripts to intents, and the Whisper worker pool on dedicated threads.

pub mod audio;
pub mod embed;
pub mod matcher;
pub mod model;
pub mod upset;
pub mod vad;
#[cfg(feature = "daemon")]
pub mod whisper;
