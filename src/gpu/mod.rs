//! The GPU backend (wgpu + WGSL). Placeholder until the kernels land.

use std::sync::Arc;

use crate::error::{Error, Result};

/// The process's GPU context.
pub struct GpuContext;

impl GpuContext {
    /// The shared context.
    pub fn shared() -> Result<Arc<GpuContext>> {
        Err(Error::NoAdapter)
    }
}
