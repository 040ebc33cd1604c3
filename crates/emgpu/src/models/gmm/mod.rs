//! Gaussian mixture models fitted by EM, with scikit-learn's `GaussianMixture` semantics.
//!
//! ```
//! use emgpu::{Backend, CovarianceType, GaussianMixture};
//! use ndarray::array;
//!
//! let x = array![[0.0, 0.1], [0.2, -0.1], [-0.1, 0.0], [5.0, 5.1], [5.2, 4.9], [4.9, 5.0]];
//! let gmm = GaussianMixture::params(2)
//!     .covariance(CovarianceType::Diag)
//!     .reg_covar(1e-3)
//!     .backend(Backend::Cpu)
//!     .fit(&x)?;
//! let labels = gmm.predict(&x)?;
//! assert_eq!(labels[0], labels[1]);
//! assert_ne!(labels[0], labels[3]);
//! # Ok::<(), emgpu::Error>(())
//! ```

mod covariance;
pub mod cpu;
pub(crate) mod distributed;
mod engine;
mod fitted;
#[cfg(feature = "gpu")]
pub mod gpu;
mod init;
pub mod m_step;
pub mod missing;
mod params;
pub mod reseed;
mod stats;

pub use covariance::CovarianceType;
pub use engine::{GmmEngine, GmmModel, gmm_engine, gmm_engine_batched};
pub(crate) use fitted::GaussianSampler;
pub use fitted::{FittedGmm, MODEL_FORMAT, MODEL_VERSION};
pub use m_step::{WeightNorm, estimate_parameters, estimate_parameters_exact, m_step};
pub use params::{GmmParams, Prepared};
pub use reseed::{DEFAULT_RESEED_THRESHOLD, ReseedEvent};
pub use stats::GmmStats;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{AsDataset, AsWeights, Dataset};
use crate::device::{Backend, BackendReport, EngineOptions};
use crate::em::online::{OnlineOptions, run_online};
use crate::em::reduce::LocalReducer;
use crate::em::{AfterMStep, Control, Progress, StopRule, best_of, observe, run_em_with};
use crate::error::{Error, Result};
use crate::init::{kmeans_plusplus_rng, random_rows, tolerance_from_variances};
use crate::models::kmeans::KMeansEngine;
use crate::models::kmeans::lloyd;
pub(crate) use engine::with_reg;
use init::{InitState, gmm_stats_at_points, gmm_stats_from_labels, gmm_stats_random_resp};

/// The checks every Gaussian fit (mixture, hidden Markov model) runs on its settings: at least
/// one component, `reg_covar` finite and ≥ 0, `n_init ≥ 1`, and the stopping rule.
pub(crate) fn check_fit_settings(
    n_components: usize,
    reg_covar: f64,
    n_init: usize,
    rule: StopRule,
) -> Result<()> {
    if n_components == 0 {
        return Err(Error::param("n_components must be at least 1"));
    }
    if !(reg_covar.is_finite() && reg_covar >= 0.0) {
        return Err(Error::param(format!(
            "reg_covar must be a finite number ≥ 0, got {reg_covar}"
        )));
    }
    if n_init == 0 {
        return Err(Error::param("n_init must be at least 1"));
    }
    rule.validate()
}

/// How the initial parameters of each EM run are chosen (scikit-learn's `init_params`).
///
/// Every method but `Params` starts from responsibilities `resp` `[N, K]` and estimates the
/// parameters from them with weights `nk / N` (scikit-learn's `_initialize`); each restart draws
/// its own from the fit's one seeded random stream.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Init {
    /// k-means (k-means++ seeding, Lloyd with `tol = 1e-4`, `max_iter = 300`, one run) on the
    /// fit's backend, then `resp` = one-hot of its labels (scikit-learn's default,
    /// `init_params="kmeans"`).
    #[default]
    Kmeans,
    /// `resp` one at the K greedy k-means++ seeds, zero elsewhere: means at the seeds,
    /// covariances `reg_covar` on the diagonal (scikit-learn's `init_params="k-means++"`).
    KMeansPlusPlus,
    /// `resp` uniform random rows normalized to sum to 1 (scikit-learn's `init_params="random"`).
    Random,
    /// K distinct data points drawn at random (seeded) become the means; covariances are
    /// `reg_covar` on the diagonal (scikit-learn's `init_params="random_from_data"`).
    RandomFromData,
    /// Start from these parameters (warm start; scikit-learn's `weights_init`, `means_init`,
    /// `precisions_init`). The first E-step uses them as they are.
    Params(GmmParams),
}

impl Init {
    /// The method's name as the CLI and scikit-learn spell it (`"params"` for explicit parameters).
    pub fn name(&self) -> &'static str {
        match self {
            Init::Kmeans => "kmeans",
            Init::KMeansPlusPlus => "k-means++",
            Init::Random => "random",
            Init::RandomFromData => "random_from_data",
            Init::Params(_) => "params",
        }
    }
}

impl std::str::FromStr for Init {
    type Err = Error;
    /// One of `kmeans`, `k-means++`, `random`, `random_from_data` (explicit parameters come from a
    /// model, not a name).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "kmeans" => Ok(Init::Kmeans),
            "k-means++" => Ok(Init::KMeansPlusPlus),
            "random" => Ok(Init::Random),
            "random_from_data" => Ok(Init::RandomFromData),
            other => Err(Error::param(format!(
                "unknown init method {other:?}; use one of kmeans, k-means++, random, random_from_data (or a model file for a warm start)"
            ))),
        }
    }
}

/// Hyper-parameters of a Gaussian mixture fit: a builder. Defaults are scikit-learn's.
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    n_components: usize,
    covariance_type: CovarianceType,
    tol: f64,
    reg_covar: f64,
    max_iter: usize,
    n_init: usize,
    init: Init,
    seed: u64,
    backend: Backend,
    engine: EngineOptions,
    reseed: Option<f64>,
    online: Option<OnlineOptions>,
    missing_group_rows: Option<usize>,
    missing_layout: missing::MissingLayout,
}

/// How stepwise EM went (in [`FittedGmm::online`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineSummary {
    /// The options it ran with.
    pub options: OnlineOptions,
    /// Mini-batches per pass.
    pub n_batches: usize,
    /// Full-data E-steps run (not counted in the passes).
    pub evaluation_passes: usize,
    /// The pass (from 1) of each entry of the lower-bound trace.
    pub evaluated_passes: Vec<usize>,
}

/// One restart's result, batch or stepwise.
struct RunResult {
    params: GmmParams,
    lower_bound: f64,
    trace: Vec<f64>,
    trace_seconds: Vec<f64>,
    n_iter: usize,
    converged: bool,
    reseeds: Vec<ReseedEvent>,
    online: Option<OnlineSummary>,
}

impl GaussianMixture {
    /// A mixture of `n_components` components with scikit-learn's defaults: full covariances,
    /// `tol = 1e-3`, `reg_covar = 1e-6`, `max_iter = 100`, `n_init = 1`; seed 0; `Backend::Auto`.
    pub fn params(n_components: usize) -> Self {
        Self {
            n_components,
            covariance_type: CovarianceType::Full,
            tol: 1e-3,
            reg_covar: 1e-6,
            max_iter: 100,
            n_init: 1,
            init: Init::default(),
            seed: 0,
            backend: Backend::Auto,
            engine: EngineOptions::default(),
            reseed: None,
            online: None,
            missing_group_rows: None,
            missing_layout: missing::MissingLayout::Auto,
        }
    }

    /// Data with missing values ([`Dataset::with_missing_values`]): patterns with at least
    /// `rows` rows run through the backend's complete-data engine, the others through the direct
    /// CPU path (see [`missing::engine`]); default [`missing::CPU_GROUP_ROWS`] on the CPU,
    /// [`missing::GPU_GROUP_ROWS`] on the GPU. The grouped layout, and the streamed layout on a
    /// GPU (the patterns that run on the GPU engine; on the CPU the streamed layout decides per
    /// chunk). Mostly for tests and benchmarks.
    pub fn missing_group_rows(mut self, rows: usize) -> Self {
        self.missing_group_rows = Some(rows.max(1));
        self
    }

    /// Data with missing values: how the rows are held ([`missing::MissingLayout`]; default
    /// `Auto`: grouped by pattern once, O(N·D), unless the data have more than
    /// [`missing::stream::STREAM_AUTO_VALUES`] values: then streamed in chunks, memory
    /// independent of N, on either backend).
    pub fn missing_layout(mut self, layout: missing::MissingLayout) -> Self {
        self.missing_layout = layout;
        self
    }

    /// Re-seed collapsed components (off by default, as scikit-learn): after every M-step a
    /// component whose weight is below [`DEFAULT_RESEED_THRESHOLD`] moves to the worst-explained
    /// point with weight `1/K` (renormalized) and the mean of the other covariances (see
    /// [`reseed`](mod@reseed)); the fitted model lists the moves ([`FittedGmm::reseeds`]).
    pub fn reseed(mut self, on: bool) -> Self {
        self.reseed = on.then_some(self.reseed.unwrap_or(DEFAULT_RESEED_THRESHOLD));
        self
    }
    /// Re-seed components whose weight falls below `threshold` (1e-6 to 1e-3); turns
    /// re-seeding on.
    pub fn reseed_threshold(mut self, threshold: f64) -> Self {
        self.reseed = Some(threshold);
        self
    }
    /// Fit by stepwise (online) EM with these options instead of batch EM (see
    /// [`crate::em::online`]); `tol` and `max_iter` are then not used. `None`: batch EM.
    pub fn online(mut self, options: Option<OnlineOptions>) -> Self {
        self.online = options;
        self
    }
    /// The stepwise EM options, when the fit is online.
    pub fn online_options(&self) -> Option<&OnlineOptions> {
        self.online.as_ref()
    }

    /// The covariance structure.
    pub fn covariance(mut self, covariance_type: CovarianceType) -> Self {
        self.covariance_type = covariance_type;
        self
    }
    /// Convergence threshold on the change of the lower bound (mean log-likelihood).
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
    /// Non-negative regularization added to the diagonal of covariances.
    pub fn reg_covar(mut self, reg_covar: f64) -> Self {
        self.reg_covar = reg_covar;
        self
    }
    /// Maximum number of EM iterations per initialization.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }
    /// Number of initializations; the one with the highest lower bound is kept.
    pub fn n_init(mut self, n_init: usize) -> Self {
        self.n_init = n_init;
        self
    }
    /// The initialization method.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    /// Seed of every random choice of the fit (same seed, same backend: same model).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// The backend that runs the E-steps.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
    /// Rows per chunk (see [`EngineOptions::chunk_rows`]); mostly for tests and benchmarks.
    pub fn chunk_rows(mut self, rows: usize) -> Self {
        self.engine.chunk_rows = Some(rows);
        self
    }

    /// Number of components.
    pub fn n_components(&self) -> usize {
        self.n_components
    }
    /// Covariance structure.
    pub fn covariance_type(&self) -> CovarianceType {
        self.covariance_type
    }
    /// `reg_covar`.
    pub fn reg_covar_value(&self) -> f64 {
        self.reg_covar
    }
    /// The initialization method.
    pub fn init_method(&self) -> &Init {
        &self.init
    }

    /// The same settings with `n_components` and `covariance_type` replaced (model selection).
    pub(crate) fn with_shape(
        mut self,
        n_components: usize,
        covariance_type: CovarianceType,
    ) -> Self {
        self.n_components = n_components;
        self.covariance_type = covariance_type;
        self
    }

    /// The GMM engine of this fit's backend over `data`, for up to `n_components` components.
    pub(crate) fn build_engine<'a>(
        &self,
        data: &'a Dataset<'a>,
        covariance_type: CovarianceType,
        n_components: usize,
    ) -> Result<Box<dyn GmmEngine + 'a>> {
        gmm_engine(
            self.backend,
            data,
            covariance_type,
            n_components,
            self.engine,
        )
    }

    /// A fresh [`InitState`] for this fit's backend.
    pub(crate) fn init_state<'a>(&self) -> InitState<'a> {
        InitState::new(self.backend, self.engine)
    }

    pub(crate) fn validate(&self, n: usize, d: usize) -> Result<()> {
        let rule = StopRule {
            tol: self.tol,
            max_iter: self.max_iter,
        };
        check_fit_settings(self.n_components, self.reg_covar, self.n_init, rule)?;
        if let Some(t) = self.reseed {
            reseed::check_threshold(t)?;
        }
        if let Some(o) = &self.online {
            o.validate()?;
        }
        if self.n_components > n {
            return Err(Error::TooManyComponents {
                n_components: self.n_components,
                n_samples: n,
            });
        }
        if let Init::Params(p) = &self.init {
            if p.n_features() != d {
                return Err(Error::DimensionMismatch {
                    expected: p.n_features(),
                    got: d,
                });
            }
            if p.n_components() != self.n_components || p.covariance_type() != self.covariance_type
            {
                return Err(Error::param(format!(
                    "the initial model has {} {} components but the fit asks for {} {}",
                    p.n_components(),
                    p.covariance_type(),
                    self.n_components,
                    self.covariance_type
                )));
            }
        }
        self.check_memory(d)
    }

    /// Refuses, before anything is allocated, a fit whose parameters cannot fit in memory. The
    /// estimate counts the D × D matrices the fit holds at once: per matrix of the model, its
    /// covariance, its precision's Cholesky factor, the second moments the E-step sums and the
    /// M-step's copy (4), plus as many again for the best fit kept across restarts (8 in all).
    fn check_memory(&self, d: usize) -> Result<()> {
        let k = self.n_components;
        let matrices = match self.covariance_type {
            CovarianceType::Full => k,
            CovarianceType::Tied => 1,
            CovarianceType::Diag | CovarianceType::Spherical => return Ok(()),
        };
        let bytes = crate::memory::bytes_of(&[8, matrices, d, d, std::mem::size_of::<f64>()]);
        crate::memory::ensure_available(bytes, || {
            format!(
                "a {} Gaussian mixture with K = {k}, D = {d} (8 copies of {matrices} × {d} × {d} float64 values while fitting); use covariance diag or spherical, fewer features, or fewer components",
                self.covariance_type
            )
        })
    }

    /// Fits the mixture to `x` (rows are samples). A [`Dataset`] with sample weights
    /// ([`Dataset::with_sample_weights`]) gives a weighted fit.
    pub fn fit(&self, x: &impl AsDataset) -> Result<FittedGmm> {
        self.fit_with_progress(x, &mut |_| {})
    }

    /// Fits the mixture to `x` with a sample weight per row (`[N]`, finite, ≥ 0, not all
    /// zero): integer weights give the model of the rows repeated their weight's number of
    /// times (from the same initial parameters). Every statistic is weighted, the lower bound
    /// is `Σ w_i log p(x_i) / Σ w`. The initializations are weighted too: the k-means start is
    /// a weighted k-means (as scikit-learn's `KMeans(sample_weight)`), k-means++ draws with
    /// probabilities `∝ w·D²`, `random_from_data` draws rows `∝ w`, `random` weights each row's
    /// random responsibilities (scikit-learn's `GaussianMixture` has no `sample_weight`).
    ///
    /// ```
    /// use emgpu::{Backend, GaussianMixture};
    /// use ndarray::array;
    ///
    /// let x = array![[0.0], [0.2], [5.0], [5.4]];
    /// let gm = GaussianMixture::params(2).backend(Backend::Cpu);
    /// let fitted = gm.fit_weighted(&x, &[1.0, 3.0, 2.0, 0.0][..])?;
    /// assert_eq!(fitted.params().weights().len(), 2);
    /// # Ok::<(), emgpu::Error>(())
    /// ```
    pub fn fit_weighted(
        &self,
        x: &impl AsDataset,
        sample_weight: &(impl AsWeights + ?Sized),
    ) -> Result<FittedGmm> {
        let data = x
            .as_dataset()
            .with_sample_weights(sample_weight.to_weights())?;
        self.fit(&data)
    }

    /// Fits, calling `progress` after every iteration.
    pub fn fit_with_progress(
        &self,
        x: &impl AsDataset,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<FittedGmm> {
        self.fit_with_control(x, &mut observe(progress))
    }

    /// Fits, calling `progress` after every iteration; the callback stops the fit by returning
    /// [`std::ops::ControlFlow::Break`] (the fit then fails with [`Error::Cancelled`]).
    pub fn fit_with_control(
        &self,
        x: &impl AsDataset,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<FittedGmm> {
        let data = x.as_dataset();
        if data.has_missing_values() {
            return self.fit_missing(&data, progress);
        }
        data.validate_for("the Gaussian mixture")?;
        let (n, d) = (data.n_samples(), data.n_features());
        self.validate(n, d)?;
        let mut engine = gmm_engine_batched(
            self.backend,
            &data,
            self.covariance_type,
            self.n_components,
            self.engine,
            self.online.map(|o| o.batch_size),
        )?;
        let mut state = self.init_state();
        self.fit_engine_with(&data, engine.as_mut(), &mut state, progress)
    }

    /// Fits with an engine already built over `data` (benchmarks reuse one across fits). The
    /// engine serves every restart; a k-means initialization uses the engine's
    /// [`GmmEngine::kmeans_engine`] when it offers one, else builds one k-means engine for the fit.
    pub fn fit_engine(
        &self,
        data: &Dataset,
        engine: &mut dyn GmmEngine,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<FittedGmm> {
        let mut state = self.init_state();
        self.fit_engine_with(data, engine, &mut state, &mut observe(progress))
    }

    /// The EM model of this fit for data of `n_features` features.
    pub fn model(&self, n_features: usize) -> GmmModel {
        GmmModel {
            covariance_type: self.covariance_type,
            n_components: self.n_components,
            n_features,
            reg_covar: self.reg_covar,
        }
    }

    /// [`GaussianMixture::fit_engine`] sharing what the initializations computed (`state`) with
    /// other fits on the same data.
    pub(crate) fn fit_engine_with<'a>(
        &self,
        data: &'a Dataset<'a>,
        engine: &mut dyn GmmEngine,
        state: &mut InitState<'a>,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<FittedGmm> {
        data.require_plain("the Gaussian mixture")?;
        let (n, d) = (data.n_samples(), data.n_features());
        self.validate(n, d)?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let rule = StopRule {
            tol: self.tol,
            max_iter: self.max_iter,
        };
        let model = self.model(d);
        // scikit-learn keeps the first run and replaces it only by a strictly better one.
        let (best, init_lower_bounds) = best_of(
            self.n_init,
            |init| {
                let params = self.draw_initial_params(data, &mut rng, engine, state)?;
                self.run_one(data, &model, engine, params, rule, init, progress)
            },
            |run: &RunResult, best| run.lower_bound > best.lower_bound,
            |run| run.lower_bound,
        )?;
        self.fitted_from(best, init_lower_bounds, engine.report(), n)
    }

    /// The fitted mixture of the best run of a fit over `n` rows (every fit path ends here):
    /// its parameters, trace and restarts' lower bounds, and the backend that ran (`predict`
    /// then runs on the GPU only if the fit did).
    fn fitted_from(
        &self,
        best: RunResult,
        init_lower_bounds: Vec<f64>,
        report: BackendReport,
        n: usize,
    ) -> Result<FittedGmm> {
        let mut fitted =
            FittedGmm::from_params(best.params).map_err(|e| with_reg(e, self.reg_covar))?;
        fitted.lower_bound = best.lower_bound;
        fitted.n_iter = best.n_iter;
        fitted.converged = best.converged;
        fitted.lower_bound_trace = best.trace;
        fitted.trace_seconds = best.trace_seconds;
        fitted.reseeds = best.reseeds;
        fitted.online = best.online;
        fitted.init_lower_bounds = init_lower_bounds;
        fitted.predict_backend = match report.backend {
            Backend::Gpu => Backend::Gpu,
            _ => Backend::Cpu,
        };
        fitted.report = Some(report);
        fitted.n_train = Some(n);
        Ok(fitted)
    }

    /// The parameters the first initialization of [`GaussianMixture::fit`] starts from, with
    /// this builder's seed, init method and backend: a fit with
    /// `.init(Init::Params(gm.initial_params(&x)?))` and the same settings runs the same first
    /// restart (on the CPU, bit for bit). With `Init::Params` they are the given parameters.
    ///
    /// `validate` uses it to start two backends from one point. It does what the fit does before
    /// its first E-step (for [`Init::Kmeans`]: a k-means run on this builder's backend), so it
    /// costs about that much.
    pub fn initial_params(&self, x: &impl AsDataset) -> Result<GmmParams> {
        let data = x.as_dataset();
        data.validate_for("the Gaussian mixture")?;
        self.validate(data.n_samples(), data.n_features())?;
        let mut engine = self.build_engine(&data, self.covariance_type, self.n_components)?;
        let mut state = self.init_state();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        self.draw_initial_params(&data, &mut rng, engine.as_mut(), &mut state)
    }

    /// One run from `params`: batch EM ([`run_em_with`]) or stepwise EM ([`run_online`]),
    /// with the re-seeding hook when asked for, timing every step.
    #[allow(clippy::too_many_arguments)]
    fn run_one(
        &self,
        data: &Dataset,
        model: &GmmModel,
        engine: &mut dyn GmmEngine,
        params: GmmParams,
        rule: StopRule,
        init: usize,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<RunResult> {
        let mut reseeds = Vec::new();
        let threshold = self.reseed;
        let mut hook = |at: &AfterMStep, p: &mut GmmParams| -> Result<bool> {
            let Some(threshold) = threshold else {
                return Ok(false);
            };
            let rows = at.rows.clone().unwrap_or(0..data.n_samples());
            let view = data.row_range(rows.clone())?;
            reseed::reseed(p, &view, rows.start, threshold, at.step, &mut reseeds)
        };
        let mut seconds = Vec::new();
        let mut elapsed = 0.0;
        let mut timed = |p: &Progress| {
            elapsed += p.e_step_seconds + p.m_step_seconds;
            seconds.push(elapsed);
            progress(p)
        };
        let n = data.n_samples();
        let result = match &self.online {
            None => {
                let run = run_em_with(model, engine, params, rule, init, &mut hook, &mut timed)?;
                RunResult {
                    params: run.params,
                    lower_bound: run.lower_bound,
                    trace: run.lower_bound_trace,
                    trace_seconds: seconds,
                    n_iter: run.n_iter,
                    converged: run.converged,
                    reseeds: Vec::new(),
                    online: None,
                }
            }
            Some(options) => {
                let run = run_online(
                    model, engine, n, params, options, self.seed, init, &mut hook, &mut timed,
                )?;
                let converged = match run.pass_lower_bounds.as_slice() {
                    [.., a, b] => (b - a).abs() < self.tol,
                    _ => false,
                };
                RunResult {
                    params: run.params,
                    lower_bound: run.lower_bound,
                    trace: run.pass_lower_bounds,
                    trace_seconds: run.pass_seconds,
                    n_iter: run.n_steps,
                    converged,
                    reseeds: Vec::new(),
                    online: Some(OnlineSummary {
                        options: *options,
                        n_batches: options.n_batches(n),
                        evaluation_passes: run.evaluation_passes,
                        evaluated_passes: run.evaluated_passes,
                    }),
                }
            }
        };
        Ok(RunResult { reseeds, ..result })
    }

    /// The starting parameters of one restart, drawn from `rng` (see [`Init`]).
    fn draw_initial_params<'a>(
        &self,
        data: &'a Dataset<'a>,
        rng: &mut ChaCha8Rng,
        engine: &mut dyn GmmEngine,
        state: &mut InitState<'a>,
    ) -> Result<GmmParams> {
        let (n, k, cov) = (data.n_samples(), self.n_components, self.covariance_type);
        let stats = match &self.init {
            Init::Params(p) => return Ok(p.clone()),
            Init::RandomFromData => gmm_stats_at_points(data, &random_rows(data, k, rng)?.1, cov)?,
            Init::KMeansPlusPlus => {
                gmm_stats_at_points(data, &kmeans_plusplus_rng(data, k, rng)?.1, cov)?
            }
            Init::Random => {
                let mean = state.mean_var(data)?.0.clone();
                gmm_stats_random_resp(data, k, cov, &mean, rng)?
            }
            Init::Kmeans => {
                // scikit-learn: KMeans(n_clusters=K, n_init=1, random_state=rng) with its
                // defaults (k-means++, tol=1e-4 relative to the variance, max_iter=300).
                let tol = tolerance_from_variances(&state.mean_var(data)?.1, 1e-4);
                let km: &mut dyn KMeansEngine = match engine.kmeans_engine() {
                    Some(km) => km,
                    None => state.kmeans_engine(data)?,
                };
                let seeds = kmeans_plusplus_rng(data, k, rng)?.0;
                let run = lloyd(
                    km,
                    data,
                    seeds,
                    k,
                    300,
                    tol,
                    0,
                    &mut |_| Control::Continue(()),
                    &LocalReducer,
                )?;
                let mut labels = vec![0u32; n];
                km.labels(&mut labels)?;
                gmm_stats_from_labels(data, &labels, k, cov, &run.centers)?
            }
        };
        estimate_parameters(&stats, self.reg_covar, WeightNorm::NSamples)
            .map_err(|e| with_reg(e, self.reg_covar))
    }
}
