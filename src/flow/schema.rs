//! The YAML call-flow format as admins write it. Unknown fields are rejected; the compiler
//! (`compile.rs`) turns this into a checked [`super::Flow`].
//!
//! A node does one thing, chosen by which action key it has:
//! `play` + `next`, `menu` + `intents`, `digits` + `into`, `branch` + `else`, `set` + `next`,
//! `transfer`, `queue`, `callback` + `next`, `survey`, `escalate`, `goto` or `hangup`.
//! `play` also works as a lead-in prompt on `transfer`, `queue`, `escalate` and `hangup` nodes.
//!
//! Wherever a prompt is named, `{say: "text"}` works too: spoken by the configured
//! text-to-speech engine, rendered when the flow loads. Text with `{placeholders}`
//! (`{caller.name}`, `{vars.account}`, `{call.dialled}`) is rendered per call.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    /// Format version; only 1 exists.
    pub version: u32,
    /// The flow's name, used in config routes, metrics and transfer headers.
    pub flow: String,
    #[serde(default)]
    pub description: Option<String>,
    /// First node of every call.
    pub start: String,
    /// Node for calls answered beyond `limits.max_calls` (a message and goodbye, or a callback offer).
    #[serde(default)]
    pub overflow: Option<String>,
    /// Reaching a person from anywhere in the call.
    #[serde(default)]
    pub escalation: Option<EscalationDef>,
    #[serde(default)]
    pub defaults: DefaultsDef,
    /// What callers hear around outage announcements.
    #[serde(default)]
    pub outages: Option<OutagePromptsDef>,
    /// Speech routing settings for the whole flow.
    #[serde(default)]
    pub speech: Option<SpeechDef>,
    /// Callers who sound upset (or fail again and again) are acknowledged first and
    /// offered a person at once.
    #[serde(default)]
    pub upset: Option<UpsetDef>,
    pub nodes: IndexMap<String, NodeDef>,
}

/// How the flow notices an upset caller, and what it does then.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsetDef {
    /// Words that say it plainly ("ridiculous", "third time"), matched in transcripts.
    #[serde(default = "default_upset_phrases")]
    pub phrases: Vec<String>,
    /// Sentences the meaning matcher compares with, so other wordings count too.
    #[serde(default = "default_upset_examples")]
    pub examples: Vec<String>,
    /// How close in meaning (0..1) a transcript must come to the examples.
    #[serde(default = "default_upset_similarity")]
    pub min_similarity: f32,
    /// Failed inputs in one call (no input, no match) that count as upset; 0 = never.
    #[serde(default = "default_upset_failures")]
    pub after_failures: u32,
    /// The acknowledgement, said first ("I am sorry this has been so frustrating.").
    pub play: Option<Prompts>,
    /// Where the caller goes then: a node that offers a person.
    pub next: String,
}

fn default_upset_phrases() -> Vec<String> {
    [
        "ridiculous",
        "unacceptable",
        "fed up",
        "sick of",
        "sick and tired",
        "third time",
        "fourth time",
        "so frustrating",
        "so frustrated",
        "waste of time",
        "wasting my time",
        "this is a joke",
        "furious",
        "useless",
        "absolutely terrible",
        "nobody helps",
        "nobody is helping",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn default_upset_examples() -> Vec<String> {
    [
        "this is ridiculous",
        "this is unacceptable",
        "I have called three times already and it is still not fixed",
        "I keep calling and nothing ever changes",
        "I am so angry with your service",
        "I am really frustrated",
        "I have lost my patience",
        "I am really upset about how I have been treated",
        "nobody ever helps me",
        "nobody ever calls me back",
        "you promised to fix it and you never did",
        "I am fed up with being passed from one person to another",
        "this is the worst service I have ever had",
        "I have been waiting for days and I am fed up",
        "you people are useless",
        "I am not happy at all",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Chosen on tests/data/upset/tune.tsv and the corpus's tuning half (recall 21/27, no
/// calm request flagged of 89); tests/upset_detection.rs reports the held-out figures.
fn default_upset_similarity() -> f32 {
    0.45
}

fn default_upset_failures() -> u32 {
    3
}

/// Flow-wide speech settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechDef {
    /// Said when speech recognition is overloaded: callers are asked to use keys instead.
    #[serde(default)]
    pub busy: Option<Prompts>,
}

/// Prompts said after an outage message: what the caller can do now.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutagePromptsDef {
    /// After outages without a callback offer ("You can stay on the line, or call back later.").
    #[serde(default)]
    pub options: Option<Prompts>,
    /// After outages that offer a callback ("To be called back when it is fixed, press 1...").
    #[serde(default)]
    pub callback_offer: Option<Prompts>,
    /// When the caller took the callback ("We will call you back... Goodbye."); the call then ends.
    #[serde(default)]
    pub callback_confirmed: Option<Prompts>,
}

/// One prompt or a list played in order. A name is `sounds/NAME.wav`; a name containing
/// `/` or ending in `.wav` is a path relative to the sounds directory; `{say: "text"}` is
/// spoken by the text-to-speech engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompts {
    One(PromptItem),
    Many(Vec<PromptItem>),
}

/// One prompt: a sound file's name, or text to speak.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptItem {
    Name(String),
    Say(SayDef),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SayDef {
    /// Text to speak; `{caller.name}`-style placeholders are filled in per call.
    pub say: String,
}

impl Prompts {
    pub fn items(&self) -> Vec<&PromptItem> {
        match self {
            Prompts::One(s) => vec![s],
            Prompts::Many(v) => v.iter().collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationDef {
    /// Key that reaches a person from any node (default "0"); `~` disables the key.
    #[serde(default = "default_escalation_key")]
    pub dtmf: Option<String>,
    /// Where escalated calls are transferred.
    pub target: String,
    /// Said before transferring ("Connecting you to a supervisor.").
    #[serde(default)]
    pub play: Option<Prompts>,
    /// Consecutive failed inputs (no input or no match) that escalate on their own; 0 = never.
    #[serde(default = "default_after_failures")]
    pub after_failures: u32,
    /// Node to continue at when the escalation transfer fails (default: hang up).
    #[serde(default)]
    pub on_fail: Option<String>,
    /// What callers say to reach a person, understood in every node (speech).
    #[serde(default = "default_escalation_phrases")]
    pub phrases: Vec<String>,
    /// Keys that bring the supervisor in while the caller talks to an agent (the agent's
    /// call ends, the caller is transferred to `target`); `~` disables it. Longer than one
    /// key so the agent's own DTMF menus still work.
    #[serde(default = "default_talk_keys")]
    pub during_talk: Option<String>,
}

fn default_talk_keys() -> Option<String> {
    Some("*0".to_string())
}

fn default_escalation_phrases() -> Vec<String> {
    [
        "supervisor",
        "manager",
        "agent",
        "operator",
        "a person",
        "a human",
        "a real person",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn default_escalation_key() -> Option<String> {
    Some("0".to_string())
}

fn default_after_failures() -> u32 {
    2
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsDef {
    /// How long a menu waits for the first key after its prompt ends.
    pub no_input_ms: u64,
    /// How long a menu waits for the next key of a multi-key choice.
    pub inter_digit_ms: u64,
    /// Whether a key press stops prompts (and is kept for the next menu).
    pub bargein: bool,
    /// Whether menus listen for speech (when the daemon has a speech model).
    pub speech: bool,
    /// Speech match confidence (0..1) needed to route; below it is `low_confidence`.
    pub min_confidence: f32,
    /// Silence that ends an utterance.
    pub end_of_speech_ms: u64,
    /// Longest utterance; longer speech is cut here.
    pub max_utterance_ms: u64,
}

impl Default for DefaultsDef {
    fn default() -> Self {
        DefaultsDef {
            no_input_ms: 6000,
            inter_digit_ms: 2000,
            bargein: true,
            speech: true,
            min_confidence: 0.6,
            end_of_speech_ms: 700,
            max_utterance_ms: 15000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDef {
    /// Prompts to play. Alone (with `next`) it is a play node; on transfer/hangup nodes it is said first.
    pub play: Option<Prompts>,
    /// Node after a play or callback node.
    pub next: Option<String>,
    /// The question a menu asks; the node waits for one of `intents` afterwards.
    pub menu: Option<Prompts>,
    /// The choices of a menu, by intent name.
    pub intents: Option<IndexMap<String, IntentDef>>,
    pub no_input: Option<RetryDef>,
    pub no_match: Option<RetryDef>,
    /// A speech match below `min_confidence` (default: handled like `no_match`).
    pub low_confidence: Option<RetryDef>,
    /// Overrides `defaults.min_confidence` for this menu.
    pub min_confidence: Option<f32>,
    /// A speech match between `confirmation.min_confidence` and `min_confidence` is
    /// checked with the caller ("Did you mean billing?") instead of failing.
    pub confirmation: Option<ConfirmationDef>,
    /// Overrides `defaults.speech` for this menu.
    pub speech: Option<bool>,
    /// Overrides `defaults.no_input_ms` for this menu.
    pub timeout_ms: Option<u64>,
    /// Node after the retries of a menu are used up (default: escalate, or hang up if no escalation).
    pub on_failure: Option<String>,
    /// SIP URI to transfer the caller to (REFER).
    pub transfer: Option<String>,
    /// Node to continue at when a transfer fails or is refused.
    pub on_fail: Option<String>,
    /// Jump to another node.
    pub goto: Option<String>,
    /// End the call (after `play`, if any).
    pub hangup: Option<bool>,
    /// Offer a callback: this prompt asks, key 1 accepts (the caller's number is recorded).
    pub callback: Option<Prompts>,
    /// Said when the caller accepted the callback offer.
    pub confirm: Option<Prompts>,
    /// Callback nodes: keep a place at the back of this queue and call the caller back when
    /// it comes up (without it the request is recorded for people to act on).
    pub callback_queue: Option<String>,
    /// Overrides `defaults.bargein` for this node.
    pub bargein: Option<bool>,
    /// Put the caller in this queue (config `queues`) until an agent answers.
    pub queue: Option<String>,
    /// Node after the queue's `max_wait_s`.
    pub on_timeout: Option<String>,
    /// Node when nobody serves the queue (every agent away or offline).
    pub on_no_agents: Option<String>,
    /// Node the caller continues at when the agent hangs up (default: end the call).
    pub after_agent: Option<String>,
    /// A survey after the call: this question asks for a key from 1 to 5.
    pub survey: Option<Prompts>,
    /// Survey: then this asks for a few words about the person who helped (recorded and
    /// transcribed when speech is on).
    pub comment: Option<Prompts>,
    /// Survey: said at the end, before `next`.
    pub thanks: Option<Prompts>,
    /// Ask for a number typed on the keypad (an account number): this prompt asks.
    pub digits: Option<Prompts>,
    /// Digits nodes: the call variable that keeps what was typed.
    pub into: Option<String>,
    /// Digits nodes: fewest keys accepted (default 1).
    pub min_digits: Option<usize>,
    /// Digits nodes: most keys; the entry ends by itself there (default 16).
    pub max_digits: Option<usize>,
    /// Digits nodes: the key that ends the entry (default "#").
    pub end_key: Option<String>,
    /// Go to the first arm whose condition holds (else to `else`).
    pub branch: Option<Vec<BranchArm>>,
    /// Branch nodes: where the call goes when no arm's condition holds.
    #[serde(rename = "else")]
    pub otherwise: Option<String>,
    /// Set call variables (values may use placeholders), then go to `next`. Variables
    /// travel with transfers and to agents (`X-IVR-Var-NAME`).
    pub set: Option<IndexMap<String, String>>,
    /// Transfer the caller to the flow's escalation target (a person), like the
    /// escalation key does.
    pub escalate: Option<bool>,
}

/// One arm of a branch node: if the condition holds, go there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchArm {
    #[serde(rename = "if")]
    pub cond: CondDef,
    pub goto: String,
}

/// A condition: every field given must hold (and), `any` needs one of its conditions,
/// `not` the opposite of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CondDef {
    /// Open now by this schedule (config `schedules`).
    pub schedule: Option<String>,
    /// Today is a holiday (or an exception that closes the day) in this schedule.
    pub holiday: Option<String>,
    /// `known`: ivrd remembers this caller; `unknown`: it does not.
    pub caller: Option<String>,
    /// The intent the caller chose last time they called.
    pub last_intent: Option<String>,
    /// With `last_intent` (or alone): the last call was this many days ago at most.
    pub within_days: Option<u32>,
    /// `any` outage in force, or an outage id, or an outage that concerns this scope.
    pub outage: Option<String>,
    /// The number dialled (one or a list).
    pub dialled: Option<StringOrList>,
    /// A call variable: with `equals` it must have that value, alone it must be set.
    pub var: Option<String>,
    pub equals: Option<String>,
    pub any: Option<Vec<CondDef>>,
    pub not: Option<Box<CondDef>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentDef {
    /// Key sequence that picks this intent, e.g. "1" or "42".
    pub dtmf: Option<String>,
    /// Example phrases a caller may say (speech routing).
    #[serde(default)]
    pub phrases: Vec<String>,
    /// The question that checks an unsure speech match ("Did you mean billing?"); needed
    /// in menus with `confirmation`.
    pub confirm: Option<Prompts>,
    /// Node the intent leads to.
    pub goto: String,
}

/// A menu's confirmation turn for unsure speech matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmationDef {
    /// Matches at or above this (and below the menu's `min_confidence`) are confirmed.
    #[serde(default = "default_confirm_confidence")]
    pub min_confidence: f32,
    /// Said after the intent's `confirm` prompt ("Say yes or no, or press 1 or 2.").
    #[serde(default)]
    pub question: Option<Prompts>,
    /// How long to wait for the answer before asking the menu again.
    #[serde(default = "default_confirm_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_confirm_confidence() -> f32 {
    0.35
}

fn default_confirm_timeout_ms() -> u64 {
    5000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    /// Said before the menu's question is asked again.
    #[serde(default)]
    pub reprompt: Option<Prompts>,
    /// How many times the question is asked again before `on_failure`.
    #[serde(default = "default_max_retries")]
    pub max: u32,
}

fn default_max_retries() -> u32 {
    2
}

impl Default for RetryDef {
    fn default() -> Self {
        RetryDef {
            reprompt: None,
            max: default_max_retries(),
        }
    }
}
