//! The CPU engine: f64, parallel over chunks of rows.
//!
//! Two E-steps compute the same statistics: the blocked path ([`CpuPath::Blocked`], the default:
//! GEMM-shaped, see [`crate::models::gmm::cpu_blocked`]) and the point-by-point reference
//! ([`CpuPath::Reference`], the oracle of the tests and the twin of the GPU kernels).

use super::{Backend, BackendReport, EngineOptions, FarPoint, GmmEngine, KMeansEngine};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::gmm::cpu::{
    PointOutputs, REFERENCE_CHUNK_ROWS, e_step_reference, point_outputs_reference,
};
use crate::models::gmm::cpu_blocked::{BLOCKED_CHUNK_ROWS, e_step_blocked, point_outputs_blocked};
use crate::models::gmm::{GmmStats, Prepared};
use crate::models::kmeans::KMeansStats;
use crate::models::kmeans::cpu::{NO_LABEL, assign_reference, farthest_reference};

/// Which E-step the CPU engine runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CpuPath {
    /// Blocked matrix products over chunks of rows (quadratic features; fast).
    #[default]
    Blocked,
    /// One point and one component at a time (the reference of the tests).
    Reference,
}

impl std::fmt::Display for CpuPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuPath::Blocked => "blocked",
            CpuPath::Reference => "reference",
        })
    }
}

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

    fn point_outputs(&self, p: &Prepared, out: PointOutputs<'_>) {
        match self.path {
            CpuPath::Blocked => point_outputs_blocked(self.data, p, self.chunk_rows, out),
            CpuPath::Reference => point_outputs_reference(self.data, p, out),
        }
    }
}

impl GmmEngine for CpuEngine<'_> {
    fn e_step(&mut self, p: &Prepared) -> Result<GmmStats> {
        Ok(match self.path {
            CpuPath::Blocked => e_step_blocked(self.data, p, self.chunk_rows),
            CpuPath::Reference => e_step_reference(self.data, p, self.chunk_rows),
        })
    }

    fn log_likelihoods(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.check_output("log-likelihoods", out.len(), 1)?;
        self.point_outputs(
            p,
            PointOutputs {
                log_px: Some(out),
                resp: None,
            },
        );
        Ok(())
    }

    fn responsibilities(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.check_output("responsibilities", out.len(), p.n_components)?;
        self.point_outputs(
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

/// k-means assignments on the CPU over one dataset (f64, parallel over chunks of rows).
pub struct CpuKMeansEngine<'a> {
    data: &'a Dataset<'a>,
    chunk_rows: usize,
    reason: String,
    /// Labels of the last assignment (`NO_LABEL` before the first), `[N]`.
    labels: Vec<u32>,
    /// Squared distances of the last assignment, `[N]`.
    dists: Vec<f64>,
    assigned: bool,
}

impl<'a> CpuKMeansEngine<'a> {
    /// An engine over `data`; `reason` says why the CPU was chosen (for `Auto`).
    pub fn new(data: &'a Dataset<'a>, options: EngineOptions, reason: String) -> Self {
        Self {
            data,
            chunk_rows: options.chunk_rows.unwrap_or(REFERENCE_CHUNK_ROWS).max(1),
            reason,
            labels: Vec::new(),
            dists: Vec::new(),
            assigned: false,
        }
    }

    fn check_assigned(&self) -> Result<()> {
        if self.assigned {
            Ok(())
        } else {
            Err(Error::param(
                "the k-means engine has no assignment yet; call assign_and_sum first",
            ))
        }
    }
}

impl KMeansEngine for CpuKMeansEngine<'_> {
    fn assign_and_sum(&mut self, centers: &[f64], n_clusters: usize) -> Result<KMeansStats> {
        let (n, d) = (self.data.n_samples(), self.data.n_features());
        if n_clusters == 0 || centers.len() != n_clusters * d {
            return Err(Error::param(format!(
                "k-means centers must be [n_clusters ≥ 1][{d}], got {} values for {n_clusters} clusters",
                centers.len()
            )));
        }
        if self.labels.len() != n {
            self.labels = vec![NO_LABEL; n];
            self.dists = vec![0.0; n];
        }
        let stats = assign_reference(
            self.data,
            centers,
            n_clusters,
            self.chunk_rows,
            &mut self.labels,
            &mut self.dists,
        );
        self.assigned = true;
        Ok(stats)
    }

    fn labels(&mut self, out: &mut [u32]) -> Result<()> {
        self.check_assigned()?;
        if out.len() != self.labels.len() {
            return Err(Error::param(format!(
                "the labels buffer holds {} values but the data has {} rows",
                out.len(),
                self.labels.len()
            )));
        }
        out.copy_from_slice(&self.labels);
        Ok(())
    }

    fn farthest(&mut self, n: usize) -> Result<Vec<FarPoint>> {
        self.check_assigned()?;
        Ok(farthest_reference(&self.labels, &self.dists, n))
    }

    fn report(&self) -> BackendReport {
        BackendReport {
            backend: Backend::Cpu,
            device: format!("CPU ({} threads)", rayon::current_num_threads()),
            reason: self.reason.clone(),
        }
    }
}
