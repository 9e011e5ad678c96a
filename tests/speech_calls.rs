//! Real SIP calls speak to the default flow: the Rust test caller sends a phrase from the
//! spoken corpus (espeak-ng voices through 8 kHz G.711, `scripts/make-corpus.sh`) as RTP
//! while the menu question plays, and the daemon, with real Whisper, must transfer to the
//! intent's target. Silence, line noise and an unrelated request must never route.
//!
//! Needs the Whisper model (`scripts/fetch-model.sh`, as a user runs it); see
//! `support::asr_model`.

mod support;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::audio::load_8k;
use support::caller::{AudioSource, Caller, CallerOpts};
use support::{metric_sum, repo_root, Daemon, DaemonOpts};

/// Caller audio: silence through the greeting (about 2.9 s), then the phrase while the menu
/// question plays (speech barges in), then silence.
fn speech_after(lead: Duration, file: &str) -> Arc<Vec<i16>> {
    let mut samples = vec![0i16; (lead.as_millis() * 8) as usize];
    samples.extend(load_8k(&repo_root().join("tests/corpus").join(file)));
    samples.extend(vec![0i16; 8000]);
    Arc::new(samples)
}

/// One speech daemon at a time: ggml's worker threads spin while they wait, so two
/// recognisers on a 2-core machine slow each other down tenfold.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn speech_daemon() -> Option<(Daemon, std::sync::MutexGuard<'static, ()>)> {
    let model = support::asr_model()?;
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let daemon = Daemon::start(DaemonOpts {
        extra_yaml: format!(
            "asr:\n  model: \"{}\"\n  workers: 1\n  threads_per_worker: 1\n  queue: 4\n",
            model.display()
        ),
        ..DaemonOpts::default()
    });
    Some((daemon, serial))
}

/// Places a call that says `file` and returns the Refer-To of the first REFER, if any
/// arrives within `wait`.
fn say(daemon: &Daemon, file: &str, wait: Duration) -> (Option<String>, String) {
    let caller = Caller::new(
        daemon.sip_udp,
        CallerOpts {
            audio: AudioSource::Samples(speech_after(Duration::from_millis(4000), file)),
            ..CallerOpts::default()
        },
    );
    let ok = caller.invite(Duration::from_secs(5));
    assert_eq!(ok.status(), Some(200), "{}", caller.sip_trace());
    let refer = caller.wait_request("REFER", 0, wait);
    let target = refer.and_then(|e| e.msg.header("Refer-To").map(str::to_string));
    let trace = caller.sip_trace();
    let _ = caller.bye(Duration::from_secs(3));
    (target, trace)
}

#[test]
fn spoken_requests_transfer_to_their_intent_over_sip() {
    let Some((daemon, _serial)) = speech_daemon() else {
        return;
    };
    let started = Instant::now();
    // One phrase per transfer intent, one escalation phrase, each with a different voice.
    let cases = [
        ("001-my-bill.wav", "sip:billing@pbx.example.com"),
        ("016-my-internet-is-down.wav", "sip:support@pbx.example.com"),
        (
            "019-the-internet-is-not-working.wav",
            "sip:support@pbx.example.com",
        ),
        ("030-supervisor.wav", "sip:supervisor@pbx.example.com"),
    ];
    let results: Vec<(String, String, Option<String>, String)> = cases
        .iter()
        .map(|&(file, want)| {
            let (got, trace) = say(&daemon, file, Duration::from_secs(20));
            (file.to_string(), want.to_string(), got, trace)
        })
        .collect();
    for (file, want, got, trace) in &results {
        let got = got
            .as_deref()
            .unwrap_or_else(|| panic!("{file}: no REFER\n{trace}\ndaemon:\n{}", daemon.stderr()));
        assert!(
            got.starts_with(&format!("<{want}")),
            "{file}: transferred to {got}, want {want}"
        );
    }
    let metrics = daemon.metrics();
    assert!(
        metric_sum(&metrics, "ivrd_asr_results_total", &[("result", "match")])
            + metric_sum(
                &metrics,
                "ivrd_asr_results_total",
                &[("result", "escalation")]
            )
            >= cases.len() as f64,
        "{metrics}"
    );
    eprintln!(
        "{} spoken calls routed in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn silence_noise_and_unrelated_speech_never_route() {
    let Some((daemon, _serial)) = speech_daemon() else {
        return;
    };
    let daemon = Arc::new(daemon);
    let files = [
        "900-silence.wav",
        "901-line-noise.wav",
        "037-what-is-the-weather-like-today.wav",
    ];
    let handles: Vec<_> = files
        .iter()
        .map(|&file| {
            let d = daemon.clone();
            // Long enough for the whole menu question (about 11.6 s after the greeting) and
            // the first no-input timeout (6 s): a route would have shown by then.
            thread::spawn(move || (file, say(&d, file, Duration::from_secs(22))))
        })
        .collect();
    for h in handles {
        let (file, (got, trace)) = h.join().expect("call thread");
        assert_eq!(got, None, "{file} routed somewhere\n{trace}");
    }
    let metrics = daemon.metrics();
    assert_eq!(
        metric_sum(&metrics, "ivrd_intents_total", &[]),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "ivrd_asr_results_total", &[("result", "match")]),
        0.0,
        "{metrics}"
    );
}
