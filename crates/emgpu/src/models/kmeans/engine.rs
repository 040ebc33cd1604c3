//! k-means as an EM [`Model`] ([`KMeansModel`]: hard assignments, Lloyd's update) and its engines:
//! the [`KMeansEngine`] trait (assignments that remember their labels and distances) and
//! [`kmeans_engine`], which builds the CPU or GPU engine through [`crate::device::choose`].

use super::cpu::CpuKMeansEngine;
use super::{KMeansStats, update_centers};
use crate::data::Dataset;
use crate::device::{Backend, BackendReport, EngineOptions, choose};
use crate::em::{EStep, Model, Step};
use crate::error::{Error, Result};

/// One point far from its center, as [`KMeansEngine::farthest`] reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FarPoint {
    /// Row of the point in the data.
    pub index: usize,
    /// The cluster it was assigned to.
    pub label: usize,
    /// Its squared distance to that cluster's center.
    pub sq_distance: f64,
    /// Its sample weight (1 without weights; the engines report 1 and
    /// [`KMeansStats::set_farthest`] reads the data's).
    pub weight: f64,
}

/// A k-means assignment engine bound to one dataset for the length of a fit: the backend does the
/// per-point work, the host the update.
///
/// The engine remembers the labels and distances of its last assignment, so that the host can ask
/// whether labels changed (strict convergence), where the farthest points are (to relocate empty
/// clusters) and, once, for the labels, without N-sized transfers inside the loop.
pub trait KMeansEngine {
    /// Assigns every point to its nearest center (squared Euclidean distance; ties go to the lowest
    /// index), remembers the labels and distances, and returns the statistics of the assignment:
    /// counts, sums about the centers, inertia and how many labels changed since the previous call.
    /// `centers` is `[n_clusters][D]`, row-major; any `n_clusters ≥ 1` may be asked for.
    fn assign_and_sum(&mut self, centers: &[f64], n_clusters: usize) -> Result<KMeansStats>;

    /// The labels of the last assignment, into `out` (`[N]`).
    fn labels(&mut self, out: &mut [u32]) -> Result<()>;

    /// The `n` points of the last assignment farthest from their centers (at most N), by
    /// decreasing distance; equal distances in increasing row order.
    fn farthest(&mut self, n: usize) -> Result<Vec<FarPoint>>;

    /// What runs this engine.
    fn report(&self) -> BackendReport;
}

/// Builds the k-means engine of `backend` for `data`.
pub fn kmeans_engine<'a>(
    backend: Backend,
    data: &'a Dataset<'a>,
    options: EngineOptions,
) -> Result<Box<dyn KMeansEngine + 'a>> {
    choose::<dyn KMeansEngine + 'a>(
        backend,
        // All the processes' rows: under MPI every rank then makes the same small-data choice.
        data.global_rows() * data.n_features(),
        |reason| Box::new(CpuKMeansEngine::new(data, options, reason)),
        |ctx, reason| {
            #[cfg(feature = "gpu")]
            {
                let engine = super::gpu::GpuKMeansEngine::new(ctx, data, options.into(), reason)?;
                Ok(Box::new(engine))
            }
            #[cfg(not(feature = "gpu"))]
            {
                let _ = reason;
                match ctx {}
            }
        },
    )
}

/// k-means with `n_clusters` clusters as an EM [`Model`] (scikit-learn's `_kmeans_single_lloyd`):
/// the parameters are the centers `[K][D]` (row-major), the E-step assigns every point to its
/// nearest center, the M-step moves each center to the mean of its points (relocating empty
/// clusters), and a run converges when no label changed ("strict convergence") or when the
/// squared center shift `Σ_k ‖c_k' − c_k‖²` is at most the stop rule's `tol` (absolute: the fit
/// scales scikit-learn's relative `tol` by the mean variance of the features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KMeansModel {
    /// Number of clusters K.
    pub n_clusters: usize,
    /// Number of features D.
    pub n_features: usize,
}

impl Model for KMeansModel {
    type Params = Vec<f64>;
    type Prepared = Vec<f64>;
    type Stats = KMeansStats;

    fn prepare(&self, centers: &Vec<f64>) -> Result<Vec<f64>> {
        if centers.len() != self.n_clusters * self.n_features {
            return Err(Error::param(format!(
                "k-means centers must be [{}][{}], got {} values",
                self.n_clusters,
                self.n_features,
                centers.len()
            )));
        }
        Ok(centers.clone())
    }

    fn m_step(&self, stats: &KMeansStats) -> Result<Vec<f64>> {
        let centers = update_centers(stats);
        if centers.iter().any(|v| !v.is_finite()) {
            return Err(Error::Numerical(
                "the k-means centers became non-finite; scale the data (values this large overflow)"
                    .into(),
            ));
        }
        Ok(centers)
    }

    fn n_parameters(&self) -> usize {
        self.n_clusters * self.n_features
    }

    fn converged(&self, step: &Step<'_, Self>, tol: f64) -> (bool, f64) {
        let shift: f64 = step
            .after
            .iter()
            .zip(step.before.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        // The first assignment is compared with "no labels" (scikit-learn's labels_old = -1).
        let strict = step.iteration > 1 && step.stats.n_changed == 0;
        (strict || shift <= tol, shift)
    }
}

/// The E-step of [`KMeansModel`] over a [`KMeansEngine`]: the assignment's statistics, with the
/// points farthest from their centers attached when a cluster came out empty (the M-step moves
/// empty clusters onto them, as scikit-learn's `_relocate_empty_clusters`).
pub struct KMeansStep<'e, 'd> {
    engine: &'e mut dyn KMeansEngine,
    data: &'d Dataset<'d>,
}

impl<'e, 'd> KMeansStep<'e, 'd> {
    /// The E-step of `engine`, whose data are `data`.
    pub fn new(engine: &'e mut dyn KMeansEngine, data: &'d Dataset<'d>) -> Self {
        Self { engine, data }
    }
}

impl EStep<KMeansModel> for KMeansStep<'_, '_> {
    fn e_step(&mut self, centers: &Vec<f64>) -> Result<KMeansStats> {
        let d = self.data.n_features();
        let k = centers.len() / d.max(1);
        let mut stats = self.engine.assign_and_sum(centers, k)?;
        let empty = stats.counts.iter().filter(|&&c| c == 0.0).count();
        if empty > 0 {
            let far = self.engine.farthest(empty)?;
            stats.set_farthest(self.data, far)?;
        }
        Ok(stats)
    }

    fn report(&self) -> BackendReport {
        self.engine.report()
    }
}
