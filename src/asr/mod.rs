//! Speech: Whisper model import (CTranslate2 -> ggml), endpointing, the whisper worker pool.

pub mod model;
