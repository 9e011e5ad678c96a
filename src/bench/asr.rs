//! `ivrd bench asr`: time and accuracy of the engine on the spoken corpus. (~830 lines: a
//! command-line tool with its options, its corpus reader and its report tables; it decides
//! nothing for the daemon.)
//!
//! Every corpus file goes through what a call does: 8 kHz audio with silence around it ->
//! endpointer -> Whisper -> matcher, and the route is compared with the expected intent.
//! Timings are the engine's alone (model loaded, one warm-up utterance first). The
//! comparison with faster-whisper is driven by `benches/asr.py`, which runs this with
//! `--json` and faster-whisper alternately on the same files.

use crate::asr::audio::decode_wav;
use crate::asr::embed::TextEmbedder;
use crate::asr::matcher::{Candidate, Heard, Matcher};
use crate::asr::vad::{EndpointConfig, Endpointer, VadEvent, FRAME_SAMPLES};
use crate::asr::whisper::{embed_transcript, AsrConfig, AsrRequest, AudioCtx, Engine};
use crate::flow::NodeKind;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The main menu of flows/support-line.yaml, by words only: the matcher's unit tests use it.
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
            c(
                "cancel",
                &["cancel my account", "cancel my service", "close my account"],
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
    /// `tune` (thresholds and phrases may be chosen on it) or `holdout` (never).
    pub split: String,
    /// An intent, `escalation`, `none` (must not route), or `yes`/`no` (answers to a
    /// confirmation question).
    pub expected: String,
    pub text: String,
    /// Whether the sentence shares a content word with the flow's phrases.
    pub overlap: bool,
    pub audio_8k: Vec<i16>,
}

impl CorpusItem {
    /// An answer to "Did you mean ...?" rather than to the menu.
    pub fn is_yes_no(&self) -> bool {
        self.expected == "yes" || self.expected == "no"
    }
}

/// Reads `corpus.tsv` (columns named by its header: file, split, expected, text,
/// overlap, ...) and its WAVs from `dir`.
pub fn load_corpus(dir: &Path) -> Result<Vec<CorpusItem>, String> {
    let tsv_path = dir.join("corpus.tsv");
    let tsv =
        std::fs::read_to_string(&tsv_path).map_err(|e| format!("{}: {e}", tsv_path.display()))?;
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(file_c), Some(split_c), Some(expected_c), Some(text_c)) =
        (col("file"), col("split"), col("expected"), col("text"))
    else {
        return Err(format!(
            "{}: the header must name file, split, expected and text",
            tsv_path.display()
        ));
    };
    let overlap_c = col("overlap");
    let mut items = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let get = |c: usize| cols.get(c).copied().unwrap_or_default();
        if cols.len() <= file_c.max(split_c).max(expected_c) {
            return Err(format!("{}:{}: too few columns", tsv_path.display(), n + 2));
        }
        let path = dir.join(get(file_c));
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
            file: get(file_c).to_owned(),
            split: get(split_c).to_owned(),
            expected: get(expected_c).to_owned(),
            text: get(text_c).to_owned(),
            overlap: overlap_c.is_some_and(|c| get(c) == "yes"),
            audio_8k: wav.samples,
        });
    }
    Ok(items)
}

/// A menu of a compiled flow, as the benchmark and the tests score against it.
pub struct BenchMenu {
    pub flow: String,
    pub node: String,
    pub matcher: Arc<Matcher>,
    pub min_confidence: f32,
    /// The confirmation turn's lower bound and yes/no matcher, if the menu has one.
    pub confirm: Option<(f32, Arc<Matcher>)>,
}

/// The first speech menu reached from `flow`'s start (or the menu named `node`), compiled
/// from the config as the daemon would, with or without the embedder.
pub fn flow_menu(
    config: &Path,
    flow: Option<&str>,
    node: Option<&str>,
    embedder: Option<&dyn TextEmbedder>,
) -> Result<BenchMenu, String> {
    let cfg = crate::config::Config::load(config).map_err(|e| e.to_string())?;
    let (set, _) = crate::io::load_flows(&cfg, embedder).map_err(|e| e.to_string())?;
    let f = match flow {
        Some(name) => set
            .flows
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no flow named '{name}'"))?,
        None => set.default.clone(),
    };
    fn speech_menu(n: &crate::flow::Node) -> Option<(String, &crate::flow::MenuSpeech)> {
        match &n.kind {
            NodeKind::Menu(m) => m.speech.as_ref().map(|s| (n.name.clone(), s)),
            _ => None,
        }
    }
    let found = match node {
        Some(name) => f
            .node_id(name)
            .and_then(|id| speech_menu(f.node(id)))
            .ok_or_else(|| format!("flow '{}' has no speech menu named '{name}'", f.name))?,
        // The nearest to the start (breadth first): the menu most callers meet first.
        None => {
            let mut seen = std::collections::HashSet::new();
            let mut queue = std::collections::VecDeque::from([f.start]);
            let mut found = None;
            while let Some(id) = queue.pop_front() {
                if id >= f.nodes.len() || !seen.insert(id) {
                    continue;
                }
                if let Some(m) = speech_menu(f.node(id)) {
                    found = Some(m);
                    break;
                }
                queue.extend(crate::flow::compile::successors(&f.node(id).kind));
            }
            found.ok_or_else(|| format!("flow '{}' has no menu that listens for speech", f.name))?
        }
    };
    let (name, speech) = found;
    Ok(BenchMenu {
        flow: f.name.clone(),
        node: name,
        matcher: speech.matcher.clone(),
        min_confidence: speech.min_confidence,
        confirm: speech
            .confirmation
            .as_ref()
            .map(|c| (c.min_confidence, c.matcher.clone())),
    })
}

/// How a menu would take what was heard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Decision {
    /// Routed at once to this intent (or `escalation`).
    Route(String),
    /// "Did you mean <intent>?"
    Confirm(String),
    /// Not routed (no match, low confidence, gated, nothing heard).
    None,
}

impl Decision {
    pub fn label(&self) -> String {
        match self {
            Decision::Route(i) => i.clone(),
            Decision::Confirm(i) => format!("confirm:{i}"),
            Decision::None => "none".into(),
        }
    }
}

/// What `menu` decides for a transcript; `yes`/`no` answers are scored by the menu's
/// confirmation matcher instead.
pub fn decide(menu: &BenchMenu, heard: &Heard, yes_no: bool) -> Decision {
    let (matcher, min, confirm_min) = match (&menu.confirm, yes_no) {
        (Some((_, m)), true) => (m, crate::flow::runner::YES_NO_CONFIDENCE, None),
        _ => (
            &menu.matcher,
            menu.min_confidence,
            menu.confirm.as_ref().map(|c| c.0),
        ),
    };
    let r = matcher.score_heard(heard);
    if r.escalation {
        return Decision::Route("escalation".into());
    }
    match r.best {
        Some((intent, c)) if c >= min => Decision::Route(intent),
        Some((intent, c)) if confirm_min.is_some_and(|m| c >= m) => Decision::Confirm(intent),
        _ => Decision::None,
    }
}

/// The route a matcher takes by words only, with `min_confidence` (for the engine tests).
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
    pub split: String,
    pub expected: String,
    pub overlap: bool,
    /// The decision by words only (lexical pass + closed set) and with meaning as well.
    pub lexical: String,
    pub semantic: Option<String>,
    pub transcript: String,
    pub gate: Option<&'static str>,
    /// The best intent's confidence, semantic matcher (lexical without an embedder).
    pub confidence: f32,
    /// The semantic matcher's similarities: per intent, then escalation and none.
    pub similarity: Vec<(String, f32)>,
    /// Per intent, then escalation: (word alignment, closed-set mass).
    pub lexical_scores: Vec<(String, f32, f32)>,
    /// Whisper's time, the embedding's, and end of speech -> decision (both + matching).
    pub whisper_ms: f64,
    pub embed_ms: f64,
    pub decision_ms: f64,
    pub audio_ms: f64,
}

/// Figures of one split for one matcher.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SplitScore {
    /// Routable utterances (an intent or escalation).
    pub routable: usize,
    /// ...routed at once to the right place.
    pub right: usize,
    /// ...asked "Did you mean <the right intent>?" (right after a "yes").
    pub confirmed_right: usize,
    /// ...of the routable ones without a content word of the flow's phrases.
    pub no_overlap: usize,
    pub no_overlap_right: usize,
    /// Utterances routed at once to a wrong place (for `none`: anywhere).
    pub false_routes: usize,
    /// Confirmation questions about a wrong intent (a "no" undoes them).
    pub wrong_confirms: usize,
    /// Must-not-route utterances and how many stayed unrouted.
    pub none_total: usize,
    pub none_kept: usize,
    /// yes/no answers understood.
    pub yes_no_total: usize,
    pub yes_no_right: usize,
}

impl SplitScore {
    pub fn add(&mut self, item: &CorpusItem, decision: &str) {
        if item.is_yes_no() {
            self.yes_no_total += 1;
            self.yes_no_right += usize::from(decision == item.expected);
            return;
        }
        if item.expected == "none" {
            self.none_total += 1;
            if decision == "none" || decision.starts_with("confirm:") {
                self.none_kept += usize::from(decision == "none");
                self.wrong_confirms += usize::from(decision != "none");
            } else {
                self.false_routes += 1;
            }
            return;
        }
        self.routable += 1;
        let right = decision == item.expected;
        let confirmed = decision.strip_prefix("confirm:") == Some(item.expected.as_str());
        self.right += usize::from(right);
        self.confirmed_right += usize::from(confirmed);
        if !item.overlap {
            self.no_overlap += 1;
            self.no_overlap_right += usize::from(right || confirmed);
        }
        if decision.starts_with("confirm:") {
            self.wrong_confirms += usize::from(!confirmed);
        } else if decision != "none" && !right {
            self.false_routes += 1;
        }
    }

    /// Routed right, at once or after a confirmation.
    pub fn accuracy(&self) -> f64 {
        (self.right + self.confirmed_right) as f64 / self.routable.max(1) as f64
    }

    /// The Markdown cells of `TABLE_COLUMNS`.
    pub fn cells(&self) -> String {
        format!(
            "{}/{} ({:.1}%) | {} | {}/{} | {} | {} | {}/{} | {}/{}",
            self.right + self.confirmed_right,
            self.routable,
            100.0 * self.accuracy(),
            self.confirmed_right,
            self.no_overlap_right,
            self.no_overlap,
            self.false_routes,
            self.wrong_confirms,
            self.none_kept,
            self.none_total,
            self.yes_no_right,
            self.yes_no_total,
        )
    }
}

/// Column names of `SplitScore::cells`.
pub const TABLE_COLUMNS: &str = "right | (after confirm) | no-overlap right | false routes | wrong confirms | none kept | yes/no";

#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    pub model: String,
    pub variant: Variant,
    pub flow: String,
    pub node: String,
    pub load_ms: f64,
    /// Whisper per utterance.
    pub median_ms: f64,
    pub p90_ms: f64,
    /// End of speech -> routing decision with the semantic matcher (lexical without one).
    pub decision_p50_ms: f64,
    pub decision_p90_ms: f64,
    pub embed_median_ms: f64,
    /// Per matcher (`lexical`, `semantic`) and split (`tune`, `holdout`).
    pub scores: Vec<(String, String, SplitScore)>,
    pub files: Vec<FileResult>,
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub models: Vec<PathBuf>,
    pub corpus: PathBuf,
    /// The config whose flow is scored (its `asr.embedder` gives the semantic matcher).
    pub config: PathBuf,
    pub flow: Option<String>,
    pub node: Option<String>,
    pub threads: usize,
    pub variants: Vec<Variant>,
    /// Repeat each file this many times (timings: the median over all).
    pub runs: usize,
}

/// Runs every variant on every model, scoring the compiled flow's menu by words only and
/// by words and meaning.
pub fn run(opts: &BenchOptions) -> Result<Vec<VariantReport>, String> {
    let corpus = load_corpus(&opts.corpus)?;
    let cfg = crate::config::Config::load(&opts.config).map_err(|e| e.to_string())?;
    let embedder = crate::io::load_embedder(&cfg).map_err(|e| e.to_string())?;
    let lexical = flow_menu(
        &opts.config,
        opts.flow.as_deref(),
        opts.node.as_deref(),
        None,
    )?;
    let semantic = match &embedder {
        Some(e) => Some(flow_menu(
            &opts.config,
            opts.flow.as_deref(),
            opts.node.as_deref(),
            Some(e.as_ref() as &dyn TextEmbedder),
        )?),
        None => None,
    };
    let menu_prompt = lexical.matcher.initial_prompt();
    let menu_closed = lexical.matcher.closed_set();
    let (yes_prompt, yes_closed) = lexical.confirm.as_ref().map_or_else(
        || (menu_prompt.clone(), menu_closed.clone()),
        |(_, m)| (m.initial_prompt(), m.closed_set()),
    );
    let utterances: Vec<Option<Vec<i16>>> = corpus.iter().map(|c| endpoint(&c.audio_8k)).collect();
    let mut reports = Vec::new();
    for model in &opts.models {
        let mut acfg = AsrConfig::new(model);
        acfg.threads_per_worker = opts.threads;
        let t0 = Instant::now();
        let mut engine = Engine::load(&acfg).map_err(|e| e.to_string())?;
        let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let model_name = model.file_stem().map_or_else(
            || model.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        for variant in &opts.variants {
            acfg.audio_ctx = variant.audio_ctx;
            acfg.closed_set = variant.closed_set;
            engine.set_config(&acfg);
            let request = |audio: &[i16], yes_no: bool| {
                let (prompt, closed) = if yes_no {
                    (&yes_prompt, &yes_closed)
                } else {
                    (&menu_prompt, &menu_closed)
                };
                AsrRequest {
                    audio_8k: audio.to_vec(),
                    prompt: variant.prompt.then(|| prompt.clone()),
                    candidates: variant.closed_set.then(|| closed.clone()),
                }
            };
            // Warm-up: first-touch allocations and page faults in ggml.
            if let Some(Some(u)) = utterances.first() {
                engine
                    .transcribe(&request(u, false))
                    .map_err(|e| e.to_string())?;
            }
            let mut files = Vec::new();
            let (mut whisper_times, mut decision_times, mut embed_times) =
                (Vec::new(), Vec::new(), Vec::new());
            for (item, utterance) in corpus.iter().zip(&utterances) {
                let yes_no = item.is_yes_no();
                let Some(u) = utterance else {
                    files.push(FileResult {
                        file: item.file.clone(),
                        split: item.split.clone(),
                        expected: item.expected.clone(),
                        overlap: item.overlap,
                        lexical: "none".into(),
                        semantic: semantic.as_ref().map(|_| "none".into()),
                        transcript: String::new(),
                        gate: Some("vad"),
                        confidence: 0.0,
                        similarity: Vec::new(),
                        lexical_scores: Vec::new(),
                        whisper_ms: 0.0,
                        embed_ms: 0.0,
                        decision_ms: 0.0,
                        audio_ms: 0.0,
                    });
                    continue;
                };
                let mut last = None;
                for _ in 0..opts.runs.max(1) {
                    let r = engine
                        .transcribe(&request(u, yes_no))
                        .map_err(|e| e.to_string())?;
                    whisper_times.push(r.elapsed.as_secs_f64() * 1000.0);
                    last = Some(r);
                }
                let mut r = last.expect("at least one run");
                let whisper_ms = r.elapsed.as_secs_f64() * 1000.0;
                let t_embed = Instant::now();
                embed_transcript(&mut r, embedder.as_deref().map(|e| e as &dyn TextEmbedder));
                let embed_ms = t_embed.elapsed().as_secs_f64() * 1000.0;
                let mut heard = Heard {
                    text: r.text.clone(),
                    closed: r.candidate_scores.clone(),
                    embedding: None,
                };
                let t_match = Instant::now();
                let lex = decide(&lexical, &heard, yes_no).label();
                let lex_ms = t_match.elapsed().as_secs_f64() * 1000.0;
                heard.embedding = r.embedding.clone();
                let t_match = Instant::now();
                let sem = semantic.as_ref().map(|m| decide(m, &heard, yes_no).label());
                let sem_ms = t_match.elapsed().as_secs_f64() * 1000.0;
                let scorer = semantic.as_ref().unwrap_or(&lexical);
                let scored = scorer.matcher.score_heard(&heard);
                let confidence = scored.best.as_ref().map_or(0.0, |b| b.1);
                let mut similarity = scored.similarity.clone();
                similarity.push(("escalation".into(), scored.escalation_similarity));
                similarity.push(("none".into(), scored.none_similarity));
                let words_only = lexical.matcher.score_heard(&Heard {
                    embedding: None,
                    ..heard.clone()
                });
                let mut lexical_scores: Vec<(String, f32, f32)> = words_only
                    .scores
                    .iter()
                    .zip(words_only.words.iter().zip(&words_only.closed))
                    .map(|((i, _), (&w, &c))| (i.clone(), w, c))
                    .collect();
                lexical_scores.push((
                    "escalation".into(),
                    words_only.escalation_words,
                    words_only.escalation_closed,
                ));
                let decision_ms = if semantic.is_some() {
                    whisper_ms + embed_ms + sem_ms
                } else {
                    whisper_ms + lex_ms
                };
                decision_times.push(decision_ms);
                embed_times.push(embed_ms);
                files.push(FileResult {
                    file: item.file.clone(),
                    split: item.split.clone(),
                    expected: item.expected.clone(),
                    overlap: item.overlap,
                    lexical: lex,
                    semantic: sem,
                    transcript: r.raw_text.clone(),
                    gate: r.gate.map(|g| g.as_str()),
                    confidence,
                    similarity,
                    lexical_scores,
                    whisper_ms,
                    embed_ms,
                    decision_ms,
                    audio_ms: u.len() as f64 / 8.0,
                });
            }
            let mut scores = Vec::new();
            for matcher in ["lexical", "semantic"] {
                if matcher == "semantic" && semantic.is_none() {
                    continue;
                }
                for split in ["tune", "holdout"] {
                    let mut score = SplitScore::default();
                    for (f, item) in files.iter().zip(&corpus).filter(|(_, c)| c.split == split) {
                        let d = if matcher == "lexical" {
                            &f.lexical
                        } else {
                            f.semantic.as_ref().unwrap_or(&f.lexical)
                        };
                        score.add(item, d);
                    }
                    scores.push((matcher.to_string(), split.to_string(), score));
                }
            }
            reports.push(VariantReport {
                model: model_name.clone(),
                variant: variant.clone(),
                flow: lexical.flow.clone(),
                node: lexical.node.clone(),
                load_ms,
                median_ms: percentile(&mut whisper_times, 0.5),
                p90_ms: percentile(&mut whisper_times, 0.9),
                decision_p50_ms: percentile(&mut decision_times, 0.5),
                decision_p90_ms: percentile(&mut decision_times, 0.9),
                embed_median_ms: percentile(&mut embed_times, 0.5),
                scores,
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
    let mut out = String::new();
    if let Some(r) = reports.first() {
        out.push_str(&format!("flow '{}', menu '{}'\n\n", r.flow, r.node));
    }
    out.push_str(&format!(
        "| model | variant | Whisper p50/p90 ms | decision p50/p90 ms | matcher | split | {TABLE_COLUMNS} |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    ));
    for r in reports {
        for (matcher, split, s) in &r.scores {
            out.push_str(&format!(
                "| {} | {} | {:.0}/{:.0} | {:.0}/{:.0} | {matcher} | {split} | {} |\n",
                r.model,
                r.variant.name,
                r.median_ms,
                r.p90_ms,
                r.decision_p50_ms,
                r.decision_p90_ms,
                s.cells(),
            ));
        }
    }
    if details {
        for r in reports {
            out.push_str(&format!("\n{} / {}:\n", r.model, r.variant.name));
            for f in &r.files {
                let sem = f.semantic.as_deref().unwrap_or(&f.lexical);
                let ok =
                    |d: &str| d == f.expected || d.strip_prefix("confirm:") == Some(&f.expected);
                out.push_str(&format!(
                    "  {}{} {:<7} {:<52} want {:<10} lex {:<16} sem {:<16} c{:.2} {:>5.0} ms {:?}{}\n",
                    if ok(&f.lexical) { " " } else { "x" },
                    if ok(sem) { " " } else { "X" },
                    f.split,
                    f.file,
                    f.expected,
                    f.lexical,
                    sem,
                    f.confidence,
                    f.decision_ms,
                    f.transcript,
                    f.gate.map(|g| format!(" [{g}]")).unwrap_or_default(),
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
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
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
/// ivrd bench asr --model PATH [--model PATH ...] [--config FILE] [--flow NAME] [--node NAME]
///                [--corpus DIR] [--threads N] [--runs N] [--variants standard|default|all]
///                [--details] [--json] [--dump-wavs DIR]
/// ```
/// The flow scored is the config's default flow (or `--flow`), its first speech menu (or
/// `--node`), compiled as the daemon compiles it.
/// `default` measures only the recommended configuration; `standard` (the default) the four
/// of `Variant::standard`; `all` adds the untrimmed and unprompted closed-set variants.
pub fn cli(args: &[String]) -> Result<String, String> {
    let mut opts = BenchOptions {
        models: Vec::new(),
        corpus: PathBuf::from("tests/corpus"),
        config: PathBuf::from("ivrd.yaml"),
        flow: None,
        node: None,
        threads: 2,
        variants: Variant::standard(),
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
            "--config" => opts.config = value("--config")?.into(),
            "--flow" => opts.flow = Some(value("--flow")?),
            "--node" => opts.node = Some(value("--node")?),
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
