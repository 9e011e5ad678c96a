//! The only tokio code: sockets, timers, one task per call, the HTTP server, signals.
//! Everything it decides is delegated to the pure cores (`call`, `flow`, `media`, `sip`,
//! `outage`); each room here has one concern:
//! - `start`: start-up and the loading shared with `ivrd check` and reload.
//! - `daemon`: the context every part shares, and admission (a permit per call).
//! - `files`: reading flow files and the sounds directory for the cores to compile.
//! - `sip`: the SIP endpoint, its guards and the per-call SIP driver.
//! - `media`: RTP sockets and the bridge between them and a call.
//! - `call`: the host around a pure call that every driver (SIP, WebRTC) shares.
//! - `http`: the admin API, Alertmanager, metrics and the WebRTC test phone.
//! - `outages`: the outage board (durable, rendered to audio) and its watchers.
//! - `registry`: the calls in progress (`/api/calls`, drain).
//! - `service`: signals, drain, systemd.
//! - `tts`: text to speech with its memory and disk caches.

mod call;
mod clock;
mod daemon;
mod files;
mod http;
mod media;
mod outages;
pub mod probe;
mod queues;
mod registrar;
mod registry;
mod service;
mod sip;
mod start;
pub mod tools;
mod traffic;
pub mod tts;

pub use daemon::FILES_BESIDE_CALLS;
pub use start::{check, load_config, load_embedder, load_flows, run, RunError};
