//! Forward-backward and Viterbi on one sequence, in f64: the CPU engine's algorithms and the
//! oracles of the GPU kernels.
//!
//! The fast path is the scaled recursion in probabilities, normalized at every step so nothing
//! under- or overflows in practice: `α̂_t ∝ (α̂_{t−1} A) ∘ b_t` and
//! `β̂_t ∝ A (e_{t+1} ∘ β̂_{t+1})` with `e_t(k) = exp(log b_k(x_t) − max_j log b_j(x_t))`, each
//! normalized to sum 1; then `γ_t ∝ α̂_t ∘ β̂_t` and `ξ_t(i, j) ∝ α̂_t(i) A_ij e_{t+1}(j)
//! β̂_{t+1}(j)`, each normalized to sum 1 (they are distributions, so the scale factors cancel).
//! The forward pass works with the shift `m_t = max_k (ln (α̂_{t−1}A)_k + log b_k(x_t))`, which
//! makes each step's normalizer `c_t ≥ 1`, and `log p(x) = Σ_t (m_t + ln c_t)`. The forward and
//! backward passes are independent (a long sequence runs them on two threads), and `γ`, `ξ` are
//! then local in time (a long sequence splits them over all threads).
//!
//! Where a normalizer still underflows (a point that every state reachable there explains with a
//! density below ~1e-300 of an unreachable state's), the sequence is redone in log space
//! ([`forward_backward_log`], hmmlearn's `implementation="log"`): exact, but slower.

use crate::error::{Error, Result};
use crate::numerics::log_sum_exp;

/// The scaled forward pass over `logb` (`[T][K]`): `alpha` (`[T][K]`) gets `α̂_t`. Returns
/// `log p(x)`, or `None` where a step's probability vanished (underflow, or an impossible
/// sequence).
pub fn forward(log_start: &[f64], a: &[f64], logb: &[f64], alpha: &mut [f64]) -> Option<f64> {
    let k = log_start.len();
    let t_len = logb.len() / k;
    let mut s = vec![0.0; k];
    let mut log_p = 0.0;
    for t in 0..t_len {
        let lb = &logb[t * k..(t + 1) * k];
        if t == 0 {
            for j in 0..k {
                s[j] = log_start[j] + lb[j];
            }
        } else {
            let (done, rest) = alpha.split_at_mut(t * k);
            let prev = &done[(t - 1) * k..];
            let pred = &mut rest[..k];
            pred.fill(0.0);
            for (i, &ai) in prev.iter().enumerate() {
                if ai != 0.0 {
                    let row = &a[i * k..(i + 1) * k];
                    pred.iter_mut().zip(row).for_each(|(p, &r)| *p += ai * r);
                }
            }
            for j in 0..k {
                s[j] = pred[j].ln() + lb[j];
            }
        }
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !m.is_finite() {
            return None;
        }
        let row = &mut alpha[t * k..(t + 1) * k];
        let mut c = 0.0;
        for j in 0..k {
            row[j] = (s[j] - m).exp();
            c += row[j];
        }
        row.iter_mut().for_each(|v| *v /= c);
        log_p += m + c.ln();
    }
    Some(log_p)
}

/// `e_t(k) = exp(log b_k(x_t) − max_j log b_j(x_t))` into `out` (`[K]`).
fn relative_densities(lb: &[f64], out: &mut [f64]) {
    let m = lb.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    out.iter_mut()
        .zip(lb)
        .for_each(|(o, &l)| *o = (l - m).exp());
}

/// The scaled backward pass over `logb` (`[T][K]`): `beta` (`[T][K]`) gets `β̂_t` (each step
/// normalized to sum 1). `false` where a step's vector vanished.
pub fn backward(a: &[f64], logb: &[f64], beta: &mut [f64]) -> bool {
    let k = (a.len() as f64).sqrt() as usize;
    let t_len = logb.len() / k;
    if t_len == 0 {
        return true;
    }
    beta[(t_len - 1) * k..].fill(1.0 / k as f64);
    let mut w = vec![0.0; k];
    for t in (0..t_len - 1).rev() {
        relative_densities(&logb[(t + 1) * k..(t + 2) * k], &mut w);
        let (head, tail) = beta.split_at_mut((t + 1) * k);
        w.iter_mut().zip(&tail[..k]).for_each(|(w, b)| *w *= b);
        let out = &mut head[t * k..];
        let mut sum = 0.0;
        for i in 0..k {
            let row = &a[i * k..(i + 1) * k];
            out[i] = row.iter().zip(&w).map(|(r, w)| r * w).sum();
            sum += out[i];
        }
        if !(sum > 0.0 && sum.is_finite()) {
            return false;
        }
        out.iter_mut().for_each(|v| *v /= sum);
    }
    true
}

/// Posteriors of the steps `range` (`t0 = range.start`): `alpha` holds `α̂_t` of those steps
/// (`[len][K]`, as [`forward`] wrote them) and is overwritten with `γ_t`; `beta` is the whole
/// sequence's `β̂` (as [`backward`] wrote it). `Σ ξ_t` over the `t` in `range` with `t + 1 < T`
/// is added into `xi` (`[K][K]`). `false` where a normalizer vanished (then `alpha` is partly
/// overwritten).
pub fn posteriors(
    a: &[f64],
    logb: &[f64],
    alpha: &mut [f64],
    beta: &[f64],
    t0: usize,
    range: std::ops::Range<usize>,
    xi: &mut [f64],
) -> bool {
    let k = (a.len() as f64).sqrt() as usize;
    let t_len = logb.len() / k;
    let mut w = vec![0.0; k];
    let mut xi_t = vec![0.0; k * k];
    for t in range {
        let al = &mut alpha[(t - t0) * k..(t - t0 + 1) * k];
        if t + 1 < t_len {
            relative_densities(&logb[(t + 1) * k..(t + 2) * k], &mut w);
            w.iter_mut()
                .zip(&beta[(t + 1) * k..(t + 2) * k])
                .for_each(|(w, b)| *w *= b);
            let mut z = 0.0;
            for i in 0..k {
                let ai = al[i];
                let row = &a[i * k..(i + 1) * k];
                let out = &mut xi_t[i * k..(i + 1) * k];
                for j in 0..k {
                    out[j] = ai * row[j] * w[j];
                    z += out[j];
                }
            }
            if !(z > 0.0 && z.is_finite()) {
                return false;
            }
            xi.iter_mut().zip(&xi_t).for_each(|(x, v)| *x += v / z);
        }
        let be = &beta[t * k..(t + 1) * k];
        let mut sum = 0.0;
        for j in 0..k {
            al[j] *= be[j];
            sum += al[j];
        }
        if !(sum > 0.0 && sum.is_finite()) {
            return false;
        }
        al.iter_mut().for_each(|v| *v /= sum);
    }
    true
}

/// Forward-backward in log space (hmmlearn's `implementation="log"`), the exact fallback of the
/// scaled path and the oracle of the tests: writes `γ_t` into `gamma` (`[T][K]`), adds `Σ ξ_t`
/// into `xi` (`[K][K]`) and returns `log p(x)`. An error when the sequence is impossible under
/// the model (`log p(x) = −∞`).
pub fn forward_backward_log(
    log_start: &[f64],
    log_a: &[f64],
    logb: &[f64],
    gamma: &mut [f64],
    xi: &mut [f64],
) -> Result<f64> {
    let k = log_start.len();
    let t_len = logb.len() / k;
    let mut fwd = vec![0.0; t_len * k];
    let mut bwd = vec![0.0; t_len * k];
    let mut tmp = vec![0.0; k];
    for t in 0..t_len {
        for j in 0..k {
            fwd[t * k + j] = logb[t * k + j]
                + if t == 0 {
                    log_start[j]
                } else {
                    for i in 0..k {
                        tmp[i] = fwd[(t - 1) * k + i] + log_a[i * k + j];
                    }
                    log_sum_exp(&tmp)
                };
        }
    }
    let log_p = log_sum_exp(&fwd[(t_len.max(1) - 1) * k..]);
    if !log_p.is_finite() {
        return Err(Error::Numerical(format!(
            "a sequence has probability {} under the model (log-likelihood {log_p}); check that its startprob and transmat allow it, or scale the data",
            log_p.exp()
        )));
    }
    for t in (0..t_len.saturating_sub(1)).rev() {
        for i in 0..k {
            for j in 0..k {
                tmp[j] = log_a[i * k + j] + logb[(t + 1) * k + j] + bwd[(t + 1) * k + j];
            }
            bwd[t * k + i] = log_sum_exp(&tmp);
        }
    }
    for t in 0..t_len {
        for j in 0..k {
            gamma[t * k + j] = (fwd[t * k + j] + bwd[t * k + j] - log_p).exp();
        }
        if t + 1 < t_len {
            for i in 0..k {
                for j in 0..k {
                    xi[i * k + j] += (fwd[t * k + i]
                        + log_a[i * k + j]
                        + logb[(t + 1) * k + j]
                        + bwd[(t + 1) * k + j]
                        - log_p)
                        .exp();
                }
            }
        }
    }
    Ok(log_p)
}

/// The most likely state path (Viterbi, in log space) of `logb` (`[T][K]`) into `states`
/// (`[T]`), and its log-probability. Ties go to the lowest state index (numpy's `argmax`).
pub fn viterbi(log_start: &[f64], log_a: &[f64], logb: &[f64], states: &mut [usize]) -> f64 {
    let k = log_start.len();
    let t_len = logb.len() / k;
    if t_len == 0 {
        return 0.0;
    }
    let mut delta: Vec<f64> = (0..k).map(|j| log_start[j] + logb[j]).collect();
    let mut next = vec![0.0; k];
    let mut back = vec![0u32; t_len * k];
    for t in 1..t_len {
        for j in 0..k {
            let (mut best, mut arg) = (f64::NEG_INFINITY, 0usize);
            for i in 0..k {
                let v = delta[i] + log_a[i * k + j];
                if v > best {
                    (best, arg) = (v, i);
                }
            }
            next[j] = best + logb[t * k + j];
            back[t * k + j] = arg as u32;
        }
        std::mem::swap(&mut delta, &mut next);
    }
    let (mut best, mut arg) = (f64::NEG_INFINITY, 0usize);
    for (j, &v) in delta.iter().enumerate() {
        if v > best {
            (best, arg) = (v, j);
        }
    }
    states[t_len - 1] = arg;
    for t in (1..t_len).rev() {
        arg = back[t * k + arg] as usize;
        states[t - 1] = arg;
    }
    best
}
