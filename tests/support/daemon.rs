//! Starting and observing the real `ivrd` binary.

use super::{collect_output, run_bounded, ChildGuard, Finished, TempDir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test: the one cargo built for this test run, or `$IVRD_BIN` (to run
/// the same black-box tests against a release build or an installed binary).
pub fn ivrd_bin() -> PathBuf {
    std::env::var_os("IVRD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ivrd")))
}

/// How long `ivrd run` may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What goes into the generated config. Defaults: the repository's flows, the prompts from
/// [`super::sounds_dir`], ephemeral ports everywhere, 500 calls, overflow `answer`,
/// ring budget 4000 ms, no minimum ring.
#[derive(Clone, Debug)]
pub struct DaemonOpts {
    pub flows_dir: PathBuf,
    pub default_flow: String,
    pub sounds_dir: PathBuf,
    pub max_calls: u32,
    /// `answer` or `reject`.
    pub overflow: String,
    pub ring_budget_ms: u64,
    pub min_ring_ms: u64,
    /// `"0"` (ephemeral) or a range like `"20000-20999"`.
    pub rtp_ports: String,
    /// `media.rtp_timeout_s` (hang up after this long without caller RTP); `None` leaves
    /// the daemon's default (30 s).
    pub rtp_timeout_s: Option<u64>,
    /// `media.max_rtp_packets_per_s` (per-call incoming RTP cap); `None` leaves the
    /// daemon's default (200).
    pub max_rtp_packets_per_s: Option<u32>,
    /// Log level; `IVRD_TEST_LOG` overrides it for every test.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Run the admin API (on an ephemeral port, announced as `admin=` in the ready line).
    pub admin: bool,
    /// Outages file to watch; `None` writes `file: ~` so no outage is announced unless a
    /// test asks for one (the daemon's default would be relative to the temp config dir).
    pub outages_file: Option<PathBuf>,
    /// Raw YAML appended at the end of the config for top-level sections this struct does
    /// not model. It must not repeat a section written above.
    pub extra_yaml: String,
    /// `limits.drain_timeout_s` (SIGTERM: how long calls in progress may go on); `None`
    /// leaves the daemon's default.
    pub drain_timeout_s: Option<u64>,
    /// Extra environment variables for the daemon (e.g. `NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub env: Vec<(String, String)>,
    /// The loopback address SIP and RTP bind to (127.0.0.x: several nodes on one host).
    pub sip_ip: String,
    /// The SIP port (UDP and TCP); 0: any free one, chosen anew at each start.
    pub sip_port: u16,
    /// `sip.udp_layer` (`own` or `rsipstack`); `None` leaves the daemon's default.
    pub udp_layer: Option<String>,
}

impl Default for DaemonOpts {
    fn default() -> Self {
        DaemonOpts {
            flows_dir: super::repo_flows_dir(),
            default_flow: "support-line".into(),
            sounds_dir: super::sounds_dir(),
            max_calls: 500,
            overflow: "answer".into(),
            ring_budget_ms: 4000,
            min_ring_ms: 0,
            rtp_ports: "0".into(),
            rtp_timeout_s: None,
            max_rtp_packets_per_s: None,
            log_level: "info".into(),
            log_format: "text".into(),
            admin: true,
            outages_file: None,
            extra_yaml: String::new(),
            drain_timeout_s: None,
            env: Vec::new(),
            sip_ip: "127.0.0.1".into(),
            sip_port: 0,
            udp_layer: None,
        }
    }
}

/// Double-quoted YAML scalar.
fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl DaemonOpts {
    /// The config file text, following the contract's schema.
    pub fn to_yaml(&self) -> String {
        let level = std::env::var("IVRD_TEST_LOG").unwrap_or_else(|_| self.log_level.clone());
        let mut y = format!(
            "\
sip:
  udp: {ip}:{port}
  tcp: {ip}:{port}
{udp_layer}media:
  rtp_ip: {ip}
  rtp_ports: {rtp_ports}
{media_limits}answer:
  ring_budget_ms: {ring}
  min_ring_ms: {min_ring}
limits:
  max_calls: {max_calls}
  overflow: {overflow}
{drain}flows:
  dir: {flows}
  default: {default_flow}
sounds: {sounds}
metrics:
  listen: 127.0.0.1:0
log:
  level: {level}
  format: {format}
state_dir: state
admin:
  listen: {admin}
outages:
  file: {outages}
",
            ip = self.sip_ip,
            port = self.sip_port,
            udp_layer = self
                .udp_layer
                .as_ref()
                .map(|l| format!("  udp_layer: {l}\n"))
                .unwrap_or_default(),
            rtp_ports = yaml_str(&self.rtp_ports),
            media_limits = [
                self.rtp_timeout_s
                    .map(|s| format!("  rtp_timeout_s: {s}\n")),
                self.max_rtp_packets_per_s
                    .map(|n| format!("  max_rtp_packets_per_s: {n}\n")),
            ]
            .into_iter()
            .flatten()
            .collect::<String>(),
            ring = self.ring_budget_ms,
            min_ring = self.min_ring_ms,
            max_calls = self.max_calls,
            overflow = self.overflow,
            drain = self
                .drain_timeout_s
                .map(|s| format!("  drain_timeout_s: {s}\n"))
                .unwrap_or_default(),
            flows = yaml_str(&self.flows_dir.to_string_lossy()),
            default_flow = self.default_flow,
            sounds = yaml_str(&self.sounds_dir.to_string_lossy()),
            level = level,
            format = self.log_format,
            admin = if self.admin { "127.0.0.1:0" } else { "~" },
            outages = self
                .outages_file
                .as_ref()
                .map(|p| yaml_str(&p.to_string_lossy()))
                .unwrap_or_else(|| "~".into()),
        );
        // The shipped flow's opening-hours branch names this schedule: open all day here,
        // so what callers hear does not depend on when the tests run.
        if !self.extra_yaml.contains("schedules:") {
            y.push_str("schedules:\n  support_hours: {timezone: UTC, open: {daily: 24h}}\n");
        }
        if !self.extra_yaml.is_empty() {
            y.push_str(&self.extra_yaml);
            if !y.ends_with('\n') {
                y.push('\n');
            }
        }
        y
    }

    /// Writes the config into `dir` as `ivrd.yaml` and returns its path.
    pub fn write_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ivrd.yaml");
        std::fs::write(&path, self.to_yaml())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

/// A running `ivrd run` process. Killed (SIGKILL, whole process group) on drop; if the
/// test is failing at that point, the daemon's stderr is printed.
pub struct Daemon {
    /// Declared first so the process dies before its temp dir goes away.
    proc: ChildGuard,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub opts: DaemonOpts,
    pub sip_udp: SocketAddr,
    pub sip_tcp: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The admin API, when enabled.
    pub admin_addr: Option<SocketAddr>,
    /// When the ready line was read.
    pub ready_at: Instant,
    stderr: Arc<Mutex<String>>,
    /// stdout after the ready line (the contract says there should be none).
    stdout_rest: Arc<Mutex<String>>,
    /// stderr of earlier processes of this daemon (before [`Daemon::kill9_and_restart`]).
    earlier_stderr: String,
}

/// The addresses announced by the ready line.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadyLine {
    pub sip_udp: SocketAddr,
    pub sip_tcp: SocketAddr,
    pub metrics: SocketAddr,
    /// `admin=ADDR` or `admin=off`; absent counts as off.
    pub admin: Option<SocketAddr>,
}

/// Parses `ivrd ready sip_udp=A sip_tcp=B metrics=C [admin=D|off]` (key order free, other
/// keys ignored).
pub fn parse_ready_line(line: &str) -> Result<ReadyLine, String> {
    let rest = line
        .trim_end()
        .strip_prefix("ivrd ready ")
        .ok_or_else(|| format!("not a ready line: {line:?}"))?;
    let get = |key: &str| -> Result<SocketAddr, String> {
        let v = rest
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("ready line lacks {key}=: {line:?}"))?;
        let addr: SocketAddr = v
            .parse()
            .map_err(|e| format!("ready line {key}={v:?}: {e}"))?;
        if addr.port() == 0 {
            return Err(format!(
                "ready line must carry the bound port, got {key}={v}"
            ));
        }
        Ok(addr)
    };
    let admin = match rest
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("admin="))
    {
        None | Some("off") => None,
        Some(_) => Some(get("admin")?),
    };
    Ok(ReadyLine {
        sip_udp: get("sip_udp")?,
        sip_tcp: get("sip_tcp")?,
        metrics: get("metrics")?,
        admin,
    })
}

/// A started `ivrd run` that printed its ready line.
struct Spawned {
    proc: ChildGuard,
    ready: ReadyLine,
    stderr: Arc<Mutex<String>>,
    stdout_rest: Arc<Mutex<String>>,
}

/// Starts `ivrd run --config CONFIG` (with `opts.env`) and waits for its ready line.
#[track_caller]
fn spawn(config_path: &Path, opts: &DaemonOpts) -> Spawned {
    let mut cmd = Command::new(ivrd_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let mut proc = ChildGuard::spawn(cmd, "ivrd");
    let stderr = collect_output(proc.child.stderr.take().expect("piped stderr"));

    // stdout: the first line goes through a channel; anything after it is kept.
    let stdout = proc.child.stdout.take().expect("piped stdout");
    let stdout_rest = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel::<String>();
    {
        let rest = stdout_rest.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            if reader.read_line(&mut first).unwrap_or(0) > 0 {
                let _ = tx.send(first);
            }
            // Anything after the ready line, as it comes (the contract says: nothing).
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                rest.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
    }

    let deadline = Instant::now() + READY_TIMEOUT;
    let line = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => break line,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed without a line: the daemon exited (or closed stdout).
                let status = proc.wait_timeout(Duration::from_secs(2));
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "ivrd exited ({status:?}) before printing its ready line\nconfig:\n{}\nstderr:\n{}",
                    opts.to_yaml(),
                    stderr.lock().unwrap()
                );
            }
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            thread::sleep(Duration::from_millis(100));
            panic!(
                "ivrd exited ({status}) before printing its ready line\nconfig:\n{}\nstderr:\n{}",
                opts.to_yaml(),
                stderr.lock().unwrap()
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "ivrd printed no ready line within {READY_TIMEOUT:?}\nconfig:\n{}\nstderr:\n{}",
                opts.to_yaml(),
                stderr.lock().unwrap()
            );
        }
    };
    let ready = parse_ready_line(&line).unwrap_or_else(|e| {
        panic!(
            "bad first stdout line: {e}\nstderr:\n{}",
            stderr.lock().unwrap()
        )
    });
    Spawned {
        proc,
        ready,
        stderr,
        stdout_rest,
    }
}

impl Daemon {
    /// A call from the test caller that this daemon has answered (200 OK).
    #[track_caller]
    pub fn answered_call(&self, opts: super::caller::CallerOpts) -> super::caller::Caller {
        let caller = super::caller::Caller::new(self.sip_udp, opts);
        let ok = caller.invite(Duration::from_secs(10));
        assert_eq!(ok.status(), Some(200), "{}", caller.sip_trace());
        caller
    }

    /// The length of one of this daemon's prompts.
    pub fn prompt_len(&self, name: &str) -> Duration {
        let (rate, samples) =
            super::audio::read_wav_pcm16(&self.opts.sounds_dir.join(format!("{name}.wav")));
        Duration::from_secs_f64(samples.len() as f64 / f64::from(rate))
    }

    /// Writes a config from `opts` into a fresh temp dir, starts `ivrd run --config` and
    /// waits (at most [`READY_TIMEOUT`]) for the ready line. Panics, with the daemon's
    /// stderr, if it exits or stays silent.
    #[track_caller]
    pub fn start(opts: DaemonOpts) -> Daemon {
        let dir = TempDir::new("ivrd");
        let config_path = opts.write_config(dir.path());
        let s = spawn(&config_path, &opts);
        Daemon {
            proc: s.proc,
            dir,
            config_path,
            opts,
            sip_udp: s.ready.sip_udp,
            sip_tcp: s.ready.sip_tcp,
            metrics_addr: s.ready.metrics,
            admin_addr: s.ready.admin,
            ready_at: Instant::now(),
            stderr: s.stderr,
            stdout_rest: s.stdout_rest,
            earlier_stderr: String::new(),
        }
    }

    /// `kill -9` the daemon, then start it again on the same config, temp dir and state
    /// (the SQLite file and the admin token survive); waits for the new ready line. The
    /// ports change (they are ephemeral); the old stderr is kept for failure reports.
    #[track_caller]
    pub fn kill9_and_restart(&mut self) {
        self.proc.kill();
        let old = self.stderr();
        self.earlier_stderr.push_str(&format!(
            "{old}\n----- killed with SIGKILL, restarted -----\n"
        ));
        let s = spawn(&self.config_path, &self.opts);
        self.proc = s.proc;
        self.sip_udp = s.ready.sip_udp;
        self.sip_tcp = s.ready.sip_tcp;
        self.metrics_addr = s.ready.metrics;
        self.admin_addr = s.ready.admin;
        self.ready_at = Instant::now();
        self.stderr = s.stderr;
        self.stdout_rest = s.stdout_rest;
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `KILL`...) to the daemon process only.
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run kill: {e}"));
        assert!(status.success(), "kill -s {name} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the daemon to exit; its exit status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.proc.wait_timeout(timeout)
    }

    /// The state directory (`state_dir: state`, relative to the config's temp dir).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The admin bearer token the daemon created on first start (`<state>/admin.token`).
    #[track_caller]
    pub fn admin_token(&self) -> String {
        let path = self.state_dir().join("admin.token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// The admin API's address (panics if the admin API is off).
    #[track_caller]
    pub fn admin(&self) -> SocketAddr {
        self.admin_addr
            .expect("admin API is off in this daemon's config")
    }

    /// An admin API request with the right bearer token: (status, body).
    #[track_caller]
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let auth = format!("Bearer {}", self.admin_token());
        self.api_auth(method, path, Some(&auth), body)
    }

    /// An admin API request with the given `Authorization` header value (or none).
    #[track_caller]
    pub fn api_auth(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut headers = Vec::new();
        if let Some(a) = authorization {
            headers.push(("Authorization", a.to_string()));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json".to_string()));
        }
        http_request(
            self.admin(),
            method,
            path,
            &headers,
            body,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.admin()))
    }

    /// `GET` an admin API path that must answer 200 with JSON; the parsed body.
    #[track_caller]
    pub fn api_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.api("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Starts with the default options.
    #[track_caller]
    pub fn start_default() -> Daemon {
        Daemon::start(DaemonOpts::default())
    }

    /// Everything the daemon (its current process) wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// stdout written after the ready line.
    pub fn stdout_after_ready(&self) -> String {
        self.stdout_rest.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        super::wait_for(timeout, || self.stderr().contains(needle).then_some(())).is_some()
    }

    /// Scrapes `/metrics` (panics if the endpoint does not answer 200).
    #[track_caller]
    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.metrics_addr, "/metrics", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET /metrics on {}: {e}", self.metrics_addr));
        assert_eq!(status, 200, "GET /metrics status; body:\n{body}");
        body
    }

    /// One sample from a fresh scrape, e.g. `metric("ivrd_calls_total{outcome=\"x\"}")`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics(), series)
    }

    /// Polls the metrics until `series` equals `want` (returns the last value seen).
    pub fn wait_metric(&self, series: &str, want: f64, timeout: Duration) -> Option<f64> {
        let mut last = None;
        let hit = super::wait_for(timeout, || {
            last = self.metric(series);
            (last == Some(want)).then_some(())
        });
        if hit.is_some() {
            Some(want)
        } else {
            last
        }
    }

    /// Runs `ivrd check --config FILE` (bounded to 30 s).
    pub fn check(config: &Path) -> Finished {
        let mut cmd = Command::new(ivrd_bin());
        cmd.arg("check").arg("--config").arg(config);
        let out = run_bounded(cmd, "ivrd check", Duration::from_secs(30));
        assert!(!out.timed_out, "ivrd check did not finish within 30 s");
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.proc.kill();
        if thread::panicking() {
            // Give the reader thread a moment to drain the pipe after the kill.
            thread::sleep(Duration::from_millis(50));
            eprintln!(
                "----- ivrd stderr ({}) -----\n{}{}\n----- end ivrd stderr -----",
                self.config_path.display(),
                self.earlier_stderr,
                self.stderr()
            );
        }
    }
}

/// A minimal HTTP/1.0 request over a std TcpStream: returns (status, body). `headers` are
/// added as given; a body gets its Content-Length.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    read_response(s)
}

/// Reads an HTTP/1.x response until the server closes: (status, body).
fn read_response(mut s: TcpStream) -> Result<(u16, String), String> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header/body separator in {text:?}"))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// A minimal HTTP/1.0 GET over a std TcpStream: returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    // HTTP/1.0 + Connection: close: the server ends the body by closing.
    read_response(s)
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = body.split_once("\r\n").ok_or("truncated chunk")?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size_line:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or("short chunk")?);
        body = rest.get(size + 2..).ok_or("short chunk")?;
    }
}

/// Splits a series selector `name{a="1",b="2"}` into its name and label pairs.
fn parse_series(series: &str) -> Result<(String, Vec<(String, String)>), String> {
    let series = series.trim();
    let Some(open) = series.find('{') else {
        return Ok((series.to_string(), Vec::new()));
    };
    let name = series[..open].to_string();
    let close = series.rfind('}').ok_or("missing '}'")?;
    let mut labels = Vec::new();
    let inner = &series[open + 1..close];
    let mut chars = inner.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(',') | Some(' ')) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return Err(format!("label {key:?} value not quoted in {series:?}"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err(format!("unterminated label value in {series:?}")),
            }
        }
        labels.push((key.trim().to_string(), value));
    }
    labels.sort();
    Ok((name, labels))
}

/// One Prometheus sample: name, labels sorted by name, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Every sample in a Prometheus text exposition.
pub fn metric_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The value follows the series; a timestamp may follow the value. Label values may
        // contain spaces, so split after the closing brace when there is one.
        let (series, rest) = match line.rfind('}') {
            Some(i) => (&line[..=i], &line[i + 1..]),
            None => match line.split_once(char::is_whitespace) {
                Some((s, r)) => (s, r),
                None => continue,
            },
        };
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        if let Ok((name, labels)) = parse_series(series) {
            out.push((name, labels, value));
        }
    }
    out
}

/// The value of one series, matched by name and exactly its label set (order-free).
/// `metric_value(text, "ivrd_calls_active")`, `metric_value(text,
/// "ivrd_rtp_packets_total{direction=\"out\"}")`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    let (name, labels) = parse_series(series).ok()?;
    metric_samples(text)
        .into_iter()
        .find(|(n, l, _)| *n == name && *l == labels)
        .map(|(_, _, v)| v)
}

/// Sum of every series with this name whose labels include `filter` (all series if empty).
pub fn metric_sum(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    metric_samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && filter
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}
