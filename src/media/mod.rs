//! Media: G.711, RTP packets, RFC 4733 DTMF, prompt loading and playout. Pure code.

pub mod correlate;
pub mod dtmf;
pub mod g711;
pub mod playout;
pub mod prompt;
pub mod relay;
pub mod reuse;
pub mod rtp;
pub mod session;
