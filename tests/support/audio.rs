//! Audio checks that do not share code with the daemon: our own G.711 codec, reference
//! audio resampled by sox, correlation search, and RTP timing statistics.

use super::{run_bounded, TempDir};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// G.711 (ITU-T G.711), written from the standard's segment tables.
// ---------------------------------------------------------------------------------------

/// µ-law byte -> linear sample (range ±32124).
pub fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    // Each segment doubles the step; 0x84 (132) is the bias added at encoding.
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Linear sample -> µ-law byte.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let s = i32::from(sample);
    let sign: u8 = if s < 0 { 0x80 } else { 0 };
    let magnitude = s.abs().min(CLIP) + BIAS;
    // Segment = position of the highest set bit above bit 7 (values 0x84..0x7FFF+BIAS).
    let mut exponent = 7u8;
    while exponent > 0 && magnitude & (0x80 << exponent) == 0 {
        exponent -= 1;
    }
    let mantissa = ((magnitude >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// A-law byte -> linear sample (range ±32256).
pub fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    // In A-law the sign bit set means positive.
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Linear sample -> A-law byte.
pub fn alaw_encode(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (sign, magnitude) = if s >= 0 { (0x80u8, s) } else { (0u8, -s - 1) };
    // Work on the 12 most significant magnitude bits (13-bit A-law input range).
    let m = (magnitude >> 3).min(0x0FFF);
    let code = if m < 0x20 {
        (m >> 1) as u8
    } else {
        // Segment 1..7: highest set bit of m is bit 4+segment.
        let mut seg = 7u8;
        while m & (0x10 << seg) == 0 {
            seg -= 1;
        }
        (seg << 4) | ((m >> seg) & 0x0F) as u8
    };
    (sign | code) ^ 0x55
}

/// Decodes a G.711 payload by RTP payload type (0 = PCMU, 8 = PCMA).
pub fn g711_decode(pt: u8, payload: &[u8]) -> Vec<i16> {
    match pt {
        0 => payload.iter().map(|b| ulaw_decode(*b)).collect(),
        8 => payload.iter().map(|b| alaw_decode(*b)).collect(),
        _ => panic!("not a G.711 payload type: {pt}"),
    }
}

/// Encodes linear samples as G.711 by RTP payload type.
pub fn g711_encode(pt: u8, samples: &[i16]) -> Vec<u8> {
    match pt {
        0 => samples.iter().map(|s| ulaw_encode(*s)).collect(),
        8 => samples.iter().map(|s| alaw_encode(*s)).collect(),
        _ => panic!("not a G.711 payload type: {pt}"),
    }
}

/// The G.711 code for silence in each law.
pub fn g711_silence(pt: u8) -> u8 {
    match pt {
        0 => 0xFF,
        8 => 0xD5,
        _ => panic!("not a G.711 payload type: {pt}"),
    }
}

// ---------------------------------------------------------------------------------------
// Reference audio through external tools
// ---------------------------------------------------------------------------------------

/// Synthesises `text` into a WAV with espeak-ng (22050 Hz mono, 16 bit).
pub fn espeak_wav(text: &str, out: &Path) {
    let mut cmd = Command::new("espeak-ng");
    cmd.arg("-w").arg(out).arg(text);
    let r = run_bounded(cmd, "espeak-ng", Duration::from_secs(30));
    assert!(
        r.code == Some(0) && out.is_file(),
        "espeak-ng failed ({:?}): {}",
        r.code,
        r.stderr
    );
}

/// What the daemon's text to speech says for `text` (espeak-ng with the daemon's default
/// voice and speed: `-v en-us -s 150`), as 8 kHz samples resampled by sox.
pub fn tts_reference(text: &str) -> Vec<i16> {
    let dir = TempDir::new("tts");
    let wav = dir.join("tts.wav");
    let mut cmd = Command::new("espeak-ng");
    cmd.args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg("--")
        .arg(text);
    let r = run_bounded(cmd, "espeak-ng", Duration::from_secs(30));
    assert!(
        r.code == Some(0) && wav.is_file(),
        "espeak-ng failed ({:?}): {}",
        r.code,
        r.stderr
    );
    load_8k(&wav)
}

/// Loads any audio file sox can read as 8 kHz mono samples, resampled by sox (so the
/// reference does not depend on the daemon's resampler). No dither, for repeatability.
pub fn load_8k(path: &Path) -> Vec<i16> {
    assert!(path.is_file(), "missing audio file {}", path.display());
    let dir = TempDir::new("sox");
    let raw = dir.join("out.raw");
    let mut cmd = Command::new("sox");
    cmd.arg("-D")
        .arg(path)
        .args([
            "-t",
            "raw",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "-L",
            "-c",
            "1",
        ])
        .arg(&raw)
        .args(["rate", "-v", "8000"]);
    let r = run_bounded(cmd, "sox", Duration::from_secs(30));
    assert_eq!(
        r.code,
        Some(0),
        "sox failed on {}: {}",
        path.display(),
        r.stderr
    );
    let bytes = std::fs::read(&raw).expect("read sox output");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Sample rate of a WAV file (from its `fmt ` chunk).
pub fn wav_rate(path: &Path) -> u32 {
    let data = std::fs::read(path).expect("read wav");
    assert!(
        data.len() > 44 && &data[0..4] == b"RIFF" && &data[8..12] == b"WAVE",
        "not a WAV file: {}",
        path.display()
    );
    let mut i = 12;
    while i + 8 <= data.len() {
        let id = &data[i..i + 4];
        let len = u32::from_le_bytes([data[i + 4], data[i + 5], data[i + 6], data[i + 7]]) as usize;
        if id == b"fmt " && i + 16 <= data.len() {
            return u32::from_le_bytes([data[i + 12], data[i + 13], data[i + 14], data[i + 15]]);
        }
        i += 8 + len + (len & 1);
    }
    panic!("no fmt chunk in {}", path.display());
}

// ---------------------------------------------------------------------------------------
// Correlation search
// ---------------------------------------------------------------------------------------

/// Where a reference was found in a signal and how well it matched.
#[derive(Clone, Copy, Debug)]
pub struct Match {
    /// Normalised cross-correlation in [-1, 1] (1 = identical up to gain).
    pub ncc: f64,
    /// Sample offset of the reference's start within the signal.
    pub offset: usize,
}

/// Normalised cross-correlation of `reference` against `signal[offset..]` (missing signal
/// past the end counts as silence).
pub fn ncc_at(reference: &[f64], ref_energy: f64, signal: &[f64], offset: usize) -> f64 {
    // Slices and zip rather than per-sample indexing: this runs unoptimised in the tests.
    let window = signal.get(offset..).unwrap_or(&[]);
    let window = &window[..window.len().min(reference.len())];
    let (mut dot, mut energy) = (0.0, 0.0);
    for (r, s) in reference.iter().zip(window) {
        dot += r * s;
        energy += s * s;
    }
    if energy <= 0.0 || ref_energy <= 0.0 {
        return 0.0;
    }
    dot / (ref_energy * energy).sqrt()
}

/// Mean absolute value of each `block` samples, less the mean of those values (so that
/// loudness alone does not correlate).
fn envelope(x: &[f64], block: usize) -> Vec<f64> {
    let mut e: Vec<f64> = x
        .chunks(block)
        .map(|c| c.iter().map(|v| v.abs()).sum::<f64>() / c.len() as f64)
        .collect();
    let mean = e.iter().sum::<f64>() / e.len().max(1) as f64;
    e.iter_mut().for_each(|v| *v -= mean);
    e
}

/// The `n` best-scoring positions at least `apart` from each other.
fn best_distinct(mut scored: Vec<(f64, usize)>, n: usize, apart: usize) -> Vec<usize> {
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut picked: Vec<usize> = Vec::new();
    for (_, at) in scored {
        if picked.len() == n {
            break;
        }
        if picked.iter().all(|p| p.abs_diff(at) > apart) {
            picked.push(at);
        }
    }
    picked
}

/// Finds the best match of `reference` within `signal` (both 8 kHz).
///
/// A full sample-by-sample search is O(n·m), far too slow in debug builds for the many
/// seconds of audio a call hears (and tests poll it while they wait), so it narrows down:
/// (1) 10 ms energy envelopes give a few candidate alignments (speech envelopes are
/// distinctive enough that the true one is among them); (2) 1 ms envelopes place each
/// candidate within a millisecond (±30 ms around it); (3) the two best are searched
/// sample by sample, ±1.5 ms.
pub fn find_best_match(reference: &[i16], signal: &[i16]) -> Match {
    const COARSE: usize = 80; // 10 ms at 8 kHz
    const FINE: usize = 8; // 1 ms
    const CANDIDATES: usize = 6;
    let r: Vec<f64> = reference.iter().map(|x| f64::from(*x)).collect();
    let s: Vec<f64> = signal.iter().map(|x| f64::from(*x)).collect();
    let ref_energy: f64 = r.iter().map(|x| x * x).sum();
    if r.is_empty() || s.is_empty() {
        return Match {
            ncc: 0.0,
            offset: 0,
        };
    }
    // Scores each start (in blocks) of the reference's envelope within the signal's.
    let scorer = |block: usize| {
        let (er, es) = (envelope(&r, block), envelope(&s, block));
        let energy: f64 = er.iter().map(|x| x * x).sum();
        move |b: usize| (ncc_at(&er, energy, &es, b), b)
    };
    let last = |block: usize| s.len().saturating_sub(1) / block;
    let coarse = (0..=last(COARSE)).map(scorer(COARSE)).collect();
    let fine_at = scorer(FINE);
    let mut fine = Vec::new();
    for c in best_distinct(coarse, CANDIDATES, 2) {
        let centre = c * COARSE / FINE;
        let (lo, hi) = (centre.saturating_sub(30), (centre + 30).min(last(FINE)));
        fine.extend((lo..=hi).map(&fine_at));
    }
    let mut best = Match {
        ncc: f64::MIN,
        offset: 0,
    };
    for f in best_distinct(fine, 2, 1) {
        let centre = f * FINE;
        let lo = centre.saturating_sub(12);
        let hi = (centre + 12).min(s.len().saturating_sub(1));
        for off in lo..=hi {
            let c = ncc_at(&r, ref_energy, &s, off);
            if c > best.ncc {
                best = Match {
                    ncc: c,
                    offset: off,
                };
            }
        }
    }
    best
}

/// Resamples with plain linear interpolation: deliberately a different (and worse)
/// resampler than sox's, for checking that the correlation threshold tolerates resampler
/// differences.
pub fn resample_linear(input: &[i16], from_hz: u32, to_hz: u32) -> Vec<i16> {
    let n = (input.len() as u64 * u64::from(to_hz) / u64::from(from_hz)) as usize;
    (0..n)
        .map(|i| {
            let pos = i as f64 * f64::from(from_hz) / f64::from(to_hz);
            let k = pos.floor() as usize;
            let frac = pos - k as f64;
            let a = f64::from(input[k.min(input.len() - 1)]);
            let b = f64::from(input[(k + 1).min(input.len() - 1)]);
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

/// Reads a 16-bit PCM mono WAV's samples (the format espeak-ng writes).
pub fn read_wav_pcm16(path: &Path) -> (u32, Vec<i16>) {
    let data = std::fs::read(path).expect("read wav");
    let rate = wav_rate(path);
    let mut i = 12;
    while i + 8 <= data.len() {
        let id = &data[i..i + 4];
        let len = u32::from_le_bytes([data[i + 4], data[i + 5], data[i + 6], data[i + 7]]) as usize;
        if id == b"data" {
            let end = (i + 8 + len).min(data.len());
            let samples = data[i + 8..end]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return (rate, samples);
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

// ---------------------------------------------------------------------------------------
// Packet timing
// ---------------------------------------------------------------------------------------

/// Inter-arrival statistics of a packet stream expected every `period`.
#[derive(Clone, Debug)]
pub struct Timing {
    pub packets: usize,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// 1st and 99th percentile of the spacing.
    pub p1_ms: f64,
    pub p99_ms: f64,
    /// 99th percentile of |spacing - period|.
    pub p99_abs_dev_ms: f64,
    /// How far the stream's clock fell behind (>0) or ran ahead (<0) of `period` from its
    /// first tenth to its last: the median lateness of the last tenth of the packets
    /// against the schedule set by the first packet, less that of the first tenth. A
    /// sender that sleeps relative to its last send falls behind steadily and shows here;
    /// one late packet (a wake-up delayed on a loaded machine) does not.
    pub drift_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Computes [`Timing`] from arrival instants (at least 2).
pub fn timing(arrivals: &[Instant], period: Duration) -> Timing {
    assert!(arrivals.len() >= 2, "need at least 2 packets for timing");
    let period_ms = period.as_secs_f64() * 1e3;
    let mut gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e3)
        .collect();
    let mut devs: Vec<f64> = gaps.iter().map(|g| (g - period_ms).abs()).collect();
    let mean_ms = gaps.iter().sum::<f64>() / gaps.len() as f64;
    gaps.sort_by(f64::total_cmp);
    devs.sort_by(f64::total_cmp);
    let late: Vec<f64> = arrivals
        .iter()
        .enumerate()
        .map(|(i, a)| a.duration_since(arrivals[0]).as_secs_f64() * 1e3 - i as f64 * period_ms)
        .collect();
    let tenth = (late.len() / 10).max(1);
    let median = |part: &[f64]| {
        let mut part = part.to_vec();
        part.sort_by(f64::total_cmp);
        percentile(&part, 50.0)
    };
    Timing {
        packets: arrivals.len(),
        mean_ms,
        min_ms: gaps[0],
        max_ms: gaps[gaps.len() - 1],
        p1_ms: percentile(&gaps, 1.0),
        p99_ms: percentile(&gaps, 99.0),
        p99_abs_dev_ms: percentile(&devs, 99.0),
        drift_ms: median(&late[late.len() - tenth..]) - median(&late[..tenth]),
    }
}
