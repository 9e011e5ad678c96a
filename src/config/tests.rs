//! Tests of `config.rs`.

use super::*;

#[test]
fn log_filters_that_break_tracing_subscriber_are_refused() {
    // Found by fuzzing (config_yaml), both inside tracing-subscriber's EnvFilter:
    // - its directive parser slices the untrimmed directive with indices of the
    //   trimmed one and panics inside a multi-byte character (" a\u{a0}=trace");
    // - field filter values become regexes: the fuzzer's took 43 s to compile, this
    //   one over 3 minutes (debug build).
    let bomb = format!(
        "x[{{=D{}.{}*{}}}]=info",
        "D".repeat(40),
        ".".repeat(60),
        ".".repeat(40)
    );
    for level in [
        "info, a\\u00a0=trace",
        " a\\u00a0=trace",
        "ivrd[{call_id=x}]=debug",
        &bomb,
    ] {
        let text = format!("log:\n  level: \"{level}\"\n");
        let e = Config::parse(Path::new("c.yaml"), &text).unwrap_err();
        assert!(e.to_string().contains("log.level"), "{level}: {e}");
    }
    assert!(Config::parse(
        Path::new("c.yaml"),
        "log:\n  level: ivrd=debug,rsipstack=warn\n"
    )
    .is_ok());
}

#[test]
fn empty_file_gives_defaults_on_loopback() {
    let c = Config::parse(Path::new("/etc/ivrd/ivrd.yaml"), "").unwrap();
    assert_eq!(
        c.config.sip.udp.unwrap().ip(),
        IpAddr::from(Ipv4Addr::LOCALHOST)
    );
    assert_eq!(c.config.answer.ring_budget_ms, 4000);
    assert_eq!(c.flows_dir, PathBuf::from("/etc/ivrd/flows"));
    assert_eq!(c.sounds_dir, PathBuf::from("/etc/ivrd/sounds"));
}

#[test]
fn unknown_field_is_rejected_with_line() {
    let e = Config::parse(
        Path::new("c.yaml"),
        "answer:\n  ring_budget_ms: 3000\n  rings: 2\n",
    )
    .unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, Some(3));
    assert!(e.0[0].message.contains("rings"), "{}", e);
}

#[test]
fn every_semantic_error_is_reported() {
    let text = "answer:\n  ring_budget_ms: 50\n  min_ring_ms: 60\nlimits:\n  max_calls: 0\n";
    let e = Config::parse(Path::new("c.yaml"), text).unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
    assert_eq!(e.0[0].line, Some(2));
    assert_eq!(e.0[1].line, Some(3));
    assert_eq!(e.0[2].line, Some(5));
}

#[test]
fn webrtc_defaults_and_errors() {
    let c = Config::parse(Path::new("c.yaml"), "")
        .unwrap()
        .config
        .webrtc;
    assert!(c.enabled);
    assert_eq!(c.ice_ip, IpAddr::from(Ipv4Addr::LOCALHOST));
    assert_eq!(c.ports, PortRange::Ephemeral);
    assert_eq!(c.transfers, WebrtcTransfers::End);
    let text =
        "webrtc:\n  ice_ip: 0.0.0.0\n  ports: \"40000-40100\"\n  disconnect_timeout_ms: 10\n";
    let e = Config::parse(Path::new("c.yaml"), text).unwrap_err();
    assert_eq!(e.0.len(), 2, "{e}");
    assert_eq!(e.0[0].line, Some(2));
    assert_eq!(e.0[1].line, Some(4));
    let ok =
        "webrtc:\n  nat_1to1_ips: [203.0.113.7]\n  transfers: fail\n  ports: \"40000-40100\"\n";
    let c = Config::parse(Path::new("c.yaml"), ok)
        .unwrap()
        .config
        .webrtc;
    assert_eq!(c.transfers, WebrtcTransfers::Fail);
    assert_eq!(c.ports, PortRange::Range(40000, 40100));
    assert_eq!(c.nat_1to1_ips, [IpAddr::from([203, 0, 113, 7])]);
}

#[test]
fn port_ranges() {
    assert_eq!("0".parse::<PortRange>(), Ok(PortRange::Ephemeral));
    assert_eq!(
        "2000-2100".parse::<PortRange>(),
        Ok(PortRange::Range(2000, 2100))
    );
    assert!("2100-2000".parse::<PortRange>().is_err());
    assert!("x".parse::<PortRange>().is_err());
    let c = Config::parse(Path::new("c.yaml"), "media:\n  rtp_ports: 0\n").unwrap();
    assert_eq!(c.config.media.rtp_ports, PortRange::Ephemeral);
}

#[test]
fn type_errors_in_several_sections_are_reported_together_with_value_errors() {
    let text = "\
sip:
  udp: 127.0.0.1:5060
answer:
  ring_budget_ms: soon
limits:
  max_calls: 0
media:
  rtp_timeout_s: -3
  nonsense: 1
";
    let e = Config::parse(Path::new("c.yaml"), text).unwrap_err();
    let lines: Vec<(Option<usize>, &str)> =
        e.0.iter().map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert_eq!(lines[0].0, Some(4), "{e}");
    assert!(lines[0].1.contains("ring_budget_ms"), "{e}");
    assert_eq!(lines[1].0, Some(8), "the first problem in media: {e}");
    assert_eq!(lines[2], (Some(6), "limits.max_calls must be at least 1"));
}

#[test]
fn settings_are_found_in_their_own_section() {
    // `min_ring_ms` under an unrelated key first: the error must point into `answer`.
    let text = "\
flows:
  routes:
    min_ring_ms: main
answer:
  ring_budget_ms: 1000
  min_ring_ms: 2000
";
    let e = Config::parse(Path::new("c.yaml"), text).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].line, Some(6), "{e}");
}

#[test]
fn anchors_may_cross_sections() {
    let text = "\
sip:
  udp: &addr 127.0.0.1:5060
admin:
  listen: *addr
";
    let c = Config::parse(Path::new("c.yaml"), text).unwrap();
    assert_eq!(c.config.admin.listen, c.config.sip.udp);
}

#[test]
fn agents_and_queues_are_checked_together_with_their_lines() {
    let text = "\
agents:
  - {id: ann, uri: \"sip:ann@10.0.0.1\"}
  - {id: ann, uri: \"not a uri\"}
  - {id: bob, username: bob}
queues:
  support:
    agents: [ann, zed]
    ring_timeout_s: 0
callbacks:
  trunk: \"http://nope\"
";
    let e = Config::parse(Path::new("c.yaml"), text)
        .unwrap_err()
        .to_string();
    for want in [
        "agents: id 'ann' is given twice",
        "agents.ann: uri:",
        "agents.bob: give either uri",
        "c.yaml:6: queues.support: agent 'zed' is not in agents",
        "ring_timeout_s must be between 1 and 300",
        "c.yaml:10: callbacks.trunk:",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let good = "\
agents:
  - {id: ann, name: Ann, uri: \"sip:ann@10.0.0.1\"}
  - {id: bob, username: bob, password_file: bob.pw}
queues:
  support: {agents: [ann, bob], strategy: ring_all, callback_after_s: 120}
callbacks: {trunk: \"sip:10.0.0.5:5060\"}
";
    let c = Config::parse(Path::new("c.yaml"), good).unwrap().config;
    let q = &queues::queue_settings(&c.queues)[0];
    assert_eq!(q.strategy, crate::queue::Strategy::RingAll);
    assert_eq!(q.callback_after, Some(Duration::from_secs(120)));
    assert_eq!(c.callbacks.policy().max_per_queue, 50);
    assert!(
        queues::agent_settings(&c.agents)[1].uri.is_empty(),
        "bob registers"
    );
}

#[test]
fn worker_threads_default_to_one_and_a_typo_is_refused_with_its_line() {
    let ok = Config::parse(Path::new("c.yaml"), "limits:\n  worker_threads: 2\n").unwrap();
    assert_eq!(ok.config.limits.worker_threads, 2);
    let default = Config::parse(Path::new("c.yaml"), "limits:\n  max_calls: 10\n").unwrap();
    assert_eq!(default.config.limits.worker_threads, 1);
    let per_core = Config::parse(Path::new("c.yaml"), "limits:\n  worker_threads: 0\n").unwrap();
    assert_eq!(
        per_core.config.limits.worker_threads, 0,
        "0 stays: one per core"
    );
    let e = Config::parse(
        Path::new("c.yaml"),
        "log:\n  level: info\nlimits:\n  worker_threads: 20000\n",
    )
    .unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].line, Some(4), "{e}");
    assert!(e.0[0].message.contains("limits.worker_threads"), "{e}");
}
