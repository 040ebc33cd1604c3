//! Model selection: BIC and AIC for every model ([`information_criteria`]), the ranking of any
//! model's candidates ([`select_best`]), and the Gaussian mixture's selection over numbers of
//! components and covariance types ([`select_gmm`]), which is built on it.
//!
//! Every fit of one covariance type runs on the same engine (on the GPU: the data is uploaded once
//! per covariance type, not once per K), and every k-means initialization of the whole selection on
//! one k-means engine.
//!
//! ```
//! use emgpu::{Backend, CovarianceType, Criterion, GaussianMixture, select_gmm};
//! use ndarray::Array2;
//!
//! // Three tight groups on a line.
//! let x = Array2::from_shape_fn((60, 1), |(i, _)| (i % 3) as f64 * 10.0 + (i as f64 * 0.37).sin());
//! let base = GaussianMixture::params(1).backend(Backend::Cpu);
//! let sel = select_gmm(&x, 1..=5, &[CovarianceType::Diag], Criterion::Bic, &base)?;
//! assert_eq!(sel.best_row().n_components, 3);
//! # Ok::<(), emgpu::Error>(())
//! ```

use std::time::Instant;

use crate::data::{AsDataset, Dataset};
use crate::em::Control;
pub use crate::em::information_criteria;
use crate::em::reduce::{Reducer, agreed, reduce_stats};
use crate::error::{Error, Result};
use crate::models::gmm::distributed::check_distributed_data;
use crate::models::gmm::{CovarianceType, FittedGmm, GaussianMixture, GmmEngine, Init};

/// The information criterion that ranks the fits (lower is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Criterion {
    /// Bayesian information criterion, `−2·log L + p·ln N` (scikit-learn's `bic`).
    #[default]
    Bic,
    /// Akaike information criterion, `−2·log L + 2p` (scikit-learn's `aic`).
    Aic,
}

impl std::str::FromStr for Criterion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bic" => Ok(Criterion::Bic),
            "aic" => Ok(Criterion::Aic),
            other => Err(Error::param(format!(
                "unknown criterion {other:?}; use bic or aic"
            ))),
        }
    }
}

impl std::fmt::Display for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Criterion::Bic => "bic",
            Criterion::Aic => "aic",
        })
    }
}

/// One fit of a model selection.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionRow {
    /// K.
    pub n_components: usize,
    /// Covariance structure.
    pub covariance_type: CovarianceType,
    /// The fit's lower bound (mean log-likelihood of its last E-step).
    pub lower_bound: f64,
    /// BIC of the fitted model on the data.
    pub bic: f64,
    /// AIC of the fitted model on the data.
    pub aic: f64,
    /// Wall-clock seconds of the fit (all restarts and initializations).
    pub fit_seconds: f64,
    /// Iterations of the kept restart.
    pub n_iter: usize,
    /// Whether the kept restart converged.
    pub converged: bool,
}

impl SelectionRow {
    /// The value of `criterion` for this fit.
    pub fn criterion(&self, criterion: Criterion) -> f64 {
        match criterion {
            Criterion::Bic => self.bic,
            Criterion::Aic => self.aic,
        }
    }
}

/// The outcome of [`select_gmm`]: every fit, and the best model.
#[derive(Debug, Clone)]
pub struct Selection {
    /// One row per (covariance type, K), covariance types outermost, in the order given.
    pub rows: Vec<SelectionRow>,
    /// Index in `rows` of the best fit (the first of the lowest criterion).
    pub best: usize,
    /// The criterion that ranked the fits.
    pub criterion: Criterion,
    model: FittedGmm,
}

impl Selection {
    /// The row of the best fit.
    pub fn best_row(&self) -> &SelectionRow {
        &self.rows[self.best]
    }
    /// The best model.
    pub fn best_model(&self) -> &FittedGmm {
        &self.model
    }
    /// The best model, by value.
    pub fn into_model(self) -> FittedGmm {
        self.model
    }
}

/// Fits `base` with every K of `ks` and every covariance type of `covariance_types`, and picks
/// the lowest `criterion`. `base` gives every other setting (init method, restarts, tol, seed,
/// backend); its number of components and covariance type are replaced.
///
/// Errors before any fit: an empty `ks` or `covariance_types`, a K of 0 or above the number of
/// samples, an explicit-parameters init (it has one K), or any setting `base.fit` would refuse
/// (e.g. `n_init = 0`). A fit that fails (e.g. an ill-conditioned covariance) ends the selection
/// with its error.
pub fn select_gmm(
    x: &impl AsDataset,
    ks: impl IntoIterator<Item = usize>,
    covariance_types: &[CovarianceType],
    criterion: Criterion,
    base: &GaussianMixture,
) -> Result<Selection> {
    select_gmm_with_progress(x, ks, covariance_types, criterion, base, &mut |_| {})
}

/// [`select_gmm`], calling `on_row` after each fit.
pub fn select_gmm_with_progress(
    x: &impl AsDataset,
    ks: impl IntoIterator<Item = usize>,
    covariance_types: &[CovarianceType],
    criterion: Criterion,
    base: &GaussianMixture,
    on_row: &mut dyn FnMut(&SelectionRow),
) -> Result<Selection> {
    let data = x.as_dataset();
    data.validate_for("the Gaussian mixture")?;
    let (n, d) = (data.n_samples(), data.n_features());
    let (candidates, k_max) =
        check_candidates(ks, covariance_types, base, n, |gm| gm.validate(n, d))?;
    let mut state = base.init_state();
    // One engine per covariance type (built for the largest K), reused by every K of it.
    let mut engine: Option<(CovarianceType, Box<dyn GmmEngine + '_>)> = None;
    let mut rows = Vec::with_capacity(candidates.len());
    let (best, model) = select_best(&candidates, n, criterion, |&(cov, k)| {
        if engine.as_ref().is_none_or(|(c, _)| *c != cov) {
            engine = Some((cov, base.build_engine(&data, cov, k_max)?));
        }
        let Some((_, engine)) = engine.as_mut() else {
            return Err(Error::param("no engine was built"));
        };
        let gm = base.clone().with_shape(k, cov);
        let start = Instant::now();
        let model = gm.fit_engine_with(&data, engine.as_mut(), &mut state, &mut |_| {
            Control::Continue(())
        })?;
        let fit_seconds = start.elapsed().as_secs_f64();
        // The criteria on the training data: log L of the fitted parameters, one E-step on
        // the same engine.
        let log_likelihood = engine.e_step(model.prepared())?.log_likelihood;
        Ok(scored_row(
            model,
            (k, cov),
            log_likelihood,
            fit_seconds,
            n,
            &mut rows,
            on_row,
        ))
    })?;
    Ok(Selection {
        rows,
        best,
        criterion,
        model,
    })
}

/// The candidates `(covariance type, K)` of a selection over `n` samples, covariance types
/// outermost, and the largest K; an error for an empty or out-of-range `ks`, no covariance
/// type, an explicit-parameters init, or a candidate `check` refuses.
fn check_candidates(
    ks: impl IntoIterator<Item = usize>,
    covariance_types: &[CovarianceType],
    base: &GaussianMixture,
    n: usize,
    check: impl Fn(&GaussianMixture) -> Result<()>,
) -> Result<(Vec<(CovarianceType, usize)>, usize)> {
    let ks: Vec<usize> = ks.into_iter().collect();
    let Some(&k_max) = ks.iter().max() else {
        return Err(Error::param(
            "the range of numbers of components is empty; give at least one, e.g. 1..=10",
        ));
    };
    if ks.contains(&0) {
        return Err(Error::param(
            "the range of numbers of components contains 0; start it at 1",
        ));
    }
    if k_max > n {
        return Err(Error::param(format!(
            "the range of numbers of components goes up to {k_max} but the data has only {n} samples; use at most {n} components or more data"
        )));
    }
    if covariance_types.is_empty() {
        return Err(Error::param(
            "no covariance type to try; give at least one of full, tied, diag, spherical",
        ));
    }
    if let Init::Params(_) = base.init_method() {
        return Err(Error::param(
            "model selection needs an init method (kmeans, k-means++, random, random_from_data), not explicit parameters: they fix one number of components",
        ));
    }
    let candidates: Vec<(CovarianceType, usize)> = covariance_types
        .iter()
        .flat_map(|&cov| ks.iter().map(move |&k| (cov, k)))
        .collect();
    for &(cov, k) in &candidates {
        check(&base.clone().with_shape(k, cov))?;
    }
    Ok((candidates, k_max))
}

/// [`select_gmm_with_progress`] over the rows of every process of a distributed fit (see
/// [`crate::em::reduce`]): `data` holds this process's rows ([`Dataset::with_global_rows`]),
/// and every process runs the same sequence of fits
/// ([`GaussianMixture::fit_distributed`]'s, one engine per covariance type as
/// [`select_gmm`]), scores each by the log-likelihood of all N rows (one more E-step, its
/// statistics summed by `reducer`) and N, and returns the same selection. Each row's
/// `fit_seconds` is this process's. The starts and modes
/// [`GaussianMixture::fit_distributed`] refuses are refused; a failure on any process is
/// agreed on before the next collective call.
pub fn select_gmm_distributed<'a>(
    data: &'a Dataset<'a>,
    ks: impl IntoIterator<Item = usize>,
    covariance_types: &[CovarianceType],
    criterion: Criterion,
    base: &GaussianMixture,
    reducer: &dyn Reducer,
    on_row: &mut dyn FnMut(&SelectionRow),
) -> Result<Selection> {
    let (n, d) = (data.global_rows(), data.n_features());
    let checked = check_distributed_data(data).and_then(|_| {
        check_candidates(ks, covariance_types, base, n, |gm| {
            gm.check_distributed(n, d)
        })
    });
    let (candidates, k_max) = agreed(reducer, checked)?;
    let kmeans_tol = base.kmeans_tol_distributed(data, reducer)?;
    let mut state = base.init_state();
    let mut engine: Option<(CovarianceType, Box<dyn GmmEngine + 'a>)> = None;
    let mut rows = Vec::with_capacity(candidates.len());
    let (best, model) = select_best(&candidates, n, criterion, |&(cov, k)| {
        if engine.as_ref().is_none_or(|(c, _)| *c != cov) {
            // The previous engine is dropped before the next is built (one on the device).
            engine = None;
            engine = Some((cov, agreed(reducer, base.build_engine(data, cov, k_max))?));
        }
        let Some((_, engine)) = engine.as_mut() else {
            return Err(Error::param("no engine was built"));
        };
        let gm = base.clone().with_shape(k, cov);
        let start = Instant::now();
        let model = gm.fit_distributed_engine(
            data,
            engine.as_mut(),
            &mut state,
            reducer,
            kmeans_tol,
            &mut |_| {},
        )?;
        let fit_seconds = start.elapsed().as_secs_f64();
        // log L of all the rows under the fitted parameters: one E-step, summed.
        let local = engine.e_step(model.prepared());
        let log_likelihood = reduce_stats(reducer, local)?.log_likelihood;
        Ok(scored_row(
            model,
            (k, cov),
            log_likelihood,
            fit_seconds,
            n,
            &mut rows,
            on_row,
        ))
    })?;
    Ok(Selection {
        rows,
        best,
        criterion,
        model,
    })
}

/// The row of a fitted candidate of shape `(k, cov)`: its criteria from `log_likelihood` over `n`
/// rows, reported to `on_row` and kept in `rows`; and the candidate, scored.
fn scored_row(
    model: FittedGmm,
    (k, cov): (usize, CovarianceType),
    log_likelihood: f64,
    fit_seconds: f64,
    n: usize,
    rows: &mut Vec<SelectionRow>,
    on_row: &mut dyn FnMut(&SelectionRow),
) -> Scored<FittedGmm> {
    let n_parameters = model.params().n_parameters();
    let (bic, aic) = information_criteria(log_likelihood, n_parameters, n);
    let row = SelectionRow {
        n_components: k,
        covariance_type: cov,
        lower_bound: model.lower_bound(),
        bic,
        aic,
        fit_seconds,
        n_iter: model.n_iter(),
        converged: model.converged(),
    };
    on_row(&row);
    rows.push(row);
    Scored {
        fitted: model,
        log_likelihood,
        n_parameters,
    }
}

/// A fitted candidate as model selection sees it: the model, its total log-likelihood on the
/// data and its number of free parameters ([`crate::em::Model::n_parameters`]).
#[derive(Debug, Clone)]
pub struct Scored<F> {
    /// The fitted model.
    pub fitted: F,
    /// Its total log-likelihood on the `n` samples.
    pub log_likelihood: f64,
    /// Its number of free parameters.
    pub n_parameters: usize,
}

/// Model selection for any model: fits every candidate in order (`fit`), scores each by
/// `criterion` on `n` samples ([`information_criteria`]) and keeps the first of the lowest.
/// Returns the index of the best candidate and its fitted model. A failed fit ends the
/// selection with its error.
pub fn select_best<C, F>(
    candidates: &[C],
    n: usize,
    criterion: Criterion,
    mut fit: impl FnMut(&C) -> Result<Scored<F>>,
) -> Result<(usize, F)> {
    let mut best: Option<(usize, f64, F)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let scored = fit(c)?;
        let (bic, aic) = information_criteria(scored.log_likelihood, scored.n_parameters, n);
        let value = match criterion {
            Criterion::Bic => bic,
            Criterion::Aic => aic,
        };
        if best.as_ref().is_none_or(|(_, b, _)| value < *b) {
            best = Some((i, value, scored.fitted));
        }
    }
    let (i, _, fitted) = best.ok_or_else(|| Error::param("no candidate to select from"))?;
    Ok((i, fitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_best_keeps_the_first_lowest_criterion() {
        // (log-likelihood, parameters) per candidate; n = 100, ln 100 ≈ 4.605.
        let cands = [(-500.0, 2), (-480.0, 6), (-470.0, 10), (-480.0, 6)];
        let fit = |c: &(f64, usize)| {
            Ok(Scored {
                fitted: *c,
                log_likelihood: c.0,
                n_parameters: c.1,
            })
        };
        // BIC: 1009.2, 987.6, 986.1, 987.6 → the third; AIC: 1004, 972, 960, 972 → the third.
        assert_eq!(select_best(&cands, 100, Criterion::Bic, fit).unwrap().0, 2);
        let flat = [(-500.0, 2), (-500.0, 2)];
        assert_eq!(select_best(&flat, 100, Criterion::Aic, fit).unwrap().0, 0);
        let (bic, aic) = information_criteria(-480.0, 6, 100);
        assert!((bic - (960.0 + 6.0 * 100f64.ln())).abs() < 1e-12 && aic == 972.0);
        assert!(select_best(&[] as &[(f64, usize)], 100, Criterion::Bic, fit).is_err());
    }
}
