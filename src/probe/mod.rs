//! Mystery-shopper calls (`ivrd probe`): what a probe file asks for, and the verdict on
//! what a call showed. Pure: the io side (`io::probe`) places the calls, plays keys and
//! speech, and measures; here the measurements are judged, reported and turned into
//! Prometheus metrics.
//!
//! ```yaml
//! target: sip:100@127.0.0.1:5060     # any SIP URI (ivrd or another IVR)
//! probes:
//!   - name: billing by key
//!     steps: [{key: "1"}]             # after the greeting and menu have been said
//!     expect: {transfer: sip:billing@pbx.example.com, headers: {X-IVR-Intent: billing}}
//!   - name: support in words
//!     steps: [{say: "my internet is not working"}]
//!     expect: {transfer: sip:support@pbx.example.com}
//!   - name: a person
//!     steps: [{key: "0", at_ms: 1000}]
//!     expect: {transfer: sip:supervisor@pbx.example.com, human: true, human_within_ms: 8000}
//! ```

use indexmap::IndexMap;
use serde::Deserialize;
use std::fmt::Write;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeFile {
    /// Where the probe calls go.
    pub target: String,
    /// Our From user (default `probe`); a number lets the callee see a caller ID.
    #[serde(default)]
    pub from_user: Option<String>,
    /// The address our SIP and RTP sockets use (default 127.0.0.1).
    #[serde(default)]
    pub local_ip: Option<std::net::IpAddr>,
    /// The longest a probe call may last (default 60 s).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    pub probes: Vec<ProbeDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeDef {
    pub name: String,
    /// Another target for this probe (a dialled number of its own).
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub steps: Vec<ProbeStep>,
    #[serde(default)]
    pub expect: ProbeExpect,
    /// How long to keep listening after the last step (default 3 s; 20 s when a transfer
    /// is expected; the outage notice's bound and 2 s when one is expected).
    #[serde(default)]
    pub listen_ms: Option<u64>,
}

/// A key press or words said. Without `at_ms`/`after_ms` it happens once the far end has
/// gone quiet (its prompt said).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeStep {
    pub key: Option<String>,
    pub say: Option<String>,
    /// From the answer.
    pub at_ms: Option<u64>,
    /// After the previous step.
    pub after_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeExpect {
    /// The call is transferred (REFER) to this target.
    pub transfer: Option<String>,
    /// Headers the REFER must carry.
    pub headers: Option<IndexMap<String, String>>,
    /// No transfer at all.
    pub no_transfer: Option<bool>,
    /// The transfer reaches a person (its time is `ivrd_probe_time_to_human_seconds`).
    pub human: Option<bool>,
    pub human_within_ms: Option<u64>,
    /// Text of an outage notice that must be heard (rendered the same way and found in
    /// the call's audio).
    pub outage: Option<String>,
    pub outage_within_ms: Option<u64>,
    /// INVITE -> 200 OK (default 4000, the default ring budget).
    pub answer_within_ms: Option<u64>,
    /// INVITE -> the first audible audio.
    pub first_audio_within_ms: Option<u64>,
}

/// What a probe call showed. Times are from the INVITE, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The final response to the INVITE.
    pub status: Option<u16>,
    pub answer_ms: Option<f64>,
    pub first_audio_ms: Option<f64>,
    /// The REFER: when, to where, with which headers.
    pub transfer_ms: Option<f64>,
    pub transfer: Option<String>,
    pub headers: Vec<(String, String)>,
    pub outage_ms: Option<f64>,
    /// Audio received, seconds.
    pub heard_s: f64,
    /// The call could not be placed or broke (no answer, no SDP, ...).
    pub error: Option<String>,
}

/// One probe's verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub name: String,
    pub observed: Observed,
    /// Why it failed (empty: passed).
    pub failures: Vec<String>,
    pub human: bool,
}

/// Every way the call did not meet `e`.
pub fn judge(e: &ProbeExpect, o: &Observed) -> Vec<String> {
    let mut bad = Vec::new();
    if let Some(err) = &o.error {
        bad.push(err.clone());
    }
    if o.status != Some(200) {
        bad.push(format!("not answered (final response {:?})", o.status));
        return bad;
    }
    let within = |what: &str, got: Option<f64>, max: Option<u64>, bad: &mut Vec<String>| {
        if let Some(max) = max {
            match got {
                Some(ms) if ms <= max as f64 => {}
                Some(ms) => bad.push(format!("{what} after {ms:.0} ms (at most {max} ms)")),
                None => bad.push(format!("no {what}")),
            }
        }
    };
    within(
        "answer",
        o.answer_ms,
        Some(e.answer_within_ms.unwrap_or(4000)),
        &mut bad,
    );
    within(
        "first audio",
        o.first_audio_ms,
        e.first_audio_within_ms,
        &mut bad,
    );
    if o.first_audio_ms.is_none() {
        bad.push("nothing audible was heard".into());
    }
    if let Some(want) = &e.transfer {
        match &o.transfer {
            Some(got) if got.starts_with(want.as_str()) => {}
            Some(got) => bad.push(format!("transferred to {got}, expected {want}")),
            None => bad.push(format!("not transferred (expected {want})")),
        }
    }
    if e.no_transfer == Some(true) {
        if let Some(got) = &o.transfer {
            bad.push(format!("transferred to {got}, expected no transfer"));
        }
    }
    for (k, v) in e.headers.iter().flatten() {
        let got = o
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str());
        if got != Some(v.as_str()) {
            bad.push(format!("{k}: expected {v:?}, got {got:?}"));
        }
    }
    if e.human == Some(true) {
        within("person", o.transfer_ms, e.human_within_ms, &mut bad);
    }
    if e.outage.is_some() {
        within("outage notice", o.outage_ms, e.outage_within_ms, &mut bad);
        if o.outage_ms.is_none() && e.outage_within_ms.is_none() {
            bad.push("the outage notice was not heard".into());
        }
    }
    bad
}

/// One line per probe, then the verdict.
pub fn report(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    let ms = |v: Option<f64>| {
        v.map(|v| format!("{v:.0} ms"))
            .unwrap_or_else(|| "-".into())
    };
    for v in verdicts {
        let o = &v.observed;
        let _ = writeln!(
            out,
            "{} {}: answer {}, first audio {}, transfer {}{}{}",
            if v.failures.is_empty() {
                "ok  "
            } else {
                "FAIL"
            },
            v.name,
            ms(o.answer_ms),
            ms(o.first_audio_ms),
            o.transfer
                .as_ref()
                .map(|t| format!("{t} after {}", ms(o.transfer_ms)))
                .unwrap_or_else(|| "none".into()),
            o.outage_ms
                .map(|t| format!(", outage notice after {t:.0} ms"))
                .unwrap_or_default(),
            if v.failures.is_empty() {
                String::new()
            } else {
                format!("\n     {}", v.failures.join("\n     "))
            }
        );
    }
    let failed = verdicts.iter().filter(|v| !v.failures.is_empty()).count();
    let _ = writeln!(
        out,
        "{} probe{}: {} passed, {failed} failed",
        verdicts.len(),
        if verdicts.len() == 1 { "" } else { "s" },
        verdicts.len() - failed
    );
    out
}

/// The verdicts as Prometheus text (a node exporter textfile, or the probe's endpoint).
/// One label, the probe's name (the admin's own, few).
pub fn metrics(verdicts: &[Verdict], unix: u64) -> String {
    let mut out = String::new();
    let metric = |out: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let label = |n: &str| {
        n.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', " ")
    };
    metric(
        &mut out,
        "ivrd_probe_success",
        "1 when the probe call did what it should",
        "gauge",
    );
    for v in verdicts {
        let _ = writeln!(
            out,
            "ivrd_probe_success{{probe=\"{}\"}} {}",
            label(&v.name),
            u8::from(v.failures.is_empty())
        );
    }
    type Get = fn(&Verdict) -> Option<f64>;
    let series: [(&str, &str, Get); 4] = [
        ("ivrd_probe_answer_seconds", "INVITE to 200 OK", |v| {
            v.observed.answer_ms
        }),
        (
            "ivrd_probe_first_audio_seconds",
            "INVITE to the first audible audio",
            |v| v.observed.first_audio_ms,
        ),
        (
            "ivrd_probe_outage_notice_seconds",
            "INVITE to the outage notice",
            |v| v.observed.outage_ms,
        ),
        (
            "ivrd_probe_time_to_human_seconds",
            "INVITE to the transfer to a person",
            |v| v.observed.transfer_ms.filter(|_| v.human),
        ),
    ];
    for (name, help, get) in series {
        metric(&mut out, name, help, "gauge");
        for v in verdicts {
            if let Some(ms) = get(v) {
                let _ = writeln!(
                    out,
                    "{name}{{probe=\"{}\"}} {:.4}",
                    label(&v.name),
                    ms / 1000.0
                );
            }
        }
    }
    metric(
        &mut out,
        "ivrd_probe_last_run_timestamp_seconds",
        "When the probes last ran",
        "gauge",
    );
    let _ = writeln!(out, "ivrd_probe_last_run_timestamp_seconds {unix}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Observed {
        Observed {
            status: Some(200),
            answer_ms: Some(3.0),
            first_audio_ms: Some(25.0),
            transfer_ms: Some(4200.0),
            transfer: Some("sip:billing@pbx.example.com".into()),
            headers: vec![("X-IVR-Intent".into(), "billing".into())],
            outage_ms: None,
            heard_s: 4.0,
            error: None,
        }
    }

    #[test]
    fn a_call_that_routes_right_passes_and_one_that_does_not_fails() {
        let mut e = ProbeExpect {
            transfer: Some("sip:billing@pbx.example.com".into()),
            ..Default::default()
        };
        e.headers = Some(
            [("x-ivr-intent".to_string(), "billing".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(judge(&e, &seen()).is_empty(), "{:?}", judge(&e, &seen()));
        e.transfer = Some("sip:support@pbx.example.com".into());
        let bad = judge(&e, &seen());
        assert_eq!(
            bad,
            ["transferred to sip:billing@pbx.example.com, expected sip:support@pbx.example.com"]
        );
        let mut slow = seen();
        slow.answer_ms = Some(5000.0);
        assert!(judge(&ProbeExpect::default(), &slow)[0].contains("answer after 5000 ms"));
        let unanswered = Observed {
            status: Some(503),
            ..Observed::default()
        };
        assert!(judge(&ProbeExpect::default(), &unanswered)[0].contains("not answered"));
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let v = vec![
            Verdict {
                name: "billing \"key\"".into(),
                observed: seen(),
                failures: vec![],
                human: false,
            },
            Verdict {
                name: "person".into(),
                observed: seen(),
                failures: vec!["x".into()],
                human: true,
            },
        ];
        let m = metrics(&v, 1700000000);
        assert!(
            m.contains("ivrd_probe_success{probe=\"billing \\\"key\\\"\"} 1"),
            "{m}"
        );
        assert!(m.contains("ivrd_probe_success{probe=\"person\"} 0"), "{m}");
        assert!(
            m.contains("ivrd_probe_time_to_human_seconds{probe=\"person\"} 4.2000"),
            "{m}"
        );
        assert!(
            !m.contains("ivrd_probe_time_to_human_seconds{probe=\"billing"),
            "{m}"
        );
        assert!(m.contains("ivrd_probe_answer_seconds{probe=\"person\"} 0.0030"));
        let r = report(&v);
        assert!(r.contains("1 passed, 1 failed"), "{r}");
    }
}
