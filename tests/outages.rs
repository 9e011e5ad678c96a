//! Outages, asserted from outside: what callers hear while an outage is in force, and that
//! every source (admin API, CLI, watched file, Alertmanager webhook) starts and stops them
//! alike, durably, with bad admin input refused and nothing changed.
//!
//! "Heard" is detected three ways: the audio (the harness's own G.711 decoder, correlated
//! with espeak-ng's rendering of the same text resampled by sox), the counter
//! `ivrd_outage_announcements_total{outage=ID}`, and the `X-IVR-Outage` header of the
//! transfer that follows (a caller who presses 1 during the greeting keeps that key through
//! the announcement and is transferred right after it).
//!
//! Most tests use the short flow of `support::flows` (greeting ~1.8 s) to stay fast; the
//! first uses the shipped default flow, as callers meet it.

mod support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use support::audio;
use support::caller::{Caller, CallerOpts, SipEvent};
use support::daemon::ivrd_bin;
use support::flows::{self, QuickFlow};
use support::sip::{header_uri, SipMessage};
use support::{run_bounded, wait_for, Daemon, DaemonOpts, TempDir};

const SIP_WAIT: Duration = Duration::from_secs(5);

/// A daemon on the quick flow, with the flows dir kept alive as long as it runs.
struct Quick {
    daemon: Daemon,
    _flows: TempDir,
}

fn quick_daemon(tune: impl FnOnce(&mut DaemonOpts)) -> Quick {
    let flows = flows::flows_dir(&[(flows::QUICK, &flows::quick_flow(&QuickFlow::default()))]);
    let mut opts = DaemonOpts {
        flows_dir: flows.path().to_path_buf(),
        default_flow: flows::QUICK.into(),
        sounds_dir: support::repo_root().join("sounds"),
        ..DaemonOpts::default()
    };
    tune(&mut opts);
    Quick {
        daemon: Daemon::start(opts),
        _flows: flows,
    }
}

/// Starts an outage through the API; panics unless it is created (201).
#[track_caller]
fn api_start(daemon: &Daemon, body: Value) -> Value {
    let (status, text) = daemon.api("POST", "/api/outages", Some(&body.to_string()));
    assert_eq!(status, 201, "POST /api/outages {body}: {text}");
    serde_json::from_str(&text).expect("outage JSON")
}

fn outage_list(daemon: &Daemon) -> Vec<Value> {
    daemon
        .api_json("/api/outages")
        .as_array()
        .cloned()
        .expect("GET /api/outages is a JSON array")
}

fn listed<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|o| o["id"] == id)
}

fn announcements(daemon: &Daemon, id: &str) -> f64 {
    daemon
        .metric(&format!(
            "ivrd_outage_announcements_total{{outage=\"{id}\"}}"
        ))
        .unwrap_or(0.0)
}

/// A call that presses `key` during the greeting and waits for the transfer REFER (the key
/// survives an outage announcement: type-ahead). Hangs up afterwards.
#[track_caller]
fn call_pressing(daemon: &Daemon, key: char) -> (Caller, SipEvent) {
    let caller = daemon.answered_call(CallerOpts::default());
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    caller.send_dtmf(&key.to_string(), 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no REFER after key {key}\n{}", caller.sip_trace()));
    (caller, refer)
}

/// The outages a transfer says the caller heard (`X-IVR-Outage`, comma-separated).
fn outages_heard(refer: &SipMessage) -> Vec<String> {
    refer
        .header("X-IVR-Outage")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

/// One call that presses 1: asserts whether it heard outage `id` (transfer header and
/// announcement counter) and returns the REFER.
#[track_caller]
fn assert_call_hears(daemon: &Daemon, id: &str, hears: bool) -> SipMessage {
    let before = announcements(daemon, id);
    let (caller, refer) = call_pressing(daemon, '1');
    let heard = outages_heard(&refer.msg);
    let after = announcements(daemon, id);
    if hears {
        assert!(
            heard.iter().any(|h| h == id),
            "caller should have heard outage {id}; X-IVR-Outage {heard:?}\n{}",
            refer.msg
        );
        assert_eq!(after, before + 1.0, "announcements of {id}");
    } else {
        assert!(
            !heard.iter().any(|h| h == id),
            "caller heard outage {id} after it ended\n{}",
            refer.msg
        );
        assert_eq!(after, before, "announcements of {id} after it ended");
    }
    let _ = caller.bye(SIP_WAIT);
    refer.msg
}

fn secs(samples: &[i16]) -> f64 {
    samples.len() as f64 / 8000.0
}

// ---------------------------------------------------------------------------------------
// What callers hear
// ---------------------------------------------------------------------------------------

/// ~15 s: the shipped flow with an outage in force: greeting, the outage message, what the
/// caller can do, then the main menu; the outage within 5 s of the answer.
#[test]
fn caller_hears_greeting_then_outage_then_menu_within_5s_of_answer() {
    let daemon = Daemon::start_default();
    let text = "Our network is down in the north. We are working on it.";
    api_start(&daemon, json!({"id": "net-north", "message": text}));
    assert_eq!(daemon.metric("ivrd_outages_active"), Some(1.0));

    let sounds = &daemon.opts.sounds_dir;
    let greeting = audio::load_8k(&sounds.join("greeting.wav"));
    let outage = audio::tts_reference(text);
    let options = audio::load_8k(&sounds.join("outage_options.wav"));
    let mut menu = audio::load_8k(&sounds.join("main_menu.wav"));
    menu.truncate(3 * 8000);

    let caller = daemon.answered_call(CallerOpts::default());
    let ok_at = caller.answered_at();
    let want = secs(&greeting) + secs(&outage) + secs(&options) + secs(&menu) + 0.5;
    let enough = wait_for(Duration::from_secs_f64(want + 10.0), || {
        (caller.heard().seconds() >= want).then_some(())
    });
    let heard = caller.heard();
    assert!(
        enough.is_some(),
        "only {:.1} s of audio in {:.1} s",
        heard.seconds(),
        want + 10.0
    );
    let _ = caller.bye(SIP_WAIT);

    let g = heard.find(&greeting);
    let o = heard.find(&outage);
    let p = heard.find(&options);
    let m = heard.find(&menu);
    eprintln!("greeting {g:?}\noutage   {o:?}\noptions  {p:?}\nmenu     {m:?}");
    for (name, found) in [("greeting", g), ("outage", o), ("options", p), ("menu", m)] {
        assert!(found.ncc >= 0.9, "{name} not recognised: {found:?}");
    }
    // In this order, each after the previous one ended (100 ms slack for prompt edges).
    let slack = 800;
    assert!(
        g.offset + greeting.len() <= o.offset + slack,
        "the outage must follow the greeting: greeting {g:?} ({} samples), outage {o:?}",
        greeting.len()
    );
    assert!(
        o.offset + outage.len() <= p.offset + slack,
        "what to do must follow the outage: outage {o:?} ({} samples), options {p:?}",
        outage.len()
    );
    assert!(
        p.offset + options.len() <= m.offset + slack,
        "the menu comes last: options {p:?} ({} samples), menu {m:?}",
        options.len()
    );
    let notice = heard
        .time_of(o.offset)
        .expect("packet of the outage start")
        .duration_since(ok_at);
    eprintln!("200 OK -> outage message: {notice:?}");
    assert!(
        notice < Duration::from_secs(5),
        "outage heard {notice:?} after the answer"
    );

    let metrics = daemon.metrics();
    assert_eq!(
        support::metric_value(
            &metrics,
            "ivrd_outage_announcements_total{outage=\"net-north\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        support::metric_value(&metrics, "ivrd_time_to_outage_notice_seconds_count"),
        Some(1.0)
    );
    let sum = support::metric_value(&metrics, "ivrd_time_to_outage_notice_seconds_sum").unwrap();
    assert!(
        (sum - notice.as_secs_f64()).abs() < 0.5,
        "histogram says {sum:.3} s, the caller heard it after {notice:?}"
    );
}

/// ~8 s: an outage scoped to billing is announced only to callers who choose billing
/// (before their transfer), not to those who choose support, and not after the greeting.
#[test]
fn scoped_outage_is_announced_after_key_1_only() {
    let q = quick_daemon(|_| {});
    let text = "Card payments are failing. Your payment will be taken later.";
    api_start(
        &q.daemon,
        json!({"id": "pay-1", "message": text, "scope": ["billing"]}),
    );

    // Key 2: support, no announcement.
    call_pressing_2_hears_nothing(&q.daemon, "pay-1");

    // Key 1: billing, announced before the transfer: in the audio, then the REFER.
    let before = announcements(&q.daemon, "pay-1");
    let (caller, refer) = call_pressing(&q.daemon, '1');
    let heard = caller.heard();
    let _ = caller.bye(SIP_WAIT);
    assert!(header_uri(refer.msg.header("Refer-To").unwrap()).starts_with("sip:billing@"));
    assert_eq!(outages_heard(&refer.msg), ["pay-1"], "{}", refer.msg);
    assert_eq!(announcements(&q.daemon, "pay-1"), before + 1.0);
    let reference = audio::tts_reference(text);
    let m = heard.find(&reference);
    eprintln!("scoped outage message: {m:?}");
    assert!(
        m.ncc >= 0.9,
        "billing caller did not hear the outage: {m:?}"
    );
    let ended = heard.time_of(m.offset + reference.len() - 1600).unwrap();
    assert!(
        ended <= refer.at,
        "the REFER must wait for the announcement"
    );
}

/// ~6 s: a key during the announcement skips it: the menu prompt starts at once, and the
/// outage is not announced again later in the call.
#[test]
fn key_during_announcement_skips_to_the_menu() {
    let q = quick_daemon(|_| {});
    let d = &q.daemon;
    let text = "Our network is down in the north. We are working hard to fix it. \
                Thank you for your patience.";
    api_start(d, json!({"id": "long-1", "message": text}));
    let outage = audio::tts_reference(text);
    let menu = audio::load_8k(
        &d.opts
            .sounds_dir
            .join(format!("{}.wav", flows::MENU_PROMPT)),
    );
    let caller = d.answered_call(CallerOpts::default());
    assert_eq!(
        d.wait_metric(
            "ivrd_outage_announcements_total{outage=\"long-1\"}",
            1.0,
            Duration::from_secs(8)
        ),
        Some(1.0)
    );
    // 0.8 s into the announcement, the key that skips it.
    let started = Instant::now();
    caller.wait_audio(Some(started), Duration::from_millis(800));
    let pressed = Instant::now();
    caller.send_dtmf("5", 100);
    let want = secs(&menu) + 0.8;
    caller.wait_audio(Some(pressed), Duration::from_secs_f64(want));
    let after = caller.heard().since(pressed);
    let m = after.find(&menu);
    eprintln!("menu after the skip key: {m:?}");
    assert!(m.ncc >= 0.9, "menu prompt not heard after the skip: {m:?}");
    assert!(
        m.offset < 8000 * 7 / 10,
        "menu started {} ms after the key",
        m.offset / 8
    );
    let whole = caller.heard().find(&outage);
    assert!(
        whole.ncc < 0.8,
        "the whole message played despite the key: {whole:?}"
    );
    // Choose billing: no second announcement, and the transfer names the outage.
    caller.send_dtmf("1", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    assert_eq!(outages_heard(&refer.msg), ["long-1"]);
    assert_eq!(announcements(d, "long-1"), 1.0);
    let _ = caller.bye(SIP_WAIT);
}

/// A call choosing support (key 2) hears no outage about `id` and is transferred at once.
#[track_caller]
fn call_pressing_2_hears_nothing(daemon: &Daemon, id: &str) {
    let before = announcements(daemon, id);
    let (caller, refer) = call_pressing(daemon, '2');
    let _ = caller.bye(SIP_WAIT);
    assert!(
        header_uri(refer.msg.header("Refer-To").unwrap_or("")).starts_with("sip:support@"),
        "{}",
        refer.msg
    );
    assert!(
        outages_heard(&refer.msg).is_empty(),
        "support caller heard {:?}",
        outages_heard(&refer.msg)
    );
    assert_eq!(announcements(daemon, id), before);
}

/// ~6 s: an outage with a callback offer: key 1 after the message records the callback
/// (durably: listed by the API) and the daemon ends the call with BYE.
#[test]
fn outage_callback_offer_key_1_records_callback_and_daemon_hangs_up() {
    let q = quick_daemon(|_| {});
    let d = &q.daemon;
    let text = "Our phone lines are down.";
    api_start(
        d,
        json!({"id": "phones", "message": text, "callback": true}),
    );
    assert_eq!(d.api_json("/api/callbacks"), json!([]), "no callbacks yet");

    let caller = d.answered_call(CallerOpts::default());
    assert_eq!(
        d.wait_metric(
            "ivrd_outage_announcements_total{outage=\"phones\"}",
            1.0,
            Duration::from_secs(8)
        ),
        Some(1.0),
        "announcement did not start"
    );
    // Let the message play, then answer the offer that follows it.
    let message = secs(&audio::tts_reference(text));
    let started = Instant::now();
    caller.wait_audio(Some(started), Duration::from_secs_f64(message + 0.7));
    assert!(caller.bye_received().is_none(), "hung up too early");
    caller.send_dtmf("1", 100);

    let bye = caller.wait_request("BYE", 0, Duration::from_secs(10));
    assert!(
        bye.is_some(),
        "daemon did not hang up after the callback was taken\n{}",
        caller.sip_trace()
    );
    let callbacks = d.api_json("/api/callbacks");
    let list = callbacks.as_array().expect("array");
    assert_eq!(list.len(), 1, "{callbacks}");
    assert_eq!(list[0]["reason"], "outage:phones", "{callbacks}");
    assert_eq!(list[0]["flow"], flows::QUICK, "{callbacks}");
    assert!(
        list[0]["caller"]
            .as_str()
            .is_some_and(|c| c.contains("caller@")),
        "the caller's address is recorded: {callbacks}"
    );
    let total = support::metric_sum(&d.metrics(), "ivrd_callbacks_total", &[]);
    assert_eq!(total, 1.0);
    // No transfer happened: the callback replaced it.
    assert!(caller.wait_request("REFER", 0, Duration::ZERO).is_none());
}

// ---------------------------------------------------------------------------------------
// Sources: API, CLI, watched file, Alertmanager
// ---------------------------------------------------------------------------------------

/// ~5 s: POST starts, DELETE stops; calls before/after hear it / do not.
#[test]
fn api_start_and_stop_are_heard_by_calls() {
    let q = quick_daemon(|_| {});
    let d = &q.daemon;
    assert_call_hears(d, "api-1", false);
    let created = api_start(
        d,
        json!({"id": "api-1", "message": "Email is slow today.", "expires_at": 4102444800u64}),
    );
    assert_eq!(created["active"], true, "{created}");
    assert_eq!(created["source"], "api", "{created}");
    assert_eq!(created["expires_at"], "2100-01-01T00:00:00Z", "{created}");
    assert_call_hears(d, "api-1", true);

    let (status, body) = d.api("DELETE", "/api/outages/api-1", None);
    assert_eq!(status, 204, "{body}");
    assert!(outage_list(d).is_empty());
    assert_eq!(d.metric("ivrd_outages_active"), Some(0.0));
    assert_call_hears(d, "api-1", false);
    let (status, _) = d.api("DELETE", "/api/outages/api-1", None);
    assert_eq!(status, 404, "stopping it twice");
    let audit = d.api_json("/api/audit");
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| Some((a["action"].as_str()?, a["target"].as_str()?)))
        .collect();
    assert!(
        actions.contains(&("start", "api-1")) && actions.contains(&("stop", "api-1")),
        "start and stop are both audited: {audit}"
    );
}

fn cli(daemon: &Daemon, args: &[&str]) -> support::Finished {
    let mut cmd = Command::new(ivrd_bin());
    cmd.args(args)
        .arg("--config")
        .arg(&daemon.config_path)
        .arg("--url")
        .arg(format!("http://{}", daemon.admin()));
    let out = run_bounded(cmd, "ivrd outage", Duration::from_secs(30));
    assert!(!out.timed_out, "ivrd {args:?} did not finish");
    out
}

/// ~5 s: `ivrd outage start|list|stop` against the running daemon.
#[test]
fn cli_start_list_and_stop_are_heard_by_calls() {
    let q = quick_daemon(|_| {});
    let d = &q.daemon;
    let started = cli(
        d,
        &[
            "outage",
            "start",
            "cli-1",
            "--message",
            "Our website is down.",
            "--expires-in",
            "2h",
        ],
    );
    assert_eq!(started.code, Some(0), "{started:?}");
    assert!(started.stdout.contains("cli-1"), "{started:?}");

    let list = cli(d, &["outage", "list", "--json"]);
    assert_eq!(list.code, Some(0), "{list:?}");
    let v: Value = serde_json::from_str(&list.stdout).expect("list --json is JSON");
    let o = listed(v.as_array().unwrap(), "cli-1").expect("cli-1 listed");
    assert_eq!(o["active"], true, "{o}");
    assert!(
        o["updated_by"].as_str().is_some_and(|b| b.contains("cli")),
        "who started it: {o}"
    );
    let expires = o["expires_at"].as_str().expect("expires_at");
    let human = cli(d, &["outage", "list"]);
    assert!(
        human.stdout.contains("cli-1") && human.stdout.contains("active"),
        "{human:?}"
    );
    assert!(!expires.is_empty());
    assert_call_hears(d, "cli-1", true);

    let stopped = cli(d, &["outage", "stop", "cli-1"]);
    assert_eq!(stopped.code, Some(0), "{stopped:?}");
    assert!(outage_list(d).is_empty());
    assert_call_hears(d, "cli-1", false);

    // Errors are reported with a non-zero exit: unknown id, unreachable daemon.
    let again = cli(d, &["outage", "stop", "cli-1"]);
    assert_ne!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("cli-1"), "{again:?}");
}

/// ~7 s: the watched file: adding an outage starts it, removing it stops it (within the
/// 1 s poll), and a broken file changes nothing.
#[test]
fn watched_file_start_and_stop_are_heard_by_calls() {
    let dir = TempDir::new("outages-file");
    let file = dir.join("outages.yaml");
    std::fs::write(&file, "outages: []\n").unwrap();
    let q = quick_daemon(|o| o.outages_file = Some(file.clone()));
    let d = &q.daemon;
    assert_call_hears(d, "file-1", false);

    std::fs::write(
        &file,
        "outages:\n  - id: file-1\n    message: The north region has no service.\n    scope: [all]\n",
    )
    .unwrap();
    let seen = wait_for(Duration::from_secs(5), || {
        listed(&outage_list(d), "file-1").cloned()
    })
    .expect("the file's outage was not picked up within 5 s");
    assert_eq!(seen["source"], "file", "{seen}");
    assert_call_hears(d, "file-1", true);

    // A broken file: reported, the outage stays.
    std::fs::write(&file, "outages:\n  - id: file-1\n    mesage: typo\n").unwrap();
    assert!(
        d.wait_for_log("outages file has errors", Duration::from_secs(5)),
        "broken outages file not reported"
    );
    assert!(listed(&outage_list(d), "file-1").is_some());

    std::fs::write(&file, "outages: []\n").unwrap();
    wait_for(Duration::from_secs(5), || {
        outage_list(d).is_empty().then_some(())
    })
    .expect("the outage removed from the file was not stopped within 5 s");
    assert_call_hears(d, "file-1", false);
}

fn alert(status: &str, fingerprint: &str, service: &str, summary: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "ServiceDown", "service": service, "severity": "critical"},
        "annotations": {"summary": summary},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": fingerprint
    })
}

/// Alertmanager webhook payload (version 4) around `alerts`.
fn webhook(status: &str, alerts: Vec<Value>) -> String {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"ServiceDown\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "ivrd",
        "groupLabels": {"alertname": "ServiceDown"},
        "commonLabels": {"alertname": "ServiceDown"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": alerts
    })
    .to_string()
}

/// ~6 s: a firing alert starts `am-<fingerprint>` (scope from the `service` label through
/// `alertmanager.scopes`), resolved stops it.
#[test]
fn alertmanager_firing_then_resolved_starts_and_stops_outages() {
    let q = quick_daemon(|o| {
        o.extra_yaml =
            "alertmanager:\n  scopes:\n    core-network: all\n    payments: billing\n".into()
    });
    let d = &q.daemon;
    let firing = webhook(
        "firing",
        vec![
            alert(
                "firing",
                "a1b2c3",
                "core-network",
                "The core network is down.",
            ),
            alert("firing", "d4e5f6", "payments", "Card payments are failing."),
        ],
    );
    let (status, body) = d.api("POST", "/api/alertmanager", Some(&firing));
    assert_eq!(status, 200, "{body}");
    let list = outage_list(d);
    let net = listed(&list, "am-a1b2c3").expect("am-a1b2c3 started");
    assert_eq!(net["scope"], json!(["all"]), "{net}");
    assert_eq!(net["source"], "alertmanager", "{net}");
    assert_eq!(net["message"], "The core network is down.", "{net}");
    let pay = listed(&list, "am-d4e5f6").expect("am-d4e5f6 started");
    assert_eq!(pay["scope"], json!(["billing"]), "{pay}");
    assert_call_hears(d, "am-a1b2c3", true);

    // The network alert resolves; payments keep firing (and only concern billing).
    let resolved = webhook(
        "resolved",
        vec![alert(
            "resolved",
            "a1b2c3",
            "core-network",
            "The core network is down.",
        )],
    );
    let (status, body) = d.api("POST", "/api/alertmanager", Some(&resolved));
    assert_eq!(status, 200, "{body}");
    let list = outage_list(d);
    assert!(listed(&list, "am-a1b2c3").is_none(), "{list:?}");
    assert!(listed(&list, "am-d4e5f6").is_some(), "{list:?}");
    call_pressing_2_hears_nothing(d, "am-a1b2c3");
    assert_eq!(d.metric("ivrd_outages_active"), Some(1.0));
}

// ---------------------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------------------

/// ~6 s: kill -9 with an outage in force; after the restart it is still in force and heard.
#[test]
fn outage_survives_kill_9_and_restart() {
    let mut q = quick_daemon(|_| {});
    api_start(
        &q.daemon,
        json!({"id": "dc-fire", "message": "A data center is down.", "scope": ["all"]}),
    );
    // Stopped ones must stay stopped.
    api_start(&q.daemon, json!({"id": "gone", "message": "Gone soon."}));
    let (status, _) = q.daemon.api("DELETE", "/api/outages/gone", None);
    assert_eq!(status, 204);
    let token = q.daemon.admin_token();
    let old_pid = q.daemon.pid();

    q.daemon.kill9_and_restart();
    let d = &q.daemon;
    assert_ne!(d.pid(), old_pid);
    assert_eq!(d.admin_token(), token, "the token file is kept");
    let list = outage_list(d);
    assert_eq!(list.len(), 1, "{list:?}");
    let o = &list[0];
    assert_eq!(o["id"], "dc-fire", "{o}");
    assert_eq!(o["active"], true, "{o}");
    assert_eq!(o["message"], "A data center is down.", "{o}");
    assert_eq!(d.metric("ivrd_outages_active"), Some(1.0));
    assert_call_hears(d, "dc-fire", true);
}

// ---------------------------------------------------------------------------------------
// Admin API input
// ---------------------------------------------------------------------------------------

/// ~2 s: bad credentials and bad input get 4xx with a message; nothing changes.
#[test]
fn api_refuses_bad_tokens_and_bad_input_and_changes_nothing() {
    let q = quick_daemon(|_| {});
    let d = &q.daemon;
    api_start(d, json!({"id": "keep-1", "message": "Something is down."}));
    let before = d.api("GET", "/api/outages", None);
    let audit_before = d.api_json("/api/audit");
    let good = json!({"id": "new-1", "message": "Another problem."}).to_string();
    let token = d.admin_token();

    let error_of = |body: &str| -> String {
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"));
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" string in {body}"))
            .to_string()
    };

    // Credentials.
    let wrong = format!("Bearer {token}x");
    for (what, auth) in [
        ("no token", None),
        ("wrong token", Some(wrong.as_str())),
        ("not bearer", Some("Basic dXNlcjpwYXNz")),
    ] {
        let (status, body) = d.api_auth("POST", "/api/outages", auth, Some(&good));
        assert_eq!(status, 401, "{what}: {body}");
        assert!(!error_of(&body).is_empty(), "{what}: {body}");
        let (status, _) = d.api_auth("DELETE", "/api/outages/keep-1", auth, None);
        assert_eq!(status, 401, "{what} DELETE");
        let (status, _) = d.api_auth("GET", "/api/outages", auth, None);
        assert_eq!(status, 401, "{what} GET");
    }

    // Malformed and invalid bodies.
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "malformed JSON",
            r#"{"id": "new-1", "message": }"#,
            &["JSON", "column"],
        ),
        ("not an object", "[1, 2]", &["JSON"]),
        (
            "unknown field",
            r#"{"id": "new-1", "mesage": "typo"}"#,
            &["mesage"],
        ),
        ("bad id", r#"{"id": "bad id!", "message": "x"}"#, &["id"]),
        ("no message", r#"{"id": "new-1"}"#, &["message"]),
        (
            "expiry before start",
            r#"{"id": "new-1", "message": "x", "starts_at": 2000000000, "expires_at": 1900000000}"#,
            &["expires_at"],
        ),
    ];
    for (what, body, words) in cases {
        let (status, resp) = d.api("POST", "/api/outages", Some(body));
        assert_eq!(status, 400, "{what}: {resp}");
        let msg = error_of(&resp);
        for w in words {
            assert!(
                msg.contains(w),
                "{what}: error {msg:?} should mention {w:?}"
            );
        }
    }
    // PUT with an id that does not match the URL.
    let (status, resp) = d.api("PUT", "/api/outages/keep-1", Some(&good));
    assert_eq!(status, 400, "PUT id mismatch: {resp}");

    assert_eq!(
        d.api("GET", "/api/outages", None),
        before,
        "the outage list changed"
    );
    assert_eq!(
        d.api_json("/api/audit"),
        audit_before,
        "the audit log changed"
    );
    assert_eq!(d.metric("ivrd_outages_active"), Some(1.0));
    // Health needs no token.
    assert_eq!(
        support::daemon::http_get(d.admin(), "/healthz", SIP_WAIT).map(|r| r.0),
        Ok(200)
    );
    assert_eq!(
        support::daemon::http_get(d.admin(), "/readyz", SIP_WAIT).map(|r| r.0),
        Ok(200)
    );
}
