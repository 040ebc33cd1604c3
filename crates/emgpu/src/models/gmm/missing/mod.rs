//! EM for Gaussian mixtures on data with missing entries (NaN, missing at random), and imputation.
//!
//! A [`Dataset`] marked [`Dataset::with_missing_values`] fits by the EM of Ghahramani & Jordan
//! (1994): the missing values are latent. For each row and component the responsibility uses the
//! marginal of the observed coordinates; the statistics use the completed row
//! `x̂ = [x_o; E[x_m | x_o]]` and add `Cov[x_m | x_o]` to the second moments; the M-step is the
//! ordinary one. `lower_bound` is the mean observed-data log-likelihood `Σ log p(x_o) / N`, which
//! EM never decreases. See [`factors`] for the formulas and [`engine`] for how rows grouped by
//! pattern run through the ordinary engines of both backends.
//!
//! Choices:
//! - **Initialization**: every method runs on the *mean-imputed* data (each NaN replaced by its
//!   column's observed mean, read on the fly, nothing copied); on data without NaN it is the
//!   complete-data initialization, so the fit is the complete-data fit.
//! - **A row with no observed entry** is an error naming its index ([`Error::NothingObserved`]);
//!   a column with no observed entry is an error too.
//! - Not supported with missing values (clear errors): sample weights, stepwise (online) EM,
//!   re-seeding of collapsed components.
//! - Memory: the grouped copy of the observed values is O(N·D) (f64), not streamed.

pub mod engine;
pub mod factors;
pub mod index;

pub use engine::{CPU_GROUP_ROWS, GPU_GROUP_ROWS, MissingEngine};
pub use index::{MissingIndex, Pattern};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{FittedGmm, GaussianMixture, RunResult};
use crate::data::{DataSource, Dataset};
use crate::device::Backend;
use crate::em::{Control, Progress, StopRule, best_of};
use crate::error::{Error, Result};

/// The rows of a dataset with each NaN replaced by its column's mean (the initialization's view).
struct MeanImputed<'a> {
    inner: &'a Dataset<'a>,
    means: Vec<f64>,
}

impl DataSource for MeanImputed<'_> {
    fn n_samples(&self) -> usize {
        self.inner.n_samples()
    }
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        self.inner.read_f64(start, out)?;
        let d = self.means.len();
        for row in out.chunks_exact_mut(d) {
            for (v, m) in row.iter_mut().zip(&self.means) {
                if v.is_nan() {
                    *v = *m;
                }
            }
        }
        Ok(())
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let mut buf = vec![0.0; out.len()];
        self.read_f64(start, &mut buf)?;
        for (o, v) in out.iter_mut().zip(&buf) {
            *o = *v as f32;
        }
        Ok(())
    }
}

/// The backend's default `group_rows` (see [`engine`]).
fn default_group_rows(backend: Backend) -> usize {
    match backend {
        Backend::Gpu => GPU_GROUP_ROWS,
        _ => CPU_GROUP_ROWS,
    }
}

impl GaussianMixture {
    /// The fit of data marked with missing values ([`GaussianMixture::fit`] comes here).
    pub(super) fn fit_missing(
        &self,
        data: &Dataset,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<FittedGmm> {
        if data.sequence_lengths().is_some() {
            return Err(Error::param(
                "the Gaussian mixture treats rows as independent samples; give the data without sequence lengths",
            ));
        }
        if data.is_weighted() {
            return Err(Error::param(
                "sample weights are not supported together with missing values; give the data without weights, or drop the incomplete rows",
            ));
        }
        if self.online.is_some() {
            return Err(Error::param(
                "stepwise (online) EM is not supported with missing values; use batch EM",
            ));
        }
        if self.reseed.is_some() {
            return Err(Error::param(
                "re-seeding collapsed components is not supported with missing values",
            ));
        }
        let (n, d) = (data.n_samples(), data.n_features());
        self.validate(n, d)?;
        let index = MissingIndex::build(data)?;
        let means = index.observed_means();
        if let Some(j) = observed_counts(&index).iter().position(|&c| c == 0) {
            return Err(Error::param(format!(
                "column {j} (0-based) has no observed value; leave it out"
            )));
        }
        let group_rows = self
            .missing_group_rows
            .unwrap_or_else(|| default_group_rows(self.backend));
        let groups = engine::group_datasets(&index, group_rows)?;
        let mut engine = MissingEngine::new(
            &index,
            &groups,
            self.backend,
            self.covariance_type,
            self.n_components,
            self.engine,
        )?;
        let imputed = Dataset::from_source(MeanImputed { inner: data, means });
        let mut state = self.init_state();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let rule = StopRule {
            tol: self.tol,
            max_iter: self.max_iter,
        };
        let model = self.model(d);
        let (best, init_lower_bounds) = best_of(
            self.n_init,
            |init| {
                let params =
                    self.draw_initial_params(&imputed, &mut rng, &mut engine, &mut state)?;
                self.run_one(data, &model, &mut engine, params, rule, init, progress)
            },
            |run: &RunResult, best| run.lower_bound > best.lower_bound,
            |run| run.lower_bound,
        )?;
        self.fitted_from(
            best,
            init_lower_bounds,
            crate::em::EStep::report(&engine),
            n,
        )
    }
}

/// Observed entries per column.
fn observed_counts(index: &MissingIndex) -> Vec<usize> {
    let mut count = vec![0; index.n_features()];
    for p in index.patterns() {
        for &j in &p.observed {
            count[j] += p.rows.len();
        }
    }
    count
}

impl FittedGmm {
    /// Each NaN of `x` replaced by `E[x_m | x_o]` under the mixture (the responsibilities of the
    /// row's observed entries weigh the components' conditional means); observed entries are
    /// copied bit for bit (as f64). NaN marks a missing entry whether or not `x` is marked with
    /// [`Dataset::with_missing_values`]; a row with nothing observed is
    /// [`Error::NothingObserved`]. Runs on the CPU.
    ///
    /// ```
    /// use emgpu::{Backend, GaussianMixture};
    /// use ndarray::array;
    ///
    /// let x = array![[0.0, 0.1], [1.0, 0.9], [2.0, 2.1], [3.0, 2.9], [4.0, 4.2], [5.0, 5.0]];
    /// let gmm = GaussianMixture::params(1).backend(Backend::Cpu).fit(&x)?;
    /// let filled = gmm.impute(&array![[2.5, f64::NAN]])?;
    /// assert!((filled[[0, 1]] - 2.5).abs() < 0.2);
    /// # Ok::<(), emgpu::Error>(())
    /// ```
    pub fn impute(&self, x: &impl crate::data::AsDataset) -> Result<ndarray::Array2<f64>> {
        let data = x.as_dataset();
        let (n, d) = (data.n_samples(), data.n_features());
        if d != self.n_features() {
            return Err(Error::DimensionMismatch {
                expected: self.n_features(),
                got: d,
            });
        }
        let index = MissingIndex::build(&data)?;
        let engine = MissingEngine::new(
            &index,
            &[],
            Backend::Cpu,
            self.covariance_type(),
            self.n_components(),
            Default::default(),
        )?;
        let mut out = vec![0.0; n * d];
        engine.impute(self.prepared(), &mut out)?;
        ndarray::Array2::from_shape_vec((n, d), out)
            .map_err(|e| Error::Numerical(format!("imputed array shape: {e}")))
    }

    /// The engine for per-row outputs on `data` marked with missing values (CPU).
    pub(super) fn missing_outputs<R>(
        &self,
        data: &Dataset,
        f: impl FnOnce(&mut MissingEngine<'_>) -> Result<R>,
    ) -> Result<R> {
        let index = MissingIndex::build(data)?;
        let mut engine = MissingEngine::new(
            &index,
            &[],
            Backend::Cpu,
            self.covariance_type(),
            self.n_components(),
            Default::default(),
        )?;
        f(&mut engine)
    }
}
