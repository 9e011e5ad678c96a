//! ivrd: a phone-line IVR and call-routing daemon.
//!
//! Folders follow concerns. Everything except `io` is pure: state machines that take
//! inputs and the current time and return outputs, with no sockets, clocks or tasks.
//! `io` is the only place that touches tokio, sockets and real time.
//!
//! The `daemon` feature (on by default) brings `io`, the stores, the tools and the speech
//! engines; without it the crate is the pure cores alone (the fuzz targets build it so).

pub mod asr;
#[cfg(feature = "daemon")]
pub mod bench;
pub mod call;
#[cfg(feature = "daemon")]
pub mod cli;
pub mod config;
pub mod diag;
pub mod flow;
pub mod flowtest;
#[cfg(feature = "daemon")]
pub mod io;
pub mod media;
pub mod metrics;
pub mod outage;
pub mod probe;
pub mod queue;
pub mod schedule;
pub mod sip;
#[cfg(feature = "daemon")]
pub mod store;
pub mod template;
