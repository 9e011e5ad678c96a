//! Escalation to a person from any point of a call, asserted from outside: the escalation
//! key during the greeting, during the menu prompt and while the menu waits for a key; two
//! failed inputs in a row; a supervisor who refuses. Each transfer must carry the context
//! (flow, node path, reason, input, outages heard) as headers, inside Refer-To and as the
//! hex User-to-User header, so nobody has to ask the caller again.
//!
//! The flow is the short one of `support::flows` (greeting `to_billing` ~1.8 s, menu prompt
//! `no_match` ~2.8 s); the default flow's two-timeouts case is `sip_calls.rs`
//! `slow_no_input_twice_escalates_to_supervisor`.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::audio;
use support::caller::{Caller, CallerOpts, ReferPolicy, SipEvent};
use support::flows::{self, QuickFlow};
use support::sip::{header_uri, SipMessage};
use support::{wait_for, Daemon, DaemonOpts, TempDir};

struct Quick {
    daemon: Daemon,
    _flows: TempDir,
}

fn quick_daemon(flow: QuickFlow) -> Quick {
    quick_daemon_with(flow, "transfer:\n  context: both\n")
}

/// The quick flow with this extra config (the transfer context's mode).
fn quick_daemon_with(flow: QuickFlow, extra_yaml: &str) -> Quick {
    let flows = flows::flows_dir(&[(flows::QUICK, &flows::quick_flow(&flow))]);
    let daemon = Daemon::start(DaemonOpts {
        flows_dir: flows.path().to_path_buf(),
        default_flow: flows::QUICK.into(),
        sounds_dir: support::repo_root().join("sounds"),
        extra_yaml: extra_yaml.into(),
        ..DaemonOpts::default()
    });
    Quick {
        daemon,
        _flows: flows,
    }
}

fn prompt(daemon: &Daemon, name: &str) -> Vec<i16> {
    audio::load_8k(&daemon.opts.sounds_dir.join(format!("{name}.wav")))
}

fn call(daemon: &Daemon, refer: ReferPolicy) -> Caller {
    let caller = Caller::new(
        daemon.sip_udp,
        CallerOpts {
            refer,
            ..CallerOpts::default()
        },
    );
    let ok = caller.invite(Duration::from_secs(10));
    assert_eq!(ok.status(), Some(200), "{}", caller.sip_trace());
    caller
}

#[track_caller]
fn wait_refer(caller: &Caller, timeout: Duration) -> SipEvent {
    caller
        .wait_request("REFER", 0, timeout)
        .unwrap_or_else(|| panic!("no REFER within {timeout:?}\n{}", caller.sip_trace()))
}

/// The node the admin API says the (only) call is in.
fn call_node(daemon: &Daemon) -> Option<String> {
    let calls = daemon.api_json("/api/calls");
    calls["calls"]
        .as_array()?
        .first()?
        .get("node")?
        .as_str()
        .map(str::to_string)
}

/// Decodes `User-to-User: <hex>;encoding=hex` (RFC 7433).
fn user_to_user(value: &str) -> String {
    let (hex, params) = value.split_once(';').unwrap_or((value, ""));
    assert!(
        params.replace(' ', "").contains("encoding=hex"),
        "User-to-User without encoding=hex: {value:?}"
    );
    assert!(
        hex.len() % 2 == 0 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "User-to-User is not hex: {value:?}"
    );
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).expect("User-to-User is UTF-8 text")
}

/// Percent-decoding for URI header values inside Refer-To.
fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URI headers (`?a=b&c=d`) of the Refer-To URI, decoded.
fn refer_to_headers(refer: &SipMessage) -> Vec<(String, String)> {
    let uri = header_uri(refer.header("Refer-To").expect("Refer-To"));
    let Some((_, query)) = uri.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), pct_decode(v)))
        .collect()
}

/// What an escalation REFER must say.
struct Expect<'a> {
    node: &'a str,
    reason: &'a str,
    intent: Option<&'a str>,
    input: Option<&'a str>,
    outage: Option<&'a str>,
}

/// Checks target and every context header, in the REFER and inside Refer-To.
#[track_caller]
fn assert_escalation(refer: &SipMessage, want: &Expect) {
    let refer_to = refer.header("Refer-To").expect("Refer-To");
    assert!(
        header_uri(refer_to).starts_with("sip:supervisor@pbx.example.com"),
        "Refer-To {refer_to:?}"
    );
    let expected: [(&str, Option<&str>); 6] = [
        ("X-IVR-Flow", Some(flows::QUICK)),
        ("X-IVR-Node", Some(want.node)),
        ("X-IVR-Reason", Some(want.reason)),
        ("X-IVR-Intent", want.intent),
        ("X-IVR-Input", want.input),
        ("X-IVR-Outage", want.outage),
    ];
    let in_uri = refer_to_headers(refer);
    for (name, value) in expected {
        assert_eq!(
            refer.header(name).map(str::trim),
            value,
            "header {name}\n{refer}"
        );
        let uri_value = in_uri
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        assert_eq!(uri_value, value, "{name} inside Refer-To {refer_to:?}");
    }
    let uui = user_to_user(refer.header("User-to-User").expect("User-to-User header"));
    let last_node = want.node.rsplit(',').next().unwrap();
    let mut parts = vec![format!("flow={}", flows::QUICK)];
    if let Some(i) = want.intent {
        parts.push(format!("intent={i}"));
    }
    parts.push(format!("reason={}", want.reason));
    parts.push(format!("node={last_node}"));
    if let Some(o) = want.outage {
        parts.push(format!("outage={o}"));
    }
    assert_eq!(uui, parts.join(";"), "User-to-User content");
    let uui_in_uri = in_uri
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("User-to-User"))
        .map(|(_, v)| v.as_str());
    assert_eq!(
        uui_in_uri,
        refer.header("User-to-User"),
        "User-to-User inside Refer-To"
    );
}

/// The supervisor takes the call: NOTIFY 200 -> the daemon leaves with BYE.
#[track_caller]
fn assert_hangs_up_after_transfer(caller: &Caller) {
    assert!(
        caller
            .wait_request("BYE", 0, Duration::from_secs(10))
            .is_some(),
        "no BYE after the transfer succeeded\n{}",
        caller.sip_trace()
    );
}

fn escalations(daemon: &Daemon, reason: &str) -> f64 {
    daemon
        .metric(&format!("ivrd_escalations_total{{reason=\"{reason}\"}}"))
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// The escalation key
// ---------------------------------------------------------------------------------------

/// ~4 s: key 0 300 ms into the greeting: the greeting stops, "Connecting you to a
/// supervisor" plays, then REFER with reason key from node greet.
#[test]
fn key_0_during_greeting_refers_to_supervisor_with_context() {
    let q = quick_daemon(QuickFlow::default());
    let d = &q.daemon;
    let caller = call(d, ReferPolicy::accept(200));
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    let pressed = Instant::now();
    caller.send_dtmf("0", 100);
    let refer = wait_refer(&caller, Duration::from_secs(10));
    assert_escalation(
        &refer.msg,
        &Expect {
            node: "greet",
            reason: "key",
            intent: None,
            input: None,
            outage: None,
        },
    );
    // The lead-in prompt came between the key and the REFER, and the greeting was cut.
    let heard = caller.heard();
    let lead_in = prompt(d, "to_supervisor");
    let m = heard.since(pressed).find(&lead_in);
    assert!(m.ncc >= 0.9, "to_supervisor not heard after the key: {m:?}");
    let waited = refer.at.duration_since(pressed);
    assert!(
        waited >= d.prompt_len("to_supervisor") - Duration::from_millis(300)
            && waited < d.prompt_len("to_supervisor") + Duration::from_secs(2),
        "REFER {waited:?} after the key; to_supervisor lasts {:?}",
        d.prompt_len("to_supervisor")
    );
    let greeting = prompt(d, flows::GREETING_PROMPT);
    let g = heard.find(&greeting);
    assert!(
        g.ncc < 0.8,
        "the whole greeting played despite the key: {g:?}"
    );
    assert_hangs_up_after_transfer(&caller);
    assert_eq!(escalations(d, "key"), 1.0);
}

/// ~4 s: impatient callers press 0 again while "Connecting you to a supervisor" plays: that
/// is the same escalation, not a new one: the lead-in is not restarted (the REFER comes one
/// lead-in after the first key) and one escalation is counted.
#[test]
fn key_0_again_during_the_lead_in_does_not_restart_the_escalation() {
    let q = quick_daemon(QuickFlow::default());
    let d = &q.daemon;
    let caller = call(d, ReferPolicy::accept(200));
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    let first = Instant::now();
    caller.send_dtmf("0", 100);
    // A second of the lead-in heard, then the key again.
    caller.wait_audio(Some(first), Duration::from_millis(1000));
    caller.send_dtmf("0", 100);
    let refer = wait_refer(&caller, Duration::from_secs(10));
    let waited = refer.at.duration_since(first);
    let lead_in = d.prompt_len("to_supervisor");
    eprintln!("REFER {waited:?} after the first key; lead-in {lead_in:?}");
    assert!(
        waited < lead_in + Duration::from_millis(700),
        "REFER {waited:?} after the first key: the second key restarted the {lead_in:?} lead-in"
    );
    assert_eq!(escalations(d, "key"), 1.0, "one caller, one escalation");
    assert!(caller.wait_request("REFER", 1, Duration::ZERO).is_none());
}

/// ~5 s: with an outage heard, key 0 while the menu prompt plays: node path greet,menu and
/// the outage travel with the transfer.
#[test]
fn key_0_during_menu_prompt_carries_outage_heard() {
    let q = quick_daemon(QuickFlow::default());
    let d = &q.daemon;
    let (status, body) = d.api(
        "POST",
        "/api/outages",
        Some(&json!({"id": "net-9", "message": "Our network is down."}).to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let caller = call(d, ReferPolicy::accept(200));
    // The menu node is entered once the greeting and the announcement are over; its prompt
    // (~2.8 s) is playing then.
    wait_for(Duration::from_secs(15), || {
        (call_node(d).as_deref() == Some("menu")).then_some(())
    })
    .unwrap_or_else(|| panic!("call never reached the menu\n{}", caller.sip_trace()));
    let entered = Instant::now();
    caller.wait_audio(Some(entered), Duration::from_millis(500));
    caller.send_dtmf("0", 100);
    let refer = wait_refer(&caller, Duration::from_secs(10));
    assert!(
        entered.elapsed() < d.prompt_len(flows::MENU_PROMPT) + d.prompt_len("to_supervisor"),
        "sanity: the key was pressed during the menu prompt"
    );
    assert_escalation(
        &refer.msg,
        &Expect {
            node: "greet,menu",
            reason: "key",
            intent: None,
            input: None,
            outage: Some("net-9"),
        },
    );
    // The menu prompt was cut by the key.
    let heard = caller.heard();
    let menu = prompt(d, flows::MENU_PROMPT);
    let m = heard.find(&menu);
    assert!(m.ncc < 0.8, "the whole menu prompt played: {m:?}");
    assert_hangs_up_after_transfer(&caller);
}

/// ~6 s: key 0 while the menu waits for a choice (its prompt over).
#[test]
fn key_0_while_menu_collects_refers_to_supervisor() {
    let q = quick_daemon(QuickFlow {
        no_input_ms: 4000,
        ..QuickFlow::default()
    });
    let d = &q.daemon;
    let caller = call(d, ReferPolicy::accept(200));
    wait_for(Duration::from_secs(10), || {
        (call_node(d).as_deref() == Some("menu")).then_some(())
    })
    .unwrap_or_else(|| panic!("call never reached the menu\n{}", caller.sip_trace()));
    let entered = Instant::now();
    // Prompt over, 4 s no-input window open.
    caller.wait_audio(
        Some(entered),
        d.prompt_len(flows::MENU_PROMPT) + Duration::from_millis(600),
    );
    let before = caller.heard();
    let menu = prompt(d, flows::MENU_PROMPT);
    let m = before.find(&menu);
    assert!(
        m.ncc >= 0.9,
        "sanity: the menu prompt played in full: {m:?}"
    );
    caller.send_dtmf("0", 100);
    let refer = wait_refer(&caller, Duration::from_secs(10));
    assert_escalation(
        &refer.msg,
        &Expect {
            node: "greet,menu",
            reason: "key",
            intent: None,
            input: None,
            outage: None,
        },
    );
    assert_hangs_up_after_transfer(&caller);
}

// ---------------------------------------------------------------------------------------
// Failed inputs
// ---------------------------------------------------------------------------------------

/// ~5 s: a wrong key (typed ahead during the greeting) then no key for 0.7 s after the
/// repeated menu prompt: two failures in a row escalate with reason failures.
#[test]
fn no_match_then_no_input_escalates_with_reason_failures() {
    let q = quick_daemon(QuickFlow {
        no_input_ms: 700,
        ..QuickFlow::default()
    });
    let d = &q.daemon;
    let caller = call(d, ReferPolicy::accept(200));
    let start = Instant::now();
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    caller.send_dtmf("9", 100);
    let refer = wait_refer(&caller, Duration::from_secs(15));
    assert_escalation(
        &refer.msg,
        &Expect {
            node: "greet,menu",
            reason: "failures",
            intent: None,
            input: Some("9"),
            outage: None,
        },
    );
    // No match at once (type-ahead), then the prompt again and its 0.7 s timeout.
    let min = d.prompt_len(flows::MENU_PROMPT) + Duration::from_millis(700);
    let took = refer.at.duration_since(start);
    assert!(
        took >= min,
        "escalated after {took:?}, before the second failure ({min:?})"
    );
    assert_eq!(escalations(d, "failures"), 1.0);
    assert_eq!(escalations(d, "key"), 0.0);
    assert_hangs_up_after_transfer(&caller);
}

/// ~9 s: no key at all: the menu prompt, 0.7 s, the prompt again, 0.7 s: escalation.
#[test]
fn two_no_input_timeouts_escalate_with_reason_failures() {
    let q = quick_daemon(QuickFlow {
        no_input_ms: 700,
        ..QuickFlow::default()
    });
    let d = &q.daemon;
    let caller = call(d, ReferPolicy::accept(200));
    let start = Instant::now();
    let refer = wait_refer(&caller, Duration::from_secs(20));
    assert_escalation(
        &refer.msg,
        &Expect {
            node: "greet,menu",
            reason: "failures",
            intent: None,
            input: None,
            outage: None,
        },
    );
    let prompts = d.prompt_len(flows::GREETING_PROMPT)
        + d.prompt_len(flows::MENU_PROMPT) * 2
        + d.prompt_len("to_supervisor")
        + Duration::from_millis(1400);
    let took = refer.at.duration_since(start);
    assert!(
        took >= prompts - Duration::from_millis(300) && took < prompts + Duration::from_secs(3),
        "escalated after {took:?}; two prompts and timeouts take {prompts:?}"
    );
    // The menu prompt was heard twice (asked again after the first timeout).
    let heard = caller.heard();
    let menu = prompt(d, flows::MENU_PROMPT);
    let first = heard.find(&menu);
    let later = heard
        .since(heard.time_of(first.offset + menu.len()).unwrap())
        .find(&menu);
    assert!(
        first.ncc >= 0.9 && later.ncc >= 0.9,
        "menu prompt twice: {first:?} {later:?}"
    );
    assert_eq!(escalations(d, "failures"), 1.0);
}

// ---------------------------------------------------------------------------------------
// Nobody to take the call
// ---------------------------------------------------------------------------------------

/// ~12 s: the supervisor refuses the REFER (603): the caller hears so, then a callback
/// offer; key 1 records the callback; never dead air, never a silent hang-up.
#[test]
fn supervisor_refusing_plays_unavailable_then_callback_offer_and_records_callback() {
    let q = quick_daemon(QuickFlow::default());
    let d = &q.daemon;
    let caller = call(d, ReferPolicy::Reject(603));
    // 300 ms into the greeting.
    caller.wait_audio(None, Duration::from_millis(300));
    caller.send_dtmf("0", 100);
    let refer = wait_refer(&caller, Duration::from_secs(10));
    assert_escalation(
        &refer.msg,
        &Expect {
            node: "greet",
            reason: "key",
            intent: None,
            input: None,
            outage: None,
        },
    );

    let unavailable = prompt(d, "supervisor_unavailable");
    let mut offer = prompt(d, "callback_offer");
    offer.truncate(8000 * 3 / 2);
    let need = Duration::from_secs_f64((unavailable.len() + offer.len()) as f64 / 8000.0)
        + Duration::from_millis(400);
    caller.wait_audio(Some(refer.at), need);
    let heard = caller.heard().since(refer.at);
    let u = heard.find(&unavailable);
    let o = heard.find(&offer);
    eprintln!("after the 603: supervisor_unavailable {u:?}, callback_offer {o:?}");
    assert!(u.ncc >= 0.9, "supervisor_unavailable not heard: {u:?}");
    assert!(o.ncc >= 0.9, "callback offer not heard: {o:?}");
    assert!(
        u.offset < 8000 && o.offset >= u.offset + unavailable.len() - 800,
        "unavailable right after the refusal, then the offer: {u:?} {o:?}"
    );
    assert!(
        caller.bye_received().is_none(),
        "hung up instead of offering a callback"
    );

    caller.send_dtmf("1", 100);
    let callbacks = wait_for(Duration::from_secs(5), || {
        let v = d.api_json("/api/callbacks");
        (!v.as_array()?.is_empty()).then_some(v)
    })
    .expect("no callback recorded after key 1");
    let list = callbacks.as_array().unwrap();
    assert_eq!(list.len(), 1, "{callbacks}");
    assert_eq!(list[0]["reason"], "offer_callback", "{callbacks}");
    assert_eq!(list[0]["flow"], flows::QUICK, "{callbacks}");
    assert_eq!(escalations(d, "unreachable"), 1.0);
    assert_eq!(escalations(d, "key"), 1.0);
    // callback_thanks, then the flow hangs up.
    assert!(
        caller
            .wait_request("BYE", 0, Duration::from_secs(10))
            .is_some(),
        "no BYE after the callback was taken\n{}",
        caller.sip_trace()
    );
    // Only one REFER: the refusal was not retried in a loop.
    assert!(caller.wait_request("REFER", 1, Duration::ZERO).is_none());
    let v: Value = d.api_json("/api/calls");
    assert_eq!(v["active"], 0, "{v}");
}

/// ~3 s: by default (`transfer.context: headers`) the Refer-To is the bare target, which
/// every transferee understands, and the context travels as headers on the REFER.
#[test]
fn by_default_the_context_travels_as_plain_refer_headers() {
    let q = quick_daemon_with(QuickFlow::default(), "");
    let caller = call(&q.daemon, ReferPolicy::accept(200));
    caller.send_dtmf("0", 100);
    let refer = wait_refer(&caller, Duration::from_secs(10)).msg;
    let refer_to = refer.header("Refer-To").expect("Refer-To");
    assert_eq!(
        header_uri(refer_to),
        "sip:supervisor@pbx.example.com",
        "Refer-To carries nothing but the target"
    );
    assert_eq!(refer.header("X-IVR-Reason").map(str::trim), Some("key"));
    assert!(refer.header("User-to-User").is_some());
}
