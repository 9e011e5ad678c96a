//! Call flows: the YAML schema, the compiler that checks it, and the interpreter that runs
//! it for one call. All pure: the compiler gets prompts through [`PromptSource`], the
//! interpreter gets time and events as arguments.

pub mod compile;
pub mod cond;
pub mod graph;
pub mod runner;
pub mod schema;

use crate::asr::matcher::Matcher;
use crate::asr::vad::EndpointConfig;
use crate::media::prompt::Prompt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use compile::{
    compile, compile_dir, is_flow_file, is_flow_test_file, DirSettings, FlowDir, FlowSet,
    PromptSource,
};
pub use runner::{FlowInput, FlowOutput, FlowRunner};

/// Index of a node in [`Flow::nodes`].
pub type NodeId = usize;

/// A checked flow, ready to run. Immutable and shared by all calls that started on it;
/// a reload builds a new one while calls in progress keep theirs.
#[derive(Debug)]
pub struct Flow {
    pub name: String,
    pub file: PathBuf,
    pub start: NodeId,
    pub overflow: Option<NodeId>,
    pub escalation: Option<Escalation>,
    pub outage_prompts: OutagePrompts,
    /// Said when speech recognition is overloaded.
    pub speech_busy: Vec<Arc<Prompt>>,
    /// Endpointing for nodes that only listen for escalation phrases.
    pub endpoint: EndpointConfig,
    /// Upset callers: how they are noticed and where they go.
    pub upset: Option<Upset>,
    /// Whether any condition or text uses what ivrd remembers of the caller (the flow
    /// waits briefly for that record before starting).
    pub uses_caller: bool,
    pub nodes: Vec<Node>,
}

/// An upset caller is acknowledged first and offered a person at once.
pub struct Upset {
    /// Notices it in what the caller says.
    pub detector: Arc<crate::asr::upset::UpsetDetector>,
    /// Failed inputs in the call that count as upset (0: never).
    pub after_failures: u32,
    /// The acknowledgement.
    pub prompts: Vec<Arc<Prompt>>,
    pub next: NodeId,
}

impl std::fmt::Debug for Upset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upset")
            .field("after_failures", &self.after_failures)
            .field("next", &self.next)
            .finish()
    }
}

/// Prompts around outage announcements (empty when the flow gives none).
#[derive(Debug, Default)]
pub struct OutagePrompts {
    pub options: Vec<Arc<Prompt>>,
    pub callback_offer: Vec<Arc<Prompt>>,
    pub callback_confirmed: Vec<Arc<Prompt>>,
}

impl Flow {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

pub struct Escalation {
    pub dtmf: Option<char>,
    pub target: String,
    pub prompts: Vec<Arc<Prompt>>,
    /// 0 = never escalate on failures.
    pub after_failures: u32,
    pub on_fail: Option<NodeId>,
    pub phrases: Vec<String>,
    /// Keys that escalate while the caller talks to an agent.
    pub during_talk: Option<String>,
    /// Scores transcripts for the escalation phrases in nodes without speech intents.
    pub matcher: Option<Arc<Matcher>>,
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub bargein: bool,
}

#[derive(Debug)]
pub enum NodeKind {
    Play {
        prompts: Vec<Arc<Prompt>>,
        next: NodeId,
    },
    Menu(Box<Menu>),
    Transfer {
        target: String,
        prompts: Vec<Arc<Prompt>>,
        on_fail: NodeId,
    },
    /// Wait in a queue for an agent; the call is bridged to them (ivrd stays in the media).
    Queue {
        queue: String,
        prompts: Vec<Arc<Prompt>>,
        on_timeout: NodeId,
        on_no_agents: NodeId,
        /// Where the caller goes when the agent hangs up; None ends the call.
        after_agent: Option<NodeId>,
    },
    /// After the agent: a score from 1 to 5 by key, then a spoken comment.
    Survey(Box<Survey>),
    Goto(NodeId),
    Hangup {
        prompts: Vec<Arc<Prompt>>,
    },
    /// Offer a callback; key 1 accepts. Either way the flow goes on at `next`.
    Callback {
        offer: Vec<Arc<Prompt>>,
        confirm: Vec<Arc<Prompt>>,
        next: NodeId,
        timeout: Duration,
        /// Keep a place in this queue and call back from it.
        queue: Option<String>,
    },
    /// A number typed on the keypad, kept in a call variable.
    Digits(Box<Digits>),
    /// The first arm whose condition holds, else `otherwise`.
    Branch {
        arms: Vec<(cond::Cond, NodeId)>,
        otherwise: NodeId,
    },
    /// Set call variables, then go on.
    Set {
        vars: Vec<(String, crate::template::Template)>,
        next: NodeId,
    },
    /// Transfer to the escalation target (a person), after `prompts`.
    Escalate {
        prompts: Vec<Arc<Prompt>>,
    },
}

/// A digits node: ask, collect keys until the end key, the most keys or a pause.
#[derive(Debug)]
pub struct Digits {
    pub prompts: Vec<Arc<Prompt>>,
    /// The variable (without `vars.`).
    pub into: String,
    pub min: usize,
    pub max: usize,
    pub end_key: Option<char>,
    pub timeout: Duration,
    pub inter_digit: Duration,
    pub no_input: Retry,
    /// Too few keys.
    pub no_match: Retry,
    pub next: NodeId,
    pub on_failure: Option<NodeId>,
}

pub struct Survey {
    pub question: Vec<Arc<Prompt>>,
    pub comment: Vec<Arc<Prompt>>,
    pub thanks: Vec<Arc<Prompt>>,
    pub next: NodeId,
    /// How long the caller has for the key, and for the comment.
    pub timeout: Duration,
    /// Listens for the comment (any words: no intents).
    pub listen: Option<Arc<Matcher>>,
    pub endpoint: EndpointConfig,
}

#[derive(Debug)]
pub struct Menu {
    pub prompts: Vec<Arc<Prompt>>,
    pub intents: Vec<Intent>,
    pub no_input: Retry,
    pub no_match: Retry,
    pub timeout: Duration,
    pub inter_digit: Duration,
    pub on_failure: Option<NodeId>,
    /// Present when the menu listens for speech (some intent has phrases).
    pub speech: Option<MenuSpeech>,
}

/// How a menu understands speech.
pub struct MenuSpeech {
    /// The menu's intents and the flow's escalation phrases.
    pub matcher: Arc<Matcher>,
    pub min_confidence: f32,
    pub low_confidence: Retry,
    pub endpoint: EndpointConfig,
    /// The confirmation turn for unsure matches, if the menu has one.
    pub confirmation: Option<Confirmation>,
}

/// "Did you mean billing?": asked for a match between `min_confidence` and the menu's.
pub struct Confirmation {
    pub min_confidence: f32,
    /// Said after the intent's own `confirm` prompts.
    pub question: Vec<Arc<Prompt>>,
    pub timeout: Duration,
    /// Understands the answer: yes, no, and the escalation phrases.
    pub matcher: Arc<Matcher>,
}

#[derive(Debug)]
pub struct Intent {
    pub name: String,
    pub dtmf: Option<String>,
    pub phrases: Vec<String>,
    /// The confirmation question for this intent (menus with `confirmation`).
    pub confirm: Vec<Arc<Prompt>>,
    pub goto: NodeId,
}

#[derive(Debug)]
pub struct Retry {
    pub prompts: Vec<Arc<Prompt>>,
    pub max: u32,
}

impl std::fmt::Debug for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escalation")
            .field("dtmf", &self.dtmf)
            .field("target", &self.target)
            .field("after_failures", &self.after_failures)
            .field("phrases", &self.phrases)
            .finish()
    }
}

impl std::fmt::Debug for Survey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Survey")
            .field("next", &self.next)
            .field("timeout", &self.timeout)
            .field("comment", &self.listen.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Confirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirmation")
            .field("min_confidence", &self.min_confidence)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl std::fmt::Debug for MenuSpeech {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MenuSpeech")
            .field("phrases", &self.matcher.phrases().len())
            .field("min_confidence", &self.min_confidence)
            .finish()
    }
}
