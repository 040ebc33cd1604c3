//! The Gaussian mixture's initializations (scikit-learn's `init_params`): statistics of the
//! initial responsibilities, from which [`super::estimate_parameters`] gives the starting
//! parameters, and what the restarts of a fit share.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{CovarianceType, GmmStats};
use crate::data::Dataset;
use crate::device::{Backend, EngineOptions};
use crate::em::map_merge;
use crate::error::{Error, Result};
use crate::init::{INIT_CHUNK_ROWS, column_mean_var};
use crate::models::kmeans::{KMeansEngine, kmeans_engine};

/// Statistics of responsibilities that are one at `(indices[c], c)` and zero elsewhere (the
/// `random_from_data` and `k-means++` initializations of a Gaussian mixture), about the points
/// themselves; `n_samples` is N as the weights are normalized by it (with sample weights: `Σ w`,
/// as for the rows repeated their weight's number of times).
pub(crate) fn gmm_stats_at_points(
    data: &Dataset,
    indices: &[usize],
    covariance_type: CovarianceType,
) -> Result<GmmStats> {
    let (k, d) = (indices.len(), data.n_features());
    let mut shift = vec![0.0; k * d];
    for (c, &i) in indices.iter().enumerate() {
        data.read_f64(i, &mut shift[c * d..(c + 1) * d])?;
    }
    let mut stats = GmmStats::zeros(covariance_type, k, d, &shift);
    stats.s0.fill(1.0);
    stats.n_samples = data.sum_of_weights();
    Ok(stats)
}

/// Statistics of one-hot responsibilities from `labels` (`[N]`, each `< k`) about `shift`
/// (`[K][D]`, e.g. the k-means centers), over all the data (each row's one weighted by its sample
/// weight, if the data have them).
pub(crate) fn gmm_stats_from_labels(
    data: &Dataset,
    labels: &[u32],
    k: usize,
    covariance_type: CovarianceType,
    shift: &[f64],
) -> Result<GmmStats> {
    let d = data.n_features();
    let empty = GmmStats::zeros(covariance_type, k, d, shift);
    map_merge(data, INIT_CHUNK_ROWS, empty.clone(), |start, x| {
        let mut stats = empty.clone();
        let mut resp = vec![0.0; k];
        let weights = data.weights_of(start, x.len() / d);
        for (i, row) in x.chunks_exact(d).enumerate() {
            let l = labels[start + i] as usize;
            resp[l] = 1.0;
            match weights {
                None => stats.add_point(row, &resp, 0.0),
                Some(w) => stats.add_weighted_point(row, &mut resp, 0.0, w[i]),
            }
            resp[l] = 0.0;
        }
        stats
    })
}

/// Statistics of random responsibilities (scikit-learn's `init_params="random"`: each row uniform
/// on [0, 1) then normalized to sum to 1), about `center` (`[D]`, e.g. the data mean) for every
/// component. Each chunk of [`INIT_CHUNK_ROWS`] rows draws from its own ChaCha8 stream seeded from
/// `rng` in chunk order. With sample weights each row's responsibilities are multiplied by its
/// weight.
pub(crate) fn gmm_stats_random_resp(
    data: &Dataset,
    k: usize,
    covariance_type: CovarianceType,
    center: &[f64],
    rng: &mut ChaCha8Rng,
) -> Result<GmmStats> {
    let d = data.n_features();
    let n_chunks = data.n_samples().div_ceil(INIT_CHUNK_ROWS);
    let seeds: Vec<u64> = (0..n_chunks).map(|_| rng.random::<u64>()).collect();
    let shift: Vec<f64> = (0..k).flat_map(|_| center.iter().copied()).collect();
    let empty = GmmStats::zeros(covariance_type, k, d, &shift);
    map_merge(data, INIT_CHUNK_ROWS, empty.clone(), |start, x| {
        let mut chunk_rng = ChaCha8Rng::seed_from_u64(seeds[start / INIT_CHUNK_ROWS]);
        let mut stats = empty.clone();
        let mut resp = vec![0.0; k];
        let weights = data.weights_of(start, x.len() / d);
        for (i, row) in x.chunks_exact(d).enumerate() {
            resp.iter_mut().for_each(|r| *r = chunk_rng.random::<f64>());
            let s: f64 = resp.iter().sum();
            resp.iter_mut().for_each(|r| *r /= s);
            match weights {
                None => stats.add_point(row, &resp, 0.0),
                Some(w) => stats.add_weighted_point(row, &mut resp, 0.0, w[i]),
            }
        }
        stats
    })
}

/// What the initializations of a fit (all its restarts, or all the fits of a model selection)
/// compute once and share: the k-means engine over the data, and the column means and variances.
pub(crate) struct InitState<'a> {
    backend: Backend,
    options: EngineOptions,
    kmeans: Option<Box<dyn KMeansEngine + 'a>>,
    mean_var: Option<(Vec<f64>, Vec<f64>)>,
}

impl<'a> InitState<'a> {
    /// Nothing computed yet; a k-means engine will be built on `backend` when first needed.
    pub(crate) fn new(backend: Backend, options: EngineOptions) -> Self {
        Self {
            backend,
            options,
            kmeans: None,
            mean_var: None,
        }
    }

    /// Column means and variances of `data` (computed on first use).
    pub(crate) fn mean_var(&mut self, data: &Dataset) -> Result<&(Vec<f64>, Vec<f64>)> {
        if self.mean_var.is_none() {
            self.mean_var = Some(column_mean_var(data)?);
        }
        self.mean_var
            .as_ref()
            .ok_or_else(|| Error::Numerical("the column moments were not computed".into()))
    }

    /// The k-means engine over `data` (built on first use, then reused).
    pub(crate) fn kmeans_engine(
        &mut self,
        data: &'a Dataset<'a>,
    ) -> Result<&mut (dyn KMeansEngine + 'a)> {
        if self.kmeans.is_none() {
            self.kmeans = Some(kmeans_engine(self.backend, data, self.options)?);
        }
        match self.kmeans.as_deref_mut() {
            Some(engine) => Ok(engine),
            None => Err(Error::Numerical("the k-means engine was not built".into())),
        }
    }
}
