//! Flow files: admins write them by hand, so the compiler must turn any text into either a
//! flow or diagnostics, never a panic, and render those diagnostics.
#![no_main]

use ivrd::flow::{compile, PromptSource};
use ivrd::media::prompt::{Prompt, PromptError};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;

/// Every prompt exists and is 20 ms of silence: the fuzzer explores the compiler, not WAV
/// files.
struct Silence;

impl PromptSource for Silence {
    fn prompt(&mut self, name: &str) -> Result<Arc<Prompt>, PromptError> {
        Prompt::from_pcm_8k(name, vec![0; 160]).map(Arc::new)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(diagnostics) = compile(Path::new("flows/fuzz.yaml"), text, &mut Silence) {
        let _ = diagnostics.to_string();
    }
});
