//! `ivrd bench asr`: time and accuracy of the engine on the spoken corpus.
//!
//! Every corpus file goes through what a call does: 8 kHz audio with silence around it ->
//! endpointer -> Whisper -> matcher, and the route is compared with the expected intent.
//! Timings are the engine's alone (model loaded, one warm-up utterance first). The
//! comparison with faster-whisper is driven by `benches/asr.py`, which runs this with
//! `--json` and faster-whisper alternately on the same files.

use super::{AsrConfig, AsrRequest, AudioCtx, Engine};
use crate::asr::audio::decode_wav;
use crate::asr::matcher::{Candidate, Matcher};
use crate::asr::vad::{EndpointConfig, Endpointer, VadEvent, FRAME_SAMPLES};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The main menu of flows/support-line.yaml with the proposed phrases; what the corpus's
/// expected intents refer to.
pub fn support_line_matcher() -> Matcher {
    let c = |intent: &str, phrases: &[&str]| Candidate {
        intent: intent.into(),
        phrases: phrases.iter().map(|p| p.to_string()).collect(),
    };
    Matcher::new(
        vec![
            c(
                "billing",
                &[
                    "billing", "my bill", "invoice", "payment", "a charge", "refund",
                ],
            ),
            c(
                "support",
                &[
                    "technical support",
                    "tech support",
                    "my internet is down",
                    "no service",
                    "not working",
                ],
            ),
            c(
                "hours",
                &["opening hours", "when are you open", "what are your hours"],
            ),
        ],
        [
            "supervisor",
            "manager",
            "agent",
            "operator",
            "a person",
            "a human",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect(),
    )
}

/// One corpus entry.
#[derive(Clone, Debug)]
pub struct CorpusItem {
    pub file: String,
    /// An intent, `escalation`, or `none` (must not route).
    pub expected: String,
    pub text: String,
    pub audio_8k: Vec<i16>,
}

/// Reads `corpus.tsv` and its WAVs from `dir`.
pub fn load_corpus(dir: &Path) -> Result<Vec<CorpusItem>, String> {
    let tsv_path = dir.join("corpus.tsv");
    let tsv =
        std::fs::read_to_string(&tsv_path).map_err(|e| format!("{}: {e}", tsv_path.display()))?;
    let mut items = Vec::new();
    for (n, line) in tsv.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 {
            return Err(format!(
                "{}:{}: expected file, expected, text",
                tsv_path.display(),
                n + 1
            ));
        }
        let path = dir.join(cols[0]);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let wav = decode_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if wav.sample_rate != 8000 {
            return Err(format!(
                "{}: {} Hz, want 8000",
                path.display(),
                wav.sample_rate
            ));
        }
        items.push(CorpusItem {
            file: cols[0].to_owned(),
            expected: cols[1].to_owned(),
            text: cols[2].to_owned(),
            audio_8k: wav.samples,
        });
    }
    Ok(items)
}

/// What the endpointer makes of a corpus file said on a quiet line: half a second of
/// silence, the file, then silence until the endpointer decides. `None`: no utterance.
pub fn endpoint(audio_8k: &[i16]) -> Option<Vec<i16>> {
    let mut ep = Endpointer::new(EndpointConfig {
        no_input: Duration::from_secs(5),
        ..EndpointConfig::default()
    });
    let lead = vec![0i16; 4000];
    let trail = vec![0i16; 8 * 2000];
    let stream = lead
        .iter()
        .chain(audio_8k)
        .chain(&trail)
        .copied()
        .collect::<Vec<_>>();
    for frame in stream.chunks(FRAME_SAMPLES) {
        match ep.push(frame) {
            Some(VadEvent::Utterance(u)) => return Some(u),
            Some(VadEvent::NoInput) => return None,
            _ => {}
        }
    }
    None
}

/// The route a flow would take, with the default min_confidence.
pub fn route(matcher: &Matcher, text: &str, closed: Option<&[f32]>, min_confidence: f32) -> String {
    let r = matcher.score_with(text, closed);
    if r.escalation {
        return "escalation".into();
    }
    match r.best {
        Some((intent, c)) if c >= min_confidence => intent,
        _ => "none".into(),
    }
}

/// One configuration to measure.
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    pub name: String,
    #[serde(serialize_with = "audio_ctx_text")]
    pub audio_ctx: AudioCtx,
    pub prompt: bool,
    pub closed_set: bool,
}

impl Variant {
    /// The configurations the benchmark compares by default.
    pub fn standard() -> Vec<Variant> {
        let v = |name: &str, audio_ctx, prompt, closed_set| Variant {
            name: name.into(),
            audio_ctx,
            prompt,
            closed_set,
        };
        vec![
            v("full window", AudioCtx::Full, false, false),
            v("trimmed", AudioCtx::DEFAULT, false, false),
            v("trimmed+prompt", AudioCtx::DEFAULT, true, false),
            v("trimmed+prompt+closed set", AudioCtx::DEFAULT, true, true),
        ]
    }

    /// `standard` plus the closed set without trimming and without the prompt.
    pub fn all() -> Vec<Variant> {
        let mut all = Variant::standard();
        all.push(Variant {
            name: "full window+prompt+closed set".into(),
            audio_ctx: AudioCtx::Full,
            prompt: true,
            closed_set: true,
        });
        all.push(Variant {
            name: "trimmed+closed set".into(),
            audio_ctx: AudioCtx::DEFAULT,
            prompt: false,
            closed_set: true,
        });
        all
    }
}

fn audio_ctx_text<S: serde::Serializer>(ctx: &AudioCtx, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{ctx:?}"))
}

#[derive(Clone, Debug, Serialize)]
pub struct FileResult {
    pub file: String,
    pub expected: String,
    pub route: String,
    pub transcript: String,
    pub gate: Option<&'static str>,
    /// The three best closed-set phrases and their posteriors.
    pub closed_top: Vec<(String, f32)>,
    pub decoder_steps: u32,
    pub ms: f64,
    pub audio_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    pub model: String,
    pub variant: Variant,
    pub load_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub accuracy: f64,
    pub correct: usize,
    pub total: usize,
    pub files: Vec<FileResult>,
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub models: Vec<PathBuf>,
    pub corpus: PathBuf,
    pub threads: usize,
    pub variants: Vec<Variant>,
    pub min_confidence: f32,
    /// Repeat each file this many times (timings: the median over all).
    pub runs: usize,
}

/// Runs every variant on every model.
pub fn run(opts: &BenchOptions) -> Result<Vec<VariantReport>, String> {
    let corpus = load_corpus(&opts.corpus)?;
    let matcher = support_line_matcher();
    let prompt = matcher.initial_prompt();
    let closed_set = matcher.closed_set();
    let utterances: Vec<Option<Vec<i16>>> = corpus.iter().map(|c| endpoint(&c.audio_8k)).collect();
    let mut reports = Vec::new();
    for model in &opts.models {
        let mut cfg = AsrConfig::new(model);
        cfg.threads_per_worker = opts.threads;
        let t0 = Instant::now();
        let mut engine = Engine::load(&cfg).map_err(|e| e.to_string())?;
        let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let model_name = model.file_stem().map_or_else(
            || model.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        for variant in &opts.variants {
            cfg.audio_ctx = variant.audio_ctx;
            cfg.closed_set = variant.closed_set;
            engine.set_config(&cfg);
            let request = |audio: &[i16]| AsrRequest {
                audio_8k: audio.to_vec(),
                prompt: variant.prompt.then(|| prompt.clone()),
                candidates: variant.closed_set.then(|| closed_set.clone()),
            };
            // Warm-up: first-touch allocations and page faults in ggml.
            if let Some(Some(u)) = utterances.first() {
                engine.transcribe(&request(u)).map_err(|e| e.to_string())?;
            }
            let mut files = Vec::new();
            let mut times = Vec::new();
            for (item, utterance) in corpus.iter().zip(&utterances) {
                let Some(u) = utterance else {
                    files.push(FileResult {
                        file: item.file.clone(),
                        expected: item.expected.clone(),
                        route: "none".into(),
                        transcript: String::new(),
                        gate: Some("vad"),
                        closed_top: Vec::new(),
                        decoder_steps: 0,
                        ms: 0.0,
                        audio_ms: 0.0,
                    });
                    continue;
                };
                let mut last = None;
                for _ in 0..opts.runs.max(1) {
                    let r = engine.transcribe(&request(u)).map_err(|e| e.to_string())?;
                    times.push(r.elapsed.as_secs_f64() * 1000.0);
                    last = Some(r);
                }
                let r = last.expect("at least one run");
                let route = route(
                    &matcher,
                    &r.text,
                    r.candidate_scores.as_deref(),
                    opts.min_confidence,
                );
                let mut closed_top: Vec<(String, f32)> = r
                    .candidate_scores
                    .iter()
                    .flatten()
                    .zip(r.candidate_logprobs.iter().flatten())
                    .zip(&closed_set)
                    .map(|((&p, &l), phrase)| {
                        (format!("{phrase} L{l:.1}/{:.1}", r.transcript_logprob), p)
                    })
                    .collect();
                closed_top.sort_by(|a, b| b.1.total_cmp(&a.1));
                closed_top.truncate(3);
                files.push(FileResult {
                    file: item.file.clone(),
                    expected: item.expected.clone(),
                    closed_top,
                    decoder_steps: r.decoder_steps,
                    route,
                    transcript: r.raw_text.clone(),
                    gate: r.gate.map(|g| g.as_str()),
                    ms: r.elapsed.as_secs_f64() * 1000.0,
                    audio_ms: u.len() as f64 / 8.0,
                });
            }
            let correct = files.iter().filter(|f| f.route == f.expected).count();
            reports.push(VariantReport {
                model: model_name.clone(),
                variant: variant.clone(),
                load_ms,
                median_ms: percentile(&mut times, 0.5),
                p90_ms: percentile(&mut times, 0.9),
                accuracy: correct as f64 / files.len().max(1) as f64,
                correct,
                total: files.len(),
                files,
            });
        }
    }
    Ok(reports)
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let idx = ((values.len() - 1) as f64 * q).round() as usize;
    values[idx]
}

/// A Markdown table of the reports; with `details`, every file's transcript and route.
pub fn to_markdown(reports: &[VariantReport], details: bool) -> String {
    let mut out = String::from(
        "| model | variant | load ms | median ms | p90 ms | routing accuracy |\n|---|---|---|---|---|---|\n",
    );
    for r in reports {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {}/{} ({:.1}%) |\n",
            r.model,
            r.variant.name,
            r.load_ms,
            r.median_ms,
            r.p90_ms,
            r.correct,
            r.total,
            100.0 * r.accuracy
        ));
    }
    if details {
        for r in reports {
            out.push_str(&format!("\n{} / {}:\n", r.model, r.variant.name));
            for f in &r.files {
                let closed: Vec<String> = f
                    .closed_top
                    .iter()
                    .map(|(p, s)| format!("{p} {s:.2}"))
                    .collect();
                out.push_str(&format!(
                    "  {} {:<32} want {:<10} got {:<10} {:>5.0} ms {:>3} steps  {:?}{} {}\n",
                    if f.route == f.expected { " " } else { "X" },
                    f.file,
                    f.expected,
                    f.route,
                    f.ms,
                    f.decoder_steps,
                    f.transcript,
                    f.gate.map(|g| format!(" [{g}]")).unwrap_or_default(),
                    if closed.is_empty() {
                        String::new()
                    } else {
                        format!("[{}]", closed.join(", "))
                    }
                ));
            }
        }
    }
    out
}

/// Writes each corpus utterance, endpointed and resampled exactly as the engine gets it, as
/// a 16 kHz 16-bit WAV (`NNN-name.wav`), so that faster-whisper can be fed the same audio.
pub fn dump_utterances(corpus_dir: &Path, out: &Path) -> Result<usize, String> {
    let corpus = load_corpus(corpus_dir)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut up = crate::asr::audio::Upsampler::new();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: crate::asr::audio::WHISPER_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut written = 0;
    for item in &corpus {
        let Some(u) = endpoint(&item.audio_8k) else {
            continue;
        };
        let path = out.join(&item.file);
        let mut w = hound::WavWriter::create(&path, spec)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for s in up.process(&u) {
            let v = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            w.write_sample(v).map_err(|e| e.to_string())?;
        }
        w.finalize().map_err(|e| e.to_string())?;
        written += 1;
    }
    Ok(written)
}

/// `ivrd bench asr` with its arguments (after `asr`); returns what to print.
///
/// ```text
/// ivrd bench asr --model PATH [--model PATH ...] [--corpus DIR] [--threads N] [--runs N]
///                [--variants standard|default|all] [--details] [--json] [--dump-wavs DIR]
/// ```
/// `default` measures only the recommended configuration; `standard` (the default) the four
/// of `Variant::standard`; `all` adds the untrimmed and unprompted closed-set variants.
pub fn cli(args: &[String]) -> Result<String, String> {
    let mut opts = BenchOptions {
        models: Vec::new(),
        corpus: PathBuf::from("tests/corpus"),
        threads: 2,
        variants: Variant::standard(),
        min_confidence: 0.6,
        runs: 1,
    };
    let (mut json, mut details, mut dump) = (false, false, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--model" => opts.models.push(value("--model")?.into()),
            "--corpus" => opts.corpus = value("--corpus")?.into(),
            "--threads" => {
                opts.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--runs" => {
                opts.runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--variants" => {
                opts.variants = match value("--variants")?.as_str() {
                    "standard" => Variant::standard(),
                    "default" => Variant::standard().split_off(3),
                    "all" => Variant::all(),
                    other => return Err(format!("--variants: unknown set '{other}'")),
                }
            }
            "--dump-wavs" => dump = Some(PathBuf::from(value("--dump-wavs")?)),
            "--json" => json = true,
            "--details" => details = true,
            other => {
                return Err(format!(
                    "unknown argument '{other}' (see `ivrd bench asr --help`)"
                ))
            }
        }
    }
    if let Some(dir) = dump {
        let n = dump_utterances(&opts.corpus, &dir)?;
        return Ok(format!("wrote {n} utterances to {}\n", dir.display()));
    }
    if opts.models.is_empty() {
        return Err("give at least one --model (scripts/fetch-model.sh prints its path)".into());
    }
    let reports = run(&opts)?;
    if json {
        serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())
    } else {
        Ok(to_markdown(&reports, details))
    }
}
