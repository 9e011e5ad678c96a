//! Text with placeholders, for prompts spoken per call: `Welcome back, {caller.name}.`
//! A placeholder may give a fallback after `|` (`{caller.name|friend}`) for when the value
//! is unknown; without one an unknown value is left out. `{{` and `}}` are literal braces.
//! Pure: parsing checks the names against what the flow can know, filling takes a lookup.

use std::fmt;

/// A parsed template.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    /// The text as written (what logs and `ivrd test` show).
    pub source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value { name: String, fallback: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("'{{' without a closing '}}' in \"{0}\"")]
    Unclosed(String),
    #[error("'}}' without an opening '{{' in \"{0}\" (write '}}}}' for a brace)")]
    Stray(String),
    #[error("empty placeholder '{{}}' in \"{0}\"")]
    Empty(String),
    #[error("unknown placeholder '{{{name}}}': {why}")]
    Unknown { name: String, why: String },
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl Template {
    /// Parses `text`; `check` says whether a placeholder name can be known (Err: why not).
    pub fn parse(
        text: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(TemplateError::Stray(text.to_string())),
                '{' => {
                    let mut inner = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        inner.push(c);
                    }
                    if !closed {
                        return Err(TemplateError::Unclosed(text.to_string()));
                    }
                    let (name, fallback) = match inner.split_once('|') {
                        Some((n, f)) => (n.trim(), f.trim()),
                        None => (inner.trim(), ""),
                    };
                    if name.is_empty() {
                        return Err(TemplateError::Empty(text.to_string()));
                    }
                    check(name).map_err(|why| TemplateError::Unknown {
                        name: name.to_string(),
                        why,
                    })?;
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Value {
                        name: name.to_string(),
                        fallback: fallback.to_string(),
                    });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// Text without placeholders (already filled in).
    pub fn literal(text: &str) -> Template {
        Template {
            source: text.to_string(),
            parts: vec![Part::Text(text.to_string())],
        }
    }

    /// Whether the text has any placeholder (else it can be rendered once, at load).
    pub fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Value { .. }))
    }

    /// The names it uses.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value { name, .. } => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text with each placeholder's value (or its fallback). Spaces left doubled by an
    /// empty value, and a space before punctuation, are tidied ("Welcome back ." -> "Welcome back.").
    pub fn fill<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Value { name, fallback } => {
                    let v = value(name).filter(|v| !v.trim().is_empty());
                    out.push_str(v.unwrap_or(fallback));
                }
            }
        }
        tidy(&out)
    }
}

fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        let glued = word.starts_with([',', '.', '!', '?', ';', ':']);
        if !out.is_empty() && !glued {
            out.push(' ');
        }
        out.push_str(word);
    }
    // "Welcome back, ." -> "Welcome back."
    out.replace(",.", ".").replace(",!", "!").replace(",?", "?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> Result<(), String> {
        match name {
            "caller.name" | "vars.account" => Ok(()),
            _ => Err("not a caller or call value".into()),
        }
    }

    #[test]
    fn fills_values_and_fallbacks() {
        let t = Template::parse("Welcome back, {caller.name}.", known).unwrap();
        assert!(t.has_placeholders());
        assert_eq!(t.fill(|_| Some("Ann")), "Welcome back, Ann.");
        assert_eq!(t.fill(|_| None), "Welcome back.");
        let t = Template::parse("Hello {caller.name|there}!", known).unwrap();
        assert_eq!(t.fill(|_| None), "Hello there!");
        assert_eq!(t.fill(|_| Some("  ")), "Hello there!");
        let t = Template::parse("Account {vars.account}, {{ok}}", known).unwrap();
        assert_eq!(
            t.fill(|n| (n == "vars.account").then_some("42")),
            "Account 42, {ok}"
        );
        assert_eq!(t.names().collect::<Vec<_>>(), ["vars.account"]);
        assert!(!Template::parse("plain", known).unwrap().has_placeholders());
    }

    #[test]
    fn mistakes_are_named() {
        let e = |t: &str| Template::parse(t, known).unwrap_err().to_string();
        assert!(
            e("Hi {caller.nam}").contains("'{caller.nam}'"),
            "{}",
            e("Hi {caller.nam}")
        );
        assert!(e("Hi {caller.name").contains("without a closing"));
        assert!(e("Hi }").contains("without an opening"));
        assert!(e("Hi {}").contains("empty placeholder"));
    }
}
