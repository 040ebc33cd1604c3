//! The Gaussian mixture's CPU engine (f64, parallel over chunks of rows) and its two E-steps:
//! [`blocked`] (GEMM-shaped, the default) and [`reference`](mod@reference) (point by point: the oracle of the
//! tests and the twin of the GPU kernels).

pub mod blocked;
mod engine;
pub mod reference;

pub use engine::CpuEngine;
pub(crate) use reference::{PointOutputs, point_outputs_reference};
pub use reference::{
    REFERENCE_CHUNK_ROWS, chunk_stats_reference, chunk_stats_reference_weighted, e_step_reference,
};
