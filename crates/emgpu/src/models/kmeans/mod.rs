//! k-means (Lloyd's algorithm) as hard-assignment EM, with scikit-learn's `KMeans` semantics.
//!
//! Each iteration is an assignment step on the backend (every point to its nearest center; the
//! additive [`KMeansStats`]: counts, sums, inertia, changed labels) and an update on the host, in
//! f64: new center = mean of its points, empty clusters relocated to the points farthest from their
//! centers (as scikit-learn's `_relocate_empty_clusters`). A run stops when no label changed
//! ("strict convergence") or when the squared center shift `Σ_k ‖c_k' − c_k‖²` is at most
//! `tol × mean(variances of the features)` (scikit-learn's `_tolerance`), or after `max_iter`
//! iterations; the labels and inertia reported are then those of the final centers. With
//! `n_init > 1`, the run of lowest inertia is kept (a later run replaces an earlier only if its
//! inertia is strictly lower and its clustering differs, as scikit-learn).
//!
//! ```
//! use emgpu::{Backend, KMeans};
//! use ndarray::array;
//!
//! let x = array![[0.0, 0.1], [0.2, -0.1], [-0.1, 0.0], [5.0, 5.1], [5.2, 4.9], [4.9, 5.0]];
//! let km = KMeans::params(2).seed(1).backend(Backend::Cpu).fit(&x)?;
//! let labels = km.predict(&x)?;
//! assert_eq!(labels[0], labels[1]);
//! assert_ne!(labels[0], labels[3]);
//! assert!(km.inertia() < 0.2);
//! # Ok::<(), emgpu::Error>(())
//! ```

pub mod cpu;
pub(crate) mod distributed;
mod engine;
mod fitted;
#[cfg(feature = "gpu")]
pub mod gpu;
mod stats;

pub use distributed::ReducedKMeansStep;
pub use engine::{FarPoint, KMeansEngine, KMeansModel, KMeansStep, kmeans_engine};
pub use fitted::FittedKMeans;
pub use stats::KMeansStats;

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{AsDataset, AsWeights, Dataset};
use crate::device::{Backend, EngineOptions};
use crate::em::reduce::{LocalReducer, Reducer, reduce_stats};
use crate::em::{Control, Progress, StopRule, best_of, run_em};
use crate::error::{Error, Result};
use crate::init::{
    check_k, column_mean_var, kmeans_plusplus_rng, random_rows, tolerance_from_variances,
};

/// How the initial centers of each k-means run are chosen (scikit-learn's `init`).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum KMeansInit {
    /// Greedy k-means++ (scikit-learn's default): see [`crate::init::kmeans_plusplus`].
    #[default]
    KMeansPlusPlus,
    /// K distinct data points drawn uniformly (scikit-learn's `init="random"`).
    Random,
    /// These centers, `[K, D]` (scikit-learn's `init=array`); one run whatever `n_init`.
    Centers(Array2<f64>),
}

impl std::str::FromStr for KMeansInit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "k-means++" => Ok(KMeansInit::KMeansPlusPlus),
            "random" => Ok(KMeansInit::Random),
            other => Err(Error::param(format!(
                "unknown k-means init {other:?}; use k-means++ or random (or give centers)"
            ))),
        }
    }
}

/// Reported to the progress callback after every k-means iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansProgress {
    /// Which initialization (restart) this is, from 0.
    pub init: usize,
    /// Iteration number, from 1.
    pub iteration: usize,
    /// Inertia of this iteration's assignment (under the centers before its update), as
    /// scikit-learn's verbose output.
    pub inertia: f64,
    /// `Σ_k ‖c_k' − c_k‖²` of this iteration's update.
    pub center_shift: f64,
}

/// Hyper-parameters of a k-means fit: a builder. Defaults are scikit-learn's.
#[derive(Debug, Clone)]
pub struct KMeans {
    n_clusters: usize,
    tol: f64,
    max_iter: usize,
    n_init: Option<usize>,
    init: KMeansInit,
    seed: u64,
    backend: Backend,
    engine: EngineOptions,
}

impl KMeans {
    /// `n_clusters` clusters with scikit-learn's defaults: k-means++, `tol = 1e-4` (relative to
    /// the data's variance), `max_iter = 300`, `n_init` "auto" (1 for k-means++ and given centers,
    /// 10 for random); seed 0; `Backend::Auto`.
    pub fn params(n_clusters: usize) -> Self {
        Self {
            n_clusters,
            tol: 1e-4,
            max_iter: 300,
            n_init: None,
            init: KMeansInit::default(),
            seed: 0,
            backend: Backend::Auto,
            engine: EngineOptions::default(),
        }
    }

    /// Relative tolerance: a run converges when the squared center shift is at most
    /// `tol × mean(variances of the features)`.
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
    /// Maximum number of iterations per run.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }
    /// Number of runs from different initial centers; the one of lowest inertia is kept.
    pub fn n_init(mut self, n_init: usize) -> Self {
        self.n_init = Some(n_init);
        self
    }
    /// The initialization method.
    pub fn init(mut self, init: KMeansInit) -> Self {
        self.init = init;
        self
    }
    /// Seed of every random choice of the fit (same seed, same backend: same model).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// The backend that runs the assignments.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
    /// Rows per chunk (see [`EngineOptions::chunk_rows`]); mostly for tests and benchmarks.
    pub fn chunk_rows(mut self, rows: usize) -> Self {
        self.engine.chunk_rows = Some(rows);
        self
    }

    /// Number of clusters.
    pub fn n_clusters(&self) -> usize {
        self.n_clusters
    }

    /// The number of runs this fit makes ("auto" resolved as scikit-learn does).
    pub fn n_init_value(&self) -> usize {
        match (&self.init, self.n_init) {
            (KMeansInit::Centers(_), _) => 1,
            (_, Some(n)) => n,
            (KMeansInit::Random, None) => 10,
            (_, None) => 1,
        }
    }

    fn validate(&self, n: usize, d: usize) -> Result<()> {
        check_k(self.n_clusters, n)?;
        StopRule {
            tol: self.tol,
            max_iter: self.max_iter,
        }
        .validate()?;
        if self.n_init == Some(0) {
            return Err(Error::param("n_init must be at least 1"));
        }
        if let KMeansInit::Centers(c) = &self.init {
            if c.ncols() != d {
                return Err(Error::DimensionMismatch {
                    expected: c.ncols(),
                    got: d,
                });
            }
            if c.nrows() != self.n_clusters {
                return Err(Error::param(format!(
                    "the initial centers have {} rows but the fit asks for {} clusters",
                    c.nrows(),
                    self.n_clusters
                )));
            }
            if c.iter().any(|v| !v.is_finite()) {
                return Err(Error::param("the initial centers must be finite"));
            }
        }
        Ok(())
    }

    /// Fits k-means to `x` (rows are samples). A [`Dataset`] with sample weights
    /// ([`Dataset::with_sample_weights`]) gives a weighted fit.
    pub fn fit(&self, x: &impl AsDataset) -> Result<FittedKMeans> {
        self.fit_with_progress(x, &mut |_| {})
    }

    /// Fits k-means to `x` with a sample weight per row (`[N]`, finite, ≥ 0, not all zero), as
    /// scikit-learn's `KMeans.fit(X, sample_weight=w)`: centers are weighted means, the inertia
    /// is `Σ w ‖x − c‖²`, k-means++ draws with probabilities `∝ w·D²` (the first center `∝ w`),
    /// `random` draws rows `∝ w`, and an empty cluster (total weight 0) takes the point farthest
    /// from its center with that point's weight. The tolerance stays relative to the unweighted
    /// variances of the features (scikit-learn's `_tolerance`).
    pub fn fit_weighted(
        &self,
        x: &impl AsDataset,
        sample_weight: &(impl AsWeights + ?Sized),
    ) -> Result<FittedKMeans> {
        let data = x
            .as_dataset()
            .with_sample_weights(sample_weight.to_weights())?;
        self.fit(&data)
    }

    /// Fits, calling `progress` after every iteration.
    pub fn fit_with_progress(
        &self,
        x: &impl AsDataset,
        progress: &mut dyn FnMut(&KMeansProgress),
    ) -> Result<FittedKMeans> {
        self.fit_with_control(x, &mut |p| {
            progress(p);
            Control::Continue(())
        })
    }

    /// Fits, calling `progress` after every iteration; the callback stops the fit by returning
    /// [`std::ops::ControlFlow::Break`] (the fit then fails with [`Error::Cancelled`]).
    pub fn fit_with_control(
        &self,
        x: &impl AsDataset,
        progress: &mut dyn FnMut(&KMeansProgress) -> Control,
    ) -> Result<FittedKMeans> {
        let data = x.as_dataset();
        data.validate_for("k-means")?;
        self.validate(data.n_samples(), data.n_features())?;
        let mut engine = kmeans_engine(self.backend, &data, self.engine)?;
        self.fit_engine_with(&data, engine.as_mut(), progress)
    }

    /// The centers the first run of [`KMeans::fit`] starts from, `[K, D]`, with this builder's
    /// seed and init method: a fit with `.init(KMeansInit::Centers(km.initial_centers(&x)?))` and
    /// the same settings runs the same first run (`validate` starts two backends from them).
    pub fn initial_centers(&self, x: &impl AsDataset) -> Result<Array2<f64>> {
        let data = x.as_dataset();
        data.validate_for("k-means")?;
        let (d, k) = (data.n_features(), self.n_clusters);
        self.validate(data.n_samples(), d)?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let centers = self.draw_centers(&data, &mut rng)?;
        Array2::from_shape_vec((k, d), centers)
            .map_err(|e| Error::Numerical(format!("initial centers: {e}")))
    }

    /// The initial centers `[K][D]` of one run, drawn from `rng` (see [`KMeansInit`]).
    fn draw_centers(&self, data: &Dataset, rng: &mut ChaCha8Rng) -> Result<Vec<f64>> {
        let k = self.n_clusters;
        Ok(match &self.init {
            KMeansInit::KMeansPlusPlus => kmeans_plusplus_rng(data, k, rng)?.0,
            KMeansInit::Random => random_rows(data, k, rng)?.0,
            KMeansInit::Centers(c) => c.iter().copied().collect(),
        })
    }

    /// Fits with an engine already built over `data` (benchmarks and model selection reuse one).
    pub fn fit_engine(
        &self,
        data: &Dataset,
        engine: &mut dyn KMeansEngine,
        progress: &mut dyn FnMut(&KMeansProgress),
    ) -> Result<FittedKMeans> {
        self.fit_engine_with(data, engine, &mut |p| {
            progress(p);
            Control::Continue(())
        })
    }

    /// [`KMeans::fit_engine`] with a progress callback that may stop the fit.
    fn fit_engine_with(
        &self,
        data: &Dataset,
        engine: &mut dyn KMeansEngine,
        progress: &mut dyn FnMut(&KMeansProgress) -> Control,
    ) -> Result<FittedKMeans> {
        data.require_plain("k-means")?;
        let (n, d, k) = (data.n_samples(), data.n_features(), self.n_clusters);
        self.validate(n, d)?;
        let tol = tolerance_from_variances(&column_mean_var(data)?.1, self.tol);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let ((run, labels), init_inertias) = best_of(
            self.n_init_value(),
            |init| {
                let centers = self.draw_centers(data, &mut rng)?;
                let run = lloyd(
                    engine,
                    data,
                    centers,
                    k,
                    self.max_iter,
                    tol,
                    init,
                    progress,
                    &LocalReducer,
                )?;
                let mut labels = vec![0u32; n];
                engine.labels(&mut labels)?;
                Ok((run, labels))
            },
            // scikit-learn: a later run replaces the best only with a strictly lower inertia and
            // a different clustering (equal clusterings differ in inertia only by rounding).
            |(r, l), (b, bl)| r.inertia < b.inertia && !same_clustering(l, bl, k),
            |(r, _)| r.inertia,
        )?;
        let mut fitted = FittedKMeans::from_centers_vec(run.centers, k, d)?;
        fitted.inertia = run.inertia;
        fitted.n_iter = run.n_iter;
        fitted.converged = run.converged;
        fitted.labels = Some(labels.iter().map(|&l| l as usize).collect());
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

/// scikit-learn's `_is_same_clustering`: equal up to a permutation of the labels.
fn same_clustering(a: &[u32], b: &[u32], k: usize) -> bool {
    let mut map = vec![u32::MAX; k];
    for (&x, &y) in a.iter().zip(b) {
        let m = &mut map[x as usize];
        if *m == u32::MAX {
            *m = y;
        } else if *m != y {
            return false;
        }
    }
    true
}

/// The outcome of one Lloyd run.
#[derive(Debug, Clone)]
pub(crate) struct LloydRun {
    /// Final centers `[K][D]`.
    pub centers: Vec<f64>,
    /// Inertia of the final assignment under the final centers.
    pub inertia: f64,
    /// Iterations run.
    pub n_iter: usize,
    /// Whether it stopped on unchanged labels or on the tolerance (not on `max_iter`).
    pub converged: bool,
}

/// One run of Lloyd's algorithm from `centers` (scikit-learn's `_kmeans_single_lloyd`) through
/// the EM loop with [`KMeansModel`]; `tol` is absolute (already scaled by the data's variance).
/// On return the engine's last assignment is that of the final centers, so its labels are the
/// run's labels.
///
/// `reducer` sums the statistics over the processes of a distributed fit
/// ([`ReducedKMeansStep`]; `data` then holds this process's rows and the engine's labels are
/// theirs); with [`LocalReducer`] (one process) the run is the engine's alone, bit for bit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lloyd(
    engine: &mut dyn KMeansEngine,
    data: &Dataset,
    centers: Vec<f64>,
    k: usize,
    max_iter: usize,
    tol: f64,
    init: usize,
    progress: &mut dyn FnMut(&KMeansProgress) -> Control,
    reducer: &dyn Reducer,
) -> Result<LloydRun> {
    let model = KMeansModel {
        n_clusters: k,
        n_features: data.n_features(),
    };
    let mut n = [data.sum_of_weights()];
    if reducer.size() > 1 {
        reducer.sum(&mut n)?;
    }
    let n = n[0];
    let mut report = |p: &Progress| {
        progress(&KMeansProgress {
            init: p.init,
            iteration: p.iteration,
            inertia: -p.lower_bound * n,
            center_shift: p.criterion,
        })
    };
    let rule = StopRule { tol, max_iter };
    let run = run_em(
        &model,
        &mut ReducedKMeansStep::new(engine, data, reducer),
        centers,
        rule,
        init,
        &mut report,
    )?;
    // Labels and inertia of the final centers. After strict convergence the last assignment is
    // already that, unless the update moved a center by rounding: then assign once more (as
    // scikit-learn does whenever the run did not converge strictly). Every process makes the
    // same decision (from the summed statistics).
    let (before, stats) = &run.last;
    let strict = run.converged && run.n_iter > 1 && stats.n_changed == 0;
    let inertia = if strict && *before == run.params {
        stats.inertia
    } else {
        let local = engine.assign_and_sum(&run.params, k);
        reduce_stats(reducer, local)?.inertia
    };
    Ok(LloydRun {
        centers: run.params,
        inertia,
        n_iter: run.n_iter,
        converged: run.converged,
    })
}

/// The host update: new centers from the statistics of an assignment, with scikit-learn's
/// relocation of empty clusters (`_relocate_empty_clusters_dense`, then `_average_centers`).
///
/// Each empty cluster, in increasing order, takes the next of the points farthest from their
/// centers (by decreasing distance): that point leaves its cluster's sum and count and becomes the
/// empty cluster's only point. If every point sits on its center (fewer distinct points than
/// clusters) nothing is relocated. A cluster still empty after that is placed on the center of the
/// largest cluster (scikit-learn's convenience; it never produces a NaN).
pub(crate) fn update_centers(stats: &KMeansStats) -> Vec<f64> {
    let (k, d) = (stats.n_clusters, stats.n_features);
    let mut counts = stats.counts.clone();
    let mut sums = stats.sums.clone();
    let shift = &stats.shift;
    let empty: Vec<usize> = (0..k).filter(|&c| stats.counts[c] == 0.0).collect();
    if !empty.is_empty() {
        let far = &stats.farthest;
        if far.first().is_some_and(|(f, _)| f.sq_distance > 0.0) {
            // With sample weights (scikit-learn's `sample_weight`), the point moves with its
            // weight: it takes `w·(x − shift)` out of its cluster's sum and `w` out of its count.
            for (&j, (f, x)) in empty.iter().zip(far) {
                let (o, w) = (f.label, f.weight);
                for m in 0..d {
                    sums[o * d + m] -= w * (x[m] - shift[o * d + m]);
                    sums[j * d + m] = w * (x[m] - shift[j * d + m]);
                }
                counts[o] -= w;
                counts[j] = w;
            }
        }
    }
    let mut centers = vec![0.0; k * d];
    for c in 0..k {
        if counts[c] > 0.0 {
            for m in 0..d {
                centers[c * d + m] = shift[c * d + m] + sums[c * d + m] / counts[c];
            }
        }
    }
    // np.argmax: the first largest.
    let largest = (1..k).fold(0, |b, c| if counts[c] > counts[b] { c } else { b });
    for c in 0..k {
        if counts[c] <= 0.0 {
            let (dst, src) = (c * d, largest * d);
            centers.copy_within(src..src + d, dst);
        }
    }
    centers
}
