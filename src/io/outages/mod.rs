//! Outages in the daemon: the board (the one place they change: validated, rendered to
//! audio, stored, published to calls), its text-to-speech renderer, and the watchers that
//! keep it in step with the clock and the outages file.

mod board;
pub use super::tts;
mod watch;

pub use board::{BoardError, OutageBoard};
pub use watch::{spawn_watchers, sync_file};
