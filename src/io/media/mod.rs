//! RTP I/O: the per-call UDP sockets from the configured port range, and the bridge that
//! hands a call's packets to and from the pure media session.

pub mod ports;
pub mod relay;
pub mod rtp;
