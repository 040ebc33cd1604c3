//! The Gaussian mixture over the rows of several processes (a distributed fit, see
//! [`crate::em::reduce`]): every E-step's statistics are summed across the processes, every
//! process runs the same M-step, convergence test and restarts, and the start is the
//! one-process start (a given model as it is; k-means and k-means++ over all the rows, their
//! statistics summed the same way).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::init::{InitState, gmm_stats_from_labels};
use super::{
    FittedGmm, GaussianMixture, GmmEngine, GmmParams, GmmStats, Init, RunResult, WeightNorm,
    estimate_parameters, gmm_engine, with_reg,
};
use crate::data::Dataset;
use crate::em::reduce::{Reduced, Reducer, agreed, reduce_stats};
use crate::em::{Control, Progress, StopRule, best_of, run_em_with};
use crate::error::{Error, Result};
use crate::init::{column_mean_var_reduced, kmeans_plusplus_reduced, tolerance_from_variances};
use crate::models::kmeans::KMeansEngine;
use crate::models::kmeans::lloyd;

impl GaussianMixture {
    /// Fits the mixture to the rows of every process of a distributed fit: `data` holds this
    /// process's rows ([`Dataset::with_global_rows`]), `reducer` sums the statistics of every
    /// E-step across the processes. Every process returns the same model, as a one-process fit
    /// of all the rows would (up to the rounding of the sums; see [`crate::em::reduce`]): the
    /// lower bound is the total log-likelihood over all N rows divided by N, restarts run in the
    /// same order everywhere. Failures on any process (non-finite rows, an engine that cannot be
    /// built) are agreed on before the next collective call ([`Reducer::agree`]).
    ///
    /// Starts: [`Init::Params`], [`Init::Kmeans`] and [`Init::KMeansPlusPlus`]; `random`,
    /// `random_from_data`, stepwise EM, re-seeding and sample weights are refused with an error.
    pub fn fit_distributed<'a>(
        &self,
        data: &'a Dataset<'a>,
        reducer: &dyn Reducer,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<FittedGmm> {
        let checked = check_distributed_data(data)
            .and_then(|_| self.check_distributed(data.global_rows(), data.n_features()));
        reducer.agree(checked)?;
        let built = gmm_engine(
            self.backend,
            data,
            self.covariance_type,
            self.n_components,
            self.engine,
        );
        let mut engine = agreed(reducer, built)?;
        let mut state = self.init_state();
        let kmeans_tol = self.kmeans_tol_distributed(data, reducer)?;
        self.fit_distributed_engine(
            data,
            engine.as_mut(),
            &mut state,
            reducer,
            kmeans_tol,
            progress,
        )
    }

    /// The settings checks of a distributed fit over `n` rows of `d` features (the data's are
    /// [`check_distributed_data`]): [`GaussianMixture::validate`], and the starts and modes a
    /// distributed fit does not run.
    pub(crate) fn check_distributed(&self, n: usize, d: usize) -> Result<()> {
        self.validate(n, d)?;
        let unsupported = |what: &str| {
            Err(Error::param(format!(
                "{what} is not supported in a distributed fit"
            )))
        };
        if self.online.is_some() {
            return unsupported("stepwise (online) EM");
        }
        if self.reseed.is_some() {
            return unsupported("re-seeding");
        }
        if matches!(self.init, Init::Random | Init::RandomFromData) {
            return unsupported(&format!(
                "the {} init (use kmeans, k-means++ or a model file)",
                self.init.name()
            ));
        }
        Ok(())
    }

    /// The absolute tolerance of the k-means start (from the variances of all the rows; a
    /// collective call when the init is [`Init::Kmeans`], on every process alike), else 0.
    pub(crate) fn kmeans_tol_distributed(
        &self,
        data: &Dataset,
        reducer: &dyn Reducer,
    ) -> Result<f64> {
        Ok(match self.init {
            Init::Kmeans => {
                tolerance_from_variances(&column_mean_var_reduced(data, reducer)?.1, 1e-4)
            }
            _ => 0.0,
        })
    }

    /// [`GaussianMixture::fit_distributed`] on an engine already built over `data` (model
    /// selection reuses one per covariance type), sharing `state` with other fits on the same
    /// data; the checks are the caller's. `kmeans_tol` is
    /// [`GaussianMixture::kmeans_tol_distributed`].
    pub(crate) fn fit_distributed_engine<'a>(
        &self,
        data: &'a Dataset<'a>,
        engine: &mut dyn GmmEngine,
        state: &mut InitState<'a>,
        reducer: &dyn Reducer,
        kmeans_tol: f64,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<FittedGmm> {
        let (n, d) = (data.global_rows(), data.n_features());
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let rule = StopRule {
            tol: self.tol,
            max_iter: self.max_iter,
        };
        let model = self.model(d);
        let (best, init_lower_bounds) = best_of(
            self.n_init,
            |init| {
                let params =
                    self.draw_distributed(data, &mut rng, engine, state, reducer, kmeans_tol)?;
                let mut seconds = Vec::new();
                let mut elapsed = 0.0;
                let mut timed = |p: &Progress| {
                    elapsed += p.e_step_seconds + p.m_step_seconds;
                    seconds.push(elapsed);
                    progress(p);
                    Control::Continue(())
                };
                let mut reduced = Reduced::new(&mut *engine, reducer);
                let run = run_em_with(
                    &model,
                    &mut reduced,
                    params,
                    rule,
                    init,
                    &mut |_, _| Ok(false),
                    &mut timed,
                )?;
                Ok(RunResult {
                    params: run.params,
                    lower_bound: run.lower_bound,
                    trace: run.lower_bound_trace,
                    trace_seconds: seconds,
                    n_iter: run.n_iter,
                    converged: run.converged,
                    reseeds: Vec::new(),
                    online: None,
                })
            },
            |run: &RunResult, best| run.lower_bound > best.lower_bound,
            |run| run.lower_bound,
        )?;
        self.fitted_from(best, init_lower_bounds, engine.report(), n)
    }
}

/// The checks of the rows of a distributed fit, on this process (agree on them before the next
/// collective call): finite, unweighted, plain samples.
pub(crate) fn check_distributed_data(data: &Dataset) -> Result<()> {
    data.validate_for("the Gaussian mixture")
        .and_then(|_| data.require_unweighted("a distributed Gaussian mixture"))
        .and_then(|_| data.require_plain("the Gaussian mixture"))
}

impl GaussianMixture {
    /// The starting parameters of one restart of a distributed fit (see
    /// [`GaussianMixture::fit_distributed`]); `kmeans_tol` is the k-means start's absolute
    /// tolerance (from the variances of all the rows).
    fn draw_distributed<'a>(
        &self,
        data: &'a Dataset<'a>,
        rng: &mut ChaCha8Rng,
        engine: &mut dyn GmmEngine,
        state: &mut InitState<'a>,
        reducer: &dyn Reducer,
        kmeans_tol: f64,
    ) -> Result<GmmParams> {
        let (k, d, cov) = (self.n_components, data.n_features(), self.covariance_type);
        let stats = match &self.init {
            Init::Params(p) => return Ok(p.clone()),
            Init::KMeansPlusPlus => {
                // Responsibilities one at the seeds: means at the seeds, no scatter.
                let centers = kmeans_plusplus_reduced(data, k, rng, reducer)?.0;
                let mut stats = GmmStats::zeros(cov, k, d, &centers);
                stats.s0.fill(1.0);
                stats.n_samples = data.global_rows() as f64;
                stats
            }
            Init::Kmeans => {
                let built: Result<&mut dyn KMeansEngine> = match engine.kmeans_engine() {
                    Some(km) => Ok(km),
                    None => state
                        .kmeans_engine(data)
                        .map(|km| km as &mut dyn KMeansEngine),
                };
                let km = agreed(reducer, built)?;
                let seeds = kmeans_plusplus_reduced(data, k, rng, reducer)?.0;
                let run = lloyd(
                    km,
                    data,
                    seeds,
                    k,
                    300,
                    kmeans_tol,
                    0,
                    &mut |_| Control::Continue(()),
                    reducer,
                )?;
                let mut labels = vec![0u32; data.n_samples()];
                let local = km
                    .labels(&mut labels)
                    .and_then(|_| gmm_stats_from_labels(data, &labels, k, cov, &run.centers));
                reduce_stats(reducer, local)?
            }
            other => {
                return Err(Error::param(format!(
                    "the {} init is not supported in a distributed fit",
                    other.name()
                )));
            }
        };
        estimate_parameters(&stats, self.reg_covar, WeightNorm::NSamples)
            .map_err(|e| with_reg(e, self.reg_covar))
    }
}
