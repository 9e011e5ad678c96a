//! Start-up and the commands that share its loading: config, flows and models are loaded
//! and checked the same way by `ivrd check`, the daemon's start and its reloads.

use super::daemon::{ReloadFn, Services};
use super::files::{read_flow_dir, SoundLibrary};
use super::registry::CallRegistry;
use super::{http, outages, service, sip};
use crate::asr::embed::{EmbedError, Embedder, TextEmbedder};
use crate::config::{Config, LoadedConfig};
use crate::diag::Diagnostics;
use crate::flow::{compile_dir, DirSettings, FlowSet};
use crate::io::queues::{QueueAudio, Queues};
use crate::store::Store;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Loads prompts and compiles every flow; the same path serves `ivrd check`, start-up and
/// reload. With an embedder, menus' examples are embedded here (blocking: ~10 ms a phrase).
pub fn load_flows(
    cfg: &LoadedConfig,
    embedder: Option<&dyn TextEmbedder>,
) -> Result<(FlowSet, usize), Diagnostics> {
    let mut sounds = SoundLibrary::new(&cfg.sounds_dir).with_tts(open_tts(cfg));
    let dir = read_flow_dir(&cfg.flows_dir).map_err(|e| {
        Diagnostics(vec![crate::diag::Diagnostic::new(
            &cfg.flows_dir,
            format!("cannot read flows directory: {e}"),
        )])
    })?;
    let queues: Vec<String> = cfg.config.queues.keys().cloned().collect();
    let settings = DirSettings {
        config_file: &cfg.path,
        default: &cfg.config.flows.default,
        routes: &cfg.config.flows.routes,
        queues: &queues,
        schedules: &cfg.schedules,
    };
    let flows = compile_dir(&dir, &settings, &mut sounds, embedder)?;
    Ok((flows, sounds.len()))
}

/// The configured text-to-speech engine with its disk cache (`STATE_DIR/tts`), or why
/// there is none. Blocking (checks the engine runs).
pub fn open_tts(cfg: &LoadedConfig) -> Result<Arc<super::tts::Tts>, String> {
    match &cfg.config.tts {
        Some(t) => super::tts::Tts::open(t, Some(&cfg.tts_cache))
            .map(Arc::new)
            .map_err(|e| e.to_string()),
        None => Err("no text-to-speech engine (tts: ~ in the config); use a sound file".into()),
    }
}

/// Loads the sentence-embedding model named by `asr.embedder` (none without it).
pub fn load_embedder(cfg: &LoadedConfig) -> Result<Option<Arc<Embedder>>, EmbedError> {
    let Some(dir) = cfg
        .asr_embedder
        .as_ref()
        .filter(|_| cfg.config.asr.is_some())
    else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let embedder = Embedder::load(dir)?;
    info!(model = %dir.display(), load_ms = started.elapsed().as_millis() as u64, "sentence embeddings ready");
    Ok(Some(Arc::new(embedder)))
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] Diagnostics),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("SIP stack: {0}")]
    Sip(String),
    #[error("signal handlers: {0}")]
    Signals(std::io::Error),
    /// A start-up task (model loading, opening the store) died.
    #[error("start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("metrics: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error("{0}")]
    Tts(#[from] outages::tts::TtsError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("outages: {0}")]
    Outages(#[from] outages::BoardError),
    #[error(
        "speech: {0}. Build the model with scripts/fetch-model.sh, or remove `asr:` for keys only"
    )]
    Asr(#[from] crate::asr::whisper::AsrError),
    #[error("speech: {0}. Remove `asr.embedder` (or set it to ~) to route by words only")]
    Embed(#[from] EmbedError),
    #[error("{0}")]
    Token(#[from] http::auth::TokenError),
    #[error("state file {path}: {source}")]
    State {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs the daemon until SIGINT/SIGTERM.
pub async fn run(cfg: LoadedConfig) -> Result<(), RunError> {
    let signals = service::Signals::install().map_err(RunError::Signals)?;
    let embedder = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || load_embedder(&cfg)).await??
    };
    let flows_embedder = embedder.clone().map(|e| e as Arc<dyn TextEmbedder>);
    let (flows, prompts) = load_flows(&cfg, flows_embedder.as_deref())?;
    info!(
        flows = flows.flows.len(),
        prompts,
        default = %flows.default.name,
        "flows compiled"
    );
    let metrics = crate::metrics::install()?;
    let shutdown = CancellationToken::new();
    let flows = Arc::new(ArcSwap::from_pointee(flows));
    let ready = Arc::new(AtomicBool::new(false));

    // A missing TTS engine is a start-up error, not something a caller finds out.
    let tts = match &cfg.config.tts {
        Some(t) => {
            let (t, dir) = (t.clone(), cfg.tts_cache.clone());
            Some(Arc::new(
                tokio::task::spawn_blocking(move || super::tts::Tts::open(&t, Some(&dir)))
                    .await??,
            ))
        }
        None => None,
    };
    let store = Arc::new(open_store(&cfg).await?);
    info!(db = %store.describe(), "state");
    let board = outages::OutageBoard::open(store.clone(), tts.clone(), &cfg.sounds_dir).await?;
    if let Some(pg) = store.postgres() {
        // Outages any node changes reach this one's callers within a moment.
        let (board, rt) = (board.clone(), tokio::runtime::Handle::current());
        pg.listen_outages(move || {
            let board = board.clone();
            rt.spawn(async move { board.resync().await });
        });
    }
    if let Some(file) = &cfg.outages_file {
        outages::sync_file(&board, file).await;
    }
    outages::spawn_watchers(board.clone(), cfg.outages_file.clone(), shutdown.clone());
    let registry = Arc::new(CallRegistry::default());
    let asr = match (&cfg.config.asr, &cfg.asr_model) {
        (Some(settings), Some(model)) => {
            Some(start_asr(settings, model, flows_embedder.clone()).await?)
        }
        _ => None,
    };

    // The queue service reads its agents and kept places from the store at start: blocking
    // I/O (the PostgreSQL client runs its own runtime and may not be called from ours).
    let queues = QueueAudio::load(&cfg)?
        .map(|audio| tokio::task::block_in_place(|| Queues::start(&cfg, audio, store.clone())));
    let number_key = Arc::new(load_number_key(&cfg.state_dir)?);
    let traffic = Arc::new(super::traffic::Traffic::default());
    spawn_caller_retention(
        store.clone(),
        cfg.config.callers.retention_days,
        shutdown.clone(),
    );
    let services = Services {
        tts: tts.clone(),
        number_key: number_key.to_vec(),
        traffic: traffic.clone(),
        flows: flows.clone(),
        outages: board.clone(),
        store: store.clone(),
        registry: registry.clone(),
        asr,
        queues: queues.clone(),
        registrar: super::registrar::Registrar::load(&cfg)?,
    };
    let calls_stop = CancellationToken::new();
    let sip = sip::endpoint::start(&cfg.config, services, calls_stop).await?;
    if let (Some(q), Some(trunk)) = (&queues, &cfg.config.callbacks.trunk) {
        let ring = std::time::Duration::from_secs(cfg.config.callbacks.ring_timeout_s);
        sip::callback::start(sip.daemon.clone(), q.clone(), trunk.clone(), ring).await;
    }
    let metrics_addr = match cfg.config.metrics.listen {
        Some(addr) => Some(http::metrics::start(addr, metrics, shutdown.clone()).await?),
        None => None,
    };
    let reload = reloader(cfg.clone(), flows.clone(), flows_embedder.clone());
    let admin_addr = match cfg.config.admin.listen {
        Some(addr) => {
            let token = http::auth::load_or_create_token(&cfg.token_file)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind {
                    what: "admin API",
                    addr,
                    source,
                })?;
            let bound = listener.local_addr().unwrap_or(addr);
            let state = http::admin::AdminState {
                board: board.clone(),
                store: store.clone(),
                calls: registry.clone(),
                ready: ready.clone(),
                reload: reload.clone(),
                alertmanager: Arc::new(cfg.config.alertmanager.clone()),
            };
            // The WebRTC test phone (`/phone`, `/api/webrtc/...`), when enabled.
            let phone =
                cfg.config.webrtc.enabled.then(|| {
                    http::webrtc::Phone::new(cfg.config.webrtc.clone(), sip.daemon.clone())
                });
            let agents = http::agents::QueuesState {
                queues: queues.clone(),
                store: store.clone(),
            };
            let callers = http::callers::CallersState {
                store: store.clone(),
                number_key: number_key.clone(),
                flows: flows.clone(),
                traffic: traffic.clone(),
            };
            let app = http::router(state, phone, agents, callers, token.into());
            tokio::spawn(http::serve(listener, app, shutdown.clone()));
            Some(bound)
        }
        None => None,
    };
    ready.store(true, Ordering::Release);
    let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or("off".into());
    // One line on stdout that scripts and tests wait for.
    println!(
        "ivrd ready sip_udp={} sip_tcp={} metrics={} admin={}",
        show(sip.udp),
        show(sip.tcp),
        show(metrics_addr),
        show(admin_addr)
    );
    info!(sip_udp = %show(sip.udp), sip_tcp = %show(sip.tcp), metrics = %show(metrics_addr), admin = %show(admin_addr), "ivrd ready");
    service::notify(&[sd_notify::NotifyState::Ready]);
    service::spawn_watchdog(sip.daemon.clone());

    let drain = std::time::Duration::from_secs(cfg.config.limits.drain_timeout_s);
    service::run_until_stopped(signals, sip.daemon.clone(), reload, drain, ready.clone()).await;
    shutdown.cancel();
    Ok(())
}

/// Loads the Whisper model and starts its worker threads (before READY=1: a call must
/// never find the recogniser still loading).
async fn start_asr(
    settings: &crate::config::AsrSettings,
    model: &std::path::Path,
    embedder: Option<Arc<dyn TextEmbedder>>,
) -> Result<crate::asr::whisper::AsrPool, RunError> {
    let mut cfg = crate::asr::whisper::AsrConfig::new(model);
    cfg.embedder = embedder;
    cfg.workers = settings.workers;
    cfg.threads_per_worker = settings.threads_per_worker;
    cfg.queue = settings.queue;
    let started = std::time::Instant::now();
    let pool =
        tokio::task::spawn_blocking(move || crate::asr::whisper::AsrPool::start(&cfg)).await??;
    info!(model = %model.display(), load_ms = started.elapsed().as_millis() as u64, "speech recognition ready");
    Ok(pool)
}

/// This install's key for the tags that stand for callers' numbers in logs and the audit
/// trail: `STATE_DIR/number.key`, made once (random, owner-only).
fn load_number_key(dir: &std::path::Path) -> Result<Vec<u8>, RunError> {
    let path = dir.join("number.key");
    if let Ok(k) = std::fs::read(&path) {
        if k.len() >= 16 {
            return Ok(k);
        }
    }
    let key: [u8; 32] = rand::random();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(&key));
    written.map_err(|source| RunError::State {
        path: path.clone(),
        source,
    })?;
    Ok(key.to_vec())
}

/// Erases caller records untouched for `days` (0: keep them), at start and hourly.
fn spawn_caller_retention(store: Arc<Store>, days: u32, shutdown: CancellationToken) {
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let before = crate::io::clock::unix_now() as i64 - i64::from(days) * 86_400;
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.purge_callers(before)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => info!(
                    erased = n,
                    days, "caller records past their retention erased"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "caller retention sweep failed"),
                Err(_) => {}
            }
        }
    });
}

/// SQLite under the state directory, or the PostgreSQL database the config names (then
/// writes a call makes are retried while it is away).
async fn open_store(cfg: &LoadedConfig) -> Result<Store, RunError> {
    let dir = cfg.state_dir.clone();
    let url = match (&cfg.config.store.postgres, &cfg.store_url_file) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|source| RunError::State {
                    path: f.clone(),
                    source,
                })?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let node = cfg.config.store.node.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let port = cfg
            .config
            .sip
            .udp
            .or(cfg.config.sip.tcp)
            .map(|a| a.to_string())
            .unwrap_or_default();
        format!("{}:{port}", host.trim())
    });
    let store = tokio::task::spawn_blocking(move || match url {
        Some(url) => Store::connect(&url, &node),
        None => Store::open(&dir),
    })
    .await??;
    Ok(store)
}

/// Reload: re-reads the config file's flows and prompts; swaps them in only if all compile.
fn reloader(
    cfg: LoadedConfig,
    flows: Arc<ArcSwap<FlowSet>>,
    embedder: Option<Arc<dyn TextEmbedder>>,
) -> ReloadFn {
    Arc::new(move || {
        let fresh = Config::load(&cfg.path)?;
        let (set, prompts) = load_flows(&fresh, embedder.as_deref())?;
        let summary = format!("{} flows, {prompts} prompts", set.flows.len());
        flows.store(Arc::new(set));
        Ok(summary)
    })
}

/// Validates a config and its flows without starting anything (`ivrd check`).
pub fn check(cfg: &LoadedConfig) -> Result<String, Diagnostics> {
    let embedder = load_embedder(cfg)
        .map_err(|e| Diagnostics(vec![crate::diag::Diagnostic::new(&cfg.path, e.to_string())]))?;
    let embedder = embedder.map(|e| e as Arc<dyn TextEmbedder>);
    let (flows, prompts) = load_flows(cfg, embedder.as_deref())?;
    // Queue prompts and callback flows, and the password files of agents who log in.
    QueueAudio::load(cfg)?;
    super::registrar::Registrar::load(cfg)?;
    let mut summary = format!(
        "{}: ok ({} flow{}, {prompts} prompt{})",
        cfg.path.display(),
        flows.flows.len(),
        if flows.flows.len() == 1 { "" } else { "s" },
        if prompts == 1 { "" } else { "s" }
    );
    if !cfg.config.queues.is_empty() {
        summary.push_str(&format!(
            "\n{} agent{}, {} queue{}",
            cfg.config.agents.len(),
            if cfg.config.agents.len() == 1 {
                ""
            } else {
                "s"
            },
            cfg.config.queues.len(),
            if cfg.config.queues.len() == 1 {
                ""
            } else {
                "s"
            }
        ));
        if cfg
            .config
            .queues
            .values()
            .any(|q| q.callback_after_s.is_some())
            && cfg.config.callbacks.trunk.is_none()
        {
            summary.push_str("\nnote: queues offer callbacks only with callbacks.trunk set");
        }
    }
    for f in flows.flows.values() {
        if f.overflow.is_none() && cfg.config.limits.overflow == crate::config::Overflow::Answer {
            summary.push_str(&format!(
                "\nnote: flow '{}' has no overflow node: calls beyond limits.max_calls get 503",
                f.name
            ));
        }
    }
    Ok(summary)
}

/// Loads the config from a path or the default locations.
pub fn load_config(path: Option<&std::path::Path>) -> Result<LoadedConfig, Diagnostics> {
    match path.map(|p| p.to_path_buf()).or_else(Config::default_path) {
        Some(p) => Config::load(&p),
        None => Err(Diagnostics(vec![crate::diag::Diagnostic::new(
            std::path::Path::new("ivrd.yaml"),
            format!(
                "no config file: pass --config FILE or create one of {}",
                crate::config::DEFAULT_CONFIG_PATHS.join(", ")
            ),
        )])),
    }
}
