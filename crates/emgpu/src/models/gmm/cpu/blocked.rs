//! The E-step on the CPU in f64, blocked: matrix products over chunks of rows instead of a loop
//! over points and components. It computes what [`super::reference`] (the reference) computes; the tests
//! in `tests/cpu_blocked.rs` hold the two together.
//!
//! # The shape of the work: quadratic features
//! With `z = x − c` (the data shifted by a global centre `c`, the weighted mean of the means) and
//! `t_k = μ_k − c`, the log-density of component k is a quadratic form in `z`:
//!
//! ```text
//! log p(x, k) = a_k − ½ (z − t_k)ᵀ P_k (z − t_k)
//!             = [a_k − ½ t_kᵀP_k t_k] + (P_k t_k)ᵀ z − ½ Σ_i P_ii z_i² − Σ_{i<j} P_ij z_i z_j
//! ```
//!
//! (`P_k = U_k U_kᵀ` the precision, `a_k = log w_k + log det U_k − ½ D ln 2π`). So with the features
//! `φ(x) = [1, z, z_i z_j (i ≤ j)]` (F = 1 + D + D(D+1)/2; diagonal and spherical covariances use
//! `[1, z, z_j²]`, F = 1 + 2D) of a chunk of m rows stacked in Φ (m × F), **one** product
//! `Φ · W` (W: F × K) gives every `log p(x_n, k)` of the chunk, and after the log-sum-exp of each
//! row, **one** product `Rᵀ · Φ` (R: m × K responsibilities) gives every statistic of the chunk:
//! `Σ r`, `Σ r z`, `Σ r z_i z_j` for all components at once. Both are GEMMs with a large inner or
//! outer dimension, which faer runs near the machine's peak; the per-point loops that remain
//! (building Φ, the exponentials) are vectorised (`vmath.rs`: `exp` and `ln` without libm calls).
//!
//! The alternative shape — per component, `Y = (X − μ_k)·U_k` and row norms, then
//! `(X − μ_k)ᵀ diag(r_k) (X − μ_k)` — does more multiply-adds (full D × D products, 2 × 256 per
//! point and component for D = 16) in K small GEMMs (m × D × D) that run slower: measured 3.7×
//! slower than the quadratic features (`benches/README.md`). It is kept for the components where
//! the quadratic form would lose precision (below), and [`chunk_stats_per_component`] runs every
//! component on it.
//!
//! # Numerics
//! Expanding the square cancels: the terms of the expanded form are about `m_k = ‖U_kᵀ t_k‖²`
//! (the squared Mahalanobis distance of the centre from component k) while their sum, for the
//! points that matter to k, is about D. Rounding error is then ~`eps · m_k` in `log p` and, through
//! the conversion of moments about `c` into moments about `μ_k`, ~`eps · m_k` relative in the
//! covariance. Centring on `c` keeps `m_k` small for ordinary data (tens to a few thousand; data
//! far from the origin, e.g. offset by 1e4, cost nothing), and a component with
//! `m_k >` [`CANCELLATION_LIMIT`] (a tight cluster far from the others) is computed on the shifted
//! per-component path instead, exactly as the reference does. So the relative error stays below
//! ~1e-11 on every component.
//!
//! # Order and reproducibility
//! Chunks of [`BLOCKED_CHUNK_ROWS`] rows are grouped into blocks whose size depends only on N (at
//! least 32 chunks, at most 256 blocks); each block sums its chunks in order, blocks run in
//! parallel (rayon) and are summed in block order. (In a distributed fit N is the number of rows
//! of all processes and blocks are cut at the same global rows, see
//! [`Dataset::with_global_rows`].) The result does not depend on the number of
//! threads. Only the per-block sums (K × F values each) are kept: no N × K responsibilities, no
//! copy of the data beyond one chunk per thread.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::PointOutputs;
use crate::data::Dataset;
use crate::error::Result;
use crate::models::gmm::params::LN_2PI;
use crate::models::gmm::{CovarianceType, GmmStats, Prepared};
use crate::numerics::vmath::{quadratic_features, relative_exp_columns, softmax_columns};

/// Rows per chunk of the blocked path: Φ of a chunk (F = 153 for D = 16) stays in the L2 cache.
pub const BLOCKED_CHUNK_ROWS: usize = 256;

/// Chunks per block (at least): a block sums its chunks in order; blocks are the unit of parallel
/// work.
const CHUNKS_PER_BLOCK: usize = 32;

/// At most this many blocks (more rows per block for larger N): enough to balance the threads,
/// few enough that their sums take little memory (256 × 20 kB for D = K = 16).
const MAX_BLOCKS: usize = 256;

/// Components whose `m_k = ‖U_kᵀ(μ_k − c)‖²` exceeds this run on the shifted per-component path
/// (see the module documentation): the quadratic form would lose `log10(m_k)` digits.
pub const CANCELLATION_LIMIT: f64 = 1e4;

/// Largest D whose full covariances use the quadratic features (F = 2145 at D = 64: 4.4 MB of Φ
/// per 256-row chunk); larger D runs every component on the per-component shape.
pub const MAX_QUADRATIC_FEATURES_D: usize = 64;

/// What one E-step needs beyond [`Prepared`]: the coefficients of the quadratic form.
struct Plan<'p> {
    p: &'p Prepared,
    k: usize,
    d: usize,
    /// Full D×D factors (full, tied) rather than diagonal ones (diag, spherical).
    full: bool,
    /// Number of features F.
    nf: usize,
    /// The global centre `c`.
    centre: Vec<f64>,
    /// Column → component: the `nq` components of the quadratic form first, then the others.
    order: Vec<usize>,
    /// Number of components on the quadratic-feature path.
    nq: usize,
    /// F × nq, column-major: the quadratic form of each of those components.
    w: Vec<f64>,
    /// `a_k = log w_k + log det U_k − ½ D ln 2π` per component.
    consts: Vec<f64>,
}

impl<'p> Plan<'p> {
    fn new(p: &'p Prepared) -> Self {
        let d = p.n_features;
        let full = matches!(
            p.covariance_type,
            CovarianceType::Full | CovarianceType::Tied
        );
        // Past D = 64 the D(D+1)/2 quadratic features of a chunk outgrow the caches (and grow
        // without bound), while the per-component products (m × D × D) become large enough to run
        // well: every component takes the shifted path.
        if full && d > MAX_QUADRATIC_FEATURES_D {
            Self::with_limit(p, -1.0)
        } else {
            Self::with_limit(p, CANCELLATION_LIMIT)
        }
    }

    /// A plan whose components with `m_k > limit` take the shifted per-component path (a
    /// negative limit: all of them).
    fn with_limit(p: &'p Prepared, limit: f64) -> Self {
        let (k, d) = (p.n_components, p.n_features);
        let full = matches!(
            p.covariance_type,
            CovarianceType::Full | CovarianceType::Tied
        );
        let nf = if full {
            1 + d + d * (d + 1) / 2
        } else {
            1 + 2 * d
        };
        let consts: Vec<f64> = (0..k)
            .map(|c| p.log_weights[c] + p.log_det[c] - 0.5 * d as f64 * LN_2PI)
            .collect();
        // c = Σ w_k μ_k / Σ w_k: near the data mean once the weights and means are estimates.
        let weights: Vec<f64> = p.log_weights.iter().map(|l| l.exp()).collect();
        let wsum: f64 = weights.iter().sum();
        let mut centre = vec![0.0; d];
        if wsum > 0.0 && wsum.is_finite() {
            for c in 0..k {
                for j in 0..d {
                    centre[j] += weights[c] / wsum * p.means[c * d + j];
                }
            }
        }
        let mut plan = Plan {
            p,
            k,
            d,
            full,
            nf,
            centre,
            order: Vec::with_capacity(k),
            nq: 0,
            w: Vec::new(),
            consts,
        };
        let mut exact = Vec::new();
        let mut t = vec![0.0; d];
        let mut v = vec![0.0; d];
        for c in 0..k {
            for j in 0..d {
                t[j] = p.means[c * d + j] - plan.centre[j];
            }
            plan.whiten(c, &t, &mut v);
            let m: f64 = v.iter().map(|x| x * x).sum();
            if m.is_finite() && m <= limit {
                plan.order.push(c);
                plan.push_quadratic_form(c, &t, &v);
            } else {
                exact.push(c);
            }
        }
        plan.nq = plan.order.len();
        plan.order.extend(exact);
        plan
    }

    /// The D×D upper-triangular factor of component `c` (full, tied).
    fn u(&self, c: usize) -> &[f64] {
        let dd = self.d * self.d;
        match self.p.covariance_type {
            CovarianceType::Tied => &self.p.prec_chol[..dd],
            _ => &self.p.prec_chol[c * dd..(c + 1) * dd],
        }
    }

    /// The diagonal factor `1/σ` of component `c` in feature `j` (diag, spherical).
    fn pdiag(&self, c: usize, j: usize) -> f64 {
        match self.p.covariance_type {
            CovarianceType::Spherical => self.p.prec_chol[c],
            _ => self.p.prec_chol[c * self.d + j],
        }
    }

    /// `v = U_cᵀ t`.
    fn whiten(&self, c: usize, t: &[f64], v: &mut [f64]) {
        let d = self.d;
        if self.full {
            let u = self.u(c);
            for j in 0..d {
                v[j] = (0..=j).map(|i| t[i] * u[i * d + j]).sum();
            }
        } else {
            for j in 0..d {
                v[j] = t[j] * self.pdiag(c, j);
            }
        }
    }

    /// Appends the column of W for component `c` (with `t = μ_c − centre`, `v = U_cᵀ t`).
    fn push_quadratic_form(&mut self, c: usize, t: &[f64], v: &[f64]) {
        let d = self.d;
        let base = self.w.len();
        self.w.resize(base + self.nf, 0.0);
        let vv: f64 = v.iter().map(|x| x * x).sum();
        let mut col = std::mem::take(&mut self.w);
        {
            let w = &mut col[base..];
            w[0] = self.consts[c] - 0.5 * vv;
            if self.full {
                let u = self.u(c);
                // P t = U v
                for i in 0..d {
                    w[1 + i] = (i..d).map(|j| u[i * d + j] * v[j]).sum();
                }
                let mut f = 1 + d;
                for i in 0..d {
                    for j in i..d {
                        // P_ij = Σ_l U_il U_jl (l ≥ max(i, j) = j)
                        let pij: f64 = (j..d).map(|l| u[i * d + l] * u[j * d + l]).sum();
                        w[f] = if i == j { -0.5 * pij } else { -pij };
                        f += 1;
                    }
                }
            } else {
                for j in 0..d {
                    let q = self.pdiag(c, j);
                    let pj = q * q;
                    w[1 + j] = pj * t[j];
                    w[1 + d + j] = -0.5 * pj;
                }
            }
        }
        self.w = col;
    }

    fn n_exact(&self) -> usize {
        self.k - self.nq
    }

    /// `chunk_rows` limited so that one chunk's Φ and log-densities take at most 16 MiB per thread
    /// (a chunk size asked for elsewhere, e.g. from a GPU's limits, must not blow up memory here).
    fn chunk_rows(&self, chunk_rows: usize) -> usize {
        let per_row = 8 * (self.nf + self.k + 2 * self.d + 2);
        chunk_rows.clamp(1, ((16 << 20) / per_row).max(1))
    }
}

/// Per-thread buffers, sized for one chunk.
#[derive(Default)]
struct Work {
    /// The chunk, rows × D, row-major, as read.
    x: Vec<f64>,
    /// Φ, rows × F, column-major.
    phi: Vec<f64>,
    /// rows × K, column-major (columns in plan order): log p(x, k), then responsibilities.
    a: Vec<f64>,
    /// `log p(x_n)` of the rows.
    lpx: Vec<f64>,
    /// 2 × rows scratch of the log-sum-exp.
    scratch: Vec<f64>,
    /// `x − μ_k`, rows × D row-major (shifted path).
    diff: Vec<f64>,
    /// rows × D scratch (shifted path).
    y: Vec<f64>,
}

impl Work {
    fn resize(&mut self, plan: &Plan, rows: usize) {
        let d = plan.d;
        self.x.resize(rows * d, 0.0);
        if plan.nq > 0 {
            self.phi.resize(rows * plan.nf, 0.0);
        }
        self.a.resize(rows * plan.k, 0.0);
        self.lpx.resize(rows, 0.0);
        self.scratch.resize(2 * rows, 0.0);
        if plan.n_exact() > 0 {
            self.diff.resize(rows * d, 0.0);
            self.y.resize(rows * d, 0.0);
        }
    }
}

/// Sums of a block: moments about the centre for the quadratic-path components, moments about
/// `μ_k` for the others.
struct Acc {
    /// nq × F, column-major (row q: `Σ r φ(x)` of the q-th quadratic-path component).
    m: Vec<f64>,
    /// Shifted path, per component in plan order: `Σ r`, `Σ r (x − μ)`, `Σ r (x − μ)(x − μ)ᵀ`
    /// (full: D×D; diagonal: D).
    s0: Vec<f64>,
    s1: Vec<f64>,
    s2: Vec<f64>,
    log_likelihood: f64,
    /// Points summed (weighted: their weights).
    n: f64,
}

impl Acc {
    fn zeros(plan: &Plan) -> Self {
        let (d, ne) = (plan.d, plan.n_exact());
        let s2 = if plan.full { d * d } else { d };
        Acc {
            m: vec![0.0; plan.nq * plan.nf],
            s0: vec![0.0; ne],
            s1: vec![0.0; ne * d],
            s2: vec![0.0; ne * s2],
            log_likelihood: 0.0,
            n: 0.0,
        }
    }

    fn add(&mut self, o: &Acc) {
        for (a, b) in self
            .m
            .iter_mut()
            .chain(&mut self.s0)
            .chain(&mut self.s1)
            .chain(&mut self.s2)
            .zip(o.m.iter().chain(&o.s0).chain(&o.s1).chain(&o.s2))
        {
            *a += b;
        }
        self.log_likelihood += o.log_likelihood;
        self.n += o.n;
    }
}

impl Plan<'_> {
    /// Fills `w.a` with responsibilities and `w.lpx` with `log p(x_n)` for the `rows` rows in
    /// `w.x`.
    fn responsibilities(&self, w: &mut Work, rows: usize) {
        self.log_joint(w, rows);
        softmax_columns(&mut w.a, rows, self.k, &mut w.lpx, &mut w.scratch);
    }

    /// Fills `w.a` with `log p(x_n, k)` (columns in plan order) for the `rows` rows in `w.x`,
    /// and `w.phi` with their quadratic features.
    fn log_joint(&self, w: &mut Work, rows: usize) {
        let (d, k, nq, nf) = (self.d, self.k, self.nq, self.nf);
        if nq > 0 {
            quadratic_features(&w.x, rows, d, &self.centre, self.full, &mut w.phi);
            matmul(
                MatMut::from_column_major_slice_mut(&mut w.a[..rows * nq], rows, nq),
                Accum::Replace,
                MatRef::from_column_major_slice(&w.phi[..rows * nf], rows, nf),
                MatRef::from_column_major_slice(&self.w, nf, nq),
                1.0,
                Par::Seq,
            );
        }
        for col in nq..k {
            let c = self.order[col];
            self.shifted_diff(w, rows, c);
            let out = &mut w.a[col * rows..(col + 1) * rows];
            if self.full {
                // Y = (X − μ_c)·U_c, log p = a_c − ½‖y‖².
                matmul(
                    MatMut::from_row_major_slice_mut(&mut w.y[..rows * d], rows, d),
                    Accum::Replace,
                    MatRef::from_row_major_slice(&w.diff[..rows * d], rows, d),
                    MatRef::from_row_major_slice(self.u(c), d, d),
                    1.0,
                    Par::Seq,
                );
                for (n, o) in out.iter_mut().enumerate() {
                    let s: f64 = w.y[n * d..(n + 1) * d].iter().map(|v| v * v).sum();
                    *o = self.consts[c] - 0.5 * s;
                }
            } else {
                for (n, o) in out.iter_mut().enumerate() {
                    let s: f64 = (0..d)
                        .map(|j| {
                            let e = w.diff[n * d + j] * self.pdiag(c, j);
                            e * e
                        })
                        .sum();
                    *o = self.consts[c] - 0.5 * s;
                }
            }
        }
    }

    /// `w.diff = x − μ_c` for the rows of the chunk.
    fn shifted_diff(&self, w: &mut Work, rows: usize, c: usize) {
        let d = self.d;
        let mu = &self.p.means[c * d..(c + 1) * d];
        for (o, x) in w.diff[..rows * d]
            .chunks_exact_mut(d)
            .zip(w.x.chunks_exact(d))
        {
            for j in 0..d {
                o[j] = x[j] - mu[j];
            }
        }
    }

    /// Multiplies the responsibilities and log-densities of the `rows` rows in `w` (after
    /// [`Plan::responsibilities`]) by the rows' sample weights; returns `Σ weights`. A row of
    /// weight 0 contributes nothing (its log-density is not multiplied: `0 · −∞` is NaN).
    fn apply_weights(&self, w: &mut Work, rows: usize, weights: &[f64]) -> f64 {
        for col in w.a[..rows * self.k].chunks_exact_mut(rows) {
            for (a, &wi) in col.iter_mut().zip(weights) {
                *a *= wi;
            }
        }
        for (lp, &wi) in w.lpx[..rows].iter_mut().zip(weights) {
            *lp = if wi == 0.0 { 0.0 } else { wi * *lp };
        }
        weights.iter().sum()
    }

    /// Adds the statistics of the chunk in `w` (after [`Plan::responsibilities`], and
    /// [`Plan::apply_weights`] if weighted) to `acc`; `count` is the (weighted) number of rows.
    fn accumulate(&self, w: &mut Work, rows: usize, count: f64, acc: &mut Acc) {
        let (d, k, nq, nf) = (self.d, self.k, self.nq, self.nf);
        acc.log_likelihood += w.lpx[..rows].iter().sum::<f64>();
        acc.n += count;
        if nq > 0 {
            // M += Rᵀ·Φ: Σ r, Σ r z, Σ r z_i z_j of every quadratic-path component (nq × F).
            matmul(
                MatMut::from_column_major_slice_mut(&mut acc.m, nq, nf),
                Accum::Add,
                MatRef::from_column_major_slice(&w.a[..rows * nq], rows, nq).transpose(),
                MatRef::from_column_major_slice(&w.phi[..rows * nf], rows, nf),
                1.0,
                Par::Seq,
            );
        }
        for col in nq..k {
            let (c, e) = (self.order[col], col - nq);
            self.shifted_diff(w, rows, c);
            let r = &w.a[col * rows..(col + 1) * rows];
            acc.s0[e] += r.iter().sum::<f64>();
            let s1 = &mut acc.s1[e * d..(e + 1) * d];
            for (n, &rn) in r.iter().enumerate() {
                for j in 0..d {
                    s1[j] += rn * w.diff[n * d + j];
                }
            }
            if self.full {
                for (n, &rn) in r.iter().enumerate() {
                    for j in 0..d {
                        w.y[n * d + j] = rn * w.diff[n * d + j];
                    }
                }
                // S2 += (X − μ)ᵀ · diag(r) (X − μ)
                matmul(
                    MatMut::from_row_major_slice_mut(&mut acc.s2[e * d * d..(e + 1) * d * d], d, d),
                    Accum::Add,
                    MatRef::from_row_major_slice(&w.diff[..rows * d], rows, d).transpose(),
                    MatRef::from_row_major_slice(&w.y[..rows * d], rows, d),
                    1.0,
                    Par::Seq,
                );
            } else {
                let s2 = &mut acc.s2[e * d..(e + 1) * d];
                for (n, &rn) in r.iter().enumerate() {
                    for j in 0..d {
                        let v = w.diff[n * d + j];
                        s2[j] += rn * v * v;
                    }
                }
            }
        }
    }

    /// The statistics about the means from the block sums.
    fn finish(&self, acc: &Acc) -> GmmStats {
        let p = self.p;
        let (k, d, nq) = (self.k, self.d, self.nq);
        let mut stats = GmmStats::zeros(p.covariance_type, k, d, &p.means);
        stats.n_samples = acc.n;
        stats.log_likelihood = acc.log_likelihood;
        let mm = |q: usize, f: usize| acc.m[f * nq + q];
        let mut t = vec![0.0; d];
        let mut g = vec![0.0; d];
        for q in 0..nq {
            let c = self.order[q];
            for j in 0..d {
                t[j] = p.means[c * d + j] - self.centre[j];
                g[j] = mm(q, 1 + j);
            }
            let s0 = mm(q, 0);
            stats.s0[c] = s0;
            // Σ r (z − t) = Σ r z − S0·t
            for j in 0..d {
                stats.s1[c * d + j] = g[j] - s0 * t[j];
            }
            if self.full {
                // Σ r (z − t)(z − t)ᵀ = Σ r z zᵀ − g tᵀ − t gᵀ + S0 t tᵀ
                let s2 = &mut stats.s2[c * d * d..(c + 1) * d * d];
                let mut f = 1 + d;
                for i in 0..d {
                    for j in i..d {
                        let v = mm(q, f) - g[i] * t[j] - t[i] * g[j] + s0 * t[i] * t[j];
                        s2[i * d + j] = v;
                        s2[j * d + i] = v;
                        f += 1;
                    }
                }
            } else {
                for j in 0..d {
                    stats.s2[c * d + j] = mm(q, 1 + d + j) - 2.0 * g[j] * t[j] + s0 * t[j] * t[j];
                }
            }
        }
        let s2len = if self.full { d * d } else { d };
        for col in nq..k {
            let (c, e) = (self.order[col], col - nq);
            stats.s0[c] = acc.s0[e];
            stats.s1[c * d..(c + 1) * d].copy_from_slice(&acc.s1[e * d..(e + 1) * d]);
            stats.s2[c * s2len..(c + 1) * s2len]
                .copy_from_slice(&acc.s2[e * s2len..(e + 1) * s2len]);
        }
        stats
    }
}

/// The components that the blocked path computes on the shifted per-component path under `p`
/// (those whose quadratic form would cancel, see the module documentation), in increasing order.
pub fn components_on_shifted_path(p: &Prepared) -> Vec<usize> {
    let plan = Plan::new(p);
    let mut v = plan.order[plan.nq..].to_vec();
    v.sort_unstable();
    v
}

/// Statistics of the points in `x` (row-major, f64) under `p`, blocked, in chunks of
/// `chunk_rows` rows summed in order (single-threaded; the engine splits bigger data in blocks).
pub fn chunk_stats_blocked(x: &[f64], p: &Prepared, chunk_rows: usize) -> GmmStats {
    chunk_stats_with(&Plan::new(p), x, chunk_rows)
}

/// [`chunk_stats_blocked`] with every component on the shifted per-component path
/// (`Y = (X − μ_k)·U_k`, `(X − μ_k)ᵀ·diag(r_k)·(X − μ_k)`): the other GEMM shape of the design,
/// for tests and benchmarks.
pub fn chunk_stats_per_component(x: &[f64], p: &Prepared, chunk_rows: usize) -> GmmStats {
    chunk_stats_with(&Plan::with_limit(p, -1.0), x, chunk_rows)
}

fn chunk_stats_with(plan: &Plan, x: &[f64], chunk_rows: usize) -> GmmStats {
    let p = plan.p;
    let d = p.n_features;
    let n = x.len() / d;
    let chunk_rows = plan.chunk_rows(chunk_rows);
    let mut w = Work::default();
    let mut acc = Acc::zeros(plan);
    let mut start = 0;
    while start < n {
        let rows = chunk_rows.min(n - start);
        w.resize(plan, rows);
        w.x.copy_from_slice(&x[start * d..(start + rows) * d]);
        plan.responsibilities(&mut w, rows);
        plan.accumulate(&mut w, rows, rows as f64, &mut acc);
        start += rows;
    }
    plan.finish(&acc)
}

/// The whole E-step on the CPU, blocked path: statistics of every point (see the module docs),
/// weighted by the dataset's sample weights if it has them (the responsibilities and
/// log-densities of each row multiplied by its weight before `Rᵀ·Φ`).
pub fn e_step_blocked(data: &Dataset, p: &Prepared, chunk_rows: usize) -> Result<GmmStats> {
    let plan = Plan::new(p);
    let n = data.n_samples();
    let d = p.n_features;
    let chunk_rows = plan.chunk_rows(chunk_rows);
    // Blocks of at least CHUNKS_PER_BLOCK chunks, and at most MAX_BLOCKS of them so that the
    // per-block sums (F × K values each) stay small next to the data; both depend only on N.
    // In a distributed fit (rows `off..off + n` of `total`), the blocks are those of the whole
    // data cut at the same global rows: every whole block sums the same rows in the same order
    // as in a one-process run.
    let (off, total) = (data.global_offset(), data.global_rows());
    let min_rows = chunk_rows * CHUNKS_PER_BLOCK;
    let block_rows = min_rows.max(total.div_ceil(MAX_BLOCKS).div_ceil(chunk_rows) * chunk_rows);
    let parts: Vec<Acc> = (off / block_rows..(off + n).div_ceil(block_rows))
        .into_par_iter()
        .map_init(Work::default, |w, b| {
            let mut acc = Acc::zeros(&plan);
            let end = ((b + 1) * block_rows).min(off + n) - off;
            let mut start = (b * block_rows).max(off) - off;
            while start < end {
                let rows = chunk_rows.min(end - start);
                w.resize(&plan, rows);
                data.read_f64(start, &mut w.x[..rows * d])?;
                plan.responsibilities(w, rows);
                let count = match data.weights_of(start, rows) {
                    Some(weights) => plan.apply_weights(w, rows, weights),
                    None => rows as f64,
                };
                plan.accumulate(w, rows, count, &mut acc);
                start += rows;
            }
            Ok(acc)
        })
        .collect::<Result<_>>()?;
    let mut total = Acc::zeros(&plan);
    for part in &parts {
        total.add(part);
    }
    Ok(plan.finish(&total))
}

/// The blocked path with the weights given from outside instead of the responsibilities (a
/// hidden Markov model's state posteriors γ): the log-densities `log p(x, k)` of rows, and the
/// weighted moments `Σ g`, `Σ g x`, `Σ g x xᵀ` of rows given their weights — the same products,
/// centring and precision rule as the Gaussian mixture's E-step.
pub(crate) struct WeightedMoments<'p> {
    plan: Plan<'p>,
    work: Work,
    acc: Acc,
    chunk: usize,
}

impl<'p> WeightedMoments<'p> {
    /// Nothing summed yet, under `p` (its log-weights are added to the log-densities).
    pub(crate) fn new(p: &'p Prepared) -> Self {
        let plan = Plan::new(p);
        let acc = Acc::zeros(&plan);
        let chunk = plan.chunk_rows(BLOCKED_CHUNK_ROWS);
        Self {
            plan,
            work: Work::default(),
            acc,
            chunk,
        }
    }

    /// `log p(x_n, k)` of the rows `x` (`[n][D]`) into `out` (`[n][K]`, row-major).
    pub(crate) fn log_joint(&mut self, x: &[f64], out: &mut [f64]) {
        let (d, k) = (self.plan.d, self.plan.k);
        for (xc, oc) in x.chunks(self.chunk * d).zip(out.chunks_mut(self.chunk * k)) {
            let rows = xc.len() / d;
            let w = &mut self.work;
            w.resize(&self.plan, rows);
            w.x.copy_from_slice(xc);
            self.plan.log_joint(w, rows);
            for (col, &comp) in self.plan.order.iter().enumerate() {
                for (n, &v) in w.a[col * rows..(col + 1) * rows].iter().enumerate() {
                    oc[n * k + comp] = v;
                }
            }
        }
    }

    /// The relative densities of the rows `x` (`[n][D]`) into `out` (`[n][K]`, row-major):
    /// `exp(log p(x_n, k) − s_n)` with `s_n = max_k log p(x_n, k)` into `shift` (`[n]`), 0 where
    /// the difference is below `ln_flush` (and for a row of −∞, whose shift is −∞). What
    /// [`Self::log_joint`] then `relative_exp_rows` give (the same bits), with the
    /// exponentials taken column by column while the chunk is column-major (vectorised over
    /// rows).
    pub(crate) fn relative_densities(
        &mut self,
        x: &[f64],
        out: &mut [f64],
        shift: &mut [f64],
        ln_flush: f64,
    ) {
        let (d, k) = (self.plan.d, self.plan.k);
        let chunks = x
            .chunks(self.chunk * d)
            .zip(out.chunks_mut(self.chunk * k))
            .zip(shift.chunks_mut(self.chunk));
        for ((xc, oc), sc) in chunks {
            let rows = xc.len() / d;
            let w = &mut self.work;
            w.resize(&self.plan, rows);
            w.x.copy_from_slice(xc);
            self.plan.log_joint(w, rows);
            relative_exp_columns(&mut w.a[..rows * k], rows, k, sc, ln_flush);
            for (col, &comp) in self.plan.order.iter().enumerate() {
                for (n, &v) in w.a[col * rows..(col + 1) * rows].iter().enumerate() {
                    oc[n * k + comp] = v;
                }
            }
        }
    }

    /// Adds the rows `x` (`[n][D]`) with weights `g` (`[n][K]`, row-major).
    pub(crate) fn add(&mut self, x: &[f64], g: &[f64]) {
        let (d, k, nq) = (self.plan.d, self.plan.k, self.plan.nq);
        for (xc, gc) in x.chunks(self.chunk * d).zip(g.chunks(self.chunk * k)) {
            let rows = xc.len() / d;
            let w = &mut self.work;
            w.resize(&self.plan, rows);
            if nq == k {
                // Every component on the quadratic features (in order): the weights enter the
                // product where they lie (`[n][K]` row-major is Rᵀ with strides), no copies.
                let (full, centre, nf) = (self.plan.full, &self.plan.centre, self.plan.nf);
                quadratic_features(xc, rows, d, centre, full, &mut w.phi);
                matmul(
                    MatMut::from_column_major_slice_mut(&mut self.acc.m, nq, nf),
                    Accum::Add,
                    MatRef::from_row_major_slice(gc, rows, k).transpose(),
                    MatRef::from_column_major_slice(&w.phi[..rows * nf], rows, nf),
                    1.0,
                    Par::Seq,
                );
                self.acc.n += rows as f64;
                continue;
            }
            w.x.copy_from_slice(xc);
            if nq > 0 {
                let (full, centre) = (self.plan.full, &self.plan.centre);
                quadratic_features(&w.x, rows, d, centre, full, &mut w.phi);
            }
            for (col, &comp) in self.plan.order.iter().enumerate() {
                for (n, a) in w.a[col * rows..(col + 1) * rows].iter_mut().enumerate() {
                    *a = gc[n * k + comp];
                }
            }
            w.lpx[..rows].fill(0.0);
            self.plan.accumulate(w, rows, rows as f64, &mut self.acc);
        }
    }

    /// Adds what another summed (under the same parameters).
    pub(crate) fn merge(&mut self, other: &WeightedMoments<'_>) {
        self.acc.add(&other.acc);
    }

    /// The statistics about the means (`n_samples`: rows added; `log_likelihood`: 0).
    pub(crate) fn finish(&self) -> GmmStats {
        self.plan.finish(&self.acc)
    }
}

/// A chunk index with its slices of the per-point outputs.
type ChunkJob<'a> = (usize, Option<&'a mut [f64]>, Option<&'a mut [f64]>);

/// Log-densities and/or responsibilities `[n][K]` of every point of `data` (blocked path).
pub(crate) fn point_outputs_blocked(
    data: &Dataset,
    p: &Prepared,
    chunk_rows: usize,
    out: PointOutputs<'_>,
) -> Result<()> {
    let plan = Plan::new(p);
    let (n, k, d) = (data.n_samples(), p.n_components, p.n_features);
    let chunk = plan.chunk_rows(chunk_rows);
    let PointOutputs { log_px, resp } = out;
    let mut lp_parts = log_px.map(|s| s.chunks_mut(chunk)).into_iter().flatten();
    let mut r_parts = resp.map(|s| s.chunks_mut(chunk * k)).into_iter().flatten();
    let jobs: Vec<ChunkJob<'_>> = (0..n.div_ceil(chunk))
        .map(|c| (c, lp_parts.next(), r_parts.next()))
        .collect();
    jobs.into_par_iter()
        .try_for_each_init(Work::default, |w, (c, lp, r)| {
            let start = c * chunk;
            let rows = chunk.min(n - start);
            w.resize(&plan, rows);
            data.read_f64(start, &mut w.x[..rows * d])?;
            plan.responsibilities(w, rows);
            if let Some(lp) = lp {
                lp.copy_from_slice(&w.lpx[..rows]);
            }
            if let Some(r) = r {
                for (col, &comp) in plan.order.iter().enumerate() {
                    let src = &w.a[col * rows..(col + 1) * rows];
                    for (nrow, &v) in src.iter().enumerate() {
                        r[nrow * k + comp] = v;
                    }
                }
            }
            Ok(())
        })
}
