//! Real SIP calls speak to the default flow: the Rust test caller sends a sentence from the
//! spoken corpus (espeak-ng, flite and festival voices through 8 kHz G.711,
//! `scripts/make-corpus.sh`) as RTP while the menu question plays, and the daemon, with real
//! Whisper and the sentence-embedding matcher, must transfer to the intent's target.
//! Callers paraphrase: the routed sentences come from the corpus's held-out half and share
//! no content word with the flow's phrases. Silence, line noise, fillers and out-of-scope
//! requests must never route; an unsure match is confirmed, and "yes" routes.
//!
//! Needs the Whisper and embedding models (`scripts/fetch-model.sh`,
//! `scripts/fetch-embedder.sh`, as a user runs them); see `support::asr_yaml`.

mod support;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::audio::load_8k;
use support::caller::{AudioSource, Caller, CallerOpts};
use support::{metric_sum, repo_root, Daemon, DaemonOpts};

/// Silence through the greeting (about 2.9 s) and into the menu question.
const LEAD: Duration = Duration::from_millis(4000);

fn corpus_audio(file: &str) -> Vec<i16> {
    load_8k(&repo_root().join("tests/corpus").join(file))
}

/// Caller audio: silence for `lead`, then each file with `gap` of silence after it.
fn speech(lead: Duration, files: &[&str], gap: Duration) -> Arc<Vec<i16>> {
    let mut samples = vec![0i16; (lead.as_millis() * 8) as usize];
    for file in files {
        samples.extend(corpus_audio(file));
        samples.extend(vec![0i16; (gap.as_millis() * 8) as usize]);
    }
    Arc::new(samples)
}

/// One row of tests/corpus/corpus.tsv.
struct Entry {
    file: String,
    split: String,
    expected: String,
    text: String,
    overlap: bool,
}

fn corpus() -> Vec<Entry> {
    let tsv = std::fs::read_to_string(repo_root().join("tests/corpus/corpus.tsv"))
        .expect("tests/corpus/corpus.tsv");
    tsv.lines()
        .skip(1)
        .map(|line| {
            let c: Vec<&str> = line.split('\t').collect();
            Entry {
                file: c[0].into(),
                split: c[1].into(),
                expected: c[2].into(),
                text: c[3].into(),
                overlap: c.get(9) == Some(&"yes"),
            }
        })
        .collect()
}

/// The transfer target of each routable label in flows/support-line.yaml.
fn target(label: &str) -> &'static str {
    match label {
        "billing" => "sip:billing@pbx.example.com",
        "support" => "sip:support@pbx.example.com",
        "hours" => "(no transfer)",
        "cancel" => "sip:accounts@pbx.example.com",
        "escalation" => "sip:supervisor@pbx.example.com",
        other => panic!("no target for {other}"),
    }
}

/// One speech daemon at a time: ggml's worker threads spin while they wait, so two
/// recognisers on a 2-core machine slow each other down tenfold.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn speech_daemon() -> Option<(Daemon, std::sync::MutexGuard<'static, ()>)> {
    let asr = support::asr_yaml("  workers: 1\n  threads_per_worker: 1\n  queue: 4\n")?;
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let daemon = Daemon::start(DaemonOpts {
        extra_yaml: asr,
        ..DaemonOpts::default()
    });
    Some((daemon, serial))
}

/// Places a call that plays `audio` and returns the Refer-To of the first REFER, if any
/// arrives within `wait`.
fn call(daemon: &Daemon, audio: Arc<Vec<i16>>, wait: Duration) -> (Option<String>, String) {
    let caller = Caller::new(
        daemon.sip_udp,
        CallerOpts {
            audio: AudioSource::Samples(audio),
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

/// Runs the calls `batch` at a time (the recogniser's queue holds 4; more would be told to
/// use keys, which is tested elsewhere).
fn calls_in_batches(
    daemon: &Arc<Daemon>,
    files: &[String],
    batch: usize,
    wait: Duration,
) -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    for chunk in files.chunks(batch) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|file| {
                let (d, file) = (daemon.clone(), file.clone());
                thread::spawn(move || {
                    let audio = speech(LEAD, &[&file], Duration::from_secs(1));
                    let (got, trace) = call(&d, audio, wait);
                    (file, got, trace)
                })
            })
            .collect();
        out.extend(handles.into_iter().map(|h| h.join().expect("call thread")));
    }
    out
}

/// Held-out sentences that share no word with the flow's phrases, two per transfer intent
/// and escalation, chosen by rule (the first two of each label in corpus order), not by
/// how they route. One call at a time, so that each call's outcome can be read off the
/// metrics: transferred (right or wrong), asked "Did you mean ...?" (the caller stays
/// silent, so no transfer follows), or neither. Any wrong transfer fails the test.
#[test]
fn held_out_paraphrases_transfer_to_their_intent_over_sip() {
    let Some((daemon, _serial)) = speech_daemon() else {
        return;
    };
    let started = Instant::now();
    let corpus = corpus();
    let mut files = Vec::new();
    for label in ["billing", "support", "cancel", "escalation"] {
        files.extend(
            corpus
                .iter()
                .filter(|e| e.split == "holdout" && e.expected == label && !e.overlap)
                .take(2),
        );
    }
    let confirms = |d: &Daemon| {
        metric_sum(
            &d.metrics(),
            "ivrd_asr_results_total",
            &[("result", "confirm")],
        )
    };
    let (mut right, mut asked) = (0, 0);
    let mut wrong = Vec::new();
    for entry in &files {
        let before = confirms(&daemon);
        let audio = speech(LEAD, &[&entry.file], Duration::from_secs(1));
        let (got, trace) = call(&daemon, audio, Duration::from_secs(15));
        let want = target(&entry.expected);
        let question = confirms(&daemon) > before;
        println!(
            "{} ({:?}): want {want}, got {got:?}{}",
            entry.file,
            entry.text,
            if question { ", asked to confirm" } else { "" }
        );
        match got {
            Some(g) if g.starts_with(&format!("<{want}")) => right += 1,
            Some(g) => wrong.push(format!(
                "{}: transferred to {g}, want {want}\n{trace}",
                entry.file
            )),
            None => asked += usize::from(question),
        }
    }
    println!(
        "{right}/{} held-out paraphrases transferred right at once over SIP, {asked} asked to confirm, in {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        wrong.is_empty(),
        "wrong transfers:\n{}\ndaemon:\n{}",
        wrong.join("\n"),
        daemon.stderr()
    );
    // Measured with tiny.en: 2 of 8 transferred at once (the words-only matcher transfers
    // none of these: Whisper mangles most of the others, see README "Speech"); the corpus
    // test measures both halves in full. The floor leaves one for a CPU whose floating
    // point rounds a transcript differently.
    assert!(
        right >= 1,
        "only {right} transferred and {asked} asked, of {}\ndaemon:\n{}",
        files.len(),
        daemon.stderr()
    );
    let metrics = daemon.metrics();
    assert!(
        metric_sum(&metrics, "ivrd_asr_confidence_count", &[]) >= files.len() as f64 - 2.0,
        "{metrics}"
    );
}

/// What must never route: silence, line noise, fillers and out-of-scope requests from the
/// held-out half (the first of each kind in corpus order).
#[test]
fn silence_noise_fillers_and_out_of_scope_never_route() {
    let Some((daemon, _serial)) = speech_daemon() else {
        return;
    };
    let daemon = Arc::new(daemon);
    let corpus = corpus();
    let none: Vec<&Entry> = corpus
        .iter()
        .filter(|e| e.split == "holdout" && e.expected == "none")
        .collect();
    let mut files: Vec<String> = none
        .iter()
        .filter(|e| e.text.is_empty())
        .take(2)
        .map(|e| e.file.clone())
        .collect();
    files.extend(
        none.iter()
            .filter(|e| !e.text.is_empty())
            .step_by(3)
            .take(4)
            .map(|e| e.file.clone()),
    );
    // Long enough for the whole menu question (about 13 s after the greeting) and the
    // first no-input timeout (6 s): a route would have shown by then.
    let results = calls_in_batches(&daemon, &files, 3, Duration::from_secs(24));
    for (file, got, trace) in &results {
        assert_eq!(got, &None, "{file} routed somewhere\n{trace}");
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

/// An utterance the matcher is unsure of (a mis-heard "why is this month so expensive",
/// confidence about 0.5 between the confirmation bound 0.35 and min_confidence 0.6) gets
/// "Did you mean billing?"; the caller's "yes" then transfers to billing.
#[test]
fn an_unsure_match_is_confirmed_and_yes_routes() {
    let Some((daemon, _serial)) = speech_daemon() else {
        return;
    };
    // The question ("Did you mean billing? Please say yes or no, ...") starts about 1.5 s
    // after the utterance ends; the "yes" comes while it plays (barge-in).
    let audio = speech(
        LEAD,
        &[
            "tune/022-why-is-this-month-so-expensive.wav",
            "tune/214-yes.wav",
        ],
        Duration::from_millis(3000),
    );
    let (got, trace) = call(&daemon, audio, Duration::from_secs(25));
    let got = got.unwrap_or_else(|| panic!("no REFER\n{trace}\ndaemon:\n{}", daemon.stderr()));
    assert!(
        got.starts_with("<sip:billing@pbx.example.com"),
        "transferred to {got}"
    );
    let metrics = daemon.metrics();
    let result = |r: &str| metric_sum(&metrics, "ivrd_asr_results_total", &[("result", r)]);
    assert_eq!(result("confirm"), 1.0, "{metrics}");
    assert_eq!(result("confirmed"), 1.0, "{metrics}");
    assert_eq!(result("match"), 0.0, "{metrics}");
}
