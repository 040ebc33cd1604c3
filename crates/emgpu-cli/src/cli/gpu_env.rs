//! The environment variables that tune the GPU engines, read here (the library reads none) and
//! handed to the shared GPU context before any command uses it:
//!
//! - `EMGPU_GPU_VARIANT`: the Gaussian-mixture kernel variant (`GpuVariant`'s flags, e.g.
//!   `stage+sg`; unset: the recommended one);
//! - `EMGPU_GPU_RESIDENT_BYTES`: bytes of data kept on the GPU before streaming (unset or not a
//!   number: 4 GiB on hardware adapters, 1 GiB on software ones);
//! - `EMGPU_SHADER_BOUNDS_CHECKS=1`: compile the kernels with bounds checks (a debugging aid).

use emgpu::Error;
use emgpu::device::gpu::{GpuContext, GpuContextOptions, GpuEngineOptions, GpuVariant};

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
    let resident_budget = std::env::var("EMGPU_GPU_RESIDENT_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok());
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
pub fn configure() -> Result<(), CliError> {
    GpuContext::configure_shared(options_from_env()?)?;
    Ok(())
}
