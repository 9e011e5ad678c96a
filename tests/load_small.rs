//! The media load in small, for CI: 50 concurrent SIPp calls with audio both ways for about
//! 10 s against the debug build. `benches/load_media.py` runs the same scenario
//! (tests/sipp/load_media.xml) with 1,000 calls against a release build and prints figures.
//!
//! The daemon runs the load flow (tests/data/load-flows/load.yaml: prompts back to back)
//! with `media.rtp_timeout_s: 3`, so a call whose audio does not reach the daemon is hung up
//! by it, which SIPp counts as a failed call. Alongside the load, one Rust test caller
//! checks what a caller receives: the prompt audio intact and paced.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::caller::{Caller, CallerOpts};
use support::sipp::{Direction, Sipp, SippRun};
use support::{audio, metric_sum, Daemon, DaemonOpts, TempDir};

const CALLS: u32 = 50;
/// How long each SIPp call stays up after its ACK.
const CALL_MS: u64 = 10_000;
const RTP_TIMEOUT_S: u64 = 3;

/// `caller.ulaw`, what the SIPp callers say: a prompt as raw 8 kHz mu-law (sox).
fn caller_audio(dir: &TempDir, daemon: &Daemon) -> std::path::PathBuf {
    let out = dir.join("caller.ulaw");
    let mut cmd = std::process::Command::new("sox");
    cmd.arg(daemon.opts.sounds_dir.join("hours.wav"))
        .args(["-r", "8000", "-c", "1", "-t", "ul"])
        .arg(&out);
    let done = support::run_bounded(cmd, "sox", Duration::from_secs(30));
    assert_eq!(done.code, Some(0), "sox: {}", done.stderr);
    out
}

/// Per SIPp call (by Call-ID): when its INVITE left, its 200 OK came, and its BYE left.
#[derive(Default, Debug)]
struct CallTimes {
    invite: Option<f64>,
    answered: Option<f64>,
    bye: Option<f64>,
}

fn call_times(run: &SippRun) -> HashMap<String, CallTimes> {
    let mut calls: HashMap<String, CallTimes> = HashMap::new();
    for t in &run.messages {
        let Some(id) = t.msg.call_id() else { continue };
        let c = calls.entry(id.to_string()).or_default();
        match (t.dir, t.msg.method(), t.msg.status(), t.msg.cseq()) {
            (Direction::Sent, Some("INVITE"), _, _) => {
                c.invite.get_or_insert(t.at);
            }
            (Direction::Sent, Some("BYE"), _, _) => {
                c.bye.get_or_insert(t.at);
            }
            (Direction::Received, None, Some(200), Some((_, m))) if m == "INVITE" => {
                c.answered.get_or_insert(t.at);
            }
            _ => {}
        }
    }
    calls
}

/// 50 calls with media, all at once: no failed call, every one answered inside the ring
/// budget, the daemon gets each caller's RTP (else its RTP timeout would end the call) and
/// sends each its prompts (packet totals), and a monitored caller hears the greeting intact
/// with 20 ms pacing.
#[test]
fn fifty_concurrent_calls_with_media_all_answered_in_budget_with_rtp_both_ways() {
    let flows = support::repo_root().join("tests/data/load-flows");
    let daemon = Daemon::start(DaemonOpts {
        flows_dir: flows,
        default_flow: "load".into(),
        max_calls: 2 * CALLS,
        rtp_timeout_s: Some(RTP_TIMEOUT_S),
        ..DaemonOpts::default()
    });
    let budget_s = daemon.opts.ring_budget_ms as f64 / 1e3;
    let dir = TempDir::new("load-small");
    let ulaw = caller_audio(&dir, &daemon);

    let started = Instant::now();
    let sipp = {
        let target = daemon.sip_udp;
        std::thread::spawn(move || {
            Sipp::new("load_media.xml", target)
                .calls(CALLS)
                .rate(25.0)
                .limit(CALLS)
                .arg("-d")
                .arg(&CALL_MS.to_string())
                .file("caller.ulaw", &ulaw)
                .timeout(Duration::from_secs(45))
                .run()
        })
    };

    // The monitored call starts once the ramp (2 s at 25 calls/s) is done and listens for
    // 6 s while all the others are up.
    std::thread::sleep(Duration::from_millis(2500));
    let monitor = Caller::new(daemon.sip_udp, CallerOpts::default());
    let ok = monitor.invite(Duration::from_secs(10));
    assert_eq!(ok.status(), Some(200), "{}", monitor.sip_trace());
    let monitor_answer = monitor.time_to_status(200).expect("answered");
    let active = daemon.metric("ivrd_calls_active").unwrap_or(0.0);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(monitor.bye(Duration::from_secs(5)).status(), Some(200));

    let run = sipp.join().expect("SIPp thread");
    let elapsed = started.elapsed();
    run.assert_success();

    // Every call answered, inside the ring budget (SIPp's clock: INVITE sent -> 200 received).
    let calls = call_times(&run);
    assert_eq!(calls.len(), CALLS as usize, "{}", run.report());
    let mut answer_s: Vec<f64> = calls
        .iter()
        .map(|(id, c)| match (c.invite, c.answered) {
            (Some(i), Some(a)) => a - i,
            _ => panic!("call {id} not answered: {c:?}\n{}", run.report()),
        })
        .collect();
    answer_s.sort_by(f64::total_cmp);
    let slowest = *answer_s.last().unwrap();
    assert!(
        slowest <= budget_s,
        "slowest answer {slowest:.3} s, ring budget {budget_s} s"
    );
    assert!(
        monitor_answer.as_secs_f64() <= budget_s,
        "monitored call answered after {monitor_answer:?}"
    );

    let metrics = daemon.metrics();
    assert_eq!(
        metric_sum(&metrics, "ivrd_ring_budget_exceeded_total", &[]),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "ivrd_call_answer_seconds_count", &[]),
        f64::from(CALLS + 1),
        "{metrics}"
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "ivrd_calls_total",
            &[("outcome", "caller_hangup")]
        ),
        f64::from(CALLS + 1),
        "every call ended by its caller (none by the RTP timeout):\n{metrics}"
    );

    // RTP totals against the time each call was up (answer -> BYE, 50 packets a second).
    let up_s: f64 = calls
        .values()
        .map(|c| c.bye.unwrap_or(0.0) - c.answered.unwrap_or(0.0))
        .sum();
    let monitor_packets = monitor.rtp().len() as f64;
    let expected_out = up_s * 50.0;
    let sent =
        metric_sum(&metrics, "ivrd_rtp_packets_total", &[("direction", "out")]) - monitor_packets;
    let received = metric_sum(&metrics, "ivrd_rtp_packets_total", &[("direction", "in")]);
    println!(
        "load_small: {CALLS} calls in {elapsed:?}, {active} active during the monitored call; \
         answer p50 {:.1} ms max {:.1} ms; RTP out {sent} in {received} (expected ~{expected_out:.0} each way)",
        answer_s[answer_s.len() / 2] * 1e3,
        slowest * 1e3
    );
    // One call without RTP would be 2% short; the BYE/ACK timing costs far less.
    assert!(
        sent >= 0.985 * expected_out,
        "daemon sent {sent} RTP packets to the SIPp calls, expected ~{expected_out:.0}"
    );
    assert!(
        received >= 0.9 * expected_out,
        "daemon received {received} RTP packets, expected ~{expected_out:.0}"
    );

    // The monitored caller: the greeting intact, one packet every 20 ms.
    let heard = monitor.heard();
    let greeting = audio::load_8k(&daemon.opts.sounds_dir.join("greeting.wav"));
    let m = heard.find(&greeting);
    assert!(m.ncc >= 0.9, "greeting not heard intact under load: {m:?}");
    let arrivals: Vec<Instant> = monitor.rtp().iter().map(|p| p.at).collect();
    let timing = audio::timing(&arrivals, Duration::from_millis(20));
    println!("load_small: monitored call {timing:?}");
    assert!(
        timing.packets >= 280,
        "monitored call got {} packets in 6 s",
        timing.packets
    );
    // The debug build on a shared CI machine: generous bounds (the benchmark measures the
    // release build precisely).
    assert!(timing.p99_abs_dev_ms <= 10.0, "spacing {timing:?}");
    assert!(timing.drift_ms.abs() <= 40.0, "drift {timing:?}");
    assert_eq!(
        daemon.wait_metric("ivrd_calls_active", 0.0, Duration::from_secs(5)),
        Some(0.0)
    );
}
