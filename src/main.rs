//! `ivrd`: run the daemon, check a config, import a Whisper model.

use clap::{Parser, Subcommand};
use ivrd::config::LogFormat;
use std::path::PathBuf;
use std::process::ExitCode;

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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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

/// Logs to stderr; no colours unless stderr is a terminal (journald-friendly).
fn init_logging(level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // rsipstack logs every packet at info: keep it to warnings unless asked.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_new(format!("rsipstack=warn,{level}"))
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
