//! SIP on the wire: the rsipstack endpoint and its guards (every UDP datagram and TCP
//! message is inspected before the stack parses it), the loop that routes new transactions,
//! and the per-call SIP driver that carries out what the call and its dialog decide.

pub mod agent;
pub mod call;
pub mod callback;
pub mod endpoint;
pub mod own;
pub mod registrar;
pub mod reply;
pub mod signalling;
mod tcp_guard;
mod udp_guard;
