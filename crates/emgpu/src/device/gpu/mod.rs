//! The GPU machinery every model's GPU engine shares (wgpu + WGSL); no model code.
//!
//! - [`GpuContext`]: one adapter, device and queue per process ([`GpuContext::shared`]), a device
//!   on the adapter of one's choice ([`GpuContext::for_adapter`]), or a device the caller already
//!   has ([`GpuContext::from_wgpu`]).
//! - [`adapters`] lists what wgpu sees (for `emgpu devices`); [`preferred_adapter`] says which
//!   one the shared context takes; [`auto_choice`] says what `Backend::Auto` runs on.
//! - [`GpuEngineOptions`], [`GpuContextOptions`], [`GpuVariant`]: the tuning options (the library
//!   reads no environment variable; the command line and the tests do, and set these).
//! - `data`: one dataset on the GPU (chunked, centred, resident or streamed), shared by the
//!   engines over the same data; `kernels`: WGSL to pipeline; `reduce`: the second reduction
//!   pass (`reduce_partials.wgsl`) every statistics kernel uses; `util`: bind groups, dispatch
//!   grids, readbacks.
//!
//! The models' engines and kernels live with the models:
//! [`GpuGmmEngine`](crate::models::gmm::gpu::GpuGmmEngine) (`models/gmm/gpu/`) and
//! [`GpuKMeansEngine`](crate::models::kmeans::gpu::GpuKMeansEngine) (`models/kmeans/gpu/`).

mod context;
pub(crate) mod data;
pub(crate) mod kernels;
mod options;
pub(crate) mod reduce;
pub(crate) mod util;

pub use context::{
    AdapterSummary, AutoChoice, GpuContext, SharedAdapter, adapters, auto_choice, preferred_adapter,
};
pub use options::{GpuContextOptions, GpuEngineOptions, GpuVariant};
