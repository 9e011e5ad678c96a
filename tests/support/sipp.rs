//! Running SIPp scenarios from `tests/sipp/` and reading back what went over the wire.

use super::sip::SipMessage;
use super::{free_udp_port, free_udp_port_block, run_bounded, Finished, TempDir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The scenario directory.
pub fn scenario_dir() -> PathBuf {
    super::repo_root().join("tests").join("sipp")
}

/// A SIPp run to configure, then [`Sipp::run`].
#[derive(Clone, Debug)]
pub struct Sipp {
    scenario: PathBuf,
    target: SocketAddr,
    calls: u32,
    rate: f64,
    limit: u32,
    timeout: Duration,
    tcp: bool,
    service: String,
    extra: Vec<String>,
    /// Files copied into SIPp's working directory before it starts: (name, source).
    files: Vec<(String, PathBuf)>,
    /// The SIP port SIPp listens on (a UAS others must reach); default: any free one.
    port: Option<u16>,
}

/// Where a traced message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

/// One message from SIPp's `-trace_msg` log.
#[derive(Clone, Debug)]
pub struct Traced {
    /// Seconds (local wall clock, microsecond resolution) when SIPp logged it.
    pub at: f64,
    pub dir: Direction,
    pub msg: SipMessage,
}

/// What a SIPp run left behind.
pub struct SippRun {
    /// SIPp's exit code (0: all calls succeeded, 1: some failed, 99: none processed,
    /// 255/254: fatal errors); `None` if it had to be killed.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub messages: Vec<Traced>,
    pub messages_log: String,
    pub errors_log: String,
    pub screen: String,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
    /// Kept while the run is alive so a failing test leaves the logs on disk.
    pub dir: TempDir,
}

impl Sipp {
    /// `scenario` is a file name in `tests/sipp/`; `target` the daemon's SIP address.
    /// Defaults: 1 call, 10 calls/s, 10 simultaneous, 30 s global timeout, UDP, service
    /// (Request-URI user) `support`.
    pub fn new(scenario: &str, target: SocketAddr) -> Sipp {
        let scenario = scenario_dir().join(scenario);
        assert!(
            scenario.is_file(),
            "missing scenario {}",
            scenario.display()
        );
        Sipp {
            scenario,
            target,
            calls: 1,
            rate: 10.0,
            limit: 10,
            timeout: Duration::from_secs(30),
            tcp: false,
            service: "support".into(),
            extra: Vec::new(),
            files: Vec::new(),
            port: None,
        }
    }

    /// Total calls (`-m`).
    pub fn calls(mut self, n: u32) -> Sipp {
        self.calls = n;
        self
    }

    /// Calls per second (`-r`).
    pub fn rate(mut self, r: f64) -> Sipp {
        self.rate = r;
        self
    }

    /// Simultaneous calls (`-l`).
    pub fn limit(mut self, l: u32) -> Sipp {
        self.limit = l;
        self
    }

    /// Global timeout (`-timeout`, an error when reached: `-timeout_error`).
    pub fn timeout(mut self, t: Duration) -> Sipp {
        self.timeout = t;
        self
    }

    /// TCP transport (`-t t1`) instead of UDP.
    pub fn tcp(mut self) -> Sipp {
        self.tcp = true;
        self
    }

    /// Request-URI user part (`-s`).
    pub fn service(mut self, s: &str) -> Sipp {
        self.service = s.into();
        self
    }

    /// Listens on this SIP port (for UAS scenarios that ivrd calls: agents).
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.port = Some(port);
        self
    }

    /// Any other SIPp argument(s).
    pub fn arg(mut self, a: &str) -> Sipp {
        self.extra.push(a.into());
        self
    }

    /// Copies `source` into SIPp's working directory as `name` before the run, for
    /// scenarios that name a file relative to it (e.g. `<exec rtp_stream="caller.ulaw,..."/>`).
    pub fn file(mut self, name: &str, source: &std::path::Path) -> Sipp {
        self.files.push((name.into(), source.to_path_buf()));
        self
    }

    /// Runs SIPp to completion (hard limit: the global timeout plus 15 s).
    ///
    /// The ports SIPp binds are checked free a moment before it starts (`fixed_ports`: out
    /// of reach of port-0 binds), but another process binding ports explicitly, such as a
    /// developer's ivrd on the shipped `rtp_ports` range, can still take one in between. SIPp
    /// then exits at once with "Unable to bind ... errno = 98" having sent nothing: that start
    /// is retried on fresh ports (a few times, never a run that got as far as the network).
    pub fn run(self) -> SippRun {
        const STARTS: usize = 4;
        let mut start = 1;
        loop {
            let run = self.run_once();
            let lost_a_port = run.messages.is_empty()
                && run.code != Some(0)
                && (run.stderr.contains("errno = 98") || run.errors_log.contains("errno = 98"))
                // A SIP port the test chose is not picked again: retrying cannot help.
                && !(self.port.is_some() && run.stderr.contains("main socket"));
            if !lost_a_port || start == STARTS {
                return run;
            }
            eprintln!(
                "SIPp lost a port to another process before it could bind it; starting again ({start}/{STARTS}):\n{}",
                run.stderr.trim()
            );
            start += 1;
        }
    }

    fn run_once(&self) -> SippRun {
        let name = self
            .scenario
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sipp".into());
        let dir = TempDir::new(&format!("sipp-{name}"));
        for (file, source) in &self.files {
            std::fs::copy(source, dir.join(file))
                .unwrap_or_else(|e| panic!("copy {} for SIPp: {e}", source.display()));
        }
        let local_port = self.port.unwrap_or_else(free_udp_port);
        let media_port = free_udp_port_block();
        let timeout_s = self.timeout.as_secs().max(1);
        let mut args: Vec<String> = vec![
            self.target.to_string(),
            "-sf".into(),
            self.scenario.to_string_lossy().into_owned(),
            "-m".into(),
            self.calls.to_string(),
            "-r".into(),
            format!("{}", self.rate),
            "-l".into(),
            self.limit.to_string(),
            "-s".into(),
            self.service.clone(),
            // Loopback only, on ports nothing else uses (SIPp's defaults, 5060 and 6000,
            // would collide between tests running in parallel).
            "-i".into(),
            "127.0.0.1".into(),
            "-bind_local".into(),
            "-p".into(),
            local_port.to_string(),
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            media_port.to_string(),
            "-timeout".into(),
            format!("{timeout_s}s"),
            "-timeout_error".into(),
            "-nostdin".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            dir.join("messages.log").to_string_lossy().into_owned(),
            "-trace_err".into(),
            "-error_file".into(),
            dir.join("errors.log").to_string_lossy().into_owned(),
            "-trace_screen".into(),
            "-screen_file".into(),
            dir.join("screen.log").to_string_lossy().into_owned(),
        ];
        if self.tcp {
            args.push("-t".into());
            args.push("t1".into());
        }
        args.extend(self.extra.iter().cloned());
        let command = format!("sipp {}", args.join(" "));
        let mut cmd = Command::new("sipp");
        cmd.args(&args).current_dir(dir.path());
        let started = Instant::now();
        let Finished {
            code,
            timed_out,
            stdout,
            stderr,
        } = run_bounded(cmd, "sipp", self.timeout + Duration::from_secs(15));
        let elapsed = started.elapsed();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let messages_log = read("messages.log");
        let messages = parse_trace(&messages_log);
        SippRun {
            code,
            timed_out,
            elapsed,
            messages,
            messages_log,
            errors_log: read("errors.log"),
            screen: read("screen.log"),
            stdout,
            stderr,
            command,
            dir,
        }
    }
}

impl SippRun {
    /// Everything useful for a failure message.
    pub fn report(&self) -> String {
        let trace: Vec<String> = self
            .messages
            .iter()
            .map(|t| {
                let arrow = match t.dir {
                    Direction::Sent => "-->",
                    Direction::Received => "<--",
                };
                format!("{:.3} {arrow} {}", t.at, t.msg.summary())
            })
            .collect();
        format!(
            "command: {}\nexit: {:?} (timed out: {}) after {:?}\n--- trace ---\n{}\n--- errors.log ---\n{}\n--- screen ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code,
            self.timed_out,
            self.elapsed,
            trace.join("\n"),
            self.errors_log,
            self.screen,
            self.stderr
        )
    }

    /// Panics with the full report unless SIPp exited 0 (every call succeeded).
    #[track_caller]
    pub fn assert_success(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "SIPp scenario failed\n{}",
            self.report()
        );
    }

    /// Messages SIPp received.
    pub fn received(&self) -> impl Iterator<Item = &Traced> {
        self.messages
            .iter()
            .filter(|t| t.dir == Direction::Received)
    }

    /// Messages SIPp sent.
    pub fn sent(&self) -> impl Iterator<Item = &Traced> {
        self.messages.iter().filter(|t| t.dir == Direction::Sent)
    }

    /// Requests of `method` that SIPp received.
    pub fn received_requests<'a>(&'a self, method: &'a str) -> impl Iterator<Item = &'a Traced> {
        self.received()
            .filter(move |t| t.msg.method() == Some(method))
    }

    /// Responses with `code` to requests of `cseq_method` that SIPp received.
    pub fn received_responses<'a>(
        &'a self,
        code: u16,
        cseq_method: &'a str,
    ) -> impl Iterator<Item = &'a Traced> {
        self.received().filter(move |t| {
            t.msg.status() == Some(code)
                && t.msg.cseq().map(|(_, m)| m == cseq_method).unwrap_or(false)
        })
    }
}

/// Parses SIPp's message trace:
/// ```text
/// ----------------------------------------------- 2026-11-23 12:22:47.323304
/// UDP message sent (511 bytes):
///
/// INVITE sip:...
/// ```
/// (received ones read `UDP message received [311] bytes :`). Blocks that do not hold a
/// parseable SIP message are skipped.
pub fn parse_trace(log: &str) -> Vec<Traced> {
    const SEP: &str = "-----------------------------------------------";
    let mut out = Vec::new();
    let mut blocks: Vec<(String, Vec<&str>)> = Vec::new();
    for line in log.split('\n') {
        if let Some(stamp) = line.strip_prefix(SEP) {
            blocks.push((stamp.trim().to_string(), Vec::new()));
        } else if let Some((_, lines)) = blocks.last_mut() {
            lines.push(line);
        }
    }
    for (stamp, lines) in blocks {
        let Some(at) = parse_timestamp(&stamp) else {
            continue;
        };
        let Some((kind, rest)) = lines.split_first() else {
            continue;
        };
        let dir = if kind.contains("message sent") {
            Direction::Sent
        } else if kind.contains("message received") {
            Direction::Received
        } else {
            continue;
        };
        // Skip the blank line(s) between the kind line and the message.
        let text: Vec<&str> = rest
            .iter()
            .skip_while(|l| l.trim().is_empty())
            .copied()
            .collect();
        let mut raw = text.join("\n");
        // The trace keeps the CRLFs; split('\n') left the '\r's, which the parser copes
        // with. A body's Content-Length counts CRLF bytes, so restore the line ends fully.
        if !raw.contains('\r') {
            raw = raw.replace('\n', "\r\n");
        }
        if let Ok(msg) = SipMessage::parse(raw.as_bytes()) {
            out.push(Traced { at, dir, msg });
        }
    }
    out
}

/// `2026-11-23 12:22:47.323304` -> seconds since 1970 (as if UTC; only differences matter).
fn parse_timestamp(s: &str) -> Option<f64> {
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let ss = t.next()?.parse::<f64>().ok()?;
    let days = days_since_epoch(y, m, day)?;
    Some(days as f64 * 86400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

fn days_since_epoch(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for year in 1970..y {
        days += if leap(year) { 366 } else { 365 };
    }
    const MONTH: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    for (i, len) in MONTH.iter().enumerate().take((m - 1) as usize) {
        days += len + i64::from(i == 1 && leap(y));
    }
    Some(days + d - 1)
}
