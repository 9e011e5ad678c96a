//! `ivrd`: run the daemon, check a config, import a Whisper model.

use clap::{Parser, Subcommand};
use ivrd::config::LogFormat;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: per-thread free lists suit the many short-lived
/// allocations of SIP parsing on a multi-threaded runtime (see benches/sip_answer.py).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ivrd",
    version,
    about = "Phone-line IVR and call-routing daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (config: --config, $IVRD_CONFIG, ./ivrd.yaml or /etc/ivrd/ivrd.yaml).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the config and every flow; print every error with its file and line.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Whisper model tools.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Start, stop and list outages on the running daemon (through its admin API).
    Outage {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: OutageCommand,
    },
    /// Reload flows and prompts on the running daemon; the running ones stay if any is invalid.
    Reload {
        #[command(flatten)]
        conn: Connection,
    },
    /// List agents or set one available or away on the running daemon.
    Agent {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Show the calls in progress on the running daemon.
    Calls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Run flow tests offline in virtual time: the given files, or every *.test.yaml in
    /// the flows directory. Exit 1 on any failure.
    Test {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also write JUnit XML here (for CI systems).
        #[arg(long)]
        junit: Option<PathBuf>,
        files: Vec<PathBuf>,
    },
    /// Draw a flow: Graphviz DOT or SVG.
    Graph {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// svg or dot.
        #[arg(long, default_value = "svg")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The flow's name (or its file).
        flow: String,
    },
    /// Mystery-shopper calls: place the probe file's test calls (keys, spoken words) against
    /// a running ivrd or any SIP URI, check where they go and how fast; exit 1 on failure.
    Probe {
        /// The probe file (target and probes).
        #[arg(default_value = "/etc/ivrd/probes.yaml")]
        file: PathBuf,
        /// A config whose `tts` voice the spoken words use (default: espeak-ng, en-us).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write Prometheus metrics to this file (node exporter textfile collector).
        #[arg(long)]
        textfile: Option<PathBuf>,
        /// Serve the metrics here and probe again every --every.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// With --listen: how often to probe, e.g. 60s or 5m.
        #[arg(long, default_value = "60s")]
        every: String,
    },
    /// What ivrd remembers of callers, on the running daemon.
    Caller {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        command: CallerCommand,
    },
    /// Benchmarks: `ivrd bench tts [--texts N]`; `ivrd bench asr --model M [--corpus DIR] [--threads N] [--runs N]
    /// [--variants standard|default|all] [--details] [--json]`.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// How the CLI reaches the daemon: from its config, or explicitly.
#[derive(clap::Args)]
struct Connection {
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Admin API base URL (default: http://ADMIN.LISTEN from the config).
    #[arg(long, global = true)]
    url: Option<String>,
    /// File with the admin bearer token (default: from the config).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum OutageCommand {
    /// Start (or update) an outage; callers hear it before any menu.
    Start {
        id: String,
        /// What callers hear (rendered to speech).
        #[arg(long, conflicts_with = "prompt", required_unless_present = "prompt")]
        message: Option<String>,
        /// A prompt file from the sounds directory instead of text.
        #[arg(long)]
        prompt: Option<String>,
        /// "all" (default) or intents/nodes such as billing; repeat for several.
        #[arg(long)]
        scope: Vec<String>,
        /// Ends by itself after this long, e.g. 90m or 2h.
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Ends by itself at this RFC 3339 time.
        #[arg(long)]
        expires_at: Option<String>,
        /// Offer callers a callback when it is fixed.
        #[arg(long)]
        callback: bool,
    },
    /// End an outage.
    Stop { id: String },
    /// List outages.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Every agent with their state and queues.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// The agent takes calls again.
    Available { id: String },
    /// The agent takes no calls (after the current one, if on a call).
    Away { id: String },
    /// The agent is logged out.
    Offline { id: String },
}

#[derive(Subcommand)]
enum CallerCommand {
    /// Recently seen callers.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One caller's record.
    Show { number: String },
    /// Set the name a caller prefers, or notes ("" clears).
    Set {
        number: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Forget everything kept of a number.
    Erase { number: String },
    /// Import names and notes from CSV (header: number,name,notes); all rows or none.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Convert a CTranslate2 Whisper model directory to a ggml file for whisper.cpp.
    Import {
        ct2_dir: PathBuf,
        out: PathBuf,
        /// Weight type of the 2-D tensors: f16, q8_0 or q5_0.
        #[arg(long = "type", default_value = "f16")]
        weight_type: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config } => {
            match ivrd::io::load_config(config.as_deref()).and_then(|c| ivrd::io::check(&c)) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!(
                        "{} error{}",
                        errors.0.len(),
                        if errors.0.len() == 1 { "" } else { "s" }
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Model {
            command:
                ModelCommand::Import {
                    ct2_dir,
                    out,
                    weight_type,
                },
        } => model_import(&ct2_dir, &out, &weight_type),
        Command::Outage { conn, command } => with_client(conn, |c| outage(c, command)),
        Command::Agent { conn, command } => with_client(conn, |c| agent(c, command)),
        Command::Reload { conn } => with_client(conn, |c| {
            c.reload().map(|r| {
                r.get("summary")
                    .and_then(|s| s.as_str())
                    .unwrap_or("reloaded")
                    .to_string()
            })
        }),
        Command::Bench { args } => match args.first().map(String::as_str) {
            Some("asr") => match ivrd::bench::asr::cli(&args[1..]) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ivrd bench asr: {e}");
                    ExitCode::from(2)
                }
            },
            Some("tts") => match ivrd::bench::tts::cli(&args[1..]) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ivrd bench tts: {e}");
                    ExitCode::from(2)
                }
            },
            _ => {
                eprintln!(
                    "ivrd bench: `asr` or `tts` here (SIP load and flow tests are benches/*.py)"
                );
                ExitCode::from(2)
            }
        },
        Command::Test {
            config,
            junit,
            files,
        } => flow_tests(config, junit, &files),
        Command::Graph {
            config,
            format,
            output,
            flow,
        } => {
            let drawn = ivrd::io::load_config(config.as_deref())
                .map_err(|e| e.to_string())
                .and_then(|cfg| ivrd::io::tools::flow_graph(&cfg, &flow, &format));
            match (drawn, output) {
                (Ok(text), None) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                (Ok(text), Some(path)) => match std::fs::write(&path, text) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("ivrd graph: {}: {e}", path.display());
                        ExitCode::FAILURE
                    }
                },
                (Err(e), _) => {
                    eprintln!("ivrd graph: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Caller { conn, command } => with_client(conn, |c| caller(c, command)),
        Command::Probe {
            file,
            config,
            textfile,
            listen,
            every,
        } => probe(file, config, textfile, listen, &every),
        Command::Calls { conn } => with_client(conn, |c| {
            c.calls()
                .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        }),
    }
}

fn flow_tests(config: Option<PathBuf>, junit: Option<PathBuf>, files: &[PathBuf]) -> ExitCode {
    let run = ivrd::io::load_config(config.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|cfg| ivrd::io::tools::flow_tests(&cfg, files));
    match run {
        Ok(run) => {
            print!("{}", run.report);
            if let Some(path) = junit {
                if let Err(e) = std::fs::write(&path, &run.junit) {
                    eprintln!("ivrd test: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            if run.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ivrd test: {e}");
            ExitCode::from(2)
        }
    }
}

fn probe(
    file: PathBuf,
    config: Option<PathBuf>,
    textfile: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    every: &str,
) -> ExitCode {
    let tts = match config {
        Some(c) => match ivrd::io::load_config(Some(&c)) {
            Ok(cfg) => cfg.config.tts.unwrap_or_default(),
            Err(e) => {
                eprintln!("ivrd probe: {e}");
                return ExitCode::from(2);
            }
        },
        None => ivrd::config::TtsConfig::default(),
    };
    let every = match humantime::parse_duration(every) {
        Ok(d) if d >= std::time::Duration::from_secs(1) => d,
        _ => {
            eprintln!("ivrd probe: --every {every}: a duration such as 60s or 5m");
            return ExitCode::from(2);
        }
    };
    let run = ivrd::io::probe::ProbeRun {
        file,
        tts,
        textfile,
        listen,
        every,
    };
    match ivrd::io::probe::cli(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ivrd probe: {e}");
            ExitCode::from(2)
        }
    }
}

fn caller(c: &ivrd::cli::Client, command: CallerCommand) -> Result<String, ivrd::cli::CliError> {
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    match command {
        CallerCommand::List { limit } => c
            .send_json("GET", &format!("/api/callers?limit={limit}"), None)
            .map(pretty),
        CallerCommand::Show { number } => c
            .send_json(
                "GET",
                &format!("/api/callers/{}", ivrd::cli::path_part(&number)),
                None,
            )
            .map(pretty),
        CallerCommand::Set {
            number,
            name,
            notes,
        } => {
            let body = serde_json::json!({ "name": name, "notes": notes });
            c.send_json(
                "PUT",
                &format!("/api/callers/{}", ivrd::cli::path_part(&number)),
                Some(body),
            )
            .map(pretty)
        }
        CallerCommand::Erase { number } => c
            .send_json(
                "DELETE",
                &format!("/api/callers/{}", ivrd::cli::path_part(&number)),
                None,
            )
            .map(|_| "erased".to_string()),
        CallerCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| ivrd::cli::CliError::Setup(format!("{}: {e}", file.display())))?;
            c.send_text("/api/callers/import", "text/csv", text)
                .map(pretty)
        }
    }
}

fn with_client(
    conn: Connection,
    f: impl FnOnce(&ivrd::cli::Client) -> Result<String, ivrd::cli::CliError>,
) -> ExitCode {
    let client = ivrd::io::load_config(conn.config.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            ivrd::cli::Client::new(&cfg, conn.url, conn.token_file).map_err(|e| e.to_string())
        });
    match client.and_then(|c| f(&c).map_err(|e| e.to_string())) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ivrd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn agent(c: &ivrd::cli::Client, command: AgentCommand) -> Result<String, ivrd::cli::CliError> {
    let (id, state) = match command {
        AgentCommand::List { json } => {
            return c.agents().map(|l| {
                if json {
                    l.to_string()
                } else {
                    ivrd::cli::format_agents(&l)
                }
            })
        }
        AgentCommand::Available { id } => (id, "available"),
        AgentCommand::Away { id } => (id, "away"),
        AgentCommand::Offline { id } => (id, "offline"),
    };
    c.set_agent(&id, state).map(|a| {
        let now = a.get("state").and_then(|v| v.as_str()).unwrap_or(state);
        match a.get("after_call").and_then(|v| v.as_str()) {
            Some(after) => format!("{id}: {now} (then {after} after the call)"),
            None => format!("{id}: {now}"),
        }
    })
}

fn outage(c: &ivrd::cli::Client, command: OutageCommand) -> Result<String, ivrd::cli::CliError> {
    use ivrd::cli::CliError;
    match command {
        OutageCommand::Start {
            id,
            message,
            prompt,
            scope,
            expires_in,
            expires_at,
            callback,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let expires_at = match (expires_in, expires_at) {
                (Some(d), _) => Some(
                    now + humantime::parse_duration(&d)
                        .map_err(|e| CliError::Setup(format!("--expires-in '{d}': {e}")))?
                        .as_secs(),
                ),
                (None, Some(t)) => Some(
                    ivrd::outage::file::timestamp::parse(&t)
                        .map_err(|e| CliError::Setup(e.to_string()))?,
                ),
                (None, None) => None,
            };
            let spec = ivrd::outage::OutageSpec {
                id,
                message,
                prompt,
                scope: if scope.is_empty() {
                    vec!["all".into()]
                } else {
                    scope
                },
                starts_at: None,
                expires_at,
                callback,
            };
            spec.validate()
                .map_err(|e| CliError::Setup(e.to_string()))?;
            let o = c.start(&spec)?;
            Ok(format!(
                "started: {}",
                ivrd::cli::format_outages(&serde_json::Value::Array(vec![o]))
            ))
        }
        OutageCommand::Stop { id } => c.stop(&id).map(|_| format!("stopped: {id}")),
        OutageCommand::List { json } => c.list().map(|l| {
            if json {
                serde_json::to_string_pretty(&l).unwrap_or_default()
            } else {
                ivrd::cli::format_outages(&l)
            }
        }),
    }
}

fn run(config: Option<PathBuf>) -> ExitCode {
    let cfg = match ivrd::io::load_config(config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&cfg.config.log.level, cfg.config.log.format);
    raise_open_files_limit(&cfg.config.limits);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cfg.config.limits.worker_threads > 0 {
        builder.worker_threads(cfg.config.limits.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ivrd::io::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ivrd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Lifts the soft open-files limit to the hard one, as systemd's `LimitNOFILE` does for the
/// unit (a shell's soft limit is often 1,024): every call holds an RTP socket, and finished
/// calls' sockets are kept a while for reuse. Says so when even the hard limit is short of
/// what `limits` let in.
fn raise_open_files_limit(limits: &ivrd::config::LimitsConfig) {
    let calls = (limits.max_calls + limits.max_overflow_calls) as u64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < calls + ivrd::io::FILES_BESIDE_CALLS => tracing::warn!(
            open_files = n,
            calls,
            "the open-files limit is below what limits.max_calls and max_overflow_calls need \
             (a socket per call and more): raise it (LimitNOFILE=, ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

/// Logs to stderr; no colours unless stderr is a terminal (journald-friendly).
fn init_logging(level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // rsipstack logs every packet at info, and webrtc-rs every state change (plus warnings
    // that every browser call triggers, in ICE and DTLS): keep them quiet unless asked.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_new(format!(
                "rsipstack=warn,rtc=warn,webrtc=warn,rtc_ice=error,rtc_dtls=error,{level}"
            ))
            .unwrap_or_else(|_| EnvFilter::new("info"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn model_import(ct2_dir: &std::path::Path, out: &std::path::Path, weight_type: &str) -> ExitCode {
    let wt = match weight_type.parse::<ivrd::asr::model::WeightType>() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ivrd model import: {e}");
            return ExitCode::FAILURE;
        }
    };
    match ivrd::asr::model::import(ct2_dir, out, wt) {
        Ok(report) => {
            println!(
                "wrote {}: {} tensors, {} audio + {} text layers, vocab {}, {:?}, {} bytes",
                out.display(),
                report.tensors,
                report.audio_layers,
                report.text_layers,
                report.n_vocab,
                report.weight_type,
                report.bytes_written
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ivrd model import: {e}");
            ExitCode::FAILURE
        }
    }
}
