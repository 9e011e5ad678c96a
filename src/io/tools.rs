//! The offline tools over the same loading as the daemon: `ivrd test` (flow tests in
//! virtual time) and `ivrd graph` (a flow's picture).

use super::start::{load_embedder, load_flows};
use crate::asr::embed::TextEmbedder;
use crate::config::LoadedConfig;
use crate::flow::{graph, is_flow_test_file};
use crate::flowtest::{report, run_file, FileOutcome};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `ivrd test` prints, and whether everything passed.
pub struct TestRun {
    pub report: String,
    pub passed: bool,
    pub junit: String,
}

/// Runs the given test files, or every `*.test.yaml` of the flows directory.
pub fn flow_tests(cfg: &LoadedConfig, files: &[PathBuf]) -> Result<TestRun, String> {
    let embedder = load_embedder(cfg).map_err(|e| e.to_string())?;
    let embedder = embedder.map(|e| e as std::sync::Arc<dyn TextEmbedder>);
    let (flows, _) = load_flows(cfg, embedder.as_deref()).map_err(|e| e.to_string())?;
    let files: Vec<PathBuf> = if files.is_empty() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&cfg.flows_dir)
            .map_err(|e| format!("{}: {e}", cfg.flows_dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_flow_test_file(p))
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(format!(
                "no flow tests (*.test.yaml) in {}",
                cfg.flows_dir.display()
            ));
        }
        found
    } else {
        files.to_vec()
    };
    let started = Instant::now();
    let outcomes: Vec<FileOutcome> = files
        .iter()
        .map(|f| match std::fs::read_to_string(f) {
            Ok(text) => run_file(f, &text, &flows, embedder.as_deref(), &Instant::now),
            Err(e) => FileOutcome {
                file: f.clone(),
                flow: String::new(),
                error: Some(format!("{}: cannot read: {e}", f.display())),
                cases: Vec::new(),
            },
        })
        .collect();
    let elapsed = started.elapsed();
    let passed = outcomes.iter().all(|o| o.failed() == 0);
    Ok(TestRun {
        report: report::text(&outcomes, elapsed),
        junit: report::junit(&outcomes, elapsed),
        passed,
    })
}

/// A flow as DOT or SVG (`format`: dot or svg), by flow name or file.
pub fn flow_graph(cfg: &LoadedConfig, flow: &str, format: &str) -> Result<String, String> {
    let (flows, _) = load_flows(cfg, None).map_err(|e| e.to_string())?;
    let found = flows.flows.get(flow).cloned().or_else(|| {
        let p = Path::new(flow);
        flows
            .flows
            .values()
            .find(|f| f.file == p || f.file.file_name() == p.file_name() && p.extension().is_some())
            .cloned()
    });
    let Some(f) = found else {
        let names: Vec<&str> = flows.flows.keys().map(String::as_str).collect();
        return Err(format!(
            "no flow '{flow}' (the flows are {})",
            names.join(", ")
        ));
    };
    let dot = graph::dot(&f, None);
    match format {
        "dot" => Ok(dot),
        "svg" => graph::svg(&dot),
        other => Err(format!("--format {other}: use svg or dot")),
    }
}
