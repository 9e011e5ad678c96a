//! `ivrd probe` against a running daemon, over real SIP and RTP on loopback: the probes
//! pass and report answer time, first audio, the outage notice (found in the audio) and
//! the time to a person, as a report and as Prometheus text; when the flow is changed to
//! route elsewhere (and reloaded), the same probe fails and says why.

mod support;

use std::process::Command;
use std::time::Duration;
use support::daemon::ivrd_bin;
use support::{metric_value, repo_flows_dir, run_bounded, Daemon, DaemonOpts, TempDir};

fn probes(daemon: &Daemon) -> String {
    format!(
        r#"target: sip:100@{}
probes:
  - name: billing by key
    steps: [{{key: "1", at_ms: 600}}]
    expect:
      transfer: sip:billing@pbx.example.com
      headers: {{X-IVR-Intent: billing}}
      answer_within_ms: 1000
      first_audio_within_ms: 2000
  - name: a person
    steps: [{{key: "0", at_ms: 600}}]
    expect:
      transfer: sip:supervisor@pbx.example.com
      human: true
      human_within_ms: 10000
  - name: the outage first
    expect:
      outage: "Our network is down in the north. We are fixing it."
      outage_within_ms: 8000
"#,
        daemon.sip_udp
    )
}

fn probe(dir: &TempDir, text: &str) -> (support::Finished, String) {
    let file = dir.join("probes.yaml");
    std::fs::write(&file, text).unwrap();
    let prom = dir.join("probe.prom");
    let _ = std::fs::remove_file(&prom);
    let mut cmd = Command::new(ivrd_bin());
    cmd.arg("probe").arg(&file).arg("--textfile").arg(&prom);
    let out = run_bounded(cmd, "ivrd probe", Duration::from_secs(180));
    let metrics = std::fs::read_to_string(&prom).unwrap_or_default();
    (out, metrics)
}

#[test]
fn probes_pass_then_fail_when_the_flow_routes_elsewhere() {
    // The shipped flows in a directory of our own, to change one.
    let flows = TempDir::new("flows");
    for f in ["support-line.yaml", "outages.yaml"] {
        std::fs::copy(repo_flows_dir().join(f), flows.join(f)).unwrap();
    }
    let daemon = Daemon::start(DaemonOpts {
        flows_dir: flows.path().to_path_buf(),
        ..DaemonOpts::default()
    });
    let (status, body) = daemon.api(
        "POST",
        "/api/outages",
        Some(r#"{"id": "net-north", "message": "Our network is down in the north. We are fixing it."}"#),
    );
    assert!(status == 200 || status == 201, "{status} {body}");

    let dir = TempDir::new("probe");
    let (out, metrics) = probe(&dir, &probes(&daemon));
    eprintln!("{}", out.stdout);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("3 passed, 0 failed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("transfer sip:billing@pbx.example.com"),
        "{}",
        out.stdout
    );
    let value = |series: &str| metric_value(&metrics, series);
    assert_eq!(
        value("ivrd_probe_success{probe=\"billing by key\"}"),
        Some(1.0),
        "{metrics}"
    );
    let answer = value("ivrd_probe_answer_seconds{probe=\"billing by key\"}").unwrap();
    assert!(answer < 1.0, "{answer}");
    let human = value("ivrd_probe_time_to_human_seconds{probe=\"a person\"}").unwrap();
    assert!(human > 0.5 && human < 10.0, "{human}");
    // The notice follows the greeting (about 2.9 s).
    let notice = value("ivrd_probe_outage_notice_seconds{probe=\"the outage first\"}").unwrap();
    assert!((2.0..6.0).contains(&notice), "outage notice at {notice} s");
    assert!(value("ivrd_probe_last_run_timestamp_seconds").is_some());

    // Billing now goes to another team: the probe notices.
    let flow = flows.join("support-line.yaml");
    let text = std::fs::read_to_string(&flow).unwrap();
    std::fs::write(
        &flow,
        text.replace(
            "transfer: sip:billing@pbx.example.com",
            "transfer: sip:sales@pbx.example.com",
        ),
    )
    .unwrap();
    let (status, body) = daemon.api("POST", "/api/reload", None);
    assert_eq!(status, 200, "{body}");
    let (out, metrics) = probe(&dir, &probes(&daemon));
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("FAIL billing by key")
            && out.stdout.contains(
                "transferred to sip:sales@pbx.example.com, expected sip:billing@pbx.example.com"
            ),
        "{}",
        out.stdout
    );
    assert_eq!(
        metric_value(&metrics, "ivrd_probe_success{probe=\"billing by key\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "ivrd_probe_success{probe=\"a person\"}"),
        Some(1.0)
    );
}

#[test]
fn a_probe_that_cannot_reach_its_target_fails_and_says_so() {
    let dir = TempDir::new("probe");
    let port = support::free_udp_port();
    let text = format!(
        "target: sip:100@127.0.0.1:{port}\ntimeout_s: 45\nprobes:\n  - name: nobody there\n    expect: {{transfer: sip:x@y}}\n"
    );
    let (out, metrics) = probe(&dir, &text);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAIL nobody there"), "{}", out.stdout);
    assert_eq!(
        metric_value(&metrics, "ivrd_probe_success{probe=\"nobody there\"}"),
        Some(0.0)
    );
    // A broken file is an error of its own (exit 2), with its line.
    let (out, _) = probe(&dir, "target: sip:x@y\nprobes:\n  - nme: typo\n");
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("probes.yaml:3"), "{}", out.stderr);
}
