//! Writer for the legacy ggml Whisper file that whisper.cpp (and so whisper-rs 0.16) loads.
//!
//! Layout, all integers little-endian i32 unless noted:
//! ```text
//! u32 magic 0x67676d6c ("ggml")
//! hparams: n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
//!          n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
//! mel filters: n_mels, n_freq (201), then n_mels x n_freq f32
//! vocab: count, then per token: length, bytes
//! tensors until end of file: n_dims, name length, type, n_dims x ne (innermost first), name, data
//! ```
//! `ne` is ggml's dimension order, the reverse of the PyTorch/CTranslate2 shape. ftype is 1 for
//! f16 files and `quantized ftype + 1000 x GGML_QNT_VERSION (2)` for quantized ones.

use std::io::{self, Write};

use super::ct2::View;
use super::half::f32_to_f16;

pub(super) const MAGIC: u32 = 0x6767_6d6c;

/// ggml quantization format version, encoded into the header's ftype (whisper.cpp takes
/// `ftype / 1000` as the version and `ftype % 1000` as the file type).
const QNT_VERSION: i32 = 2;
const QNT_VERSION_FACTOR: i32 = 1000;

/// Elements per quantization block for q8_0 and q5_0.
pub(super) const QK: usize = 32;

/// ggml tensor element types this writer produces (values are ggml's `ggml_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q5_0 = 6,
    Q8_0 = 8,
}

impl GgmlType {
    /// The header ftype of a file whose big 2-D weights have this type (`ggml_ftype`).
    pub(super) fn file_type(self) -> i32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q8_0 => 7 + QNT_VERSION * QNT_VERSION_FACTOR,
            GgmlType::Q5_0 => 8 + QNT_VERSION * QNT_VERSION_FACTOR,
        }
    }

    pub(super) fn is_quantized(self) -> bool {
        matches!(self, GgmlType::Q8_0 | GgmlType::Q5_0)
    }
}

/// The model dimensions in the order the header stores them (without ftype).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hparams {
    pub(super) n_vocab: usize,
    pub(super) n_audio_ctx: usize,
    pub(super) n_audio_state: usize,
    pub(super) n_audio_head: usize,
    pub(super) n_audio_layer: usize,
    pub(super) n_text_ctx: usize,
    pub(super) n_text_state: usize,
    pub(super) n_text_head: usize,
    pub(super) n_text_layer: usize,
    pub(super) n_mels: usize,
}

impl Hparams {
    pub(super) fn as_array(&self) -> [usize; 10] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
        ]
    }
}

/// Streams a ggml file out, section by section.
pub(super) struct GgmlWriter<W> {
    out: W,
    tensors: usize,
    /// Reused row buffers, so a tensor is never materialised whole as f32.
    row: Vec<f32>,
    encoded: Vec<u8>,
}

impl<W: Write> GgmlWriter<W> {
    pub(super) fn new(out: W) -> Self {
        GgmlWriter {
            out,
            tensors: 0,
            row: Vec::new(),
            encoded: Vec::new(),
        }
    }

    pub(super) fn tensors(&self) -> usize {
        self.tensors
    }

    fn i32(&mut self, v: usize) -> io::Result<()> {
        let v = i32::try_from(v).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{v} does not fit the ggml header's i32"),
            )
        })?;
        self.out.write_all(&v.to_le_bytes())
    }

    pub(super) fn header(&mut self, hp: &Hparams, weights: GgmlType) -> io::Result<()> {
        self.out.write_all(&MAGIC.to_le_bytes())?;
        for v in hp.as_array() {
            self.i32(v)?;
        }
        self.out.write_all(&weights.file_type().to_le_bytes())
    }

    /// `filters` is row-major, `n_mels` rows of `n_freq` weights.
    pub(super) fn mel_filters(
        &mut self,
        n_mels: usize,
        n_freq: usize,
        filters: &[f32],
    ) -> io::Result<()> {
        debug_assert_eq!(filters.len(), n_mels * n_freq);
        self.i32(n_mels)?;
        self.i32(n_freq)?;
        for f in filters {
            self.out.write_all(&f.to_le_bytes())?;
        }
        Ok(())
    }

    /// Tokens as raw bytes, in id order.
    pub(super) fn vocab(&mut self, tokens: &[Vec<u8>]) -> io::Result<()> {
        self.i32(tokens.len())?;
        for token in tokens {
            self.i32(token.len())?;
            self.out.write_all(token)?;
        }
        Ok(())
    }

    /// Writes one tensor record. `shape` is outermost-first (PyTorch order) and must hold as
    /// many elements as `src`; for quantized types the innermost dimension must be a multiple
    /// of [`QK`] (the caller checks both).
    pub(super) fn tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        shape: &[usize],
        src: &View<'_>,
    ) -> io::Result<()> {
        self.i32(shape.len())?;
        self.i32(name.len())?;
        self.out.write_all(&(ty as i32).to_le_bytes())?;
        for &d in shape.iter().rev() {
            self.i32(d)?;
        }
        self.out.write_all(name.as_bytes())?;

        if let (GgmlType::F16, Some(raw)) = (ty, src.raw_f16()) {
            // Both wheels store float16 already: copy bit for bit, no rounding twice.
            self.out.write_all(raw)?;
        } else {
            for r in 0..src.rows() {
                src.row_f32(r, &mut self.row);
                self.encoded.clear();
                encode(ty, &self.row, &mut self.encoded);
                self.out.write_all(&self.encoded)?;
            }
        }
        self.tensors += 1;
        Ok(())
    }
}

/// Appends `values` to `out` encoded as `ty`. Quantized types need `values.len() % QK == 0`.
fn encode(ty: GgmlType, values: &[f32], out: &mut Vec<u8>) {
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|&v| out.extend(f32_to_f16(v).to_le_bytes())),
        GgmlType::Q8_0 => values.chunks_exact(QK).for_each(|b| quantize_q8_0(b, out)),
        GgmlType::Q5_0 => values.chunks_exact(QK).for_each(|b| quantize_q5_0(b, out)),
    }
}

/// q8_0 block (34 bytes): f16 scale d = amax / 127, then 32 x i8 round(x / d).
///
/// `f32::round` rounds half away from zero, as ggml's `roundf` does; banker's rounding would
/// give different bytes from whisper.cpp's own quantizer.
pub(super) fn quantize_q8_0(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(f32_to_f16(d).to_le_bytes());
    // `as i8` saturates; |x / d| <= 127 anyway.
    out.extend(block.iter().map(|&v| (v * inv).round() as i8 as u8));
}

/// q5_0 block (22 bytes): f16 scale d, u32 holding the fifth bit of each quant, then 16 bytes
/// of low nibbles (element j in the low half of byte j, element j + 16 in the high half).
///
/// ggml picks d = m / -16 where m is the element of largest magnitude, with its sign, so that
/// element lands exactly on quant 0; q = min(31, trunc(x / d + 16.5)) and x = (q - 16) * d.
pub(super) fn quantize_q5_0(block: &[f32], out: &mut Vec<u8>) {
    let extreme = block
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = extreme / -16.0;
    let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
    // x / d + 16.5 lies in [0.5, 32.5], so truncation is floor; the cast also saturates.
    let quant = |v: f32| ((v * inv + 16.5) as u8).min(31);

    let half = QK / 2;
    let mut high_bits = 0u32;
    let mut nibbles = [0u8; QK / 2];
    for j in 0..half {
        let lo = quant(block[j]);
        let hi = quant(block[j + half]);
        nibbles[j] = (lo & 0x0f) | ((hi & 0x0f) << 4);
        high_bits |= u32::from(lo >> 4) << j;
        high_bits |= u32::from(hi >> 4) << (j + half);
    }
    out.extend(f32_to_f16(d).to_le_bytes());
    out.extend(high_bits.to_le_bytes());
    out.extend(nibbles);
}

#[cfg(test)]
mod tests {
    use super::super::half::f16_to_f32;
    use super::*;

    #[test]
    fn q8_0_known_block_rounds_half_away_from_zero() {
        let mut block = [0.0f32; QK];
        // amax 127 gives d = 1, so every value is its own quant.
        block[..8].copy_from_slice(&[127.0, 2.5, -2.5, 0.5, -0.5, 1.5, -126.4, 3.49]);
        let mut out = Vec::new();
        quantize_q8_0(&block, &mut out);
        assert_eq!(out.len(), 34);
        assert_eq!(&out[..2], &0x3c00u16.to_le_bytes()); // d = 1.0
        let q: Vec<i8> = out[2..10].iter().map(|&b| b as i8).collect();
        assert_eq!(q, [127, 3, -3, 1, -1, 2, -126, 3]);
        assert!(out[10..].iter().all(|&b| b == 0));
    }

    #[test]
    fn q8_0_scales_by_amax() {
        let block: Vec<f32> = (0..QK).map(|i| i as f32 / 31.0 - 0.5).collect();
        let mut out = Vec::new();
        quantize_q8_0(&block, &mut out);
        let d = f16_to_f32(u16::from_le_bytes([out[0], out[1]]));
        assert!((d - 0.5 / 127.0).abs() < 1e-6);
        for (x, &q) in block.iter().zip(&out[2..]) {
            assert!((f32::from(q as i8) * d - x).abs() <= d / 2.0 + 1e-6);
        }
    }

    #[test]
    fn q5_0_block_decodes_back() {
        let block: Vec<f32> = (0..QK)
            .map(|i| ((i * 7 % 32) as f32 - 13.0) / 10.0)
            .collect();
        let mut out = Vec::new();
        quantize_q5_0(&block, &mut out);
        assert_eq!(out.len(), 22);
        let d = f16_to_f32(u16::from_le_bytes([out[0], out[1]]));
        assert!((d - 1.8 / -16.0).abs() < 1e-3, "d = {d}"); // extreme is +1.8
        let high = u32::from_le_bytes([out[2], out[3], out[4], out[5]]);
        for (j, &x) in block.iter().enumerate() {
            let nibble = if j < 16 {
                out[6 + j] & 0x0f
            } else {
                out[6 + j - 16] >> 4
            };
            let q = nibble | (((high >> j) & 1) as u8) << 4;
            let back = (f32::from(q) - 16.0) * d;
            assert!(
                (back - x).abs() <= d.abs() / 2.0 + 1e-3,
                "j {j}: {x} -> {back}"
            );
        }
    }
}
