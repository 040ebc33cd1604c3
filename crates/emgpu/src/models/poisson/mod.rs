//! A mixture of independent Poissons (counts x ∈ ℕ^D; component k has weight π_k and rates
//! λ_kd), fitted by the generic EM loop on the CPU: the example of a model that plugs into
//! [`crate::em`] from its own folder. It supplies only its densities ([`MixtureDensity`]) and
//! its M-step ([`Model`]); the statistics, the CPU E-step, restarts and the fitted result are the
//! core's ([`crate::em::mixture`], [`crate::em::fit_model`]).

use crate::data::{AsDataset, Dataset, chunk_rows_for};
use crate::device::cpu::map_chunks;
use crate::device::{Backend, cpu_only};
use crate::em::mixture::{CpuMixtureEngine, MixtureDensity, MixtureStats, predict_components};
use crate::em::{Control, EmSettings, Fitted, Model, fit_model};
use crate::error::{Error, Result};
use crate::init::{check_k, random_rows};

/// The statistics of a Poisson mixture: `S0_k = Σ r_nk`, `S1_kd = Σ r_nk x_nd`.
pub type PoissonStats = MixtureStats;
/// The CPU E-step engine of a Poisson mixture.
pub type CpuPoissonEngine<'a> = CpuMixtureEngine<'a, PoissonMixtureModel>;
/// A fitted Poisson mixture: the generic [`Fitted`], with the methods below.
pub type FittedPoissonMixture = Fitted<PoissonMixtureModel>;

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
    type Stats = MixtureStats;

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

    /// π_k = nk / Σ nk and λ_kd = S1_kd / nk with nk = S0_k + 10·ε (as scikit-learn's mixtures),
    /// rates floored at `min_rate`.
    fn m_step(&self, s: &MixtureStats) -> Result<PoissonParams> {
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

impl MixtureDensity for PoissonMixtureModel {
    fn n_components(&self) -> usize {
        self.n_components
    }
    fn n_stat_features(&self) -> usize {
        self.n_features
    }
    /// `log π_k − Σ_d λ_kd + Σ_d x_d log λ_kd − Σ_d log x_d!`.
    fn log_joint(&self, p: &PoissonPrepared, x: &[f64], out: &mut [f64]) {
        let lf: f64 = x.iter().map(|&v| ln_factorial(v)).sum();
        for (c, o) in out.iter_mut().enumerate() {
            let lr = &p.log_rates[c * x.len()..][..x.len()];
            let terms = x.iter().zip(lr).filter(|(v, _)| **v != 0.0);
            *o = p.offsets[c] + terms.map(|(v, l)| v * l).sum::<f64>() - lf;
        }
    }
    fn stat_features(&self, x: &[f64], out: &mut [f64]) {
        out.copy_from_slice(x);
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

/// The engine of `backend` for `data` after checking it holds finite, non-negative integer
/// counts: `Cpu` and `Auto` run the CPU (Auto says why); `Gpu` is an error ([`cpu_only`]).
pub fn poisson_engine<'a>(
    backend: Backend,
    data: &'a Dataset,
    model: PoissonMixtureModel,
) -> Result<Box<CpuPoissonEngine<'a>>> {
    data.validate_for("the Poisson mixture")?;
    data.require_unweighted("the Poisson mixture")?;
    let d = data.n_features();
    let bad = map_chunks(data, chunk_rows_for(d, 8192), |start, rows| {
        let p = rows.iter().position(|v| *v < 0.0 || v.fract() != 0.0);
        p.map(|p| (start * d + p, rows[p]))
    })?;
    if let Some((pos, v)) = bad.into_iter().flatten().next() {
        let (row, col) = (pos / d, pos % d);
        let what = format!(
            "the Poisson mixture needs non-negative integer counts, got {v} at row {row}, column {col} (0-based)"
        );
        return Err(Error::param(what));
    }
    cpu_only(backend, "the Poisson mixture", |reason| {
        Box::new(CpuMixtureEngine::new(model, data, reason))
    })
}

/// Fits `k` components to counts `x` (`[N][D]`, non-negative integers); each initialization
/// starts from `k` distinct random rows (+0.5) and equal weights.
pub fn fit(k: usize, settings: &EmSettings, x: &impl AsDataset) -> Result<FittedPoissonMixture> {
    let data = x.as_dataset();
    settings.validate()?;
    let (n_components, n_features, min_rate) = (k, data.n_features(), 1e-10);
    let model = PoissonMixtureModel {
        n_components,
        n_features,
        min_rate,
    };
    let mut engine = poisson_engine(settings.backend, &data, model)?;
    check_k(k, data.n_samples())?;
    let draw = |_, rng: &mut _| {
        let rates = random_rows(&data, k, rng)?
            .0
            .iter()
            .map(|v| v + 0.5)
            .collect();
        let weights = vec![1.0 / k as f64; k];
        Ok(PoissonParams { weights, rates })
    };
    fit_model(model, engine.as_mut(), settings, draw, &mut |_| {
        Control::Continue(())
    })
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
        poisson_engine(Backend::Cpu, data, *self.model())
    }
    /// The most likely component of every point.
    pub fn predict(&self, x: &impl AsDataset) -> Result<Vec<usize>> {
        let data = x.as_dataset();
        self.engine_on(&data)?;
        predict_components(self.model(), &self.model().prepare(self.params())?, &data)
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
