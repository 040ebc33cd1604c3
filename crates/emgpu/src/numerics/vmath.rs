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

/// `e^x` in f64 for `x ≤ 709` without calling libm, so that loops over it vectorise; fused
/// multiply-adds in the polynomial when `FMA` (instantiate it with `true` only where the CPU has
/// FMA). The log-sum-exp only exponentiates `x ≤ 0`.
///
/// Range reduction `x = n·ln 2 + r`, `|r| ≤ ½ ln 2` (Cody–Waite, two-part `ln 2`), then a
/// near-minimax polynomial of degree 11 in Horner form (approximation error 1.6e-16 relative),
/// then the scaling by `2^n` through the exponent bits. Accuracy: within 2 ulp of the correctly
/// rounded result on `[−708, 709]` (tested against `f64::exp`). Below −708 it returns 0 (libm
/// returns a subnormal number smaller than 3e-308 there); NaN stays NaN.
#[inline(always)]
pub fn exp_nonpositive<const FMA: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: the high part has 32 trailing zero bits, so n·LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 6.93147180369123816490e-1
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.90821492927058770002e-10
    // Adding 1.5·2^52 rounds to an integer held in the low mantissa bits.
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    // Degree-11 near-minimax polynomial of e^r on |r| ≤ ½ ln 2 (Chebyshev interpolation at 64
    // nodes in 60-digit arithmetic, converted to monomials): relative error 1.6e-16.
    const C: [f64; 12] = [
        1.0,
        1.0,
        f64::from_bits(0x3fe0_0000_0000_0011), // 0.5000000000000019
        f64::from_bits(0x3fc5_5555_5555_5562), // 0.16666666666666702
        f64::from_bits(0x3fa5_5555_5554_f065), // 0.04166666666648736
        f64::from_bits(0x3f81_1111_1110_db3e), // 0.00833333333330943
        f64::from_bits(0x3f56_c16c_1881_1b56), // 0.0013888888952508691
        f64::from_bits(0x3f2a_01a0_1b81_4cb1), // 0.00019841269909424066
        f64::from_bits(0x3efa_0199_1723_d83b), // 2.4801485275248647e-05
        f64::from_bits(0x3ec7_1dde_73fa_a89f), // 2.7557224767288023e-06
        f64::from_bits(0x3e92_8b43_b4f1_11db), // 2.7632716110097873e-07
        f64::from_bits(0x3e5a_f78a_4cda_e632), // 2.5114933069618484e-08
    ];
    // Below −708, 2^n would leave the normal range: compute at −708 and return 0. (A NaN fails
    // the comparison and stays NaN.)
    let tiny = x < -708.0;
    let xc = if tiny { -708.0 } else { x };
    let t = madd::<FMA>(xc, LOG2E, MAGIC);
    let nf = t - MAGIC;
    let n = (t.to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64);
    let r = madd::<FMA>(-nf, LN2_LO, madd::<FMA>(-nf, LN2_HI, xc));
    let mut p = C[11];
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
    if tiny { 0.0 } else { y }
}

/// `ln s` in f64 without calling libm, for `s ≥ f64::MIN_POSITIVE` (the sums of the log-sum-exp,
/// which are at least 1); NaN stays NaN.
///
/// `s = 2^e · m` with `m ∈ [√½, √2)`, `f = (m − 1)/(m + 1)`, `ln m = 2·atanh f = 2f·Σ f^{2i}/(2i + 1)`
/// (11 terms: truncation error < 3e-17 for `|f| ≤ 0.1716`), `ln s = e·ln 2 + ln m`. Accuracy:
/// within 2 ulp of `f64::ln` (tested).
#[inline(always)]
pub fn ln_with<const FMA: bool>(s: f64) -> f64 {
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const SQRT2: f64 = std::f64::consts::SQRT_2;
    let bits = s.to_bits();
    // The biased exponent as a float, exactly: 2^52 + e_biased − (2^52 + 1023).
    let e_biased = f64::from_bits(0x4330_0000_0000_0000 | (bits >> 52));
    let mut e = e_biased - 4_503_599_627_371_519.0;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > SQRT2 {
        m *= 0.5;
        e += 1.0;
    }
    let f = (m - 1.0) / (m + 1.0);
    let u = f * f;
    let mut p = 1.0 / 21.0;
    p = madd::<FMA>(p, u, 1.0 / 19.0);
    p = madd::<FMA>(p, u, 1.0 / 17.0);
    p = madd::<FMA>(p, u, 1.0 / 15.0);
    p = madd::<FMA>(p, u, 1.0 / 13.0);
    p = madd::<FMA>(p, u, 1.0 / 11.0);
    p = madd::<FMA>(p, u, 1.0 / 9.0);
    p = madd::<FMA>(p, u, 1.0 / 7.0);
    p = madd::<FMA>(p, u, 1.0 / 5.0);
    p = madd::<FMA>(p, u, 1.0 / 3.0);
    // ln m = 2f + 2f·u·p, the small part added last.
    let two_f = 2.0 * f;
    let lnm = madd::<FMA>(two_f * u, p, madd::<FMA>(e, LN2_LO, 0.0)) + two_f;
    let r = madd::<FMA>(e, LN2_HI, lnm);
    // NaN in, NaN out.
    if s.is_nan() { s } else { r }
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

with_avx2!(softmax_columns(a: &mut [f64], rows: usize, k: usize, lpx: &mut [f64], work: &mut [f64]) {
    // `a` is rows × k, column-major: column c holds log p(x_n, c) for the rows of the chunk.
    // Log-sum-exp per row, with the row maximum taken out before exponentiating:
    //   log p(x_n) = m_n + ln Σ_c exp(a_nc − m_n),  r_nc = exp(a_nc − m_n) / Σ_c exp(a_nc − m_n).
    // Column by column, so that every loop runs over contiguous rows and vectorises.
    let (mx, sum) = work[..2 * rows].split_at_mut(rows);
    let lpx = &mut lpx[..rows];
    mx.copy_from_slice(&a[..rows]);
    for c in 1..k {
        // `f64::max`, not a conditional assignment (which compiles to slow masked stores).
        for (m, &v) in mx.iter_mut().zip(&a[c * rows..(c + 1) * rows]) {
            *m = m.max(v);
        }
    }
    sum.fill(0.0);
    for c in 0..k {
        let col = &mut a[c * rows..(c + 1) * rows];
        for ((v, &m), s) in col.iter_mut().zip(mx.iter()).zip(sum.iter_mut()) {
            let e = exp_nonpositive::<FMA>(*v - m);
            *v = e;
            *s += e;
        }
    }
    for ((l, s), &m) in lpx.iter_mut().zip(sum.iter_mut()).zip(mx.iter()) {
        // Every component impossible (log-weight −∞): log p(x) = −∞ as in the reference.
        *l = if m == f64::NEG_INFINITY { m } else { m + ln_with::<FMA>(*s) };
        *s = 1.0 / *s;
    }
    for c in 0..k {
        let col = &mut a[c * rows..(c + 1) * rows];
        for (v, &inv) in col.iter_mut().zip(sum.iter()) {
            *v *= inv;
        }
    }
});

with_avx2!(relative_exp_rows(v: &mut [f64], k: usize, shift: &mut [f64], ln_flush: f64) {
    // Each row of k values: its maximum m into `shift`, and exp(v − m) in place (so the row's
    // largest value becomes 1), 0 where v − m < ln_flush. A row of −∞ (every value impossible)
    // becomes zeros, shift −∞.
    for (row, s) in v.chunks_exact_mut(k).zip(shift.iter_mut()) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        *s = m;
        if m == f64::NEG_INFINITY {
            row.fill(0.0);
            continue;
        }
        for x in row.iter_mut() {
            let r = *x - m;
            let e = exp_nonpositive::<FMA>(r.max(ln_flush));
            *x = if r < ln_flush { 0.0 } else { e };
        }
    }
});

with_avx2!(relative_exp_columns(a: &mut [f64], rows: usize, k: usize, shift: &mut [f64], ln_flush: f64) {
    // What `relative_exp_rows` computes, on `a` stored column-major (rows × k: column c holds
    // the rows' values of column c), so that every loop runs over contiguous rows and
    // vectorises: each row's maximum m into `shift`, exp(v − m) in place, 0 where
    // v − m < ln_flush, and zeros (shift −∞) for a row of −∞. The same operations per value as
    // `relative_exp_rows`, so the same bits.
    let shift = &mut shift[..rows];
    shift.fill(f64::NEG_INFINITY);
    for c in 0..k {
        for (m, &v) in shift.iter_mut().zip(&a[c * rows..(c + 1) * rows]) {
            *m = m.max(v);
        }
    }
    for c in 0..k {
        let col = &mut a[c * rows..(c + 1) * rows];
        for (x, &m) in col.iter_mut().zip(shift.iter()) {
            let r = *x - m;
            let e = exp_nonpositive::<FMA>(r.max(ln_flush));
            *x = if m == f64::NEG_INFINITY || r < ln_flush { 0.0 } else { e };
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
            worst = worst.max(ulps(exp_nonpositive::<false>(x), x.exp()));
            x += 0.012_345_678_9;
        }
        for x in [
            0.0, -0.0, 1e-300, -1e-300, 1e-10, -1e-10, 0.5, -0.5, 1.0, -1.0,
        ] {
            worst = worst.max(ulps(exp_nonpositive::<false>(x), x.exp()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        let mut x = -708.0;
        while x < 709.0 {
            worst = worst.max(ulps(exp_nonpositive::<true>(x), x.exp()));
            x += 0.012_345_678_9;
        }
        assert!(worst <= 2, "worst error {worst} ulp (fused)");
        assert_eq!(exp_nonpositive::<false>(-800.0), 0.0);
        assert_eq!(exp_nonpositive::<false>(f64::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive::<false>(f64::NAN).is_nan());
    }

    #[test]
    fn ln_is_within_two_ulps_of_libm() {
        let mut worst = 0;
        let mut x = 1.0;
        while x < 1e6 {
            worst = worst.max(ulps(ln_with::<false>(x), x.ln()));
            worst = worst.max(ulps(ln_with::<true>(x), x.ln()));
            x *= 1.000_123_4;
        }
        for x in [
            1e-300, 1e-10, 0.1, 0.5, 0.707, 0.99999, 1.0, 1.0000001, 2.0, 16.0, 1e300,
        ] {
            worst = worst.max(ulps(ln_with::<false>(x), x.ln()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(ln_with::<false>(1.0), 0.0);
        assert!(ln_with::<false>(f64::NAN).is_nan());
    }

    #[test]
    fn relative_exp_columns_equals_relative_exp_rows() {
        let (rows, k) = (37, 8);
        let mut rowmajor: Vec<f64> = (0..rows * k)
            .map(|i| (i as f64 * 0.77).sin() * 300.0)
            .collect();
        // A row of −∞ (every state impossible) and one with a single possible state.
        rowmajor[3 * k..4 * k].fill(f64::NEG_INFINITY);
        rowmajor[5 * k..6 * k - 1].fill(f64::NEG_INFINITY);
        let original = rowmajor.clone();
        let mut colmajor = vec![0.0; rows * k];
        for n in 0..rows {
            for c in 0..k {
                colmajor[c * rows + n] = rowmajor[n * k + c];
            }
        }
        let (mut s_rows, mut s_cols) = (vec![0.0; rows], vec![0.0; rows]);
        relative_exp_rows(&mut rowmajor, k, &mut s_rows, -276.0);
        relative_exp_columns(&mut colmajor, rows, k, &mut s_cols, -276.0);
        assert_eq!(s_rows, s_cols);
        for n in 0..rows {
            for c in 0..k {
                assert_eq!(
                    colmajor[c * rows + n].to_bits(),
                    rowmajor[n * k + c].to_bits(),
                    "row {n} column {c}"
                );
            }
        }
        assert!(rowmajor[3 * k..4 * k].iter().all(|&v| v == 0.0));
        assert_eq!(rowmajor[6 * k - 1], 1.0);
        // Against libm's exp (the portable formula).
        for n in 0..rows {
            for c in 0..k {
                let r = original[n * k + c] - s_cols[n];
                let want = if s_cols[n] == f64::NEG_INFINITY || r < -276.0 {
                    0.0
                } else {
                    r.exp()
                };
                let got = colmajor[c * rows + n];
                assert!((got - want).abs() <= 1e-15 * want, "{got} vs {want}");
            }
        }
    }

    #[test]
    fn softmax_columns_matches_log_sum_exp() {
        let (rows, k) = (21, 3);
        let a0: Vec<f64> = (0..rows * k)
            .map(|i| (i as f64 * 0.77).sin() * 30.0)
            .collect();
        let mut a = a0.clone();
        let (mut lpx, mut work) = (vec![0.0; rows], vec![0.0; 2 * rows]);
        softmax_columns(&mut a, rows, k, &mut lpx, &mut work);
        for n in 0..rows {
            let row: Vec<f64> = (0..k).map(|c| a0[c * rows + n]).collect();
            let want = crate::numerics::log_sum_exp(&row);
            assert!((lpx[n] - want).abs() <= 1e-14 * want.abs().max(1.0));
            for c in 0..k {
                let r = (row[c] - want).exp();
                assert!((a[c * rows + n] - r).abs() <= 1e-14 * r.max(1e-300));
            }
        }
    }
}
