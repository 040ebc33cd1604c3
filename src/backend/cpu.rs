//! The CPU engine: f64, parallel over chunks of rows.

use super::{Backend, BackendReport, EngineOptions, GmmEngine};
use crate::data::Dataset;
use crate::error::Result;
use crate::models::gmm::cpu::{
    PointOutputs, REFERENCE_CHUNK_ROWS, e_step_reference, point_outputs_reference,
};
use crate::models::gmm::{GmmStats, Prepared};

/// E-steps on the CPU over one dataset.
pub struct CpuEngine<'a> {
    data: &'a Dataset<'a>,
    chunk_rows: usize,
    reason: String,
}

impl<'a> CpuEngine<'a> {
    /// An engine over `data`; `reason` says why the CPU was chosen (for `Auto`).
    pub fn new(data: &'a Dataset<'a>, options: EngineOptions, reason: String) -> Self {
        Self {
            data,
            chunk_rows: options.chunk_rows.unwrap_or(REFERENCE_CHUNK_ROWS).max(1),
            reason,
        }
    }
}

impl GmmEngine for CpuEngine<'_> {
    fn e_step(&mut self, p: &Prepared) -> Result<GmmStats> {
        Ok(e_step_reference(self.data, p, self.chunk_rows))
    }

    fn log_likelihoods(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        point_outputs_reference(
            self.data,
            p,
            PointOutputs {
                log_px: Some(out),
                resp: None,
            },
        );
        Ok(())
    }

    fn responsibilities(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        point_outputs_reference(
            self.data,
            p,
            PointOutputs {
                log_px: None,
                resp: Some(out),
            },
        );
        Ok(())
    }

    fn report(&self) -> BackendReport {
        BackendReport {
            backend: Backend::Cpu,
            device: format!("CPU ({} threads)", rayon::current_num_threads()),
            reason: self.reason.clone(),
        }
    }
}
