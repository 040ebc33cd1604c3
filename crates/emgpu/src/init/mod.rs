//! Initialization: k-means++ seeding, random rows, and the starting parameters of a Gaussian
//! mixture from responsibilities, with scikit-learn's methods.
//!
//! Every random choice draws from one seeded ChaCha8 stream, in a fixed order, and every parallel
//! pass works on chunks of a fixed number of rows merged in chunk order: the same seed gives the
//! same result whatever the number of threads.
//!
//! | scikit-learn                                   | here                                   |
//! |------------------------------------------------|----------------------------------------|
//! | `GaussianMixture(init_params="kmeans")`        | [`Init::Kmeans`](crate::Init::Kmeans)  |
//! | `GaussianMixture(init_params="k-means++")`     | [`Init::KMeansPlusPlus`](crate::Init::KMeansPlusPlus) |
//! | `GaussianMixture(init_params="random")`        | [`Init::Random`](crate::Init::Random)  |
//! | `GaussianMixture(init_params="random_from_data")` | [`Init::RandomFromData`](crate::Init::RandomFromData) |
//! | `sklearn.cluster.kmeans_plusplus`              | [`kmeans_plusplus`]                    |

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::{AsDataset, Dataset};
use crate::device::cpu::map_chunks;
use crate::em::reduce::{Reducer, agreed};
use crate::error::{Error, Result};
use crate::numerics::sq_distance;

/// Rows per chunk of every initialization pass. Fixed (not the engine's chunk size) so that a
/// seed gives the same initialization whatever the backend options.
pub const INIT_CHUNK_ROWS: usize = 4096;

/// Column means and population variances (numpy's `mean(axis=0)`, `var(axis=0)`), two passes.
pub fn column_mean_var(data: &Dataset) -> Result<(Vec<f64>, Vec<f64>)> {
    let (n, d) = (data.n_samples(), data.n_features());
    let sums = map_chunks(data, INIT_CHUNK_ROWS, |_, x| {
        let mut s = vec![0.0; d];
        for row in x.chunks_exact(d) {
            s.iter_mut().zip(row).for_each(|(a, v)| *a += v);
        }
        s
    })?;
    let mut mean = vec![0.0; d];
    for s in &sums {
        mean.iter_mut().zip(s).for_each(|(a, v)| *a += v);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let sq = map_chunks(data, INIT_CHUNK_ROWS, |_, x| {
        let mut s = vec![0.0; d];
        for row in x.chunks_exact(d) {
            for ((a, v), m) in s.iter_mut().zip(row).zip(&mean) {
                *a += (v - m) * (v - m);
            }
        }
        s
    })?;
    let mut var = vec![0.0; d];
    for s in &sq {
        var.iter_mut().zip(s).for_each(|(a, v)| *a += v);
    }
    var.iter_mut().for_each(|v| *v /= n as f64);
    Ok((mean, var))
}

/// scikit-learn's `_tolerance`: `tol` times the mean of the features' variances (0 when `tol` is 0).
pub fn tolerance_from_variances(var: &[f64], tol: f64) -> f64 {
    if tol == 0.0 {
        0.0
    } else {
        tol * var.iter().sum::<f64>() / var.len() as f64
    }
}

/// Centers chosen by k-means++ and the rows they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansPlusPlusSeeds {
    /// The seeds, `[K, D]`.
    pub centers: Array2<f64>,
    /// The row of each seed in the data (`centers[i] == x[indices[i]]`).
    pub indices: Vec<usize>,
}

/// Greedy k-means++ seeding exactly as scikit-learn's `kmeans_plusplus`: the first center is a
/// uniformly random point; each next one is the best of `2 + ⌊ln K⌋` candidates drawn with
/// probability proportional to the squared distance to the nearest center so far, the best being
/// the one that lowers the potential (the sum of those squared distances) the most. The random
/// numbers come from a ChaCha8 stream seeded with `seed`, so the seeds differ from
/// scikit-learn's, not their distribution. With sample weights (a weighted [`Dataset`]) every
/// probability and potential is weighted as scikit-learn's `kmeans_plusplus(sample_weight=w)`:
/// the first center is drawn with probability `∝ w`, candidates `∝ w·D²`, potentials `Σ w·D²`.
pub fn kmeans_plusplus(
    x: &impl AsDataset,
    n_clusters: usize,
    seed: u64,
) -> Result<KMeansPlusPlusSeeds> {
    let data = x.as_dataset();
    data.validate_for("k-means++")?;
    check_k(n_clusters, data.n_samples())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (centers, indices) = kmeans_plusplus_rng(&data, n_clusters, &mut rng)?;
    let centers = Array2::from_shape_vec((n_clusters, data.n_features()), centers)
        .map_err(|e| Error::Numerical(format!("k-means++ centers: {e}")))?;
    Ok(KMeansPlusPlusSeeds { centers, indices })
}

/// `1 ≤ k ≤ n`, with the crate's errors.
pub fn check_k(k: usize, n: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::param("the number of clusters must be at least 1"));
    }
    if k > n {
        return Err(Error::TooManyComponents {
            n_components: k,
            n_samples: n,
        });
    }
    Ok(())
}

/// Sets `closest[i] = min(closest[i], ‖x_i − c‖²)` (or `= ‖x_i − c‖²` when `first`) and returns
/// the sum of `w_i · closest[i]` (`w` the sample weights, 1 without) over each chunk of
/// [`INIT_CHUNK_ROWS`] rows, in chunk order.
fn update_closest(data: &Dataset, closest: &mut [f64], c: &[f64], first: bool) -> Result<Vec<f64>> {
    let d = data.n_features();
    closest
        .par_chunks_mut(INIT_CHUNK_ROWS)
        .enumerate()
        .map_init(Vec::new, |buf, (ci, cl)| {
            buf.resize(cl.len() * d, 0.0);
            data.read_f64(ci * INIT_CHUNK_ROWS, buf)?;
            let weights = data.weights_of(ci * INIT_CHUNK_ROWS, cl.len());
            let mut sum = 0.0;
            for (i, (row, v)) in buf.chunks_exact(d).zip(cl.iter_mut()).enumerate() {
                let dist = sq_distance(row, c);
                *v = if first { dist } else { v.min(dist) };
                sum += weight_at(weights, i) * *v;
            }
            Ok(sum)
        })
        .collect()
}

/// `w[i]`, or 1 without weights (`x · 1.0` is `x` exactly: the unweighted sums are unchanged).
#[inline]
fn weight_at(w: Option<&[f64]>, i: usize) -> f64 {
    w.map_or(1.0, |w| w[i])
}

/// numpy's `searchsorted(cumsum(w · closest), v)` (side "left": the first row whose cumulative
/// sum reaches `v`; `w` the sample weights, 1 without), using the chunk sums to skip whole
/// chunks, clipped to the last row.
fn search_cumsum(closest: &[f64], w: Option<&[f64]>, chunk_sums: &[f64], v: f64) -> usize {
    let mut acc = 0.0;
    for (ci, &s) in chunk_sums.iter().enumerate() {
        if acc + s >= v {
            let start = ci * INIT_CHUNK_ROWS;
            let end = (start + INIT_CHUNK_ROWS).min(closest.len());
            let mut run = acc;
            for (i, c) in closest[start..end].iter().enumerate() {
                run += weight_at(w, start + i) * c;
                if run >= v {
                    return start + i;
                }
            }
        }
        acc += s;
    }
    closest.len() - 1
}

/// k-means++ on `data` from `rng` (see [`kmeans_plusplus`]): centers `[K][D]` and their rows.
/// `1 ≤ k ≤ N` is the caller's to check.
pub fn kmeans_plusplus_rng(
    data: &Dataset,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let (n, d) = (data.n_samples(), data.n_features());
    // scikit-learn: n_local_trials = 2 + int(np.log(n_clusters)).
    let trials = 2 + (k as f64).ln() as usize;
    let mut centers = vec![0.0; k * d];
    let mut indices = Vec::with_capacity(k);
    let weights = data.sample_weights();
    let first = match weights {
        None => rng.random_range(0..n),
        // np.random.choice(n, p=w / Σw): the first row whose cumulative weight passes u·Σw.
        Some(w) => {
            let sums: Vec<f64> = w.chunks(INIT_CHUNK_ROWS).map(|c| c.iter().sum()).collect();
            let ones = vec![1.0; n];
            let total: f64 = sums.iter().sum();
            let u = rng.random::<f64>() * total;
            // The first row of positive weight whose cumulative sum exceeds u.
            let i = search_cumsum(&ones, Some(w), &sums, u);
            (i..n).find(|&j| w[j] > 0.0).unwrap_or(i)
        }
    };
    data.read_f64(first, &mut centers[..d])?;
    indices.push(first);
    let mut closest = vec![0.0; n];
    let mut chunk_sums = update_closest(data, &mut closest, &centers[..d], true)?;
    let mut cand = vec![0.0; trials * d];
    for c in 1..k {
        let potential: f64 = chunk_sums.iter().sum();
        let ids: Vec<usize> = (0..trials)
            .map(|_| {
                search_cumsum(
                    &closest,
                    weights,
                    &chunk_sums,
                    rng.random::<f64>() * potential,
                )
            })
            .collect();
        for (t, &i) in ids.iter().enumerate() {
            data.read_f64(i, &mut cand[t * d..(t + 1) * d])?;
        }
        // The potential after adding each candidate, summed per chunk and then in chunk order.
        let parts: Vec<Vec<f64>> = closest
            .par_chunks(INIT_CHUNK_ROWS)
            .enumerate()
            .map_init(Vec::new, |buf, (ci, cl)| {
                buf.resize(cl.len() * d, 0.0);
                data.read_f64(ci * INIT_CHUNK_ROWS, buf)?;
                let w = data.weights_of(ci * INIT_CHUNK_ROWS, cl.len());
                let mut pot = vec![0.0; trials];
                for (i, (row, &v)) in buf.chunks_exact(d).zip(cl).enumerate() {
                    let wi = weight_at(w, i);
                    for (t, p) in pot.iter_mut().enumerate() {
                        *p += wi * v.min(sq_distance(row, &cand[t * d..(t + 1) * d]));
                    }
                }
                Ok(pot)
            })
            .collect::<Result<_>>()?;
        let mut pots = vec![0.0; trials];
        for p in &parts {
            pots.iter_mut().zip(p).for_each(|(a, v)| *a += v);
        }
        // np.argmin: the first smallest.
        let best = (1..trials).fold(0, |b, t| if pots[t] < pots[b] { t } else { b });
        centers[c * d..(c + 1) * d].copy_from_slice(&cand[best * d..(best + 1) * d]);
        indices.push(ids[best]);
        chunk_sums = update_closest(data, &mut closest, &centers[c * d..(c + 1) * d], false)?;
    }
    Ok((centers, indices))
}

/// `k` distinct rows drawn uniformly (scikit-learn's `init="random"` of `KMeans` and
/// `init_params="random_from_data"` of `GaussianMixture`): the rows `[K][D]` and their indices.
/// With sample weights, rows are drawn without replacement with probability `∝ w` (as
/// scikit-learn's `KMeans(init="random")` with `sample_weight`); at least `k` rows then need a
/// positive weight.
pub fn random_rows(
    data: &Dataset,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let d = data.n_features();
    let picks = match data.sample_weights() {
        None => rand::seq::index::sample(rng, data.n_samples(), k).into_vec(),
        Some(w) => {
            let mut picks = rand::seq::index::sample_weighted(rng, w.len(), |i| w[i], k)
                .map_err(|e| Error::param(format!("drawing weighted rows: {e}")))?
                .into_vec();
            if picks.len() < k {
                return Err(Error::param(format!(
                    "only {} rows have a positive sample weight, fewer than the {k} clusters",
                    picks.len()
                )));
            }
            // In row order: the draw's order is arbitrary.
            picks.sort_unstable();
            picks
        }
    };
    let mut rows = vec![0.0; k * d];
    for (c, &i) in picks.iter().enumerate() {
        data.read_f64(i, &mut rows[c * d..(c + 1) * d])?;
    }
    Ok((rows, picks))
}

/// [`column_mean_var`] of the rows of every process of a distributed fit (`data` holds this
/// process's rows, [`Dataset::with_global_rows`]): the column sums and then the squared
/// deviations are summed across the processes with `reducer`. With one process it is
/// [`column_mean_var`].
pub fn column_mean_var_reduced(
    data: &Dataset,
    reducer: &dyn Reducer,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (n, d) = (data.global_rows() as f64, data.n_features());
    let sum_chunks = |mean: Option<&[f64]>| -> Result<Vec<f64>> {
        // A failed read on one process is agreed on before the sum (no process is left in it).
        let parts = map_chunks(data, INIT_CHUNK_ROWS, |_, x| {
            let mut s = vec![0.0; d];
            for row in x.chunks_exact(d) {
                match mean {
                    None => s.iter_mut().zip(row).for_each(|(a, v)| *a += v),
                    Some(m) => {
                        for ((a, v), m) in s.iter_mut().zip(row).zip(m) {
                            *a += (v - m) * (v - m);
                        }
                    }
                }
            }
            s
        });
        let parts = agreed(reducer, parts)?;
        let mut total = vec![0.0; d];
        for s in &parts {
            total.iter_mut().zip(s).for_each(|(a, v)| *a += v);
        }
        reducer.sum(&mut total)?;
        Ok(total)
    };
    let mut mean = sum_chunks(None)?;
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = sum_chunks(Some(&mean))?;
    var.iter_mut().for_each(|v| *v /= n);
    Ok((mean, var))
}

/// Global row `row` of a distributed dataset on every process: the process holding it reads
/// it (the read agreed on), the others receive it ([`Reducer::broadcast`] by a sum where only
/// it contributes).
fn global_row(data: &Dataset, reducer: &dyn Reducer, row: usize, out: &mut [f64]) -> Result<()> {
    let off = data.global_offset();
    out.iter_mut().for_each(|v| *v = 0.0);
    let read = if (off..off + data.n_samples()).contains(&row) {
        data.read_f64(row - off, out)
    } else {
        Ok(())
    };
    agreed(reducer, read)?;
    reducer.sum(out)
}

/// [`kmeans_plusplus_rng`] over the rows of every process of a distributed fit (unweighted):
/// every process draws the same random numbers; each draw is located in the process whose
/// rows hold it (from every process's potential, in rank order) and the drawn rows, then the
/// candidates' potentials, are summed across processes. The centers are those of a
/// one-process run up to the rounding of the potentials' sums (a draw falls on another row only
/// if it lands within that rounding of a boundary of the cumulative sum). Returns the centers
/// `[K][D]` and their global rows. Every step a process computes alone (reading its rows, the
/// distances to a new center, a drawn candidate, the candidates' potentials) is agreed on
/// before the next collective call, so that a failure on one process is an error on all.
pub fn kmeans_plusplus_reduced(
    data: &Dataset,
    k: usize,
    rng: &mut ChaCha8Rng,
    reducer: &dyn Reducer,
) -> Result<(Vec<f64>, Vec<usize>)> {
    if reducer.size() == 1 && data.global_offset() == 0 {
        return kmeans_plusplus_rng(data, k, rng);
    }
    agreed(reducer, data.require_unweighted("a distributed k-means++"))?;
    let (n_total, off, d) = (data.global_rows(), data.global_offset(), data.n_features());
    let n = data.n_samples();
    let trials = 2 + (k as f64).ln() as usize;
    let mut centers = vec![0.0; k * d];
    let mut indices = Vec::with_capacity(k);
    let first = rng.random_range(0..n_total);
    global_row(data, reducer, first, &mut centers[..d])?;
    indices.push(first);
    let mut closest = vec![0.0; n];
    let mut chunk_sums = agreed(
        reducer,
        update_closest(data, &mut closest, &centers[..d], true),
    )?;
    let mut cand = vec![0.0; trials * (d + 1)];
    for c in 1..k {
        let totals = reducer.gather(&[chunk_sums.iter().sum::<f64>()])?;
        let potential: f64 = totals.iter().sum();
        cand.iter_mut().for_each(|v| *v = 0.0);
        let mut read = Ok(());
        for t in 0..trials {
            let v = rng.random::<f64>() * potential;
            // The process whose rows the cumulative sum reaches v in (clipped to the last row).
            let mut acc = 0.0;
            let mut owner = None;
            for (q, &s) in totals.iter().enumerate() {
                if s > 0.0 && acc + s >= v {
                    owner = Some((q, v - acc));
                    break;
                }
                acc += s;
            }
            let last = totals
                .iter()
                .rposition(|&s| s > 0.0)
                .unwrap_or(totals.len() - 1);
            let (q, local_v) = owner.unwrap_or((last, f64::INFINITY));
            if q == reducer.rank() && n > 0 && read.is_ok() {
                let i = search_cumsum(&closest, None, &chunk_sums, local_v);
                let slot = &mut cand[t * (d + 1)..(t + 1) * (d + 1)];
                slot[0] = (off + i) as f64;
                read = data.read_f64(i, &mut slot[1..]);
            }
        }
        agreed(reducer, read)?;
        reducer.sum(&mut cand)?;
        let row = |t: usize| &cand[t * (d + 1) + 1..(t + 1) * (d + 1)];
        let parts: Result<Vec<Vec<f64>>> = closest
            .par_chunks(INIT_CHUNK_ROWS)
            .enumerate()
            .map_init(Vec::new, |buf, (ci, cl)| {
                buf.resize(cl.len() * d, 0.0);
                data.read_f64(ci * INIT_CHUNK_ROWS, buf)?;
                let mut pot = vec![0.0; trials];
                for (x, &v) in buf.chunks_exact(d).zip(cl) {
                    for (t, p) in pot.iter_mut().enumerate() {
                        *p += v.min(sq_distance(x, row(t)));
                    }
                }
                Ok(pot)
            })
            .collect::<Result<_>>();
        let parts = agreed(reducer, parts)?;
        let mut pots = vec![0.0; trials];
        for p in &parts {
            pots.iter_mut().zip(p).for_each(|(a, v)| *a += v);
        }
        reducer.sum(&mut pots)?;
        let best = (1..trials).fold(0, |b, t| if pots[t] < pots[b] { t } else { b });
        centers[c * d..(c + 1) * d].copy_from_slice(row(best));
        indices.push(cand[best * (d + 1)] as usize);
        chunk_sums = agreed(
            reducer,
            update_closest(data, &mut closest, &centers[c * d..(c + 1) * d], false),
        )?;
    }
    Ok((centers, indices))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numpy's `searchsorted(cumsum(v), x)` computed directly.
    fn naive(v: &[f64], x: f64) -> usize {
        let mut acc = 0.0;
        for (i, a) in v.iter().enumerate() {
            acc += a;
            if acc >= x {
                return i;
            }
        }
        v.len() - 1
    }

    #[test]
    fn cumulative_search_matches_numpy_searchsorted() {
        let n = 3 * INIT_CHUNK_ROWS + 17;
        // Integer weights: every partial sum is exact, whatever the order of the additions.
        let v: Vec<f64> = (0..n).map(|i| ((i * 7919) % 5) as f64).collect();
        let sums: Vec<f64> = v.chunks(INIT_CHUNK_ROWS).map(|c| c.iter().sum()).collect();
        let total: f64 = sums.iter().sum();
        for x in [
            0.0,
            0.5,
            1.0,
            2.0,
            1234.0,
            total / 2.0,
            total - 1.0,
            total,
            total + 5.0,
        ] {
            assert_eq!(search_cumsum(&v, None, &sums, x), naive(&v, x), "x = {x}");
        }
    }

    #[test]
    fn column_mean_var_is_numpys() {
        let x =
            ndarray::Array2::from_shape_fn((9000, 2), |(i, j)| (i % 10) as f64 + 1e4 * j as f64);
        let (m, v) = column_mean_var(&x.as_dataset()).unwrap();
        assert!((m[0] - 4.5).abs() < 1e-12 && (m[1] - 1e4 - 4.5).abs() < 1e-9);
        assert!((v[0] - 8.25).abs() < 1e-12 && (v[1] - 8.25).abs() < 1e-9);
        assert_eq!(tolerance_from_variances(&v, 0.0), 0.0);
        assert!((tolerance_from_variances(&v, 1e-4) - 8.25e-4).abs() < 1e-12);
    }
}
