//! ivrd: a phone-line IVR and call-routing daemon.
//!
//! Folders follow concerns. Everything except `io` is pure: state machines that take
//! inputs and the current time and return outputs, with no sockets, clocks or tasks.
//! `io` is the only place that touches tokio, sockets and real time.

pub mod asr;
pub mod bench;
pub mod call;
pub mod cli;
pub mod config;
pub mod diag;
pub mod flow;
pub mod flowtest;
pub mod io;
pub mod media;
pub mod metrics;
pub mod outage;
pub mod probe;
pub mod queue;
pub mod schedule;
pub mod sip;
pub mod store;
pub mod template;
