//! The E-step engine of a Gaussian mixture on data with missing entries.
//!
//! Rows are grouped by pattern once ([`MissingIndex`]). Each E-step, for the current parameters:
//!
//! - a pattern with at least `group_rows` rows (and the complete pattern, always) runs through the
//!   ordinary complete-data engine of the fit's backend ([`gmm_engine`]: the blocked CPU engine
//!   or the GPU engine), built once over its observed sub-rows, with the marginal parameters on
//!   its observed columns; its statistics are expanded on the host (`factors::expand`);
//! - the rows of the other (rare) patterns run on the CPU through a direct per-row path, in
//!   parallel over blocks of (pattern, rows) items: per item the factors of the pattern are
//!   computed once, then every row's marginal log-densities, responsibilities and observed
//!   statistics; then the same expansion.
//!
//! The sums are deterministic: items are summed in a fixed order of fixed blocks, whatever the
//! number of threads. The complete pattern gets exactly the parameters of the complete-data fit,
//! so a dataset without NaN gives the complete-data statistics.

use rayon::prelude::*;

use super::factors::{PatternFactors, Shared, expand, marginal_prepared};
use super::index::{MissingIndex, Pattern};
use crate::data::Dataset;
use crate::device::{Backend, BackendReport, EngineOptions};
use crate::em::EStep;
use crate::error::{Error, Result};
use crate::models::gmm::{CovarianceType, GmmEngine, GmmModel, GmmStats, Prepared, gmm_engine};
use crate::numerics::log_sum_exp;

/// Rows per item of the direct path.
const ITEM_ROWS: usize = 2048;
/// Number of blocks the direct items are summed in (fixed: the sums do not depend on threads).
const BLOCKS: usize = 64;

/// Default `group_rows` on the CPU: patterns with at least this many rows use the blocked engine.
pub const CPU_GROUP_ROWS: usize = 1024;
/// Default `group_rows` on the GPU: patterns with at least this many rows run on the GPU.
pub const GPU_GROUP_ROWS: usize = 65_536;

/// The E-step engine over a [`MissingIndex`] (see the module docs).
pub struct MissingEngine<'a> {
    index: &'a MissingIndex,
    /// (pattern, engine over its observed sub-rows).
    engines: Vec<(usize, Box<dyn GmmEngine + 'a>)>,
    /// Direct-path items: (pattern, rows within the pattern).
    items: Vec<(usize, std::ops::Range<usize>)>,
    report: BackendReport,
}

/// The datasets over the observed sub-rows of the patterns that get an engine: patterns with at
/// least `group_rows` rows, and the complete pattern.
pub fn group_datasets(
    index: &MissingIndex,
    group_rows: usize,
) -> Result<Vec<(usize, Dataset<'_>)>> {
    index
        .patterns()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.missing.is_empty() || p.rows.len() >= group_rows)
        .map(|(i, p)| {
            Ok((
                i,
                Dataset::from_slice(p.values(index), p.rows.len(), p.n_observed())?,
            ))
        })
        .collect()
}

impl<'a> MissingEngine<'a> {
    /// The engine over `index`, with engines of `backend` over `groups` ([`group_datasets`]).
    pub fn new(
        index: &'a MissingIndex,
        groups: &'a [(usize, Dataset<'a>)],
        backend: Backend,
        covariance_type: CovarianceType,
        n_components: usize,
        options: EngineOptions,
    ) -> Result<Self> {
        let mut engines = Vec::with_capacity(groups.len());
        for (i, data) in groups {
            let e = gmm_engine(backend, data, covariance_type, n_components, options)?;
            engines.push((*i, e));
        }
        let mut items = Vec::new();
        let mut direct_rows = 0;
        for (i, p) in index.patterns().iter().enumerate() {
            if engines.iter().any(|(g, _)| *g == i) {
                continue;
            }
            direct_rows += p.rows.len();
            for s in (0..p.rows.len()).step_by(ITEM_ROWS) {
                items.push((i, s..(s + ITEM_ROWS).min(p.rows.len())));
            }
        }
        let engine_rows: usize = groups.iter().map(|(_, d)| d.n_samples()).sum();
        let mut report = match engines
            .iter()
            .max_by_key(|(i, _)| index.patterns()[*i].rows.len())
        {
            Some((_, e)) => e.report(),
            None => crate::device::cpu_report(""),
        };
        let note = format!(
            "missing values: {} patterns; {engine_rows} rows in {} pattern group{} on the {} engine, {direct_rows} rows of rare patterns on the CPU",
            index.patterns().len(),
            engines.len(),
            if engines.len() == 1 { "" } else { "s" },
            report.backend,
        );
        report.reason = if report.reason.is_empty() {
            note
        } else {
            format!("{}; {note}", report.reason)
        };
        Ok(Self {
            index,
            engines,
            items,
            report,
        })
    }

    /// `E[x | x_o]` of every row under `p`: observed entries copied, each missing entry replaced
    /// by `Σ_k r_k (μ_km + B_k (x_o − μ_ko))` (`out`: `[N][D]`). The responsibilities of the
    /// rows of engine groups come from their engine (the GPU's, with a GPU backend); the
    /// conditional means are computed on the CPU.
    pub fn impute(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        let (k, d) = (p.n_components, p.n_features);
        self.check_len(out.len(), d)?;
        let cov = Shared::new(p);
        let perm = self.index.rows();
        for (i, engine) in &mut self.engines {
            let pat = &self.index.patterns()[*i];
            let (n_p, d_o) = (pat.rows.len(), pat.n_observed());
            let x = pat.values(self.index);
            if pat.missing.is_empty() {
                for (r, xr) in x.chunks_exact(d_o).enumerate() {
                    let n = perm[pat.rows.start + r];
                    out[n * d..(n + 1) * d].copy_from_slice(xr);
                }
                continue;
            }
            let marginal = marginal_prepared(p, &cov.cov, &pat.observed)?;
            let mut resp = vec![0.0; n_p * k];
            engine.responsibilities(&marginal, &mut resp)?;
            let f = PatternFactors::new(p, &cov, pat)?;
            let rows: Vec<Vec<f64>> = x
                .par_chunks(ITEM_ROWS * d_o)
                .zip(resp.par_chunks(ITEM_ROWS * k))
                .map(|(xs, rs)| {
                    let mut o = vec![0.0; xs.len() / d_o * d];
                    for ((xr, rr), orow) in xs
                        .chunks_exact(d_o)
                        .zip(rs.chunks_exact(k))
                        .zip(o.chunks_exact_mut(d))
                    {
                        conditional_mean(&f, pat, xr, rr, orow);
                    }
                    o
                })
                .collect();
            for (r, orow) in rows.iter().flat_map(|o| o.chunks_exact(d)).enumerate() {
                let n = perm[pat.rows.start + r];
                out[n * d..(n + 1) * d].copy_from_slice(orow);
            }
        }
        Direct(self.index).for_each_item(p, &self.items, out, d, |fac, pat, x, o| {
            let d_o = pat.n_observed();
            let (mut lj, mut u, mut z) = (vec![0.0; k], vec![0.0; k * d_o], vec![0.0; 2 * d]);
            for (xr, orow) in x.chunks_exact(d_o).zip(o.chunks_exact_mut(d)) {
                fac.log_joint(p, xr, &mut lj, &mut u, &mut z);
                let lse = log_sum_exp(&lj);
                lj.iter_mut().for_each(|v| *v = (*v - lse).exp());
                conditional_mean(fac, pat, xr, &lj, orow);
            }
        })
    }

    /// The per-row outputs of the engine groups: `engine_out(engine, parameters, buffer)` on
    /// each group with its marginal parameters, scattered to the groups' original rows.
    fn engine_outputs(
        &mut self,
        p: &Prepared,
        cov: &Shared,
        out: &mut [f64],
        per_row: usize,
        engine_out: impl Fn(&mut dyn GmmEngine, &Prepared, &mut [f64]) -> Result<()>,
    ) -> Result<()> {
        let perm = self.index.rows();
        for (i, engine) in &mut self.engines {
            let pat = &self.index.patterns()[*i];
            let mut buf = vec![0.0; pat.rows.len() * per_row];
            if pat.missing.is_empty() {
                engine_out(engine.as_mut(), p, &mut buf)?;
            } else {
                let marginal = marginal_prepared(p, &cov.cov, &pat.observed)?;
                engine_out(engine.as_mut(), &marginal, &mut buf)?;
            }
            for (r, v) in buf.chunks_exact(per_row).enumerate() {
                let n = perm[pat.rows.start + r];
                out[n * per_row..(n + 1) * per_row].copy_from_slice(v);
            }
        }
        Ok(())
    }

    fn check_len(&self, len: usize, per_row: usize) -> Result<()> {
        let want = self.index.n_samples() * per_row;
        if len == want {
            Ok(())
        } else {
            Err(Error::param(format!(
                "the output buffer holds {len} values but the data need {want}"
            )))
        }
    }
}

/// The direct path over the rows of an index (shared by threads; the engines are not).
#[derive(Clone, Copy)]
struct Direct<'i>(&'i MissingIndex);

impl Direct<'_> {
    fn pattern(&self, i: usize) -> &Pattern {
        &self.0.patterns()[i]
    }

    /// The statistics of one direct item, added to `acc`.
    fn item_stats(
        &self,
        p: &Prepared,
        cov: &Shared,
        (i, rows): &(usize, std::ops::Range<usize>),
        acc: &mut GmmStats,
    ) -> Result<()> {
        let pat = self.pattern(*i);
        let f = PatternFactors::new(p, cov, pat)?;
        let (k, d, d_o) = (p.n_components, p.n_features, pat.n_observed());
        let full = acc.has_full_s2();
        let x_all = pat.values(self.0);
        // Moments about the item's first row `c` (all components at once: per row one product
        // vector φ = lower triangle of (x − c)(x − c)ᵀ and K contiguous axpys), moved to each
        // μ_ko afterwards (the shift algebra of `GmmStats::reshift`).
        let x = &x_all[rows.start * d_o..rows.end * d_o];
        let shift = x[..d_o].to_vec();
        let t = if full { d_o * (d_o + 1) / 2 } else { d_o };
        let (mut s0, mut s1c, mut s2c) = (vec![0.0; k], vec![0.0; k * d_o], vec![0.0; k * t]);
        let (mut lj, mut u, mut z) = (vec![0.0; k], vec![0.0; k * d_o], vec![0.0; 2 * d]);
        let (mut xt, mut phi) = (vec![0.0; d_o], vec![0.0; t]);
        let mut ll = 0.0;
        for xr in x.chunks_exact(d_o) {
            f.log_joint(p, xr, &mut lj, &mut u, &mut z);
            // log p(x_o) = log Σ_k exp(log p(x_o, k)), by log-sum-exp.
            let lse = log_sum_exp(&lj);
            ll += lse;
            for ((v, a), b) in xt.iter_mut().zip(xr).zip(&shift) {
                *v = a - b;
            }
            if full {
                let mut at = 0;
                for a in 0..d_o {
                    let xa = xt[a];
                    for (ph, xb) in phi[at..at + a + 1].iter_mut().zip(&xt[..=a]) {
                        *ph = xa * xb;
                    }
                    at += a + 1;
                }
            } else {
                for (ph, v) in phi.iter_mut().zip(&xt) {
                    *ph = v * v;
                }
            }
            for c in 0..k {
                let r = (lj[c] - lse).exp();
                s0[c] += r;
                if r == 0.0 {
                    continue;
                }
                for (s, v) in s1c[c * d_o..(c + 1) * d_o].iter_mut().zip(&xt) {
                    *s += r * v;
                }
                for (s, v) in s2c[c * t..(c + 1) * t].iter_mut().zip(&phi) {
                    *s += r * v;
                }
            }
        }
        // About μ_ko: δ = c − μ_ko, S1' = S1 + S0 δ, S2' = S2 + S1 δᵀ + δ S1ᵀ + S0 δ δᵀ.
        let mut s1 = vec![0.0; k * d_o];
        let mut s2 = vec![0.0; if full { k * d_o * d_o } else { k * d_o }];
        for c in 0..k {
            let delta: Vec<f64> = (0..d_o).map(|a| shift[a] - f.mu_o[c * d_o + a]).collect();
            let (q0, q1) = (s0[c], &s1c[c * d_o..(c + 1) * d_o]);
            if full {
                let m = &mut s2[c * d_o * d_o..(c + 1) * d_o * d_o];
                let mut at = c * t;
                for a in 0..d_o {
                    for b in 0..=a {
                        let v = s2c[at + b]
                            + q1[a] * delta[b]
                            + delta[a] * q1[b]
                            + q0 * delta[a] * delta[b];
                        m[a * d_o + b] = v;
                        m[b * d_o + a] = v;
                    }
                    at += a + 1;
                }
            } else {
                for a in 0..d_o {
                    s2[c * d_o + a] =
                        s2c[c * t + a] + 2.0 * q1[a] * delta[a] + q0 * delta[a] * delta[a];
                }
            }
            for a in 0..d_o {
                s1[c * d_o + a] = q1[a] + q0 * delta[a];
            }
        }
        acc.n_samples += rows.len() as f64;
        acc.log_likelihood += ll;
        expand(acc, pat, &f, &s0, &s1, &s2);
        Ok(())
    }

    /// Runs `f(factors, pattern, x_o rows, out rows)` over the rows of `items` (the direct
    /// path's), in parallel over items, and writes them to their original rows of `out`.
    fn for_each_item<T: Copy + Default + Send>(
        &self,
        p: &Prepared,
        items: &[(usize, std::ops::Range<usize>)],
        out: &mut [T],
        per_row: usize,
        f: impl Fn(&PatternFactors, &Pattern, &[f64], &mut [T]) + Sync,
    ) -> Result<()> {
        let cov = Shared::new(p);
        let results = items
            .par_iter()
            .map(|(i, rows)| -> Result<Vec<T>> {
                let pat = self.pattern(*i);
                let fac = PatternFactors::new(p, &cov, pat)?;
                let d_o = pat.n_observed();
                let x = &pat.values(self.0)[rows.start * d_o..rows.end * d_o];
                let mut o = vec![T::default(); rows.len() * per_row];
                f(&fac, pat, x, &mut o);
                Ok(o)
            })
            .collect::<Result<Vec<_>>>()?;
        let perm = self.0.rows();
        for ((i, rows), vals) in items.iter().zip(results) {
            let pat = self.pattern(*i);
            for (r, v) in rows.clone().zip(vals.chunks_exact(per_row)) {
                let n = perm[pat.rows.start + r];
                out[n * per_row..(n + 1) * per_row].copy_from_slice(v);
            }
        }
        Ok(())
    }
}

impl EStep<GmmModel> for MissingEngine<'_> {
    fn e_step(&mut self, p: &Prepared) -> Result<GmmStats> {
        let (k, d) = (p.n_components, p.n_features);
        let cov = Shared::new(p);
        let mut acc = GmmStats::zeros(p.covariance_type, k, d, &p.means);
        for (i, engine) in &mut self.engines {
            let pat = &self.index.patterns()[*i];
            if pat.missing.is_empty() {
                // The complete pattern: the complete-data E-step on the parameters as they are.
                let mut s = engine.e_step(p)?;
                s.rebase_to(&p.means);
                acc.merge(&s);
                continue;
            }
            let marginal = marginal_prepared(p, &cov.cov, &pat.observed)?;
            let mut s = engine.e_step(&marginal)?;
            s.rebase_to(&marginal.means);
            let f = PatternFactors::new(p, &cov, pat)?;
            acc.n_samples += s.n_samples;
            acc.log_likelihood += s.log_likelihood;
            expand(&mut acc, pat, &f, &s.s0, &s.s1, &s.s2);
        }
        if !self.items.is_empty() {
            let per_block = self.items.len().div_ceil(BLOCKS);
            let direct = Direct(self.index);
            let blocks = self
                .items
                .par_chunks(per_block)
                .map(|items| -> Result<GmmStats> {
                    let mut b = GmmStats::zeros(p.covariance_type, k, d, &p.means);
                    for item in items {
                        direct.item_stats(p, &cov, item, &mut b)?;
                    }
                    Ok(b)
                })
                .collect::<Result<Vec<_>>>()?;
            for b in &blocks {
                acc.merge(b);
            }
        }
        Ok(acc)
    }

    fn report(&self) -> BackendReport {
        self.report.clone()
    }
}

impl GmmEngine for MissingEngine<'_> {
    /// `log p(x_o)`: the marginal density of each row's observed entries (engine groups on
    /// their engine, the rare patterns on the CPU).
    fn log_likelihoods(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.check_len(out.len(), 1)?;
        let (k, d) = (p.n_components, p.n_features);
        let cov = Shared::new(p);
        self.engine_outputs(p, &cov, out, 1, |e, q, o| e.log_likelihoods(q, o))?;
        Direct(self.index).for_each_item(p, &self.items, out, 1, |fac, pat, x, o| {
            let d_o = pat.n_observed();
            let (mut lj, mut u, mut z) = (vec![0.0; k], vec![0.0; k * d_o], vec![0.0; 2 * d]);
            for (xr, o) in x.chunks_exact(d_o).zip(o.iter_mut()) {
                fac.log_joint(p, xr, &mut lj, &mut u, &mut z);
                *o = log_sum_exp(&lj);
            }
        })
    }

    /// Responsibilities under the marginal of each row's observed entries (engine groups on
    /// their engine, the rare patterns on the CPU).
    fn responsibilities(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        let (k, d) = (p.n_components, p.n_features);
        self.check_len(out.len(), k)?;
        let cov = Shared::new(p);
        self.engine_outputs(p, &cov, out, k, |e, q, o| e.responsibilities(q, o))?;
        Direct(self.index).for_each_item(p, &self.items, out, k, |fac, pat, x, o| {
            let d_o = pat.n_observed();
            let (mut u, mut z) = (vec![0.0; k * d_o], vec![0.0; 2 * d]);
            for (xr, o) in x.chunks_exact(d_o).zip(o.chunks_exact_mut(k)) {
                fac.log_joint(p, xr, o, &mut u, &mut z);
                let lse = log_sum_exp(o);
                o.iter_mut().for_each(|v| *v = (*v - lse).exp());
            }
        })
    }
}

/// `E[x | x_o]` of one row given its responsibilities `r` (`[K]`): the observed entries of
/// `xr` copied, each missing entry `Σ_k r_k (μ_km + B_k (x_o − μ_ko))` (`orow`: `[D]`).
pub(super) fn conditional_mean(
    f: &PatternFactors,
    pat: &Pattern,
    xr: &[f64],
    r: &[f64],
    orow: &mut [f64],
) {
    let d_o = pat.n_observed();
    let d_m = pat.missing.len();
    for (a, &j) in pat.observed.iter().enumerate() {
        orow[j] = xr[a];
    }
    for &j in &pat.missing {
        orow[j] = 0.0;
    }
    for (c, &rc) in r.iter().enumerate() {
        if rc == 0.0 {
            continue;
        }
        let b = &f.factor(c).b;
        let mu_o = &f.mu_o[c * d_o..(c + 1) * d_o];
        for (a, &j) in pat.missing.iter().enumerate() {
            let cond: f64 = b[a * d_o..(a + 1) * d_o]
                .iter()
                .zip(xr.iter().zip(mu_o))
                .map(|(b, (x, m))| b * (x - m))
                .sum();
            orow[j] += rc * (f.mu_m[c * d_m + a] + cond);
        }
    }
}

impl GmmStats {
    /// Moves the statistics to `shift` when they are about another one.
    pub(crate) fn rebase_to(&mut self, shift: &[f64]) {
        if self.shift != shift {
            self.reshift(shift);
        }
    }
}
