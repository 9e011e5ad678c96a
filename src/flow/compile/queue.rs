//! Compiling a queue node: the queue it names (checked against the config's queues when
//! the flow is compiled with them) and where the caller goes on each way out.

use super::{Compiler, UNRESOLVED};
use crate::flow::schema::NodeDef;
use crate::flow::NodeKind;

impl Compiler<'_> {
    pub(super) fn queue_node(&mut self, name: &str, n: &NodeDef) -> NodeKind {
        let queue = n.queue.clone().unwrap_or_default();
        if let Some(known) = self.queues {
            if !known.contains(&queue) {
                let have = if known.is_empty() {
                    "the config has no queues".to_string()
                } else {
                    format!("the config's queues are {}", known.join(", "))
                };
                self.err_node(
                    name,
                    Some("queue"),
                    format!("queue: no queue named '{queue}' ({have})"),
                );
            }
        }
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
}
