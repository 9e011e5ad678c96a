//! Finding a known sound in what was heard: where (and whether) a rendered prompt occurs in
//! a recording of a call, by the shape of its loudness over time. Speech envelopes at 10 ms
//! are distinctive and survive G.711 and resampling, and comparing them is cheap enough to
//! search minutes of audio.

/// 10 ms at 8 kHz.
const BLOCK: usize = 80;

/// Mean absolute level of each 10 ms block, centred (zero mean).
fn envelope(x: &[i16]) -> Vec<f32> {
    let mut e: Vec<f32> = x
        .chunks(BLOCK)
        .map(|c| c.iter().map(|v| f32::from(*v).abs()).sum::<f32>() / c.len() as f32)
        .collect();
    let mean = e.iter().sum::<f32>() / e.len().max(1) as f32;
    e.iter_mut().for_each(|v| *v -= mean);
    e
}

/// Where `reference` best matches `signal` (both 8 kHz): the sample offset of its start and
/// the match's normalised correlation of envelopes (1 = the same shape). None when the
/// signal is shorter than the reference or either is silent.
pub fn find(reference: &[i16], signal: &[i16]) -> Option<(usize, f32)> {
    let r = envelope(reference);
    let s: Vec<f32> = signal
        .chunks(BLOCK)
        .map(|c| c.iter().map(|v| f32::from(*v).abs()).sum::<f32>() / c.len() as f32)
        .collect();
    if r.is_empty() || s.len() < r.len() {
        return None;
    }
    let r_energy: f32 = r.iter().map(|v| v * v).sum();
    if r_energy <= 0.0 {
        return None;
    }
    let mut best: Option<(usize, f32)> = None;
    for start in 0..=s.len() - r.len() {
        let w = &s[start..start + r.len()];
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        let (mut dot, mut energy) = (0.0f32, 0.0f32);
        for (a, b) in r.iter().zip(w) {
            let b = b - mean;
            dot += a * b;
            energy += b * b;
        }
        if energy <= 0.0 {
            continue;
        }
        let c = dot / (r_energy * energy).sqrt();
        if best.is_none_or(|(_, bc)| c > bc) {
            best = Some((start * BLOCK, c));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up "word": loudness that rises and falls in a pattern.
    fn word(seed: u32, blocks: usize) -> Vec<i16> {
        let mut out = Vec::new();
        let mut x = seed;
        for b in 0..blocks {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let level = ((x >> 16) % 8000) as i16 + if b % 7 < 3 { 2000 } else { 0 };
            for i in 0..BLOCK {
                out.push(if i % 2 == 0 { level } else { -level });
            }
        }
        out
    }

    #[test]
    fn finds_a_sound_where_it_is_and_not_elsewhere() {
        let target = word(7, 120);
        let mut call = vec![0i16; 8000];
        call.extend(word(3, 200));
        let at = call.len();
        call.extend(&target);
        call.extend(word(5, 100));
        let (offset, score) = find(&target, &call).unwrap();
        assert_eq!(offset, at);
        assert!(score > 0.99, "{score}");
        // Something else entirely scores low.
        let other = word(11, 120);
        let (_, score) = find(&other, &call).unwrap();
        assert!(score < 0.6, "{score}");
        assert!(find(&target, &target[..100]).is_none());
    }
}
