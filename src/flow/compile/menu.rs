//! Compiling a menu node: its intents (keys, examples, confirm prompts), retries, and its
//! speech settings (matcher, endpointing, confidence bounds, the confirmation turn).

use super::{endpoint_config, Compiler, DTMF_KEYS, MAX_DTMF_LEN};
use crate::asr::matcher::{collisions, Candidate, Matcher, NO, YES};
use crate::diag::Diagnostic;
use crate::flow::schema::{FlowFile, IntentDef, NodeDef, RetryDef};
use crate::flow::{Confirmation, Intent, Menu, MenuSpeech, Retry};
use indexmap::IndexMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

impl Compiler<'_> {
    pub(super) fn menu(
        &mut self,
        name: &str,
        n: &NodeDef,
        def: &FlowFile,
        esc_key: Option<char>,
        esc_phrases: &[String],
    ) -> Menu {
        let prompts = self.load_prompts(Some(name), "menu", n.menu.as_ref());
        let mut intents = Vec::new();
        let empty = IndexMap::new();
        let defs: &IndexMap<String, IntentDef> = n.intents.as_ref().unwrap_or(&empty);
        if defs.is_empty() {
            self.err_node(
                name,
                Some("menu"),
                "a menu needs 'intents': the choices callers can make".into(),
            );
        }
        let mut keys: HashMap<String, String> = HashMap::new();
        for (iname, i) in defs {
            if let Some(k) = &i.dtmf {
                if k.is_empty()
                    || k.len() > MAX_DTMF_LEN
                    || !k.chars().all(|c| DTMF_KEYS.contains(c))
                {
                    self.err_node(name, Some(iname), format!("intent '{iname}': dtmf '{k}' must be 1-{MAX_DTMF_LEN} keys of 0-9, *, #, A-D"));
                } else if let Some(other) = keys.insert(k.clone(), iname.clone()) {
                    self.err_node(
                        name,
                        Some(iname),
                        format!("intent '{iname}': key '{k}' is already used by intent '{other}'"),
                    );
                }
                if let Some(e) = esc_key {
                    if k.starts_with(e) {
                        self.err_node(name, Some(iname), format!("intent '{iname}': key '{e}' is the flow's escalation key and works in every node"));
                    }
                }
            } else if i.phrases.is_empty() {
                self.err_node(
                    name,
                    Some(iname),
                    format!(
                        "intent '{iname}' has neither dtmf nor phrases, so no caller can choose it"
                    ),
                );
            }
            let goto = self.target(name, "goto", &i.goto);
            let confirm = match &i.confirm {
                Some(p) => self.load_prompts(Some(name), iname, Some(p)),
                None => Vec::new(),
            };
            intents.push(Intent {
                name: iname.clone(),
                dtmf: i.dtmf.clone(),
                phrases: i.phrases.clone(),
                confirm,
                goto,
            });
        }
        let no_input = self.retry(name, "no_input", n.no_input.as_ref());
        let no_match = self.retry(name, "no_match", n.no_match.as_ref());
        let low_confidence = match &n.low_confidence {
            Some(_) => self.retry(name, "low_confidence", n.low_confidence.as_ref()),
            // Unsure what was said: ask like after a wrong key.
            None => Retry {
                prompts: no_match.prompts.clone(),
                max: no_match.max,
            },
        };
        let speech = self.menu_speech(name, n, def, &intents, esc_phrases, low_confidence);
        let timeout_ms = n.timeout_ms.unwrap_or(def.defaults.no_input_ms);
        if !(500..=120_000).contains(&timeout_ms) {
            self.err_node(
                name,
                Some("timeout_ms"),
                format!("timeout_ms {timeout_ms} must be between 500 and 120000"),
            );
        }
        Menu {
            prompts,
            intents,
            no_input,
            no_match,
            timeout: Duration::from_millis(timeout_ms),
            inter_digit: Duration::from_millis(def.defaults.inter_digit_ms),
            on_failure: n
                .on_failure
                .as_ref()
                .map(|t| self.target(name, "on_failure", t)),
            speech,
        }
    }

    /// Speech for a menu whose intents have phrases: the matcher, and `ivrd check`'s
    /// refusal of phrases that two intents share or that sound alike.
    fn menu_speech(
        &mut self,
        name: &str,
        n: &NodeDef,
        def: &FlowFile,
        intents: &[Intent],
        esc_phrases: &[String],
        low_confidence: Retry,
    ) -> Option<MenuSpeech> {
        let candidates: Vec<Candidate> = intents
            .iter()
            .filter(|i| !i.phrases.is_empty())
            .map(|i| Candidate {
                intent: i.name.clone(),
                phrases: i.phrases.clone(),
            })
            .collect();
        if candidates.is_empty() || !n.speech.unwrap_or(def.defaults.speech) {
            return None;
        }
        let mut with_escalation = candidates.clone();
        with_escalation.push(Candidate {
            intent: "(escalation)".into(),
            phrases: esc_phrases.to_vec(),
        });
        for problem in collisions(&with_escalation) {
            self.err_node(name, Some("intents"), problem);
        }
        let min_confidence = n.min_confidence.unwrap_or(def.defaults.min_confidence);
        if !(0.0..=1.0).contains(&min_confidence) {
            self.err_node(
                name,
                Some("min_confidence"),
                format!("min_confidence {min_confidence} must be between 0 and 1"),
            );
        }
        // A yes/no question of the flow's own is scored like the confirmation turn.
        let phrases_of = |intent: &str| {
            candidates
                .iter()
                .find(|c| c.intent == intent)
                .map(|c| c.phrases.clone())
        };
        let plain = match (phrases_of(YES), phrases_of(NO)) {
            (Some(yes), Some(no)) if candidates.len() == 2 => {
                Matcher::yes_no_with(&yes, &no, esc_phrases.to_vec())
            }
            _ => Matcher::new(candidates, esc_phrases.to_vec()),
        };
        let matcher = self.semantic(Some(name), plain);
        for problem in matcher.confusable() {
            self.err_node(name, Some("intents"), problem);
        }
        let confirmation = n.confirmation.as_ref().map(|c| {
            if !(0.0..1.0).contains(&c.min_confidence) || c.min_confidence >= min_confidence {
                self.err_node(
                    name,
                    Some("confirmation"),
                    format!(
                        "confirmation.min_confidence {} must be at least 0 and below the menu's min_confidence {min_confidence}",
                        c.min_confidence
                    ),
                );
            }
            if !(500..=60_000).contains(&c.timeout_ms) {
                self.err_node(
                    name,
                    Some("confirmation"),
                    format!("confirmation.timeout_ms {} must be between 500 and 60000", c.timeout_ms),
                );
            }
            for i in intents.iter().filter(|i| !i.phrases.is_empty() && i.confirm.is_empty()) {
                self.err_node(
                    name,
                    Some(&i.name),
                    format!("intent '{}' needs a 'confirm' prompt (\"Did you mean ...?\"): the menu has a confirmation turn", i.name),
                );
            }
            Confirmation {
                min_confidence: c.min_confidence,
                question: self.load_prompts(Some(name), "confirmation", c.question.as_ref()),
                timeout: Duration::from_millis(c.timeout_ms),
                matcher: self.yes_no(esc_phrases),
            }
        });
        Some(MenuSpeech {
            matcher: Arc::new(matcher),
            min_confidence,
            low_confidence,
            confirmation,
            endpoint: endpoint_config(&def.defaults),
        })
    }

    /// A retry block (reprompt and the most retries) of a menu or digits node.
    pub(super) fn retry(&mut self, node: &str, field: &str, r: Option<&RetryDef>) -> Retry {
        let r = r.cloned().unwrap_or_default();
        Retry {
            prompts: self.load_prompts(Some(node), field, r.reprompt.as_ref()),
            max: r.max,
        }
    }

    /// The yes/no matcher of confirmation turns, made once per flow.
    fn yes_no(&mut self, esc_phrases: &[String]) -> Arc<Matcher> {
        if let Some(m) = &self.yes_no {
            return m.clone();
        }
        let m = Arc::new(self.semantic(None, Matcher::yes_no(esc_phrases.to_vec())));
        self.yes_no = Some(m.clone());
        m
    }

    /// The matcher with its examples embedded, when there is an embedder. `node` names
    /// where a failure is reported (None: the escalation block).
    pub(super) fn semantic(&mut self, node: Option<&str>, mut matcher: Matcher) -> Matcher {
        let Some(embedder) = self.embedder else {
            return matcher;
        };
        if let Err(e) = matcher.attach_semantic(embedder) {
            let msg = format!("cannot embed the phrases: {e}");
            match node {
                Some(n) => self.err_node(n, Some("intents"), msg),
                None => self.errors.push(Diagnostic::new(self.file, msg)),
            }
        }
        matcher
    }
}
