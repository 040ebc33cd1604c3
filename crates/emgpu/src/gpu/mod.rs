//! The GPU backend's machinery (wgpu + WGSL): the device context, adapter discovery and the
//! Gaussian-mixture kernels.
//!
//! - [`GpuContext`]: one adapter, device and queue per process ([`GpuContext::shared`]), or a
//!   device the caller already has ([`GpuContext::from_wgpu`]).
//! - [`adapters`] lists what wgpu sees (for `emgpu devices`); [`preferred_adapter`] says which
//!   one the shared context takes; [`auto_choice`] says what `Backend::Auto` runs on.
//! - The kernels live in `shaders/*.wgsl` (one per file) and are wrapped by small structs in
//!   `kernels`; the engine that drives them per fit is
//!   [`GpuGmmEngine`](crate::backend::gpu::GpuGmmEngine).
//! - The k-means kernel (`shaders/kmeans_assign.wgsl`) is wrapped in `kmeans_kernels`; its engine
//!   is [`GpuKMeansEngine`](crate::backend::gpu_kmeans::GpuKMeansEngine).

mod context;
pub(crate) mod kernels;
pub(crate) mod kmeans_kernels;

pub use context::{
    AdapterSummary, AutoChoice, GpuContext, adapters, auto_choice, preferred_adapter,
};
