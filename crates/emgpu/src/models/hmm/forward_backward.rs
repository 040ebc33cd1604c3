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

/// The forward passes of two sequences that start at their first step, interleaved step by step:
/// the two chains of dependent operations are independent, so the core runs one while the other
/// waits on its latency. Each sequence gets exactly what [`forward`] gives it (the same
/// operations in the same order, so the same bits); the sequences may differ in length (the
/// longer one's rest runs alone).
pub fn forward_pair(
    start: &[f64],
    a: &[f64],
    first: (&[f64], &[f64], &mut [f64]),
    second: (&[f64], &[f64], &mut [f64]),
) -> (Option<f64>, Option<f64>) {
    let (e0, s0, al0) = first;
    let (e1, s1, al1) = second;
    let n = s0.len().min(s1.len());
    let k = start.len();
    let mut carries = (None, None);
    let ok = by_states!(
        k,
        forward_pair_k(
            start,
            a,
            &e0[..n * k],
            &s0[..n],
            &mut al0[..n * k],
            &e1[..n * k],
            &s1[..n],
            &mut al1[..n * k],
            &mut carries
        )
    );
    let (mut c0, mut c1) = carries;
    let ok0 = ok[0]
        && (n == s0.len()
            || forward_block(start, a, &e0[n * k..], &s0[n..], &mut al0[n * k..], &mut c0));
    let ok1 = ok[1]
        && (n == s1.len()
            || forward_block(start, a, &e1[n * k..], &s1[n..], &mut al1[n * k..], &mut c1));
    let lp = |ok: bool, c: Option<ForwardCarry>| ok.then(|| c.map_or(0.0, |c| c.log_likelihood()));
    (lp(ok0, c0), lp(ok1, c1))
}

/// One step `t` of [`forward_body`] (the same operations): row `t` of `alpha` from row `t − 1`
/// (or from `start` at `t = 0`); `false` where the normalizer fell below [`MIN_NORMALIZER`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_step<const K: usize>(
    start: &[f64],
    a: &[f64],
    e: &[f64],
    shift: &[f64],
    alpha: &mut [f64],
    t: usize,
    odd: &mut [f64],
    state: &mut (f64, f64),
) -> bool {
    let k = states::<K>(start.len());
    let (done, rest) = alpha.split_at_mut(t * k);
    let row = &mut rest[..k];
    let et = &e[t * k..(t + 1) * k];
    if t == 0 {
        for j in 0..k {
            row[j] = start[j] * et[j];
        }
    } else {
        combine_rows(k, &done[(t - 1) * k..t * k], a, row, odd);
        for j in 0..k {
            row[j] *= et[j];
        }
    }
    let (log_p, mass) = state;
    let sum: f64 = row.iter().sum();
    let ok = sum >= MIN_NORMALIZER * *mass && sum.is_finite();
    *log_p += shift[t];
    *mass = sum;
    if sum < RESCALE_BELOW {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
        *log_p += sum.ln();
        *mass = 1.0;
    }
    ok
}

/// The two interleaved forward passes of [`forward_pair`] over the same number of steps.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_pair_body<const K: usize>(
    start: &[f64],
    a: &[f64],
    e0: &[f64],
    s0: &[f64],
    al0: &mut [f64],
    e1: &[f64],
    s1: &[f64],
    al1: &mut [f64],
    carries: &mut (Option<ForwardCarry>, Option<ForwardCarry>),
) -> [bool; 2] {
    let k = states::<K>(start.len());
    let a = &a[..k * k];
    let n = s0.len();
    let (mut odd0, mut odd1) = (vec![0.0; k], vec![0.0; k]);
    let (mut st0, mut st1) = ((0.0, 1.0), (0.0, 1.0));
    let mut ok = [true; 2];
    for t in 0..n {
        // A failed sequence runs on (its result is dropped): no branch between the chains.
        ok[0] &= forward_step::<K>(start, a, e0, s0, al0, t, &mut odd0, &mut st0);
        ok[1] &= forward_step::<K>(start, a, e1, s1, al1, t, &mut odd1, &mut st1);
    }
    if n > 0 {
        let carry = |al: &[f64], (log_p, mass): (f64, f64)| ForwardCarry {
            row: al[(n - 1) * k..n * k].to_vec(),
            mass,
            log_p,
        };
        *carries = (Some(carry(al0, st0)), Some(carry(al1, st1)));
    }
    ok
}

simd_variants!(forward_pair_k, forward_pair_body, (start: &[f64], a: &[f64], e0: &[f64], s0: &[f64], al0: &mut [f64], e1: &[f64], s1: &[f64], al1: &mut [f64], carries: &mut (Option<ForwardCarry>, Option<ForwardCarry>)) -> [bool; 2]);

/// The backward pass fused with the posteriors: what [`backward`] then [`posteriors`] compute
/// (up to rounding), in one pass that never stores the backward rows. `alpha` (`[T][K]`) holds
/// the sequence's `α̂_t` (as [`forward`] wrote them) and is overwritten with `γ_t`; `Σ ξ_t` is
/// added into `xi` (`[K][K]`). `false` where a normalizer fell below [`MIN_NORMALIZER`] (then
/// `alpha` is partly overwritten and `xi` unchanged).
pub fn backward_posteriors(a: &[f64], e: &[f64], alpha: &mut [f64], xi: &mut [f64]) -> bool {
    backward_posteriors_block(a, e, None, alpha, xi, &mut None, &mut Vec::new())
}

/// [`backward_posteriors`] over one block of steps (`e`, `alpha`: the block's rows), continuing
/// from `carry` (the block after it; `None`: the block ends the sequence), which it updates as
/// [`backward_block`] does; `e_next` is the first row of `e` after the block (`None` at the end of
/// the sequence). `Σ ξ_t` over the block's steps that have a next step (the last one's next step
/// is in the block after) is added into `xi`. `scratch` is resized to `2 T K` values.
///
/// Step by step (the backward pass of [`backward`], with the posteriors of [`posteriors`] of the
/// same step computed while the row is at hand): `w_{t+1} = e_{t+1} ∘ β̂_{t+1}`,
/// `b = A w_{t+1}` (then rescaled, lazily, into `β̂_t`), `z_t = Σ_i α̂_t(i) b(i)`,
/// `γ_t = α̂_t ∘ b / z_t`; the rows `C_t = α̂_t / z_t` and `w_{t+1}` go to `scratch`, and at the
/// end `xi += A ∘ (Cᵀ W)` (one matrix product). The chain of dependent operations from one step
/// to the next is the backward pass's; the posteriors fill its latency.
pub fn backward_posteriors_block(
    a: &[f64],
    e: &[f64],
    e_next: Option<&[f64]>,
    alpha: &mut [f64],
    xi: &mut [f64],
    carry: &mut Option<BackwardCarry>,
    scratch: &mut Vec<f64>,
) -> bool {
    let k = states_of(a);
    let len = e.len() / k.max(1);
    if len == 0 {
        return true;
    }
    scratch.resize(2 * len * k, 0.0);
    let cw = &mut scratch[..2 * len * k];
    if !by_states!(k, backward_posteriors_k(k, a, e, e_next, alpha, carry, cw)) {
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

#[inline(always)]
fn backward_posteriors_body<const K: usize>(
    k: usize,
    a: &[f64],
    e: &[f64],
    e_next: Option<&[f64]>,
    alpha: &mut [f64],
    carry: &mut Option<BackwardCarry>,
    cw: &mut [f64],
) -> bool {
    let k = states::<K>(k);
    let a = &a[..k * k];
    let t_len = e.len() / k;
    let (c, w) = cw.split_at_mut(t_len * k);
    // Aᵀ, so that A w is a sum of columns (vectorized over i) rather than K dot products.
    let mut at = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            at[j * k + i] = a[i * k + j];
        }
    }
    // `bn`: β̂_{t+1}; `b`: the new row.
    let (mut bn, mut b, mut odd) = (vec![0.0; k], vec![0.0; k], vec![0.0; k]);
    let (mut mass, last) = match (carry.as_ref(), e_next) {
        (None, _) => {
            // The last step: β̂ = 1/K, γ ∝ α̂; no transition after it.
            let t = t_len - 1;
            bn.fill(1.0 / k as f64);
            let al = &mut alpha[t * k..(t + 1) * k];
            let mut g = 0.0;
            for j in 0..k {
                g += al[j] * bn[j];
            }
            if !(g > 0.0 && g.is_finite()) {
                return false;
            }
            let inv_g = 1.0 / g;
            for j in 0..k {
                al[j] = al[j] * bn[j] * inv_g;
            }
            c[t * k..].fill(0.0);
            w[t * k..].fill(0.0);
            (1.0, t_len - 1)
        }
        (Some(cr), Some(_)) => {
            bn.copy_from_slice(&cr.row[..k]);
            (cr.mass, t_len)
        }
        (Some(_), None) => return false,
    };
    for t in (0..last).rev() {
        let en = if t + 1 < t_len {
            &e[(t + 1) * k..(t + 2) * k]
        } else {
            match e_next {
                Some(en) => &en[..k],
                None => return false,
            }
        };
        let wl = &mut w[t * k..(t + 1) * k];
        for j in 0..k {
            wl[j] = en[j] * bn[j];
        }
        // A w = w Aᵀ.
        combine_rows(k, wl, &at, &mut b, &mut odd);
        let sum: f64 = b.iter().sum();
        if !(sum >= MIN_NORMALIZER * mass && sum.is_finite()) {
            return false;
        }
        // The posteriors of step t, off the chain.
        let al = &mut alpha[t * k..(t + 1) * k];
        let mut z = 0.0;
        for j in 0..k {
            z += al[j] * b[j];
        }
        if !(z > 0.0 && z.is_finite()) {
            return false;
        }
        let inv_z = 1.0 / z;
        let cl = &mut c[t * k..(t + 1) * k];
        for j in 0..k {
            cl[j] = al[j] * inv_z;
            al[j] = al[j] * b[j] * inv_z;
        }
        mass = sum;
        if sum < RESCALE_BELOW {
            let inv = 1.0 / sum;
            b.iter_mut().for_each(|v| *v *= inv);
            mass = 1.0;
        }
        std::mem::swap(&mut bn, &mut b);
    }
    *carry = Some(BackwardCarry { row: bn, mass });
    true
}

simd_variants!(backward_posteriors_k, backward_posteriors_body, (k: usize, a: &[f64], e: &[f64], e_next: Option<&[f64]>, alpha: &mut [f64], carry: &mut Option<BackwardCarry>, cw: &mut [f64]) -> bool);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A row-stochastic `[K][K]` matrix, a start distribution and relative densities `[T][K]`
    /// in (0, 1] with each row's maximum 1 (as [`relative_densities`] makes them), small enough
    /// that the recursions rescale every few steps.
    fn case(k: usize, t: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut next = || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64 / (1u64 << 53) as f64).max(1e-3)
        };
        let mut a: Vec<f64> = (0..k * k).map(|_| next()).collect();
        for row in a.chunks_mut(k) {
            let sum: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum);
        }
        let start: Vec<f64> = (0..k).map(|_| 1.0 / k as f64).collect();
        let mut e: Vec<f64> = (0..t * k).map(|_| next().powi(6)).collect();
        for row in e.chunks_mut(k) {
            let m = row.iter().copied().fold(0.0, f64::max);
            row.iter_mut().for_each(|v| *v /= m);
        }
        let shift: Vec<f64> = (0..t).map(|i| -(i as f64 % 7.0)).collect();
        (start, a, e, shift)
    }

    fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= rtol * w.abs().max(1e-300) + 1e-300,
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn forward_pair_gives_each_sequence_the_bits_of_forward() {
        for k in [2, 3, 7, 8, 16] {
            for (t0, t1) in [(300, 300), (300, 123), (1, 40), (57, 1)] {
                let (start, a, e0, s0) = case(k, t0, 1 + k as u64);
                let (_, _, e1, s1) = case(k, t1, 100 + t1 as u64);
                let mut want0 = vec![0.0; t0 * k];
                let mut want1 = vec![0.0; t1 * k];
                let lp0 = forward(&start, &a, &e0, &s0, &mut want0);
                let lp1 = forward(&start, &a, &e1, &s1, &mut want1);
                let (mut got0, mut got1) = (vec![0.0; t0 * k], vec![0.0; t1 * k]);
                let lps = forward_pair(&start, &a, (&e0, &s0, &mut got0), (&e1, &s1, &mut got1));
                assert_eq!(
                    lps.0.map(f64::to_bits),
                    lp0.map(f64::to_bits),
                    "k {k} t {t0}"
                );
                assert_eq!(lps.1.map(f64::to_bits), lp1.map(f64::to_bits));
                assert!(lp0.is_some() && lp1.is_some());
                assert_eq!(got0, want0, "k {k}");
                assert_eq!(got1, want1, "k {k}");
            }
        }
    }

    #[test]
    fn forward_pair_reports_the_sequence_that_underflows_and_only_it() {
        let k = 3;
        let (start, a, e0, s0) = case(k, 50, 7);
        let (_, _, mut e1, s1) = case(k, 50, 8);
        // A step that no state explains: the normalizer vanishes.
        e1[20 * k..21 * k].fill(0.0);
        let (mut g0, mut g1) = (vec![0.0; 50 * k], vec![0.0; 50 * k]);
        let (lp0, lp1) = forward_pair(&start, &a, (&e0, &s0, &mut g0), (&e1, &s1, &mut g1));
        assert_eq!(lp0, forward(&start, &a, &e0, &s0, &mut vec![0.0; 50 * k]));
        assert!(lp0.is_some());
        assert!(lp1.is_none());
    }

    #[test]
    fn the_fused_backward_pass_equals_backward_then_posteriors() {
        for k in [2, 3, 7, 8, 16] {
            for t in [1, 2, 9, 500] {
                let (start, a, e, shift) = case(k, t, 3 + t as u64);
                let mut alpha = vec![0.0; t * k];
                forward(&start, &a, &e, &shift, &mut alpha).unwrap();
                // Two passes.
                let (mut beta, mut norms) = (vec![0.0; t * k], vec![0.0; t]);
                assert!(backward(&a, &e, &mut beta, &mut norms));
                let (mut want, mut xi_want) = (alpha.clone(), vec![0.0; k * k]);
                assert!(posteriors(
                    &a,
                    &e,
                    &beta,
                    &norms,
                    None,
                    &mut want,
                    &mut xi_want
                ));
                // Fused, whole sequence.
                let (mut got, mut xi) = (alpha.clone(), vec![0.0; k * k]);
                assert!(backward_posteriors(&a, &e, &mut got, &mut xi));
                assert_close("gamma", &got, &want, 1e-13);
                assert_close("xi", &xi, &xi_want, 1e-12);
                // Fused, block by block from the end, carrying the backward row.
                let (mut got, mut xi) = (alpha.clone(), vec![0.0; k * k]);
                let (mut carry, mut scratch) = (None, Vec::new());
                let block = 64;
                let starts: Vec<usize> = (0..t).step_by(block).collect();
                for &b0 in starts.iter().rev() {
                    let b1 = (b0 + block).min(t);
                    let e_next = (b1 < t).then(|| &e[b1 * k..(b1 + 1) * k]);
                    assert!(backward_posteriors_block(
                        &a,
                        &e[b0 * k..b1 * k],
                        e_next,
                        &mut got[b0 * k..b1 * k],
                        &mut xi,
                        &mut carry,
                        &mut scratch,
                    ));
                }
                assert_close("gamma (blocks)", &got, &want, 1e-13);
                assert_close("xi (blocks)", &xi, &xi_want, 1e-12);
                // The carry is the backward row of the first step.
                let row = carry.expect("a carry").row;
                assert_close("carry", &row, &beta[..k], 1e-13);
            }
        }
    }

    #[test]
    fn the_fused_backward_pass_fails_where_a_normalizer_vanishes() {
        let k = 4;
        let (start, a, mut e, shift) = case(k, 30, 5);
        let mut alpha = vec![0.0; 30 * k];
        forward(&start, &a, &e, &shift, &mut alpha).unwrap();
        e[10 * k..11 * k].fill(0.0);
        let mut xi = vec![0.0; k * k];
        assert!(!backward_posteriors(&a, &e, &mut alpha, &mut xi));
        assert!(xi.iter().all(|&v| v == 0.0), "xi unchanged on failure");
    }

    /// The kernels compiled for the baseline target (the portable twins) against what the
    /// run-time dispatch runs (AVX2 + FMA where the CPU has them): the same bits, as no fused
    /// multiply-add is introduced.
    #[test]
    fn the_dispatched_kernels_equal_their_portable_twins() {
        let (k, t) = (8, 300);
        let (start, a, e0, s0) = case(k, t, 11);
        let (_, _, e1, s1) = case(k, t, 12);
        let run_pair = |dispatched: bool| {
            let (mut g0, mut g1) = (vec![0.0; t * k], vec![0.0; t * k]);
            let mut carries = (None, None);
            let ok = if dispatched {
                forward_pair_k::<8>(
                    &start,
                    &a,
                    &e0,
                    &s0,
                    &mut g0,
                    &e1,
                    &s1,
                    &mut g1,
                    &mut carries,
                )
            } else {
                forward_pair_body::<8>(
                    &start,
                    &a,
                    &e0,
                    &s0,
                    &mut g0,
                    &e1,
                    &s1,
                    &mut g1,
                    &mut carries,
                )
            };
            (ok, g0, g1)
        };
        assert_eq!(run_pair(true), run_pair(false));
        let mut alpha = vec![0.0; t * k];
        forward(&start, &a, &e0, &s0, &mut alpha).unwrap();
        let run_fused = |dispatched: bool| {
            let (mut g, mut cw) = (alpha.clone(), vec![0.0; 2 * t * k]);
            let mut carry = None;
            let ok = if dispatched {
                backward_posteriors_k::<8>(k, &a, &e0, None, &mut g, &mut carry, &mut cw)
            } else {
                backward_posteriors_body::<8>(k, &a, &e0, None, &mut g, &mut carry, &mut cw)
            };
            (ok, g, cw, carry.map(|c| (c.row, c.mass)))
        };
        assert_eq!(run_fused(true), run_fused(false));
    }
}
