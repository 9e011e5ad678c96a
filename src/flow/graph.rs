//! A flow as a picture: Graphviz DOT from the compiled flow (nodes with what they do, edges
//! with what leads there: keys and intents, conditions, failures), optionally with each
//! node's traffic, and SVG laid out from it in pure Rust (layout-rs). Pure.

use super::{Flow, NodeKind};
use std::collections::HashMap;

/// The flow in DOT. `traffic`: node name -> calls that entered it (shown on the node).
pub fn dot(flow: &Flow, traffic: Option<&HashMap<String, u64>>) -> String {
    let mut out = String::new();
    out.push_str(&format!("digraph {} {{\n", quote(&flow.name)));
    out.push_str("  rankdir=TB;\n");
    let name = |id: usize| flow.nodes.get(id).map(|n| n.name.as_str()).unwrap_or("?");
    let person = "a person";
    let mut needs_person = false;
    for (id, node) in flow.nodes.iter().enumerate() {
        let (what, shape, fill) = describe(&node.kind);
        let mut label = format!("{}\n{}", node.name, what);
        if id == flow.start {
            label = format!("START: {label}");
        }
        if let Some(t) = traffic {
            label.push_str(&format!(
                "\n{} calls",
                t.get(&node.name).copied().unwrap_or(0)
            ));
        }
        out.push_str(&format!(
            "  {} [label={}, shape={shape}, style=filled, fillcolor={}];\n",
            quote(&node.name),
            quote(&label),
            quote(fill)
        ));
        let mut edge = |to: usize, label: &str, dashed: bool| {
            out.push_str(&format!(
                "  {} -> {} [label={}{}];\n",
                quote(&node.name),
                quote(name(to)),
                quote(label),
                if dashed { ", style=dashed" } else { "" }
            ));
        };
        match &node.kind {
            NodeKind::Play { next, .. } => edge(*next, "", false),
            NodeKind::Menu(m) => {
                for i in &m.intents {
                    let key = i
                        .dtmf
                        .as_deref()
                        .map(|k| format!("{k}: "))
                        .unwrap_or_default();
                    edge(i.goto, &format!("{key}{}", i.name), false);
                }
                if let Some(f) = m.on_failure {
                    edge(f, "on failure", true);
                }
            }
            NodeKind::Transfer { on_fail, .. } => edge(*on_fail, "transfer failed", true),
            NodeKind::Queue {
                on_timeout,
                on_no_agents,
                after_agent,
                ..
            } => {
                edge(*on_timeout, "wait too long", true);
                edge(*on_no_agents, "no agents", true);
                if let Some(a) = after_agent {
                    edge(*a, "after the agent", false);
                }
            }
            NodeKind::Survey(s) => edge(s.next, "", false),
            NodeKind::Goto(t) => edge(*t, "", false),
            NodeKind::Hangup { .. } => {}
            NodeKind::Callback { next, .. } => edge(*next, "", false),
            NodeKind::Digits(d) => {
                edge(d.next, &format!("{} typed", d.into), false);
                if let Some(f) = d.on_failure {
                    edge(f, "on failure", true);
                }
            }
            NodeKind::Branch { arms, otherwise } => {
                for (cond, to) in arms {
                    edge(*to, &cond.describe(), false);
                }
                edge(*otherwise, "else", false);
            }
            NodeKind::Set { next, .. } => edge(*next, "", false),
            NodeKind::Escalate { .. } => {
                needs_person = true;
                out.push_str(&format!(
                    "  {} -> {} [label=\"\"];\n",
                    quote(&node.name),
                    quote(person)
                ));
            }
        }
    }
    if let Some(u) = &flow.upset {
        out.push_str(&format!(
            "  \"upset caller\" [label=\"upset caller\\n(acknowledged)\", shape=doublecircle, style=filled, fillcolor=\"mistyrose\"];\n  \"upset caller\" -> {} [label=\"\", style=dashed];\n",
            quote(name(u.next))
        ));
    }
    if let Some(e) = &flow.escalation {
        needs_person = true;
        let key = e.dtmf.map(|k| format!("key {k} or ")).unwrap_or_default();
        out.push_str(&format!(
            "  \"anywhere\" [label={}, shape=box, style=filled, fillcolor=\"lightyellow\"];\n  \"anywhere\" -> {} [label=\"\", style=dashed];\n",
            quote(&format!("anywhere:\n{key}\"a person\"")),
            quote(person)
        ));
        if let Some(f) = e.on_fail {
            out.push_str(&format!(
                "  {} -> {} [label=\"unreachable\", style=dashed];\n",
                quote(person),
                quote(name(f))
            ));
        }
    }
    if needs_person {
        let target = flow
            .escalation
            .as_ref()
            .map(|e| e.target.as_str())
            .unwrap_or("");
        out.push_str(&format!(
            "  {} [label={}, shape=doublecircle, style=filled, fillcolor=\"palegreen\"];\n",
            quote(person),
            quote(&format!("a person\n{target}"))
        ));
    }
    out.push_str("}\n");
    out
}

/// What a node does, its shape and colour.
fn describe(kind: &NodeKind) -> (String, &'static str, &'static str) {
    match kind {
        NodeKind::Play { prompts, .. } => {
            (format!("play {}", prompt_names(prompts)), "box", "white")
        }
        NodeKind::Menu(m) => (
            format!("menu ({} choices)", m.intents.len()),
            "box",
            "lightblue",
        ),
        NodeKind::Transfer { target, .. } => {
            (format!("transfer\n{target}"), "doublecircle", "palegreen")
        }
        NodeKind::Queue { queue, .. } => (format!("queue {queue}"), "doublecircle", "palegreen"),
        NodeKind::Survey(_) => ("survey 1-5".into(), "box", "lavender"),
        NodeKind::Goto(_) => ("goto".into(), "circle", "white"),
        NodeKind::Hangup { .. } => ("hang up".into(), "circle", "lightgray"),
        NodeKind::Callback { .. } => ("offer a callback".into(), "box", "lavender"),
        NodeKind::Digits(d) => (
            format!("type {} ({}-{} keys)", d.into, d.min, d.max),
            "box",
            "lightblue",
        ),
        NodeKind::Branch { .. } => ("branch".into(), "circle", "khaki"),
        NodeKind::Set { vars, .. } => (
            format!(
                "set {}",
                vars.iter()
                    .map(|(k, _)| k.trim_start_matches("vars."))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "box",
            "khaki",
        ),
        NodeKind::Escalate { .. } => ("to a person".into(), "box", "palegreen"),
    }
}

fn prompt_names(prompts: &[std::sync::Arc<crate::media::prompt::Prompt>]) -> String {
    let mut s: String = prompts
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if s.chars().count() > 40 {
        s = s.chars().take(37).collect::<String>() + "...";
    }
    s
}

/// A DOT string: quoted, with quotes and backslashes escaped and new lines as `\n`.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// DOT laid out as SVG.
pub fn svg(dot: &str) -> Result<String, String> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    let mut parser = DotParser::new(dot);
    let graph = parser.process().map_err(|e| format!("DOT: {e}"))?;
    let mut builder = GraphBuilder::new();
    builder.visit_graph(&graph);
    let mut vg = builder.get();
    let mut writer = SVGWriter::new();
    vg.do_it(false, false, false, &mut writer);
    Ok(writer.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::compile::tests::good_flow;

    #[test]
    fn every_node_and_way_is_drawn() {
        let flow = good_flow();
        let d = dot(&flow, None);
        for n in &flow.nodes {
            assert!(
                d.contains(&format!("\"{}\" [label=", n.name)),
                "{} missing:\n{d}",
                n.name
            );
        }
        assert!(
            d.contains("\"menu\" -> \"billing\" [label=\"1: billing\"]"),
            "{d}"
        );
        assert!(d.contains("START: greet"), "{d}");
        assert!(d.contains("transfer failed"), "{d}");
        let mut t = HashMap::new();
        t.insert("menu".to_string(), 7);
        assert!(dot(&flow, Some(&t)).contains("7 calls"));
        let s = svg(&d).unwrap();
        assert!(
            s.starts_with("<svg") || s.contains("<svg"),
            "{}",
            &s[..100.min(s.len())]
        );
        assert!(s.contains("billing"));
    }

    #[test]
    fn quoting_keeps_dot_valid() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
