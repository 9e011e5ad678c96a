//! `ivrd check`: configs and flows are validated before callers meet them, and every error
//! is reported at once as `FILE:LINE: node 'NAME': message`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::daemon::ivrd_bin;
use support::{repo_flows_dir, repo_root, run_bounded, Daemon, DaemonOpts, TempDir};

/// A flow with one error of each kind the compiler must catch. Line numbers matter: the
/// expectations below refer to them.
const BROKEN_FLOW: &str = r#"version: 1
flow: broken
start: greet
escalation:
  target: "sip:supervisor@pbx.example.com"
nodes:
  greet:
    play: greeting
    next: main_menu
  main_menu:
    menu: no_such_prompt
    intents:
      billing: {dtmf: "1", goto: to_billing}
      jump: {dtmf: "2", goto: jump_node}
  to_billing:
    transfer: "billing at pbx"
  jump_node:
    goto: nowhere
  orphan:
    play: greeting
    hangup: true
"#;

/// A second flow file whose only problem is a misspelt field (`nxt`, line 7). It is a
/// separate file because an unknown field stops the parse of its file, and the other
/// errors above must still be reported.
const TYPO_FLOW: &str = "version: 1
flow: typo
start: a
nodes:
  a:
    play: greeting
    nxt: a
";

/// (file, line, node or None, a word the message must contain)
const EXPECTED: &[(&str, usize, Option<&str>, &str)] = &[
    ("broken.yaml", 11, Some("main_menu"), "no_such_prompt"), // missing prompt file
    ("broken.yaml", 16, Some("to_billing"), "transfer"),      // bad SIP URI
    ("broken.yaml", 18, Some("jump_node"), "nowhere"),        // unknown goto target
    ("broken.yaml", 19, Some("orphan"), "unreachable"),       // unreachable node
    ("typo.yaml", 7, None, "nxt"),                            // unknown field
];

fn write_flows(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("broken.yaml"), BROKEN_FLOW).unwrap();
    std::fs::write(dir.join("typo.yaml"), TYPO_FLOW).unwrap();
}

#[test]
fn check_accepts_the_shipped_flows_and_sounds() {
    let dir = TempDir::new("check-ok");
    // Strictly the repository's sounds here (no synthesised stand-ins).
    let config = DaemonOpts {
        flows_dir: repo_flows_dir(),
        sounds_dir: repo_root().join("sounds"),
        ..DaemonOpts::default()
    }
    .write_config(dir.path());
    let out = Daemon::check(&config);
    assert_eq!(
        out.code,
        Some(0),
        "ivrd check failed on the shipped config:\n{}",
        out.stderr
    );
}

#[test]
fn check_accepts_the_shipped_ivrd_yaml() {
    let out = Daemon::check(&repo_root().join("ivrd.yaml"));
    assert_eq!(
        out.code,
        Some(0),
        "ivrd check failed on the repository's ivrd.yaml:\n{}",
        out.stderr
    );
}

#[test]
fn check_reports_every_flow_error_with_file_line_and_node() {
    let dir = TempDir::new("check-broken");
    let flows = dir.join("flows");
    write_flows(&flows);
    let config = DaemonOpts {
        flows_dir: flows.clone(),
        default_flow: "broken".into(),
        ..DaemonOpts::default()
    }
    .write_config(dir.path());
    let out = Daemon::check(&config);
    assert_ne!(out.code, Some(0), "broken flows accepted:\n{}", out.stderr);
    assert!(
        out.code.is_some(),
        "ivrd check died from a signal:\n{}",
        out.stderr
    );

    let lines: Vec<&str> = out.stderr.lines().collect();
    let mut missing = Vec::new();
    for (file, line, node, word) in EXPECTED {
        let prefix = format!("{file}:{line}: ");
        let found = lines.iter().any(|l| {
            // FILE may be printed with its directory; it must end in the file name.
            l.split_once(&prefix).is_some_and(|(path, msg)| {
                (path.is_empty() || path.ends_with('/'))
                    && node.is_none_or(|n| msg.starts_with(&format!("node '{n}': ")))
                    && msg.contains(word)
            })
        });
        if !found {
            missing.push(format!(
                "{prefix}{}...{word}",
                node.map(|n| format!("node '{n}': ")).unwrap_or_default()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "errors not reported as FILE:LINE: node 'NAME': message:\n  {}\nstderr:\n{}",
        missing.join("\n  "),
        out.stderr
    );
}

#[test]
fn check_rejects_unknown_config_field_and_unknown_default_flow() {
    let dir = TempDir::new("check-config");
    let mut text = DaemonOpts::default().to_yaml();
    text = text.replace("  level: ", "  colour: always\n  level: ");
    text = text.replace("default: support-line", "default: no-such-flow");
    let config = dir.join("ivrd.yaml");
    std::fs::write(&config, text).unwrap();
    let out = Daemon::check(&config);
    assert_ne!(out.code, Some(0), "bad config accepted");
    assert!(
        out.stderr.contains("colour"),
        "unknown field not named:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("ivrd.yaml"),
        "config file not named:\n{}",
        out.stderr
    );
}

#[test]
fn run_with_broken_flows_exits_non_zero_without_ready_line() {
    let dir = TempDir::new("run-broken");
    let flows = dir.join("flows");
    write_flows(&flows);
    let config = DaemonOpts {
        flows_dir: flows,
        default_flow: "broken".into(),
        ..DaemonOpts::default()
    }
    .write_config(dir.path());
    let mut cmd = Command::new(ivrd_bin());
    cmd.arg("run").arg("--config").arg(&config);
    let out = run_bounded(cmd, "ivrd run", Duration::from_secs(20));
    assert!(
        !out.timed_out,
        "ivrd run kept running with broken flows:\n{}",
        out.stderr
    );
    assert_ne!(out.code, Some(0));
    assert!(
        !out.stdout.contains("ivrd ready"),
        "ready line printed for a broken config"
    );
    assert!(
        out.stderr.contains("broken.yaml:"),
        "errors not reported by run:\n{}",
        out.stderr
    );
}

/// With the embedding model configured, `ivrd check` refuses intents whose examples mean
/// nearly the same (callers saying one would be routed to the other), naming file, line
/// and node, although no phrase is shared or sounds alike.
#[test]
fn check_reports_intents_that_mean_the_same() {
    let Some(asr) = support::asr_yaml("") else {
        return;
    };
    let dir = TempDir::new("check-confusable");
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("close.yaml"),
        r#"version: 1
flow: close
start: menu
nodes:
  menu:
    menu: main_menu
    intents:
      leave: {dtmf: "1", phrases: [terminate my contract], goto: bye}
      stop: {dtmf: "2", phrases: [end my contract], goto: bye}
  bye: {play: goodbye, hangup: true}
"#,
    )
    .unwrap();
    let config = DaemonOpts {
        flows_dir: flows,
        default_flow: "close".into(),
        extra_yaml: asr,
        ..DaemonOpts::default()
    }
    .write_config(dir.path());
    let out = Daemon::check(&config);
    assert_ne!(
        out.code,
        Some(0),
        "confusable intents accepted:\n{}",
        out.stderr
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("close.yaml:7: node 'menu': ")
                && l.contains("intents 'leave' and 'stop' are confusable")),
        "{}",
        out.stderr
    );
}
