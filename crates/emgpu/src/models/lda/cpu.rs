//! The f64 CPU E-step of LDA: the per-document fixed point of scikit-learn's
//! `_update_doc_distribution`, written for speed.
//!
//! **What it computes.** For each document (its nnz terms `w_j` with counts `c_j`) the γ
//! iterations of the module docs of [`super`], then its statistics `S[w_j] += (c_j / norm_j)·t`
//! (word-major rows of the padded K) and its part of the approximate bound. After all documents
//! `S ⊙= exp(E[log β])`, as scikit-learn's `_e_step`.
//!
//! **How it is fast.** exp(E[log β]) is word-major (`[V][K8]`, K padded to a multiple of 8 with
//! zeros), so a document's rows are gathered once into a contiguous `nnz × K8` block in reused
//! scratch (no allocation per document); every γ update is then two dense passes over that block,
//! fused: four rows' dot products with t at a time (eight independent accumulator chains), then
//! the same four rows added, scaled by `c_j / norm_j`, into the K-vector s. ψ and exp of the K
//! topics are branch-free loops ([`crate::numerics::special::digamma_sklearn_with`],
//! [`crate::numerics::vmath::exp_nonpositive`]). Every kernel is compiled twice, for the baseline
//! target and with AVX2 + FMA (chosen at run time). About `4·nnz·K` flops per γ update.
//!
//! **Parallelism and determinism.** The documents are cut into contiguous parts of about equal
//! nnz (twice the threads, fewer when `V·K` is large), each part run by one task into its own
//! `[V][K8]` buffer; the buffers are added in part order. For a given thread count the result is
//! the same from run to run; the padded topics stay exactly zero.

use std::ops::Range;

use ndarray::Array2;
use rayon::prelude::*;

use super::{
    EPS, LdaEngine, LdaModel, LdaPrepared, LdaStats, MAX_DOC_UPDATE_ITER, MEAN_CHANGE_TOL,
};
use crate::data::sparse::CountMatrix;
use crate::device::{BackendReport, cpu_report};
use crate::em::EStep;
use crate::error::Result;
use crate::numerics::special::{digamma_sklearn, digamma_sklearn_with, ln_gamma};
use crate::numerics::vmath::{exp_nonpositive, ln_with};

/// The CPU E-step engine over one count matrix.
#[derive(Debug)]
pub struct CpuLdaEngine<'a> {
    x: &'a CountMatrix,
    reason: String,
}

impl<'a> CpuLdaEngine<'a> {
    /// An engine over `x`; `reason` says why the CPU was chosen (empty when asked for).
    pub fn new(x: &'a CountMatrix, reason: String) -> Self {
        Self { x, reason }
    }
}

impl EStep<LdaModel> for CpuLdaEngine<'_> {
    fn e_step(&mut self, p: &LdaPrepared) -> Result<LdaStats> {
        Ok(e_step(self.x, p))
    }
    fn report(&self) -> BackendReport {
        cpu_report(&self.reason)
    }
}

impl LdaEngine for CpuLdaEngine<'_> {
    fn doc_topic(&mut self, p: &LdaPrepared) -> Result<Array2<f64>> {
        Ok(doc_topic(self.x, p))
    }
}

/// Per-task scratch, grown to the longest document seen and reused.
#[derive(Debug, Default)]
struct Scratch {
    block: Vec<f64>,
    dots: Vec<f64>,
    gamma: Vec<f64>,
    gamma_old: Vec<f64>,
    t: Vec<f64>,
    s: Vec<f64>,
    elog: Vec<f64>,
}

impl Scratch {
    fn new(kp: usize) -> Self {
        Self {
            gamma: vec![0.0; kp],
            gamma_old: vec![0.0; kp],
            t: vec![0.0; kp],
            s: vec![0.0; kp],
            elog: vec![0.0; kp],
            ..Self::default()
        }
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Σ of 8 lanes, pairwise.
#[inline(always)]
fn hsum(a: &[f64; 8]) -> f64 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// `dots[j] = block_j · t` for every row `j` of `block` (`m × kp`, `kp` a multiple of 8). With
/// `FMA` (instantiated only where the CPU has AVX2 and FMA) the explicit AVX2 kernel
/// [`dots_avx2`]; the portable loop otherwise.
#[inline(always)]
fn dots<const FMA: bool>(block: &[f64], t: &[f64], kp: usize, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        assert!(block.len() >= out.len() * kp && t.len() >= kp && kp.is_multiple_of(8));
        // SAFETY: `FMA` is true only in code compiled for and run on CPUs with AVX2 and FMA
        // (`run_part_dispatch`, `gammas_dispatch`); the lengths were checked just above.
        unsafe { dots_avx2(block, t, kp, out) };
        return;
    }
    for (o, row) in out.iter_mut().zip(block.chunks_exact(kp)) {
        let mut a = [0.0; 8];
        for c in (0..kp).step_by(8) {
            for l in 0..8 {
                a[l] = madd::<FMA>(row[c + l], t[c + l], a[l]);
            }
        }
        *o = hsum(&a);
    }
}

/// [`dots`] in AVX2: four rows at a time, two accumulators each (eight independent FMA chains),
/// vectorised along K; the four sums reduced together with `hadd`.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `block` must hold `out.len()` rows of `kp` values, `t` at
/// least `kp`, and `kp` must be a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots_avx2(block: &[f64], t: &[f64], kp: usize, out: &mut [f64]) {
    use std::arch::x86_64::*;
    let m = out.len();
    let bp = block.as_ptr();
    let tp = t.as_ptr();
    let mut j = 0;
    // SAFETY (all pointer reads): rows j..j+4 < m of kp values are inside `block`, c + 8 ≤ kp.
    unsafe {
        while j + 4 <= m {
            let r0 = bp.add(j * kp);
            let (r1, r2, r3) = (r0.add(kp), r0.add(2 * kp), r0.add(3 * kp));
            let z = _mm256_setzero_pd();
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            let (mut b0, mut b1, mut b2, mut b3) = (z, z, z, z);
            let mut c = 0;
            while c < kp {
                let t0 = _mm256_loadu_pd(tp.add(c));
                let t1 = _mm256_loadu_pd(tp.add(c + 4));
                a0 = _mm256_fmadd_pd(_mm256_loadu_pd(r0.add(c)), t0, a0);
                a1 = _mm256_fmadd_pd(_mm256_loadu_pd(r1.add(c)), t0, a1);
                a2 = _mm256_fmadd_pd(_mm256_loadu_pd(r2.add(c)), t0, a2);
                a3 = _mm256_fmadd_pd(_mm256_loadu_pd(r3.add(c)), t0, a3);
                b0 = _mm256_fmadd_pd(_mm256_loadu_pd(r0.add(c + 4)), t1, b0);
                b1 = _mm256_fmadd_pd(_mm256_loadu_pd(r1.add(c + 4)), t1, b1);
                b2 = _mm256_fmadd_pd(_mm256_loadu_pd(r2.add(c + 4)), t1, b2);
                b3 = _mm256_fmadd_pd(_mm256_loadu_pd(r3.add(c + 4)), t1, b3);
                c += 8;
            }
            a0 = _mm256_add_pd(a0, b0);
            a1 = _mm256_add_pd(a1, b1);
            a2 = _mm256_add_pd(a2, b2);
            a3 = _mm256_add_pd(a3, b3);
            // [a0₀+a0₁, a1₀+a1₁, a0₂+a0₃, a1₂+a1₃] and the same for rows 2, 3.
            let h01 = _mm256_hadd_pd(a0, a1);
            let h23 = _mm256_hadd_pd(a2, a3);
            let lo = _mm256_permute2f128_pd(h01, h23, 0x20);
            let hi = _mm256_permute2f128_pd(h01, h23, 0x31);
            _mm256_storeu_pd(out.as_mut_ptr().add(j), _mm256_add_pd(lo, hi));
            j += 4;
        }
        while j < m {
            let r0 = bp.add(j * kp);
            let (mut a0, mut b0) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            let mut c = 0;
            while c < kp {
                a0 = _mm256_fmadd_pd(_mm256_loadu_pd(r0.add(c)), _mm256_loadu_pd(tp.add(c)), a0);
                b0 = _mm256_fmadd_pd(
                    _mm256_loadu_pd(r0.add(c + 4)),
                    _mm256_loadu_pd(tp.add(c + 4)),
                    b0,
                );
                c += 8;
            }
            let a = _mm256_add_pd(a0, b0);
            let h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
            out[j] = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
            j += 1;
        }
    }
}

/// `s = Σ_j r_j · block_j` (`s` has `kp` values, a multiple of 8). With `FMA`, the explicit AVX2
/// kernel [`weighted_rows_avx2`].
#[inline(always)]
fn weighted_rows<const FMA: bool>(block: &[f64], r: &[f64], kp: usize, s: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        assert!(block.len() >= r.len() * kp && s.len() >= kp && kp.is_multiple_of(8));
        // SAFETY: as in `dots`; the lengths were checked just above.
        unsafe { weighted_rows_avx2(block, r, kp, s) };
        return;
    }
    s.fill(0.0);
    for (row, &rj) in block.chunks_exact(kp).zip(r) {
        for c in 0..kp {
            s[c] = madd::<FMA>(rj, row[c], s[c]);
        }
    }
}

/// [`weighted_rows`] in AVX2: `s` is swept in blocks of 8 values held in two registers while all
/// rows are added (four rows per step), so `s` is loaded and stored once per block.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `block` must hold `r.len()` rows of `kp` values, `s` at least
/// `kp`, and `kp` must be a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn weighted_rows_avx2(block: &[f64], r: &[f64], kp: usize, s: &mut [f64]) {
    use std::arch::x86_64::*;
    let m = r.len();
    let bp = block.as_ptr();
    let mut c = 0;
    // SAFETY (all pointer accesses): rows j < m of kp values are inside `block`, c + 8 ≤ kp ≤
    // s.len().
    unsafe {
        while c < kp {
            let (mut s0, mut s1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            let (mut u0, mut u1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            let mut j = 0;
            while j + 2 <= m {
                let p0 = bp.add(j * kp + c);
                let p1 = p0.add(kp);
                let (w0, w1) = (_mm256_set1_pd(r[j]), _mm256_set1_pd(r[j + 1]));
                s0 = _mm256_fmadd_pd(w0, _mm256_loadu_pd(p0), s0);
                s1 = _mm256_fmadd_pd(w0, _mm256_loadu_pd(p0.add(4)), s1);
                u0 = _mm256_fmadd_pd(w1, _mm256_loadu_pd(p1), u0);
                u1 = _mm256_fmadd_pd(w1, _mm256_loadu_pd(p1.add(4)), u1);
                j += 2;
            }
            if j < m {
                let p0 = bp.add(j * kp + c);
                let w0 = _mm256_set1_pd(r[j]);
                s0 = _mm256_fmadd_pd(w0, _mm256_loadu_pd(p0), s0);
                s1 = _mm256_fmadd_pd(w0, _mm256_loadu_pd(p0.add(4)), s1);
            }
            _mm256_storeu_pd(s.as_mut_ptr().add(c), _mm256_add_pd(s0, u0));
            _mm256_storeu_pd(s.as_mut_ptr().add(c + 4), _mm256_add_pd(s1, u1));
            c += 8;
        }
    }
}

/// Runs the γ iterations of one document (`ids`, `cnts`) under `p`: on return `sc.gamma` is γ,
/// `sc.t` = exp(E[log θ]), `sc.elog` = E[log θ] of that γ, `sc.block` holds the document's
/// exp(E[log β]) rows.
#[inline(always)]
fn doc_gamma<const FMA: bool>(ids: &[u32], cnts: &[f64], p: &LdaPrepared, sc: &mut Scratch) {
    let (k, kp) = (p.model.n_components, p.model.padded_k());
    let alpha = p.model.doc_topic_prior;
    let m = ids.len();
    if sc.block.len() < m * kp {
        sc.block.resize(m * kp, 0.0);
        sc.dots.resize(m, 0.0);
    }
    let block = &mut sc.block[..m * kp];
    for (dst, &w) in block.chunks_exact_mut(kp).zip(ids) {
        let w = w as usize;
        dst.copy_from_slice(&p.exp_beta[w * kp..(w + 1) * kp]);
    }
    let block = &sc.block[..m * kp];
    let dots_out = &mut sc.dots[..m];
    // γ = 1: E[log θ_k] = ψ(1) − ψ(K).
    let e0 = digamma_sklearn(1.0) - digamma_sklearn(k as f64);
    sc.t[..k].fill(e0.exp());
    sc.t[k..].fill(0.0);
    sc.elog[..k].fill(e0);
    sc.gamma_old[..k].fill(1.0);
    sc.gamma[..k].fill(1.0);
    for _ in 0..MAX_DOC_UPDATE_ITER {
        dots::<FMA>(block, &sc.t, kp, dots_out);
        for (d, &c) in dots_out.iter_mut().zip(cnts) {
            *d = c / (*d + EPS);
        }
        weighted_rows::<FMA>(block, dots_out, kp, &mut sc.s);
        for c in 0..k {
            sc.gamma[c] = madd::<FMA>(sc.t[c], sc.s[c], alpha);
        }
        let total: f64 = sc.gamma[..k].iter().sum();
        let psi_total = digamma_sklearn_with::<FMA>(total);
        for c in 0..k {
            let e = digamma_sklearn_with::<FMA>(sc.gamma[c]) - psi_total;
            sc.elog[c] = e;
            sc.t[c] = exp_nonpositive::<FMA>(e.min(0.0));
        }
        let mut change = 0.0;
        for c in 0..k {
            change += (sc.gamma[c] - sc.gamma_old[c]).abs();
        }
        sc.gamma_old[..k].copy_from_slice(&sc.gamma[..k]);
        if change / (k as f64) < MEAN_CHANGE_TOL {
            break;
        }
    }
}

/// After [`doc_gamma`]: adds the document's statistics `(c_j / norm_j)·t` to the rows `ids` of
/// `acc` (`[V][kp]`) and returns its part of the approximate bound.
#[inline(always)]
fn doc_stats<const FMA: bool>(
    ids: &[u32],
    cnts: &[f64],
    p: &LdaPrepared,
    sc: &mut Scratch,
    acc: &mut [f64],
    consts: &BoundConsts,
) -> f64 {
    let (k, kp) = (p.model.n_components, p.model.padded_k());
    let m = ids.len();
    let block = &sc.block[..m * kp];
    let d = &mut sc.dots[..m];
    dots::<FMA>(block, &sc.t, kp, d);
    for j in 0..m {
        let r = cnts[j] / (d[j] + EPS);
        let row = &mut acc[ids[j] as usize * kp..][..kp];
        for (a, &t) in row.iter_mut().zip(&sc.t) {
            *a = madd::<FMA>(r, t, *a);
        }
    }
    // Σ_j c_j · ln(t · expβ_j) (scikit-learn's logsumexp of E[log θ] + E[log β]).
    for v in d.iter_mut() {
        *v = ln_with::<FMA>(*v);
    }
    let mut bound: f64 = d.iter().zip(cnts).map(|(l, c)| c * l).sum();
    bound += doc_bound_theta(k, sc, consts);
    bound
}

/// `Σ_k (α − γ_k)·E[log θ_k] + ln Γ(γ_k) − ln Γ(α)` + `ln Γ(Kα) − ln Γ(Σγ)`.
#[inline(always)]
fn doc_bound_theta(k: usize, sc: &Scratch, consts: &BoundConsts) -> f64 {
    let mut b = consts.ln_gamma_k_alpha;
    let mut total = 0.0;
    for c in 0..k {
        let g = sc.gamma[c];
        total += g;
        b += (consts.alpha - g) * sc.elog[c] + ln_gamma(g) - consts.ln_gamma_alpha;
    }
    b - ln_gamma(total)
}

/// Constants of the document part of the bound.
#[derive(Debug, Clone, Copy)]
struct BoundConsts {
    alpha: f64,
    ln_gamma_alpha: f64,
    ln_gamma_k_alpha: f64,
}

impl BoundConsts {
    fn new(model: &LdaModel) -> Self {
        let alpha = model.doc_topic_prior;
        Self {
            alpha,
            ln_gamma_alpha: ln_gamma(alpha),
            ln_gamma_k_alpha: ln_gamma(model.n_components as f64 * alpha),
        }
    }
}

/// One part's documents: statistics into `acc`; returns (document bound, words).
#[inline(always)]
fn run_part<const FMA: bool>(
    x: &CountMatrix,
    rows: Range<usize>,
    p: &LdaPrepared,
    acc: &mut [f64],
) -> (f64, f64) {
    let consts = BoundConsts::new(&p.model);
    let mut sc = Scratch::new(p.model.padded_k());
    let (mut bound, mut words) = (0.0, 0.0);
    for i in rows {
        let (ids, cnts) = x.row(i);
        doc_gamma::<FMA>(ids, cnts, p, &mut sc);
        bound += doc_stats::<FMA>(ids, cnts, p, &mut sc, acc, &consts);
        words += cnts.iter().sum::<f64>();
    }
    (bound, words)
}

fn run_part_dispatch(
    x: &CountMatrix,
    rows: Range<usize>,
    p: &LdaPrepared,
    acc: &mut [f64],
) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(
            x: &CountMatrix,
            rows: Range<usize>,
            p: &LdaPrepared,
            acc: &mut [f64],
        ) -> (f64, f64) {
            run_part::<true>(x, rows, p, acc)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features `avx2` enables (checked just above).
            return unsafe { avx2(x, rows, p, acc) };
        }
    }
    run_part::<false>(x, rows, p, acc)
}

/// Cuts the rows into `parts` contiguous ranges of about equal nnz (+ one per row, so that
/// empty rows count a little).
fn split_rows(x: &CountMatrix, parts: usize) -> Vec<Range<usize>> {
    let n = x.n_rows();
    let indptr = x.indptr();
    let cost = |i: usize| indptr[i] + i;
    let total = cost(n);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for q in 1..=parts {
        let target = total * q / parts;
        let mut end = (start..=n).find(|&i| cost(i) >= target).unwrap_or(n);
        if q == parts {
            end = n;
        }
        if end > start {
            out.push(start..end);
            start = end;
        }
    }
    out
}

/// The number of parts: twice the threads, fewer when the `[V][K8]` buffers would pass 1 GiB.
fn n_parts(x: &CountMatrix, kp: usize) -> usize {
    let per = (x.n_cols() * kp * 8).max(1);
    let cap = ((1usize << 30) / per).max(1);
    (2 * rayon::current_num_threads())
        .min(cap)
        .min(x.n_rows().max(1))
}

/// The statistics of all documents of `x` under `p` (see the module docs).
pub fn e_step(x: &CountMatrix, p: &LdaPrepared) -> LdaStats {
    let kp = p.model.padded_k();
    let len = x.n_cols() * kp;
    let ranges = split_rows(x, n_parts(x, kp));
    let mut parts: Vec<(Vec<f64>, f64, f64)> = ranges
        .into_par_iter()
        .map(|rows| {
            let mut acc = vec![0.0; len];
            let (b, w) = run_part_dispatch(x, rows, p, &mut acc);
            (acc, b, w)
        })
        .collect();
    let mut stats = LdaStats::zeros(0, p.topic_bound);
    stats.n_docs = x.n_rows() as f64;
    let Some(first) = parts.first_mut().map(|f| std::mem::take(&mut f.0)) else {
        stats.word_topic = vec![0.0; len];
        return stats;
    };
    let mut word_topic = first;
    for (_, b, w) in &parts {
        stats.doc_bound += b;
        stats.n_words += w;
    }
    // Add the other parts in order, then ⊙ exp(E[log β]); in parallel over words.
    let others: Vec<&[f64]> = parts[1..].iter().map(|q| q.0.as_slice()).collect();
    let chunk = 1024 * kp;
    word_topic
        .par_chunks_mut(chunk)
        .zip(p.exp_beta.par_chunks(chunk))
        .enumerate()
        .for_each(|(i, (out, eb))| {
            for o in &others {
                for (a, b) in out.iter_mut().zip(&o[i * chunk..]) {
                    *a += b;
                }
            }
            for (a, e) in out.iter_mut().zip(eb) {
                *a *= e;
            }
        });
    stats.word_topic = word_topic;
    stats
}

/// γ of every document `[N, K]` under `p` (scikit-learn's `_unnormalized_transform`).
pub fn doc_topic(x: &CountMatrix, p: &LdaPrepared) -> Array2<f64> {
    let k = p.model.n_components;
    let n = x.n_rows();
    let mut out = Array2::<f64>::zeros((n, k));
    if let Some(flat) = out.as_slice_mut() {
        flat.par_chunks_mut(k * 256)
            .enumerate()
            .for_each(|(b, rows)| gammas_dispatch(x, b * 256, p, rows));
    }
    out
}

#[inline(always)]
fn gammas<const FMA: bool>(x: &CountMatrix, first: usize, p: &LdaPrepared, out: &mut [f64]) {
    let k = p.model.n_components;
    let mut sc = Scratch::new(p.model.padded_k());
    for (r, row) in out.chunks_exact_mut(k).enumerate() {
        let (ids, cnts) = x.row(first + r);
        doc_gamma::<FMA>(ids, cnts, p, &mut sc);
        row.copy_from_slice(&sc.gamma[..k]);
    }
}

fn gammas_dispatch(x: &CountMatrix, first: usize, p: &LdaPrepared, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(x: &CountMatrix, first: usize, p: &LdaPrepared, out: &mut [f64]) {
            gammas::<true>(x, first, p, out)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features `avx2` enables (checked just above).
            return unsafe { avx2(x, first, p, out) };
        }
    }
    gammas::<false>(x, first, p, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_rows_in_order() {
        let x = CountMatrix::from_csr(
            5,
            3,
            vec![0, 3, 3, 4, 6, 6],
            vec![0, 1, 2, 1, 0, 2],
            vec![1.0; 6],
        )
        .unwrap();
        for parts in 1..8 {
            let r = split_rows(&x, parts);
            assert_eq!(r.first().unwrap().start, 0);
            assert_eq!(r.last().unwrap().end, 5);
            assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        }
    }
}
