//! The GPU engine of the Gaussian HMM (placeholder until the kernels land).

use std::sync::Arc;

use super::{HmmEngine, HmmModel, HmmPrepared, HmmStats};
use crate::data::Dataset;
use crate::device::BackendReport;
use crate::device::gpu::GpuContext;
use crate::em::EStep;
use crate::error::{Error, Result};
use crate::models::gmm::CovarianceType;

/// E-steps of a Gaussian HMM on the GPU.
pub struct GpuHmmEngine<'a> {
    _data: &'a Dataset<'a>,
}

impl<'a> GpuHmmEngine<'a> {
    /// Not yet: the GPU kernels are being written.
    pub fn new(
        _ctx: Arc<GpuContext>,
        _data: &'a Dataset<'a>,
        _covariance_type: CovarianceType,
        _n_components: usize,
        _reason: String,
    ) -> Result<Self> {
        Err(Error::param("the GPU HMM engine is not built yet"))
    }
}

impl EStep<HmmModel> for GpuHmmEngine<'_> {
    fn e_step(&mut self, _p: &HmmPrepared) -> Result<HmmStats> {
        Err(Error::param("the GPU HMM engine is not built yet"))
    }
    fn report(&self) -> BackendReport {
        unreachable!()
    }
}

impl HmmEngine for GpuHmmEngine<'_> {
    fn posteriors(&mut self, _p: &HmmPrepared, _out: &mut [f64]) -> Result<f64> {
        Err(Error::param("the GPU HMM engine is not built yet"))
    }
    fn viterbi(&mut self, _p: &HmmPrepared, _states: &mut [usize]) -> Result<f64> {
        Err(Error::param("the GPU HMM engine is not built yet"))
    }
    fn score(&mut self, _p: &HmmPrepared) -> Result<f64> {
        Err(Error::param("the GPU HMM engine is not built yet"))
    }
}
