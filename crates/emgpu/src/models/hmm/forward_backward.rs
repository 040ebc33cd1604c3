//! Forward-backward and Viterbi on one sequence, in f64: the CPU engine's algorithms and the
//! oracles of the GPU kernels.
//!
//! The fast path is the scaled recursion in probabilities (hmmlearn's `implementation="scaling"`,
//! made safe against the underflow of emission densities). The emission log-densities of a step
//! are turned into relative densities `e_t(k) = exp(log b_k(x_t) − s_t)` with
//! `s_t = max_k log b_k(x_t)` ([`relative_densities`]: one exponential per state and step, then
//! none in the recursions). Then, with `∝` meaning "up to a positive factor":
//!
//! ```text
//! α̂_0 ∝ π ∘ e_0,   α̂_t ∝ (α̂_{t−1} A) ∘ e_t,   c_t = the normalizer of α̂_t
//! β̂_{T−1} ∝ 1,     β̂_t ∝ A (e_{t+1} ∘ β̂_{t+1})
//! γ_t ∝ α̂_t ∘ β̂_t,  ξ_t(i, j) ∝ α̂_t(i) A_ij e_{t+1}(j) β̂_{t+1}(j)
//! log p(x) = Σ_t (s_t + ln c_t)
//! ```
//!
//! `γ_t` and `ξ_t` are distributions, so the factors cancel: the vectors are rescaled only when
//! their sum falls below 1e-30 (keeping the sum and division off the step-to-step dependency
//! chain), and the factors taken out are added to `log p(x)`. The forward and backward passes
//! are independent (a long sequence runs them on two threads), and `γ`, `ξ` are then local in
//! time (a long sequence splits them over all threads); `Σ_t ξ_t` is one matrix product per span
//! of steps ([`posteriors`]).
//!
//! Where a normalizer falls below [`MIN_NORMALIZER`] (a step that every state the sequence can be
//! in explains with a density below ~1e-100 of the best state's, e.g. a point near a state that
//! cannot be reached), the caller redoes the sequence in log space ([`forward_backward_log`],
//! hmmlearn's `implementation="log"`): exact, slower.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::error::{Error, Result};
use crate::numerics::log_sum_exp;

/// Smallest normalizer the scaled recursions accept; below it the sequence is redone in log
/// space.
pub const MIN_NORMALIZER: f64 = 1e-100;

/// The recursions rescale a vector (to sum 1) only when its sum falls below this, not at every
/// step: the division and the sum then leave the chain of dependent operations from one step to
/// the next. Entries stay far above the subnormal range (≥ 1e-30 · 1e-100 · 1e-120).
const RESCALE_BELOW: f64 = 1e-30;

/// Relative densities below `e^LN_FLUSH` (1e-120) are set to 0: their share of any normalizer
/// the recursions accept is below 1e-20, and keeping them would bring subnormal numbers (tens of
/// times slower arithmetic) into the recursions.
pub const LN_FLUSH: f64 = -276.0;

/// Turns the log-densities `v` (`[T][K]`) into relative densities in place, each step's maximum
/// into `shift` (`[T]`): `e_t(k) = exp(log b_k(x_t) − s_t)` (see the module docs), 0 below
/// `e^`[`LN_FLUSH`].
pub fn relative_densities(v: &mut [f64], k: usize, shift: &mut [f64]) {
    crate::numerics::vmath::relative_exp_rows(v, k, shift, LN_FLUSH);
}

/// Calls `$f::<K>(args)` with `K` the number of states `$k` as a constant for the common sizes
/// (the loops over states then unroll and vectorize), `K = 0` (sizes read at run time) otherwise.
macro_rules! by_states {
    ($k:expr, $f:ident ( $($arg:expr),* )) => {
        match $k {
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            8 => $f::<8>($($arg),*),
            10 => $f::<10>($($arg),*),
            12 => $f::<12>($($arg),*),
            16 => $f::<16>($($arg),*),
            _ => $f::<0>($($arg),*),
        }
    };
}

/// Defines `$name::<K>(args)`, which runs `$body::<K>(args)` compiled for AVX2 + FMA when the CPU
/// has them (chosen at run time), else for the baseline target. (AVX-512 measured slower: 75
/// against 48 ns per step at K = 8.) No fused multiply-adds
/// are introduced (Rust does not contract `a * b + c`), so every variant gives the same bits.
macro_rules! simd_variants {
    ($name:ident, $body:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        #[allow(clippy::too_many_arguments)]
        fn $name<const K: usize>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2<const K: usize>($($arg: $ty),*) -> $ret {
                    $body::<K>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA, checked above.
                    return unsafe { avx2::<K>($($arg),*) };
                }
            }
            $body::<K>($($arg),*)
        }
    };
}

simd_variants!(forward_k, forward_body, (start: &[f64], a: &[f64], e: &[f64], shift: &[f64], alpha: &mut [f64], carry: &mut Option<ForwardCarry>) -> bool);
simd_variants!(backward_k, backward_body, (k: usize, a: &[f64], e: &[f64], e_next: Option<&[f64]>, beta: &mut [f64], norms: &mut [f64], carry: &mut Option<BackwardCarry>) -> bool);

/// The number of states: `K` when it is a compile-time size, else `k`.
#[inline(always)]
fn states<const K: usize>(k: usize) -> usize {
    if K > 0 { K } else { k }
}

/// `out = Σ_i c_i · M_i` (the rows `M_i` of the row-major `[K][K]` matrix `m`), summed as two
/// independent series (even and odd i, `odd` as scratch), which halves the chain of dependent
/// additions from one step of a recursion to the next.
#[inline(always)]
fn combine_rows(k: usize, c: &[f64], m: &[f64], out: &mut [f64], odd: &mut [f64]) {
    let (out, odd) = (&mut out[..k], &mut odd[..k]);
    out.fill(0.0);
    odd.fill(0.0);
    let mut i = 0;
    while i + 1 < k {
        let (c0, c1) = (c[i], c[i + 1]);
        let (r0, r1) = (&m[i * k..(i + 1) * k], &m[(i + 1) * k..(i + 2) * k]);
        for j in 0..k {
            out[j] += c0 * r0[j];
            odd[j] += c1 * r1[j];
        }
        i += 2;
    }
    if i < k {
        let (c0, r0) = (c[i], &m[i * k..(i + 1) * k]);
        for j in 0..k {
            out[j] += c0 * r0[j];
        }
    }
    for j in 0..k {
        out[j] += odd[j];
    }
}

/// The number of states of a `[K][K]` transition matrix.
fn states_of(a: &[f64]) -> usize {
    (1..=a.len()).find(|k| k * k >= a.len()).unwrap_or(0)
}

/// Where a forward pass stopped between two blocks of steps: the last row (up to a factor), its
/// sum, and the log of the factors taken out so far plus the shifts.
#[derive(Debug, Clone)]
pub struct ForwardCarry {
    row: Vec<f64>,
    mass: f64,
    log_p: f64,
}

impl ForwardCarry {
    /// `log p(x_0, …, x_t)` of the steps so far.
    pub fn log_likelihood(&self) -> f64 {
        self.log_p + self.mass.ln()
    }
}

/// Where a backward pass stopped: the first row of the block after (`β`, up to a factor) and
/// its sum.
#[derive(Debug, Clone)]
pub struct BackwardCarry {
    row: Vec<f64>,
    mass: f64,
}

impl BackwardCarry {
    /// The backward row of the first step the pass has covered (`β_t` as [`backward`] stores
    /// it, the `next` row of [`posteriors`] for the block before).
    pub fn row(&self) -> &[f64] {
        &self.row
    }
}

/// The scaled forward pass over the relative densities `e` (`[T][K]`) and their shifts:
/// `alpha` (`[T][K]`) gets `α̂_t` up to a positive factor per step (rescaled lazily; [`posteriors`]
/// needs only the direction). Returns `log p(x)`, or `None` where a normalizer fell below
/// [`MIN_NORMALIZER`].
pub fn forward(
    start: &[f64],
    a: &[f64],
    e: &[f64],
    shift: &[f64],
    alpha: &mut [f64],
) -> Option<f64> {
    let mut carry = None;
    if !forward_block(start, a, e, shift, alpha, &mut carry) {
        return None;
    }
    Some(carry.map_or(0.0, |c| c.log_likelihood()))
}

/// [`forward`] over one block of steps (`e`, `shift`, `alpha`: the block's rows), continuing
/// from `carry` (`None`: the block starts the sequence), which it updates. `false` where a
/// normalizer fell below [`MIN_NORMALIZER`].
pub fn forward_block(
    start: &[f64],
    a: &[f64],
    e: &[f64],
    shift: &[f64],
    alpha: &mut [f64],
    carry: &mut Option<ForwardCarry>,
) -> bool {
    by_states!(start.len(), forward_k(start, a, e, shift, alpha, carry))
}

#[inline(always)]
fn forward_body<const K: usize>(
    start: &[f64],
    a: &[f64],
    e: &[f64],
    shift: &[f64],
    alpha: &mut [f64],
    carry: &mut Option<ForwardCarry>,
) -> bool {
    let k = states::<K>(start.len());
    let a = &a[..k * k];
    let mut odd = vec![0.0; k];
    // The rows are rescaled lazily (see RESCALE_BELOW): `mass` is the sum of the previous row,
    // `log_p` the log of the factors taken out so far plus the shifts.
    let (mut log_p, mut mass) = carry.as_ref().map_or((0.0, 1.0), |c| (c.log_p, c.mass));
    for (t, s) in shift.iter().enumerate() {
        let (done, rest) = alpha.split_at_mut(t * k);
        let row = &mut rest[..k];
        let et = &e[t * k..(t + 1) * k];
        let prev = if t > 0 {
            Some(&done[(t - 1) * k..t * k])
        } else {
            carry.as_ref().map(|c| &c.row[..k])
        };
        match prev {
            None => {
                for j in 0..k {
                    row[j] = start[j] * et[j];
                }
            }
            Some(prev) => {
                // (α̂_{t−1} A) ∘ e_t.
                combine_rows(k, prev, a, row, &mut odd);
                for j in 0..k {
                    row[j] *= et[j];
                }
            }
        }
        // c_t = sum / mass, the normalizer of the scaled recursion, must be ≥ MIN_NORMALIZER.
        let sum: f64 = row.iter().sum();
        if !(sum >= MIN_NORMALIZER * mass && sum.is_finite()) {
            return false;
        }
        log_p += s;
        mass = sum;
        if sum < RESCALE_BELOW {
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
            log_p += sum.ln();
            mass = 1.0;
        }
    }
    if let Some(last) = alpha.len().checked_sub(k).filter(|_| !shift.is_empty()) {
        *carry = Some(ForwardCarry {
            row: alpha[last..last + k].to_vec(),
            mass,
            log_p,
        });
    }
    true
}

/// The scaled backward pass over the relative densities `e` (`[T][K]`): `beta` (`[T][K]`) gets
/// `β_t = A (e_{t+1} ∘ β_{t+1}) / norms_t`, where `norms_t` is 1 except at the steps where the
/// vector was rescaled to sum 1 (then its sum), which [`posteriors`] needs. `false` where a
/// normalizer fell below [`MIN_NORMALIZER`].
pub fn backward(a: &[f64], e: &[f64], beta: &mut [f64], norms: &mut [f64]) -> bool {
    backward_block(a, e, None, beta, norms, &mut None)
}

/// [`backward`] over one block of steps (`e`, `beta`, `norms`: the block's rows), continuing
/// from `carry` (the block after it; `None`: the block ends the sequence), which it updates;
/// `e_next` is the first row of `e` after the block (`None` at the end of the sequence).
pub fn backward_block(
    a: &[f64],
    e: &[f64],
    e_next: Option<&[f64]>,
    beta: &mut [f64],
    norms: &mut [f64],
    carry: &mut Option<BackwardCarry>,
) -> bool {
    let k = states_of(a);
    by_states!(k, backward_k(k, a, e, e_next, beta, norms, carry))
}

#[inline(always)]
fn backward_body<const K: usize>(
    k: usize,
    a: &[f64],
    e: &[f64],
    e_next: Option<&[f64]>,
    beta: &mut [f64],
    norms: &mut [f64],
    carry: &mut Option<BackwardCarry>,
) -> bool {
    let k = states::<K>(k);
    let a = &a[..k * k];
    let t_len = e.len() / k;
    if t_len == 0 {
        return true;
    }
    // Aᵀ, so that A w is a sum of columns (vectorized over i) rather than K dot products.
    let mut at = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            at[j * k + i] = a[i * k + j];
        }
    }
    let (mut w, mut odd) = (vec![0.0; k], vec![0.0; k]);
    let mut mass = match (carry.as_ref(), e_next) {
        (None, _) => {
            beta[(t_len - 1) * k..t_len * k].fill(1.0 / k as f64);
            norms[t_len - 1] = 1.0;
            1.0
        }
        (Some(c), Some(_)) => c.mass,
        (Some(_), None) => return false,
    };
    let last = if carry.is_none() { t_len - 1 } else { t_len };
    for t in (0..last).rev() {
        let (head, tail) = beta.split_at_mut((t + 1) * k);
        let (en, bn) = if t + 1 < t_len {
            (&e[(t + 1) * k..(t + 2) * k], &tail[..k])
        } else {
            match (e_next, carry.as_ref()) {
                (Some(en), Some(c)) => (&en[..k], &c.row[..k]),
                _ => return false,
            }
        };
        for j in 0..k {
            w[j] = en[j] * bn[j];
        }
        // A w = w Aᵀ.
        let out = &mut head[t * k..(t + 1) * k];
        combine_rows(k, &w, &at, out, &mut odd);
        let sum: f64 = out.iter().sum();
        if !(sum >= MIN_NORMALIZER * mass && sum.is_finite()) {
            return false;
        }
        norms[t] = 1.0;
        mass = sum;
        if sum < RESCALE_BELOW {
            norms[t] = sum;
            let inv = 1.0 / sum;
            out.iter_mut().for_each(|v| *v *= inv);
            mass = 1.0;
        }
    }
    *carry = Some(BackwardCarry {
        row: beta[..k].to_vec(),
        mass,
    });
    true
}

/// Posteriors of a block of steps: `alpha` holds the block's `α̂_t` (as [`forward`] wrote them)
/// and is overwritten with `γ_t`; `e`, `beta` and `norms` are the block's rows (as
/// [`relative_densities`] and [`backward`] wrote them) and `next` the first rows of `e` and
/// `beta` after the block (`None` at the end of the sequence). `Σ ξ_t` over the block's steps
/// that have a next step is added into `xi` (`[K][K]`) when every step succeeded. `false` where
/// a normalizer vanished (then `alpha` is partly overwritten and `xi` unchanged).
///
/// With `z_t = Σ_ij α̂_t(i) A_ij w_{t+1}(j) = norms_t · Σ_i α̂_t(i) β_t(i)` and
/// `w_{t+1} = e_{t+1} ∘ β_{t+1}`, `Σ_t ξ_t(i, j) = A_ij · Σ_t (α̂_t(i) / z_t) w_{t+1}(j)`: the sum
/// is one matrix product `Cᵀ W` over the block (C, W: `[len][K]`), then scaled by `A`.
pub fn posteriors(
    a: &[f64],
    e: &[f64],
    beta: &[f64],
    norms: &[f64],
    next: Option<(&[f64], &[f64])>,
    alpha: &mut [f64],
    xi: &mut [f64],
) -> bool {
    let k = states_of(a);
    by_states!(k, posteriors_k(a, e, beta, norms, next, alpha, xi))
}

/// The element-wise part of [`posteriors`]: `γ_t` into `alpha`, and `C`, `W` into `cw`
/// (`[2][len][K]`).
#[inline(always)]
fn posteriors_rows<const K: usize>(
    k: usize,
    e: &[f64],
    beta: &[f64],
    norms: &[f64],
    next: Option<(&[f64], &[f64])>,
    alpha: &mut [f64],
    cw: &mut [f64],
) -> bool {
    let k = states::<K>(k);
    let len = norms.len();
    let (c, w) = cw.split_at_mut(len * k);
    for l in 0..len {
        let al = &mut alpha[l * k..(l + 1) * k];
        let be = &beta[l * k..(l + 1) * k];
        let mut g = 0.0;
        for j in 0..k {
            g += al[j] * be[j];
        }
        if !(g > 0.0 && g.is_finite()) {
            return false;
        }
        let (cl, wl) = (&mut c[l * k..(l + 1) * k], &mut w[l * k..(l + 1) * k]);
        let following = if l + 1 < len {
            Some((
                &e[(l + 1) * k..(l + 2) * k],
                &beta[(l + 1) * k..(l + 2) * k],
            ))
        } else {
            next.map(|(en, bn)| (&en[..k], &bn[..k]))
        };
        match following {
            Some((en, bn)) => {
                let z = norms[l] * g;
                if !(z > 0.0 && z.is_finite()) {
                    return false;
                }
                let inv_z = 1.0 / z;
                for j in 0..k {
                    cl[j] = al[j] * inv_z;
                    wl[j] = en[j] * bn[j];
                }
            }
            None => {
                cl.fill(0.0);
                wl.fill(0.0);
            }
        }
        let inv_g = 1.0 / g;
        for j in 0..k {
            al[j] = al[j] * be[j] * inv_g;
        }
    }
    true
}

simd_variants!(posteriors_rows_k, posteriors_rows, (k: usize, e: &[f64], beta: &[f64], norms: &[f64], next: Option<(&[f64], &[f64])>, alpha: &mut [f64], cw: &mut [f64]) -> bool);

fn posteriors_k<const K: usize>(
    a: &[f64],
    e: &[f64],
    beta: &[f64],
    norms: &[f64],
    next: Option<(&[f64], &[f64])>,
    alpha: &mut [f64],
    xi: &mut [f64],
) -> bool {
    let k = states_of(a);
    let len = norms.len();
    let mut cw = vec![0.0; 2 * len * k];
    if !posteriors_rows_k::<K>(k, e, beta, norms, next, alpha, &mut cw) {
        return false;
    }
    let (c, w) = cw.split_at(len * k);
    // xi += A ∘ (Cᵀ W).
    let mut m = vec![0.0; k * k];
    matmul(
        MatMut::from_row_major_slice_mut(&mut m, k, k),
        Accum::Replace,
        MatRef::from_row_major_slice(c, len, k).transpose(),
        MatRef::from_row_major_slice(w, len, k),
        1.0,
        Par::Seq,
    );
    for ((x, v), a) in xi.iter_mut().zip(&m).zip(a) {
        *x += a * v;
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
