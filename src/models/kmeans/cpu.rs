//! The k-means assignment on the CPU in f64, point by point: the reference implementation.
//!
//! The twin of a GPU assignment kernel and the oracle of the tests. It runs in parallel over chunks
//! of rows; chunk statistics are merged in chunk order, so a fit is reproducible bit for bit
//! whatever the number of threads.

use rayon::prelude::*;

use super::KMeansStats;
use crate::backend::FarPoint;
use crate::data::Dataset;

/// The label the engines hold for "not assigned yet" (every label differs from it).
pub const NO_LABEL: u32 = u32::MAX;

/// `‖a − b‖²`, with four partial sums (vectorizes; the rounding is that of a 4-way split sum).
#[inline]
pub fn sq_distance(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, ar) = a.split_at(a.len() - a.len() % 4);
    let (b4, br) = b.split_at(a4.len());
    for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        for l in 0..4 {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ar.iter().zip(br) {
        let t = x - y;
        s += t * t;
    }
    s
}

/// The nearest of `k` centers (`[k][D]`) to `x` and its squared distance; ties go to the lowest
/// index (as scikit-learn's strict `<` scan).
#[inline]
pub fn nearest_center(x: &[f64], centers: &[f64], k: usize) -> (usize, f64) {
    let d = x.len();
    let mut best = (0, sq_distance(x, &centers[..d]));
    for c in 1..k {
        let dist = sq_distance(x, &centers[c * d..(c + 1) * d]);
        if dist < best.1 {
            best = (c, dist);
        }
    }
    best
}

/// Assigns the rows of `x` (row-major f64) to their nearest center, writing `labels` and `dists`
/// (one per row; `labels` holds the previous assignment on entry, to count changes).
pub fn assign_chunk_reference(
    x: &[f64],
    centers: &[f64],
    n_clusters: usize,
    labels: &mut [u32],
    dists: &mut [f64],
) -> KMeansStats {
    let d = centers.len() / n_clusters;
    let mut stats = KMeansStats::zeros(n_clusters, d, centers);
    for ((row, label), dist) in x
        .chunks_exact(d)
        .zip(labels.iter_mut())
        .zip(dists.iter_mut())
    {
        let (c, sq) = nearest_center(row, centers, n_clusters);
        let changed = *label != c as u32;
        *label = c as u32;
        *dist = sq;
        stats.add_point(row, c, sq, changed);
    }
    stats
}

/// The whole assignment on the CPU: every point of `data`, in parallel over chunks of
/// `chunk_rows` rows, chunk statistics merged in order. `labels` and `dists` are `[N]`.
pub fn assign_reference(
    data: &Dataset,
    centers: &[f64],
    n_clusters: usize,
    chunk_rows: usize,
    labels: &mut [u32],
    dists: &mut [f64],
) -> KMeansStats {
    let d = data.n_features();
    let chunk_rows = chunk_rows.max(1);
    let parts: Vec<KMeansStats> = labels
        .par_chunks_mut(chunk_rows)
        .zip(dists.par_chunks_mut(chunk_rows))
        .enumerate()
        .map_init(Vec::new, |buf, (c, (l, dd))| {
            buf.resize(l.len() * d, 0.0);
            data.read_f64(c * chunk_rows, buf);
            assign_chunk_reference(buf, centers, n_clusters, l, dd)
        })
        .collect();
    let mut total = KMeansStats::zeros(n_clusters, d, centers);
    for part in &parts {
        total.merge(part);
    }
    total
}

/// The `n` largest of `dists` (at most all), by decreasing distance, ties by increasing index.
pub fn farthest_reference(labels: &[u32], dists: &[f64], n: usize) -> Vec<FarPoint> {
    let n = n.min(dists.len());
    if n == 0 {
        return Vec::new();
    }
    // Distances are finite and ≥ 0 (finite data, finite centers), so total_cmp orders them.
    let order = |a: &usize, b: &usize| dists[*b].total_cmp(&dists[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..dists.len()).collect();
    if n < idx.len() {
        idx.select_nth_unstable_by(n - 1, order);
        idx.truncate(n);
    }
    idx.sort_unstable_by(order);
    idx.into_iter()
        .map(|i| FarPoint {
            index: i,
            label: labels[i] as usize,
            sq_distance: dists[i],
        })
        .collect()
}
