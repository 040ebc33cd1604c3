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
//! See the README for the command-line tool and the numbers.

// Numerical kernels index several arrays with the same loop variable (row i of U, column j of Y):
// index loops say that more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

pub mod backend;
pub mod data;
pub mod device;
pub mod em;
pub mod error;
pub mod init;
pub mod linalg;
pub mod models;
pub mod select;
pub mod synth;

pub use backend::{Backend, BackendReport};
pub use data::{AsDataset, Dataset};
pub use em::Progress;
pub use error::{Error, Result};
pub use models::gmm::{CovarianceType, FittedGmm, GaussianMixture, GmmParams, Init};
pub use models::kmeans::{FittedKMeans, KMeans, KMeansInit};
pub use select::{Criterion, Selection, SelectionRow, select_gmm, select_gmm_with_progress};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
