//! The environment variables that tune the GPU engines, read here (the library reads none) and
//! handed to the shared GPU context before any command uses it:
//!
//! - `EMGPU_GPU_VARIANT`: the Gaussian-mixture kernel variant (`GpuVariant`'s flags, e.g.
//!   `stage+sg`; unset: the recommended one);
//! - `EMGPU_GPU_RESIDENT_BYTES`: bytes of data kept on the GPU before streaming (unset: 4 GiB on
//!   hardware adapters, 1 GiB on software ones; not a whole number: an error);
//! - `EMGPU_SHADER_BOUNDS_CHECKS=1`: compile the kernels with bounds checks (a debugging aid).

use emgpu::Error;
use emgpu::device::gpu::{
    GpuContext, GpuContextOptions, GpuEngineOptions, GpuVariant, SharedAdapter,
};

use super::CliError;

/// The shared context's options from the environment.
pub fn options_from_env() -> Result<GpuContextOptions, CliError> {
    let variant = match std::env::var("EMGPU_GPU_VARIANT") {
        Ok(s) => Some(s.parse::<GpuVariant>().map_err(|e| match e {
            Error::InvalidParameter(m) => Error::param(format!("EMGPU_GPU_VARIANT: {m}")),
            other => other,
        })?),
        Err(_) => None,
    };
    let resident_budget = match std::env::var("EMGPU_GPU_RESIDENT_BYTES") {
        Ok(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            CliError::usage(format!(
                "EMGPU_GPU_RESIDENT_BYTES={v:?} is not a whole number of bytes; set it to e.g. 1073741824 (1 GiB) or unset it"
            ))
        })?),
        Err(_) => None,
    };
    Ok(GpuContextOptions {
        shader_bounds_checks: std::env::var("EMGPU_SHADER_BOUNDS_CHECKS").is_ok_and(|v| v == "1"),
        engine_defaults: GpuEngineOptions {
            variant,
            resident_budget,
            ..GpuEngineOptions::default()
        },
    })
}

/// Configures the shared GPU context from the environment (first thing, before any command).
/// In a distributed run (`mpirun`, see dist.rs) each rank takes hardware adapter (its rank on
/// its node) mod (their number), unless `WGPU_ADAPTER_NAME` names one.
pub fn configure() -> Result<(), CliError> {
    GpuContext::configure_shared(options_from_env()?)?;
    if let Some(local_rank) = super::dist::local_rank() {
        GpuContext::configure_shared_adapter(SharedAdapter::HardwareModulo(local_rank))?;
    }
    Ok(())
}
