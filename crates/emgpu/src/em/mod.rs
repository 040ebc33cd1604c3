//! The generic EM driver, with scikit-learn's loop semantics.
//!
//! ```text
//! lower_bound = −∞
//! for n_iter in 1..=max_iter:
//!     prev = lower_bound
//!     stats = E-step(params)            # on the backend; lower_bound from this E-step
//!     params = M-step(stats)            # on the host, f64
//!     lower_bound = mean log-likelihood of that E-step
//!     if |lower_bound − prev| < tol: converged; stop
//! ```
//!
//! `lower_bound` after an iteration is the mean log-likelihood under the parameters *before* that
//! iteration's M-step, exactly as `sklearn.mixture.GaussianMixture.lower_bound_`. With `tol = 0`
//! exactly `max_iter` iterations run.

use crate::error::{Error, Result};

/// Stopping rule of an EM run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    /// Stop when the lower bound changes by less than this (absolute). 0 runs `max_iter` iterations.
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
    /// The lower bound of this iteration (mean log-likelihood per point).
    pub lower_bound: f64,
    /// Change from the previous iteration's lower bound (∞ at the first).
    pub change: f64,
}

/// The outcome of one EM run from one initialization.
#[derive(Debug, Clone)]
pub struct EmRun<P> {
    /// Parameters after the last M-step.
    pub params: P,
    /// The last lower bound.
    pub lower_bound: f64,
    /// Lower bound of each iteration.
    pub lower_bound_trace: Vec<f64>,
    /// Iterations run.
    pub n_iter: usize,
    /// Whether the change fell below `tol`.
    pub converged: bool,
}

/// Runs EM from `params`: `e_step` returns the statistics and their lower bound (mean
/// log-likelihood); `m_step` turns statistics into the next parameters.
pub fn run_em<P, S>(
    mut params: P,
    rule: StopRule,
    init: usize,
    mut e_step: impl FnMut(&P) -> Result<(S, f64)>,
    m_step: impl Fn(&S) -> Result<P>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<EmRun<P>> {
    rule.validate()?;
    let mut lower_bound = f64::NEG_INFINITY;
    let mut trace = Vec::with_capacity(rule.max_iter.min(10_000));
    let mut converged = false;
    let mut n_iter = 0;
    for iteration in 1..=rule.max_iter {
        let prev = lower_bound;
        let (stats, lb) = e_step(&params)?;
        if !lb.is_finite() {
            return Err(Error::Numerical(format!(
                "the log-likelihood became {lb} at iteration {iteration}; scale the data (values this large or small overflow) or increase reg_covar"
            )));
        }
        params = m_step(&stats)?;
        lower_bound = lb;
        trace.push(lb);
        n_iter = iteration;
        let change = lower_bound - prev;
        progress(&Progress {
            init,
            iteration,
            lower_bound,
            change,
        });
        if change.abs() < rule.tol {
            converged = true;
            break;
        }
    }
    Ok(EmRun {
        params,
        lower_bound,
        lower_bound_trace: trace,
        n_iter,
        converged,
    })
}
