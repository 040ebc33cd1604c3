//! Hidden Markov models with Gaussian emissions, fitted by Baum-Welch (EM) with hmmlearn's
//! semantics (`GaussianHMM`), on the CPU and the GPU; Viterbi decoding, posteriors, scores and
//! sampling.
//!
//! The model plugs into the EM core ([`crate::em`]): its statistics ([`HmmStats`]) are the
//! Gaussian mixture's weighted moments with the state posteriors γ as weights plus the start and
//! transition counts; its M-step ([`HmmModel`]) is hmmlearn's maximum-likelihood update with the
//! Gaussian mixture's emission M-step; its E-step is forward-backward ([`forward_backward`]) on
//! the CPU ([`CpuHmmEngine`]) or the GPU.
//!
//! Sequences are the rows of a [`Dataset`] cut by its sequence lengths
//! ([`Dataset::with_sequence_lengths`]); without lengths the rows are one sequence.
//!
//! ```
//! use emgpu::models::hmm::GaussianHmm;
//! use emgpu::{Backend, CovarianceType, Dataset};
//!
//! // Two sequences that switch between a state near 0 and a state near 5.
//! let x: Vec<f64> = [0.1, -0.2, 5.1, 4.9, 5.2, 0.0, 0.2, -0.1, 4.8, 5.0, 0.1, 5.3]
//!     .to_vec();
//! let data = Dataset::from_slice(&x, 12, 1)?.with_sequence_lengths(vec![7, 5])?;
//! let hmm = GaussianHmm::params(2)
//!     .covariance(CovarianceType::Diag)
//!     .max_iter(50)
//!     .backend(Backend::Cpu)
//!     .fit(&data)?;
//! let states = hmm.predict(&data)?;
//! assert_eq!(states[0], states[1]);
//! assert_ne!(states[1], states[2]);
//! # Ok::<(), emgpu::Error>(())
//! ```

pub mod cpu;
mod file;
pub mod forward_backward;
#[cfg(feature = "gpu")]
pub mod gpu;
mod model;
mod params;
mod stats;

pub use cpu::{CpuHmmEngine, HmmEngine};
pub use model::HmmModel;
pub use params::{HmmParams, HmmPrepared, SUM_TOLERANCE};
pub use stats::HmmStats;

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::{AsDataset, Dataset};
use crate::device::{Backend, BackendReport, EngineOptions, choose};
use crate::em::{Control, EmRun, Model, Progress, StopRule, best_of, observe, run_em};
use crate::error::{Error, Result};
use crate::models::gmm::{CovarianceType, GaussianSampler, GmmParams, GmmStats};
use crate::models::kmeans::KMeans;

/// hmmlearn's `min_covar`: added to the diagonal of the data covariance that starts the
/// emissions of a k-means initialization.
pub const INIT_MIN_COVAR: f64 = 1e-3;

/// How each EM run of a Gaussian HMM starts.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum HmmInit {
    /// hmmlearn's default (`init_params="stmc"`): means from k-means (k-means++ seeding, as the
    /// library's [`KMeans`] on the fit's backend, seeded from the fit's generator), every
    /// covariance from the data covariance (`np.cov`, N − 1) plus [`INIT_MIN_COVAR`] on the
    /// diagonal (diag: its diagonal; spherical: the mean of its diagonal), uniform `startprob`
    /// and `transmat`. (hmmlearn 0.3 draws `startprob` and `transmat` from a Dirichlet; emgpu
    /// starts them uniform, which is deterministic.)
    #[default]
    Kmeans,
    /// Start from these parameters (a warm start; every restart starts here).
    Params(HmmParams),
}

/// A Gaussian hidden Markov model to fit: hmmlearn's `GaussianHMM` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianHmm {
    n_components: usize,
    covariance_type: CovarianceType,
    tol: f64,
    reg_covar: f64,
    max_iter: usize,
    n_init: usize,
    init: HmmInit,
    seed: u64,
    backend: Backend,
    engine: EngineOptions,
}

impl GaussianHmm {
    /// Default settings for `n_components` states: hmmlearn's (`covariance_type="diag"`,
    /// `tol = 1e-2` on the total log-likelihood, `n_iter = 10`), with `reg_covar = 1e-6` as the
    /// Gaussian mixture, one initialization (k-means), seed 0, backend auto.
    pub fn params(n_components: usize) -> Self {
        Self {
            n_components,
            covariance_type: CovarianceType::Diag,
            tol: 1e-2,
            reg_covar: 1e-6,
            max_iter: 10,
            n_init: 1,
            init: HmmInit::Kmeans,
            seed: 0,
            backend: Backend::Auto,
            engine: EngineOptions::default(),
        }
    }
    /// Covariance structure of the emissions.
    pub fn covariance(mut self, covariance_type: CovarianceType) -> Self {
        self.covariance_type = covariance_type;
        self
    }
    /// Convergence threshold on the rise of the total log-likelihood (0: run `max_iter`).
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
    /// Added to the diagonal of every emission covariance in the M-step.
    pub fn reg_covar(mut self, reg_covar: f64) -> Self {
        self.reg_covar = reg_covar;
        self
    }
    /// At most this many EM iterations per initialization.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }
    /// Initializations; the best total log-likelihood is kept.
    pub fn n_init(mut self, n_init: usize) -> Self {
        self.n_init = n_init;
        self
    }
    /// How each run starts.
    pub fn init(mut self, init: HmmInit) -> Self {
        self.init = init;
        self
    }
    /// Seed of the initializations.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// The device of the E-steps.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
    /// Engine tuning (the CPU engine: the length from which a sequence is split in time).
    pub fn engine_options(mut self, options: EngineOptions) -> Self {
        self.engine = options;
        self
    }
    /// Number of states K.
    pub fn n_components(&self) -> usize {
        self.n_components
    }

    /// The EM model of this fit for data of `n_features` features.
    pub fn model(&self, n_features: usize) -> HmmModel {
        HmmModel {
            covariance_type: self.covariance_type,
            n_components: self.n_components,
            n_features,
            reg_covar: self.reg_covar,
        }
    }

    fn validate(&self, data: &Dataset) -> Result<()> {
        data.require_unweighted("the hidden Markov model")?;
        data.validate()?;
        let (n, d) = (data.n_samples(), data.n_features());
        let (k, reg) = (self.n_components, self.reg_covar);
        crate::models::gmm::check_fit_settings(k, reg, self.n_init, self.rule())?;
        if k > n {
            return Err(Error::TooManyComponents {
                n_components: k,
                n_samples: n,
            });
        }
        if let HmmInit::Params(p) = &self.init {
            check_params_fit(p, d)?;
            if p.n_components() != self.n_components || p.covariance_type() != self.covariance_type
            {
                return Err(Error::param(format!(
                    "the initial model has {} states with {} covariances but the fit asks for {} with {}",
                    p.n_components(),
                    p.covariance_type(),
                    self.n_components,
                    self.covariance_type
                )));
            }
        }
        Ok(())
    }

    fn rule(&self) -> StopRule {
        StopRule {
            tol: self.tol,
            max_iter: self.max_iter,
        }
    }

    /// Fits to the sequences of `x` (a [`Dataset`] with sequence lengths, or any data: one
    /// sequence).
    pub fn fit(&self, x: &impl AsDataset) -> Result<FittedHmm> {
        self.fit_with_control(x, &mut observe(&mut |_| {}))
    }

    /// Fits, calling `progress` after every iteration (it may stop the fit).
    pub fn fit_with_control(
        &self,
        x: &impl AsDataset,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<FittedHmm> {
        let data = x.as_dataset();
        self.validate(&data)?;
        let mut engine = hmm_engine(
            self.backend,
            &data,
            self.covariance_type,
            self.n_components,
            self.engine,
        )?;
        self.fit_engine(&data, engine.as_mut(), progress)
    }

    /// Fits with an engine already built over `data` (benchmarks reuse one).
    pub fn fit_engine(
        &self,
        data: &Dataset,
        engine: &mut dyn HmmEngine,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<FittedHmm> {
        self.validate(data)?;
        let model = self.model(data.n_features());
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (best, init_lower_bounds) = best_of(
            self.n_init,
            |init| {
                let params = self.initial_params_with(data, &mut rng)?;
                run_em(&model, &mut *engine, params, self.rule(), init, progress)
            },
            |run: &EmRun<HmmModel>, best| run.lower_bound > best.lower_bound,
            |run| run.lower_bound,
        )?;
        let report = engine.report();
        let mut fitted = FittedHmm::from_params(best.params)?;
        fitted.lower_bound = best.lower_bound;
        fitted.lower_bound_trace = best.lower_bound_trace;
        fitted.n_iter = best.n_iter;
        fitted.converged = best.converged;
        fitted.init_lower_bounds = init_lower_bounds;
        fitted.predict_backend = match report.backend {
            Backend::Gpu => Backend::Gpu,
            _ => Backend::Cpu,
        };
        fitted.report = Some(report);
        Ok(fitted)
    }

    /// The parameters the first initialization starts from (with [`HmmInit::Params`]: those).
    pub fn initial_params(&self, x: &impl AsDataset) -> Result<HmmParams> {
        let data = x.as_dataset();
        self.validate(&data)?;
        self.initial_params_with(&data, &mut ChaCha8Rng::seed_from_u64(self.seed))
    }

    fn initial_params_with(&self, data: &Dataset, rng: &mut ChaCha8Rng) -> Result<HmmParams> {
        let (k, d, cov) = (self.n_components, data.n_features(), self.covariance_type);
        match &self.init {
            HmmInit::Params(p) => Ok(p.clone()),
            HmmInit::Kmeans => {
                let rows = data.rows();
                let km = KMeans::params(k)
                    .seed(rng.random::<u64>())
                    .backend(self.backend)
                    .fit(&rows)?;
                let means: Vec<f64> = km.cluster_centers().iter().copied().collect();
                let full = data_covariance(&rows)?;
                let covariances = distribute_covariance(&full, cov, k, d);
                let emission = GmmParams::new(cov, vec![1.0 / k as f64; k], means, covariances, d)?;
                let uniform = vec![1.0 / k as f64; k];
                Ok(HmmParams::from_parts(
                    uniform.clone(),
                    uniform.repeat(k),
                    emission,
                ))
            }
        }
    }
}

/// An error unless `p` is a model of `d` features.
fn check_params_fit(p: &HmmParams, d: usize) -> Result<()> {
    if p.n_features() != d {
        return Err(Error::DimensionMismatch {
            expected: p.n_features(),
            got: d,
        });
    }
    Ok(())
}

/// The data covariance (`np.cov(X.T)`, divisor N − 1; N for one row) plus [`INIT_MIN_COVAR`] on
/// the diagonal, `[D][D]`.
fn data_covariance(data: &Dataset) -> Result<Vec<f64>> {
    let (n, d) = (data.n_samples(), data.n_features());
    let mean = crate::init::column_mean_var(data)?.0;
    let empty = GmmStats::zeros(CovarianceType::Full, 1, d, &mean);
    let chunk = crate::init::INIT_CHUNK_ROWS;
    let stats = crate::em::map_merge(data, chunk, empty.clone(), |_, x| {
        let mut s = empty.clone();
        for row in x.chunks_exact(d) {
            s.add_point(row, &[1.0], 0.0);
        }
        s
    })?;
    let denom = n.saturating_sub(1).max(1) as f64;
    let mut cov: Vec<f64> = stats.s2.iter().map(|v| v / denom).collect();
    for i in 0..d {
        cov[i * d + i] += INIT_MIN_COVAR;
    }
    Ok(cov)
}

/// hmmlearn's `distribute_covar_matrix_to_match_covariance_type` (spherical: the mean of the
/// diagonal, where hmmlearn averages every entry of the matrix).
fn distribute_covariance(full: &[f64], cov: CovarianceType, k: usize, d: usize) -> Vec<f64> {
    let diag: Vec<f64> = (0..d).map(|i| full[i * d + i]).collect();
    match cov {
        CovarianceType::Full => full.repeat(k),
        CovarianceType::Tied => full.to_vec(),
        CovarianceType::Diag => diag.repeat(k),
        CovarianceType::Spherical => vec![diag.iter().sum::<f64>() / d as f64; k],
    }
}

/// Builds the HMM engine of `backend` over `data` (its sequence lengths, or one sequence).
pub fn hmm_engine<'a>(
    backend: Backend,
    data: &'a Dataset<'a>,
    covariance_type: CovarianceType,
    n_components: usize,
    options: EngineOptions,
) -> Result<Box<dyn HmmEngine + 'a>> {
    choose::<dyn HmmEngine + 'a>(
        backend,
        data.n_samples() * data.n_features(),
        |reason| Box::new(CpuHmmEngine::new(data, options, reason)),
        |ctx, reason| {
            #[cfg(feature = "gpu")]
            {
                let engine =
                    gpu::GpuHmmEngine::new(ctx, data, covariance_type, n_components, reason)?;
                Ok(Box::new(engine))
            }
            #[cfg(not(feature = "gpu"))]
            {
                let _ = (covariance_type, n_components, reason);
                match ctx {}
            }
        },
    )
}

/// A fitted Gaussian HMM: its parameters, how the fit went, and hmmlearn's methods (`score`,
/// `predict` (Viterbi), `predict_proba`, `decode`, `sample`).
#[derive(Debug, Clone)]
pub struct FittedHmm {
    params: HmmParams,
    prepared: HmmPrepared,
    lower_bound: f64,
    lower_bound_trace: Vec<f64>,
    n_iter: usize,
    converged: bool,
    init_lower_bounds: Vec<f64>,
    report: Option<BackendReport>,
    predict_backend: Backend,
}

impl FittedHmm {
    /// A model from parameters (no fit history; predictions on the CPU).
    pub fn from_params(params: HmmParams) -> Result<Self> {
        let prepared = params.prepare()?;
        Ok(Self {
            params,
            prepared,
            lower_bound: f64::NAN,
            lower_bound_trace: Vec::new(),
            n_iter: 0,
            converged: false,
            init_lower_bounds: Vec::new(),
            report: None,
            predict_backend: Backend::Cpu,
        })
    }
    /// The device `score`, `predict` and `predict_proba` run on (the fit's by default).
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.predict_backend = backend;
        self
    }
    /// The parameters.
    pub fn params(&self) -> &HmmParams {
        &self.params
    }
    /// Number of states K.
    pub fn n_components(&self) -> usize {
        self.params.n_components()
    }
    /// Number of features D.
    pub fn n_features(&self) -> usize {
        self.params.n_features()
    }
    /// Covariance structure.
    pub fn covariance_type(&self) -> CovarianceType {
        self.params.covariance_type()
    }
    /// `startprob` `[K]`.
    pub fn startprob(&self) -> Array1<f64> {
        Array1::from(self.params.startprob().to_vec())
    }
    /// `transmat` `[K, K]`.
    pub fn transmat(&self) -> Array2<f64> {
        let k = self.n_components();
        Array2::from_shape_vec((k, k), self.params.transmat().to_vec())
            .unwrap_or_else(|_| Array2::zeros((k, k)))
    }
    /// Emission means `[K, D]`.
    pub fn means(&self) -> Array2<f64> {
        self.params.emission().means_array()
    }
    /// Emission covariances in scikit-learn's shape for the type.
    pub fn covariances(&self) -> ndarray::ArrayD<f64> {
        self.params.emission().covariances_array()
    }
    /// The total log-likelihood of the last E-step (hmmlearn's `monitor_.history[-1]`).
    pub fn lower_bound(&self) -> f64 {
        self.lower_bound
    }
    /// The total log-likelihood of every iteration.
    pub fn lower_bound_trace(&self) -> &[f64] {
        &self.lower_bound_trace
    }
    /// Iterations run.
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }
    /// Whether the convergence test passed.
    pub fn converged(&self) -> bool {
        self.converged
    }
    /// Every initialization's final total log-likelihood.
    pub fn init_lower_bounds(&self) -> &[f64] {
        &self.init_lower_bounds
    }
    /// What ran the fit's E-steps.
    pub fn backend_report(&self) -> Option<&BackendReport> {
        self.report.as_ref()
    }
    /// Free parameters (hmmlearn's count).
    pub fn n_parameters(&self) -> usize {
        self.model().n_parameters()
    }

    fn model(&self) -> HmmModel {
        HmmModel {
            covariance_type: self.covariance_type(),
            n_components: self.n_components(),
            n_features: self.n_features(),
            reg_covar: 0.0,
        }
    }

    fn with_engine<R>(
        &self,
        x: &impl AsDataset,
        f: impl FnOnce(&mut dyn HmmEngine, &HmmPrepared) -> Result<R>,
    ) -> Result<R> {
        let data = x.as_dataset();
        data.require_unweighted("the hidden Markov model")?;
        data.validate()?;
        check_params_fit(&self.params, data.n_features())?;
        let (cov, k) = (self.covariance_type(), self.n_components());
        let mut engine = hmm_engine(
            self.predict_backend,
            &data,
            cov,
            k,
            EngineOptions::default(),
        )?;
        f(engine.as_mut(), &self.prepared)
    }

    /// The total log-likelihood of the sequences of `x` (hmmlearn's `score`).
    pub fn score(&self, x: &impl AsDataset) -> Result<f64> {
        self.with_engine(x, |e, p| e.score(p))
    }
    /// [`FittedHmm::score`] and what computed it (the device `Backend::Auto` chose, and why).
    pub fn score_with_report(&self, x: &impl AsDataset) -> Result<(f64, BackendReport)> {
        self.with_engine(x, |e, p| Ok((e.score(p)?, e.report())))
    }
    /// The state posteriors `[N, K]` (hmmlearn's `predict_proba`).
    pub fn predict_proba(&self, x: &impl AsDataset) -> Result<Array2<f64>> {
        Ok(self.score_samples(x)?.1)
    }
    /// The total log-likelihood and the state posteriors (hmmlearn's `score_samples`).
    pub fn score_samples(&self, x: &impl AsDataset) -> Result<(f64, Array2<f64>)> {
        let (n, k) = (x.as_dataset().n_samples(), self.n_components());
        let mut out = crate::memory::try_zeroed(n.saturating_mul(k), || {
            format!("the posteriors of {n} rows × {k} states (float64)")
        })?;
        let log_p = self.with_engine(x, |e, p| e.posteriors(p, &mut out))?;
        let proba = Array2::from_shape_vec((n, k), out)
            .map_err(|e| Error::param(format!("{n} × {k} posteriors: {e}")))?;
        Ok((log_p, proba))
    }
    /// The Viterbi state of every row (hmmlearn's `predict`).
    pub fn predict(&self, x: &impl AsDataset) -> Result<Array1<usize>> {
        Ok(self.decode(x)?.1)
    }
    /// The Viterbi paths and the sum of their log-probabilities (hmmlearn's `decode`).
    pub fn decode(&self, x: &impl AsDataset) -> Result<(f64, Array1<usize>)> {
        let n = x.as_dataset().n_samples();
        let mut states = crate::memory::try_zeroed(n, || format!("the states of {n} rows"))?;
        let log_p = self.with_engine(x, |e, p| e.viterbi(p, &mut states))?;
        Ok((log_p, Array1::from(states)))
    }
    /// `(BIC, AIC)` of the sequences of `x` (hmmlearn's `bic` and `aic`).
    pub fn information_criteria(&self, x: &impl AsDataset) -> Result<(f64, f64)> {
        let n = x.as_dataset().n_samples();
        let score = self.score(x)?;
        Ok(crate::em::information_criteria(
            score,
            self.n_parameters(),
            n,
        ))
    }

    /// One sequence of `n` observations and its states (hmmlearn's `sample`): the first state
    /// from `startprob`, each next from its row of `transmat`, each observation from its state's
    /// Gaussian. Deterministic for a `seed`.
    pub fn sample(&self, n: usize, seed: u64) -> Result<(Array2<f64>, Array1<usize>)> {
        if n == 0 {
            return Err(Error::param(
                "the number of samples to draw must be at least 1",
            ));
        }
        let (k, d) = (self.n_components(), self.n_features());
        let too_many = || format!("drawing {n} samples × {d} features (float64); draw fewer");
        let mut x = crate::memory::try_zeroed(n.saturating_mul(d), too_many)?;
        let mut states = crate::memory::try_zeroed(n, too_many)?;
        let sampler = GaussianSampler::new(self.params.emission())?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let draw = |p: &[f64], rng: &mut ChaCha8Rng| {
            let u: f64 = rng.random();
            let mut acc = 0.0;
            for (i, v) in p.iter().enumerate() {
                acc += v;
                if u < acc {
                    return i;
                }
            }
            // Rounding: the last state with positive probability.
            p.iter().rposition(|v| *v > 0.0).unwrap_or(k - 1)
        };
        let mut state = draw(self.params.startprob(), &mut rng);
        for t in 0..n {
            if t > 0 {
                state = draw(
                    &self.params.transmat()[state * k..(state + 1) * k],
                    &mut rng,
                );
            }
            states[t] = state;
            sampler.draw(state, &mut rng, &mut x[t * d..(t + 1) * d]);
        }
        let x = Array2::from_shape_vec((n, d), x)
            .map_err(|e| Error::param(format!("{n} × {d} samples: {e}")))?;
        Ok((x, Array1::from(states)))
    }

    /// The model as JSON (`"model": "hmm"`, parameters in hmmlearn's and scikit-learn's shapes).
    pub fn to_json(&self) -> String {
        file::write(self)
    }
    /// Reads a model written by [`FittedHmm::to_json`], by hand or by another tool (`format`
    /// and `version` may be absent), checking every field.
    pub fn from_json(text: &str) -> Result<Self> {
        file::read(text)
    }
}
