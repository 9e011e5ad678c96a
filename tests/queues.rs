//! Queues, agents and bridged calls, asserted from outside with real peers on loopback: a
//! caller (our RTP test phone) waits in a queue; agents are SIPp UASes that answer and echo
//! the audio (`-rtp_echo`), stay busy (486) or never answer. The caller's own speech must
//! come back to it through ivrd's relay (both directions, proven by correlation), the agent
//! must get the call's context on its INVITE, and when the agent hangs up the caller goes
//! on in the flow.

mod support;

use std::thread;
use std::time::{Duration, Instant};
use support::audio;
use support::caller::{AudioSource, Caller, CallerOpts};
use support::daemon::ivrd_bin;
use support::flows;
use support::sipp::{Sipp, SippRun};
use support::{free_udp_port, run_bounded, wait_for, Daemon, DaemonOpts, TempDir};

const FLOW: &str = "\
version: 1
flow: queued
start: greet
escalation:
  dtmf: \"0\"
  target: sip:supervisor@pbx.example.com
nodes:
  greet:
    play: to_billing
    next: wait
  wait:
    queue: support
    on_timeout: sorry
    on_no_agents: nobody
    after_agent: survey
  survey:
    survey: survey_question
    thanks: survey_thanks
    timeout_ms: 4000
    next: goodbye
  sorry:
    play: queue_timeout
    hangup: true
  nobody:
    play: queue_no_agents
    hangup: true
  goodbye:
    play: after_agent
    hangup: true
";

struct Setup {
    daemon: Daemon,
    _flows: TempDir,
}

/// A daemon with the `queued` flow and these agents (`(id, sip port)`) in queue `support`.
fn daemon(agents: &[(&str, u16)], queue: &str) -> Setup {
    daemon_with_flow(FLOW, agents, queue)
}

fn daemon_with_flow(flow: &str, agents: &[(&str, u16)], queue: &str) -> Setup {
    let flows = flows::flows_dir(&[("queued", flow)]);
    let list: String = agents
        .iter()
        .map(|(id, port)| {
            format!("  - {{id: {id}, name: Agent {id}, uri: \"sip:{id}@127.0.0.1:{port}\"}}\n")
        })
        .collect();
    let ids: Vec<&str> = agents.iter().map(|(id, _)| *id).collect();
    let daemon = Daemon::start(DaemonOpts {
        flows_dir: flows.path().to_path_buf(),
        default_flow: "queued".into(),
        sounds_dir: support::repo_root().join("sounds"),
        extra_yaml: format!(
            "agents:\n{list}queues:\n  support:\n    agents: [{}]\n{queue}",
            ids.join(", ")
        ),
        ..DaemonOpts::default()
    });
    Setup {
        daemon,
        _flows: flows,
    }
}

/// An agent's phone: a SIPp UAS on `port` running `scenario` for one call.
fn agent(scenario: &'static str, port: u16, extra: &[&str]) -> thread::JoinHandle<SippRun> {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    thread::spawn(move || {
        // The target is unused by a UAS scenario; SIPp wants one.
        let mut sipp = Sipp::new(scenario, "127.0.0.1:9".parse().unwrap())
            .local_port(port)
            .calls(1)
            .timeout(Duration::from_secs(90));
        for a in &extra {
            sipp = sipp.arg(a);
        }
        sipp.run()
    })
}

/// The announcement that carried the first callback offer, piece by piece in order: the
/// place in line, the wait in words, the offer.
#[track_caller]
fn assert_heard_in_order(d: &Daemon, caller: &Caller) {
    let heard = caller.heard();
    let offer = prompt(d, "queue_callback_offer");
    let end = heard.find(&offer).offset + offer.len();
    let upto = &heard.samples[..end.min(heard.samples.len())];
    let first = audio::find_best_match(&prompt(d, "queue_wait_about"), upto);
    assert!(first.ncc >= 0.9, "no estimate before the offer: {first:?}");
    // The pieces of that announcement: "You are ..." (next in line, or number N in line),
    // "The expected wait is about", a number, "minutes.", the offer.
    let place = ["queue_next_in_line", "queue_you_are_number"]
        .iter()
        .map(|p| audio::find_best_match(&prompt(d, p), &upto[..first.offset]))
        .max_by(|a, b| a.ncc.total_cmp(&b.ncc))
        .unwrap();
    assert!(
        place.ncc >= 0.9,
        "the place in line was not said first: {place:?}"
    );
    let minutes = audio::find_best_match(&prompt(d, "queue_minutes"), &upto[first.offset..]);
    assert!(
        minutes.ncc >= 0.9,
        "no minutes after the estimate: {minutes:?}"
    );
}

fn prompt(daemon: &Daemon, name: &str) -> Vec<i16> {
    audio::load_8k(&daemon.opts.sounds_dir.join(format!("{name}.wav")))
}

fn agent_state(daemon: &Daemon, id: &str) -> String {
    let agents = daemon.api_json("/api/agents");
    agents
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id))
        .and_then(|a| a["state"].as_str())
        .unwrap_or("?")
        .to_string()
}

fn cli(daemon: &Daemon, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(ivrd_bin());
    cmd.args(args)
        .arg("--config")
        .arg(&daemon.config_path)
        .arg("--url")
        .arg(format!("http://{}", daemon.admin()));
    let out = run_bounded(cmd, "ivrd agent", Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "ivrd {args:?}: {}", out.stderr);
    out.stdout
}

/// ~12 s: the caller waits, the agent answers, the caller's speech goes to the agent and
/// comes back (the agent echoes it) through the relay; the agent's INVITE carries the
/// context; when the agent hangs up the caller hears the flow's after-agent prompt and
/// the call ends; the agent wraps up, then is available again.
#[test]
fn a_caller_reaches_an_agent_hears_them_and_goes_on_after_them() {
    let port = free_udp_port();
    let phone = agent("agent_answer.xml", port, &["-rtp_echo", "-d", "5000"]);
    let s = daemon(
        &[("alice", port)],
        "    wrap_up_s: 1\n    announce_every_s: 0\n",
    );
    let d = &s.daemon;
    let speech =
        audio::tts_reference("The quick brown fox jumps over the lazy dog near the river bank.");
    let caller = Caller::new(d.sip_udp, CallerOpts::default());
    assert_eq!(
        caller.invite(Duration::from_secs(10)).status(),
        Some(200),
        "{}",
        caller.sip_trace()
    );
    // Bridged: the admin API shows the agent talking.
    let talking = wait_for(Duration::from_secs(15), || {
        (agent_state(d, "alice") == "talking").then_some(())
    });
    assert!(
        talking.is_some(),
        "agent never talking: {}",
        d.api_json("/api/agents")
    );
    let bridged_at = Instant::now();
    caller.set_audio(AudioSource::Samples(speech.clone().into()));
    // The echo of the caller's own speech comes back through both relay directions.
    caller.wait_audio(Some(bridged_at), Duration::from_millis(4000));
    let heard = caller.heard().since(bridged_at);
    let m = heard.find(&speech[..8000 * 2]);
    assert!(
        m.ncc >= 0.85,
        "the caller's speech did not come back through the agent: {m:?} ({:.1} s heard)",
        heard.seconds()
    );
    // The agent hangs up after 5 s: the caller goes on in the flow: the survey (key 4),
    // then `goodbye`, and the call ends.
    let question = prompt(d, "survey_question");
    let asked = wait_for(Duration::from_secs(20), || {
        thread::sleep(Duration::from_millis(500));
        (caller.heard().since(bridged_at).find(&question).ncc >= 0.9).then_some(())
    });
    assert!(asked.is_some(), "no survey after the agent hung up");
    caller.send_dtmf("4", 100);
    let bye = wait_for(Duration::from_secs(15), || caller.bye_received());
    assert!(
        bye.is_some(),
        "no BYE to the caller\n{}",
        caller.sip_trace()
    );
    let after = prompt(d, "after_agent");
    let m = caller.heard().since(bridged_at).find(&after);
    assert!(m.ncc >= 0.9, "after-agent prompt not heard: {m:?}");
    let run = phone.join().unwrap();
    run.assert_success();
    let invite = run
        .messages_log
        .split("----------------------------------------------")
        .find(|m| m.contains("INVITE sip:alice@"))
        .unwrap_or_default()
        .to_string();
    for h in [
        "X-IVR-Flow: queued",
        "X-IVR-Node: greet,wait",
        "X-IVR-Agent: alice",
        "User-to-User:",
        "X-IVR-Caller:",
    ] {
        assert!(invite.contains(h), "agent INVITE lacks {h}:\n{invite}");
    }
    // Wrap-up (1 s), then available again.
    let free = wait_for(Duration::from_secs(10), || {
        (agent_state(d, "alice") == "available").then_some(())
    });
    assert!(free.is_some(), "agent not available after wrap-up");
    let waits = d.metric("ivrd_queue_wait_seconds_count{queue=\"support\"}");
    assert_eq!(waits, Some(1.0), "{}", d.metrics());
    // The score reached the agent's record and the survey metric.
    let fb = d.api_json("/api/agents/alice/feedback");
    assert_eq!(fb["count"], 1, "{fb}");
    assert_eq!(fb["average_score"], 4.0, "{fb}");
    assert_eq!(fb["entries"][0]["queue"], "support", "{fb}");
    let scores = d.metric("ivrd_survey_score_sum{queue=\"support\"}");
    assert_eq!(scores, Some(4.0), "{}", d.metrics());
}

/// ~10 s: a busy agent (486) and one who never answers (CANCELled at the 2 s ring timeout)
/// are skipped; the third answers. The caller hears their place in line meanwhile, never
/// silence, and the caller hanging up ends the agent's leg with a BYE.
#[test]
fn busy_and_unanswered_agents_are_skipped_without_dead_air() {
    let (busy, ring, answer) = (free_udp_port(), free_udp_port(), free_udp_port());
    let busy_phone = agent("agent_busy.xml", busy, &[]);
    let ring_phone = agent("agent_no_answer.xml", ring, &[]);
    let answer_phone = agent("agent_answer_wait.xml", answer, &["-rtp_echo"]);
    let s = daemon(
        &[("bob", busy), ("carol", ring), ("dave", answer)],
        "    strategy: round_robin\n    ring_timeout_s: 2\n    announce_every_s: 0\n",
    );
    let d = &s.daemon;
    let caller = Caller::new(d.sip_udp, CallerOpts::default());
    assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
    let joined = Instant::now();
    let talking = wait_for(Duration::from_secs(20), || {
        (agent_state(d, "dave") == "talking").then_some(())
    });
    assert!(
        talking.is_some(),
        "dave never answered: {}",
        d.api_json("/api/agents")
    );
    let waited = joined.elapsed();
    // While the agents were rung the caller heard where they stand, not silence.
    let heard = caller.heard().since(joined);
    let next = prompt(d, "queue_next_in_line");
    let m = heard.find(&next);
    assert!(
        m.ncc >= 0.9,
        "place in line not heard while agents rang: {m:?} after {waited:?}"
    );
    caller.bye(Duration::from_secs(5));
    let runs = [
        busy_phone.join().unwrap(),
        ring_phone.join().unwrap(),
        answer_phone.join().unwrap(),
    ];
    for run in &runs {
        run.assert_success();
    }
    let text = d.metrics();
    for result in ["busy", "no_answer", "answered"] {
        let n = support::daemon::metric_sum(&text, "ivrd_agent_legs_total", &[("result", result)]);
        assert_eq!(n, 1.0, "legs {result}: {text}");
    }
}

/// ~6 s: with every agent away (set through the CLI), a caller is told at once and goes
/// to `on_no_agents`; the CLI lists the states.
#[test]
fn nobody_serving_sends_the_caller_on_and_the_cli_sets_agents_away() {
    let mut s = daemon(&[("erin", free_udp_port())], "");
    let d = &s.daemon;
    let out = cli(d, &["agent", "away", "erin"]);
    assert!(out.contains("erin: away"), "{out}");
    let list = cli(d, &["agent", "list"]);
    assert!(list.contains("erin\taway"), "{list}");
    // What an admin set holds across a restart.
    s.daemon.kill9_and_restart();
    let d = &s.daemon;
    assert_eq!(
        agent_state(d, "erin"),
        "away",
        "the state set by hand was lost"
    );
    let caller = Caller::new(d.sip_udp, CallerOpts::default());
    assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
    let bye = wait_for(Duration::from_secs(15), || caller.bye_received());
    assert!(
        bye.is_some(),
        "the call did not end\n{}",
        caller.sip_trace()
    );
    let m = caller.heard().find(&prompt(d, "queue_no_agents"));
    assert!(m.ncc >= 0.9, "no-agents prompt not heard: {m:?}");
    let (status, body) = d.api(
        "POST",
        "/api/agents/nobody/state",
        Some(r#"{"state":"away"}"#),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = d.api(
        "POST",
        "/api/agents/erin/state",
        Some(r#"{"state":"talking"}"#),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        cli(d, &["agent", "available", "erin"]).trim(),
        "erin: available"
    );
}

/// ~8 s: while waiting (the only agent rings and never answers), the escalation key
/// reaches the supervisor with the context, and the caller leaves the queue.
#[test]
fn the_escalation_key_works_while_waiting() {
    let ring = free_udp_port();
    let ring_phone = agent("agent_no_answer.xml", ring, &[]);
    let s = daemon(&[("frank", ring)], "    ring_timeout_s: 20\n");
    let d = &s.daemon;
    let caller = Caller::new(d.sip_udp, CallerOpts::default());
    assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
    let ringing = wait_for(Duration::from_secs(10), || {
        (agent_state(d, "frank") == "ringing").then_some(())
    });
    assert!(ringing.is_some(), "agent never rung");
    caller.send_dtmf("0", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    let text = refer.msg.to_string();
    assert!(text.contains("supervisor@pbx.example.com"), "{text}");
    assert!(text.contains("X-IVR-Reason: key"), "{text}");
    // The queue let go: the agent's phone was CANCELled and is free again.
    ring_phone.join().unwrap().assert_success();
    let free = wait_for(Duration::from_secs(5), || {
        (agent_state(d, "frank") == "available").then_some(())
    });
    assert!(free.is_some(), "agent still rung for a caller who left");
    let queues = d.api_json("/api/queues");
    assert_eq!(queues[0]["waiting"], 0, "{queues}");
}

/// ~6 s: during the talk, `*0` (RFC 4733 through the relay; the agent gets the keys too)
/// ends the agent's call and transfers the caller to the supervisor, with the reason and
/// the agent's id in the headers.
#[test]
fn star_zero_during_the_talk_brings_the_supervisor_in() {
    let port = free_udp_port();
    let phone = agent("agent_answer_wait.xml", port, &["-rtp_echo"]);
    let s = daemon(&[("gina", port)], "");
    let d = &s.daemon;
    let caller = Caller::new(d.sip_udp, CallerOpts::default());
    assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
    let talking = wait_for(Duration::from_secs(15), || {
        (agent_state(d, "gina") == "talking").then_some(())
    });
    assert!(
        talking.is_some(),
        "never bridged: {}",
        d.api_json("/api/agents")
    );
    caller.send_dtmf("*0", 100);
    let refer = caller
        .wait_request("REFER", 0, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no REFER\n{}", caller.sip_trace()));
    let msg = &refer.msg;
    assert_eq!(
        msg.header("X-IVR-Reason").map(str::trim),
        Some("during_talk"),
        "{msg}"
    );
    assert_eq!(
        msg.header("X-IVR-Agent").map(str::trim),
        Some("gina"),
        "{msg}"
    );
    // The agent's leg was ended by ivrd (the scenario waits for that BYE).
    phone.join().unwrap().assert_success();
}

/// ~25 s: a caller told a long wait takes the callback offer (key 1) and hangs up with
/// their place kept; the same number asking again collapses into that one place. The place
/// survives kill -9; after the restart ivrd reserves an agent, calls the caller back
/// through the trunk (a SIPp UAS standing in for the caller's phone), says why it calls,
/// and bridges them to the agent.
#[test]
fn a_kept_place_survives_kill_9_and_the_caller_is_called_back_and_bridged() {
    let (ring1, ring2, helper, phone) = (
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
    );
    let ring1_phone = agent("agent_no_answer.xml", ring1, &[]);
    let ring2_phone = agent("agent_no_answer.xml", ring2, &[]);
    let helper_phone = agent("agent_answer.xml", helper, &["-rtp_echo", "-d", "3000"]);
    let callers_phone = agent("agent_answer_wait.xml", phone, &["-rtp_echo"]);
    // `helper` is away until after the restart, then the only free agent.
    let mut s = daemon(
        &[("helper", helper), ("ring1", ring1), ("ring2", ring2)],
        &format!(
            "    strategy: round_robin\n    ring_timeout_s: 60\n    handle_time_s: 600\n    \
             callback_after_s: 30\n    announce_every_s: 3\ncallbacks:\n  trunk: \
             \"sip:127.0.0.1:{phone}\"\n"
        ),
    );
    let d = &s.daemon;
    cli(d, &["agent", "away", "helper"]);
    let mut callers = Vec::new();
    for agent_id in ["ring1", "ring2"] {
        let caller = Caller::new(d.sip_udp, CallerOpts::default());
        assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
        let ringing = wait_for(Duration::from_secs(10), || {
            (agent_state(d, agent_id) == "ringing").then_some(())
        });
        assert!(ringing.is_some(), "{agent_id} never rung");
        callers.push(caller);
    }
    // Nobody picks up: the ringing agents go away once their calls end.
    cli(d, &["agent", "away", "ring1"]);
    cli(d, &["agent", "away", "ring2"]);
    let kept = prompt(d, "queue_callback_kept");
    let offer = prompt(d, "queue_callback_offer");
    for caller in &callers {
        // Both agents ringing, no handle times yet (600 s assumed): the wait is long, and
        // the next announcement offers the callback.
        let offered = wait_for(Duration::from_secs(25), || {
            // Correlating is not cheap: look once a second.
            thread::sleep(Duration::from_millis(1000));
            (caller.heard().find(&offer).ncc >= 0.9).then_some(())
        });
        assert!(offered.is_some(), "no callback offer heard");
        assert_heard_in_order(d, caller);
        caller.send_dtmf("1", 100);
        let bye = wait_for(Duration::from_secs(15), || caller.bye_received());
        assert!(
            bye.is_some(),
            "the call did not end\n{}",
            caller.sip_trace()
        );
        let m = caller.heard().find(&kept);
        assert!(m.ncc >= 0.9, "callback confirmation not heard: {m:?}");
    }
    let kept_rows = |d: &Daemon| -> Vec<serde_json::Value> {
        d.api_json("/api/callbacks")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["queue"] == "support")
            .collect()
    };
    let rows = kept_rows(d);
    assert_eq!(rows.len(), 1, "one place per number per queue: {rows:?}");
    assert_eq!(rows[0]["status"], "waiting", "{rows:?}");
    assert_eq!(rows[0]["caller"], "caller");
    ring1_phone.join().unwrap().assert_success();
    ring2_phone.join().unwrap().assert_success();

    s.daemon.kill9_and_restart();
    let d = &s.daemon;
    // Every agent is still away (states set by hand survive the restart too): the place
    // waits until one is back.
    assert_eq!(agent_state(d, "helper"), "away");
    assert_eq!(kept_rows(d)[0]["status"], "waiting");
    cli(d, &["agent", "available", "helper"]);
    let connected = wait_for(Duration::from_secs(30), || {
        let rows = kept_rows(d);
        (rows.len() == 1 && rows[0]["status"] == "connected").then_some(())
    });
    assert!(
        connected.is_some(),
        "the kept place was not called back and bridged: {:?}\n{}",
        kept_rows(d),
        d.api_json("/api/agents")
    );
    let phone_run = callers_phone.join().unwrap();
    phone_run.assert_success();
    let invite = phone_run
        .messages_log
        .split("----------------------------------------------")
        .find(|m| m.contains("INVITE sip:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        invite.contains("INVITE sip:caller@127.0.0.1"),
        "the caller's number is called: {invite}"
    );
    let helper_run = helper_phone.join().unwrap();
    helper_run.assert_success();
    assert!(helper_run
        .messages_log
        .contains("X-IVR-Flow: callback-support"));
    let text = d.metrics();
    let n = support::daemon::metric_sum(&text, "ivrd_callbacks_total", &[("state", "connected")]);
    assert_eq!(n, 1.0, "{text}");
}

/// ~10 s: a real softphone (baresip, headless) logs in as an agent by REGISTER with digest
/// credentials, is rung at its Contact when a caller waits, answers by itself, and the
/// caller hears what the agent's phone sends (a spoken file) through the relay.
#[test]
fn a_baresip_agent_registers_with_digest_and_takes_the_call() {
    let dir = TempDir::new("baresip-agent");
    let password = dir.join("bea.password");
    std::fs::write(&password, "s3cret-pw\n").unwrap();
    let flows = flows::flows_dir(&[("queued", FLOW)]);
    let mut d = Daemon::start(DaemonOpts {
        flows_dir: flows.path().to_path_buf(),
        default_flow: "queued".into(),
        sounds_dir: support::repo_root().join("sounds"),
        extra_yaml: format!(
            "agents:\n  - {{id: bea, name: Bea, username: bea, password_file: \"{}\"}}\n\
             queues:\n  support:\n    agents: [bea]\n    announce_every_s: 0\n",
            password.display()
        ),
        ..DaemonOpts::default()
    });
    assert_eq!(agent_state(&d, "bea"), "offline", "not logged in yet");
    // The agent's phone says this when it answers.
    let speech = dir.join("agent.wav");
    audio::espeak_wav(
        "Hello, this is Bea from support, how can I help you today?",
        &speech,
    );
    let sox = std::process::Command::new("sox")
        .args([
            speech.to_str().unwrap(),
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
        ])
        .arg(dir.join("agent8k.wav"))
        .status()
        .unwrap();
    assert!(sox.success());
    let sip_port = free_udp_port();
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
             audio_player aufile,{play}\naudio_source aufile,{src}\naudio_alert aufile,{play}\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
             module_app account.so\n",
            play = dir.join("heard.wav").display(),
            src = dir.join("agent8k.wav").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:bea@127.0.0.1:{}>;auth_pass=s3cret-pw;answermode=auto;regint=120;audio_codecs=PCMU\n",
            d.sip_udp.port()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("baresip");
    cmd.arg("-f")
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(dir.join("baresip.log")).unwrap())
        .stderr(std::process::Stdio::null());
    let _phone = support::ChildGuard::spawn(cmd, "baresip");
    let logged_in = wait_for(Duration::from_secs(20), || {
        (agent_state(&d, "bea") == "available").then_some(())
    });
    let log = || std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default();
    assert!(logged_in.is_some(), "baresip did not log in\n{}", log());
    let caller = Caller::new(d.sip_udp, CallerOpts::default());
    assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
    let talking = wait_for(Duration::from_secs(15), || {
        (agent_state(&d, "bea") == "talking").then_some(())
    });
    assert!(talking.is_some(), "baresip never answered\n{}", log());
    let bridged_at = Instant::now();
    caller.wait_audio(Some(bridged_at), Duration::from_millis(4500));
    // The middle of what the phone said (its first words may come before `talking` shows).
    let said = audio::load_8k(&dir.join("agent8k.wav"));
    let m = caller.heard().find(&said[4000..4000 + 8000 * 2]);
    let relayed: Vec<String> = d
        .metrics()
        .lines()
        .filter(|l| l.contains("bridge"))
        .map(String::from)
        .collect();
    assert!(
        m.ncc >= 0.8,
        "the agent's phone was not heard: {m:?}\n{relayed:?}\n{}",
        log()
    );
    caller.bye(Duration::from_secs(5));
    // The binding is durable: after kill -9 the agent is still logged in (the phone would
    // register again only after its 120 s interval).
    d.kill9_and_restart();
    let still = wait_for(Duration::from_secs(10), || {
        (agent_state(&d, "bea") == "available").then_some(())
    });
    assert!(
        still.is_some(),
        "the registration was lost: {}",
        d.api_json("/api/agents")
    );
}

/// ~8 s: a caller on A-law and an agent on mu-law: the relay transcodes both ways, and the
/// caller's speech still comes back through the agent's echo.
#[test]
fn the_relay_transcodes_between_a_law_callers_and_mu_law_agents() {
    let port = free_udp_port();
    let phone = agent("agent_answer.xml", port, &["-rtp_echo", "-d", "4000"]);
    let s = daemon(&[("ivy", port)], "    announce_every_s: 0\n");
    let d = &s.daemon;
    let speech = audio::tts_reference("Testing the relay between two kinds of telephone audio.");
    let caller = Caller::new(
        d.sip_udp,
        CallerOpts {
            codecs: vec![8],
            ..CallerOpts::default()
        },
    );
    assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
    assert_eq!(
        caller.negotiated().map(|n| n.0),
        Some(8),
        "the caller talks A-law"
    );
    let talking = wait_for(Duration::from_secs(15), || {
        (agent_state(d, "ivy") == "talking").then_some(())
    });
    assert!(talking.is_some());
    let bridged_at = Instant::now();
    caller.set_audio(AudioSource::Samples(speech.clone().into()));
    caller.wait_audio(Some(bridged_at), Duration::from_millis(3500));
    let m = caller.heard().since(bridged_at).find(&speech[..8000 * 2]);
    assert!(
        m.ncc >= 0.85,
        "the caller's speech did not come back: {m:?}"
    );
    let run = phone.join().unwrap();
    run.assert_success();
    assert!(
        run.messages_log.contains("m=audio") && run.messages_log.contains("RTP/AVP 0 8 101"),
        "the agent was offered both laws"
    );
}

/// ~8 s: nobody serves the queue, so the flow offers a callback node that keeps a place in
/// it (the overflow and outage paths do the same): key 1 stores the place, which waits for
/// an agent; the admin API shows it.
#[test]
fn a_callback_node_keeps_a_place_in_a_queue() {
    let flow = FLOW.replace(
        "  nobody:\n    play: queue_no_agents\n    hangup: true\n",
        "  nobody:\n    callback: queue_callback_offer\n    confirm: queue_callback_kept\n    \
         callback_queue: support\n    timeout_ms: 5000\n    next: goodbye\n",
    );
    assert_ne!(flow, FLOW);
    let s = daemon_with_flow(
        &flow,
        &[("jo", free_udp_port())],
        "callbacks:\n  trunk: \"sip:127.0.0.1:9\"\n",
    );
    let d = &s.daemon;
    cli(d, &["agent", "away", "jo"]);
    let caller = Caller::new(d.sip_udp, CallerOpts::default());
    assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
    let offer = prompt(d, "queue_callback_offer");
    let offered = wait_for(Duration::from_secs(20), || {
        thread::sleep(Duration::from_millis(500));
        (caller.heard().find(&offer).ncc >= 0.9).then_some(())
    });
    assert!(offered.is_some(), "no callback offer");
    caller.send_dtmf("1", 100);
    let kept = wait_for(Duration::from_secs(10), || {
        let rows = d.api_json("/api/callbacks");
        rows.as_array()?
            .iter()
            .find(|r| r["queue"] == "support" && r["status"] == "waiting")
            .cloned()
    });
    assert!(kept.is_some(), "{}", d.api_json("/api/callbacks"));
    let queues = d.api_json("/api/queues");
    assert_eq!(
        queues[0]["waiting"], 1,
        "the place is in the queue: {queues}"
    );
}

/// ~20 s, real Whisper: after the agent, the survey takes a score by key and the caller's
/// spoken words about the agent, transcribed and kept in the agent's record.
#[test]
fn the_survey_keeps_a_spoken_comment_about_the_agent() {
    let Some(asr) = support::asr_yaml("  workers: 1\n  threads_per_worker: 1\n  queue: 4\n") else {
        return;
    };
    let flow = FLOW.replace(
        "    survey: survey_question\n",
        "    survey: survey_question\n    comment: survey_comment\n",
    );
    assert_ne!(flow, FLOW);
    let port = free_udp_port();
    let phone = agent("agent_answer.xml", port, &["-rtp_echo", "-d", "1500"]);
    let s = daemon_with_flow(
        &flow,
        &[("kim", port)],
        &format!("    announce_every_s: 0\n{asr}"),
    );
    let d = &s.daemon;
    let caller = Caller::new(d.sip_udp, CallerOpts::default());
    assert_eq!(caller.invite(Duration::from_secs(10)).status(), Some(200));
    let heard_prompt = |name: &str, within: Duration| {
        let p = prompt(d, name);
        wait_for(within, || {
            thread::sleep(Duration::from_millis(500));
            (caller.heard().find(&p).ncc >= 0.9).then_some(())
        })
    };
    assert!(heard_prompt("survey_question", Duration::from_secs(30)).is_some());
    caller.send_dtmf("5", 100);
    assert!(heard_prompt("survey_comment", Duration::from_secs(15)).is_some());
    let words = audio::tts_reference("Kim was wonderful. She fixed my internet in two minutes.");
    caller.set_audio(AudioSource::Samples(words.into()));
    let stored = wait_for(Duration::from_secs(40), || {
        thread::sleep(Duration::from_millis(300));
        let fb = d.api_json("/api/agents/kim/feedback");
        (fb["count"] == 1).then_some(fb)
    })
    .expect("no feedback stored");
    let entry = &stored["entries"][0];
    assert_eq!(entry["score"], 5, "{stored}");
    let comment = entry["comment"].as_str().unwrap_or("").to_lowercase();
    let words_heard = ["wonderful", "fixed", "internet", "minutes"]
        .iter()
        .filter(|w| comment.contains(*w))
        .count();
    assert!(
        words_heard >= 2,
        "the comment was not transcribed: {comment:?}"
    );
    phone.join().unwrap().assert_success();
}
