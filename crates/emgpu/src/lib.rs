//! # emgpu — Expectation–Maximization on the GPU, with scikit-learn's answers
//!
//! Every EM model here has the same shape. The **E-step** visits each data point once with the
//! current parameters, and the M-step needs from all those points only a small, fixed-size,
//! *additive* summary: the **sufficient statistics** (for a Gaussian mixture: per component `Σr`,
//! `Σr·x`, `Σr·x·xᵀ`, plus `Σ log p(x)`). The expensive part, O(N·K·D²), is a map-reduce over
//! points: WGSL compute shaders (or the f64 CPU path) compute responsibilities and reduce the
//! statistics; the host reads back kilobytes, runs the **M-step** in f64 and sends the new
//! parameters. Because statistics add, chunked, streamed and multi-device fits are the same code.
//!
//! - [`GaussianMixture`]: the builder (`full`, `tied`, `diag`, `spherical` covariances), with the
//!   semantics of `sklearn.mixture.GaussianMixture` (same lower bound, same stopping rule, same
//!   `reg_covar` and `10·eps` handling).
//! - [`Backend`]: `Cpu` (f64, all cores), `Gpu` (wgpu: Vulkan, Metal, DX12), `Auto`.
//! - [`Dataset`]: rows read in chunks, from ndarray arrays or files.
//! - [`KMeans`]: Lloyd's k-means as hard-assignment EM, with the semantics of
//!   `sklearn.cluster.KMeans`; it is also the default initialization of a mixture ([`Init`],
//!   [`init`]: k-means, k-means++, random, random_from_data, explicit parameters).
//! - [`select_gmm`]: the number of components (and covariance type) by BIC or AIC.
//!
//! # Architecture
//!
//! - [`em`]: the EM core. A model implements [`em::Stats`] (additive sufficient statistics:
//!   merge, scale, flat view), [`em::Model`] (prepare parameters, M-step, parameter count,
//!   convergence test) and offers [`em::EStep`] engines; [`em::run_em`] is the one loop and
//!   [`em::best_of`] the restarts, for every model.
//! - [`device`]: [`Backend`] and [`device::choose`], the one rule that picks a model's CPU or GPU
//!   engine; `device::cpu` (chunked deterministic parallel map) and `device::gpu` (feature `gpu`:
//!   context, data on the device, pipelines, partial-sum reduce, readback).
//! - [`models`]: one folder per model (`gmm`, `kmeans`, and `poisson`, a small example plug-in),
//!   each with its parameters, statistics, M-step, model file and engines.
//! - [`data`] (rows in chunks from arrays and mapped files), [`numerics`], [`init`], [`synth`]
//!   (seeded test data), [`select`] (BIC/AIC).
//!
//! Adding a model is a new folder under `models/` plus one registration line; the README's
//! "How to add a model" lists the five steps.
//!
//! See the README for the command-line tool and the numbers.

// Numerical kernels index several arrays with the same loop variable (row i of U, column j of Y):
// index loops say that more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

pub mod data;
pub mod device;
pub mod em;
pub mod error;
pub mod init;
mod memory;
pub mod models;
pub mod numerics;
pub mod select;
pub mod synth;

pub use data::{AsDataset, AsWeights, DataSource, Dataset};
pub use device::{Backend, BackendReport};
pub use em::{Control, Progress};
pub use error::{Error, Result};
pub use models::gmm::{CovarianceType, FittedGmm, GaussianMixture, GmmParams, Init};
pub use models::kmeans::{FittedKMeans, KMeans, KMeansInit};
pub use select::{
    Criterion, Selection, SelectionRow, select_gmm, select_gmm_distributed,
    select_gmm_with_progress,
};

/// Test oracles and constructors that skip validation, for this crate's tests and benchmarks
/// (and anyone cross-checking an engine). Not a stable API.
#[doc(hidden)]
pub mod testing {
    pub use crate::models::gmm::cpu::blocked::{chunk_stats_blocked, e_step_blocked};
    pub use crate::models::gmm::cpu::{chunk_stats_reference, e_step_reference};
    pub use crate::models::kmeans::cpu::{assign_blocked, assign_reference, farthest_reference};

    use crate::models::gmm::{CovarianceType, GmmParams};

    /// Gaussian mixture parameters as given, unchecked: scikit-learn's initial parameters
    /// (weights `nk / N` that need not sum to 1) are such, and tests compare with them.
    pub fn gmm_params_unchecked(
        covariance_type: CovarianceType,
        weights: Vec<f64>,
        means: Vec<f64>,
        covariances: Vec<f64>,
        n_features: usize,
    ) -> GmmParams {
        GmmParams::from_parts(covariance_type, weights, means, covariances, n_features)
    }
}

/// The ndarray version emgpu is built with, so that users' arrays match it.
pub use ndarray;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
