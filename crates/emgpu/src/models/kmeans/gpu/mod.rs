//! k-means on the GPU: the assignment engine ([`GpuKMeansEngine`], `engine.rs`) and its kernel
//! (`kernels.rs`, `kmeans_assign.wgsl`). The shared machinery (context, uploaded data, reduction
//! pass) is in [`crate::device::gpu`].

mod engine;
pub(crate) mod kernels;

pub use engine::GpuKMeansEngine;
