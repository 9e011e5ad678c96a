//! What every call driver (SIP, WebRTC) shares: the host around the pure call and the
//! timers of a call's loop.

pub mod alarm;
pub mod host;
