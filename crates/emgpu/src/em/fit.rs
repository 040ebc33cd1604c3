//! What the fits of simple models share: the settings of an EM fit ([`EmSettings`]), its result
//! ([`Fitted`]) and the fit from seeded random restarts ([`fit_model`]).
//!
//! A model's builder holds its own hyper-parameters and an [`EmSettings`]; its `fit` validates the
//! data, builds the engine for `settings.backend`, and calls [`fit_model`] with a draw of starting
//! parameters. (The Gaussian mixture and k-means keep their own scikit-learn-shaped builders.)

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Control, EStep, EmRun, Model, Progress, Stats, StopRule, fit_restarts};
use crate::device::{Backend, BackendReport};
use crate::error::{Error, Result};

/// The settings every EM fit shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmSettings {
    /// The threshold of the model's convergence test (mixtures: the change of the lower bound);
    /// 0 runs `max_iter` iterations.
    pub tol: f64,
    /// At most this many iterations (E-step + M-step) per initialization.
    pub max_iter: usize,
    /// Initializations; the run with the strictly best lower bound is kept (the first of equal
    /// ones).
    pub n_init: usize,
    /// Seed of the generator the initializations draw from.
    pub seed: u64,
    /// Which device runs the E-step (the caller builds the engine with it).
    pub backend: Backend,
}

impl Default for EmSettings {
    /// `tol` 1e-3, `max_iter` 100, `n_init` 1, `seed` 0, [`Backend::Auto`].
    fn default() -> Self {
        Self {
            tol: 1e-3,
            max_iter: 100,
            n_init: 1,
            seed: 0,
            backend: Backend::Auto,
        }
    }
}

impl EmSettings {
    /// The stopping rule of each run: `tol` and `max_iter`.
    pub fn rule(&self) -> StopRule {
        StopRule {
            tol: self.tol,
            max_iter: self.max_iter,
        }
    }

    /// Checks `tol` is finite and non-negative, `max_iter ≥ 1` and `n_init ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        self.rule().validate()?;
        if self.n_init == 0 {
            return Err(Error::param("n_init must be at least 1"));
        }
        Ok(())
    }
}

/// A model fitted by [`fit_model`]: the best run, every initialization's final lower bound, what
/// ran the E-steps, and the model itself.
#[derive(Clone)]
pub struct Fitted<M: Model> {
    run: EmRun<M>,
    init_lower_bounds: Vec<f64>,
    report: BackendReport,
    model: M,
}

impl<M: Model + std::fmt::Debug> std::fmt::Debug for Fitted<M>
where
    M::Params: std::fmt::Debug,
    M::Stats: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fitted")
            .field("run", &self.run)
            .field("init_lower_bounds", &self.init_lower_bounds)
            .field("report", &self.report)
            .field("model", &self.model)
            .finish()
    }
}

impl<M: Model> Fitted<M> {
    /// The fitted parameters (after the last M-step of the best run).
    pub fn params(&self) -> &M::Params {
        &self.run.params
    }
    /// The model the parameters belong to.
    pub fn model(&self) -> &M {
        &self.model
    }
    /// The best run's last lower bound (scikit-learn's `lower_bound_`).
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
    /// Whether the best run passed the model's convergence test.
    pub fn converged(&self) -> bool {
        self.run.converged
    }
    /// The final lower bound of every initialization, in order.
    pub fn init_lower_bounds(&self) -> &[f64] {
        &self.init_lower_bounds
    }
    /// What ran the E-steps, and why.
    pub fn report(&self) -> &BackendReport {
        &self.report
    }
    /// The mean log-likelihood of `engine`'s data under the fitted parameters (one E-step).
    pub fn score_with(&self, engine: &mut dyn EStep<M>) -> Result<f64> {
        Ok(engine
            .e_step(&self.model.prepare(self.params())?)?
            .lower_bound())
    }
    /// The Bayesian information criterion of `engine`'s data under the fitted parameters (one
    /// E-step; lower is better; the statistics' sample count rounded to an integer).
    pub fn bic_with(&self, engine: &mut dyn EStep<M>) -> Result<f64> {
        let stats = engine.e_step(&self.model.prepare(self.params())?)?;
        let n = stats.n_samples().round() as usize;
        let n_parameters = self.model.n_parameters();
        Ok(crate::em::information_criteria(stats.log_likelihood(), n_parameters, n).0)
    }
}

/// Fits `model` with `engine` from `settings.n_init` initializations: restart `i` starts from
/// `draw(i, rng)`, where `rng` is one generator seeded with `settings.seed` and shared by the
/// restarts in order; the run with the strictly best lower bound is kept ([`fit_restarts`]).
/// `settings` is validated first; `settings.backend` is not read here (the caller built `engine`
/// with it). `progress` may stop the fit (then [`Error::Cancelled`]).
pub fn fit_model<M: Model>(
    model: M,
    engine: &mut dyn EStep<M>,
    settings: &EmSettings,
    mut draw: impl FnMut(usize, &mut ChaCha8Rng) -> Result<M::Params>,
    progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<Fitted<M>> {
    settings.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let (run, init_lower_bounds) = fit_restarts(
        &model,
        &mut *engine,
        settings.n_init,
        settings.rule(),
        |init| draw(init, &mut rng),
        progress,
    )?;
    Ok(Fitted {
        run,
        init_lower_bounds,
        report: engine.report(),
        model,
    })
}
