//! Compiling a queue node: the queue it names (checked against the config's queues when
//! the flow is compiled with them) and where the caller goes on each way out; and the
//! survey node that usually follows the agent.

use super::{endpoint_config, Compiler, UNRESOLVED};
use crate::asr::matcher::Matcher;
use crate::flow::schema::{FlowFile, NodeDef};
use crate::flow::{NodeKind, Survey};
use std::sync::Arc;
use std::time::Duration;

impl Compiler<'_> {
    pub(super) fn queue_node(&mut self, name: &str, n: &NodeDef) -> NodeKind {
        let queue = n.queue.clone().unwrap_or_default();
        self.check_queue_name(name, "queue", &queue);
        let mut required = |field: &str, value: &Option<String>, why: &str| match value {
            Some(t) => self.target(name, field, t),
            None => {
                self.err_node(
                    name,
                    Some("queue"),
                    format!("a queue node needs '{field}': where the caller goes {why}"),
                );
                UNRESOLVED
            }
        };
        let on_timeout = required("on_timeout", &n.on_timeout, "after the longest wait");
        let on_no_agents = required(
            "on_no_agents",
            &n.on_no_agents,
            "when nobody serves the queue",
        );
        let after_agent = n
            .after_agent
            .as_ref()
            .map(|t| self.target(name, "after_agent", t));
        NodeKind::Queue {
            queue,
            prompts: self.load_prompts(Some(name), "play", n.play.as_ref()),
            on_timeout,
            on_no_agents,
            after_agent,
        }
    }

    /// A queue named in a node must be one of the config's (when they are known).
    pub(super) fn check_queue_name(&mut self, node: &str, field: &str, queue: &str) {
        let Some(known) = self.queues else {
            return;
        };
        if !known.iter().any(|k| k == queue) {
            let have = if known.is_empty() {
                "the config has no queues".to_string()
            } else {
                format!("the config's queues are {}", known.join(", "))
            };
            self.err_node(
                node,
                Some(field),
                format!("{field}: no queue named '{queue}' ({have})"),
            );
        }
    }

    pub(super) fn survey_node(&mut self, name: &str, n: &NodeDef, def: &FlowFile) -> NodeKind {
        let next = match &n.next {
            Some(t) => self.target(name, "next", t),
            None => {
                self.err_node(
                    name,
                    Some("survey"),
                    "a survey node needs 'next': where the call goes after it".into(),
                );
                UNRESOLVED
            }
        };
        let comment = self.load_prompts(Some(name), "comment", n.comment.as_ref());
        // Any words are a comment: a matcher without intents only shapes the recogniser.
        let listen = (!comment.is_empty()).then(|| Arc::new(Matcher::new(Vec::new(), Vec::new())));
        NodeKind::Survey(Box::new(Survey {
            question: self.load_prompts(Some(name), "survey", n.survey.as_ref()),
            comment,
            thanks: self.load_prompts(Some(name), "thanks", n.thanks.as_ref()),
            next,
            timeout: Duration::from_millis(n.timeout_ms.unwrap_or(def.defaults.no_input_ms)),
            listen,
            endpoint: endpoint_config(&def.defaults),
        }))
    }
}
