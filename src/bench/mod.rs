//! `ivrd bench ...`: measurements an admin runs against their own flows and models. Tools
//! built from the cores and `io`'s loaders, not part of the daemon.

pub mod asr;
pub mod tts;
