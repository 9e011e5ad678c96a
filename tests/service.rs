//! ivrd as a Linux service, asserted from outside: the systemd unit (verify, security
//! rating), sd_notify readiness and watchdog pings on a socket the test provides, reload
//! (SIGHUP and the admin API) under load without dropping a call, old calls keeping their
//! flow version, invalid flows refused, and the SIGTERM drain.
//!
//! Flows come from `support::flows` (the short test flow) copied into a temp dir, so the
//! tests can change them under the running daemon.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use support::caller::{Caller, CallerOpts, SipEvent};
use support::daemon::ivrd_bin;
use support::flows::{self, QuickFlow};
use support::sip::header_uri;
use support::sipp::Sipp;
use support::{run_bounded, wait_for, Daemon, DaemonOpts, TempDir};

const SIP_WAIT: Duration = Duration::from_secs(5);
const OLD_TARGET: &str = "sip:billing-old@pbx.example.com";
const NEW_TARGET: &str = "sip:billing-new@pbx.example.com";

/// The quick flow with a long no-input timeout (calls sit in the menu without escalating)
/// and billing (key 1) transferring to `target`.
fn flow_to(target: &str) -> String {
    flows::quick_flow(&QuickFlow {
        no_input_ms: 60_000,
        billing_target: target.into(),
        ..QuickFlow::default()
    })
}

struct Setup {
    daemon: Daemon,
    flows: TempDir,
}

impl Setup {
    fn flow_file(&self) -> std::path::PathBuf {
        flows::flow_path(&self.flows, flows::QUICK)
    }
}

fn start(tune: impl FnOnce(&mut DaemonOpts)) -> Setup {
    let flows = flows::flows_dir(&[(flows::QUICK, &flow_to(OLD_TARGET))]);
    let mut opts = DaemonOpts {
        flows_dir: flows.path().to_path_buf(),
        default_flow: flows::QUICK.into(),
        sounds_dir: support::repo_root().join("sounds"),
        ..DaemonOpts::default()
    };
    tune(&mut opts);
    Setup {
        daemon: Daemon::start(opts),
        flows,
    }
}

/// Presses 1 (billing) and returns the REFER's target URI (without URI headers).
#[track_caller]
fn press_1_refer_target(caller: &Caller) -> (SipEvent, String) {
    caller.send_dtmf("1", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no REFER after key 1\n{}", caller.sip_trace()));
    let uri = header_uri(refer.msg.header("Refer-To").unwrap_or(""));
    let target = uri.split('?').next().unwrap_or("").to_string();
    (refer, target)
}

/// Writes the file so that its mtime changes even within the same clock tick.
fn rewrite(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------
// The systemd unit
// ---------------------------------------------------------------------------------------

/// The shipped unit with the binary path pointing at the binary under test (verify checks
/// that every Exec= program exists).
fn unit_for_test(dir: &TempDir) -> std::path::PathBuf {
    let unit = support::repo_root().join("systemd").join("ivrd.service");
    let text = std::fs::read_to_string(&unit).expect("systemd/ivrd.service");
    assert!(
        text.contains("/usr/local/bin/ivrd"),
        "the unit names /usr/local/bin/ivrd"
    );
    let bin = ivrd_bin().canonicalize().expect("ivrd binary path");
    let path = dir.join("ivrd.service");
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/ivrd", &bin.to_string_lossy()),
    )
    .unwrap();
    path
}

#[test]
fn systemd_unit_verifies_and_rates_ok_or_better() {
    let dir = TempDir::new("unit");
    let unit = unit_for_test(&dir);
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").arg(&unit).current_dir(dir.path());
    let out = run_bounded(cmd, "systemd-analyze verify", Duration::from_secs(60));
    // verify exits 0 on some problems (unknown keys, bad values are "ignoring" warnings),
    // so any line about the unit counts as a failure too.
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("ivrd.service"))
        .collect();
    assert!(
        out.code == Some(0) && complaints.is_empty(),
        "systemd-analyze verify {}: exit {:?}\n{}\n{}",
        unit.display(),
        out.code,
        out.stdout,
        out.stderr
    );

    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .current_dir(dir.path());
    let out = run_bounded(cmd, "systemd-analyze security", Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure line:\n{}", out.stdout));
    // "→ Overall exposure level for ivrd.service: 1.2 OK 🙂"
    let rating = line
        .rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    let score: f64 = rating[0].parse().expect("exposure score");
    let level = rating[1];
    eprintln!("systemd-analyze security: exposure {score} {level}");
    assert!(
        ["OK", "SAFE", "PERFECT"].contains(&level),
        "exposure level {level} ({score}), want OK or better:\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------
// sd_notify: READY, WATCHDOG, RELOADING, STOPPING
// ---------------------------------------------------------------------------------------

/// Reads notify datagrams until `want` is seen (or the timeout); everything seen, with times.
fn read_until(
    sock: &UnixDatagram,
    seen: &mut Vec<(Instant, String)>,
    want: impl Fn(&str) -> bool,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = want(&msg);
            seen.push((Instant::now(), msg));
            if hit {
                return true;
            }
        }
    }
    false
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

/// ~5 s: READY=1 once the daemon serves (OPTIONS answered at once), WATCHDOG=1 every third
/// of WATCHDOG_USEC, RELOADING=1 + READY=1 around SIGHUP, STOPPING=1 on SIGTERM.
#[test]
fn notify_socket_gets_ready_watchdog_reloading_and_stopping() {
    let dir = TempDir::new("notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut s = start(|o| {
        o.env = vec![
            ("NOTIFY_SOCKET".into(), path.to_string_lossy().into_owned()),
            ("WATCHDOG_USEC".into(), "1500000".into()),
        ];
    });
    let mut seen = Vec::new();
    assert!(
        read_until(
            &sock,
            &mut seen,
            |m| has_line(m, "READY=1"),
            Duration::from_secs(10)
        ),
        "no READY=1: {seen:?}"
    );
    assert!(
        !seen.iter().any(|(_, m)| has_line(m, "WATCHDOG=1")),
        "watchdog pings before READY=1: {seen:?}"
    );
    // Ready means serving: SIP, metrics and the admin API answer at once.
    let probe = Caller::new(s.daemon.sip_udp, CallerOpts::default());
    assert_eq!(probe.options(SIP_WAIT).status(), Some(200));
    assert!(s.daemon.metric("ivrd_calls_active").is_some());
    assert_eq!(
        support::daemon::http_get(s.daemon.admin(), "/readyz", SIP_WAIT).map(|r| r.0),
        Ok(200)
    );

    // Watchdog: WATCHDOG_USEC 1.5 s -> a ping every 0.5 s.
    let from = Instant::now();
    let mut pings = Vec::new();
    let mut buf = [0u8; 4096];
    while from.elapsed() < Duration::from_millis(2600) {
        if let Ok(n) = sock.recv(&mut buf) {
            if has_line(&String::from_utf8_lossy(&buf[..n]), "WATCHDOG=1") {
                pings.push(Instant::now());
            }
        }
    }
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("watchdog pings: {} in 2.6 s, gaps {gaps:?}", pings.len());
    assert!(pings.len() >= 4, "{} WATCHDOG=1 in 2.6 s", pings.len());
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(1000)),
        "a watchdog gap close to WATCHDOG_USEC: {gaps:?}"
    );

    // Reload: RELOADING=1 (with MONOTONIC_USEC, as Type=notify-reload wants), then READY=1.
    let mut seen = Vec::new();
    s.daemon.signal("HUP");
    assert!(
        read_until(&sock, &mut seen, |m| has_line(m, "RELOADING=1"), SIP_WAIT),
        "no RELOADING=1 after SIGHUP: {seen:?}"
    );
    let reloading = &seen.last().unwrap().1;
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 without MONOTONIC_USEC: {reloading:?}"
    );
    assert!(
        read_until(&sock, &mut seen, |m| has_line(m, "READY=1"), SIP_WAIT),
        "no READY=1 after the reload: {seen:?}"
    );

    s.daemon.signal("TERM");
    assert!(
        read_until(&sock, &mut seen, |m| has_line(m, "STOPPING=1"), SIP_WAIT),
        "no STOPPING=1 after SIGTERM: {seen:?}"
    );
    let status = s.daemon.wait_exit(SIP_WAIT).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

// ---------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------

/// ~15 s: 50 SIPp calls up while the flow changes and SIGHUP arrives: none fails; a call
/// from before the reload still transfers by the old flow, a call from after by the new.
#[test]
fn sighup_reload_under_50_calls_drops_none_and_old_calls_keep_old_flow() {
    const LOAD: u32 = 50;
    let s = start(|_| {});
    let d = &s.daemon;
    let old_call = d.answered_call(CallerOpts::default());

    let target = d.sip_udp;
    let load = thread::spawn(move || {
        Sipp::new("long_call.xml", target)
            .calls(LOAD)
            .rate(50.0)
            .limit(LOAD)
            .arg("-d")
            .arg("9000")
            .timeout(Duration::from_secs(40))
            .run()
    });
    let all_up = d.wait_metric(
        "ivrd_calls_active",
        f64::from(LOAD + 1),
        Duration::from_secs(15),
    );
    assert_eq!(
        all_up,
        Some(f64::from(LOAD + 1)),
        "the SIPp calls did not all come up"
    );

    rewrite(&s.flow_file(), &flow_to(NEW_TARGET));
    let reloaded_at = Instant::now();
    d.signal("HUP");
    assert!(
        d.wait_for_log("reloaded on SIGHUP", SIP_WAIT),
        "no reload logged\n{}",
        d.stderr()
    );
    eprintln!("reload took {:?}", reloaded_at.elapsed());
    assert_eq!(
        d.metric("ivrd_calls_active"),
        Some(f64::from(LOAD + 1)),
        "calls lost by the reload"
    );
    let new_call = d.answered_call(CallerOpts::default());

    let (_, old) = press_1_refer_target(&old_call);
    let (_, new) = press_1_refer_target(&new_call);
    assert_eq!(
        old, OLD_TARGET,
        "a call from before the reload keeps its flow"
    );
    assert_eq!(
        new, NEW_TARGET,
        "a call from after the reload gets the new flow"
    );
    let _ = old_call.bye(SIP_WAIT);
    let _ = new_call.bye(SIP_WAIT);

    let run = load.join().expect("SIPp thread");
    run.assert_success();
    assert_eq!(
        run.received_responses(200, "BYE").count() as u32,
        LOAD,
        "{}",
        run.report()
    );
    let metrics = d.metrics();
    assert_eq!(
        support::metric_value(
            &metrics,
            "ivrd_calls_total{outcome=\"failed\",transport=\"sip\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
}

/// ~6 s: a broken flow + SIGHUP: the error (file:line) is logged, the running flows stay and
/// new calls still follow them; the admin API reports the same error with 422; once fixed,
/// `POST /api/reload` swaps it in.
#[test]
fn invalid_flow_reload_keeps_old_flow_and_reports_file_and_line() {
    let s = start(|_| {});
    let d = &s.daemon;
    let broken = flow_to(NEW_TARGET).replacen("on_fail: menu", "on_fail: nowhere", 1);
    let line = broken
        .lines()
        .position(|l| l.contains("nowhere"))
        .expect("the broken line")
        + 1;
    rewrite(&s.flow_file(), &broken);
    d.signal("HUP");
    assert!(
        d.wait_for_log("reload refused, the running flows stay", SIP_WAIT),
        "refused reload not logged\n{}",
        d.stderr()
    );
    let located = format!("{}.yaml:{line}", flows::QUICK);
    assert!(
        wait_for(SIP_WAIT, || d.stderr().contains(&located).then_some(())).is_some(),
        "the log does not locate the error ({located})\n{}",
        d.stderr()
    );
    assert!(d.stderr().contains("nowhere"));

    let caller = d.answered_call(CallerOpts::default());
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    let (_, target) = press_1_refer_target(&caller);
    assert_eq!(target, OLD_TARGET, "the broken flow must not be used");
    let _ = caller.bye(SIP_WAIT);

    let (status, body) = d.api("POST", "/api/reload", None);
    assert_eq!(status, 422, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&located) && msg.contains("nowhere"),
        "422 body should name {located}: {body}"
    );
    // The CLI reports it too, with a non-zero exit.
    let mut cmd = Command::new(ivrd_bin());
    cmd.args(["reload", "--config"])
        .arg(&d.config_path)
        .arg("--url")
        .arg(format!("http://{}", d.admin()));
    let out = run_bounded(cmd, "ivrd reload", Duration::from_secs(30));
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains(&located), "{out:?}");

    // Fixed: the API reload takes it, new calls follow it.
    rewrite(&s.flow_file(), &flow_to(NEW_TARGET));
    let (status, body) = d.api("POST", "/api/reload", None);
    assert_eq!(status, 200, "{body}");
    let caller = d.answered_call(CallerOpts::default());
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    let (_, target) = press_1_refer_target(&caller);
    assert_eq!(target, NEW_TARGET);
    let _ = caller.bye(SIP_WAIT);
}

// ---------------------------------------------------------------------------------------
// Drain
// ---------------------------------------------------------------------------------------

/// ~5 s: SIGTERM with a call up: new INVITEs get 503 + Retry-After, the call goes on (RTP,
/// transfer), and the daemon exits 0 as soon as it ends, long before the drain timeout.
#[test]
fn sigterm_refuses_new_calls_lets_the_call_finish_then_exits_0() {
    let mut s = start(|o| o.drain_timeout_s = Some(30));
    let caller = s.daemon.answered_call(CallerOpts::default());
    assert!(caller.wait_rtp(10, SIP_WAIT), "no RTP before SIGTERM");

    let term_at = Instant::now();
    s.daemon.signal("TERM");
    assert!(
        s.daemon.wait_for_log("draining", SIP_WAIT),
        "no drain logged\n{}",
        s.daemon.stderr()
    );

    let late = Caller::new(s.daemon.sip_udp, CallerOpts::default());
    let refused = late.invite(SIP_WAIT);
    assert_eq!(refused.status(), Some(503), "{}", late.sip_trace());
    let retry = refused
        .header("Retry-After")
        .unwrap_or_else(|| panic!("503 without Retry-After:\n{refused}"));
    assert!(
        retry
            .trim()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .parse::<u32>()
            .is_ok(),
        "Retry-After {retry:?}"
    );
    assert_eq!(
        s.daemon
            .metric("ivrd_calls_total{outcome=\"rejected_draining\",transport=\"sip\"}"),
        Some(1.0)
    );

    // The call in progress still hears the daemon...
    let before = caller.rtp().len();
    thread::sleep(Duration::from_millis(600));
    let got = caller.rtp().len() - before;
    assert!(got >= 20, "only {got} RTP packets in 600 ms while draining");
    // ...in-dialog requests still work (hold and resume)...
    assert_eq!(caller.reinvite("sendonly", SIP_WAIT).status(), Some(200));
    assert_eq!(caller.reinvite("sendrecv", SIP_WAIT).status(), Some(200));
    // Off hold once its audio comes again.
    caller.wait_audio(Some(Instant::now()), Duration::from_millis(100));
    // ...and it can still be transferred; then the daemon leaves it.
    let (_, target) = press_1_refer_target(&caller);
    assert_eq!(target, OLD_TARGET);
    let bye = caller
        .wait_request("BYE", 0, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no BYE after the transfer\n{}", caller.sip_trace()));

    let status = s
        .daemon
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after the last call ended"));
    let exited = Instant::now();
    eprintln!(
        "SIGTERM -> exit {:?}; last call's BYE -> exit {:?}",
        exited - term_at,
        exited - bye.at
    );
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        exited - bye.at < Duration::from_secs(3),
        "exit {:?} after the last call ended",
        exited - bye.at
    );
    assert!(s.daemon.stderr().contains("stopped"));
}

/// ~2 s: while draining, `/readyz` says "not ready" (503) and so do SIP OPTIONS probes (a
/// load balancer's, Kamailio's dispatcher) so they stop sending calls; `/healthz` stays 200
/// (the process is alive and finishing).
#[test]
fn readyz_and_options_are_503_while_draining() {
    let mut s = start(|o| o.drain_timeout_s = Some(30));
    let admin = s.daemon.admin();
    let caller = s.daemon.answered_call(CallerOpts::default());
    let get = |path: &str| support::daemon::http_get(admin, path, SIP_WAIT).map(|r| r.0);
    let probe = Caller::new(s.daemon.sip_udp, CallerOpts::default());
    assert_eq!(get("/readyz"), Ok(200));
    assert_eq!(probe.options(SIP_WAIT).status(), Some(200));
    s.daemon.signal("TERM");
    assert!(s.daemon.wait_for_log("draining", SIP_WAIT));
    assert_eq!(get("/healthz"), Ok(200), "alive while draining");
    assert_eq!(get("/readyz"), Ok(503), "ready while draining");
    let options = probe.options(SIP_WAIT);
    assert_eq!(options.status(), Some(503), "{options}");
    assert!(options.header("Retry-After").is_some(), "{options}");
    assert_eq!(caller.bye(SIP_WAIT).status(), Some(200));
    let status = s
        .daemon
        .wait_exit(SIP_WAIT)
        .expect("exit after the last call");
    assert_eq!(status.code(), Some(0));
}

/// ~3 s: a second SIGTERM during the drain exits at once, calls or not.
#[test]
fn second_sigterm_during_drain_exits_at_once() {
    let mut s = start(|o| o.drain_timeout_s = Some(300));
    let caller = s.daemon.answered_call(CallerOpts::default());
    s.daemon.signal("TERM");
    assert!(s.daemon.wait_for_log("draining", SIP_WAIT));
    thread::sleep(Duration::from_millis(200));
    assert!(s.daemon.is_running(), "exited with a call in progress");
    let second = Instant::now();
    s.daemon.signal("TERM");
    let status = s
        .daemon
        .wait_exit(Duration::from_secs(3))
        .expect("still running 3 s after the second SIGTERM");
    eprintln!("second SIGTERM -> exit {:?}", second.elapsed());
    assert!(second.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(0), "{status}");
    drop(caller);
}

/// ~4 s: calls still up when the drain timeout passes are ended with BYE, then exit 0.
#[test]
fn drain_timeout_ends_remaining_calls_with_bye_and_exits_0() {
    let mut s = start(|o| o.drain_timeout_s = Some(2));
    let caller = s.daemon.answered_call(CallerOpts::default());
    let term_at = Instant::now();
    s.daemon.signal("TERM");
    let bye = caller
        .wait_request("BYE", 0, Duration::from_secs(6))
        .unwrap_or_else(|| panic!("no BYE at the drain timeout\n{}", caller.sip_trace()));
    let after = bye.at - term_at;
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(4),
        "BYE {after:?} after SIGTERM, drain timeout 2 s"
    );
    let status = s
        .daemon
        .wait_exit(SIP_WAIT)
        .expect("still running after the drain timeout");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// The probe's units (a oneshot and its timer) verify; the timer names the service.
#[test]
fn probe_units_verify() {
    let dir = TempDir::new("probe-unit");
    let bin = ivrd_bin().canonicalize().expect("ivrd binary path");
    for unit in ["ivrd-probe.service", "ivrd-probe.timer"] {
        let text = std::fs::read_to_string(support::repo_root().join("systemd").join(unit))
            .unwrap_or_else(|e| panic!("systemd/{unit}: {e}"));
        std::fs::write(
            dir.join(unit),
            text.replace("/usr/local/bin/ivrd", &bin.to_string_lossy()),
        )
        .unwrap();
    }
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify")
        .arg(dir.join("ivrd-probe.service"))
        .arg(dir.join("ivrd-probe.timer"))
        .current_dir(dir.path());
    let out = run_bounded(cmd, "systemd-analyze verify", Duration::from_secs(60));
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("ivrd-probe"))
        .collect();
    assert!(
        out.code == Some(0) && complaints.is_empty(),
        "systemd-analyze verify: exit {:?}\n{}\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
}
