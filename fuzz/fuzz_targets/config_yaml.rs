//! The config file: any text becomes a config or diagnostics (rendered), never a panic.
#![no_main]

use ivrd::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(diagnostics) = Config::parse(Path::new("/etc/ivrd/ivrd.yaml"), text) {
        let _ = diagnostics.to_string();
    }
});
