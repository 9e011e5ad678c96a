//! The daemon's configuration file (YAML). Every field has a default, unknown fields are
//! rejected, and validation reports every problem at once with the file and line.
//!
//! Longer than most files (~750 lines) on purpose: the whole schema is here, one documented
//! struct per section with its defaults, so an admin's question "what does this setting
//! do" has one place to look. The tests are in `config/tests.rs`.

use crate::diag::source_map::SourceMap;
use crate::diag::{yaml_diagnostic, yaml_diagnostic_from, Diagnostic, Diagnostics};
use indexmap::IndexMap;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Where `ivrd run` and `ivrd check` look for a config when none is given.
pub const DEFAULT_CONFIG_PATHS: &[&str] = &["ivrd.yaml", "/etc/ivrd/ivrd.yaml"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SIP listeners.
    pub sip: SipConfig,
    /// RTP media.
    pub media: MediaConfig,
    /// How fast calls are answered.
    pub answer: AnswerConfig,
    /// Capacity and what happens beyond it.
    pub limits: LimitsConfig,
    /// Call flows.
    pub flows: FlowsConfig,
    /// Directory of prompt WAV files (`NAME.wav`), relative to the config file.
    pub sounds: Option<PathBuf>,
    /// Prometheus exporter.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Durable state (outages, callbacks, audit log): an SQLite file in this directory.
    pub state_dir: PathBuf,
    /// Admin HTTP API (outages, calls, reload, health).
    pub admin: AdminConfig,
    /// Outages.
    pub outages: OutagesConfig,
    /// Text to speech for outage messages; `~` disables it (then outages need prompt files).
    pub tts: Option<TtsConfig>,
    /// Prometheus Alertmanager webhook -> outages.
    pub alertmanager: AlertmanagerConfig,
    /// Speech recognition (Whisper); `~` or absent: menus take keys only.
    pub asr: Option<AsrSettings>,
    /// The browser test phone: calls from a page of the admin server over WebRTC.
    pub webrtc: WebrtcConfig,
    /// Who may send SIP, and how fast.
    pub security: SecurityConfig,
    /// How transfers (REFER) carry the call's context.
    pub transfer: TransferConfig,
    /// The people calls are bridged to (flow node `queue`).
    pub agents: Vec<queues::AgentDef>,
    /// Queues callers wait in for agents, by name.
    pub queues: IndexMap<String, queues::QueueDef>,
    /// Calling back callers whose place in a queue is kept.
    pub callbacks: queues::CallbacksConfig,
    /// Opening hours and holidays by name, for flow `branch` conditions.
    pub schedules: IndexMap<String, schedules::ScheduleDef>,
    /// What ivrd remembers of returning callers.
    pub callers: schedules::CallersConfig,
    /// Where durable state lives: SQLite under `state_dir` (default), or PostgreSQL shared
    /// by several nodes.
    pub store: StoreConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://user:password@host/db`: state shared by every node that names it.
    pub postgres: Option<String>,
    /// A file holding that URL instead (keeps the password out of the config).
    pub postgres_file: Option<PathBuf>,
    /// This node's name in shared state (who is calling a caller back); default: the host
    /// name and the SIP port.
    pub node: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// `headers` (plain headers on the REFER; the default, understood by every peer
    /// tried), `uri` (inside Refer-To, so a transferee that honours URI headers carries it
    /// to the target) or `both`.
    pub context: crate::sip::context::ContextMode,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebrtcConfig {
    /// Serve the test phone (`/phone` on the admin server) and take calls from it.
    pub enabled: bool,
    /// Address each browser call's ICE socket (UDP) binds to; the browser must reach it.
    /// A concrete address: the wildcard would bind every interface except loopback.
    pub ice_ip: IpAddr,
    /// UDP ports for those sockets: "MIN-MAX", or "0" for ephemeral ports.
    pub ports: PortRange,
    /// Addresses announced instead of `ice_ip` when ivrd sits behind a 1:1 NAT.
    pub nat_1to1_ips: Vec<IpAddr>,
    /// The browser's media must be connected this long after the answer, or the call ends.
    pub connect_timeout_ms: u64,
    /// No audio from the browser for this long (tab closed, network gone): the call ends.
    /// Browsers send audio all the time, silence included, so a gap means the page is gone.
    pub disconnect_timeout_ms: u64,
    /// What a flow's transfer does on a browser call, which has no SIP peer to REFER.
    pub transfers: WebrtcTransfers,
}

/// How a transfer on a browser call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebrtcTransfers {
    /// Show the target and context on the page; the call ends as transferred.
    #[default]
    End,
    /// Show them, then go on as if the target refused: the flow's `on_fail` path plays.
    Fail,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig {
            enabled: true,
            ice_ip: Ipv4Addr::LOCALHOST.into(),
            ports: PortRange::Ephemeral,
            nat_1to1_ips: Vec::new(),
            connect_timeout_ms: 10_000,
            disconnect_timeout_ms: 3_000,
            transfers: WebrtcTransfers::End,
        }
    }
}

impl WebrtcConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn disconnect_timeout(&self) -> Duration {
        Duration::from_millis(self.disconnect_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsrSettings {
    /// ggml Whisper model file (scripts/fetch-model.sh builds it), relative to the config file.
    pub model: PathBuf,
    /// Utterances transcribed at once (each worker holds its own Whisper state).
    pub workers: usize,
    /// ggml threads per worker; workers x threads must not exceed the free cores.
    pub threads_per_worker: usize,
    /// Utterances that may wait; beyond that callers are asked to use keys.
    pub queue: usize,
    /// Sentence-embedding model directory (scripts/fetch-embedder.sh), relative to the
    /// config file: callers are routed by meaning as well as by the phrases' words.
    /// `~` turns it off (words only).
    pub embedder: Option<PathBuf>,
}

impl Default for AsrSettings {
    fn default() -> Self {
        AsrSettings {
            model: PathBuf::from("models/ggml-tiny.en-q8_0.bin"),
            workers: 1,
            threads_per_worker: 1,
            queue: 4,
            embedder: Some(PathBuf::from("models/all-minilm-l6-v2")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sip: SipConfig::default(),
            media: MediaConfig::default(),
            answer: AnswerConfig::default(),
            limits: LimitsConfig::default(),
            flows: FlowsConfig::default(),
            sounds: None,
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            state_dir: PathBuf::from("/var/lib/ivrd"),
            admin: AdminConfig::default(),
            outages: OutagesConfig::default(),
            tts: Some(TtsConfig::default()),
            alertmanager: AlertmanagerConfig::default(),
            asr: None,
            security: SecurityConfig::default(),
            webrtc: WebrtcConfig::default(),
            transfer: TransferConfig::default(),
            agents: Vec::new(),
            queues: IndexMap::new(),
            callbacks: queues::CallbacksConfig::default(),
            schedules: IndexMap::new(),
            callers: schedules::CallersConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Networks allowed to send SIP, e.g. ["192.0.2.0/24", "2001:db8::/32"]; others get 403.
    /// Empty: anyone (a public number). Set it to your trunks' addresses where you can.
    pub allow: Vec<String>,
    /// Networks never rate-limited: your trunks and PBXs, each carrying many callers.
    pub trusted: Vec<String>,
    /// New INVITE/REGISTER/other out-of-dialog requests per second per source address;
    /// beyond it they are dropped (and counted), so a flood cannot slow other callers.
    pub rate_per_source: f64,
    /// Requests a source may send at once before `rate_per_source` applies.
    pub burst_per_source: f64,
    /// SIP datagrams per second per source checked before parsing (a busy trunk sends a
    /// handful per call; a flood far more). Beyond it they are dropped unread.
    pub datagrams_per_source: f64,
    /// User-Agent fragments (case-insensitive) of scanners; their requests are dropped unanswered.
    pub deny_user_agents: Vec<String>,
    /// Largest SIP message accepted (bytes); larger requests get 513.
    pub max_message_bytes: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            allow: Vec::new(),
            trusted: Vec::new(),
            rate_per_source: 50.0,
            burst_per_source: 100.0,
            datagrams_per_source: 5000.0,
            deny_user_agents: [
                "friendly-scanner",
                "sipvicious",
                "sipcli",
                "sip-scan",
                "sipsak",
                "sundayddr",
                "iwar",
                "vaxsipuseragent",
                "pplsip",
                "smap",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            max_message_bytes: crate::sip::guard::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl SecurityConfig {
    /// The shield these settings describe (the allow-list already validated by `Config::parse`).
    pub fn shield(&self) -> crate::sip::shield::ShieldConfig {
        crate::sip::shield::ShieldConfig {
            datagram_rate: self.datagrams_per_source.max(1.0),
            allow: self
                .allow
                .iter()
                .filter_map(|a| parse_net(a).ok())
                .collect(),
            trusted: self
                .trusted
                .iter()
                .filter_map(|a| parse_net(a).ok())
                .collect(),
            rate: self.rate_per_source,
            burst: self.burst_per_source.max(1.0),
            deny_user_agents: self
                .deny_user_agents
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        }
    }
}

/// A network ("10.0.0.0/8") or a single address ("192.0.2.7").
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{s}' is neither an address nor a network (CIDR)"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address of the admin API; `~` disables it. Keep it on loopback or a management network.
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token; created with a random token if missing.
    /// Default: `admin.token` in the state directory.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 8089)),
            token_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutagesConfig {
    /// Watched YAML file of outages (relative to the config file); `~` for none.
    pub file: Option<PathBuf>,
}

impl Default for OutagesConfig {
    fn default() -> Self {
        OutagesConfig {
            file: Some(PathBuf::from("flows/outages.yaml")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtsConfig {
    /// The espeak-ng program.
    pub program: String,
    /// espeak-ng voice.
    pub voice: String,
    /// Words per minute.
    pub speed: u32,
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig {
            program: "espeak-ng".into(),
            voice: "en-us".into(),
            speed: 150,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// Alert label whose value becomes the outage scope (missing label = all callers).
    pub scope_label: String,
    /// Label value -> scope, e.g. {payments: billing, core-network: all}; unmapped values are used as they are.
    pub scopes: IndexMap<String, String>,
    /// Annotations tried in order for the message callers hear.
    pub message_annotations: Vec<String>,
    /// Offer callers a callback for alert-driven outages.
    pub callback: bool,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            scope_label: "service".into(),
            scopes: IndexMap::new(),
            message_annotations: vec!["ivr_message".into(), "summary".into(), "description".into()],
            callback: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP listen address; `~` disables UDP. Port 0 picks a free port.
    pub udp: Option<SocketAddr>,
    /// TCP listen address; `~` disables TCP.
    pub tcp: Option<SocketAddr>,
    /// Address written in Contact headers when ivrd is behind NAT (defaults to the listener's).
    pub public_ip: Option<IpAddr>,
    /// User-Agent / Server header value.
    pub user_agent: String,
    /// Which SIP layer answers calls that come over UDP.
    pub udp_layer: UdpLayer,
}

/// The SIP layer answering calls over UDP: ivrd's own (`sip::leg`), or rsipstack's
/// dialogs as before it. TCP, and the calls ivrd places, use rsipstack either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdpLayer {
    #[default]
    Own,
    Rsipstack,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            udp: Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5060)),
            tcp: Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5060)),
            public_ip: None,
            user_agent: format!("ivrd/{}", env!("CARGO_PKG_VERSION")),
            udp_layer: UdpLayer::Own,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Local address RTP sockets bind to.
    pub rtp_ip: IpAddr,
    /// Address announced in SDP (c=) when behind NAT (defaults to `rtp_ip`).
    pub public_ip: Option<IpAddr>,
    /// RTP port range, e.g. "20000-29999", or "0" for ephemeral ports.
    pub rtp_ports: PortRange,
    /// Hang up when no RTP arrived from the caller for this long (not while on hold); 0 = never.
    pub rtp_timeout_s: u64,
    /// Incoming RTP packets per second accepted per call (20 ms audio is 50/s); the rest
    /// are dropped and counted.
    pub max_rtp_packets_per_s: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_ip: Ipv4Addr::LOCALHOST.into(),
            public_ip: None,
            rtp_ports: PortRange::Range(20000, 29999),
            rtp_timeout_s: 30,
            max_rtp_packets_per_s: 200,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRange {
    Ephemeral,
    Range(u16, u16),
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "0" {
            return Ok(PortRange::Ephemeral);
        }
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("port range '{s}' must be \"MIN-MAX\" or \"0\""))?;
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("'{p}' is not a port number"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a == 0 || a > b || b - a < 1 {
            return Err(format!("port range '{s}' must have 0 < MIN < MAX"));
        }
        Ok(PortRange::Range(a, b))
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Accept both `rtp_ports: 0` and `rtp_ports: "20000-29999"`.
        let v = serde_yaml::Value::deserialize(d)?;
        let s = match v {
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s,
            _ => return Err(serde::de::Error::custom("expected \"MIN-MAX\" or 0")),
        };
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// The longest a caller may hear ringing: INVITE received -> 200 OK sent.
    pub ring_budget_ms: u64,
    /// Ring at least this long before answering (for admins who want one audible ring).
    pub min_ring_ms: u64,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            ring_budget_ms: 4000,
            min_ring_ms: 0,
        }
    }
}

impl AnswerConfig {
    pub fn ring_budget(&self) -> Duration {
        Duration::from_millis(self.ring_budget_ms)
    }
    pub fn min_ring(&self) -> Duration {
        Duration::from_millis(self.min_ring_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Answer anyway and run the flow's overflow node (message, later a callback offer).
    #[default]
    Answer,
    /// Refuse with 503 Service Unavailable and Retry-After.
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Calls that run their flow normally.
    pub max_calls: usize,
    /// What happens to calls beyond `max_calls`.
    pub overflow: Overflow,
    /// Calls beyond `max_calls` that are still answered with the overflow node; past this, 503.
    pub max_overflow_calls: usize,
    /// Retry-After seconds sent with 503.
    pub retry_after_s: u32,
    /// On SIGTERM, how long calls in progress may take to end before they are hung up.
    pub drain_timeout_s: u64,
    /// Threads that run calls (SIP, RTP, flows, the HTTP servers); 0: one per core. Read at
    /// start only. One by default: what runs there is short (a message, a 20 ms frame), and
    /// handing it between threads cost more than it saved (42% less CPU per answered call
    /// with one at 2,000 calls/s, see README); the heavy work (Whisper and the embedder,
    /// speech synthesis, the database) has threads of its own either way. More lift the
    /// ceiling of one core, for nodes that carry thousands of calls with media at once.
    pub worker_threads: usize,
}

/// More would be a typo: past the cores, threads only add hand-overs.
pub const MAX_WORKER_THREADS: usize = 1024;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_calls: 500,
            overflow: Overflow::Answer,
            max_overflow_calls: 100,
            retry_after_s: 60,
            drain_timeout_s: 60,
            worker_threads: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Directory of flow files (`*.yaml`), relative to the config file.
    pub dir: PathBuf,
    /// Flow for calls whose dialled number has no route.
    pub default: String,
    /// Dialled number (Request-URI user part) -> flow name.
    pub routes: IndexMap<String, String>,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            dir: PathBuf::from("flows"),
            default: "support-line".to_string(),
            routes: IndexMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus scrape address; `~` disables the exporter.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 9464)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "info,ivrd::io=debug". RUST_LOG overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// A config with its paths resolved against the directory of the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
    pub flows_dir: PathBuf,
    pub sounds_dir: PathBuf,
    pub state_dir: PathBuf,
    pub outages_file: Option<PathBuf>,
    pub token_file: PathBuf,
    /// The Whisper model file, resolved, when speech is configured.
    pub asr_model: Option<PathBuf>,
    /// The sentence-embedding model directory, resolved (`asr.embedder`).
    pub asr_embedder: Option<PathBuf>,
    /// The `schedules:` section, built.
    pub schedules: IndexMap<String, std::sync::Arc<crate::schedule::Schedule>>,
    /// Where rendered text prompts are cached (`STATE_DIR/tts`).
    pub tts_cache: PathBuf,
    /// `store.postgres_file`, resolved.
    pub store_url_file: Option<PathBuf>,
}

impl Config {
    /// Finds the config file to use when none was given on the command line.
    pub fn default_path() -> Option<PathBuf> {
        if let Ok(p) = std::env::var("IVRD_CONFIG") {
            return Some(PathBuf::from(p));
        }
        DEFAULT_CONFIG_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    }

    pub fn load(path: &Path) -> Result<LoadedConfig, Diagnostics> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Diagnostics(vec![Diagnostic::new(path, format!("cannot read: {e}"))]))?;
        Self::parse(path, &text)
    }

    /// Parses and checks a config. Every problem is reported at once: type errors in each
    /// top-level section (each parsed on its own, so one does not hide the next) together
    /// with the checks of the values, each at its line.
    pub fn parse(path: &Path, text: &str) -> Result<LoadedConfig, Diagnostics> {
        let (config, mut errors) = parse_sections(path, text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let flows_dir = base.join(&config.flows.dir);
        let sounds_dir = base.join(config.sounds.clone().unwrap_or_else(|| "sounds".into()));
        let state_dir = base.join(&config.state_dir);
        let outages_file = config.outages.file.as_ref().map(|f| base.join(f));
        let asr_model = config.asr.as_ref().map(|a| base.join(&a.model));
        let asr_embedder = config
            .asr
            .as_ref()
            .and_then(|a| a.embedder.as_ref())
            .map(|e| base.join(e));
        let token_file = match &config.admin.token_file {
            Some(f) => base.join(f),
            None => state_dir.join("admin.token"),
        };
        let map = SourceMap::new(text);
        let line_of = |key: &str| map.setting(key);
        let a = &config.answer;
        if a.ring_budget_ms < 100 || a.ring_budget_ms > 60_000 {
            errors.push(
                Diagnostic::new(path, "answer.ring_budget_ms must be between 100 and 60000")
                    .at(line_of("answer.ring_budget_ms")),
            );
        }
        if a.min_ring_ms >= a.ring_budget_ms {
            errors.push(
                Diagnostic::new(
                    path,
                    format!(
                        "answer.min_ring_ms ({}) must be below answer.ring_budget_ms ({})",
                        a.min_ring_ms, a.ring_budget_ms
                    ),
                )
                .at(line_of("answer.min_ring_ms")),
            );
        }
        for (key, nets) in [
            ("allow", &config.security.allow),
            ("trusted", &config.security.trusted),
        ] {
            for net in nets {
                if let Err(e) = parse_net(net) {
                    errors.push(
                        Diagnostic::new(path, format!("security.{key}: {e}"))
                            .at(line_of(&format!("security.{key}"))),
                    );
                }
            }
        }
        let sec = &config.security;
        if sec.rate_per_source.is_nan() || sec.rate_per_source <= 0.0 || sec.burst_per_source < 1.0
        {
            errors.push(
                Diagnostic::new(
                    path,
                    "security.rate_per_source must be above 0 and burst_per_source at least 1",
                )
                .at(line_of("security.rate_per_source")),
            );
        }
        if !(1024..=65_535).contains(&sec.max_message_bytes) {
            errors.push(
                Diagnostic::new(
                    path,
                    "security.max_message_bytes must be between 1024 and 65535",
                )
                .at(line_of("security.max_message_bytes")),
            );
        }
        if config.limits.max_calls == 0 {
            errors.push(
                Diagnostic::new(path, "limits.max_calls must be at least 1")
                    .at(line_of("limits.max_calls")),
            );
        }
        if config.limits.worker_threads > MAX_WORKER_THREADS {
            errors.push(
                Diagnostic::new(
                    path,
                    format!(
                        "limits.worker_threads must be at most {MAX_WORKER_THREADS} (0: one per core)"
                    ),
                )
                .at(line_of("limits.worker_threads")),
            );
        }
        if config.sip.udp.is_none() && config.sip.tcp.is_none() {
            errors.push(
                Diagnostic::new(path, "sip: at least one of udp and tcp must be enabled")
                    .at(line_of("sip")),
            );
        }
        let w = &config.webrtc;
        if w.ice_ip.is_unspecified() {
            errors.push(
                Diagnostic::new(
                    path,
                    "webrtc.ice_ip must be a concrete address (the wildcard leaves loopback out)",
                )
                .at(line_of("webrtc.ice_ip")),
            );
        }
        if !(1000..=120_000).contains(&w.connect_timeout_ms) {
            errors.push(
                Diagnostic::new(
                    path,
                    "webrtc.connect_timeout_ms must be between 1000 and 120000",
                )
                .at(line_of("webrtc.connect_timeout_ms")),
            );
        }
        if !(200..=60_000).contains(&w.disconnect_timeout_ms) {
            errors.push(
                Diagnostic::new(
                    path,
                    "webrtc.disconnect_timeout_ms must be between 200 and 60000",
                )
                .at(line_of("webrtc.disconnect_timeout_ms")),
            );
        }
        let level = &config.log.level;
        if !level.is_ascii() || level.contains('{') {
            // Directives name targets, spans and levels. Two things never reach
            // tracing-subscriber: non-ASCII text, on which its parser can panic, and
            // {field=value} filters, whose values it compiles into regexes that can take
            // seconds on hostile input. RUST_LOG still takes the full syntax.
            errors.push(
                Diagnostic::new(
                    path,
                    "log.level: use ASCII target=level directives, without {field} filters",
                )
                .at(line_of("log.level")),
            );
        } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
            errors.push(Diagnostic::new(path, format!("log.level: {e}")).at(line_of("log.level")));
        }
        errors.extend(queues::check(
            path,
            &map,
            &config.agents,
            &config.queues,
            &config.callbacks,
        ));
        let (schedules, schedule_errors) = schedules::build(path, &map, &config.schedules);
        errors.extend(schedule_errors);
        let tts_cache = state_dir.join("tts");
        if config.store.postgres.is_some() && config.store.postgres_file.is_some() {
            errors.push(
                Diagnostic::new(path, "store: give postgres or postgres_file, not both")
                    .at(line_of("store")),
            );
        }
        if let Some(url) = &config.store.postgres {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                errors.push(
                    Diagnostic::new(path, "store.postgres must be a postgres:// URL")
                        .at(line_of("store.postgres")),
                );
            }
        }
        let store_url_file = config.store.postgres_file.as_ref().map(|f| base.join(f));
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(LoadedConfig {
            path: path.to_path_buf(),
            config,
            flows_dir,
            sounds_dir,
            state_dir,
            outages_file,
            token_file,
            asr_model,
            asr_embedder,
            schedules,
            tts_cache,
            store_url_file,
        })
    }
}

/// Deserializes a config. A file that parses whole is taken as it is (anchors may cross
/// sections). One that does not is parsed again section by section, so that every section's
/// type errors are found at once: each top-level block on its own (lines offset to the
/// file's), and the blocks that parse make the config the value checks run on (a broken
/// section counts as its defaults there). A YAML syntax error stops everything: without a
/// tree there is nothing to split.
fn parse_sections(path: &Path, text: &str) -> Result<(Config, Vec<Diagnostic>), Diagnostics> {
    if text.trim().is_empty() {
        return Ok((Config::default(), Vec::new()));
    }
    let whole = |e: serde_yaml::Error| Diagnostics(vec![yaml_diagnostic(path, &e)]);
    let first_error = match serde_yaml::from_str::<Config>(text) {
        Ok(config) => return Ok((config, Vec::new())),
        Err(e) => e,
    };
    serde_yaml::from_str::<serde_yaml::Value>(text).map_err(whole)?;
    let map = SourceMap::new(text);
    let Some(blocks) = map.top_blocks() else {
        // Not plain block style (a flow mapping, a document list): one error at a time.
        return Err(whole(first_error));
    };
    let mut errors = Vec::new();
    let mut good = String::new();
    for (_, first_line, block) in &blocks {
        match serde_yaml::from_str::<Config>(block) {
            Ok(_) => {
                good.push_str(block);
                good.push('\n');
            }
            Err(e) => errors.push(yaml_diagnostic_from(path, &e, *first_line)),
        }
    }
    if errors.is_empty() {
        // Each section parses alone but not together (an anchor used across sections, a
        // key given twice): the whole file's own error says which.
        return Err(whole(first_error));
    }
    let config = if good.trim().is_empty() {
        Config::default()
    } else {
        serde_yaml::from_str(&good).map_err(whole)?
    };
    Ok((config, errors))
}

pub mod queues;
pub mod schedules;
#[cfg(test)]
mod tests;
