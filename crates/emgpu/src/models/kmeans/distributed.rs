//! k-means over the rows of several processes (a distributed fit, see [`crate::em::reduce`]):
//! each process assigns its own rows, the statistics (counts, sums, inertia, changed labels) are
//! summed across processes, and every process runs the same update. A cluster empty in the sum
//! is refilled from the points farthest from their centers across all processes: each process
//! sends its own farthest points and every process merges the lists the same way (by decreasing
//! distance, then global row), as one process would.

use super::{FarPoint, FittedKMeans, KMeans, kmeans_engine};
use super::{
    KMeansEngine, KMeansInit, KMeansModel, KMeansProgress, KMeansStats, lloyd, same_clustering,
};
use crate::data::Dataset;
use crate::device::{Backend, BackendReport};
use crate::em::reduce::{Reducer, agreed, reduce_stats};
use crate::em::{Control, EStep, best_of};
use crate::error::{Error, Result};
use crate::init::{column_mean_var_reduced, kmeans_plusplus_reduced, tolerance_from_variances};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The assignment step of a distributed k-means: this process's engine, its statistics summed
/// by `reducer`, the farthest points of clusters empty in the sum gathered from every process.
/// With one process ([`crate::em::reduce::LocalReducer`]) it is [`super::KMeansStep`]: the
/// engine's statistics and farthest points as they are.
pub struct ReducedKMeansStep<'e, 'd, 'r> {
    engine: &'e mut dyn KMeansEngine,
    data: &'d Dataset<'d>,
    reducer: &'r dyn Reducer,
}

impl<'e, 'd, 'r> ReducedKMeansStep<'e, 'd, 'r> {
    /// The step of `engine` (over `data`, this process's rows) summed by `reducer`.
    pub fn new(
        engine: &'e mut dyn KMeansEngine,
        data: &'d Dataset<'d>,
        reducer: &'r dyn Reducer,
    ) -> Self {
        Self {
            engine,
            data,
            reducer,
        }
    }
}

impl EStep<KMeansModel> for ReducedKMeansStep<'_, '_, '_> {
    fn e_step(&mut self, centers: &Vec<f64>) -> Result<KMeansStats> {
        let d = self.data.n_features();
        let k = centers.len() / d.max(1);
        let local = self.engine.assign_and_sum(centers, k);
        let mut stats = reduce_stats(self.reducer, local)?;
        let empty = stats.counts.iter().filter(|&&c| c == 0.0).count();
        if empty == 0 {
            return Ok(stats);
        }
        // This process's `empty` farthest points with their rows (local row numbers).
        let local = if self.data.n_samples() == 0 {
            Ok(())
        } else {
            self.engine
                .farthest(empty)
                .and_then(|far| stats.set_farthest(self.data, far))
        };
        agreed(self.reducer, local)?;
        if self.reducer.size() == 1 {
            return Ok(stats);
        }
        let far = std::mem::take(&mut stats.farthest);
        // Each process's list in `empty` slots of [valid, global row, label, distance, weight, x].
        let (w, off) = (5 + d, self.data.global_offset());
        let mut mine = vec![0.0; empty * w];
        for (slot, (f, x)) in mine.chunks_exact_mut(w).zip(&far) {
            slot[..5].copy_from_slice(&[
                1.0,
                (off + f.index) as f64,
                f.label as f64,
                f.sq_distance,
                f.weight,
            ]);
            slot[5..].copy_from_slice(x);
        }
        let all = self.reducer.gather(&mine)?;
        let mut merged: Vec<(FarPoint, Vec<f64>)> = all
            .chunks_exact(w)
            .filter(|s| s[0] == 1.0)
            .map(|s| {
                let f = FarPoint {
                    index: s[1] as usize,
                    label: s[2] as usize,
                    sq_distance: s[3],
                    weight: s[4],
                };
                (f, s[5..].to_vec())
            })
            .collect();
        merged.sort_by(|a, b| {
            b.0.sq_distance
                .total_cmp(&a.0.sq_distance)
                .then(a.0.index.cmp(&b.0.index))
        });
        merged.truncate(empty);
        stats.farthest = merged;
        Ok(stats)
    }

    fn report(&self) -> BackendReport {
        self.engine.report()
    }
}

/// [`same_clustering`] of two labelings of the rows of every process: each process's rows
/// must map consistently, and the label maps of all processes must agree.
fn same_clustering_reduced(a: &[u32], b: &[u32], k: usize, reducer: &dyn Reducer) -> Result<bool> {
    if reducer.size() == 1 {
        return Ok(same_clustering(a, b, k));
    }
    let mut map = vec![-1.0; k + 1];
    map[k] = f64::from(u8::from(!same_clustering(a, b, k)));
    for (&x, &y) in a.iter().zip(b) {
        map[x as usize] = f64::from(y);
    }
    let all = reducer.gather(&map)?;
    let maps: Vec<&[f64]> = all.chunks_exact(k + 1).collect();
    if maps.iter().any(|m| m[k] != 0.0) {
        return Ok(false);
    }
    Ok((0..k).all(|x| {
        let mut seen = maps.iter().map(|m| m[x]).filter(|&y| y >= 0.0);
        let first = seen.next();
        seen.all(|y| Some(y) == first)
    }))
}

impl KMeans {
    /// Fits k-means to the rows of every process of a distributed fit: `data` holds this
    /// process's rows ([`Dataset::with_global_rows`]), `reducer` sums across the processes.
    /// Every process gets the same model (the labels are left out: each process holds only its
    /// rows'). The tolerance is relative to the variances of all the rows; k-means++ draws from
    /// all the rows ([`kmeans_plusplus_reduced`]); empty clusters take the farthest points of all
    /// the rows; restarts run in the same order on every process. Failures on any process
    /// (non-finite rows, an engine that cannot be built) are agreed on before the next
    /// collective call. `KMeansInit::Random` and sample weights are refused.
    pub fn fit_distributed(
        &self,
        data: &Dataset,
        reducer: &dyn Reducer,
        progress: &mut dyn FnMut(&KMeansProgress),
    ) -> Result<FittedKMeans> {
        let (n, d, k) = (data.global_rows(), data.n_features(), self.n_clusters);
        let checked = data
            .validate_for("k-means")
            .and_then(|_| data.require_unweighted("a distributed k-means"))
            .and_then(|_| data.require_plain("k-means"))
            .and_then(|_| self.validate(n, d))
            .and_then(|_| match self.init {
                KMeansInit::Random => Err(Error::param(
                    "the random k-means init is not supported in a distributed fit; use k-means++ or give the initial centers",
                )),
                _ => Ok(()),
            });
        reducer.agree(checked)?;
        let mut engine = agreed(reducer, kmeans_engine(self.backend, data, self.engine))?;
        let engine = engine.as_mut();
        let tol = tolerance_from_variances(&column_mean_var_reduced(data, reducer)?.1, self.tol);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut progress = |p: &KMeansProgress| {
            progress(p);
            Control::Continue(())
        };
        let ((run, _labels), init_inertias) = best_of(
            self.n_init_value(),
            |init| {
                let centers = match &self.init {
                    KMeansInit::Centers(c) => c.iter().copied().collect(),
                    _ => kmeans_plusplus_reduced(data, k, &mut rng, reducer)?.0,
                };
                let run = lloyd(
                    engine,
                    data,
                    centers,
                    k,
                    self.max_iter,
                    tol,
                    init,
                    &mut progress,
                    reducer,
                )?;
                // This process's labels (read back from a GPU engine: it can fail here alone).
                let mut labels = vec![0u32; data.n_samples()];
                agreed(reducer, engine.labels(&mut labels))?;
                Ok((run, labels))
            },
            |(r, l), (b, bl)| {
                r.inertia < b.inertia && !same_clustering_reduced(l, bl, k, reducer).unwrap_or(true)
            },
            |(r, _)| r.inertia,
        )?;
        let mut fitted = FittedKMeans::from_centers_vec(run.centers, k, d)?;
        fitted.inertia = run.inertia;
        fitted.n_iter = run.n_iter;
        fitted.converged = run.converged;
        fitted.init_inertias = init_inertias;
        let report = engine.report();
        fitted.predict_backend = match report.backend {
            Backend::Gpu => Backend::Gpu,
            _ => Backend::Cpu,
        };
        fitted.report = Some(report);
        Ok(fitted)
    }
}
