//! What mixtures of simple components share, so that such a model is only its densities and its
//! M-step: statistics `Σ r_nk` and `Σ r_nk·t(x_n)` for a fixed feature map `t`
//! ([`MixtureStats`]: exponential-family components — Poisson and Bernoulli `t(x) = x`, diagonal
//! Gaussian `t(x) = (x, x²)` — need nothing else), the CPU E-step over any data
//! ([`CpuMixtureEngine`]: parallel over chunks, log-sum-exp per point, chunk statistics merged
//! in order) and the most likely component of every point ([`predict_components`]).

use super::{EStep, Model, Stats};
use crate::data::{Dataset, chunk_rows_for};
use crate::device::cpu::map_chunks;
use crate::device::{BackendReport, cpu_report};
use crate::em::map_merge;
use crate::error::Result;
use crate::numerics::log_sum_exp;

/// A mixture's densities, as the generic E-step needs them.
pub trait MixtureDensity: Model<Stats = MixtureStats> + Sync
where
    Self::Prepared: Sync,
{
    /// K.
    fn n_components(&self) -> usize;
    /// Length T of the feature map `t(x)`.
    fn n_stat_features(&self) -> usize;
    /// `log π_k + log p(x | k)` for every component k, into `out` (`[K]`).
    fn log_joint(&self, p: &Self::Prepared, x: &[f64], out: &mut [f64]);
    /// `t(x)` into `out` (`[T]`).
    fn stat_features(&self, x: &[f64], out: &mut [f64]);
}

/// `n`, `Σ log p(x_n)`, `S0_k = Σ_n r_nk` and `S1_kt = Σ_n r_nk t_t(x_n)`; flat view
/// `[n, log-likelihood, S0 (K), S1 (K·T)]`, merged and scaled through it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MixtureStats {
    /// Number of points (or sum of weights).
    pub n_samples: f64,
    /// `Σ_n log p(x_n)`.
    pub log_likelihood: f64,
    /// `S0`, `[K]`.
    pub s0: Vec<f64>,
    /// `S1`, `[K][T]` row-major.
    pub s1: Vec<f64>,
}

impl MixtureStats {
    /// Zero statistics for `k` components and `t` features.
    pub fn zeros(k: usize, t: usize) -> Self {
        Self {
            s0: vec![0.0; k],
            s1: vec![0.0; k * t],
            ..Self::default()
        }
    }
}

impl Stats for MixtureStats {
    fn log_likelihood(&self) -> f64 {
        self.log_likelihood
    }
    fn n_samples(&self) -> f64 {
        self.n_samples
    }
    fn flat_len(&self) -> usize {
        2 + self.s0.len() + self.s1.len()
    }
    fn write_flat(&self, out: &mut [f64]) {
        let (head, rest) = out.split_at_mut(2 + self.s0.len());
        (head[0], head[1]) = (self.n_samples, self.log_likelihood);
        head[2..].copy_from_slice(&self.s0);
        rest.copy_from_slice(&self.s1);
    }
    fn read_flat(&mut self, src: &[f64]) {
        let (head, rest) = src.split_at(2 + self.s0.len());
        (self.n_samples, self.log_likelihood) = (head[0], head[1]);
        self.s0.copy_from_slice(&head[2..]);
        self.s1.copy_from_slice(rest);
    }
}

/// Rows per chunk of the generic mixture passes (about 8192 values).
fn chunk_rows(d: usize) -> usize {
    chunk_rows_for(d, 8192)
}

/// The CPU E-step of a [`MixtureDensity`] model over one data set (f64, all cores).
pub struct CpuMixtureEngine<'a, M> {
    model: M,
    data: &'a Dataset<'a>,
    reason: String,
}

impl<'a, M> CpuMixtureEngine<'a, M> {
    /// The engine of `model` over `data`; `reason` says why the CPU runs it (for `Auto`).
    pub fn new(model: M, data: &'a Dataset<'a>, reason: String) -> Self {
        Self {
            model,
            data,
            reason,
        }
    }
}

impl<M> EStep<M> for CpuMixtureEngine<'_, M>
where
    M: MixtureDensity,
    M::Prepared: Sync,
{
    fn e_step(&mut self, p: &M::Prepared) -> Result<MixtureStats> {
        let (m, d) = (&self.model, self.data.n_features());
        let (k, t) = (m.n_components(), m.n_stat_features());
        let zero = MixtureStats::zeros(k, t);
        map_merge(self.data, chunk_rows(d), zero.clone(), |_, rows| {
            let (mut s, mut lj, mut tx) = (zero.clone(), vec![0.0; k], vec![0.0; t]);
            for x in rows.chunks_exact(d) {
                m.log_joint(p, x, &mut lj);
                m.stat_features(x, &mut tx);
                // Responsibilities r_k = exp(log π_k p(x|k) − log p(x)), by log-sum-exp.
                let lp = log_sum_exp(&lj);
                (s.n_samples, s.log_likelihood) = (s.n_samples + 1.0, s.log_likelihood + lp);
                for (c, w) in lj.iter().enumerate() {
                    let r = (w - lp).exp();
                    s.s0[c] += r;
                    let s1 = s.s1[c * t..][..t].iter_mut();
                    s1.zip(&tx).for_each(|(a, v)| *a += r * v);
                }
            }
            s
        })
    }

    fn report(&self) -> BackendReport {
        cpu_report(&self.reason)
    }
}

/// The most likely component of every point of `data` under `p` (ties to the lowest index).
pub fn predict_components<M>(model: &M, p: &M::Prepared, data: &Dataset) -> Result<Vec<usize>>
where
    M: MixtureDensity,
    M::Prepared: Sync,
{
    let (d, k) = (data.n_features(), model.n_components());
    let chunks = map_chunks(data, chunk_rows(d), |_, rows| {
        let mut lj = vec![0.0; k];
        let mut best = |x: &[f64]| {
            model.log_joint(p, x, &mut lj);
            (0..k).fold(0, |b, c| if lj[c] > lj[b] { c } else { b })
        };
        rows.chunks_exact(d).map(&mut best).collect::<Vec<_>>()
    })?;
    Ok(chunks.concat())
}
