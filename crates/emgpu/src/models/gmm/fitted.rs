//! A fitted Gaussian mixture: predictions, scores, sampling and the model file.

use ndarray::{Array1, Array2, ArrayD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::gmm_engine;
use super::{CovarianceType, GmmParams, OnlineSummary, Prepared, ReseedEvent};
use crate::data::{AsDataset, Dataset};
use crate::device::{Backend, BackendReport, EngineOptions};
use crate::error::{Error, Result};
use crate::numerics::linalg::cholesky_lower;

use crate::models::model_file::{self, Header, Nested, checked_names};
pub use crate::models::model_file::{MODEL_FORMAT, MODEL_VERSION};

/// A Gaussian mixture with its parameters and how its fit went.
#[derive(Debug, Clone)]
pub struct FittedGmm {
    params: GmmParams,
    prepared: Prepared,
    pub(crate) lower_bound: f64,
    pub(crate) n_iter: usize,
    pub(crate) converged: bool,
    pub(crate) lower_bound_trace: Vec<f64>,
    pub(crate) init_lower_bounds: Vec<f64>,
    pub(crate) report: Option<BackendReport>,
    pub(crate) predict_backend: Backend,
    feature_names: Option<Vec<String>>,
    pub(crate) n_train: Option<usize>,
    pub(crate) trace_seconds: Vec<f64>,
    pub(crate) reseeds: Vec<ReseedEvent>,
    pub(crate) online: Option<OnlineSummary>,
}

impl FittedGmm {
    /// A model from parameters (e.g. made by hand, or loaded); it has no fit history.
    pub fn from_params(params: GmmParams) -> Result<Self> {
        let prepared = params.prepare()?;
        Ok(Self {
            params,
            prepared,
            lower_bound: f64::NAN,
            n_iter: 0,
            converged: false,
            lower_bound_trace: Vec::new(),
            init_lower_bounds: Vec::new(),
            report: None,
            predict_backend: Backend::Cpu,
            feature_names: None,
            n_train: None,
            trace_seconds: Vec::new(),
            reseeds: Vec::new(),
            online: None,
        })
    }

    /// The number of samples the model was fitted on (stored in its model file), when known.
    pub fn n_train_samples(&self) -> Option<usize> {
        self.n_train
    }

    /// `(BIC, AIC)` on the training data from the fit's last lower bound (the mean
    /// log-likelihood of the last E-step) and the number of training samples, when the model
    /// file has both; `bic(X)` on the data gives the exact values under the final parameters.
    pub fn training_information_criteria(&self) -> Option<(f64, f64)> {
        let n = self.n_train?;
        self.lower_bound.is_finite().then(|| {
            self.params
                .information_criteria(self.lower_bound * n as f64, n)
        })
    }

    /// The model with the names of its features (e.g. a CSV header's), stored in its model
    /// file; `None` removes them. Errors unless there is one name per feature.
    pub fn with_feature_names(mut self, names: Option<Vec<String>>) -> Result<Self> {
        self.feature_names = checked_names(names, self.n_features())?;
        Ok(self)
    }

    /// The names of the features, when the model has them (scikit-learn's `feature_names_in_`).
    pub fn feature_names(&self) -> Option<&[String]> {
        self.feature_names.as_deref()
    }

    /// The backend `predict`, `predict_proba`, `score_samples` and `score` use (by default the
    /// one the fit ran on; CPU for loaded models).
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.predict_backend = backend;
        self
    }

    /// The parameters.
    pub fn params(&self) -> &GmmParams {
        &self.params
    }
    /// The E-step inputs (precision Cholesky factors etc.).
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }
    /// Covariance structure.
    pub fn covariance_type(&self) -> CovarianceType {
        self.params.covariance_type()
    }
    /// K.
    pub fn n_components(&self) -> usize {
        self.params.n_components()
    }
    /// D.
    pub fn n_features(&self) -> usize {
        self.params.n_features()
    }
    /// Mixture weights `[K]`.
    pub fn weights(&self) -> Array1<f64> {
        self.params.weights_array()
    }
    /// Means `[K, D]`.
    pub fn means(&self) -> Array2<f64> {
        self.params.means_array()
    }
    /// Covariances in scikit-learn's shape.
    pub fn covariances(&self) -> ArrayD<f64> {
        self.params.covariances_array()
    }
    /// Cholesky factors of the precisions, scikit-learn's `precisions_cholesky_`.
    pub fn precisions_cholesky(&self) -> ArrayD<f64> {
        let shape = self
            .params
            .covariance_type()
            .cov_shape(self.n_components(), self.n_features());
        ArrayD::from_shape_vec(shape, self.prepared.prec_chol.clone()).expect("shape checked")
    }
    /// Lower bound (mean log-likelihood) of the best run's last iteration.
    pub fn lower_bound(&self) -> f64 {
        self.lower_bound
    }
    /// Iterations the best run took.
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }
    /// Whether the best run converged.
    pub fn converged(&self) -> bool {
        self.converged
    }
    /// Lower bound of every iteration of the best run.
    pub fn lower_bound_trace(&self) -> &[f64] {
        &self.lower_bound_trace
    }
    /// Wall seconds from the start of the best run to each entry of
    /// [`FittedGmm::lower_bound_trace`] (E-steps and M-steps; stepwise EM: the end of each
    /// evaluated pass, its evaluation not counted). Empty for loaded models of older files.
    pub fn trace_seconds(&self) -> &[f64] {
        &self.trace_seconds
    }
    /// The components re-seeded during the best run, in order (empty without
    /// [`GaussianMixture::reseed`](super::GaussianMixture::reseed) or when nothing collapsed).
    pub fn reseeds(&self) -> &[ReseedEvent] {
        &self.reseeds
    }
    /// How stepwise EM went, for an online fit (`None` for batch EM). Its lower-bound trace
    /// ([`FittedGmm::lower_bound_trace`]) is then the full-data lower bound after the evaluated
    /// passes, and [`FittedGmm::n_iter`] counts mini-batch steps.
    pub fn online(&self) -> Option<&OnlineSummary> {
        self.online.as_ref()
    }
    /// Final lower bound of each initialization, in order.
    pub fn init_lower_bounds(&self) -> &[f64] {
        &self.init_lower_bounds
    }
    /// Which backend and device ran the fit (None for loaded models).
    pub fn backend_report(&self) -> Option<&BackendReport> {
        self.report.as_ref()
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        if !data.has_missing_values() {
            data.validate_for("the Gaussian mixture")?;
        }
        if data.n_features() != self.n_features() {
            return Err(Error::DimensionMismatch {
                expected: self.n_features(),
                got: data.n_features(),
            });
        }
        Ok(())
    }

    /// `log p(x)` of every sample (scikit-learn's `score_samples`).
    pub fn score_samples(&self, x: &impl AsDataset) -> Result<Array1<f64>> {
        Ok(self.score_samples_with_report(x)?.0)
    }

    /// [`FittedGmm::score_samples`] and what computed them (the device `Backend::Auto` chose,
    /// and why).
    pub fn score_samples_with_report(
        &self,
        x: &impl AsDataset,
    ) -> Result<(Array1<f64>, BackendReport)> {
        let data = x.as_dataset();
        self.check_data(&data)?;
        let mut out = vec![0.0; data.n_samples()];
        if data.has_missing_values() {
            // Marginal likelihood of each row's observed entries (CPU).
            return self.missing_outputs(&data, |e| {
                e.log_likelihoods(&self.prepared, &mut out)?;
                Ok((Array1::from(out), e.report()))
            });
        }
        let mut engine = self.engine(&data)?;
        engine.log_likelihoods(&self.prepared, &mut out)?;
        Ok((Array1::from(out), engine.report()))
    }

    /// Mean log-likelihood per sample (scikit-learn's `score`); on a weighted [`Dataset`] the
    /// weighted mean `Σ w log p(x) / Σ w`.
    pub fn score(&self, x: &impl AsDataset) -> Result<f64> {
        let data = x.as_dataset();
        let s = self.score_samples(&data)?;
        Ok(match data.sample_weights() {
            None => s.iter().sum::<f64>() / s.len() as f64,
            // Σ w log p(x) / Σ w (rows of weight 0 left out).
            Some(w) => {
                let total: f64 = s
                    .iter()
                    .zip(w)
                    .filter(|(_, w)| **w != 0.0)
                    .map(|(s, w)| w * s)
                    .sum();
                total / data.sum_of_weights()
            }
        })
    }

    /// Responsibilities `[N, K]` (scikit-learn's `predict_proba`).
    pub fn predict_proba(&self, x: &impl AsDataset) -> Result<Array2<f64>> {
        let data = x.as_dataset();
        self.check_data(&data)?;
        let (n, k) = (data.n_samples(), self.n_components());
        let mut out = vec![0.0; n * k];
        if data.has_missing_values() {
            self.missing_outputs(&data, |e| e.responsibilities(&self.prepared, &mut out))?;
        } else {
            let mut engine = self.engine(&data)?;
            engine.responsibilities(&self.prepared, &mut out)?;
        }
        Ok(Array2::from_shape_vec((n, k), out).expect("n*k values"))
    }

    /// The most likely component of every sample (scikit-learn's `predict`; ties to the lowest index).
    pub fn predict(&self, x: &impl AsDataset) -> Result<Array1<usize>> {
        let proba = self.predict_proba(x)?;
        Ok(proba
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    )
                    .0
            })
            .collect())
    }

    /// Bayesian information criterion on `x` (lower is better), as scikit-learn's `bic`.
    pub fn bic(&self, x: &impl AsDataset) -> Result<f64> {
        Ok(self.criteria(x)?.0)
    }

    /// Akaike information criterion on `x` (lower is better), as scikit-learn's `aic`.
    pub fn aic(&self, x: &impl AsDataset) -> Result<f64> {
        Ok(self.criteria(x)?.1)
    }

    /// `(BIC, AIC)` on `x` from one pass over it. With sample weights the total log-likelihood
    /// is `Σ w log p(x)` and the sample count `Σ w` (rounded), as for the repeated rows.
    fn criteria(&self, x: &impl AsDataset) -> Result<(f64, f64)> {
        let data = x.as_dataset();
        let total = data.sum_of_weights();
        let n = total.round().max(1.0) as usize;
        let score = self.score(&data)?;
        Ok(self.params.information_criteria(score * total, n))
    }

    /// `n` samples from the mixture and their components, as scikit-learn's `sample`: the count of
    /// each component is multinomial, the samples come grouped by component.
    pub fn sample(&self, n: usize, seed: u64) -> Result<(Array2<f64>, Array1<usize>)> {
        if n == 0 {
            return Err(Error::param(
                "the number of samples to draw must be at least 1",
            ));
        }
        let (k, d) = (self.n_components(), self.n_features());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Multinomial counts by sequential binomials.
        let mut counts = vec![0usize; k];
        let (mut left, mut mass) = (n as u64, 1.0f64);
        for c in 0..k {
            if left == 0 {
                break;
            }
            let w = self.params.weights()[c];
            let p = if c == k - 1 || mass <= 0.0 {
                1.0
            } else {
                (w / mass).clamp(0.0, 1.0)
            };
            let draw = Binomial::new(left, p)
                .map_err(|e| Error::param(format!("bad weights: {e}")))?
                .sample(&mut rng);
            counts[c] = draw as usize;
            left -= draw;
            mass -= w;
        }
        let too_many = || format!("drawing {n} samples × {d} features (float64); draw fewer");
        let values = n.saturating_mul(d);
        let mut x = Array2::from_shape_vec((n, d), crate::memory::try_zeroed(values, too_many)?)
            .map_err(|e| Error::param(format!("{n} × {d} samples: {e}")))?;
        let mut labels = Array1::from_vec(crate::memory::try_zeroed(n, too_many)?);
        let sampler = GaussianSampler::new(&self.params)?;
        let mut row = 0;
        for (c, &count) in counts.iter().enumerate() {
            for _ in 0..count {
                sampler.draw(
                    c,
                    &mut rng,
                    x.row_mut(row).as_slice_mut().unwrap_or(&mut []),
                );
                labels[row] = c;
                row += 1;
            }
        }
        Ok((x, labels))
    }

    fn engine<'a>(&self, data: &'a Dataset<'a>) -> Result<Box<dyn super::GmmEngine + 'a>> {
        gmm_engine(
            self.predict_backend,
            data,
            self.covariance_type(),
            self.n_components(),
            EngineOptions::default(),
        )
    }

    /// The model as JSON in emgpu's model schema (parameters in scikit-learn's shapes).
    pub fn to_json(&self) -> String {
        let p = &self.params;
        let (k, d, cov) = (p.n_components(), p.n_features(), p.covariance_type());
        model_file::write(&GmmFile {
            header: Header::new("gmm"),
            covariance_type: cov.name().to_string(),
            n_features: d,
            n_components: k,
            weights: Nested::from_flat(p.weights(), &[k]),
            means: Nested::from_flat(p.means(), &[k, d]),
            covariances: Nested::from_flat(p.covariances(), &cov.cov_shape(k, d)),
            precisions_cholesky: Some(Nested::from_flat(
                &self.prepared.prec_chol,
                &cov.cov_shape(k, d),
            )),
            lower_bound: model_file::finite(self.lower_bound),
            n_iter: self.n_iter,
            converged: self.converged,
            lower_bound_trace: self.lower_bound_trace.clone(),
            backend: self.report.as_ref().map(|r| r.backend.to_string()),
            device: self.report.as_ref().map(|r| r.device.clone()),
            feature_names: self.feature_names.clone(),
            n_samples: self.n_train,
            trace_seconds: self.trace_seconds.clone(),
            reseeds: self.reseeds.clone(),
            online: self.online.as_ref().map(OnlineFile::from),
        })
    }

    /// Reads a model written by [`FittedGmm::to_json`] (or by hand / another tool in that schema),
    /// checking every field: shapes agree, weights sum to 1, covariances are positive definite.
    pub fn from_json(text: &str) -> Result<Self> {
        let file: GmmFile = model_file::read(text, "gmm", "a Gaussian mixture")?;
        let cov: CovarianceType = file
            .covariance_type
            .parse()
            .map_err(|e: Error| Error::BadModel(e.to_string()))?;
        let (k, d) = (file.n_components, file.n_features);
        let params = GmmParams::new(
            cov,
            file.weights.to_flat(&[k], "weights")?,
            file.means.to_flat(&[k, d], "means")?,
            file.covariances
                .to_flat(&cov.cov_shape(k, d), "covariances")?,
            d,
        )?;
        let mut model = Self::from_params(params)?;
        model.lower_bound = file.lower_bound.unwrap_or(f64::NAN);
        model.n_iter = file.n_iter;
        model.converged = file.converged;
        model.lower_bound_trace = file.lower_bound_trace;
        model.feature_names = checked_names(file.feature_names, d)?;
        model.n_train = file.n_samples;
        model.trace_seconds = file.trace_seconds;
        model.reseeds = file.reseeds;
        model.online = file.online.map(OnlineSummary::from);
        Ok(model)
    }
}

/// A Gaussian mixture's model file (`"model": "gmm"`): the header, the shape, the parameters in
/// scikit-learn's shapes, and how the fit went. `precisions_cholesky`, `backend` and `device`
/// are written for the reader's information and not read back (the factors are recomputed).
#[derive(Debug, Serialize, Deserialize)]
struct GmmFile {
    #[serde(flatten)]
    header: Header,
    covariance_type: String,
    n_features: usize,
    n_components: usize,
    weights: Nested,
    means: Nested,
    covariances: Nested,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    precisions_cholesky: Option<Nested>,
    /// `null` when not finite (a model made from parameters has no lower bound).
    #[serde(default)]
    lower_bound: Option<f64>,
    #[serde(default)]
    n_iter: usize,
    #[serde(default)]
    converged: bool,
    #[serde(default)]
    lower_bound_trace: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    /// The features' names (a CSV header's); absent in older files and for `.npy` data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    feature_names: Option<Vec<String>>,
    /// The number of training samples (absent in older files and models made by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n_samples: Option<usize>,
    /// Wall seconds at each entry of `lower_bound_trace` (absent in older files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trace_seconds: Vec<f64>,
    /// The re-seedings of the fit (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reseeds: Vec<ReseedEvent>,
    /// Stepwise EM's settings (absent for batch EM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    online: Option<OnlineFile>,
}

/// The `online` object of a model file: how stepwise EM ran. `lower_bound_trace` is then the
/// full-data lower bound after the passes `evaluated_passes`.
#[derive(Debug, Serialize, Deserialize)]
struct OnlineFile {
    batch_size: usize,
    decay: f64,
    passes: usize,
    n_batches: usize,
    evaluation_passes: usize,
    evaluated_passes: Vec<usize>,
}

impl From<&OnlineSummary> for OnlineFile {
    fn from(o: &OnlineSummary) -> Self {
        Self {
            batch_size: o.options.batch_size,
            decay: o.options.decay,
            passes: o.options.passes,
            n_batches: o.n_batches,
            evaluation_passes: o.evaluation_passes,
            evaluated_passes: o.evaluated_passes.clone(),
        }
    }
}

impl From<OnlineFile> for OnlineSummary {
    fn from(f: OnlineFile) -> Self {
        Self {
            options: crate::em::online::OnlineOptions {
                batch_size: f.batch_size,
                decay: f.decay,
                passes: f.passes,
                evaluate_every_pass: f.evaluation_passes > 1,
                start_from_params: false,
            },
            n_batches: f.n_batches,
            evaluation_passes: f.evaluation_passes,
            evaluated_passes: f.evaluated_passes,
        }
    }
}

/// Draws from the Gaussians of a mixture's components: `x = μ_c + L_c z` with `L_c` the
/// Cholesky factor of the covariance (diag/spherical: σ) and `z` standard normal (the Gaussian
/// mixture's and the hidden Markov model's `sample`).
pub(crate) struct GaussianSampler<'p> {
    params: &'p GmmParams,
    factors: Vec<Vec<f64>>,
}

impl<'p> GaussianSampler<'p> {
    /// Factors every covariance of `params` once.
    pub(crate) fn new(params: &'p GmmParams) -> Result<Self> {
        let (k, d) = (params.n_components(), params.n_features());
        let cov = params.covariances();
        let factor = |c: usize, m: &[f64]| {
            cholesky_lower(m, d).map_err(|e| Error::IllConditioned {
                component: c,
                pivot: e.pivot,
                reg_covar: 0.0,
            })
        };
        let factors = match params.covariance_type() {
            CovarianceType::Full => (0..k)
                .map(|c| factor(c, &cov[c * d * d..(c + 1) * d * d]))
                .collect::<Result<_>>()?,
            CovarianceType::Tied => vec![factor(0, cov)?],
            _ => Vec::new(),
        };
        Ok(Self { params, factors })
    }

    /// One draw from component `c` into `out` (`[D]`; a row of a standard-layout array).
    pub(crate) fn draw(&self, c: usize, rng: &mut ChaCha8Rng, out: &mut [f64]) {
        let d = self.params.n_features();
        let (mu, cov) = (
            &self.params.means()[c * d..(c + 1) * d],
            self.params.covariances(),
        );
        let z: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut *rng)).collect();
        for i in 0..d.min(out.len()) {
            let dev = match self.params.covariance_type() {
                CovarianceType::Full => (0..=i).map(|j| self.factors[c][i * d + j] * z[j]).sum(),
                CovarianceType::Tied => (0..=i).map(|j| self.factors[0][i * d + j] * z[j]).sum(),
                CovarianceType::Diag => cov[c * d + i].sqrt() * z[i],
                CovarianceType::Spherical => cov[c].sqrt() * z[i],
            };
            out[i] = mu[i] + dev;
        }
    }
}
