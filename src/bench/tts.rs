//! `ivrd bench tts`: what a text spoken per call costs (`say: "Welcome back, {caller.name}."`).
//! Each text is rendered the three ways a call meets it: the first time (the engine, then
//! written to the disk cache), again in the same process (memory), and after a restart
//! (disk); next to the engine alone on the same text, run the same way, as the reference.

use crate::config::TtsConfig;
use crate::io::tts::{Source, Tts};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SYLLABLES: [&str; 12] = [
    "an", "bel", "cor", "da", "el", "fi", "ga", "hen", "is", "jo", "ka", "lu",
];

/// `ivrd bench tts [--texts N]`: a report.
pub fn cli(args: &[String]) -> Result<String, String> {
    let mut texts = 60usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--texts" => {
                texts = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n: &usize| *n > 0)
                    .ok_or("--texts N")?
            }
            other => return Err(format!("unknown argument '{other}' (--texts N)")),
        }
    }
    let dir = std::env::temp_dir().join(format!("ivrd-bench-tts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = TtsConfig::default();
    let names: Vec<String> = (0..texts)
        .map(|i| {
            let a = SYLLABLES[i % 12];
            let b = SYLLABLES[(i / 12) % 12];
            let c = SYLLABLES[(i / 144) % 12];
            let mut n = format!("{a}{b}{c}");
            n[..1].make_ascii_uppercase();
            format!("Welcome back, {n}.")
        })
        .collect();
    let (mut engine_raw, mut first, mut memory, mut disk) = (vec![], vec![], vec![], vec![]);
    let tts = Tts::open(&cfg, Some(&dir)).map_err(|e| e.to_string())?;
    for text in &names {
        // The reference: the engine alone, as a program, on the same text.
        let t = Instant::now();
        let out = Command::new(&cfg.program)
            .args([
                "-v",
                &cfg.voice,
                "-s",
                &cfg.speed.to_string(),
                "--stdout",
                "--",
                text,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        engine_raw.push(t.elapsed());
        if !out.status.success() {
            return Err("espeak-ng failed".into());
        }
        let t = Instant::now();
        let (_, source) = tts.render_blocking(text).map_err(|e| e.to_string())?;
        first.push(t.elapsed());
        if source != Source::Engine {
            return Err(format!("first render came from {}", source.as_str()));
        }
        let t = Instant::now();
        tts.render_blocking(text).map_err(|e| e.to_string())?;
        memory.push(t.elapsed());
    }
    let restarted = Tts::open(&cfg, Some(&dir)).map_err(|e| e.to_string())?;
    for text in &names {
        let t = Instant::now();
        let (_, source) = restarted.render_blocking(text).map_err(|e| e.to_string())?;
        disk.push(t.elapsed());
        if source != Source::Disk {
            return Err(format!(
                "after a restart the render came from {}",
                source.as_str()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let q = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1000.0
    };
    let mut out = format!(
        "{texts} texts (\"Welcome back, NAME.\"), espeak-ng {} at {} wpm\n\n| render | p50 ms | p99 ms |\n|---|---|---|\n",
        cfg.voice, cfg.speed
    );
    for (name, v) in [
        ("first (engine + decode + disk write)", &mut first),
        ("after a restart (disk)", &mut disk),
        ("cached (memory)", &mut memory),
        ("reference: espeak-ng alone", &mut engine_raw),
    ] {
        out.push_str(&format!(
            "| {name} | {:.3} | {:.3} |\n",
            q(v, 0.5),
            q(v, 0.99)
        ));
    }
    out.push_str(&format!(
        "\nfirst render / espeak-ng alone (p50): {:.2}\n",
        q(&mut first, 0.5) / q(&mut engine_raw, 0.5)
    ));
    Ok(out)
}
