//! Call flows: the YAML schema, the compiler that checks it, and the interpreter that runs
//! it for one call. All pure: the compiler gets prompts through [`PromptSource`], the
//! interpreter gets time and events as arguments.

pub mod compile;
pub mod runner;
pub mod schema;
mod source_map;

use crate::media::prompt::Prompt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use compile::{compile, compile_dir, FlowSet, PromptSource};
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
    pub nodes: Vec<Node>,
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

#[derive(Debug)]
pub struct Escalation {
    pub dtmf: Option<char>,
    pub target: String,
    pub prompts: Vec<Arc<Prompt>>,
    /// 0 = never escalate on failures.
    pub after_failures: u32,
    pub on_fail: Option<NodeId>,
    pub phrases: Vec<String>,
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
    Menu(Menu),
    Transfer {
        target: String,
        prompts: Vec<Arc<Prompt>>,
        on_fail: NodeId,
    },
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
    },
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
}

#[derive(Debug)]
pub struct Intent {
    pub name: String,
    pub dtmf: Option<String>,
    pub phrases: Vec<String>,
    pub goto: NodeId,
}

#[derive(Debug)]
pub struct Retry {
    pub prompts: Vec<Arc<Prompt>>,
    pub max: u32,
}
