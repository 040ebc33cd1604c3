//! Elementwise kernels written so that the compiler vectorises them: `exp` without a libm call,
//! and the column-wise log-sum-exp (softmax) of the blocked E-step.
//!
//! Each kernel has one body (`#[inline(always)]`, generic over `FMA`) compiled twice: for the
//! baseline target (`FMA = false`: separate multiply and add) and, chosen at run time, with AVX2 +
//! FMA enabled (`FMA = true`: fused multiply-adds in the polynomial). The two differ only in the
//! last bit of some exponentials, as faer's GEMMs differ between instruction sets.

/// `a·b + c`, fused when `FMA` (only instantiated with `FMA = true` where the CPU has FMA).
#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `e^x` in f64 without calling libm, so that loops over it vectorise; fused multiply-adds in
/// the polynomial when `FMA` (instantiate it with `true` only where the CPU has FMA).
///
/// Range reduction `x = n·ln 2 + r`, `|r| ≤ ½ ln 2` (Cody–Waite, two-part `ln 2`), then the Taylor
/// polynomial of degree 13 in Horner form (truncation error < 5e-18 relative), then the scaling by
/// `2^n` through the exponent bits. Accuracy: within 2 ulp of the correctly rounded result on
/// `[−708, 709]` (tested against `f64::exp`). Below −708 it returns 0 (libm returns a subnormal
/// number smaller than 3e-308 there); above 709, `+∞`; NaN stays NaN.
#[inline(always)]
pub fn exp_with<const FMA: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: the high part has 32 trailing zero bits, so n·LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 6.93147180369123816490e-1
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.90821492927058770002e-10
    // Adding 1.5·2^52 rounds to an integer held in the low mantissa bits.
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    const C: [f64; 14] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let xc = x.clamp(-708.0, 709.0);
    let t = madd::<FMA>(xc, LOG2E, MAGIC);
    let nf = t - MAGIC;
    let n = (t.to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64);
    let r = madd::<FMA>(-nf, LN2_LO, madd::<FMA>(-nf, LN2_HI, xc));
    let mut p = C[13];
    p = madd::<FMA>(p, r, C[12]);
    p = madd::<FMA>(p, r, C[11]);
    p = madd::<FMA>(p, r, C[10]);
    p = madd::<FMA>(p, r, C[9]);
    p = madd::<FMA>(p, r, C[8]);
    p = madd::<FMA>(p, r, C[7]);
    p = madd::<FMA>(p, r, C[6]);
    p = madd::<FMA>(p, r, C[5]);
    p = madd::<FMA>(p, r, C[4]);
    p = madd::<FMA>(p, r, C[3]);
    p = madd::<FMA>(p, r, C[2]);
    p = madd::<FMA>(p, r, C[1]);
    p = madd::<FMA>(p, r, C[0]);
    // 2^n for n in [−1022, 1023]: the biased exponent n + 1023 is in [1, 2046].
    let scale = f64::from_bits(((n + 1023) as u64) << 52);
    let y = p * scale;
    if x < -708.0 {
        0.0
    } else if x > 709.0 {
        f64::INFINITY
    } else {
        y
    }
}

/// Runs `$body` (an expression using the enclosing function's arguments) with AVX2 + FMA enabled
/// when the CPU has them, else as compiled for the baseline target.
macro_rules! with_avx2 {
    ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
        pub(crate) fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body<const FMA: bool>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    body::<true>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` enables (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body::<false>($($arg),*)
        }
    };
}

with_avx2!(softmax_columns(a: &mut [f64], rows: usize, k: usize, mx: &mut [f64], sum: &mut [f64], lpx: &mut [f64]) {
    // `a` is rows × k, column-major: column c holds log p(x_n, c) for the rows of the chunk.
    // Log-sum-exp per row, with the row maximum taken out before exponentiating:
    //   log p(x_n) = m_n + ln Σ_c exp(a_nc − m_n),  r_nc = exp(a_nc − m_n) / Σ_c exp(a_nc − m_n).
    let (mx, sum, lpx) = (&mut mx[..rows], &mut sum[..rows], &mut lpx[..rows]);
    mx.copy_from_slice(&a[..rows]);
    for c in 1..k {
        for (m, &v) in mx.iter_mut().zip(&a[c * rows..(c + 1) * rows]) {
            *m = if v > *m { v } else { *m };
        }
    }
    sum.fill(0.0);
    for c in 0..k {
        let col = &mut a[c * rows..(c + 1) * rows];
        for ((v, &m), s) in col.iter_mut().zip(mx.iter()).zip(sum.iter_mut()) {
            let e = exp_with::<FMA>(*v - m);
            *v = e;
            *s += e;
        }
    }
    for ((l, s), &m) in lpx.iter_mut().zip(sum.iter_mut()).zip(mx.iter()) {
        // Every component impossible (log-weight −∞): log p(x) = −∞ as in the reference.
        *l = if m == f64::NEG_INFINITY { m } else { m + s.ln() };
        *s = 1.0 / *s;
    }
    for c in 0..k {
        let col = &mut a[c * rows..(c + 1) * rows];
        for (v, &inv) in col.iter_mut().zip(sum.iter()) {
            *v *= inv;
        }
    }
});

with_avx2!(quadratic_features(x: &[f64], rows: usize, d: usize, centre: &[f64], full: bool, phi: &mut [f64]) {
    // φ(x) = [1, z, quadratic terms of z] with z = x − centre, stored column-major (rows × F).
    // Full: z_i·z_j for i ≤ j (row-major upper triangle); diagonal: z_j².
    let (head, quad) = phi.split_at_mut((1 + d) * rows);
    head[..rows].fill(1.0);
    for j in 0..d {
        let col = &mut head[(1 + j) * rows..(2 + j) * rows];
        let cj = centre[j];
        for (n, v) in col.iter_mut().enumerate() {
            *v = x[n * d + j] - cj;
        }
    }
    let z = &head[rows..];
    let mut f = 0;
    for i in 0..d {
        let zi = &z[i * rows..(i + 1) * rows];
        let js = if full { i..d } else { i..i + 1 };
        for j in js {
            let zj = &z[j * rows..(j + 1) * rows];
            let out = &mut quad[f * rows..(f + 1) * rows];
            for ((o, &a), &b) in out.iter_mut().zip(zi).zip(zj) {
                *o = a * b;
            }
            f += 1;
        }
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn exp_is_within_two_ulps_of_libm() {
        let mut worst = 0;
        let mut x = -708.0;
        while x < 709.0 {
            worst = worst.max(ulps(exp_with::<false>(x), x.exp()));
            x += 0.012_345_678_9;
        }
        for x in [
            0.0, -0.0, 1e-300, -1e-300, 1e-10, -1e-10, 0.5, -0.5, 1.0, -1.0,
        ] {
            worst = worst.max(ulps(exp_with::<false>(x), x.exp()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        let mut x = -708.0;
        while x < 709.0 {
            worst = worst.max(ulps(exp_with::<true>(x), x.exp()));
            x += 0.012_345_678_9;
        }
        assert!(worst <= 2, "worst error {worst} ulp (fused)");
        assert_eq!(exp_with::<false>(-800.0), 0.0);
        assert_eq!(exp_with::<false>(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_with::<false>(800.0), f64::INFINITY);
        assert!(exp_with::<false>(f64::NAN).is_nan());
    }

    #[test]
    fn softmax_columns_matches_log_sum_exp() {
        let (rows, k) = (5, 3);
        let a0: Vec<f64> = (0..rows * k)
            .map(|i| (i as f64 * 0.77).sin() * 30.0)
            .collect();
        let mut a = a0.clone();
        let (mut mx, mut sum, mut lpx) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
        softmax_columns(&mut a, rows, k, &mut mx, &mut sum, &mut lpx);
        for n in 0..rows {
            let row: Vec<f64> = (0..k).map(|c| a0[c * rows + n]).collect();
            let want = crate::models::gmm::log_sum_exp(&row);
            assert!((lpx[n] - want).abs() <= 1e-14 * want.abs().max(1.0));
            for c in 0..k {
                let r = (row[c] - want).exp();
                assert!((a[c * rows + n] - r).abs() <= 1e-14 * r.max(1e-300));
            }
        }
    }
}
