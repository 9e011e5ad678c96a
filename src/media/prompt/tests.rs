//! Tests of `media/prompt.rs`.

use super::*;
use std::f32::consts::TAU;
use std::io::Cursor;
use std::path::Path;

/// Writes an in-memory WAV with `frames` frames, each produced by `frame(i)`.
fn wav<S: hound::Sample + Copy>(
    spec: hound::WavSpec,
    frames: usize,
    frame: impl Fn(usize) -> Vec<S>,
) -> Vec<u8> {
    let mut cursor = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
    for i in 0..frames {
        for s in frame(i) {
            writer.write_sample(s).expect("write");
        }
    }
    writer.finalize().expect("finalize");
    cursor.into_inner()
}

fn int_spec(rate: u32, channels: u16, bits: u16) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    }
}

fn float_spec(rate: u32, channels: u16) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    }
}

fn load(bytes: Vec<u8>) -> Result<Prompt, PromptError> {
    Prompt::from_wav_reader("test", Cursor::new(bytes), "sounds/test.wav")
}

fn sine(freq: f32, rate: u32, amplitude: f32, i: usize) -> f32 {
    amplitude * (TAU * freq * i as f32 / rate as f32).sin()
}

/// Number of sign changes.
fn zero_crossings(pcm: &[i16]) -> usize {
    pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
}

fn peak(pcm: &[i16]) -> i32 {
    pcm.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0)
}

/// Largest difference between `pcm` (at 8 kHz) and the ideal sine, away from the
/// edges where the band-limited resampled signal rings. A small value shows that
/// frequency, amplitude *and* timing (delay compensation) are all right.
fn max_error_vs_ideal(pcm: &[i16], freq: f32, amplitude: f32) -> f32 {
    let margin = 200;
    pcm[margin..pcm.len() - margin]
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let ideal = sine(freq, SAMPLE_RATE, amplitude, i + margin) * 32768.0;
            (f32::from(s) - ideal).abs()
        })
        .fold(0.0, f32::max)
}

#[test]
fn passthrough_at_8k_is_exact() {
    let samples: Vec<i16> = (0..8000)
        .map(|i| ((i * 7919) % 65536 - 32768) as i16)
        .collect();
    let prompt = load(wav(int_spec(8000, 1, 16), samples.len(), |i| {
        vec![samples[i]]
    }))
    .expect("loads");
    assert_eq!(&prompt.pcm[..], &samples[..]);
    let mut pcmu = Vec::new();
    Codec::Pcmu.encode_into(&samples, &mut pcmu);
    assert_eq!(prompt.encoded(Codec::Pcmu), &pcmu[..]);
    let mut pcma = Vec::new();
    Codec::Pcma.encode_into(&samples, &mut pcma);
    assert_eq!(prompt.encoded(Codec::Pcma), &pcma[..]);
    assert_eq!(prompt.duration(), Duration::from_secs(1));
    assert_eq!(prompt.name, "test");
}

#[test]
fn other_bit_depths_at_8k() {
    // 8-bit: hound yields -128..=127, which must scale by 256.
    let p = load(wav(int_spec(8000, 1, 8), 3, |i| vec![[-128i8, 0, 127][i]])).unwrap();
    assert_eq!(&p.pcm[..], &[-32768, 0, 32512]);
    // 24-bit keeps the top 16 bits.
    let p = load(wav(int_spec(8000, 1, 24), 2, |i| {
        vec![[0x12_3400i32, -0x80_0000][i]]
    }))
    .unwrap();
    assert_eq!(&p.pcm[..], &[0x1234, -32768]);
    // 32-bit int and float, with a clipped over-range float.
    let p = load(wav(int_spec(8000, 1, 32), 2, |i| {
        vec![[i32::MAX, 0x4000_0000][i]]
    }))
    .unwrap();
    assert_eq!(&p.pcm[..], &[32767, 16384]);
    let p = load(wav(float_spec(8000, 1), 4, |i| {
        vec![[0.5f32, -1.0, 1.5, -7.0][i]]
    }))
    .unwrap();
    assert_eq!(&p.pcm[..], &[16384, -32768, 32767, -32768]);
}

#[test]
fn channels_are_averaged() {
    let p = load(wav(int_spec(8000, 3, 16), 2, |i| {
        if i == 0 {
            vec![300i16, 600, 900]
        } else {
            vec![-3000, 3000, 0]
        }
    }))
    .unwrap();
    assert_eq!(&p.pcm[..], &[600, 0]);
}

#[test]
fn sine_16k_i16() {
    let rate = 16_000;
    let frames = 16_000; // 1 s
    let bytes = wav(int_spec(rate, 1, 16), frames, |i| {
        vec![(sine(440.0, rate, 0.5, i) * 32767.0) as i16]
    });
    let p = load(bytes).expect("loads");
    assert_eq!(p.pcm.len(), 8000);
    assert_eq!(p.duration(), Duration::from_secs(1));
    // 440 Hz for 1 s: 880 sign changes.
    assert!((878..=882).contains(&zero_crossings(&p.pcm)));
    let err = max_error_vs_ideal(&p.pcm, 440.0, 0.5);
    assert!(err < 100.0, "max error {err}");
}

#[test]
fn stereo_f32_44k1() {
    let rate = 44_100;
    let frames = 44_100 * 3 / 2; // 1.5 s
                                 // Same tone in both channels, opposite DC offsets that cancel when averaged.
    let bytes = wav(float_spec(rate, 2), frames, |i| {
        let s = sine(300.0, rate, 0.25, i);
        vec![s + 0.1, s - 0.1]
    });
    let p = load(bytes).expect("loads");
    assert_eq!(p.pcm.len(), 12_000);
    let d = p.duration().as_secs_f64();
    assert!((d - 1.5).abs() < 0.001, "{d}");
    let err = max_error_vs_ideal(&p.pcm, 300.0, 0.25);
    assert!(err < 100.0, "max error {err}");
    assert_eq!(p.encoded(Codec::Pcmu).len(), p.pcm.len());
    assert_eq!(p.encoded(Codec::Pcma).len(), p.pcm.len());
}

/// Durations that do not divide evenly keep their length to within one sample.
#[test]
fn duration_is_preserved() {
    for (rate, frames) in [
        (22_050, 12_345),
        (11_025, 999),
        (48_000, 7),
        (96_000, 100_001),
    ] {
        let bytes = wav(int_spec(rate, 1, 16), frames, |i| vec![(i % 100) as i16]);
        let p = load(bytes).expect("loads");
        let want = frames as f64 / f64::from(rate);
        let got = p.duration().as_secs_f64();
        assert!(
            (got - want).abs() < 0.001,
            "{rate} Hz x {frames}: {got} s vs {want} s"
        );
    }
}

#[test]
fn sine_1k_at_48k_keeps_frequency_amplitude_and_timing() {
    let rate = 48_000;
    let frames = 48_000 * 2;
    let amplitude = 0.8;
    let bytes = wav(int_spec(rate, 1, 16), frames, |i| {
        vec![(sine(1000.0, rate, amplitude, i) * 32767.0).round() as i16]
    });
    let p = load(bytes).expect("loads");
    assert_eq!(p.pcm.len(), 16_000);
    // 1 kHz for 2 s: 4000 sign changes (one fewer or more at the ends).
    let crossings = zero_crossings(&p.pcm);
    assert!((3998..=4001).contains(&crossings), "{crossings} crossings");
    let want_peak = amplitude * 32768.0;
    let got_peak = peak(&p.pcm[100..p.pcm.len() - 100]) as f32;
    assert!(
        (got_peak - want_peak).abs() < want_peak * 0.02,
        "peak {got_peak} vs {want_peak}"
    );
    // Sample-by-sample against the ideal: also proves there is no time shift (a
    // shift of one sample at 1 kHz would give an error of ~0.7 * full amplitude).
    let err = max_error_vs_ideal(&p.pcm, 1000.0, amplitude);
    assert!(err < 150.0, "max error {err}");
}

#[test]
fn resampled_onset_is_not_delayed() {
    // Silence, then a 500 Hz tone starting at exactly 0.25 s, at 22.05 kHz (espeak's rate).
    let rate = 22_050;
    let start = rate as usize / 4;
    let bytes = wav(int_spec(rate, 1, 16), rate as usize, |i| {
        let s = if i < start {
            0.0
        } else {
            sine(500.0, rate, 0.5, i - start)
        };
        vec![(s * 32767.0) as i16]
    });
    let p = load(bytes).expect("loads");
    let first_loud = p.pcm.iter().position(|&s| s.abs() > 1000);
    // The onset at sample 2000 reaches 1000/16384 of the amplitude within a few samples.
    assert!(matches!(first_loud, Some(2000..=2004)), "{first_loud:?}");
}

#[test]
fn from_samples_resamples() {
    let rate = 24_000;
    let samples: Vec<f32> = (0..24_000).map(|i| sine(800.0, rate, 0.5, i)).collect();
    let p = Prompt::from_samples("tts", &samples, rate).expect("ok");
    assert_eq!(p.pcm.len(), 8000);
    assert!(max_error_vs_ideal(&p.pcm, 800.0, 0.5) < 100.0);
    let err = Prompt::from_samples("tts", &[], 16_000).unwrap_err();
    assert_eq!(err.to_string(), "prompt \"tts\": no audio samples");
}

#[test]
fn errors_name_the_file() {
    let msg = |bytes: Vec<u8>| load(bytes).unwrap_err().to_string();

    let m = msg(b"this is not a wav file".to_vec());
    assert!(
        m.starts_with("sounds/test.wav: not a valid WAV file"),
        "{m}"
    );

    let m = msg(wav::<i16>(int_spec(8000, 1, 16), 0, |_| vec![]));
    assert_eq!(m, "sounds/test.wav: no audio samples");

    let m = msg(wav(int_spec(16000, 1, 16), 0, |_| Vec::<i16>::new()));
    assert_eq!(m, "sounds/test.wav: no audio samples");

    let mut truncated = wav(int_spec(8000, 1, 16), 1000, |_| vec![1i16]);
    truncated.truncate(500);
    let m = msg(truncated);
    assert!(m.starts_with("sounds/test.wav: truncated"), "{m}");

    let m = msg(wav(int_spec(500, 1, 16), 10, |_| vec![0i16]));
    assert!(
        m.starts_with("sounds/test.wav: sample rate 500 Hz is not supported"),
        "{m}"
    );
}

#[test]
fn unsupported_sample_formats_are_rejected() {
    // A 32-bit float file patched to claim 64-bit samples (bits per sample is at
    // byte 34 of the fmt chunk).
    let mut bytes = wav(float_spec(8000, 1), 4, |_| vec![0.0f32]);
    bytes[34] = 64;
    let m = load(bytes).unwrap_err().to_string();
    assert!(
        m.starts_with("sounds/test.wav: not a valid WAV file"),
        "{m}"
    );
}

/// Every prompt listed in `sounds/prompts.tsv` ships as a WAV that loads: catches a
/// list edited without re-running `scripts/make-sounds.sh`.
#[test]
fn default_prompt_set_loads() {
    let sounds = Path::new(env!("CARGO_MANIFEST_DIR")).join("sounds");
    let list = std::fs::read_to_string(sounds.join("prompts.tsv")).expect("prompts.tsv");
    let names: Vec<&str> = list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t').map(|(name, _)| name))
        .collect();
    assert!(names.contains(&"greeting") && names.contains(&"goodbye"));
    for name in names {
        let path = sounds.join(format!("{name}.wav"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = Prompt::from_wav_bytes(name, &bytes, name).unwrap_or_else(|e| panic!("{e}"));
        let secs = p.duration().as_secs_f64();
        assert!((0.5..30.0).contains(&secs), "{name}: {secs} s");
        assert!(peak(&p.pcm) > 3000, "{name} is nearly silent");
    }
}

#[test]
fn too_long_is_rejected_from_the_header() {
    // A header claiming 11 minutes at 8 kHz, without the data: rejected before reading.
    let mut bytes = wav(int_spec(8000, 1, 16), 1, |_| vec![0i16]);
    let data_len: u32 = 11 * 60 * 8000 * 2;
    // A 16-bit mono file has the canonical 44-byte header: data length at 40.
    bytes[40..44].copy_from_slice(&data_len.to_le_bytes());
    let m = load(bytes).unwrap_err().to_string();
    assert_eq!(
        m,
        "sounds/test.wav: 660 seconds of audio; a prompt may be at most 10 minutes long"
    );

    let samples = vec![0.0f32; 601 * 8000];
    let m = Prompt::from_samples("long", &samples, 8000)
        .unwrap_err()
        .to_string();
    assert!(m.contains("601 seconds"), "{m}");
}
