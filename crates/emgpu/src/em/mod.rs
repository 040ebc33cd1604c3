//! The EM core: the traits a model implements and the one EM loop that drives every model.
//!
//! A model plugs in with three pieces, all in its own folder under `models/`:
//!
//! - its **statistics** ([`Stats`]): the small, fixed-size, additive summary of an E-step over a
//!   set of points. Statistics of any partition of the data merge into the statistics of the whole
//!   (chunks, devices, processes), scale by a factor (stepwise EM) and flatten to one `f64` buffer
//!   (one readback, one allreduce);
//! - the **model** ([`Model`]): prepares parameters for an E-step (Cholesky factors, constants),
//!   runs the M-step from statistics, counts its free parameters (BIC/AIC) and says when a run has
//!   converged (by default: the lower bound changed by less than `tol`, as scikit-learn);
//! - its **E-step engines** ([`EStep`]): the statistics of all the data under prepared parameters,
//!   on the CPU and (feature `gpu`) the GPU; [`crate::device::choose`] is the one rule that picks
//!   the device.
//!
//! [`run_em`] is the loop, with scikit-learn's semantics:
//!
//! ```text
//! lower_bound = −∞
//! for n_iter in 1..=max_iter:
//!     prev = lower_bound
//!     stats = E-step(prepare(params))   # on the device; lower_bound from this E-step
//!     params = M-step(stats)            # on the host, f64
//!     lower_bound = stats.log_likelihood / stats.n_samples
//!     if model.converged(...): stop     # default |lower_bound − prev| < tol
//! ```
//!
//! `lower_bound` after an iteration is the mean log-likelihood under the parameters *before* that
//! iteration's M-step, exactly as `sklearn.mixture.GaussianMixture.lower_bound_`. With `tol = 0`
//! exactly `max_iter` iterations run. Restarts ([`best_of`]) and model selection
//! ([`crate::select`]) are generic over the model as well.

use std::ops::{ControlFlow, Range};
use std::time::Instant;

use crate::data::Dataset;
use crate::device::BackendReport;
use crate::device::cpu::map_chunks;
use crate::error::{Error, Result};

mod fit;
pub mod mixture;
pub mod online;
pub mod reduce;

pub use fit::{EmSettings, Fitted, fit_model};

/// Additive sufficient statistics of an E-step over a set of points.
///
/// `merge` must be exact addition: the statistics of any partition of the points, merged in any
/// order, equal (up to rounding) the statistics of all of them. The flat view is what crosses a
/// device or process boundary: `write_flat` then `read_flat` of the element-wise sum of two flat
/// buffers is `merge`.
pub trait Stats: Clone + Send {
    /// Adds `other` (statistics of other points under the same parameters) into `self`. The
    /// default adds the flat views; a type whose non-additive parts (shifts) must agree checks
    /// them in its own.
    fn merge(&mut self, other: &Self) {
        let mut a = self.to_flat();
        for (x, y) in a.iter_mut().zip(other.to_flat()) {
            *x += y;
        }
        self.read_flat(&a);
    }
    /// Multiplies every additive quantity by `factor` (stepwise EM's decay, sample weights). The
    /// default scales the whole flat view.
    fn scale(&mut self, factor: f64) {
        let mut a = self.to_flat();
        a.iter_mut().for_each(|x| *x *= factor);
        self.read_flat(&a);
    }
    /// Moves the non-additive parts of `self` (a Gaussian mixture's shifts) to those of `like`
    /// without changing what the statistics describe, so that `self.merge(like)` is valid:
    /// stepwise EM mixes statistics gathered under different parameters. The default does
    /// nothing (statistics that are additive through and through).
    fn rebase(&mut self, like: &Self) {
        let _ = like;
    }
    /// The total log-likelihood (or the model's objective) of the points summed.
    fn log_likelihood(&self) -> f64;
    /// The (possibly weighted) number of points summed.
    fn n_samples(&self) -> f64;
    /// Length of the flat `f64` view.
    fn flat_len(&self) -> usize;
    /// Writes the additive quantities into `out` (`flat_len()` values).
    fn write_flat(&self, out: &mut [f64]);
    /// Replaces the additive quantities by `src` (`flat_len()` values, as `write_flat` wrote them).
    fn read_flat(&mut self, src: &[f64]);

    /// The flat view as a new vector.
    fn to_flat(&self) -> Vec<f64> {
        let mut v = vec![0.0; self.flat_len()];
        self.write_flat(&mut v);
        v
    }
    /// The mean log-likelihood per point: the lower bound of the E-step that produced these.
    fn lower_bound(&self) -> f64 {
        self.log_likelihood() / self.n_samples()
    }
}

/// What the convergence test of [`Model::converged`] sees after an iteration.
#[derive(Debug)]
pub struct Step<'s, M: Model + ?Sized> {
    /// Iteration number, from 1.
    pub iteration: usize,
    /// This iteration's lower bound.
    pub lower_bound: f64,
    /// The previous iteration's lower bound (−∞ at the first).
    pub previous_lower_bound: f64,
    /// The statistics of this iteration's E-step.
    pub stats: &'s M::Stats,
    /// The parameters the E-step ran with.
    pub before: &'s M::Params,
    /// The parameters of this iteration's M-step.
    pub after: &'s M::Params,
}

/// A model fitted by EM: parameters, their preparation for an E-step, the M-step.
pub trait Model {
    /// The parameters (host, f64).
    type Params: Clone;
    /// The parameters as the E-step wants them (factors, constants), made once per iteration.
    type Prepared;
    /// The sufficient statistics of an E-step.
    type Stats: Stats;

    /// Prepares `params` for an E-step.
    fn prepare(&self, params: &Self::Params) -> Result<Self::Prepared>;
    /// The parameters that maximize the expected complete-data log-likelihood given `stats`.
    fn m_step(&self, stats: &Self::Stats) -> Result<Self::Params>;
    /// The number of free parameters (for BIC and AIC).
    fn n_parameters(&self) -> usize;

    /// Statistics of "one point" whose M-step gives `params` back: stepwise EM's starting
    /// statistics `s_0` with [`online::OnlineOptions::start_from_params`] (Cappé & Moulines:
    /// the statistics of the initial parameters). `None` (the default): stepwise EM starts from
    /// the statistics of its first mini-batch.
    fn params_as_stats(&self, params: &Self::Params) -> Option<Self::Stats> {
        let _ = params;
        None
    }

    /// What to suggest when the lower bound stops being finite (appended to the error; the
    /// default suggests only scaling the data).
    fn numerical_advice(&self) -> &'static str {
        "scale the data (values this large or small overflow)"
    }

    /// Whether the run has converged after `step`, and what was compared with `tol`. The default
    /// is scikit-learn's mixture rule: `|lower_bound − previous| < tol`.
    fn converged(&self, step: &Step<'_, Self>, tol: f64) -> (bool, f64) {
        let change = (step.lower_bound - step.previous_lower_bound).abs();
        (change < tol, change)
    }
}

/// An E-step engine: the statistics of all its data under prepared parameters. It is bound to one
/// data set for the length of a fit and holds what it prepared for it (uploaded buffers, chunk
/// plans), so that an iteration only sends the small parameters and reads back the statistics.
pub trait EStep<M: Model + ?Sized> {
    /// The statistics of one E-step over all the data under `prepared`.
    fn e_step(&mut self, prepared: &M::Prepared) -> Result<M::Stats>;
    /// What runs this engine.
    fn report(&self) -> BackendReport;
}

/// An E-step engine that can also run over a block of its rows: the mini-batches of stepwise
/// EM ([`online`]). `rows` is a range of the engine's data; an engine may accept only the ranges
/// it was built for (the GPU Gaussian-mixture engine: whole chunks) and refuse others with an
/// error.
pub trait RowsEStep<M: Model + ?Sized>: EStep<M> {
    /// The statistics of the points `rows` of the engine's data under `prepared`.
    fn e_step_rows(&mut self, prepared: &M::Prepared, rows: Range<usize>) -> Result<M::Stats>;
}

/// What a hook after an M-step ([`run_em_with`], [`online::run_online`]) is told.
#[derive(Debug, Clone, PartialEq)]
pub struct AfterMStep {
    /// The iteration (batch EM) or the mini-batch step (stepwise EM), from 1.
    pub step: usize,
    /// The rows whose E-step fed this M-step: `None` for all the data (batch EM), the
    /// mini-batch's range for stepwise EM.
    pub rows: Option<Range<usize>>,
}

/// A hook run after every M-step on the new parameters: it may change them (re-seeding a
/// collapsed component) and returns whether it did. A batch run does not stop at an iteration
/// whose parameters a hook changed (unless it is the last one `max_iter` allows).
pub type MStepHook<'h, P> = dyn FnMut(&AfterMStep, &mut P) -> Result<bool> + 'h;

/// Stopping rule of an EM run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    /// The threshold of the model's convergence test (for mixtures: the change of the lower
    /// bound). 0 runs `max_iter` iterations.
    pub tol: f64,
    /// At most this many iterations (E-step + M-step).
    pub max_iter: usize,
}

impl StopRule {
    /// Checks `tol` is finite and non-negative and `max_iter ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(Error::param(format!(
                "tol must be a finite number ≥ 0, got {}",
                self.tol
            )));
        }
        if self.max_iter == 0 {
            return Err(Error::param("max_iter must be at least 1"));
        }
        Ok(())
    }
}

/// Reported to the progress callback after every iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Which initialization (restart) this is, from 0.
    pub init: usize,
    /// Iteration number, from 1.
    pub iteration: usize,
    /// The lower bound of this iteration (mean log-likelihood per point; for k-means, minus the
    /// mean squared distance to the nearest center).
    pub lower_bound: f64,
    /// Change from the previous iteration's lower bound (∞ at the first).
    pub change: f64,
    /// What the model's convergence test compared with `tol` (mixtures: `|change|`; k-means: the
    /// squared shift of the centers).
    pub criterion: f64,
    /// Seconds of this iteration's E-step (on the device, with the readback).
    pub e_step_seconds: f64,
    /// Seconds of this iteration's M-step and the preparation of the next parameters (host).
    pub m_step_seconds: f64,
}

/// What a progress callback returns: go on, or stop the fit ([`Error::Cancelled`]).
pub type Control = ControlFlow<()>;

/// The outcome of one EM run from one initialization.
#[derive(Debug, Clone)]
pub struct EmRun<M: Model + ?Sized> {
    /// Parameters after the last M-step.
    pub params: M::Params,
    /// The last lower bound.
    pub lower_bound: f64,
    /// Lower bound of each iteration.
    pub lower_bound_trace: Vec<f64>,
    /// Iterations run.
    pub n_iter: usize,
    /// Whether the model's convergence test passed.
    pub converged: bool,
    /// The parameters the last E-step ran with, and its statistics.
    pub last: (M::Params, M::Stats),
}

/// Runs EM from `params` with `engine` until `model` says it converged or `rule.max_iter`
/// iterations ran. `init` numbers the restart in the progress reports; `progress` may stop the
/// fit by returning [`ControlFlow::Break`] (the fit then fails with [`Error::Cancelled`]).
pub fn run_em<M: Model + ?Sized>(
    model: &M,
    engine: &mut dyn EStep<M>,
    params: M::Params,
    rule: StopRule,
    init: usize,
    progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<EmRun<M>> {
    run_em_with(
        model,
        engine,
        params,
        rule,
        init,
        &mut |_, _| Ok(false),
        progress,
    )
}

/// [`run_em`] with `hook` run on the parameters of every M-step (see [`MStepHook`]); with a
/// hook that changes nothing it is [`run_em`].
pub fn run_em_with<M: Model + ?Sized>(
    model: &M,
    engine: &mut dyn EStep<M>,
    mut params: M::Params,
    rule: StopRule,
    init: usize,
    hook: &mut MStepHook<'_, M::Params>,
    progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<EmRun<M>> {
    rule.validate()?;
    let mut lower_bound = f64::NEG_INFINITY;
    let mut trace = Vec::with_capacity(rule.max_iter.min(10_000));
    let mut prepared = model.prepare(&params)?;
    let mut last = None;
    let mut converged = false;
    let mut n_iter = 0;
    for iteration in 1..=rule.max_iter {
        let t0 = Instant::now();
        let stats = engine.e_step(&prepared)?;
        let t1 = Instant::now();
        let lb = stats.lower_bound();
        if !lb.is_finite() {
            return Err(Error::Numerical(format!(
                "the log-likelihood became {lb} at iteration {iteration}; {}",
                model.numerical_advice()
            )));
        }
        let mut next = model.m_step(&stats)?;
        let changed = hook(
            &AfterMStep {
                step: iteration,
                rows: None,
            },
            &mut next,
        )?;
        let before = std::mem::replace(&mut params, next);
        let prev = std::mem::replace(&mut lower_bound, lb);
        trace.push(lb);
        n_iter = iteration;
        let (converged_now, criterion) = model.converged(
            &Step {
                iteration,
                lower_bound,
                previous_lower_bound: prev,
                stats: &stats,
                before: &before,
                after: &params,
            },
            rule.tol,
        );
        // Parameters a hook changed have not been through an E-step yet: go on.
        let done = converged_now && !changed;
        last = Some((before, stats));
        if !done && iteration < rule.max_iter {
            prepared = model.prepare(&params)?;
        }
        let t2 = Instant::now();
        let report = Progress {
            init,
            iteration,
            lower_bound,
            change: lower_bound - prev,
            criterion,
            e_step_seconds: (t1 - t0).as_secs_f64(),
            m_step_seconds: (t2 - t1).as_secs_f64(),
        };
        if progress(&report).is_break() {
            return Err(Error::Cancelled { iteration });
        }
        if done {
            converged = true;
            break;
        }
    }
    let last = last.ok_or_else(|| Error::param("max_iter must be at least 1"))?;
    Ok(EmRun {
        params,
        lower_bound,
        lower_bound_trace: trace,
        n_iter,
        converged,
        last,
    })
}

/// A progress callback that never stops the fit, from one that only observes.
pub fn observe(f: &mut dyn FnMut(&Progress)) -> impl FnMut(&Progress) -> Control + '_ {
    move |p| {
        f(p);
        Control::Continue(())
    }
}

/// EM from `n_init` starting points with one engine: restart `i` starts from `draw(i)` and runs
/// (a model whose initialization needs the engine itself, as the Gaussian mixture's k-means start
/// does, calls [`best_of`] and [`run_em`] directly)
/// [`run_em`]; the run with the highest lower bound is kept (the first of equal ones, as
/// scikit-learn). Returns it with every restart's final lower bound.
pub fn fit_restarts<M: Model + ?Sized>(
    model: &M,
    engine: &mut dyn EStep<M>,
    n_init: usize,
    rule: StopRule,
    mut draw: impl FnMut(usize) -> Result<M::Params>,
    progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<(EmRun<M>, Vec<f64>)> {
    best_of(
        n_init,
        |init| {
            let params = draw(init)?;
            run_em(model, &mut *engine, params, rule, init, progress)
        },
        |run: &EmRun<M>, best| run.lower_bound > best.lower_bound,
        |run| run.lower_bound,
    )
}

/// Restarts: runs `run(i)` for `i` in `0..n_init` and keeps the first run unless a later one is
/// `better` than the best so far (scikit-learn keeps the first of equal runs). Returns the best
/// run and every run's score (`score(run)`, in order).
pub fn best_of<R>(
    n_init: usize,
    mut run: impl FnMut(usize) -> Result<R>,
    better: impl Fn(&R, &R) -> bool,
    score: impl Fn(&R) -> f64,
) -> Result<(R, Vec<f64>)> {
    let mut best: Option<R> = None;
    let mut scores = Vec::with_capacity(n_init);
    for i in 0..n_init {
        let r = run(i)?;
        scores.push(score(&r));
        if best.as_ref().is_none_or(|b| better(&r, b)) {
            best = Some(r);
        }
    }
    let best = best.ok_or_else(|| Error::param("n_init must be at least 1"))?;
    Ok((best, scores))
}

/// `(BIC, AIC)` of a model with `n_parameters` free parameters whose total log-likelihood on `n`
/// samples is `log_likelihood`: `−2·log L + p·ln n` and `−2·log L + 2p` (scikit-learn's `bic` and
/// `aic`; lower is better). Every model's criteria come from here ([`Model::n_parameters`]).
pub fn information_criteria(log_likelihood: f64, n_parameters: usize, n: usize) -> (f64, f64) {
    let p = n_parameters as f64;
    (
        -2.0 * log_likelihood + p * (n as f64).ln(),
        -2.0 * log_likelihood + 2.0 * p,
    )
}

/// [`map_chunks`] whose per-chunk results are statistics, merged in chunk order (deterministic
/// whatever the number of threads); `empty` is the statistics of no point (returned for N = 0).
pub fn map_merge<S: Stats>(
    data: &Dataset,
    chunk_rows: usize,
    empty: S,
    f: impl Fn(usize, &[f64]) -> S + Sync + Send,
) -> Result<S> {
    Ok(map_chunks(data, chunk_rows, f)?
        .iter()
        .fold(empty, |mut acc, part| {
            acc.merge(part);
            acc
        }))
}
