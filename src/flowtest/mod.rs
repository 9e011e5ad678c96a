//! `ivrd test`: scripted calls run offline, in virtual time, against the compiled flows.
//! Pure: the caller gives the test files' text, the compiled flows and (optionally) the
//! sentence-embedding model; results come back with each failure's case, step and line.
//! `spec` is the file format, `run` the simulated call, `report` the text and JUnit forms.

pub mod report;
pub mod run;
pub mod spec;

use crate::asr::embed::TextEmbedder;
use crate::diag::yaml_diagnostic;
use crate::flow::FlowSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One case's outcome, placed in its file.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    pub name: String,
    /// Line of the case in its file.
    pub line: Option<usize>,
    pub failures: Vec<Located>,
    /// How long the call lasted (virtual time).
    pub call_time: Duration,
    /// How long running it took (real time).
    pub elapsed: Duration,
}

/// A failure with the line it belongs to (the step's, or the expectation's).
#[derive(Debug, Clone)]
pub struct Located {
    pub step: Option<usize>,
    pub line: Option<usize>,
    pub what: String,
    pub message: String,
}

/// One file's outcome.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub file: PathBuf,
    pub flow: String,
    /// Why the file could not run at all (YAML errors, an unknown flow).
    pub error: Option<String>,
    pub cases: Vec<CaseOutcome>,
}

impl FileOutcome {
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.failures.is_empty()).count()
            + usize::from(self.error.is_some())
    }
}

/// Runs every case of one test file. `clock` reads the real time (how long each case
/// took); the calls themselves run in virtual time from it.
pub fn run_file(
    file: &Path,
    text: &str,
    flows: &FlowSet,
    embedder: Option<&dyn TextEmbedder>,
    clock: &dyn Fn() -> std::time::Instant,
) -> FileOutcome {
    let fail = |flow: String, error: String| FileOutcome {
        file: file.to_path_buf(),
        flow,
        error: Some(error),
        cases: Vec::new(),
    };
    let spec: spec::TestFile = match serde_yaml::from_str(text) {
        Ok(s) => s,
        Err(e) => return fail(String::new(), yaml_diagnostic(file, &e).to_string()),
    };
    let flow = match &spec.flow {
        Some(name) => match flows.flows.get(name) {
            Some(f) => f.clone(),
            None => {
                let known: Vec<&str> = flows.flows.keys().map(String::as_str).collect();
                return fail(
                    name.clone(),
                    format!(
                        "{}: flow: no flow named '{name}' (the flows are {})",
                        file.display(),
                        known.join(", ")
                    ),
                );
            }
        },
        None => flows.default.clone(),
    };
    let lines = lines::CaseLines::scan(text);
    let cases = spec
        .cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let started = clock();
            let result = run::run_case(&flow, &spec.given, case, embedder, started);
            let elapsed = clock().saturating_duration_since(started);
            let at = lines.cases.get(i);
            CaseOutcome {
                name: case.name.clone(),
                line: at.map(|c| c.line),
                failures: result
                    .failures
                    .into_iter()
                    .map(|f| Located {
                        line: at.and_then(|c| match f.step {
                            Some(s) => c.steps.get(s).copied().or(Some(c.line)),
                            None => c.expect_field(&f.what).or(Some(c.line)),
                        }),
                        step: f.step,
                        what: f.what,
                        message: f.message,
                    })
                    .collect(),
                call_time: result.call_time,
                elapsed,
            }
        })
        .collect();
    FileOutcome {
        file: file.to_path_buf(),
        flow: flow.name.clone(),
        error: None,
        cases,
    }
}

/// Finding the lines of cases, steps and expectations in a test file (serde keeps none).
mod lines {
    pub struct CaseAt {
        pub line: usize,
        pub steps: Vec<usize>,
        /// `expect:` and the lines of its fields.
        pub expect: Option<usize>,
        pub fields: Vec<(String, usize)>,
    }

    impl CaseAt {
        pub fn expect_field(&self, what: &str) -> Option<usize> {
            self.fields
                .iter()
                .find(|(f, _)| f == what)
                .map(|(_, l)| *l)
                .or(self.expect)
        }
    }

    pub struct CaseLines {
        pub cases: Vec<CaseAt>,
    }

    fn indent(l: &str) -> usize {
        l.len() - l.trim_start().len()
    }

    fn is_content(l: &str) -> bool {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    }

    /// Line numbers (1-based) of the items of the block sequence whose key is on line
    /// `key` (0-based), within `end`.
    fn items(lines: &[&str], key: usize, end: usize) -> Vec<usize> {
        let base = indent(lines[key]);
        let mut out = Vec::new();
        let mut item_indent = None;
        for (i, l) in lines.iter().enumerate().take(end).skip(key + 1) {
            if !is_content(l) {
                continue;
            }
            let ind = indent(l);
            if ind < base || (ind == base && !l.trim_start().starts_with("- ")) {
                break;
            }
            if l.trim_start().starts_with("- ") || l.trim() == "-" {
                let want = *item_indent.get_or_insert(ind);
                if ind == want {
                    out.push(i + 1);
                }
            }
        }
        out
    }

    /// The line (0-based) of `key:` inside lines `from..end` at the least indentation.
    fn key_line(lines: &[&str], from: usize, end: usize, key: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, l) in lines.iter().enumerate().take(end).skip(from) {
            let t = l.trim_start().trim_start_matches("- ");
            if t.starts_with(&format!("{key}:")) {
                let ind = indent(l);
                if best.is_none_or(|(_, b)| ind < b) {
                    best = Some((i, ind));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    impl CaseLines {
        pub fn scan(text: &str) -> CaseLines {
            let lines: Vec<&str> = text.lines().collect();
            let Some(cases_key) = lines.iter().position(|l| l.starts_with("cases:")) else {
                return CaseLines { cases: Vec::new() };
            };
            let starts = items(&lines, cases_key, lines.len());
            let mut cases = Vec::new();
            for (n, &start) in starts.iter().enumerate() {
                let from = start - 1;
                let end = starts.get(n + 1).map(|s| s - 1).unwrap_or(lines.len());
                let steps = key_line(&lines, from, end, "steps")
                    .map(|k| items(&lines, k, end))
                    .unwrap_or_default();
                // The case's own expect, not a step's: at the case's own indentation.
                let own = indent(lines[from]) + 2;
                let expect = (from..end).find(|&i| {
                    indent(lines[i]) == own && lines[i].trim_start().starts_with("expect:")
                });
                let mut fields = Vec::new();
                if let Some(k) = expect {
                    let base = indent(lines[k]);
                    for (i, l) in lines.iter().enumerate().take(end).skip(k + 1) {
                        if !is_content(l) {
                            continue;
                        }
                        if indent(l) <= base {
                            break;
                        }
                        if let Some((name, _)) = l.trim().split_once(':') {
                            fields.push((name.trim().to_string(), i + 1));
                        }
                    }
                }
                cases.push(CaseAt {
                    line: start,
                    steps,
                    expect: expect.map(|k| k + 1),
                    fields,
                });
            }
            CaseLines { cases }
        }
    }
}

#[cfg(test)]
mod tests;
