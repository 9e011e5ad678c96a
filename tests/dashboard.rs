//! The shipped Grafana dashboard (contrib/grafana/ivrd-dashboard.json) against a real
//! Prometheus (Debian's `prometheus`, started here on loopback) scraping a real ivrd and a
//! real `ivrd probe --listen`: every panel's query runs without error, names only metrics
//! ivrd (or its probe) exports, and the core panels have data after a call.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::caller::CallerOpts;
use support::daemon::{http_get, ivrd_bin};
use support::{free_tcp_port, wait_for, ChildGuard, Daemon, TempDir};

/// Every metric name the code declares (`ivrd_...` in the metrics module and the probe).
fn declared_metrics() -> Vec<String> {
    let mut names = Vec::new();
    for file in ["src/metrics/mod.rs", "src/probe/mod.rs"] {
        let text = std::fs::read_to_string(support::repo_root().join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"ivrd_") {
            let tail = &rest[at + 1..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap();
            names.push(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

fn query(prom: std::net::SocketAddr, expr: &str) -> Value {
    let q: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = http_get(
        prom,
        &format!("/api/v1/query?query={q}"),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("query {expr}: {e}"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status} {body}"));
    assert_eq!(v["status"], "success", "{expr}: {body}");
    v
}

#[test]
fn every_dashboard_query_runs_on_real_prometheus_and_the_core_panels_have_data() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_root().join("contrib/grafana/ivrd-dashboard.json"))
            .unwrap(),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let declared = declared_metrics();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("ivrd_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                declared.iter().any(|d| d == base),
                "{name} (in {e}) is not a metric ivrd exports"
            );
            rest = &tail[end..];
        }
    }

    let daemon = Daemon::start_default();
    // The probe as a long-running exporter, probing the daemon.
    let dir = TempDir::new("dash");
    let probes = dir.join("probes.yaml");
    std::fs::write(
        &probes,
        format!(
            "target: sip:100@{}\nprobes:\n  - name: billing by key\n    steps: [{{key: \"1\", at_ms: 600}}]\n    expect: {{transfer: sip:billing@pbx.example.com}}\n",
            daemon.sip_udp
        ),
    )
    .unwrap();
    let probe_port = free_tcp_port();
    let mut cmd = Command::new(ivrd_bin());
    cmd.arg("probe").arg(&probes).args([
        "--listen",
        &format!("127.0.0.1:{probe_port}"),
        "--every",
        "3600s",
    ]);
    let _probe = ChildGuard::spawn(cmd, "ivrd probe");
    let probe_addr: std::net::SocketAddr = format!("127.0.0.1:{probe_port}").parse().unwrap();
    wait_for(Duration::from_secs(60), || {
        let (_, body) = http_get(probe_addr, "/metrics", Duration::from_secs(2)).ok()?;
        body.contains("ivrd_probe_success").then_some(())
    })
    .expect("the probe's metrics");

    // Prometheus scraping both, every second.
    let prom_port = free_tcp_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: ivrd\n    static_configs: [{{targets: ['{}']}}]\n  - job_name: ivrd-probe\n    static_configs: [{{targets: ['{probe_addr}']}}]\n",
            daemon.metrics_addr
        ),
    )
    .unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg("--log.level=warn");
    let _prometheus = ChildGuard::spawn(cmd, "prometheus");
    let prom: std::net::SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    wait_for(Duration::from_secs(60), || {
        let v = query_opt(prom, "sum(up)")?;
        (v["data"]["result"][0]["value"][1] == "2").then_some(())
    })
    .expect("Prometheus scrapes ivrd and the probe");

    // A call now, so that rates and quantiles have something to show.
    let caller = daemon.answered_call(CallerOpts::default());
    caller.send_dtmf("1", 100);
    assert!(caller
        .wait_request("REFER", 0, Duration::from_secs(20))
        .is_some());
    let _ = caller.bye(Duration::from_secs(5));
    wait_for(Duration::from_secs(20), || {
        let v = query_opt(prom, "sum(ivrd_calls_total)")?;
        let n: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n >= 2.0).then_some(())
    })
    .expect("Prometheus has the calls");

    for e in &exprs {
        let expr = e
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "15s")
            .replace("$__range", "5m");
        query(prom, &expr);
    }
    let has_data = |expr: &str| {
        let v = query(prom, &expr.replace("$__rate_interval", "1m"));
        !v["data"]["result"].as_array().unwrap().is_empty()
    };
    for core in [
        "histogram_quantile(0.99, sum by (le) (rate(ivrd_call_answer_seconds_bucket[$__rate_interval])))",
        "sum by (outcome) (rate(ivrd_calls_total[$__rate_interval]))",
        "sum(ivrd_calls_active)",
        "min by (probe) (ivrd_probe_success)",
    ] {
        assert!(exprs.iter().any(|e| e == core), "the dashboard lost {core}");
        // Rates need two samples after the call: the next scrapes bring them.
        assert!(
            wait_for(Duration::from_secs(20), || has_data(core).then_some(())).is_some(),
            "no data for {core}"
        );
    }
    let success = query(prom, "min by (probe) (ivrd_probe_success)");
    assert_eq!(success["data"]["result"][0]["value"][1], "1", "{success}");
}

fn query_opt(prom: std::net::SocketAddr, expr: &str) -> Option<Value> {
    let q: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    let (_, body) = http_get(
        prom,
        &format!("/api/v1/query?query={q}"),
        Duration::from_secs(5),
    )
    .ok()?;
    serde_json::from_str(&body).ok()
}
