//! The WebRTC test phone in a real browser: headless Chromium (through chromedriver) loads
//! `/phone` from the daemon's admin server and calls the default flow over WebRTC on
//! loopback. Its microphone is Chromium's fake capture device playing a WAV we make.
//!
//! Asserted: the browser hears the greeting (the audio it decoded, correlated with the
//! prompt, and its own receive statistics); a key on the page's keypad takes the flow's
//! branch; a spoken request routes to its intent and the transfer is shown with its context;
//! hang-up from the page ends the call on the daemon within 1 s (while it rings: abandoned);
//! closing the tab ends it at once; a browser that vanishes is hung up after
//! `webrtc.disconnect_timeout_ms`; the active-calls gauge is back to 0 each time. A
//! screenshot of the page during a call is kept in `target/artifacts/webrtc-phone.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh test installs them), sox,
//! and for the speech test the Whisper model (scripts/fetch-model.sh; IVRD_SKIP_ASR_TESTS=1
//! skips that test explicitly, as in asr_engine.rs).

mod support;

use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::audio::{find_best_match, load_8k};
use support::browser::{decode_base64, Browser};
use support::{run_bounded, sounds_dir, Daemon, DaemonOpts, TempDir};

/// One browser call at a time: two Chromiums, a daemon and Whisper on two cores would turn
/// the timing assertions into a measure of the machine's load.
static SERIAL: Mutex<()> = Mutex::new(());

/// `webrtc.disconnect_timeout_ms` in these tests.
const DISCONNECT_TIMEOUT: Duration = Duration::from_millis(2000);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn phone_daemon(extra_yaml: &str) -> Daemon {
    Daemon::start(DaemonOpts {
        extra_yaml: format!(
            "webrtc:\n  disconnect_timeout_ms: {}\n{extra_yaml}",
            DISCONNECT_TIMEOUT.as_millis()
        ),
        ..DaemonOpts::default()
    })
}

/// Where artifacts that outlive the test run go: `target/artifacts/`.
fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("artifacts")
}

/// A microphone recording for Chromium's fake capture device (48 kHz mono 16 bit):
/// `lead_s` of silence, then `speech` if any, then `tail_s` of silence. The device loops it.
fn microphone(dir: &TempDir, speech: Option<&Path>, lead_s: f64, tail_s: f64) -> PathBuf {
    let out = dir.join("microphone.wav");
    let mut cmd = Command::new("sox");
    match speech {
        Some(input) => {
            cmd.arg(input);
        }
        None => {
            cmd.args(["-n", "-r", "48000", "-c", "1"]);
        }
    }
    cmd.args(["-r", "48000", "-c", "1", "-b", "16"]).arg(&out);
    match speech {
        Some(_) => cmd.args(["pad", &lead_s.to_string(), &tail_s.to_string()]),
        None => cmd.args(["trim", "0", &(lead_s + tail_s).to_string()]),
    };
    let r = run_bounded(cmd, "sox", Duration::from_secs(30));
    assert_eq!(
        r.code,
        Some(0),
        "sox could not make the microphone file: {}",
        r.stderr
    );
    out
}

/// Loads the page with the admin token in its fragment and waits for the flow list.
fn open_phone(browser: &Browser, daemon: &Daemon) {
    browser.goto(&format!(
        "http://{}/phone#token={}",
        daemon.admin(),
        daemon.admin_token()
    ));
    browser
        .wait_js(
            "document.querySelectorAll('#flow option').length",
            Duration::from_secs(10),
        )
        .expect("the page did not list the flows");
}

/// Records what the `<audio>` element plays, through WebAudio at 8 kHz (Chromium resamples),
/// from the moment the remote stream is attached.
const START_RECORDER: &str = r#"
const done = arguments[arguments.length - 1];
const ctx = new AudioContext({ sampleRate: 8000 });
const source = ctx.createMediaStreamSource(document.getElementById('remote').srcObject);
const tap = ctx.createScriptProcessor(1024, 1, 1);
window.heard = [];
tap.onaudioprocess = (e) => {
  for (const x of e.inputBuffer.getChannelData(0)) window.heard.push(Math.round(x * 32767));
};
source.connect(tap);
tap.connect(ctx.destination);
ctx.resume().then(() => done(ctx.sampleRate));
"#;

fn start_recorder(browser: &Browser) {
    browser
        .wait_js(
            "document.getElementById('remote').srcObject",
            Duration::from_secs(10),
        )
        .expect("no remote stream on the page's <audio> element");
    let rate = browser.js_async(START_RECORDER, json!([]));
    assert_eq!(rate, json!(8000), "recorder sample rate");
}

fn recorded(browser: &Browser) -> Vec<i16> {
    let v = browser.js("return window.heard;", json!([]));
    v.as_array()
        .expect("recorded samples")
        .iter()
        .map(|x| x.as_i64().unwrap_or(0).clamp(-32768, 32767) as i16)
        .collect()
}

/// The reference found piece by piece in what the browser heard.
#[derive(Debug)]
struct Pieces {
    /// Correlation of each voiced 200 ms piece at its best nearby offset.
    pieces: Vec<f64>,
    /// Their mean, weighted by the piece's energy.
    weighted: f64,
}

impl Pieces {
    /// The share of pieces heard faithfully.
    fn good_share(&self) -> f64 {
        let good = self.pieces.iter().filter(|c| **c >= 0.9).count();
        good as f64 / self.pieces.len().max(1) as f64
    }
}

/// How well `heard` carries `reference` (both 8 kHz) from `start` on, when each 200 ms piece
/// may sit up to 60 ms from where the whole would put it. A browser's jitter buffer
/// time-stretches the first second of a stream while it settles (Chromium reports it as
/// `insertedSamplesForDeceleration` / `removedSamplesForAcceleration`), which shifts the
/// pieces by tens of milliseconds and lowers a whole-prompt correlation, though every word
/// arrived intact. Silent pieces (below 1% of the loudest's energy) are not scored.
fn piecewise_match(reference: &[i16], heard: &[i16], start: usize) -> Pieces {
    const PIECE: usize = 1600;
    const SLACK: usize = 480;
    let energy = |x: &[i16]| x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
    let loudest = reference.chunks(PIECE).map(energy).fold(0.0, f64::max);
    let mut pieces = Vec::new();
    let (mut sum, mut weights) = (0.0, 0.0);
    for (i, piece) in reference.chunks_exact(PIECE).enumerate() {
        let e = energy(piece);
        if e < loudest / 100.0 {
            continue;
        }
        let centre = start + i * PIECE;
        let best = (centre.saturating_sub(SLACK)..=centre + SLACK)
            .filter(|o| o + PIECE <= heard.len())
            .map(|o| {
                let h = &heard[o..o + PIECE];
                let dot: f64 = piece
                    .iter()
                    .zip(h)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                let eh = energy(h);
                if eh > 0.0 {
                    dot / (e * eh).sqrt()
                } else {
                    0.0
                }
            })
            .fold(0.0, f64::max);
        pieces.push((best * 1000.0).round() / 1000.0);
        sum += best * e;
        weights += e;
    }
    Pieces {
        pieces,
        weighted: if weights > 0.0 { sum / weights } else { 0.0 },
    }
}

/// Keeps what the browser heard next to the test's other files (kept when it fails).
fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for s in samples {
        w.write_sample(*s).expect("write wav");
    }
    w.finalize().expect("finish wav");
}

/// Clicks Call and waits for the media to connect; (answer_ms, connect_ms, click_to_audio_ms).
fn call(browser: &Browser) -> (f64, f64, f64) {
    browser.click("#call");
    start_recorder(browser);
    let timing = browser
        .wait_js(
            "window.phone.connectMs !== null && window.phone.clickToAudioMs !== null \
             && [window.phone.answerMs, window.phone.connectMs, window.phone.clickToAudioMs]",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| {
            panic!(
                "the call did not connect within 10 s; page: {}",
                browser.js("return JSON.stringify(window.phone) + ' ' + document.getElementById('error').textContent", json!([]))
            )
        });
    let f = |i: usize| timing[i].as_f64().expect("number");
    (f(0), f(1), f(2))
}

fn page_path(browser: &Browser) -> Vec<String> {
    let v = browser.js("return window.phone.path;", json!([]));
    serde_json::from_value(v).expect("path")
}

/// What the page shows as the node path (its visible text).
fn shown_path(browser: &Browser) -> String {
    browser
        .js(
            "return document.getElementById('path').innerText;",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_node(browser: &Browser, node: &str, timeout: Duration) {
    let found = browser.wait_js(
        &format!("window.phone.path.includes({})", json!(node)),
        timeout,
    );
    assert!(
        found.is_some(),
        "node {node} not reached within {timeout:?}; path {:?}, events {}",
        page_path(browser),
        browser.js("return JSON.stringify(window.phone.events);", json!([]))
    );
}

fn events_of(browser: &Browser, kind: &str) -> Vec<Value> {
    let v = browser.js(
        "return window.phone.events.filter((e) => e.type === arguments[0]);",
        json!([kind]),
    );
    v.as_array().cloned().unwrap_or_default()
}

/// Waits for `ivrd_calls_active` to read 0; how long it took.
fn wait_idle(daemon: &Daemon, since: Instant, timeout: Duration) -> Option<Duration> {
    support::wait_for(timeout, || {
        (daemon.metric("ivrd_calls_active") == Some(0.0)).then(|| since.elapsed())
    })
}

/// The UDP sockets a process holds (from /proc): a browser call adds its ICE socket, and
/// closing the call's peer connection (which also stops its driver task) releases it.
fn udp_sockets(pid: u32) -> usize {
    let held: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter_map(|target| {
                    let t = target.to_string_lossy().into_owned();
                    Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    ["udp", "udp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| line.split_whitespace().nth(9).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .filter(|inode| held.contains(inode))
        .count()
}

/// Waits until the daemon holds `want` UDP sockets; the count it last saw.
fn wait_udp_sockets(daemon: &Daemon, want: usize) -> usize {
    let mut last = 0;
    let hit = support::wait_for(Duration::from_secs(5), || {
        last = udp_sockets(daemon.pid());
        (last == want).then_some(())
    });
    if hit.is_some() {
        want
    } else {
        last
    }
}

#[test]
fn base64_of_screenshots_decodes() {
    assert_eq!(decode_base64("aXZyZA=="), b"ivrd");
    assert_eq!(decode_base64("aXZyZGQ="), b"ivrdd");
    assert_eq!(decode_base64("aXZy\nZGRk"), b"ivrddd");
    assert_eq!(decode_base64(""), b"");
}

#[test]
fn browser_hears_the_greeting_and_the_keypad_takes_the_branch() {
    let _serial = serial();
    // A refused transfer is what keeps this call going after key 1 (see the end).
    let daemon = phone_daemon("  transfers: fail\n");
    let dir = TempDir::new("webrtc-keys");
    let mic = microphone(&dir, None, 0.0, 30.0);
    let browser = Browser::start(&mic);
    open_phone(&browser, &daemon);

    let udp_idle = udp_sockets(daemon.pid());
    let clicked = Instant::now();
    let (answer_ms, connect_ms, click_to_audio_ms) = call(&browser);
    assert_eq!(
        wait_udp_sockets(&daemon, udp_idle + 1),
        udp_idle + 1,
        "a browser call holds one ICE socket"
    );
    println!(
        "answer {answer_ms} ms (offer -> SDP answer), media connected {connect_ms} ms after the \
         offer, {click_to_audio_ms} ms after the click (page); {} ms in the test",
        clicked.elapsed().as_millis()
    );
    assert!(
        answer_ms < 4000.0,
        "answered after the ring budget: {answer_ms} ms"
    );
    let timing = browser
        .js(
            "return document.getElementById('timing').innerText;",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        timing.contains("answered in") && timing.contains("media connected in"),
        "the page does not show the answer time: {timing:?}"
    );

    // The greeting is over once the menu starts; everything until then is in the recording.
    wait_node(&browser, "main_menu", Duration::from_secs(10));
    // Its last frame left ivrd just now; it is recorded once 300 ms more have come through
    // the network and the jitter buffer.
    let at_menu = recorded(&browser).len();
    support::wait_for(Duration::from_secs(5), || {
        (recorded(&browser).len() >= at_menu + 2400).then_some(())
    })
    .expect("the browser stopped recording");
    let heard = recorded(&browser);
    write_wav(&dir.join("heard.wav"), &heard);
    let stats = browser.js_async(
        "const done = arguments[arguments.length - 1]; window.phone.stats().then(done);",
        json!([]),
    );
    println!("browser receive statistics: {stats}");
    let greeting = load_8k(&sounds_dir().join("greeting.wav"));
    let m = find_best_match(&greeting, &heard);
    let pieces = piecewise_match(&greeting, &heard, m.offset);
    println!(
        "greeting heard by the browser at {:.3} s of {:.2} s recorded: correlation {:.3} as a \
         whole, {:.3} in 200 ms pieces (each within +-60 ms: {:?})",
        m.offset as f64 / 8000.0,
        heard.len() as f64 / 8000.0,
        m.ncc,
        pieces.weighted,
        pieces.pieces
    );
    assert!(
        pieces.weighted > 0.9 && pieces.good_share() >= 0.75,
        "the browser's audio does not match the greeting: {pieces:?}"
    );
    assert_eq!(stats["codec"], "audio/PCMU", "{stats}");
    assert!(
        stats["packetsReceived"].as_u64().unwrap_or(0) >= 100,
        "{stats}"
    );
    assert!(
        stats["totalAudioEnergy"].as_f64().unwrap_or(0.0) > 0.0,
        "{stats}"
    );

    // Key 3 on the page's keypad: RFC 4733 from RTCDTMFSender, the branch to `hours`.
    browser.click("#keypad [data-key='3']");
    wait_node(&browser, "hours", Duration::from_secs(3));
    let shown = shown_path(&browser);
    assert!(
        shown.contains("greet") && shown.contains("main_menu") && shown.contains("hours"),
        "the page shows the path as {shown:?}"
    );
    let keys = events_of(&browser, "key");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["key"], "3");
    // Key 1 (during the hours prompt, kept for the menu): billing, whose transfer has no SIP
    // peer. With `transfers: fail` the page shows it as refused and the flow goes on.
    browser.click("#keypad [data-key='1']");
    wait_node(&browser, "transfer_failed", Duration::from_secs(8));
    let transfers = events_of(&browser, "transfer");
    assert_eq!(transfers.len(), 1, "{transfers:?}");
    assert_eq!(transfers[0]["target"], "sip:billing@pbx.example.com");
    assert_eq!(transfers[0]["result"], "refused");
    let shown_transfer = browser
        .js(
            "return document.getElementById('transfer').innerText;",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        shown_transfer.contains("sip:billing@pbx.example.com")
            && shown_transfer.contains("X-IVR-Intent"),
        "the page shows the transfer as {shown_transfer:?}"
    );

    let screenshot = artifacts_dir().join("webrtc-phone.png");
    browser.screenshot(&screenshot);
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a screenshot: {} bytes",
        png.len()
    );
    println!("screenshot: {}", screenshot.display());

    let calls = daemon.api_json("/api/calls");
    assert_eq!(calls["active"], 1, "{calls}");
    assert_eq!(calls["calls"][0]["transport"], "webrtc", "{calls}");

    // Hang up from the page: the daemon ends the call within 1 s.
    let hung_up = Instant::now();
    browser.click("#hangup");
    let took = wait_idle(&daemon, hung_up, Duration::from_secs(5))
        .expect("the call was still active 5 s after the page hung up");
    println!(
        "page hang-up -> ivrd_calls_active 0 in {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(1), "hang-up took {took:?}");
    let ended = browser
        .wait_js("window.phone.ended", Duration::from_secs(3))
        .expect("the page did not show the end of the call");
    assert_eq!(ended["outcome"], "caller_hangup", "{ended}");
    assert_eq!(ended["reason"], "page_hangup", "{ended}");
    assert_eq!(
        wait_udp_sockets(&daemon, udp_idle),
        udp_idle,
        "the call's ICE socket outlived it"
    );

    let metrics = daemon.metrics();
    let metric = |s: &str| support::metric_value(&metrics, s);
    assert_eq!(
        metric("ivrd_calls_total{outcome=\"caller_hangup\",transport=\"webrtc\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric("ivrd_call_answer_seconds_count{transport=\"webrtc\"}"),
        Some(1.0)
    );
    assert_eq!(metric("ivrd_dtmf_total{transport=\"webrtc\"}"), Some(2.0));
    assert_eq!(
        metric("ivrd_intents_total{flow=\"support-line\",intent=\"hours\",node=\"main_menu\"}"),
        Some(1.0)
    );
    let rtp_in = metric("ivrd_rtp_packets_total{direction=\"in\",transport=\"webrtc\"}");
    let rtp_out = metric("ivrd_rtp_packets_total{direction=\"out\",transport=\"webrtc\"}");
    assert!(
        rtp_in.unwrap_or(0.0) > 100.0 && rtp_out.unwrap_or(0.0) > 100.0,
        "{rtp_in:?} {rtp_out:?}"
    );
    assert_eq!(daemon.api_json("/api/calls")["active"], 0);
}

#[test]
fn a_spoken_request_routes_to_its_intent_and_the_transfer_is_shown() {
    let Some(asr) = support::asr_yaml("  threads_per_worker: 1\n") else {
        return;
    };
    let _serial = serial();
    let daemon = phone_daemon(&asr);
    let dir = TempDir::new("webrtc-speech");
    // Silence through the greeting, then the request while the menu plays (barge-in).
    let phrase = support::repo_root().join("tests/corpus/tune/041-my-internet-is-down-again.wav");
    let mic = microphone(&dir, Some(&phrase), 5.0, 20.0);
    let browser = Browser::start(&mic);
    open_phone(&browser, &daemon);
    call(&browser);

    wait_node(&browser, "support", Duration::from_secs(20));
    let transcripts = events_of(&browser, "transcript");
    println!("transcripts shown on the page: {transcripts:?}");
    assert_eq!(transcripts.len(), 1, "{transcripts:?}");
    let said = transcripts[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!said.trim().is_empty(), "{transcripts:?}");
    let intents = events_of(&browser, "intent");
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["intent"], "support");

    // The transfer (default `transfers: end`): shown with its context, the call ends as
    // transferred.
    let ended = browser
        .wait_js("window.phone.ended", Duration::from_secs(10))
        .expect("the call did not end after the transfer");
    assert_eq!(ended["outcome"], "transferred", "{ended}");
    let transfer = &events_of(&browser, "transfer")[0];
    assert_eq!(transfer["target"], "sip:support@pbx.example.com");
    assert_eq!(transfer["result"], "accepted");
    let headers: Vec<(String, String)> =
        serde_json::from_value(transfer["headers"].clone()).expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // What a SIP transfer would carry, so the agent need not ask the caller again.
    assert_eq!(header("X-IVR-Intent"), "support", "{headers:?}");
    assert!(header("X-IVR-Node").contains("main_menu"), "{headers:?}");
    assert_eq!(header("X-IVR-Transcript"), said, "{headers:?}");
    assert!(wait_idle(&daemon, Instant::now(), Duration::from_secs(3)).is_some());
    assert_eq!(
        daemon.metric("ivrd_calls_total{outcome=\"transferred\",transport=\"webrtc\"}"),
        Some(1.0)
    );
    assert_eq!(
        daemon.metric("ivrd_asr_results_total{result=\"match\"}"),
        Some(1.0)
    );
}

#[test]
fn closing_the_tab_hangs_up_at_once() {
    let _serial = serial();
    let daemon = phone_daemon("");
    let dir = TempDir::new("webrtc-tab");
    let mic = microphone(&dir, None, 0.0, 30.0);
    let browser = Browser::start(&mic);
    browser.new_tab();
    open_phone(&browser, &daemon);
    call(&browser);
    assert_eq!(daemon.metric("ivrd_calls_active"), Some(1.0));

    let closed = Instant::now();
    browser.close_tab();
    let took = wait_idle(&daemon, closed, DISCONNECT_TIMEOUT + Duration::from_secs(2))
        .expect("the call outlived its tab");
    println!(
        "tab closed -> ivrd_calls_active 0 in {} ms",
        took.as_millis()
    );
    // The page's own hang-up on `pagehide`, well before the disconnect timeout.
    assert!(took < DISCONNECT_TIMEOUT, "took {took:?}");
    assert!(
        daemon.wait_for_log("reason=\"page_hangup\"", Duration::from_secs(2)),
        "the call did not end by the page's hang-up"
    );
}

#[test]
fn hanging_up_while_it_rings_abandons_the_call() {
    let _serial = serial();
    // One audible ring first: the offer's request is pending while the call rings.
    let daemon = Daemon::start(DaemonOpts {
        min_ring_ms: 3000,
        extra_yaml: "webrtc:\n  enabled: true\n".into(),
        ..DaemonOpts::default()
    });
    let dir = TempDir::new("webrtc-ring");
    let mic = microphone(&dir, None, 0.0, 30.0);
    let browser = Browser::start(&mic);
    open_phone(&browser, &daemon);
    browser.click("#call");
    let rang = support::wait_for(Duration::from_secs(5), || {
        (daemon.metric("ivrd_calls_active") == Some(1.0)).then_some(())
    });
    assert!(rang.is_some(), "the call never rang");
    let hung_up = Instant::now();
    browser.click("#hangup");
    let took = wait_idle(&daemon, hung_up, Duration::from_secs(2))
        .expect("the ringing call outlived the page's hang-up");
    println!(
        "hang-up while ringing -> ivrd_calls_active 0 in {} ms",
        took.as_millis()
    );
    assert_eq!(
        daemon.metric("ivrd_calls_total{outcome=\"abandoned\",transport=\"webrtc\"}"),
        Some(1.0)
    );
    assert!(daemon.wait_for_log("reason=\"request_gone\"", Duration::from_secs(2)));
    assert_eq!(
        browser.js("return window.phone.status;", json!([])),
        json!("hung up")
    );
}

#[test]
fn a_vanished_browser_is_hung_up_after_the_disconnect_timeout() {
    let _serial = serial();
    let daemon = phone_daemon("");
    let dir = TempDir::new("webrtc-kill");
    let mic = microphone(&dir, None, 0.0, 30.0);
    let browser = Browser::start(&mic);
    open_phone(&browser, &daemon);
    let udp_idle = udp_sockets(daemon.pid());
    call(&browser);

    // No pagehide, no hang-up request: only the silence of its media tells.
    let killed = Instant::now();
    browser.kill_browser();
    let took = wait_idle(&daemon, killed, DISCONNECT_TIMEOUT + Duration::from_secs(3))
        .expect("the call outlived its browser");
    println!(
        "browser killed -> ivrd_calls_active 0 in {} ms (disconnect timeout {} ms)",
        took.as_millis(),
        DISCONNECT_TIMEOUT.as_millis()
    );
    assert!(
        took >= DISCONNECT_TIMEOUT - Duration::from_millis(300)
            && took < DISCONNECT_TIMEOUT + Duration::from_secs(1),
        "took {took:?}"
    );
    assert!(
        daemon.wait_for_log("reason=\"media_timeout\"", Duration::from_secs(2)),
        "the call did not end by the media timeout"
    );
    assert_eq!(
        wait_udp_sockets(&daemon, udp_idle),
        udp_idle,
        "the call's ICE socket outlived it"
    );
    assert_eq!(
        daemon.metric("ivrd_calls_total{outcome=\"caller_hangup\",transport=\"webrtc\"}"),
        Some(1.0)
    );
}

/// The API without a browser: the token, bad requests, the page's headers, and the phone
/// switched off.
#[test]
fn the_phone_api_refuses_what_it_cannot_use() {
    let daemon = phone_daemon("");
    let (status, body) = daemon.api_auth("GET", "/api/webrtc/flows", None, None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = daemon.api_auth(
        "POST",
        "/api/webrtc/calls",
        Some("Bearer wrong"),
        Some(r#"{"sdp":"v=0"}"#),
    );
    assert_eq!(status, 401, "{body}");
    let flows = daemon.api_json("/api/webrtc/flows");
    assert_eq!(flows, json!([{"name": "support-line", "default": true}]));

    let cases = [
        ("not json", 400, "invalid JSON"),
        (r#"{"sdp": "v=0", "extra": 1}"#, 400, "extra"),
        (r#"{"flow": "nope", "sdp": "v=0"}"#, 404, "support-line"),
        (r#"{"sdp": "this is not SDP"}"#, 400, "offer"),
    ];
    for (body, want, needle) in cases {
        let (status, answer) = daemon.api("POST", "/api/webrtc/calls", Some(body));
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(answer.contains(needle), "{body} -> {answer}");
    }
    // A well-formed offer without PCMU: nothing the call could send.
    let fingerprint: Vec<String> = (0..32).map(|i| format!("{:02X}", i * 7)).collect();
    let opus_only = [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        &format!("a=fingerprint:sha-256 {}", fingerprint.join(":")),
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "",
    ]
    .join("\r\n");
    let (status, answer) = daemon.api(
        "POST",
        "/api/webrtc/calls",
        Some(&json!({ "sdp": opus_only }).to_string()),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("PCMU"), "{answer}");

    let (status, body) = daemon.api("DELETE", "/api/webrtc/calls/webrtc-nope", None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = daemon.api("GET", "/api/webrtc/calls/webrtc-nope/events", None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(daemon.metric("ivrd_calls_active"), Some(0.0));

    // The page needs no token (it holds no secret) and may only talk to this server.
    let (status, page) =
        support::daemon::http_get(daemon.admin(), "/phone", Duration::from_secs(5)).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/phone.js\"></script>"));
    let (status, js) =
        support::daemon::http_get(daemon.admin(), "/phone.js", Duration::from_secs(5)).unwrap();
    assert_eq!(status, 200);
    assert!(js.contains("setCodecPreferences"));

    let off = Daemon::start(DaemonOpts {
        extra_yaml: "webrtc:\n  enabled: false\n".into(),
        ..DaemonOpts::default()
    });
    let (status, _) =
        support::daemon::http_get(off.admin(), "/phone", Duration::from_secs(5)).unwrap();
    assert_eq!(status, 404);
    let (status, body) = off.api("POST", "/api/webrtc/calls", Some(r#"{"sdp":"v=0"}"#));
    assert_eq!(status, 404);
    assert!(body.contains("webrtc.enabled"), "{body}");
}
