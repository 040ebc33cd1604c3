//! The Gaussian mixture as an EM model ([`GmmModel`]) and its engines: the [`GmmEngine`] trait
//! (an [`EStep`] with the per-point outputs `score_samples` and `predict_proba` need) and
//! [`gmm_engine`], which builds the CPU or GPU engine through [`crate::device::choose`].

use super::cpu::CpuEngine;
use super::{CovarianceType, GmmParams, GmmStats, Prepared, m_step};
use crate::data::Dataset;
use crate::device::{Backend, EngineOptions, choose};
use crate::em::{EStep, Model};
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

    /// A k-means engine over the same data, when this engine can offer one that shares what it
    /// prepared (a GPU engine: the uploaded data). The k-means initialization of a Gaussian
    /// mixture uses it instead of building (and uploading) its own. `None` by default.
    fn kmeans_engine(&mut self) -> Option<&mut dyn KMeansEngine> {
        None
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
    choose::<dyn GmmEngine + 'a>(
        backend,
        |reason| Box::new(CpuEngine::new(data, options, reason)),
        |ctx, reason| {
            #[cfg(feature = "gpu")]
            {
                let engine = super::gpu::GpuGmmEngine::new(
                    ctx,
                    data,
                    covariance_type,
                    n_components,
                    options.into(),
                    reason,
                )?;
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
