//! What `ivrd test` prints, and the JUnit XML that CI systems read.

use super::FileOutcome;
use std::fmt::Write;
use std::time::Duration;

/// One line per failure (`FILE:LINE: case "NAME", step N: field: message`), then a summary.
pub fn text(files: &[FileOutcome], elapsed: Duration) -> String {
    let mut out = String::new();
    let (mut cases, mut failed) = (0usize, 0usize);
    for f in files {
        if let Some(e) = &f.error {
            let _ = writeln!(out, "{e}");
            failed += 1;
            continue;
        }
        for c in &f.cases {
            cases += 1;
            if c.failures.is_empty() {
                continue;
            }
            failed += 1;
            for x in &c.failures {
                let line = x
                    .line
                    .or(c.line)
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default();
                let step = x
                    .step
                    .map(|s| format!(", step {}", s + 1))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "FAIL {}{line}: case \"{}\"{step}: {}: {}",
                    f.file.display(),
                    c.name,
                    x.what,
                    x.message
                );
            }
        }
    }
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { cases as f64 / secs } else { 0.0 };
    let calls: f64 = files
        .iter()
        .flat_map(|f| &f.cases)
        .map(|c| c.call_time.as_secs_f64())
        .sum();
    let _ = writeln!(
        out,
        "{} file{}, {cases} case{}: {} passed, {failed} failed ({secs:.2} s, {rate:.0} cases/s, {calls:.0} s of calls in virtual time)",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        if cases == 1 { "" } else { "s" },
        cases.saturating_sub(failed.min(cases)),
    );
    out
}

/// JUnit XML: a test suite per file, a test case per case, a failure per failed case.
pub fn junit(files: &[FileOutcome], elapsed: Duration) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total: usize = files.iter().map(|f| f.cases.len().max(1)).sum();
    let failed: usize = files.iter().map(FileOutcome::failed).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"ivrd flow tests\" tests=\"{total}\" failures=\"{failed}\" time=\"{:.3}\">",
        elapsed.as_secs_f64()
    );
    for f in files {
        let file = f.file.display().to_string();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\">",
            esc(&file),
            f.cases.len().max(1),
            f.failed()
        );
        if let Some(e) = &f.error {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"(file)\" file=\"{}\">\n      <failure message=\"{}\"/>\n    </testcase>",
                esc(&f.flow),
                esc(&file),
                esc(e)
            );
        }
        for c in &f.cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\"{} time=\"{:.3}\"",
                esc(&f.flow),
                esc(&c.name),
                esc(&file),
                c.line.map(|l| format!(" line=\"{l}\"")).unwrap_or_default(),
                c.elapsed.as_secs_f64()
            );
            if c.failures.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            let body: Vec<String> = c
                .failures
                .iter()
                .map(|x| {
                    let line = x.line.map(|l| format!("{file}:{l}: ")).unwrap_or_default();
                    let step = x
                        .step
                        .map(|s| format!("step {}: ", s + 1))
                        .unwrap_or_default();
                    format!("{line}{step}{}: {}", x.what, x.message)
                })
                .collect();
            let _ = writeln!(
                out,
                "      <failure message=\"{}\">{}</failure>\n    </testcase>",
                esc(&body[0]),
                esc(&body.join("\n"))
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}
