//! The CPU engine: f64, parallel over chunks of rows.
//!
//! Two E-steps compute the same statistics: the blocked path ([`CpuPath::Blocked`], the default:
//! GEMM-shaped, see [`super::blocked`]) and the point-by-point reference
//! ([`CpuPath::Reference`], the oracle of the tests and the twin of the GPU kernels).

use super::blocked::{BLOCKED_CHUNK_ROWS, e_step_blocked, point_outputs_blocked};
use super::{PointOutputs, REFERENCE_CHUNK_ROWS, e_step_reference, point_outputs_reference};
use crate::data::Dataset;
use crate::device::{BackendReport, CpuPath, EngineOptions, cpu_report};
use crate::em::EStep;
use crate::error::Result;
use crate::models::gmm::{GmmEngine, GmmModel, GmmStats, Prepared};

/// E-steps on the CPU over one dataset.
pub struct CpuEngine<'a> {
    data: &'a Dataset<'a>,
    chunk_rows: usize,
    path: CpuPath,
    reason: String,
}

impl<'a> CpuEngine<'a> {
    /// An engine over `data`; `reason` says why the CPU was chosen (for `Auto`).
    pub fn new(data: &'a Dataset<'a>, options: EngineOptions, reason: String) -> Self {
        let default_rows = match options.cpu_path {
            CpuPath::Blocked => BLOCKED_CHUNK_ROWS,
            CpuPath::Reference => REFERENCE_CHUNK_ROWS,
        };
        Self {
            data,
            chunk_rows: options.chunk_rows.unwrap_or(default_rows).max(1),
            path: options.cpu_path,
            reason,
        }
    }

    /// The E-step this engine runs.
    pub fn path(&self) -> CpuPath {
        self.path
    }

    /// An error unless `len` is N × `per_row`.
    fn check_output(&self, what: &str, len: usize, per_row: usize) -> Result<()> {
        let want = self.data.n_samples() * per_row;
        if len == want {
            Ok(())
        } else {
            Err(crate::Error::param(format!(
                "the {what} buffer holds {len} values but the data need {want} ({} rows × {per_row})",
                self.data.n_samples()
            )))
        }
    }

    fn point_outputs(&self, p: &Prepared, out: PointOutputs<'_>) -> Result<()> {
        match self.path {
            CpuPath::Blocked => point_outputs_blocked(self.data, p, self.chunk_rows, out),
            CpuPath::Reference => point_outputs_reference(self.data, p, out),
        }
    }
}

impl EStep<GmmModel> for CpuEngine<'_> {
    fn e_step(&mut self, p: &Prepared) -> Result<GmmStats> {
        match self.path {
            CpuPath::Blocked => e_step_blocked(self.data, p, self.chunk_rows),
            CpuPath::Reference => e_step_reference(self.data, p, self.chunk_rows),
        }
    }

    fn report(&self) -> BackendReport {
        cpu_report(&self.reason)
    }
}

impl GmmEngine for CpuEngine<'_> {
    /// The E-step of the engine's path over a view of the rows (any range).
    fn e_step_rows(&mut self, p: &Prepared, rows: std::ops::Range<usize>) -> Result<GmmStats> {
        let view = self.data.row_range(rows)?;
        match self.path {
            CpuPath::Blocked => e_step_blocked(&view, p, self.chunk_rows),
            CpuPath::Reference => e_step_reference(&view, p, self.chunk_rows),
        }
    }

    fn log_likelihoods(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.check_output("log-likelihoods", out.len(), 1)?;
        self.point_outputs(
            p,
            PointOutputs {
                log_px: Some(out),
                resp: None,
            },
        )
    }

    fn responsibilities(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.check_output("responsibilities", out.len(), p.n_components)?;
        self.point_outputs(
            p,
            PointOutputs {
                log_px: None,
                resp: Some(out),
            },
        )
    }
}
