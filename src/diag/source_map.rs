//! Finds the line of a node or a field in a flow file's or the config's text, so that
//! semantic errors (found after serde has thrown positions away) can still point at a line.
//! It understands the block and inline styles flows are written in; when it cannot find
//! something it says so (None) rather than guess.

pub struct SourceMap<'a> {
    lines: Vec<&'a str>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

/// The mapping key a line starts with, unquoted (`"1": x` -> `1`).
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start().trim_start_matches("- ");
    let (k, _) = t.split_once(':')?;
    let k = k.trim();
    Some(k.trim_matches(|c| c == '"' || c == '\''))
}

/// Whether `field:` appears in the line as a key (block or inline `{a: 1, field: 2}`).
fn has_field(line: &str, field: &str) -> bool {
    // An empty name (a YAML key like `"": x`) cannot be located, and searching for it
    // would match everywhere without advancing.
    if field.is_empty() {
        return false;
    }
    if key_of(line) == Some(field) {
        return true;
    }
    let mut rest = line;
    while let Some(pos) = rest.find(field) {
        let before = rest[..pos].chars().last();
        let after = rest[pos + field.len()..].trim_start().chars().next();
        if matches!(before, Some('{') | Some(',') | Some(' ')) && after == Some(':') {
            return true;
        }
        rest = &rest[pos + field.len()..];
    }
    false
}

impl<'a> SourceMap<'a> {
    pub fn new(text: &'a str) -> Self {
        SourceMap {
            lines: text.lines().collect(),
        }
    }

    /// 1-based line of a top-level key.
    pub fn top(&self, key: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| indent(l) == 0 && is_content(l) && key_of(l) == Some(key))
            .map(|i| i + 1)
    }

    /// Line range (0-based, end exclusive) of the block under a line, by indentation.
    fn block(&self, start: usize) -> (usize, usize) {
        let base = indent(self.lines[start]);
        let mut end = start + 1;
        while end < self.lines.len() {
            let l = self.lines[end];
            if is_content(l) && indent(l) <= base {
                break;
            }
            end += 1;
        }
        (start, end)
    }

    /// 1-based line of a node's name under `nodes:`.
    pub fn node(&self, name: &str) -> Option<usize> {
        let nodes = self.top("nodes")? - 1;
        let (s, e) = self.block(nodes);
        let child = (s + 1..e)
            .map(|i| self.lines[i])
            .find(|l| is_content(l))
            .map(indent)?;
        (s + 1..e)
            .find(|&i| {
                let l = self.lines[i];
                is_content(l) && indent(l) == child && key_of(l) == Some(name)
            })
            .map(|i| i + 1)
    }

    /// 1-based line of `field` inside a node (the node's own line for inline nodes).
    pub fn node_field(&self, node: &str, field: &str) -> Option<usize> {
        let line = self.node(node)? - 1;
        self.field_in_block(line, field)
    }

    /// 1-based line of `field` inside a top-level block such as `escalation`.
    pub fn top_field(&self, top: &str, field: &str) -> Option<usize> {
        let line = self.top(top)? - 1;
        self.field_in_block(line, field)
    }

    /// 1-based line of a setting by its dotted path: `answer.min_ring_ms` is `min_ring_ms`
    /// inside the top-level `answer` block, never a key of the same name elsewhere.
    pub fn setting(&self, path: &str) -> Option<usize> {
        match path.split_once('.') {
            Some((top, field)) => self.top_field(top, field.rsplit('.').next().unwrap_or(field)),
            None => self.top(path),
        }
    }

    /// The top-level blocks in order: each key, its first line (1-based) and its text.
    /// `None` when the text is not all block-style top-level keys (then it cannot be split).
    pub fn top_blocks(&self) -> Option<Vec<(&'a str, usize, String)>> {
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < self.lines.len() {
            let l = self.lines[i];
            if !is_content(l) || l.trim_start().starts_with("---") {
                i += 1;
                continue;
            }
            if indent(l) != 0 || l.starts_with('-') || l.starts_with('{') {
                return None;
            }
            let key = key_of(l)?;
            let (s, e) = self.block(i);
            blocks.push((key, s + 1, self.lines[s..e].join("\n")));
            i = e;
        }
        Some(blocks)
    }

    fn field_in_block(&self, line: usize, field: &str) -> Option<usize> {
        let (s, e) = self.block(line);
        let own = self.lines[s];
        let inline_rest = own.split_once(':').map(|(_, r)| r).unwrap_or("");
        if has_field(inline_rest, field) {
            return Some(s + 1);
        }
        (s + 1..e)
            .find(|&i| is_content(self.lines[i]) && has_field(self.lines[i], field))
            .map(|i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
version: 1
flow: t
start: a
escalation:
  target: sip:x@y
nodes:
  a: {play: p, next: b}
  # comment
  b:
    menu: q
    intents:
      one: {dtmf: \"1\", goto: a}
  \"c\":
    goto: a
";

    #[test]
    fn finds_nodes_and_fields() {
        let m = SourceMap::new(TEXT);
        assert_eq!(m.top("start"), Some(3));
        assert_eq!(m.node("a"), Some(7));
        assert_eq!(m.node("b"), Some(9));
        assert_eq!(m.node("c"), Some(13));
        assert_eq!(m.node("one"), None);
        assert_eq!(m.node_field("a", "next"), Some(7));
        assert_eq!(m.node_field("b", "intents"), Some(11));
        assert_eq!(m.node_field("b", "goto"), Some(12));
        assert_eq!(m.node_field("c", "goto"), Some(14));
        assert_eq!(m.top_field("escalation", "target"), Some(5));
        assert_eq!(m.node_field("a", "goto"), None);
    }

    #[test]
    fn an_empty_field_name_is_not_found() {
        // Found by fuzzing (flow_yaml): an intent named "" made has_field search for ""
        // forever (find("") matches at 0 and the loop never advanced).
        assert!(!has_field("one: {dtmf: \"1\", goto: a}", ""));
        let m = SourceMap::new(TEXT);
        assert_eq!(m.node_field("b", ""), None);
    }
}
