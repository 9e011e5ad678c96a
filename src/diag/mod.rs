//! Diagnostics for admin-written files (config, flows): each names the file, the line where
//! it can be found, and the flow node it concerns, so `ivrd check` output can be acted on.
//! `source_map` finds those lines in the YAML text after serde has thrown positions away.

pub mod source_map;

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub node: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: None,
            node: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    pub fn in_node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(node) = &self.node {
            write!(f, "node '{node}': ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A list of diagnostics, displayed one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A serde_yaml error as a diagnostic: the line moves into the location, so the message
/// does not repeat it.
pub fn yaml_diagnostic(file: &Path, err: &serde_yaml::Error) -> Diagnostic {
    let text = err.to_string();
    let message = match text.rfind(" at line ") {
        Some(i) if text[i..].contains(" column ") => text[..i].to_string(),
        _ => text,
    };
    Diagnostic::new(file, message).at(err.location().map(|l| l.line()))
}

/// A serde_yaml error from a part of a file that starts at line `first_line` (1-based).
pub fn yaml_diagnostic_from(file: &Path, err: &serde_yaml::Error, first_line: usize) -> Diagnostic {
    let mut d = yaml_diagnostic(file, err);
    d.line = d.line.map(|l| l + first_line - 1);
    d
}
