//! A mixture of independent Poissons (counts x ∈ ℕ^D; component k has weight π_k and rates
//! λ_kd), fitted by the generic EM loop on the CPU: the example of a model that plugs into
//! [`crate::em`] from its own folder.

mod model;

pub use model::{
    CpuPoissonEngine, PoissonMixtureModel, PoissonParams, PoissonPrepared, PoissonStats,
    ln_factorial, poisson_engine, validate_counts,
};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::AsDataset;
use crate::device::{Backend, BackendReport};
use crate::em::{EStep, EmRun, Model, StopRule, best_of, observe, run_em};
use crate::error::{Error, Result};
use crate::init::random_rows;

/// Builder of a Poisson mixture fit.
#[derive(Debug, Clone)]
pub struct PoissonMixture {
    n_components: usize,
    rule: StopRule,
    n_init: usize,
    seed: u64,
    backend: Backend,
}

impl PoissonMixture {
    /// K components; `max_iter` 100, `tol` 1e-3, one initialization, seed 0, `Backend::Auto`.
    pub fn params(n_components: usize) -> Self {
        let rule = StopRule {
            tol: 1e-3,
            max_iter: 100,
        };
        Self {
            n_components,
            rule,
            n_init: 1,
            seed: 0,
            backend: Backend::Auto,
        }
    }
    /// At most this many EM iterations per initialization.
    pub fn max_iter(mut self, v: usize) -> Self {
        self.rule.max_iter = v;
        self
    }
    /// Stop when the lower bound changes by less than this.
    pub fn tol(mut self, v: f64) -> Self {
        self.rule.tol = v;
        self
    }
    /// Restarts; the strictly best lower bound wins.
    pub fn n_init(mut self, v: usize) -> Self {
        self.n_init = v;
        self
    }
    /// Seed of the initializations.
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }
    /// `Cpu` or `Auto` (both run the CPU); `Gpu` is an error.
    pub fn backend(mut self, v: Backend) -> Self {
        self.backend = v;
        self
    }

    /// Fits the mixture to counts `x` (`[N][D]`, non-negative integers).
    pub fn fit(&self, x: &impl AsDataset) -> Result<FittedPoissonMixture> {
        let data = x.as_dataset();
        let (n, d, k) = (data.n_samples(), data.n_features(), self.n_components);
        if k == 0 {
            return Err(Error::param("n_components must be at least 1"));
        }
        self.rule.validate()?;
        let mut engine = poisson_engine(self.backend, &data)?;
        if k > n {
            return Err(Error::TooManyComponents {
                n_components: k,
                n_samples: n,
            });
        }
        let model = PoissonMixtureModel {
            n_components: k,
            n_features: d,
            min_rate: 1e-10,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (best, _) = best_of(
            self.n_init,
            |init| {
                let rates = random_rows(&data, k, &mut rng)
                    .0
                    .iter()
                    .map(|v| v + 0.5)
                    .collect();
                let params = PoissonParams {
                    weights: vec![1.0 / k as f64; k],
                    rates,
                };
                run_em(
                    &model,
                    engine.as_mut(),
                    params,
                    self.rule,
                    init,
                    &mut observe(&mut |_| {}),
                )
            },
            |run: &EmRun<PoissonMixtureModel>, best| run.lower_bound > best.lower_bound,
            |run| run.lower_bound,
        )?;
        Ok(FittedPoissonMixture {
            model,
            report: engine.report(),
            run: best,
        })
    }
}

/// A fitted Poisson mixture.
#[derive(Debug, Clone)]
pub struct FittedPoissonMixture {
    model: PoissonMixtureModel,
    report: BackendReport,
    run: EmRun<PoissonMixtureModel>,
}

impl FittedPoissonMixture {
    /// π_k, `[K]`.
    pub fn weights(&self) -> &[f64] {
        &self.run.params.weights
    }
    /// λ_kd, `[K][D]` row-major.
    pub fn rates(&self) -> &[f64] {
        &self.run.params.rates
    }
    /// Mean log-likelihood of the last E-step (scikit-learn's `lower_bound_`).
    pub fn lower_bound(&self) -> f64 {
        self.run.lower_bound
    }
    /// The lower bound of every iteration of the best run.
    pub fn lower_bound_trace(&self) -> &[f64] {
        &self.run.lower_bound_trace
    }
    /// Iterations of the best run.
    pub fn n_iter(&self) -> usize {
        self.run.n_iter
    }
    /// Whether the best run converged.
    pub fn converged(&self) -> bool {
        self.run.converged
    }
    /// What ran the fit, and why.
    pub fn report(&self) -> &BackendReport {
        &self.report
    }

    /// Per point of `x`: the most likely component and log p(x).
    fn outputs(&self, x: &impl AsDataset) -> Result<Vec<(usize, f64)>> {
        let data = x.as_dataset();
        let (expected, got) = (self.model.n_features, data.n_features());
        if got != expected && data.n_samples() > 0 {
            return Err(Error::DimensionMismatch { expected, got });
        }
        let engine = poisson_engine(Backend::Cpu, &data)?;
        Ok(engine.point_outputs(&self.model.prepare(&self.run.params)?))
    }
    /// The most likely component of every point.
    pub fn predict(&self, x: &impl AsDataset) -> Result<Vec<usize>> {
        Ok(self.outputs(x)?.into_iter().map(|o| o.0).collect())
    }
    /// The mean log-likelihood of `x`.
    pub fn score(&self, x: &impl AsDataset) -> Result<f64> {
        let out = self.outputs(x)?;
        Ok(out.iter().map(|o| o.1).sum::<f64>() / out.len() as f64)
    }
    /// The Bayesian information criterion on `x` (lower is better).
    pub fn bic(&self, x: &impl AsDataset) -> Result<f64> {
        let out = self.outputs(x)?;
        let loglik = out.iter().map(|o| o.1).sum();
        Ok(crate::select::information_criteria(loglik, self.model.n_parameters(), out.len()).0)
    }
}
