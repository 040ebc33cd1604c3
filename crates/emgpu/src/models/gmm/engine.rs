//! The Gaussian mixture as an EM model ([`GmmModel`]) and its engines: the [`GmmEngine`] trait
//! (an [`EStep`] with the per-point outputs `score_samples` and `predict_proba` need) and
//! [`gmm_engine`], which builds the CPU or GPU engine through [`crate::device::choose`].

use super::cpu::CpuEngine;
use super::{CovarianceType, GmmParams, GmmStats, Prepared, m_step};
use crate::data::Dataset;
use crate::device::{Backend, EngineOptions, choose};
use std::ops::Range;

use crate::em::{EStep, Model, RowsEStep};
use crate::error::{Error, Result};
use crate::models::kmeans::KMeansEngine;

/// A Gaussian mixture of a given shape as an EM [`Model`]: the M-step with `reg_covar`, the
/// parameters prepared as Cholesky factors of the precisions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GmmModel {
    /// Covariance structure.
    pub covariance_type: CovarianceType,
    /// Number of components K.
    pub n_components: usize,
    /// Number of features D.
    pub n_features: usize,
    /// Non-negative regularization added to the diagonal of covariances.
    pub reg_covar: f64,
}

impl Model for GmmModel {
    type Params = GmmParams;
    type Prepared = Prepared;
    type Stats = GmmStats;

    fn prepare(&self, params: &GmmParams) -> Result<Prepared> {
        params.prepare().map_err(|e| with_reg(e, self.reg_covar))
    }

    fn m_step(&self, stats: &GmmStats) -> Result<GmmParams> {
        m_step(stats, self.reg_covar).map_err(|e| with_reg(e, self.reg_covar))
    }

    fn numerical_advice(&self) -> &'static str {
        "scale the data (values this large or small overflow) or increase reg_covar"
    }

    /// One point's statistics about the means: `S0_k = w_k`, `S1_k = 0`,
    /// `S2_k = w_k·(Σ_k − reg_covar·I)` (diagonal forms: the variances; spherical: the variance
    /// on every feature; tied: the shared matrix), so that the M-step (which adds `reg_covar`
    /// back) returns `params` up to the `10·eps` on `nk`.
    fn params_as_stats(&self, p: &GmmParams) -> Option<GmmStats> {
        let (k, d, cov) = (p.n_components(), p.n_features(), p.covariance_type());
        let mut s = GmmStats::zeros(cov, k, d, p.means());
        s.n_samples = 1.0;
        s.s0.copy_from_slice(p.weights());
        let c = p.covariances();
        let reg = self.reg_covar;
        for (k_, &w) in p.weights().iter().enumerate() {
            match cov {
                CovarianceType::Full | CovarianceType::Tied => {
                    let m = if cov == CovarianceType::Full {
                        &c[k_ * d * d..(k_ + 1) * d * d]
                    } else {
                        &c[..d * d]
                    };
                    let dst = &mut s.s2[k_ * d * d..(k_ + 1) * d * d];
                    for i in 0..d {
                        for j in 0..d {
                            let r = if i == j { reg } else { 0.0 };
                            dst[i * d + j] = w * (m[i * d + j] - r);
                        }
                    }
                }
                CovarianceType::Diag => {
                    for j in 0..d {
                        s.s2[k_ * d + j] = w * (c[k_ * d + j] - reg);
                    }
                }
                CovarianceType::Spherical => {
                    for j in 0..d {
                        s.s2[k_ * d + j] = w * (c[k_] - reg);
                    }
                }
            }
        }
        Some(s)
    }

    fn n_parameters(&self) -> usize {
        let (k, d) = (self.n_components, self.n_features);
        self.covariance_type.n_cov_parameters(k, d) + k * d + k - 1
    }
}

/// Puts the fit's `reg_covar` into an [`Error::IllConditioned`].
pub(crate) fn with_reg(e: Error, reg: f64) -> Error {
    match e {
        Error::IllConditioned {
            component, pivot, ..
        } => Error::IllConditioned {
            component,
            pivot,
            reg_covar: reg,
        },
        other => other,
    }
}

/// A Gaussian mixture E-step engine bound to one dataset for the length of a fit: the statistics
/// of an E-step ([`EStep`]), and the per-point outputs of a fitted model.
pub trait GmmEngine: EStep<GmmModel> {
    /// `log p(x_n)` for every point under `p` (for `score_samples`), into `out` (`[N]`).
    fn log_likelihoods(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()>;

    /// Responsibilities `[N][K]` under `p` (for `predict_proba`), into `out`.
    fn responsibilities(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()>;

    /// The statistics of the points `rows` of the engine's data under `p` (a mini-batch of
    /// stepwise EM). The CPU engine takes any range; the GPU engine takes whole chunks of its
    /// plan (an engine built by [`gmm_engine_batched`] has chunks inside its mini-batches). The
    /// default refuses.
    fn e_step_rows(&mut self, p: &Prepared, rows: Range<usize>) -> Result<GmmStats> {
        let _ = p;
        Err(Error::param(format!(
            "this engine cannot run an E-step over rows {}..{} alone (stepwise EM)",
            rows.start, rows.end
        )))
    }

    /// A k-means engine over the same data, when this engine can offer one that shares what it
    /// prepared (a GPU engine: the uploaded data). The k-means initialization of a Gaussian
    /// mixture uses it instead of building (and uploading) its own. `None` by default.
    fn kmeans_engine(&mut self) -> Option<&mut dyn KMeansEngine> {
        None
    }
}

impl RowsEStep<GmmModel> for dyn GmmEngine + '_ {
    fn e_step_rows(&mut self, p: &Prepared, rows: Range<usize>) -> Result<GmmStats> {
        GmmEngine::e_step_rows(self, p, rows)
    }
}

/// Builds the engine of `backend` for `data` with up to `n_components` components of the given
/// covariance type.
pub fn gmm_engine<'a>(
    backend: Backend,
    data: &'a Dataset<'a>,
    covariance_type: CovarianceType,
    n_components: usize,
    options: EngineOptions,
) -> Result<Box<dyn GmmEngine + 'a>> {
    gmm_engine_batched(backend, data, covariance_type, n_components, options, None)
}

/// [`gmm_engine`] for stepwise EM with mini-batches of `batch_rows` rows: the GPU engine cuts
/// its chunks inside the mini-batches (a mini-batch is a set of whole chunks, resident or
/// streamed), so that [`GmmEngine::e_step_rows`] runs on them; the CPU engine takes any rows.
pub fn gmm_engine_batched<'a>(
    backend: Backend,
    data: &'a Dataset<'a>,
    covariance_type: CovarianceType,
    n_components: usize,
    options: EngineOptions,
    batch_rows: Option<usize>,
) -> Result<Box<dyn GmmEngine + 'a>> {
    choose::<dyn GmmEngine + 'a>(
        backend,
        // All the processes' rows: under MPI every rank then makes the same small-data choice.
        data.global_rows() * data.n_features(),
        |reason| Box::new(CpuEngine::new(data, options, reason)),
        |ctx, reason| {
            #[cfg(feature = "gpu")]
            {
                let gpu_options = crate::device::gpu::GpuEngineOptions {
                    batch_rows,
                    ..options.into()
                };
                let engine = super::gpu::GpuGmmEngine::new(
                    ctx,
                    data,
                    covariance_type,
                    n_components,
                    gpu_options,
                    reason,
                )?;
                Ok(Box::new(engine))
            }
            #[cfg(not(feature = "gpu"))]
            {
                let _ = (covariance_type, n_components, reason, batch_rows);
                match ctx {}
            }
        },
    )
}
