//! Stepwise (online) EM: the M-step runs after every mini-batch on statistics that forget the
//! past geometrically (Cappé & Moulines 2009, "On-line expectation–maximization algorithm for
//! latent data models"; Liang & Klein 2009, "Online EM for unsupervised models").
//!
//! # The algorithm
//! The rows are cut into mini-batches: contiguous blocks of `batch_size` rows (the last may be
//! shorter), `n_batches = ⌈N / batch_size⌉`. Each pass visits every mini-batch once, in an order
//! drawn afresh for every pass (see [`pass_orders`]). With `t` counting mini-batches from 0
//! across passes:
//!
//! ```text
//! s_b   = E-step of mini-batch b under the current parameters, scaled by 1 / n_b
//!         (per-point means, so batches of different sizes mix consistently)
//! η_t   = (t + 2)^(−α)                      0.5 < α ≤ 1: Σ η = ∞, Σ η² < ∞
//! s     ← (1 − η_t)·s + η_t·s_b             s starts as s_b of the first mini-batch (below)
//! θ     ← M-step(s)                         then the hook (re-seeding), if any
//! ```
//!
//! **The start.** Cappé and Moulines start from `s_0` = the statistics of the initial
//! parameters. By default that is estimated on the first mini-batch: `s_0` = the statistics of
//! the first mini-batch under the initial parameters, so the first update is
//! `s = (1 − η_0)·s_0 + η_0·s_b = s_b` whatever `η_0`, and the formula above holds at every `t`
//! as written. With [`OnlineOptions::start_from_params`], `s_0` is instead the statistics whose
//! M-step gives the initial parameters back ([`Model::params_as_stats`]: one point's worth of
//! weights, means and covariances), and the first update keeps `1 − 2^−α` of them (37 % at
//! α = 0.6). That keeps a component alive when the first mini-batch holds none of its points
//! (rows stored sorted by cluster), but a poor start then lingers: on the 10M × 16 × 16
//! benchmark, 2 passes end 4e-3 (relative) below the batch optimum instead of 6e-6.
//!
//! Mini-batches are contiguous rows, shuffled as blocks: data stored in a meaningful order
//! (sorted by time or by class) give mini-batches that are not samples of the whole, and
//! stepwise EM then converges more slowly; shuffle such files once beforehand.
//!
//! **Scale.** `s` is a per-point mean, so the M-step sees statistics of "one point". Models
//! whose M-step depends only on ratios of statistics (a Gaussian mixture's weights `nk / Σ nk`,
//! means, covariances) give the same parameters as from the sums. (The Gaussian mixture adds
//! `10·eps` to every `nk` as scikit-learn; on per-point statistics that guard is N times larger
//! relative to `nk` than in a batch fit, still ~1e-15 of a component holding any point.)
//! Weighted statistics flow through unchanged: `n_b` is then the batch's sum of weights.
//!
//! **The result.** After the last pass one more E-step over all the data (the *evaluation
//! pass*) gives the reported lower bound: the full-data mean log-likelihood of the final
//! parameters, what scoring the fitted model gives. With
//! [`OnlineOptions::evaluate_every_pass`] the full-data lower bound is computed after every
//! pass (P evaluation passes instead of 1), which is what a plot of the lower bound per pass
//! needs.
//!
//! The driver is generic over the model: an engine that can run an E-step over a block of rows
//! ([`RowsEStep`]) is all it needs.

use std::ops::Range;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{AfterMStep, Control, MStepHook, Model, Progress, RowsEStep, Stats};
use crate::error::{Error, Result};

/// The settings of stepwise EM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnlineOptions {
    /// Rows per mini-batch (the last may be shorter).
    pub batch_size: usize,
    /// α of the step sizes `η_t = (t + 2)^(−α)`, `0.5 < α ≤ 1`.
    pub decay: f64,
    /// Passes over the data (each visits every mini-batch once).
    pub passes: usize,
    /// Compute the full-data lower bound after every pass (one E-step over all the data each),
    /// not only after the last.
    pub evaluate_every_pass: bool,
    /// Start from the statistics of the initial parameters ([`Model::params_as_stats`]) rather
    /// than from those of the first mini-batch (see the module docs).
    pub start_from_params: bool,
}

impl Default for OnlineOptions {
    /// Batches of 100 000 rows, α = 0.6, 2 passes, one evaluation pass at the end, starting from
    /// the first mini-batch.
    fn default() -> Self {
        Self {
            batch_size: 100_000,
            decay: 0.6,
            passes: 2,
            evaluate_every_pass: false,
            start_from_params: false,
        }
    }
}

impl OnlineOptions {
    /// Checks `batch_size ≥ 1`, `0.5 < decay ≤ 1` and `passes ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::param("the batch size must be at least 1"));
        }
        if !(self.decay > 0.5 && self.decay <= 1.0) {
            return Err(Error::param(format!(
                "the decay α of stepwise EM must satisfy 0.5 < α ≤ 1 (step sizes (t + 2)^−α), got {}",
                self.decay
            )));
        }
        if self.passes == 0 {
            return Err(Error::param("the number of passes must be at least 1"));
        }
        Ok(())
    }

    /// Number of mini-batches of `n` rows.
    pub fn n_batches(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size.max(1))
    }

    /// The rows of mini-batch `b` of `n` rows.
    pub fn batch_rows(&self, b: usize, n: usize) -> Range<usize> {
        let bs = self.batch_size.max(1);
        (b * bs).min(n)..((b + 1) * bs).min(n)
    }

    /// How many full-data E-steps a run of these options makes: `passes` with
    /// [`OnlineOptions::evaluate_every_pass`], else 1.
    pub fn evaluation_passes(&self) -> usize {
        if self.evaluate_every_pass {
            self.passes
        } else {
            1
        }
    }
}

/// The step size of mini-batch step `t` (from 0 across passes): `η_t = (t + 2)^(−decay)`.
pub fn step_size(t: usize, decay: f64) -> f64 {
    (t as f64 + 2.0).powf(-decay)
}

/// The order in which each of `passes` passes visits `n_batches` mini-batches: one
/// `ChaCha8Rng` seeded with `seed` on its stream 1 (stream 0 is the initialization's), and for
/// every pass in turn a Fisher–Yates shuffle of `0..n_batches` drawn from it (`rand`'s
/// `SliceRandom::shuffle`). The same seed gives the same orders on every machine and backend.
pub fn pass_orders(n_batches: usize, passes: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    (0..passes)
        .map(|_| {
            let mut order: Vec<usize> = (0..n_batches).collect();
            order.shuffle(&mut rng);
            order
        })
        .collect()
}

/// The outcome of one stepwise EM run.
#[derive(Debug, Clone)]
pub struct OnlineRun<M: Model + ?Sized> {
    /// Parameters after the last M-step (and hook).
    pub params: M::Params,
    /// The full-data mean log-likelihood of `params` (the evaluation pass).
    pub lower_bound: f64,
    /// The full-data lower bound after each evaluated pass: every pass with
    /// [`OnlineOptions::evaluate_every_pass`], else only the last.
    pub pass_lower_bounds: Vec<f64>,
    /// The pass (from 1) of each entry of `pass_lower_bounds`.
    pub evaluated_passes: Vec<usize>,
    /// Wall seconds from the start of the run to the end of each entry's pass (evaluation
    /// passes not counted).
    pub pass_seconds: Vec<f64>,
    /// Mini-batch steps (M-steps) run.
    pub n_steps: usize,
    /// Full-data E-steps run (evaluation passes).
    pub evaluation_passes: usize,
}

/// Runs stepwise EM from `params` over the `n` rows of `engine` (see the module docs).
/// `seed` draws the orders of the mini-batches ([`pass_orders`]); `hook` runs on the parameters
/// of every M-step with the mini-batch's rows; `progress` is called after every mini-batch
/// (`iteration`: the step from 1; `lower_bound`: the mini-batch's mean log-likelihood under the
/// parameters it ran with; `criterion`: `η_t`) and may stop the run ([`Error::Cancelled`]).
#[allow(clippy::too_many_arguments)]
pub fn run_online<M, E>(
    model: &M,
    engine: &mut E,
    n: usize,
    mut params: M::Params,
    options: &OnlineOptions,
    seed: u64,
    init: usize,
    hook: &mut MStepHook<'_, M::Params>,
    progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<OnlineRun<M>>
where
    M: Model + ?Sized,
    E: RowsEStep<M> + ?Sized,
{
    options.validate()?;
    if n == 0 {
        return Err(Error::param("stepwise EM needs at least one row"));
    }
    let start = Instant::now();
    let n_batches = options.n_batches(n);
    let orders = pass_orders(n_batches, options.passes, seed);
    let mut s: Option<M::Stats> = if options.start_from_params {
        model.params_as_stats(&params)
    } else {
        None
    };
    let mut t = 0usize;
    let mut prev_lb = f64::NEG_INFINITY;
    // Seconds spent in evaluation passes (left out of `pass_seconds`).
    let mut evaluating = 0.0;
    let mut run = OnlineRun::<M> {
        params: params.clone(),
        lower_bound: f64::NAN,
        pass_lower_bounds: Vec::new(),
        evaluated_passes: Vec::new(),
        pass_seconds: Vec::new(),
        n_steps: 0,
        evaluation_passes: 0,
    };
    for (pass, order) in orders.iter().enumerate() {
        for &b in order {
            let rows = options.batch_rows(b, n);
            let t0 = Instant::now();
            let prepared = model.prepare(&params)?;
            let mut sb = engine.e_step_rows(&prepared, rows.clone())?;
            let t1 = Instant::now();
            if sb.n_samples() == 0.0 {
                // A mini-batch whose sample weights are all zero carries no information.
                continue;
            }
            let lb = sb.lower_bound();
            if !lb.is_finite() {
                return Err(Error::Numerical(format!(
                    "the log-likelihood of the mini-batch of rows {}..{} became {lb} at step {}; {}",
                    rows.start,
                    rows.end,
                    t + 1,
                    model.numerical_advice()
                )));
            }
            let weight = sb.n_samples();
            if weight > 0.0 {
                sb.scale(1.0 / weight);
            }
            let eta = step_size(t, options.decay);
            s = Some(match s.take() {
                None => sb,
                Some(mut acc) => {
                    acc.rebase(&sb);
                    acc.scale(1.0 - eta);
                    sb.scale(eta);
                    acc.merge(&sb);
                    acc
                }
            });
            let Some(acc) = s.as_ref() else {
                unreachable!("set above")
            };
            params = model.m_step(acc)?;
            hook(
                &AfterMStep {
                    step: t + 1,
                    rows: Some(rows),
                },
                &mut params,
            )?;
            let t2 = Instant::now();
            t += 1;
            let report = Progress {
                init,
                iteration: t,
                lower_bound: lb,
                change: lb - prev_lb,
                criterion: eta,
                e_step_seconds: (t1 - t0).as_secs_f64(),
                m_step_seconds: (t2 - t1).as_secs_f64(),
            };
            prev_lb = lb;
            if progress(&report).is_break() {
                return Err(Error::Cancelled { iteration: t });
            }
        }
        let last = pass + 1 == options.passes;
        if options.evaluate_every_pass || last {
            let seconds = start.elapsed().as_secs_f64() - evaluating;
            let t_eval = Instant::now();
            let full = engine.e_step(&model.prepare(&params)?)?;
            evaluating += t_eval.elapsed().as_secs_f64();
            let lb = full.lower_bound();
            if !lb.is_finite() {
                return Err(Error::Numerical(format!(
                    "the full-data log-likelihood after pass {} is {lb}; {}",
                    pass + 1,
                    model.numerical_advice()
                )));
            }
            run.pass_lower_bounds.push(lb);
            run.evaluated_passes.push(pass + 1);
            run.pass_seconds.push(seconds);
            run.evaluation_passes += 1;
            run.lower_bound = lb;
        }
    }
    run.params = params;
    run.n_steps = t;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_sizes_follow_the_formula() {
        assert_eq!(step_size(0, 0.6), 2f64.powf(-0.6));
        assert_eq!(step_size(8, 1.0), 0.1);
    }

    #[test]
    fn orders_are_permutations_fixed_by_the_seed() {
        let a = pass_orders(50, 3, 7);
        assert_eq!(a, pass_orders(50, 3, 7));
        assert_ne!(a, pass_orders(50, 3, 8));
        assert_ne!(a[0], a[1]);
        for o in &a {
            let mut s = o.clone();
            s.sort_unstable();
            assert_eq!(s, (0..50).collect::<Vec<_>>());
        }
    }

    #[test]
    fn batches_cover_the_rows_once() {
        let o = OnlineOptions {
            batch_size: 4,
            ..OnlineOptions::default()
        };
        assert_eq!(o.n_batches(10), 3);
        assert_eq!(o.batch_rows(2, 10), 8..10);
        for bad in [0.5, 1.01, f64::NAN] {
            let o = OnlineOptions { decay: bad, ..o };
            assert!(o.validate().is_err());
        }
    }
}
