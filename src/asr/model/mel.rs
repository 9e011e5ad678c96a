//! The mel filter bank stored in the ggml file.
//!
//! whisper.cpp does not compute its filters; it uses the ones in the model file, which must
//! match what the model was trained with: `librosa.filters.mel(sr=16000, n_fft=400,
//! n_mels=N)` with librosa's defaults, i.e. the Slaney mel scale (linear below 1 kHz,
//! logarithmic above) and Slaney area normalisation, spanning 0 Hz to Nyquist.
//! CTranslate2 computes them at run time, so the wheels do not ship them.
//!
//! The output is bit-identical to `whisper/assets/mel_filters.npz` of openai-whisper
//! (both the 80- and the 128-mel banks), checked when this was written.

pub(super) const SAMPLE_RATE: f64 = 16_000.0;
pub(super) const N_FFT: usize = 400;
/// FFT bins of a real 400-point transform: 0 Hz to Nyquist in 40 Hz steps.
pub(super) const N_FREQ: usize = N_FFT / 2 + 1;

/// Slaney scale: 3 mels per 200 Hz up to 1 kHz, then log-spaced with 27 mels per factor 6.4.
const HZ_PER_MEL: f64 = 200.0 / 3.0;
const LOG_START_HZ: f64 = 1000.0;
const LOG_START_MEL: f64 = LOG_START_HZ / HZ_PER_MEL;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= LOG_START_HZ {
        LOG_START_MEL + (hz / LOG_START_HZ).ln() / log_step()
    } else {
        hz / HZ_PER_MEL
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= LOG_START_MEL {
        LOG_START_HZ * (log_step() * (mel - LOG_START_MEL)).exp()
    } else {
        mel * HZ_PER_MEL
    }
}

/// `n_mels` x [`N_FREQ`] triangular filters, row-major.
pub(super) fn slaney_filters(n_mels: usize) -> Vec<f32> {
    let nyquist = SAMPLE_RATE / 2.0;
    let bin_hz = |k: usize| k as f64 * SAMPLE_RATE / N_FFT as f64;

    // n_mels + 2 band edges evenly spaced in mel from 0 to Nyquist, converted back to Hz.
    // Computed as numpy.linspace does (i x step, last point exact) to match librosa.
    let top = hz_to_mel(nyquist);
    let step = top / (n_mels + 1) as f64;
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| {
            if i == n_mels + 1 {
                top
            } else {
                i as f64 * step
            }
        })
        .map(mel_to_hz)
        .collect();

    let mut filters = Vec::with_capacity(n_mels * N_FREQ);
    for m in 0..n_mels {
        let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        // Slaney normalisation: every triangle has the same area.
        let norm = 2.0 / (hi - lo);
        for k in 0..N_FREQ {
            let f = bin_hz(k);
            let rising = (f - lo) / (mid - lo);
            let falling = (hi - f) / (hi - mid);
            let weight = rising.min(falling).max(0.0);
            // librosa stores the triangle in float32 before scaling it; doing the same keeps
            // the result bit-identical to the filters Whisper was trained with.
            filters.push((f64::from(weight as f32) * norm) as f32);
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_is_continuous_at_1khz() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((mel_to_hz(hz_to_mel(4321.0)) - 4321.0).abs() < 1e-9);
        assert!((mel_to_hz(hz_to_mel(321.0)) - 321.0).abs() < 1e-9);
    }

    #[test]
    fn whisper_80_mel_filters_match_librosa() {
        let filters = slaney_filters(80);
        assert_eq!(filters.len(), 80 * N_FREQ);
        // Check value from librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)[0][1].
        assert!((filters[1] - 0.024_862_59).abs() < 1e-6, "{}", filters[1]);
        // The first filter starts at 0 Hz; the last bin (Nyquist) is the top edge of the
        // last filter, so it gets nothing.
        assert_eq!(filters[0], 0.0);
        assert_eq!(filters[80 * N_FREQ - 1], 0.0);
        assert!(filters.iter().all(|w| w.is_finite() && *w >= 0.0));
        // Every filter has some weight.
        assert!(filters
            .chunks(N_FREQ)
            .all(|row| row.iter().any(|&w| w > 0.0)));
    }
}
