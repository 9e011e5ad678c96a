//! IEEE 754 binary16 (f16) conversions: CTranslate2 stores f16 tensors, ggml writes them.

/// IEEE 754 binary16 -> binary32, exact.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    match exp {
        0 => {
            // Zero or subnormal: man x 2^-24, exactly representable in f32.
            let magnitude = man as f32 * (1.0 / 16_777_216.0);
            f32::from_bits(sign | magnitude.to_bits())
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        // Re-bias the exponent from 15 to 127.
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

/// IEEE 754 binary32 -> binary16, round to nearest, ties to even (what ggml's
/// `GGML_FP32_TO_FP16` and numpy's `astype(float16)` do).
pub fn f32_to_f16(f: f32) -> u16 {
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;

    if exp == 0xff {
        // Infinity stays infinity; NaN stays a (quiet) NaN.
        let nan = if man != 0 {
            0x0200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    // Exponent re-biased from 127 to 15.
    let e = exp - 112;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Result is subnormal (or zero): value / 2^-24 with the implicit bit made explicit.
        let shift = 14 - e;
        if shift > 24 {
            return sign;
        }
        let full = man | 0x0080_0000;
        return sign | round_shift(full, shift as u32) as u16;
    }
    // Normal: keep 10 mantissa bits; a carry out of the mantissa correctly bumps the
    // exponent, up to infinity.
    sign | round_shift((e as u32) << 23 | man, 13) as u16
}

/// `value >> shift`, rounded to nearest with ties to even.
fn round_shift(value: u32, shift: u32) -> u32 {
    let kept = value >> shift;
    let rest = value & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rest > half || (rest == half && kept & 1 == 1) {
        kept + 1
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trips_every_finite_value() {
        for h in 0..=u16::MAX {
            let is_nan = h & 0x7c00 == 0x7c00 && h & 0x03ff != 0;
            if !is_nan {
                assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#06x}");
            }
        }
    }

    #[test]
    fn f16_known_values() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // rounds up to infinity
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001); // smallest subnormal
        assert_eq!(f32_to_f16(2.0e-8), 0x0000);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }

    #[test]
    fn f16_ties_go_to_even() {
        // Midpoints between neighbours (exact in f32) round to the even one; a hair off the
        // midpoint rounds to the nearer one. Covers subnormals and the normal range.
        for h in (0x0001u16..0x7bfe).step_by(7) {
            let (a, b) = (f16_to_f32(h), f16_to_f32(h + 1));
            let mid = (a + b) / 2.0;
            let even = if h % 2 == 0 { h } else { h + 1 };
            assert_eq!(f32_to_f16(mid), even, "{h:#06x}");
            assert_eq!(f32_to_f16(f32::from_bits(mid.to_bits() - 1)), h);
            assert_eq!(f32_to_f16(f32::from_bits(mid.to_bits() + 1)), h + 1);
        }
    }
}
