//! One test case run against a compiled flow in virtual time: the flow's runner, with
//! playback simulated (each prompt takes its own length; texts spoken per call are
//! estimated), keys and speech at their times, timers fired as time passes. Speech goes
//! through the flow's real matcher (and the embedding model, when there is one).

use super::spec::{Case, Expect, Given, Step};
use crate::asr::embed::TextEmbedder;
use crate::asr::matcher::Heard;
use crate::flow::cond::CallerInfo;
use crate::flow::runner::{
    CallFacts, FlowEnd, FlowInput, FlowOutput, FlowRunner, QueueInput, TransferContext,
};
use crate::flow::Flow;
use crate::media::prompt::Prompt;
use crate::outage::{Announcement, Outage, OutageSet, OutageSpec, Source};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Monday 7 December 2026, 12:00 UTC: the default wall clock of a case.
pub const DEFAULT_AT: i64 = 1_796_644_800;
/// How long a spoken text takes, per character, when it is estimated (espeak-ng at 150
/// words a minute says about 15 characters a second).
const SPEECH_PER_CHAR: Duration = Duration::from_millis(65);
/// Keys typed in one step follow each other this fast.
const KEY_GAP: Duration = Duration::from_millis(150);
/// From the start of a caller's words to their transcript (saying them, then recognising).
const UTTERANCE: Duration = Duration::from_millis(1500);
/// A case that runs longer than this (virtual time) is stuck in a loop.
const MAX_CALL: Duration = Duration::from_secs(3600);

/// A failed check: where (the step, when it was a step) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index of the step (None: the case's final `expect`, or its setup).
    pub step: Option<usize>,
    /// The expectation's field (`path`, `heard`, ...), or what went wrong.
    pub what: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub failures: Vec<Failure>,
    /// Virtual time the call took.
    pub call_time: Duration,
}

/// What the call has shown so far.
#[derive(Default)]
struct Seen {
    path: Vec<String>,
    heard: Vec<String>,
    transfer: Option<(String, TransferContext)>,
    queue: Option<(String, TransferContext)>,
    end: Option<FlowEnd>,
    caller_hung_up: bool,
    intent: Option<String>,
    escalated: Option<String>,
    upset: bool,
    callback: bool,
}

struct Sim<'a> {
    r: FlowRunner,
    t0: Instant,
    now: Instant,
    /// Prompts queued to play: (name, start).
    playing: Vec<(String, Instant)>,
    /// When the batch playing now ends.
    batch_end: Option<Instant>,
    /// A transfer waiting for its outcome.
    transferring: bool,
    queued: bool,
    seen: Seen,
    embedder: Option<&'a dyn TextEmbedder>,
}

/// Runs a case on `flow`; `given` is the file's, the case's own wins. `t0`: where the
/// call's virtual time starts.
pub fn run_case(
    flow: &Arc<Flow>,
    file_given: &Given,
    case: &Case,
    embedder: Option<&dyn TextEmbedder>,
    t0: Instant,
) -> CaseResult {
    let given = file_given.merged(&case.given);
    let mut failures = Vec::new();
    let unix = match &given.at {
        None => DEFAULT_AT,
        Some(at) => match at.parse::<jiff::Timestamp>() {
            Ok(ts) => ts.as_second(),
            Err(e) => {
                return setup_failure(format!("given.at: '{at}' is not an RFC 3339 time: {e}"))
            }
        },
    };
    let mut r = FlowRunner::new(flow.clone());
    r.set_facts(CallFacts {
        dialled: given.dialled.clone().unwrap_or_default(),
        caller: Some(given.number.clone().unwrap_or_else(|| "+15550100".into())),
        unix_at_start: unix,
    });
    r.set_speech(given.speech.unwrap_or(true));
    let items: Vec<Arc<Announcement>> = given
        .outages
        .iter()
        .flatten()
        .map(|o| {
            let message = o
                .message
                .clone()
                .unwrap_or_else(|| format!("outage {}", o.id));
            Arc::new(Announcement {
                prompt: estimated(&message),
                outage: Outage {
                    spec: OutageSpec {
                        id: o.id.clone(),
                        message: Some(message),
                        prompt: None,
                        scope: o
                            .scope
                            .as_ref()
                            .map(|s| s.to_vec())
                            .unwrap_or_else(|| vec!["all".into()]),
                        starts_at: None,
                        expires_at: None,
                        callback: o.callback,
                    },
                    source: Source::Api,
                    updated_at: 0,
                    updated_by: "test".into(),
                },
            })
        })
        .collect();
    r.set_outages(Arc::new(OutageSet::active(items, 0)));
    r.expect_caller();
    let mut sim = Sim {
        r,
        t0,
        now: t0,
        playing: Vec::new(),
        batch_end: None,
        transferring: false,
        queued: false,
        seen: Seen::default(),
        embedder,
    };
    sim.r.start(t0, given.overflow.unwrap_or(false));
    let caller = given.caller.as_ref().map(|c| CallerInfo {
        name: c.name.clone(),
        last_intent: c.last_intent.clone(),
        last_call_at: c.last_call_days_ago.map(|d| unix - i64::from(d) * 86_400),
        notes: c.notes.clone(),
    });
    sim.input(FlowInput::Caller(caller));
    let mut last_step_at = t0;
    for (i, step) in case.steps.iter().enumerate() {
        if sim.over() {
            failures.push(Failure {
                step: Some(i),
                what: "step".into(),
                message: format!("the call is already over ({})", sim.state()),
            });
            break;
        }
        if let Err(message) = check_step(step) {
            failures.push(Failure {
                step: Some(i),
                what: "step".into(),
                message,
            });
            break;
        }
        // Anything but the transfer's own outcome finds the transfer done.
        if step.transfer.is_none() && sim.transferring {
            sim.input(FlowInput::TransferSucceeded);
        }
        let at = match (step.at_ms, step.after_ms) {
            (Some(ms), _) => t0 + Duration::from_millis(ms),
            (None, Some(ms)) => last_step_at + Duration::from_millis(ms),
            (None, None) => {
                sim.until_quiet();
                sim.now
            }
        };
        sim.advance_to(at);
        last_step_at = sim.now;
        sim.act(step);
        if let Some(e) = &step.expect {
            sim.until_quiet();
            for (what, message) in sim.check(e) {
                failures.push(Failure {
                    step: Some(i),
                    what,
                    message,
                });
            }
        }
        if sim.now > t0 + MAX_CALL {
            break;
        }
    }
    // The caller does nothing more: the flow says what it has to say, and a transfer it
    // asks for goes through.
    sim.until_quiet();
    if sim.transferring {
        sim.input(FlowInput::TransferSucceeded);
        sim.until_quiet();
    }
    for (what, message) in sim.check(&case.expect) {
        failures.push(Failure {
            step: None,
            what,
            message,
        });
    }
    CaseResult {
        failures,
        call_time: sim.now - t0,
    }
}

fn setup_failure(message: String) -> CaseResult {
    CaseResult {
        failures: vec![Failure {
            step: None,
            what: "given".into(),
            message,
        }],
        call_time: Duration::ZERO,
    }
}

fn check_step(step: &Step) -> Result<(), String> {
    let actions = [
        step.key.is_some(),
        step.say.is_some(),
        step.silence_ms.is_some(),
        step.hangup.is_some(),
        step.transfer.is_some(),
        step.queue.is_some(),
    ]
    .iter()
    .filter(|a| **a)
    .count();
    if actions > 1 {
        return Err(
            "a step does one thing: key, say, silence_ms, hangup, transfer or queue".into(),
        );
    }
    if actions == 0 && step.expect.is_none() {
        return Err(
            "an empty step: give key, say, silence_ms, hangup, transfer, queue or expect".into(),
        );
    }
    if let Some(k) = &step.key {
        if k.is_empty() || !k.chars().all(|c| "0123456789*#ABCD".contains(c)) {
            return Err(format!("key: '{k}' must be keys 0-9, *, #, A-D"));
        }
    }
    match step.transfer.as_deref() {
        None | Some("ok") | Some("fail") => {}
        Some(o) => return Err(format!("transfer: '{o}' must be ok or fail")),
    }
    match step.queue.as_deref() {
        None | Some("answered") | Some("agent_hangs_up") | Some("timeout") | Some("no_agents") => {}
        Some(o) => {
            return Err(format!(
                "queue: '{o}' must be answered, agent_hangs_up, timeout or no_agents"
            ))
        }
    }
    Ok(())
}

/// A placeholder for audio the test does not have (outage messages, texts spoken per
/// call): silence as long as the text would take, named by the text.
fn estimated(text: &str) -> Arc<Prompt> {
    let len = (SPEECH_PER_CHAR * text.chars().count() as u32).max(Duration::from_millis(300));
    let samples = (len.as_millis() as usize) * 8;
    Arc::new(Prompt::from_pcm_8k(text, vec![0; samples]).expect("silence is a prompt"))
}

impl Sim<'_> {
    fn input(&mut self, i: FlowInput) {
        self.r.handle(self.now, i);
        self.drain();
    }

    fn over(&self) -> bool {
        self.seen.end.is_some() || self.seen.caller_hung_up
    }

    /// Carries out the runner's outputs at `now`.
    fn drain(&mut self) {
        while let Some(o) = self.r.poll_output() {
            match o {
                FlowOutput::Play { prompts, .. } => {
                    self.stop();
                    let mut t = self.now;
                    for p in &prompts {
                        let len = if p.to_render.is_some() {
                            estimated(&p.name).duration()
                        } else {
                            p.duration()
                        };
                        self.playing.push((p.name.clone(), t));
                        t += len;
                    }
                    self.note_heard();
                    if prompts.is_empty() {
                        self.r.handle(self.now, FlowInput::PlaybackDone);
                    } else {
                        self.batch_end = Some(t);
                    }
                }
                FlowOutput::StopPlayback => self.stop(),
                FlowOutput::Transfer { target, context } => {
                    self.transferring = true;
                    self.seen.transfer = Some((target, context));
                }
                FlowOutput::Queue { queue, context } => {
                    self.queued = true;
                    self.seen.queue = Some((queue, context));
                    self.r.handle(
                        self.now,
                        FlowInput::Queue(QueueInput::Joined { hold: Vec::new() }),
                    );
                }
                FlowOutput::LeaveQueue => self.queued = false,
                FlowOutput::Intent { intent, .. } => self.seen.intent = Some(intent),
                FlowOutput::Escalated(r) => self.seen.escalated = Some(r.as_str().into()),
                FlowOutput::Upset(_) => self.seen.upset = true,
                FlowOutput::CallbackRequested { .. } | FlowOutput::KeepPlace => {
                    self.seen.callback = true
                }
                FlowOutput::Entered(n) => self.seen.path.push(n),
                FlowOutput::End(how) => {
                    self.stop();
                    self.transferring = false;
                    self.seen.end = Some(how);
                }
                FlowOutput::EscalationFailed
                | FlowOutput::OutageAnnounced(_)
                | FlowOutput::Speech(_)
                | FlowOutput::SpeechConfidence(_)
                | FlowOutput::Feedback { .. } => {}
            }
        }
    }

    fn stop(&mut self) {
        self.note_heard();
        self.playing.clear();
        self.batch_end = None;
    }

    /// Prompts that have started by now have been heard (at least their beginning).
    fn note_heard(&mut self) {
        let now = self.now;
        let started = self.playing.iter().take_while(|(_, at)| *at <= now).count();
        for (name, _) in self.playing.drain(..started) {
            self.seen.heard.push(name);
        }
    }

    /// Lets time pass to `at`: prompts end, the flow's timers fire.
    fn advance_to(&mut self, at: Instant) {
        while !self.over() {
            let timer = self.r.poll_timeout();
            let next = match (self.batch_end, timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > at || next > self.t0 + MAX_CALL {
                break;
            }
            self.now = self.now.max(next);
            self.note_heard();
            if self.batch_end == Some(next) {
                self.batch_end = None;
                self.playing.clear();
                self.input(FlowInput::PlaybackDone);
            } else {
                self.r.handle_timeout(next);
                self.drain();
            }
        }
        self.now = self.now.max(at);
        self.note_heard();
    }

    /// Until the flow has said everything it has to say (its timers do not fire: a
    /// caller who does nothing is a `silence_ms` step).
    fn until_quiet(&mut self) {
        while let (Some(end), false) = (self.batch_end, self.over()) {
            if end > self.t0 + MAX_CALL {
                break;
            }
            self.advance_to(end);
        }
    }

    fn act(&mut self, step: &Step) {
        if let Some(keys) = &step.key {
            for (i, k) in keys.chars().enumerate() {
                if i > 0 {
                    let at = self.now + KEY_GAP;
                    self.advance_to(at);
                }
                self.input(FlowInput::Dtmf(k));
            }
        } else if let Some(text) = &step.say {
            self.input(FlowInput::SpeechStarted);
            let at = self.now + UTTERANCE;
            self.advance_to(at);
            let embedding = self
                .embedder
                .and_then(|e| e.embed(&[text.as_str()]).ok())
                .and_then(|mut v| v.pop());
            let heard = Heard {
                text: text.clone(),
                closed: None,
                embedding,
            };
            self.input(FlowInput::Transcript(heard));
        } else if let Some(ms) = step.silence_ms {
            let at = self.now + Duration::from_millis(ms);
            self.advance_to(at);
        } else if step.hangup == Some(true) {
            self.stop();
            self.seen.caller_hung_up = true;
        } else if let Some(t) = &step.transfer {
            if self.transferring {
                self.transferring = false;
                let input = if t == "fail" {
                    FlowInput::TransferFailed
                } else {
                    FlowInput::TransferSucceeded
                };
                self.input(input);
            }
        } else if let Some(q) = &step.queue {
            let input = match q.as_str() {
                "answered" => QueueInput::AgentConnected {
                    agent: "agent".into(),
                },
                "agent_hangs_up" => QueueInput::AgentHungUp,
                "timeout" => QueueInput::TimedOut,
                _ => QueueInput::NoAgents,
            };
            self.input(FlowInput::Queue(input));
        }
    }

    fn state(&self) -> String {
        if self.seen.caller_hung_up {
            return "caller_hangup".into();
        }
        match self.seen.end {
            Some(FlowEnd::Hangup) => "hangup".into(),
            Some(FlowEnd::Transferred) => "transferred".into(),
            Some(FlowEnd::Error) => "error".into(),
            None if self.transferring => "transferring".into(),
            None if self.queued => "queued".into(),
            None => "waiting".into(),
        }
    }

    /// Every way `e` does not hold: (field, message).
    fn check(&self, e: &Expect) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut list = |what: &str, want: &Option<Vec<String>>, got: &[String]| {
            if let Some(w) = want {
                let matches =
                    w.len() == got.len() && w.iter().zip(got).all(|(a, b)| a.trim() == b.trim());
                if !matches {
                    bad.push((what.to_string(), format!("expected {w:?}, got {got:?}")));
                }
            }
        };
        list("path", &e.path, &self.seen.path);
        list("heard", &e.heard, &self.seen.heard);
        let mut one = |what: &str, want: &Option<String>, got: Option<&str>| {
            if let Some(w) = want {
                if Some(w.as_str()) != got {
                    bad.push((
                        what.to_string(),
                        format!(
                            "expected {w:?}, got {}",
                            got.map_or("nothing".into(), |g| format!("{g:?}"))
                        ),
                    ));
                }
            }
        };
        one("node", &e.node, self.seen.path.last().map(String::as_str));
        one(
            "transfer",
            &e.transfer,
            self.seen.transfer.as_ref().map(|t| t.0.as_str()),
        );
        one(
            "queue",
            &e.queue,
            self.seen.queue.as_ref().map(|q| q.0.as_str()),
        );
        one("ends", &e.ends, Some(&self.state()));
        one("intent", &e.intent, self.seen.intent.as_deref());
        one("escalated", &e.escalated, self.seen.escalated.as_deref());
        if let Some(want) = e.upset {
            if want != self.seen.upset {
                bad.push((
                    "upset".into(),
                    format!("expected {want}, got {}", self.seen.upset),
                ));
            }
        }
        if let Some(want) = e.callback {
            if want != self.seen.callback {
                bad.push((
                    "callback".into(),
                    format!("expected {want}, got {}", self.seen.callback),
                ));
            }
        }
        if let Some(want) = &e.vars {
            let got: BTreeMap<&str, &str> = self
                .r
                .vars()
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("vars.")?, v.as_str())))
                .collect();
            for (k, v) in want {
                if got.get(k.as_str()) != Some(&v.as_str()) {
                    bad.push((
                        "vars".into(),
                        format!("{k}: expected {v:?}, got {:?}", got.get(k.as_str())),
                    ));
                }
            }
        }
        if let Some(want) = &e.headers {
            let ctx = self.seen.transfer.as_ref().map(|t| &t.1).or(self
                .seen
                .queue
                .as_ref()
                .map(|q| &q.1));
            match ctx {
                None => bad.push((
                    "headers".into(),
                    "no transfer or queue to carry them".into(),
                )),
                Some(ctx) => {
                    let got = crate::sip::context::headers(ctx);
                    for (k, v) in want {
                        let found = got
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(k))
                            .map(|(_, v)| v.as_str());
                        if found != Some(v.as_str()) {
                            bad.push((
                                "headers".into(),
                                format!("{k}: expected {v:?}, got {found:?}"),
                            ));
                        }
                    }
                }
            }
        }
        bad
    }
}
