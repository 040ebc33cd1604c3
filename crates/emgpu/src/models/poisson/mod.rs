//! A mixture of independent Poissons (counts x ∈ ℕ^D; component k has weight π_k and rates
//! λ_kd), fitted by the generic EM loop on the CPU: the example of a model that plugs into
//! [`crate::em`] from its own folder, with [`crate::em::fit_model`] doing the fit.

use crate::data::{AsDataset, Dataset, chunk_rows_for};
use crate::device::cpu::{map_chunks, map_merge};
use crate::device::{Backend, BackendReport, cpu_only, cpu_report};
use crate::em::{Control, EStep, EmSettings, Fitted, Model, Progress, Stats, fit_model};
use crate::error::{Error, Result};
use crate::init::{check_k, random_rows};
use crate::numerics::log_sum_exp;

/// Parameters: weights π_k `[K]` and rates λ_kd `[K][D]` (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct PoissonParams {
    /// π_k.
    pub weights: Vec<f64>,
    /// λ_kd.
    pub rates: Vec<f64>,
}

/// Prepared for an E-step: log π_k − Σ_d λ_kd `[K]` and log λ_kd `[K][D]`.
#[derive(Debug, Clone)]
pub struct PoissonPrepared {
    offsets: Vec<f64>,
    log_rates: Vec<f64>,
}

/// `S0_k = Σ r_nk`, `S1_kd = Σ r_nk x_nd`, `Σ log p(x_n)` and n; flat view `[n, loglik, S0, S1]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoissonStats {
    /// n.
    pub n_samples: f64,
    /// Σ_n log p(x_n).
    pub log_likelihood: f64,
    /// `[K]`.
    pub s0: Vec<f64>,
    /// `[K][D]`.
    pub s1: Vec<f64>,
}

impl PoissonStats {
    /// Zero statistics for K components and D features.
    pub fn zeros(k: usize, d: usize) -> Self {
        let mut s = Self::default();
        (s.s0, s.s1) = (vec![0.0; k], vec![0.0; k * d]);
        s
    }
}

impl Stats for PoissonStats {
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

/// A mixture of `n_components` products of `n_features` independent Poissons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoissonMixtureModel {
    /// K.
    pub n_components: usize,
    /// D.
    pub n_features: usize,
    /// Floor of every rate (an empty component gets rates `min_rate`, not NaN).
    pub min_rate: f64,
}

impl Model for PoissonMixtureModel {
    type Params = PoissonParams;
    type Prepared = PoissonPrepared;
    type Stats = PoissonStats;

    fn prepare(&self, p: &PoissonParams) -> Result<PoissonPrepared> {
        let (k, d) = (self.n_components, self.n_features);
        if p.weights.len() != k || p.rates.len() != k * d {
            let shapes = format!("Poisson parameters must be [{k}] and [{k}][{d}]");
            return Err(Error::param(shapes));
        }
        let offsets = (0..k).map(|c| p.weights[c].ln() - p.rates[c * d..][..d].iter().sum::<f64>());
        let (offsets, log_rates) = (offsets.collect(), p.rates.iter().map(|r| r.ln()).collect());
        Ok(PoissonPrepared { offsets, log_rates })
    }

    fn m_step(&self, s: &PoissonStats) -> Result<PoissonParams> {
        let nk: Vec<f64> = s.s0.iter().map(|v| v + 10.0 * f64::EPSILON).collect();
        let total: f64 = nk.iter().sum();
        let weights = nk.iter().map(|v| v / total).collect();
        let d = self.n_features;
        let rates = s.s1.iter().enumerate().map(|(i, v)| v / nk[i / d]);
        let rates = rates.map(|r| r.max(self.min_rate)).collect();
        Ok(PoissonParams { weights, rates })
    }

    fn n_parameters(&self) -> usize {
        self.n_components * self.n_features + self.n_components - 1
    }
}

/// `ln x!` for a non-negative integer `x`: a sum of logs up to 1024, Stirling's series beyond.
pub fn ln_factorial(x: f64) -> f64 {
    if x < 1024.0 {
        return (2..=x as u32).map(|i| f64::from(i).ln()).sum();
    }
    let tau = std::f64::consts::TAU;
    x * x.ln() - x + 0.5 * (tau * x).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x.powi(3))
}

/// `log π_k p(x | k)` for every component into `out`; returns `log p(x)`.
fn weighted_log_probs(p: &PoissonPrepared, x: &[f64], out: &mut [f64]) -> f64 {
    let lf: f64 = x.iter().map(|&v| ln_factorial(v)).sum();
    for (c, o) in out.iter_mut().enumerate() {
        let lr = &p.log_rates[c * x.len()..][..x.len()];
        let terms = x.iter().zip(lr).filter(|(v, _)| **v != 0.0);
        let dot: f64 = terms.map(|(v, l)| v * l).sum();
        *o = p.offsets[c] + dot - lf;
    }
    log_sum_exp(out)
}

/// The CPU E-step engine of the Poisson mixture over one data set of counts.
pub struct CpuPoissonEngine<'a> {
    data: &'a Dataset<'a>,
    reason: String,
}

impl EStep<PoissonMixtureModel> for CpuPoissonEngine<'_> {
    fn e_step(&mut self, p: &PoissonPrepared) -> Result<PoissonStats> {
        let (k, d) = (p.offsets.len(), self.data.n_features());
        let zero = PoissonStats::zeros(k, d);
        Ok(map_merge(
            self.data,
            chunk_rows_for(d, 8192),
            zero.clone(),
            |_, rows| {
                let (mut s, mut buf) = (zero.clone(), vec![0.0; k]);
                for x in rows.chunks_exact(d) {
                    let lp = weighted_log_probs(p, x, &mut buf);
                    (s.n_samples, s.log_likelihood) = (s.n_samples + 1.0, s.log_likelihood + lp);
                    for (c, w) in buf.iter().enumerate() {
                        let r = (w - lp).exp();
                        s.s0[c] += r;
                        let s1 = s.s1[c * d..][..d].iter_mut();
                        s1.zip(x).for_each(|(a, v)| *a += r * v);
                    }
                }
                s
            },
        ))
    }

    fn report(&self) -> BackendReport {
        cpu_report(&self.reason)
    }
}

/// The engine of `backend` for `data`, after checking it holds finite, non-negative integer
/// counts: `Cpu` and `Auto` run the CPU (Auto says why); `Gpu` is an error ([`cpu_only`]).
pub fn poisson_engine<'a>(
    backend: Backend,
    data: &'a Dataset,
) -> Result<Box<CpuPoissonEngine<'a>>> {
    data.validate()?;
    let d = data.n_features();
    let bad = map_chunks(data, chunk_rows_for(d, 8192), |start, rows| {
        let p = rows.iter().position(|v| *v < 0.0 || v.fract() != 0.0);
        p.map(|p| (start * d + p, rows[p]))
    });
    if let Some((pos, v)) = bad.into_iter().flatten().next() {
        let (row, col) = (pos / d, pos % d);
        let what = format!(
            "the Poisson mixture needs non-negative integer counts, got {v} at row {row}, column {col} (0-based)"
        );
        return Err(Error::param(what));
    }
    cpu_only(backend, "the Poisson mixture", |reason| {
        Box::new(CpuPoissonEngine { data, reason })
    })
}

/// A fitted Poisson mixture: the generic [`Fitted`], with the methods below.
pub type FittedPoissonMixture = Fitted<PoissonMixtureModel>;

/// Fits `k` components to counts `x` (`[N][D]`, non-negative integers); each initialization
/// starts from `k` distinct random rows (+0.5) and equal weights.
pub fn fit(k: usize, settings: &EmSettings, x: &impl AsDataset) -> Result<FittedPoissonMixture> {
    let data = x.as_dataset();
    settings.validate()?;
    let mut engine = poisson_engine(settings.backend, &data)?;
    check_k(k, data.n_samples())?;
    let (n_components, n_features, min_rate) = (k, data.n_features(), 1e-10);
    let model = PoissonMixtureModel {
        n_components,
        n_features,
        min_rate,
    };
    let draw = |_, rng: &mut _| {
        let (rows, _) = random_rows(&data, k, rng);
        let (weights, rates) = (
            vec![1.0 / k as f64; k],
            rows.iter().map(|v| v + 0.5).collect(),
        );
        Ok(PoissonParams { weights, rates })
    };
    let progress = &mut |_: &Progress| Control::Continue(());
    fit_model(model, engine.as_mut(), settings, draw, progress)
}

impl Fitted<PoissonMixtureModel> {
    /// π_k, `[K]`.
    pub fn weights(&self) -> &[f64] {
        &self.params().weights
    }
    /// λ_kd, `[K][D]` row-major.
    pub fn rates(&self) -> &[f64] {
        &self.params().rates
    }
    /// The CPU engine over `data`, which must have the fitted number of features.
    fn engine_on<'a>(&self, data: &'a Dataset) -> Result<Box<CpuPoissonEngine<'a>>> {
        let (expected, got) = (self.model().n_features, data.n_features());
        if got != expected && data.n_samples() > 0 {
            return Err(Error::DimensionMismatch { expected, got });
        }
        poisson_engine(Backend::Cpu, data)
    }
    /// The most likely component of every point.
    pub fn predict(&self, x: &impl AsDataset) -> Result<Vec<usize>> {
        let data = x.as_dataset();
        let (d, k) = (
            self.engine_on(&data)?.data.n_features(),
            self.weights().len(),
        );
        let p = self.model().prepare(self.params())?;
        let chunks = map_chunks(&data, chunk_rows_for(d, 8192), |_, rows| {
            let mut buf = vec![0.0; k];
            let mut best = |x: &[f64]| {
                weighted_log_probs(&p, x, &mut buf);
                (0..k).fold(0, |b, c| if buf[c] > buf[b] { c } else { b })
            };
            rows.chunks_exact(d).map(&mut best).collect::<Vec<_>>()
        });
        Ok(chunks.concat())
    }
    /// The mean log-likelihood of `x`.
    pub fn score(&self, x: &impl AsDataset) -> Result<f64> {
        self.score_with(self.engine_on(&x.as_dataset())?.as_mut())
    }
    /// The Bayesian information criterion on `x` (lower is better).
    pub fn bic(&self, x: &impl AsDataset) -> Result<f64> {
        self.bic_with(self.engine_on(&x.as_dataset())?.as_mut())
    }
}
