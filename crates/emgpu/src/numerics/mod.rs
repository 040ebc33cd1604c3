//! Numerical building blocks shared by the models: Cholesky and triangular helpers over faer
//! ([`linalg`]), vectorised `exp`/`ln` and quadratic features for the blocked CPU path
//! ([`vmath`]), and the log-sum-exp used wherever responsibilities are normalized.

pub mod linalg;
pub mod special;
pub mod vmath;

/// `log Σ exp(v)`, stable: the maximum is taken out before exponentiating.
#[inline]
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// `‖a − b‖²`, with four partial sums (vectorizes; the rounding is that of a 4-way split sum).
#[inline]
pub fn sq_distance(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, ar) = a.split_at(a.len() - a.len() % 4);
    let (b4, br) = b.split_at(a4.len());
    for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        for l in 0..4 {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ar.iter().zip(br) {
        let t = x - y;
        s += t * t;
    }
    s
}
