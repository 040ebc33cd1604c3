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
//! - Memory: two layouts ([`MissingLayout`]). **Grouped** ([`index`], [`engine`]): the rows
//!   grouped by pattern once into an O(N·D) copy; the faster one, and the one whose large
//!   pattern groups stay resident in the GPU's complete-data engine. **Streamed** ([`stream`]):
//!   each E-step reads the rows from the dataset in fixed chunks and groups each chunk by
//!   pattern on the fly; memory O(chunk·D + K·D²) whatever N, slower per iteration on data with
//!   many patterns (the factors are computed per chunk). On a GPU the complete rows and the
//!   patterns of at least [`GPU_GROUP_ROWS`] rows run on the GPU engine over
//!   [`stream::PatternRows`] (the pattern's rows read from the dataset on demand), the rest
//!   stream on the CPU. `Auto` streams past [`stream::STREAM_AUTO_VALUES`] values (a 1 GiB
//!   copy) on either backend, and groups otherwise. `score_samples`, `predict_proba` and
//!   `impute` always stream; on a GPU the same rows as in a fit run on the GPU.

pub mod engine;
pub mod factors;
pub mod index;
pub mod stream;

pub use engine::{CPU_GROUP_ROWS, GPU_GROUP_ROWS, MissingEngine};
pub use index::{MissingIndex, Pattern};
pub use stream::{Scan, StreamEngine};

/// How a fit with missing values holds the rows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingLayout {
    /// Streamed when N·D exceeds [`stream::STREAM_AUTO_VALUES`] (on either backend); grouped
    /// otherwise.
    #[default]
    Auto,
    /// Rows grouped by pattern once into an O(N·D) copy ([`MissingEngine`]).
    Grouped,
    /// Rows read in chunks every E-step, grouped per chunk ([`StreamEngine`]): memory
    /// independent of N. On a GPU the complete rows and the large patterns run on the GPU
    /// engine, read from the dataset in place ([`stream::PatternRows`]).
    Streamed,
}

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{FittedGmm, GaussianMixture, GmmEngine, Prepared, RunResult};
use crate::data::{DataSource, Dataset};
use crate::device::{Backend, BackendReport};
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
        let streamed = match self.missing_layout {
            MissingLayout::Grouped => false,
            MissingLayout::Streamed => true,
            MissingLayout::Auto => n * d > stream::STREAM_AUTO_VALUES,
        };
        if streamed {
            let scan = Scan::of(data)?;
            check_columns(&scan.observed_counts)?;
            let means = scan.observed_means.clone();
            return match cpu_choice(self.backend, n * d)? {
                Some(reason) => {
                    let mut engine = StreamEngine::new(data, None, Some(&scan), &reason);
                    self.fit_missing_with(data, means, &mut engine, progress)
                }
                None => {
                    // On a GPU: the complete rows and the large patterns on the GPU engine,
                    // read from the data in place; the other rows streamed on the CPU.
                    let group_rows = self.missing_group_rows.unwrap_or(GPU_GROUP_ROWS);
                    let groups = stream::stream_groups(data, &scan, group_rows)?;
                    let mut engine = StreamEngine::with_engines(
                        data,
                        None,
                        Some(&scan),
                        &groups,
                        Backend::Gpu,
                        self.covariance_type,
                        self.n_components,
                        self.engine,
                    )?;
                    self.fit_missing_with(data, means, &mut engine, progress)
                }
            };
        }
        let index = MissingIndex::build(data)?;
        check_columns(&observed_counts(&index))?;
        let means = index.observed_means();
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
        self.fit_missing_with(data, means, &mut engine, progress)
    }

    /// The restarts and EM runs of a fit with missing values on `engine`; the initialization
    /// reads the data mean-imputed with `means`.
    fn fit_missing_with(
        &self,
        data: &Dataset,
        means: Vec<f64>,
        engine: &mut dyn GmmEngine,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<FittedGmm> {
        let (n, d) = (data.n_samples(), data.n_features());
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
                let params = self.draw_initial_params(&imputed, &mut rng, engine, &mut state)?;
                self.run_one(data, &model, engine, params, rule, init, progress)
            },
            |run: &RunResult, best| run.lower_bound > best.lower_bound,
            |run| run.lower_bound,
        )?;
        self.fitted_from(best, init_lower_bounds, crate::em::EStep::report(engine), n)
    }
}

/// `Some(reason)` when `backend` runs a fit of `values` values on the CPU (the choice rule of
/// every engine; `reason` says why for `Auto`), `None` when on a GPU.
fn cpu_choice(backend: Backend, values: usize) -> Result<Option<String>> {
    let choice = crate::device::choose::<Option<String>>(
        backend,
        values,
        |reason| Box::new(Some(reason)),
        |_, _| Ok(Box::new(None)),
    )?;
    Ok(*choice)
}

/// An error naming the first column with no observed value.
fn check_columns(observed_counts: &[usize]) -> Result<()> {
    match observed_counts.iter().position(|&c| c == 0) {
        Some(j) => Err(Error::param(format!(
            "column {j} (0-based) has no observed value; leave it out"
        ))),
        None => Ok(()),
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
    /// [`Error::NothingObserved`]. Runs where [`FittedGmm::with_backend`] says (the CPU for loaded
    /// models).
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
        Ok(self.impute_with_report(x)?.0)
    }

    /// [`FittedGmm::impute`] and what computed it (see [`FittedGmm::with_backend`]: on a GPU
    /// the responsibilities of the large pattern groups come from the GPU, the conditional
    /// means from the CPU).
    pub fn impute_with_report(
        &self,
        x: &impl crate::data::AsDataset,
    ) -> Result<(ndarray::Array2<f64>, BackendReport)> {
        let data = x.as_dataset();
        let (n, d) = (data.n_samples(), data.n_features());
        if d != self.n_features() {
            return Err(Error::DimensionMismatch {
                expected: self.n_features(),
                got: d,
            });
        }
        let mut out = vec![0.0; n * d];
        let report = self.missing_outputs(&data, |e| {
            e.impute(self.prepared(), &mut out)?;
            Ok(e.report())
        })?;
        let filled = ndarray::Array2::from_shape_vec((n, d), out)
            .map_err(|e| Error::Numerical(format!("imputed array shape: {e}")))?;
        Ok((filled, report))
    }

    /// The engine for per-row outputs on `data` with missing values: the streamed engine
    /// (memory independent of N besides the outputs); on a GPU its complete rows and its
    /// patterns of at least [`GPU_GROUP_ROWS`] rows run on the GPU (read from `data` in place),
    /// the other rows on the CPU.
    pub(super) fn missing_outputs<R>(
        &self,
        data: &Dataset,
        f: impl FnOnce(&mut dyn MissingOutputs) -> Result<R>,
    ) -> Result<R> {
        let values = data.n_samples() * data.n_features();
        match cpu_choice(self.predict_backend, values)? {
            Some(reason) => f(&mut StreamEngine::new(data, None, None, &reason)),
            None => {
                // On a GPU: the complete rows and the patterns of at least GPU_GROUP_ROWS
                // rows on the GPU engine, read in place; the other rows streamed on the CPU.
                let scan = Scan::of(data)?;
                let groups = stream::stream_groups(data, &scan, GPU_GROUP_ROWS)?;
                let mut engine = StreamEngine::with_engines(
                    data,
                    None,
                    Some(&scan),
                    &groups,
                    Backend::Gpu,
                    self.covariance_type(),
                    self.n_components(),
                    Default::default(),
                )?;
                f(&mut engine)
            }
        }
    }
}

/// The per-row outputs of a fitted mixture on data with missing values: `log p(x_o)` and
/// responsibilities ([`GmmEngine`]), and the imputation `E[x | x_o]`.
pub trait MissingOutputs: GmmEngine {
    /// `E[x | x_o]` of every row under `p` (`out`: `[N][D]`; observed entries copied).
    fn impute(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()>;
}

impl MissingOutputs for StreamEngine<'_> {
    fn impute(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        StreamEngine::impute(self, p, out)
    }
}

impl MissingOutputs for MissingEngine<'_> {
    fn impute(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        MissingEngine::impute(self, p, out)
    }
}
