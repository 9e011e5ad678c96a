//! Flows admins can write, test and see, asserted from outside: `ivrd test` on the shipped
//! flows passes and a broken expectation fails with its line (and JUnit XML); every shipped
//! flow draws as SVG, and the admin page's picture counts real calls; a returning caller
//! (by caller ID) is greeted by name in real audio and remembered across a restart, then
//! erased; CSV imports; an upset caller (real speech, real Whisper) hears the apology and is
//! offered a person, whose transfer says why.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::audio;
use support::caller::{AudioSource, CallerOpts};
use support::daemon::ivrd_bin;
use support::sip::header_uri;
use support::{repo_flows_dir, run_bounded, wait_for, Daemon, DaemonOpts, TempDir};

const SIP_WAIT: Duration = Duration::from_secs(5);

/// A copy of the shipped flows directory (flows and their tests) to change freely.
fn flows_copy() -> TempDir {
    let dir = TempDir::new("flows");
    for entry in std::fs::read_dir(repo_flows_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap().to_str().unwrap())).unwrap();
        }
    }
    dir
}

/// A config for offline tools over `flows` (with the embedding model when there is one),
/// with the shipped config's schedules, which the shipped flow tests are written for.
fn tool_config(dir: &TempDir, flows: &std::path::Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(support::repo_root().join("ivrd.yaml")).unwrap();
    let at = shipped
        .find("\nschedules:")
        .expect("ivrd.yaml has schedules")
        + 1;
    let schedules: String = shipped[at..]
        .lines()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with(' ') || l.is_empty())
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let opts = DaemonOpts {
        flows_dir: flows.to_path_buf(),
        extra_yaml: schedules + &support::asr_yaml("").unwrap_or_default(),
        ..DaemonOpts::default()
    };
    opts.write_config(dir.path())
}

fn ivrd(args: &[&str]) -> support::Finished {
    let mut cmd = Command::new(ivrd_bin());
    cmd.args(args);
    run_bounded(cmd, "ivrd", Duration::from_secs(120))
}

#[test]
fn flow_tests_pass_and_a_broken_expectation_names_its_line() {
    let flows = flows_copy();
    let dir = TempDir::new("cfg");
    let cfg = tool_config(&dir, flows.path());
    let cfg = cfg.to_str().unwrap();
    let junit = dir.join("junit.xml");
    let ok = ivrd(&["test", "--config", cfg, "--junit", junit.to_str().unwrap()]);
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("0 failed"), "{}", ok.stdout);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit XML parses");
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert!(cases >= 20, "{cases} test cases in {xml}");
    assert_eq!(doc.root_element().attribute("failures"), Some("0"));

    // Break one expectation: the case for key 2 now expects another target.
    let file = flows.join("support-line.test.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let at = text.find("  - name: key 2 is technical support").unwrap();
    let broken = format!(
        "{}{}",
        &text[..at],
        text[at..].replacen(
            "sip:support@pbx.example.com",
            "sip:sales@pbx.example.com",
            1
        )
    );
    let line = broken[..at].lines().count()
        + broken[at..]
            .lines()
            .position(|l| l.contains("sip:sales@"))
            .unwrap()
        + 1;
    std::fs::write(&file, broken).unwrap();
    let bad = ivrd(&["test", "--config", cfg, "--junit", junit.to_str().unwrap()]);
    assert_eq!(bad.code, Some(1), "{}\n{}", bad.stdout, bad.stderr);
    let want = format!(
        "support-line.test.yaml:{line}: case \"key 2 is technical support\": transfer: expected \"sip:sales@pbx.example.com\", got \"sip:support@pbx.example.com\""
    );
    assert!(bad.stdout.contains(&want), "wanted {want}\n{}", bad.stdout);
    assert!(bad.stdout.contains("1 failed"), "{}", bad.stdout);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("failures"), Some("1"));
    let failed: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]
        .attribute("message")
        .unwrap()
        .contains(&format!(":{line}:")));
}

/// Every line of text of an SVG (a node's label is a `<text>` of `<tspan>` lines; an
/// edge's a `<textPath>`).
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG: {e}\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("tspan") || n.has_tag_name("textPath"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

#[test]
fn every_shipped_flow_draws_and_the_admin_page_counts_calls() {
    let dir = TempDir::new("cfg");
    let cfg = tool_config(&dir, &repo_flows_dir());
    let cfg = cfg.to_str().unwrap();
    let mut drawn = 0;
    for entry in std::fs::read_dir(repo_flows_dir()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".yaml") || name.ends_with(".test.yaml") || name == "outages.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let flow = text
            .lines()
            .find_map(|l| l.strip_prefix("flow: "))
            .unwrap()
            .trim()
            .to_string();
        let svg = ivrd(&["graph", "--config", cfg, "--format", "svg", &flow]);
        assert_eq!(svg.code, Some(0), "{}", svg.stderr);
        let texts = svg_texts(&svg.stdout);
        // Every node of the flow is drawn under its name.
        let nodes: Vec<String> = serde_yaml::from_str::<serde_yaml::Value>(&text).unwrap()["nodes"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        for n in &nodes {
            assert!(
                texts
                    .iter()
                    .any(|t| t == n || t.ends_with(&format!(": {n}"))),
                "node {n} not drawn in {name}: {texts:?}"
            );
        }
        let dot = ivrd(&["graph", "--config", cfg, "--format", "dot", &flow]);
        assert!(dot.stdout.starts_with("digraph"), "{}", dot.stdout);
        drawn += 1;
    }
    assert!(drawn >= 1);

    // The admin page's picture shows the calls each node had in the last hour.
    let daemon = Daemon::start_default();
    let caller = daemon.answered_call(CallerOpts::default());
    caller.send_dtmf("1", 100);
    let refer = caller.wait_request("REFER", 0, Duration::from_secs(20));
    assert!(refer.is_some(), "{}", caller.sip_trace());
    let _ = caller.bye(SIP_WAIT);
    let (status, page) = daemon.api_auth("GET", "/flows", None, None);
    assert_eq!(status, 200);
    assert!(page.contains("/api/flows/"), "{page}");
    let (status, svg) = daemon.api("GET", "/api/flows/support-line.svg", None);
    assert_eq!(status, 200, "{svg}");
    let texts = svg_texts(&svg);
    assert!(texts.iter().any(|t| t == "1 calls"), "{texts:?}");
    let (status, _) = daemon.api_auth("GET", "/api/flows/support-line.svg", None, None);
    assert_eq!(status, 401, "the picture needs the token");
}

#[test]
fn a_returning_caller_is_greeted_by_name_remembered_and_erased() {
    let mut daemon = Daemon::start_default();
    let number = "5551234";
    let (status, body) = daemon.api(
        "PUT",
        &format!("/api/callers/{number}"),
        Some(r#"{"name": "Ann"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = daemon.api("PUT", "/api/callers/anonymous", Some(r#"{"name": "X"}"#));
    assert_eq!(status, 400);

    let sounds = &daemon.opts.sounds_dir;
    let greeting = audio::load_8k(&sounds.join("greeting.wav"));
    let welcome = audio::tts_reference("Welcome back, Ann.");
    let opts = CallerOpts {
        from_user: number.into(),
        ..CallerOpts::default()
    };
    // First call: greeted by name, then the menu (nothing to ask about yet); key 1.
    let caller = daemon.answered_call(opts.clone());
    let want = (greeting.len() + welcome.len()) as f64 / 8000.0 + 1.0;
    wait_for(Duration::from_secs(15), || {
        (caller.heard().seconds() >= want).then_some(())
    })
    .expect("greeting and welcome heard");
    let heard = caller.heard();
    let (g, w) = (heard.find(&greeting), heard.find(&welcome));
    eprintln!("greeting {g:?}\nwelcome  {w:?}");
    assert!(
        g.ncc >= 0.9 && w.ncc >= 0.9,
        "greeting {g:?}, welcome {w:?}"
    );
    assert!(
        g.offset + greeting.len() <= w.offset + 800,
        "the welcome follows the greeting"
    );
    caller.send_dtmf("1", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    assert_eq!(refer.msg.header("X-IVR-Caller-Name"), Some("Ann"));
    let _ = caller.bye(SIP_WAIT);
    let remembered = wait_for(Duration::from_secs(5), || {
        let v = daemon.api_json(&format!("/api/callers/{number}"));
        (v["last_intent"] == "billing").then_some(v)
    })
    .expect("the call's intent is remembered");
    assert_eq!(remembered["name"], "Ann");

    // It survives kill -9; the next call is asked about the bill again, and 1 is billing.
    daemon.kill9_and_restart();
    let caller = daemon.answered_call(opts);
    let again = audio::tts_reference(
        "Are you calling about your bill again? Say yes or press 1. Otherwise, say no or press 2.",
    );
    let want = (greeting.len() + welcome.len() + again.len()) as f64 / 8000.0 + 0.5;
    wait_for(Duration::from_secs(20), || {
        (caller.heard().seconds() >= want).then_some(())
    })
    .expect("the question heard");
    let q = caller.heard().find(&again);
    assert!(q.ncc >= 0.9, "the bill question: {q:?}");
    caller.send_dtmf("1", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    let node = refer.msg.header("X-IVR-Node").unwrap_or("");
    assert!(
        node.contains("bill_again") && !node.contains("main_menu"),
        "{node}"
    );
    assert!(header_uri(refer.msg.header("Refer-To").unwrap()).starts_with("sip:billing@"));
    let _ = caller.bye(SIP_WAIT);
    // The call's own end writes the caller's record once more; an erase before that write
    // would be followed by a fresh record, so wait until the second call is remembered.
    wait_for(Duration::from_secs(5), || {
        let v = daemon.api_json(&format!("/api/callers/{number}"));
        (v["last_call_at"].as_i64() > remembered["last_call_at"].as_i64()).then_some(())
    })
    .expect("the second call is remembered");

    // Erased on request: gone, audited by tag, and the number never in the logs.
    let (status, _) = daemon.api("DELETE", &format!("/api/callers/{number}"), None);
    assert_eq!(status, 204);
    let (status, _) = daemon.api("GET", &format!("/api/callers/{number}"), None);
    assert_eq!(status, 404);
    let audit = daemon.api_json("/api/audit");
    let erase = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "callers.erase")
        .expect("the erase is audited");
    assert!(
        erase["target"].as_str().unwrap().starts_with("caller-"),
        "{erase}"
    );
    assert!(!audit.to_string().contains(number), "{audit}");
    assert!(
        !daemon.stderr().contains(number),
        "the number reached the logs"
    );
}

#[test]
fn callers_are_imported_from_csv_all_or_nothing() {
    let daemon = Daemon::start_default();
    let csv = "number,name,notes\n5550001,Ann,\"VIP, prefers mornings\"\n+15550002,Bob,\n";
    let (status, body) = post_csv(&daemon, csv);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"imported\":2"), "{body}");
    let ann = daemon.api_json("/api/callers/5550001");
    assert_eq!(ann["notes"], "VIP, prefers mornings");
    let list = daemon.api_json("/api/callers");
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    // A bad row refuses the whole file, naming its line; nothing changes.
    let (status, body) = post_csv(&daemon, "number,name\n5550003,Cy\nnobody,Dee\n");
    assert_eq!(status, 400);
    assert!(
        body.contains("line 3") && body.contains("'nobody'"),
        "{body}"
    );
    let (status, _) = daemon.api("GET", "/api/callers/5550003", None);
    assert_eq!(status, 404);
}

fn post_csv(daemon: &Daemon, csv: &str) -> (u16, String) {
    support::daemon::http_request(
        daemon.admin(),
        "POST",
        "/api/callers/import",
        &[
            ("Authorization", format!("Bearer {}", daemon.admin_token())),
            ("Content-Type", "text/csv".into()),
        ],
        Some(csv),
        Duration::from_secs(10),
    )
    .unwrap()
}

#[test]
fn an_upset_caller_hears_the_apology_and_is_offered_a_person() {
    let Some(asr) = support::asr_yaml("  workers: 1\n  threads_per_worker: 1\n  queue: 4\n") else {
        return;
    };
    let daemon = Daemon::start(DaemonOpts {
        extra_yaml: asr,
        ..DaemonOpts::default()
    });
    // Silence through the greeting, then the caller's words over the menu question.
    let dir = TempDir::new("upset");
    let wav = dir.join("upset.wav");
    let mut espeak = Command::new("espeak-ng");
    espeak
        .args(["-v", "en-us", "-s", "140", "-w"])
        .arg(&wav)
        .arg("This is ridiculous. It is the third time I am calling.");
    assert_eq!(
        run_bounded(espeak, "espeak-ng", Duration::from_secs(30)).code,
        Some(0)
    );
    let mut samples = vec![0i16; 4000 * 8];
    samples.extend(audio::load_8k(&wav));
    let caller = daemon.answered_call(CallerOpts {
        audio: AudioSource::Samples(Arc::new(samples)),
        ..CallerOpts::default()
    });
    let apology = audio::tts_reference(
        "I am sorry this has been so frustrating. Let me get you to a person right away.",
    );
    let found = wait_for(Duration::from_secs(40), || {
        let m = caller.heard().find(&apology);
        (m.ncc >= 0.9).then_some(m)
    });
    assert!(
        found.is_some(),
        "no apology heard: {:?}\n{}",
        caller.heard().find(&apology),
        daemon.stderr()
    );
    let pressed = Instant::now();
    caller.send_dtmf("1", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    assert!(header_uri(refer.msg.header("Refer-To").unwrap()).starts_with("sip:supervisor@"));
    assert_eq!(refer.msg.header("X-IVR-Reason"), Some("upset"));
    let said = refer
        .msg
        .header("X-IVR-Transcript")
        .unwrap_or("")
        .to_lowercase();
    assert!(said.contains("ridiculous"), "{said}");
    eprintln!("key 1 -> REFER in {:?}", pressed.elapsed());
    let _ = caller.bye(SIP_WAIT);
    assert!(
        support::metric_sum(&daemon.metrics(), "ivrd_upset_callers_total", &[]) >= 1.0,
        "{}",
        daemon.metrics()
    );
}
