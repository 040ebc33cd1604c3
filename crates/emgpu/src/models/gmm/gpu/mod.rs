//! The Gaussian mixture on the GPU: the engine that drives one fit's E-steps
//! ([`GpuGmmEngine`], `engine.rs`) and its kernels (`kernels.rs`, and the `gmm_*.wgsl` files next
//! to it). The shared machinery (context, uploaded data, reduction pass) is in
//! [`crate::device::gpu`].

mod engine;
pub(crate) mod kernels;

pub use crate::device::gpu::GpuVariant;
pub use engine::GpuGmmEngine;
