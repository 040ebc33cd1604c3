//! The E-step on the CPU in f64, point by point: the reference implementation.
//!
//! This is the twin of the GPU kernels (same formulas, in f64) and the oracle of the tests. It runs
//! in parallel over chunks of rows; chunk statistics are merged in chunk order, so a fit is
//! reproducible bit for bit whatever the number of threads.

use rayon::prelude::*;

use crate::data::Dataset;
use crate::em::map_merge;
use crate::error::Result;
use crate::models::gmm::{GmmStats, Prepared};
use crate::numerics::log_sum_exp;

/// Rows per chunk of the reference path.
pub const REFERENCE_CHUNK_ROWS: usize = 4096;

/// Per-point results of an E-step over a range of rows.
pub(crate) struct PointOutputs<'a> {
    /// `log p(x_n)` per point, if wanted.
    pub log_px: Option<&'a mut [f64]>,
    /// Responsibilities `[n][K]` per point, if wanted.
    pub resp: Option<&'a mut [f64]>,
}

/// Statistics of the points in `x` (row-major, f64) under `p`, point by point.
pub fn chunk_stats_reference(x: &[f64], p: &Prepared) -> GmmStats {
    chunk_stats_reference_weighted(x, None, p)
}

/// [`chunk_stats_reference`] with a sample weight per row of `x` (`None`: all 1): each point's
/// responsibilities, log-density and count are multiplied by its weight.
pub fn chunk_stats_reference_weighted(x: &[f64], w: Option<&[f64]>, p: &Prepared) -> GmmStats {
    let (k, d) = (p.n_components, p.n_features);
    let mut stats = GmmStats::zeros(p.covariance_type, k, d, &p.means);
    let mut lj = vec![0.0; k];
    for (i, row) in x.chunks_exact(d).enumerate() {
        p.log_joint_point(row, &mut lj);
        // log-sum-exp over components: log p(x) = log Σ_k exp(log p(x, k)).
        let lpx = log_sum_exp(&lj);
        for v in lj.iter_mut() {
            *v = (*v - lpx).exp();
        }
        match w {
            None => stats.add_point(row, &lj, lpx),
            Some(w) => stats.add_weighted_point(row, &mut lj, lpx, w[i]),
        }
    }
    stats
}

/// The whole E-step on the CPU, reference path: statistics of every point (weighted by the
/// dataset's sample weights, if it has them).
pub fn e_step_reference(data: &Dataset, p: &Prepared, chunk_rows: usize) -> Result<GmmStats> {
    let empty = GmmStats::zeros(p.covariance_type, p.n_components, p.n_features, &p.means);
    let d = p.n_features;
    map_merge(data, chunk_rows, empty, |start, x| {
        chunk_stats_reference_weighted(x, data.weights_of(start, x.len() / d), p)
    })
}

/// A chunk index with its slices of the per-point outputs.
type ChunkJob<'a> = (usize, Option<&'a mut [f64]>, Option<&'a mut [f64]>);

/// Log-densities and/or responsibilities of every point of `data` (reference path).
pub(crate) fn point_outputs_reference(
    data: &Dataset,
    p: &Prepared,
    out: PointOutputs<'_>,
) -> Result<()> {
    let (n, k) = (data.n_samples(), p.n_components);
    let d = p.n_features;
    let chunk = REFERENCE_CHUNK_ROWS;
    let PointOutputs { log_px, resp } = out;
    let mut log_px_parts: Vec<&mut [f64]> = match log_px {
        Some(s) => s.chunks_mut(chunk).collect(),
        None => Vec::new(),
    };
    let mut resp_parts: Vec<&mut [f64]> = match resp {
        Some(s) => s.chunks_mut(chunk * k).collect(),
        None => Vec::new(),
    };
    let n_chunks = n.div_ceil(chunk);
    let mut jobs: Vec<ChunkJob<'_>> = Vec::with_capacity(n_chunks);
    let mut lp_iter = log_px_parts.drain(..);
    let mut r_iter = resp_parts.drain(..);
    for c in 0..n_chunks {
        jobs.push((c, lp_iter.next(), r_iter.next()));
    }
    jobs.into_par_iter().try_for_each_init(
        || (Vec::new(), vec![0.0; k]),
        |(buf, lj), (c, lp, r)| {
            let start = c * chunk;
            let rows = chunk.min(n - start);
            buf.resize(rows * d, 0.0);
            data.read_f64(start, buf)?;
            let mut lp = lp;
            let mut r = r;
            for (i, row) in buf.chunks_exact(d).enumerate() {
                p.log_joint_point(row, lj);
                let lpx = log_sum_exp(lj);
                if let Some(lp) = lp.as_deref_mut() {
                    lp[i] = lpx;
                }
                if let Some(r) = r.as_deref_mut() {
                    for (o, v) in r[i * k..(i + 1) * k].iter_mut().zip(lj.iter()) {
                        *o = (v - lpx).exp();
                    }
                }
            }
            Ok(())
        },
    )
}
