//! Re-seeding of collapsed components (opt-in: [`GaussianMixture::reseed`](super::GaussianMixture::reseed)).
//!
//! A component whose weight falls below the threshold after an M-step (default
//! [`DEFAULT_RESEED_THRESHOLD`]; scikit-learn would keep it at a weight of about `10·eps / N`
//! with mean 0 and covariance `reg_covar`) is moved to the point the model explains worst:
//!
//! - **where**: the rows searched are those whose E-step fed the M-step (all the data in batch
//!   EM, the mini-batch in stepwise EM); their log-densities `log p(x)` under the new
//!   parameters are computed on the CPU in f64 (the blocked path, in blocks of
//!   [`SEARCH_ROWS`] rows: memory independent of N), and the `m` lowest (one per collapsed
//!   component, distinct rows) become the new means, the worst to the first collapsed
//!   component. This extra pass runs only at the steps where a component collapsed, on
//!   either backend (the GPU engines do not report per-point minima);
//! - **shape**: the covariance becomes the mean of the other components' covariances (tied:
//!   unchanged, it is shared);
//! - **weight**: `1/K`, then all weights are renormalized to sum to 1. (A weight near the
//!   threshold would leave the new component only its one point's worth of responsibility: it
//!   would fall below the threshold again at the next M-step and be moved again, forever.)
//!
//! Each move is recorded as a [`ReseedEvent`]. A component is moved at most
//! [`MAX_RESEEDS_PER_COMPONENT`] times in a run (no endless cycle where the data cannot hold K
//! components); after that it is left as scikit-learn leaves it. When no weight is below the
//! threshold nothing changes. The check runs after every M-step, the last included, so a
//! fitted model has no weight below the threshold unless a component used up its moves.

use serde::{Deserialize, Serialize};

use super::GmmParams;
use super::covariance::CovarianceType;
use super::cpu::PointOutputs;
use super::cpu::blocked::{BLOCKED_CHUNK_ROWS, point_outputs_blocked};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// The default weight below which a component counts as collapsed: 1e-5 (100 points of 10
/// million). Thresholds from 1e-6 to 1e-3 are accepted.
pub const DEFAULT_RESEED_THRESHOLD: f64 = 1e-5;

/// The accepted thresholds.
pub const RESEED_THRESHOLD_RANGE: (f64, f64) = (1e-6, 1e-3);

/// How many times one component may be re-seeded in a run.
pub const MAX_RESEEDS_PER_COMPONENT: usize = 3;

/// Rows whose log-densities are computed at once when searching for the worst-explained points.
pub const SEARCH_ROWS: usize = 65_536;

/// One re-seeding: which component moved where, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReseedEvent {
    /// The M-step after which it happened: the iteration (batch EM) or the mini-batch step
    /// (stepwise EM), from 1.
    pub step: usize,
    /// The component re-seeded.
    pub component: usize,
    /// Its weight before (below the threshold).
    pub weight: f64,
    /// The row of the data (0-based, in the whole dataset) that became its mean.
    pub row: usize,
    /// `log p(x)` of that row under the parameters before the move.
    pub log_likelihood: f64,
}

/// Checks `threshold` is in [`RESEED_THRESHOLD_RANGE`].
pub(crate) fn check_threshold(threshold: f64) -> Result<()> {
    let (lo, hi) = RESEED_THRESHOLD_RANGE;
    if threshold.is_finite() && (lo..=hi).contains(&threshold) {
        Ok(())
    } else {
        Err(Error::param(format!(
            "the re-seeding threshold must be between {lo:e} and {hi:e}, got {threshold}"
        )))
    }
}

/// Re-seeds every component of `params` whose weight is below `threshold` at the worst-explained
/// rows of `rows` (whose row 0 is row `row_offset` of the data); appends the events to `events`
/// and returns whether anything moved (see the module docs).
pub(crate) fn reseed(
    params: &mut GmmParams,
    rows: &Dataset,
    row_offset: usize,
    threshold: f64,
    step: usize,
    events: &mut Vec<ReseedEvent>,
) -> Result<bool> {
    let (k, d, cov) = (
        params.n_components(),
        params.n_features(),
        params.covariance_type(),
    );
    let moves = |c: usize| events.iter().filter(|e| e.component == c).count();
    let dead: Vec<usize> = (0..k)
        .filter(|&c| params.weights()[c] < threshold && moves(c) < MAX_RESEEDS_PER_COMPONENT)
        .collect();
    if dead.is_empty() || dead.len() == k || rows.n_samples() == 0 {
        return Ok(false);
    }
    let worst = worst_rows(params, rows, dead.len())?;
    let mut weights = params.weights().to_vec();
    let mut means = params.means().to_vec();
    let mut covs = params.covariances().to_vec();
    let live: Vec<usize> = (0..k).filter(|c| !dead.contains(c)).collect();
    let per = match cov {
        CovarianceType::Full => d * d,
        CovarianceType::Diag => d,
        CovarianceType::Spherical => 1,
        CovarianceType::Tied => 0,
    };
    let mut mean_cov = vec![0.0; per];
    for &c in &live {
        for (m, v) in mean_cov.iter_mut().zip(&covs[c * per..(c + 1) * per]) {
            *m += v / live.len() as f64;
        }
    }
    let mut x = vec![0.0; d];
    for (&c, &(row, log_px)) in dead.iter().zip(&worst) {
        rows.read_f64(row, &mut x)?;
        events.push(ReseedEvent {
            step,
            component: c,
            weight: weights[c],
            row: row_offset + row,
            log_likelihood: log_px,
        });
        means[c * d..(c + 1) * d].copy_from_slice(&x);
        covs[c * per..(c + 1) * per].copy_from_slice(&mean_cov);
        weights[c] = 1.0 / k as f64;
    }
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    *params = GmmParams::from_parts(cov, weights, means, covs, d);
    Ok(true)
}

/// The `m` rows of `rows` with the lowest `log p(x)` under `params` (distinct, lowest first),
/// with their log-densities.
fn worst_rows(params: &GmmParams, rows: &Dataset, m: usize) -> Result<Vec<(usize, f64)>> {
    let prepared = params.prepare()?;
    let n = rows.n_samples();
    let mut worst: Vec<(usize, f64)> = Vec::with_capacity(m + 1);
    let mut log_px = vec![0.0; SEARCH_ROWS.min(n)];
    let mut start = 0;
    while start < n {
        let end = (start + SEARCH_ROWS).min(n);
        let block = rows.row_range(start..end)?;
        let out = &mut log_px[..end - start];
        point_outputs_blocked(
            &block,
            &prepared,
            BLOCKED_CHUNK_ROWS,
            PointOutputs {
                log_px: Some(&mut *out),
                resp: None,
            },
        )?;
        for (i, &v) in out.iter().enumerate() {
            if worst.len() < m || v < worst[worst.len() - 1].1 {
                let at = worst.partition_point(|w| w.1 <= v);
                worst.insert(at, (start + i, v));
                worst.truncate(m);
            }
        }
        start = end;
    }
    Ok(worst)
}
