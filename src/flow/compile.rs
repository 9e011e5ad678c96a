//! Flow compiler: YAML text -> checked [`Flow`]. It collects every problem in one pass
//! (unknown node, missing prompt, bad SIP URI, unreachable node, key collisions, ...) and
//! reports each with the file, the node and the line, so an admin fixes them all at once.

use super::schema::{FlowFile, NodeDef, PromptItem, Prompts};
use super::{Escalation, Flow, Node, NodeId, NodeKind, OutagePrompts};
use crate::asr::embed::{Memo, TextEmbedder};
use crate::asr::matcher::Matcher;
use crate::asr::vad::EndpointConfig;
use crate::diag::source_map::SourceMap;
use crate::diag::{yaml_diagnostic, Diagnostic, Diagnostics};
use crate::media::prompt::{Prompt, PromptError};
use crate::sip::uri::validate_transfer_target;
use indexmap::IndexMap;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where compiled flows get their audio: the prompt catalogue. The daemon's is the sounds
/// directory (read by `io`); tests use an in-memory one.
pub trait PromptSource {
    fn prompt(&mut self, name: &str) -> Result<Arc<Prompt>, PromptError>;

    /// Text spoken by the text-to-speech engine (a `say:` without placeholders), rendered
    /// now. Catalogues without an engine refuse.
    fn say(&mut self, text: &str) -> Result<Arc<Prompt>, PromptError> {
        Err(PromptError::Speech {
            text: text.to_string(),
            reason: "no text-to-speech engine (tts: ~ in the config); use a sound file".into(),
        })
    }
}

/// Keys a caller can press.
const DTMF_KEYS: &str = "0123456789*#ABCD";

/// Stands for a reference to a node that does not exist (already reported).
const UNRESOLVED: NodeId = usize::MAX;

/// Longest key sequence a menu choice may have.
const MAX_DTMF_LEN: usize = 8;

/// Every flow of a directory plus the routing from dialled numbers to flows.
#[derive(Debug)]
pub struct FlowSet {
    pub flows: IndexMap<String, Arc<Flow>>,
    pub default: Arc<Flow>,
    pub routes: HashMap<String, Arc<Flow>>,
}

impl FlowSet {
    /// The flow for a dialled number (Request-URI user part).
    pub fn route(&self, dialled: &str) -> Arc<Flow> {
        self.routes
            .get(dialled)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

/// Files in a flows directory that are not flows.
const NOT_FLOWS: &[&str] = &["outages.yaml"];

/// Whether a file in the flows directory is a flow (`*.yaml`/`*.yml`, not the outages
/// file, not a flow test `*.test.yaml`).
pub fn is_flow_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "yaml" || x == "yml")
        && !path
            .file_name()
            .is_some_and(|n| NOT_FLOWS.iter().any(|x| n == *x))
        && !is_flow_test_file(path)
}

/// Whether a file is a flow test (`*.test.yaml`, run by `ivrd test`).
pub fn is_flow_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
}

/// A flows directory as read from disk: each flow file (see [`is_flow_file`]) with its
/// text, or why it could not be read.
pub struct FlowDir {
    pub dir: PathBuf,
    pub files: Vec<(PathBuf, Result<String, std::io::Error>)>,
}

/// What the config says about the flows of a directory.
pub struct DirSettings<'a> {
    /// The config file (where routing errors are reported).
    pub config_file: &'a Path,
    /// The flow for numbers without a route.
    pub default: &'a str,
    /// Dialled number -> flow name.
    pub routes: &'a IndexMap<String, String>,
    /// The queues `queue` nodes may name.
    pub queues: &'a [String],
    /// The schedules `branch` conditions may name.
    pub schedules: &'a IndexMap<String, Arc<crate::schedule::Schedule>>,
}

/// Compiles every flow of a directory and resolves the config's routes.
pub fn compile_dir(
    flow_dir: &FlowDir,
    settings: &DirSettings<'_>,
    prompts: &mut dyn PromptSource,
    embedder: Option<&dyn TextEmbedder>,
) -> Result<FlowSet, Diagnostics> {
    let (default, routes, config_file) = (settings.default, settings.routes, settings.config_file);
    let memo = embedder.map(Memo::new);
    let embedder = memo.as_ref().map(|m| m as &dyn TextEmbedder);
    let mut errors = Vec::new();
    let dir = flow_dir.dir.as_path();
    let mut files: Vec<&(PathBuf, Result<String, std::io::Error>)> =
        flow_dir.files.iter().collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut flows: IndexMap<String, Arc<Flow>> = IndexMap::new();
    for (file, text) in &files {
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                errors.push(Diagnostic::new(file, format!("cannot read: {e}")));
                continue;
            }
        };
        let known = Known {
            queues: Some(settings.queues),
            schedules: Some(settings.schedules),
        };
        match compile_checked(file, text, prompts, embedder, known) {
            Ok(flow) => {
                if let Some(other) = flows.get(&flow.name) {
                    errors.push(Diagnostic::new(
                        file,
                        format!(
                            "flow name '{}' is already used by {}",
                            flow.name,
                            other.file.display()
                        ),
                    ));
                } else {
                    flows.insert(flow.name.clone(), Arc::new(flow));
                }
            }
            Err(mut e) => errors.append(&mut e.0),
        }
    }
    if files.is_empty() {
        errors.push(Diagnostic::new(dir, "no flow files (*.yaml) found"));
    }
    let lookup = |name: &str, what: String, errors: &mut Vec<Diagnostic>| {
        let found = flows.get(name).cloned();
        if found.is_none() && errors.is_empty() {
            errors.push(Diagnostic::new(
                config_file,
                format!("{what}: no flow named '{name}' in {}", dir.display()),
            ));
        }
        found
    };
    let default_flow = lookup(default, "flows.default".into(), &mut errors);
    let mut routed = HashMap::new();
    for (number, name) in routes {
        if let Some(f) = lookup(name, format!("flows.routes.{number}"), &mut errors) {
            routed.insert(number.clone(), f);
        }
    }
    match default_flow {
        Some(default) if errors.is_empty() => Ok(FlowSet {
            flows,
            default,
            routes: routed,
        }),
        _ => Err(Diagnostics(errors)),
    }
}

/// Compiles one flow file (speech matched by words only).
pub fn compile(
    file: &Path,
    text: &str,
    prompts: &mut dyn PromptSource,
) -> Result<Flow, Diagnostics> {
    compile_with(file, text, prompts, None)
}

/// Compiles one flow file; with an embedder, menus also match speech by meaning (their
/// examples are embedded now) and intents too close in meaning are reported.
pub fn compile_with(
    file: &Path,
    text: &str,
    prompts: &mut dyn PromptSource,
    embedder: Option<&dyn TextEmbedder>,
) -> Result<Flow, Diagnostics> {
    compile_checked(file, text, prompts, embedder, Known::default())
}

/// What the config declares that a flow may name (None: not checked, the flow compiled
/// alone).
#[derive(Default, Clone, Copy)]
pub struct Known<'a> {
    pub queues: Option<&'a [String]>,
    pub schedules: Option<&'a IndexMap<String, Arc<crate::schedule::Schedule>>>,
}

/// Compiles one flow file against what the config declares.
pub fn compile_known(
    file: &Path,
    text: &str,
    prompts: &mut dyn PromptSource,
    embedder: Option<&dyn TextEmbedder>,
    known: Known<'_>,
) -> Result<Flow, Diagnostics> {
    compile_checked(file, text, prompts, embedder, known)
}

fn compile_checked(
    file: &Path,
    text: &str,
    prompts: &mut dyn PromptSource,
    embedder: Option<&dyn TextEmbedder>,
    known: Known<'_>,
) -> Result<Flow, Diagnostics> {
    let def: FlowFile =
        serde_yaml::from_str(text).map_err(|e| Diagnostics(vec![yaml_diagnostic(file, &e)]))?;
    let mut c = Compiler {
        file,
        map: SourceMap::new(text),
        prompts,
        embedder,
        yes_no: None,
        queues: known.queues,
        schedules: known.schedules,
        vars: logic::declared_vars(&def),
        uses_caller: false,
        errors: Vec::new(),
        ids: def
            .nodes
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect(),
    };
    let flow = c.flow(&def);
    if c.errors.is_empty() {
        Ok(flow)
    } else {
        Err(Diagnostics(c.errors))
    }
}

struct Compiler<'a> {
    file: &'a Path,
    map: SourceMap<'a>,
    prompts: &'a mut dyn PromptSource,
    embedder: Option<&'a dyn TextEmbedder>,
    yes_no: Option<Arc<Matcher>>,
    /// Queue names `queue` nodes may use (None: not checked, the flow compiled alone).
    queues: Option<&'a [String]>,
    /// Schedules `branch` conditions may use (None: not checked; a condition on one is
    /// then always false).
    schedules: Option<&'a IndexMap<String, Arc<crate::schedule::Schedule>>>,
    /// Call variables some node sets (`set`, `digits` + `into`), without `vars.`.
    vars: HashSet<String>,
    /// Whether a condition or a text uses the caller's record.
    uses_caller: bool,
    errors: Vec<Diagnostic>,
    ids: HashMap<String, NodeId>,
}

impl Compiler<'_> {
    fn err_top(&mut self, key: &str, msg: String) {
        let line = self.map.top(key);
        self.errors.push(Diagnostic::new(self.file, msg).at(line));
    }

    fn err_node(&mut self, node: &str, field: Option<&str>, msg: String) {
        let line = field
            .and_then(|f| self.map.node_field(node, f))
            .or_else(|| self.map.node(node));
        self.errors
            .push(Diagnostic::new(self.file, msg).at(line).in_node(node));
    }

    /// Resolves a node reference; unknown names are reported and map to [`UNRESOLVED`] so
    /// that compilation goes on and finds the remaining errors (the flow is never run).
    fn target(&mut self, node: &str, field: &str, name: &str) -> NodeId {
        match self.ids.get(name) {
            Some(&id) => id,
            None => {
                self.err_node(
                    node,
                    Some(field),
                    format!("{field}: no node named '{name}'"),
                );
                UNRESOLVED
            }
        }
    }

    fn top_target(&mut self, key: &str, field: Option<&str>, name: &str) -> NodeId {
        match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let line = match field {
                    Some(f) => self.map.top_field(key, f),
                    None => self.map.top(key),
                };
                let what = field.map(|f| format!("{key}.{f}")).unwrap_or(key.into());
                self.errors.push(
                    Diagnostic::new(self.file, format!("{what}: no node named '{name}'")).at(line),
                );
                UNRESOLVED
            }
        }
    }

    fn load_prompts(
        &mut self,
        node: Option<&str>,
        field: &str,
        p: Option<&Prompts>,
    ) -> Vec<Arc<Prompt>> {
        match node {
            Some(n) => self.load_prompts_at(p, |c, name, e| {
                c.err_node(n, Some(field), format!("{field}: prompt '{name}': {e}"))
            }),
            None => self.load_top_prompts("escalation", field, p),
        }
    }

    /// Prompts of a top-level block such as `escalation` or `outages`.
    fn load_top_prompts(
        &mut self,
        top: &str,
        field: &str,
        p: Option<&Prompts>,
    ) -> Vec<Arc<Prompt>> {
        self.load_prompts_at(p, |c, name, e| {
            let line = c.map.top_field(top, field);
            c.errors.push(
                Diagnostic::new(c.file, format!("{top}.{field}: prompt '{name}': {e}")).at(line),
            );
        })
    }

    fn load_prompts_at(
        &mut self,
        p: Option<&Prompts>,
        mut report: impl FnMut(&mut Self, &str, String),
    ) -> Vec<Arc<Prompt>> {
        let Some(p) = p else { return Vec::new() };
        let mut out = Vec::new();
        for item in p.items() {
            match item {
                PromptItem::Name(name) => match self.prompts.prompt(name) {
                    Ok(pr) => out.push(pr),
                    Err(e) => report(self, name, e.to_string()),
                },
                PromptItem::Say(say) => match self.template(&say.say) {
                    Err(e) => report(self, &say.say, e),
                    // Placeholders: spoken per call.
                    Ok(t) if t.has_placeholders() => out.push(Arc::new(Prompt::to_render(t))),
                    Ok(_) => match self.prompts.say(&say.say) {
                        Ok(pr) => out.push(pr),
                        Err(e) => report(self, &say.say, e.to_string()),
                    },
                },
            }
        }
        out
    }

    fn flow(&mut self, def: &FlowFile) -> Flow {
        if def.version != 1 {
            self.err_top(
                "version",
                format!("version {} is not supported (only 1)", def.version),
            );
        }
        if def.flow.trim().is_empty()
            || !def
                .flow
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.err_top(
                "flow",
                format!(
                    "flow name '{}' must be letters, digits, '-', '_' or '.'",
                    def.flow
                ),
            );
        }
        if def.nodes.is_empty() {
            self.err_top("nodes", "a flow needs at least one node".into());
        }
        let start = self.top_target("start", None, &def.start);
        let overflow = def
            .overflow
            .as_ref()
            .map(|o| self.top_target("overflow", None, o));
        let escalation = def.escalation.as_ref().map(|e| {
            let dtmf = match e.dtmf.as_deref() {
                None => None,
                Some(k) if k.len() == 1 && DTMF_KEYS.contains(k) => k.chars().next(),
                Some(k) => {
                    let line = self.map.top_field("escalation", "dtmf");
                    self.errors.push(
                        Diagnostic::new(
                            self.file,
                            format!("escalation.dtmf: '{k}' is not a single key (0-9, *, #, A-D)"),
                        )
                        .at(line),
                    );
                    None
                }
            };
            let during_talk = e.during_talk.clone().filter(|k| {
                let ok = (2..=MAX_DTMF_LEN).contains(&k.len()) && k.chars().all(|c| DTMF_KEYS.contains(c));
                if !ok {
                    let line = self.map.top_field("escalation", "during_talk");
                    self.errors.push(
                        Diagnostic::new(
                            self.file,
                            format!("escalation.during_talk: '{k}' must be 2 to {MAX_DTMF_LEN} keys (0-9, *, #, A-D), so agents' own key menus still work"),
                        )
                        .at(line),
                    );
                }
                ok
            });
            if let Err(msg) = validate_transfer_target(&e.target) {
                let line = self.map.top_field("escalation", "target");
                self.errors
                    .push(Diagnostic::new(self.file, format!("escalation.target: {msg}")).at(line));
            }
            Escalation {
                dtmf,
                target: e.target.clone(),
                prompts: self.load_prompts(None, "play", e.play.as_ref()),
                after_failures: e.after_failures,
                phrases: e.phrases.clone(),
                during_talk,
                matcher: (!e.phrases.is_empty()).then(|| {
                    let m = Matcher::new(Vec::new(), e.phrases.clone());
                    Arc::new(self.semantic(None, m))
                }),
                on_fail: e
                    .on_fail
                    .as_ref()
                    .map(|n| self.top_target("escalation", Some("on_fail"), n)),
            }
        });
        let esc_key = escalation.as_ref().and_then(|e| e.dtmf);
        let esc_phrases: Vec<String> = escalation
            .as_ref()
            .map(|e| e.phrases.clone())
            .unwrap_or_default();
        let speech_busy = self.load_top_prompts(
            "speech",
            "busy",
            def.speech.as_ref().and_then(|s| s.busy.as_ref()),
        );
        let endpoint = endpoint_config(&def.defaults);
        let outage_prompts = match &def.outages {
            Some(o) => OutagePrompts {
                options: self.load_top_prompts("outages", "options", o.options.as_ref()),
                callback_offer: self.load_top_prompts(
                    "outages",
                    "callback_offer",
                    o.callback_offer.as_ref(),
                ),
                callback_confirmed: self.load_top_prompts(
                    "outages",
                    "callback_confirmed",
                    o.callback_confirmed.as_ref(),
                ),
            },
            None => OutagePrompts::default(),
        };
        let upset = def.upset.as_ref().map(|u| self.upset(u));
        let mut nodes = Vec::with_capacity(def.nodes.len());
        for (name, n) in &def.nodes {
            let kind = self.node(name, n, def, esc_key, &esc_phrases);
            nodes.push(Node {
                name: name.clone(),
                kind,
                bargein: n.bargein.unwrap_or(def.defaults.bargein),
            });
        }
        let flow = Flow {
            name: def.flow.clone(),
            file: self.file.to_path_buf(),
            start,
            overflow,
            escalation,
            outage_prompts,
            speech_busy,
            endpoint,
            upset,
            uses_caller: self.uses_caller,
            nodes,
        };
        self.check_graph(&flow);
        flow
    }

    fn node(
        &mut self,
        name: &str,
        n: &NodeDef,
        def: &FlowFile,
        esc_key: Option<char>,
        esc_phrases: &[String],
    ) -> NodeKind {
        let actions: Vec<&str> = [
            ("menu", n.menu.is_some()),
            ("transfer", n.transfer.is_some()),
            ("queue", n.queue.is_some()),
            ("survey", n.survey.is_some()),
            ("goto", n.goto.is_some()),
            ("hangup", n.hangup.is_some()),
            ("callback", n.callback.is_some()),
            ("digits", n.digits.is_some()),
            ("branch", n.branch.is_some()),
            ("set", n.set.is_some()),
            ("escalate", n.escalate.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| *k)
        .collect();
        if actions.len() > 1 {
            self.err_node(
                name,
                None,
                format!(
                    "a node does one thing, but this one has {}",
                    actions.join(" and ")
                ),
            );
        }
        let kind = actions.first().copied().unwrap_or("play");
        // Fields that belong to some kinds of node only.
        let rules: [(&str, bool, &[&str]); 23] = [
            (
                "next",
                n.next.is_some(),
                &["play", "callback", "survey", "digits", "set"],
            ),
            ("into", n.into.is_some(), &["digits"]),
            ("min_digits", n.min_digits.is_some(), &["digits"]),
            ("max_digits", n.max_digits.is_some(), &["digits"]),
            ("end_key", n.end_key.is_some(), &["digits"]),
            ("else", n.otherwise.is_some(), &["branch"]),
            ("comment", n.comment.is_some(), &["survey"]),
            ("callback_queue", n.callback_queue.is_some(), &["callback"]),
            ("thanks", n.thanks.is_some(), &["survey"]),
            ("confirm", n.confirm.is_some(), &["callback"]),
            ("intents", n.intents.is_some(), &["menu"]),
            ("no_input", n.no_input.is_some(), &["menu", "digits"]),
            ("no_match", n.no_match.is_some(), &["menu", "digits"]),
            ("low_confidence", n.low_confidence.is_some(), &["menu"]),
            ("min_confidence", n.min_confidence.is_some(), &["menu"]),
            ("confirmation", n.confirmation.is_some(), &["menu"]),
            (
                "timeout_ms",
                n.timeout_ms.is_some(),
                &["menu", "callback", "survey", "digits"],
            ),
            ("on_failure", n.on_failure.is_some(), &["menu", "digits"]),
            ("on_fail", n.on_fail.is_some(), &["transfer"]),
            (
                "play",
                n.play.is_some(),
                &["play", "transfer", "queue", "hangup", "escalate"],
            ),
            ("on_timeout", n.on_timeout.is_some(), &["queue"]),
            ("on_no_agents", n.on_no_agents.is_some(), &["queue"]),
            ("after_agent", n.after_agent.is_some(), &["queue"]),
        ];
        for (field, set, kinds) in rules {
            if set && !kinds.contains(&kind) {
                self.err_node(
                    name,
                    Some(field),
                    format!("'{field}' only belongs on {} nodes", kinds.join(" and ")),
                );
            }
        }
        match kind {
            "menu" => NodeKind::Menu(Box::new(self.menu(name, n, def, esc_key, esc_phrases))),
            "transfer" => {
                let target = n.transfer.clone().unwrap_or_default();
                if let Err(msg) = validate_transfer_target(&target) {
                    self.err_node(name, Some("transfer"), format!("transfer: {msg}"));
                }
                let on_fail = match &n.on_fail {
                    Some(t) => self.target(name, "on_fail", t),
                    None => {
                        self.err_node(
                            name,
                            Some("transfer"),
                            "a transfer node needs 'on_fail': where the caller goes if the transfer fails".into(),
                        );
                        UNRESOLVED
                    }
                };
                NodeKind::Transfer {
                    target,
                    prompts: self.load_prompts(Some(name), "play", n.play.as_ref()),
                    on_fail,
                }
            }
            "queue" => self.queue_node(name, n),
            "digits" => self.digits_node(name, n, def),
            "branch" => self.branch_node(name, n),
            "set" => self.set_node(name, n),
            "escalate" => self.escalate_node(name, n, def),
            "survey" => self.survey_node(name, n, def),
            "goto" => NodeKind::Goto(self.target(name, "goto", n.goto.as_deref().unwrap_or(""))),
            "callback" => {
                let next = match &n.next {
                    Some(t) => self.target(name, "next", t),
                    None => {
                        self.err_node(
                            name,
                            Some("callback"),
                            "a callback node needs 'next': where the call goes after the offer"
                                .into(),
                        );
                        UNRESOLVED
                    }
                };
                let timeout_ms = n.timeout_ms.unwrap_or(def.defaults.no_input_ms);
                if let Some(q) = &n.callback_queue {
                    self.check_queue_name(name, "callback_queue", q);
                }
                NodeKind::Callback {
                    offer: self.load_prompts(Some(name), "callback", n.callback.as_ref()),
                    confirm: self.load_prompts(Some(name), "confirm", n.confirm.as_ref()),
                    next,
                    timeout: Duration::from_millis(timeout_ms),
                    queue: n.callback_queue.clone(),
                }
            }
            "hangup" => {
                if n.hangup == Some(false) {
                    self.err_node(
                        name,
                        Some("hangup"),
                        "'hangup: false' does nothing; remove it or use true".into(),
                    );
                }
                NodeKind::Hangup {
                    prompts: self.load_prompts(Some(name), "play", n.play.as_ref()),
                }
            }
            _ => {
                if n.play.is_none() {
                    self.err_node(
                        name,
                        None,
                        "node has no action: give it one of play, menu, digits, branch, set, transfer, queue, escalate, goto or hangup"
                            .into(),
                    );
                }
                let next = match &n.next {
                    Some(t) => self.target(name, "next", t),
                    None => {
                        if n.play.is_some() {
                            self.err_node(
                                name,
                                Some("play"),
                                "a play node needs 'next' (or use hangup: true to end the call)"
                                    .into(),
                            );
                        }
                        UNRESOLVED
                    }
                };
                NodeKind::Play {
                    prompts: self.load_prompts(Some(name), "play", n.play.as_ref()),
                    next,
                }
            }
        }
    }

    /// Graph checks: unreachable nodes and goto-only loops. Unresolved references are
    /// already reported and simply lead nowhere here.
    fn check_graph(&mut self, flow: &Flow) {
        let mut roots = vec![flow.start];
        roots.extend(flow.overflow);
        if let Some(e) = &flow.escalation {
            roots.extend(e.on_fail);
        }
        if let Some(u) = &flow.upset {
            roots.push(u.next);
        }
        let mut seen = HashSet::new();
        let mut queue: VecDeque<NodeId> = roots.into_iter().collect();
        while let Some(id) = queue.pop_front() {
            if id >= flow.nodes.len() || !seen.insert(id) {
                continue;
            }
            queue.extend(successors(&flow.nodes[id].kind));
        }
        for (id, node) in flow.nodes.iter().enumerate() {
            if !seen.contains(&id) {
                self.err_node(
                    &node.name,
                    None,
                    "unreachable: no path from 'start', 'overflow' or escalation leads here".into(),
                );
            }
        }
        // A cycle of goto nodes would spin forever without the caller hearing anything.
        for (id, node) in flow.nodes.iter().enumerate() {
            let mut cur = id;
            let mut steps = 0;
            while let Some(NodeKind::Goto(next) | NodeKind::Set { next, .. }) =
                flow.nodes.get(cur).map(|n| &n.kind)
            {
                cur = *next;
                steps += 1;
                if cur == id || steps > flow.nodes.len() {
                    self.err_node(
                        &node.name,
                        Some("goto"),
                        "goto loop: these nodes only jump to each other (goto and set)".into(),
                    );
                    break;
                }
            }
        }
    }
}

/// Endpointing timers from the flow's defaults. `no_input` is the runner's job (it owns the
/// menu timers), so the endpointer's own no-input limit is set far away.
fn endpoint_config(d: &super::schema::DefaultsDef) -> EndpointConfig {
    EndpointConfig {
        no_input: Duration::from_secs(3600),
        end_of_speech: Duration::from_millis(d.end_of_speech_ms.clamp(200, 5000)),
        max_utterance: Duration::from_millis(d.max_utterance_ms.clamp(1000, 30_000)),
        ..EndpointConfig::default()
    }
}

/// The nodes a node can lead to (in the flow's own order of its fields).
pub fn successors(kind: &NodeKind) -> Vec<NodeId> {
    match kind {
        NodeKind::Play { next, .. } => vec![*next],
        NodeKind::Menu(m) => m
            .intents
            .iter()
            .map(|i| i.goto)
            .chain(m.on_failure)
            .collect(),
        NodeKind::Transfer { on_fail, .. } => vec![*on_fail],
        NodeKind::Queue {
            on_timeout,
            on_no_agents,
            after_agent,
            ..
        } => [*on_timeout, *on_no_agents]
            .into_iter()
            .chain(*after_agent)
            .collect(),
        NodeKind::Survey(s) => vec![s.next],
        NodeKind::Goto(t) => vec![*t],
        NodeKind::Hangup { .. } => vec![],
        NodeKind::Callback { next, .. } => vec![*next],
        NodeKind::Digits(d) => std::iter::once(d.next).chain(d.on_failure).collect(),
        NodeKind::Branch { arms, otherwise } => arms
            .iter()
            .map(|(_, t)| *t)
            .chain(std::iter::once(*otherwise))
            .collect(),
        NodeKind::Set { next, .. } => vec![*next],
        NodeKind::Escalate { .. } => vec![],
    }
}

mod logic;
mod menu;
mod queue;
#[cfg(test)]
pub(crate) mod tests;
