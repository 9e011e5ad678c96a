//! The daemon's context: what every call, the SIP endpoint, the HTTP side and the service
//! loop share (flows, outages, store, call registry, speech, SIP dialogs and addresses), and
//! admission: a call runs only while it holds a permit.

use super::media::ports::RtpPorts;
use super::outages::OutageBoard;
use super::queues::Queues;
use super::registry::CallRegistry;
use crate::asr::whisper::AsrPool;
use crate::config::{AnswerConfig, LimitsConfig, Overflow};
use crate::diag::Diagnostics;
use crate::flow::FlowSet;
use crate::store::Store;
use arc_swap::ArcSwap;
use rsipstack::dialog::dialog_layer::DialogLayer;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Reloads flows (and prompts) from disk: a summary, or every problem found.
pub type ReloadFn = Arc<dyn Fn() -> Result<String, Diagnostics> + Send + Sync>;

/// What the daemon's parts share; built once when the SIP endpoint starts.
pub struct Daemon {
    pub answer: AnswerConfig,
    pub limits: LimitsConfig,
    pub flows: Arc<ArcSwap<FlowSet>>,
    pub dialogs: Arc<DialogLayer>,
    pub rtp_ports: RtpPorts,
    /// Address written in our SDP (c= line).
    pub media_ip: IpAddr,
    /// Contact addresses per transport.
    pub contact_udp: Option<SocketAddr>,
    pub contact_tcp: Option<SocketAddr>,
    /// Cancelled to end the calls in progress (with BYE) at the end of a drain.
    pub shutdown: CancellationToken,
    pub outages: Arc<OutageBoard>,
    pub store: Arc<Store>,
    pub registry: Arc<CallRegistry>,
    /// Set on SIGTERM: new INVITEs get 503 while calls in progress finish.
    pub draining: AtomicBool,
    /// Watchdog probes answered by the dispatcher loop (proves it is not stuck).
    pub watchdog: mpsc::Sender<oneshot::Sender<()>>,
    /// The Whisper worker pool, when speech is configured.
    pub asr: Option<AsrPool>,
    /// `media.rtp_timeout_s` and `media.max_rtp_packets_per_s`.
    pub rtp_timeout_s: u64,
    pub max_rtp_pps: u32,
    /// Whether each call's 200 OK has been acknowledged, for a re-INVITE that comes first.
    pub acks: Acks,
    /// Queues and agents, when the config has queues.
    pub queues: Option<Queues>,
    /// Agents who log in by REGISTER, when the config has any.
    pub registrar: Option<super::registrar::Registrar>,
    /// Where REFERs carry the context (`transfer.context`).
    pub transfer_context: crate::sip::context::ContextMode,
    /// Our Server header (`sip.user_agent`) on the responses the own SIP layer builds.
    pub user_agent: String,
    /// Text to speech for texts filled in per call (`say:` with placeholders).
    pub tts: Option<Arc<super::tts::Tts>>,
    /// What ivrd remembers of callers (`callers:`).
    pub callers: crate::config::schedules::CallersConfig,
    /// This install's key for the tags that stand for numbers in logs.
    pub number_key: Vec<u8>,
    /// Calls per node over the last hour (the admin page's flow pictures).
    pub traffic: Arc<super::traffic::Traffic>,
    admission: Slots,
}

/// Each call's "ACK arrived" flag by dialog id. The call's SIP driver sets it; the endpoint
/// waits on it for a re-INVITE that arrives before the ACK it follows.
#[derive(Default)]
pub struct Acks(Mutex<HashMap<String, watch::Receiver<bool>>>);

impl Acks {
    /// Starts tracking a dialog; the driver sends `true` once the ACK is in.
    pub fn track(&self, dialog: String) -> watch::Sender<bool> {
        let (tx, rx) = watch::channel(false);
        self.lock().insert(dialog, rx);
        tx
    }

    pub fn forget(&self, dialog: &str) {
        self.lock().remove(dialog);
    }

    /// The flag of a dialog, if it is tracked.
    pub fn watch(&self, dialog: &str) -> Option<watch::Receiver<bool>> {
        self.lock().get(dialog).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<bool>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The call slots: `limits.max_calls` normal ones and `limits.max_overflow_calls` for calls
/// answered by a flow's overflow node.
struct Slots {
    normal: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    answer_overflow: bool,
}

/// A call's slot; the slot is free again when this is dropped.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    /// The call holds an overflow slot: it goes to its flow's overflow node.
    pub overflow: bool,
}

/// What [`Daemon::new`] takes besides the SIP endpoint's own state.
pub struct Services {
    pub flows: Arc<ArcSwap<FlowSet>>,
    pub outages: Arc<OutageBoard>,
    pub store: Arc<Store>,
    pub registry: Arc<CallRegistry>,
    pub asr: Option<AsrPool>,
    pub queues: Option<Queues>,
    pub registrar: Option<super::registrar::Registrar>,
    pub tts: Option<Arc<super::tts::Tts>>,
    pub number_key: Vec<u8>,
    pub traffic: Arc<super::traffic::Traffic>,
}

/// The SIP endpoint's part of the context.
pub struct SipContext {
    pub dialogs: Arc<DialogLayer>,
    pub contact_udp: Option<SocketAddr>,
    pub contact_tcp: Option<SocketAddr>,
    pub watchdog: mpsc::Sender<oneshot::Sender<()>>,
}

impl Daemon {
    pub fn new(
        cfg: &crate::config::Config,
        services: Services,
        sip: SipContext,
        shutdown: CancellationToken,
    ) -> Daemon {
        let limits = cfg.limits.clone();
        Daemon {
            answer: cfg.answer.clone(),
            admission: Slots {
                // A limit past what a semaphore counts is no limit at all.
                normal: Arc::new(Semaphore::new(limits.max_calls.min(Semaphore::MAX_PERMITS))),
                overflow: Arc::new(Semaphore::new(
                    limits.max_overflow_calls.min(Semaphore::MAX_PERMITS),
                )),
                answer_overflow: limits.overflow == Overflow::Answer,
            },
            limits,
            flows: services.flows,
            outages: services.outages,
            store: services.store,
            registry: services.registry,
            asr: services.asr,
            queues: services.queues,
            registrar: services.registrar,
            tts: services.tts,
            callers: cfg.callers.clone(),
            number_key: services.number_key,
            traffic: services.traffic,
            transfer_context: cfg.transfer.context,
            user_agent: cfg.sip.user_agent.clone(),
            dialogs: sip.dialogs,
            contact_udp: sip.contact_udp,
            contact_tcp: sip.contact_tcp,
            watchdog: sip.watchdog,
            rtp_ports: RtpPorts::new(
                cfg.media.rtp_ip,
                cfg.media.rtp_ports,
                rtp_idle_budget(
                    cfg.limits.max_calls + cfg.limits.max_overflow_calls,
                    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft),
                ),
            ),
            media_ip: cfg.media.public_ip.unwrap_or(cfg.media.rtp_ip),
            shutdown,
            draining: AtomicBool::new(false),
            rtp_timeout_s: cfg.media.rtp_timeout_s,
            max_rtp_pps: cfg.media.max_rtp_packets_per_s,
            acks: Acks::default(),
        }
    }

    /// Whether this node should be sent new calls, for a load balancer's OPTIONS probes
    /// (Kamailio's dispatcher): `None` when healthy, else why not.
    pub fn unavailable(&self) -> Option<&'static str> {
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            return Some("draining");
        }
        if self.admission.normal.available_permits() == 0 {
            return Some("at capacity");
        }
        None
    }

    /// A slot for a new call: a normal one while any is free, else an overflow one when
    /// the flow has an overflow node and `limits.overflow` answers; `None` means refuse.
    pub fn admit(&self, has_overflow_node: bool) -> Option<Admission> {
        let slots = &self.admission;
        if let Ok(permit) = slots.normal.clone().try_acquire_owned() {
            return Some(Admission {
                _permit: permit,
                overflow: false,
            });
        }
        if !(slots.answer_overflow && has_overflow_node) {
            return None;
        }
        let permit = slots.overflow.clone().try_acquire_owned().ok()?;
        Some(Admission {
            _permit: permit,
            overflow: true,
        })
    }
}

/// Descriptors the daemon needs besides its calls' sockets (SIP, HTTP, TCP connections,
/// files, the database, Whisper's threads), with room to spare.
pub const FILES_BESIDE_CALLS: u64 = 256;

/// How many finished calls' RTP sockets may be kept for reuse: no more than the calls
/// themselves hold at most, and only within the open-files limit left beside them.
fn rtp_idle_budget(calls: usize, open_files: u64) -> usize {
    let spare = open_files.saturating_sub(calls as u64 + FILES_BESIDE_CALLS);
    calls.min(usize::try_from(spare).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::rtp_idle_budget;

    #[test]
    fn kept_rtp_sockets_stay_within_the_calls_and_the_open_files_limit() {
        assert_eq!(rtp_idle_budget(600, 65_536), 600, "as many as the calls");
        assert_eq!(rtp_idle_budget(600, 1_024), 168, "1024 - 600 - 256");
        assert_eq!(
            rtp_idle_budget(900, 1_024),
            0,
            "none when the calls take it all"
        );
        assert_eq!(rtp_idle_budget(600, u64::MAX), 600);
    }
}
