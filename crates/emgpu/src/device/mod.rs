//! Where the E-step runs: [`Backend::Cpu`], [`Backend::Gpu`] or [`Backend::Auto`], and the
//! machinery the models' engines share.
//!
//! The backend is a parameter of the same API, not a parallel API: each model offers a CPU and a
//! GPU [`crate::em::EStep`] engine from its own folder, and [`choose`] is the one rule that picks
//! between them (no silent fallback: `Gpu` either runs on a GPU adapter or fails; `Auto` says
//! what it chose and why). [`cpu`] holds the chunked, deterministic parallel map of the CPU
//! engines; `gpu` (feature `gpu`) the context, device data, pipeline building, the partial-sum
//! reduce and readback.

use crate::error::Result;

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;

pub use cpu::CpuPath;

/// Which device runs the per-point work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The f64 CPU path (parallel over all cores). Always available; the reference of the tests.
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12). An error if no adapter is found: never a silent
    /// fallback.
    Gpu,
    /// A hardware GPU when one is found, else the CPU; the fit reports which one ran and why.
    #[default]
    Auto,
}

impl std::str::FromStr for Backend {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "gpu" => Ok(Backend::Gpu),
            "auto" => Ok(Backend::Auto),
            other => Err(crate::Error::param(format!(
                "unknown backend {other:?}; use auto, cpu or gpu"
            ))),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
            Backend::Auto => "auto",
        })
    }
}

/// Which backend actually ran, on which device, and why (for `Auto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendReport {
    /// `Cpu` or `Gpu` (never `Auto`).
    pub backend: Backend,
    /// The device's name (the adapter's, or "CPU (N threads)").
    pub device: String,
    /// Why `Auto` chose this backend; empty otherwise.
    pub reason: String,
}

/// Options of engine construction that tests and benchmarks set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Rows per chunk. `None`: derived from the device (GPU: its limits; CPU: the cache). On the GPU,
    /// a value smaller than N forces the chunked (streaming) path.
    pub chunk_rows: Option<usize>,
    /// Which E-step the CPU backend runs: the blocked (GEMM-shaped) path by default, or the
    /// point-by-point reference that tests compare it with.
    pub cpu_path: CpuPath,
}

/// What a model's GPU engine constructor receives from [`choose`]: the GPU context to build on.
/// Without the `gpu` feature no value of it exists, so a GPU constructor cannot be called.
#[cfg(feature = "gpu")]
pub type GpuHandle = std::sync::Arc<gpu::GpuContext>;
/// What a model's GPU engine constructor receives from [`choose`]. This build has no `gpu`
/// feature: the type has no values, and GPU constructors are never called.
#[cfg(not(feature = "gpu"))]
#[derive(Debug)]
pub enum GpuHandle {}

/// Under this many data values (N·D), `Auto` runs the CPU backend without probing the GPU
/// adapters: finding and opening an adapter takes tens of milliseconds, more than a whole fit of
/// so little data on the CPU, and a GPU cannot win back its dispatch latency on it.
pub const AUTO_MIN_GPU_VALUES: usize = 1 << 16;

/// The rule every engine factory follows (each model's factory calls it with its two engines and
/// the number of values, N·D, of its data): `Cpu` builds `cpu`; `Gpu` builds `gpu` on the shared
/// context or fails (no silent fallback); `Auto` builds `cpu` without probing any adapter when
/// the data have fewer than [`AUTO_MIN_GPU_VALUES`] values, else `gpu` on a hardware adapter
/// and otherwise, or when the GPU cannot take the fit, `cpu`, with the reason, which the fit
/// reports.
pub fn choose<'a, E: ?Sized + 'a>(
    backend: Backend,
    values: usize,
    cpu: impl FnOnce(String) -> Box<E>,
    gpu: impl FnOnce(GpuHandle, String) -> Result<Box<E>>,
) -> Result<Box<E>> {
    if backend == Backend::Auto && values < AUTO_MIN_GPU_VALUES {
        return Ok(cpu(format!(
            "the data are too small for a GPU to matter ({values} values, under \
             {AUTO_MIN_GPU_VALUES}); no GPU adapter was probed; using the CPU backend"
        )));
    }
    #[cfg(feature = "gpu")]
    {
        use gpu::{AutoChoice, GpuContext, auto_choice};
        match backend {
            Backend::Cpu => Ok(cpu(String::new())),
            Backend::Gpu => gpu(GpuContext::shared()?, String::new()),
            Backend::Auto => match auto_choice() {
                AutoChoice::Gpu(ctx) => {
                    let label = ctx.device_label();
                    let reason = format!("a hardware GPU adapter was found ({label})");
                    // Auto may fall back, and says why.
                    gpu(ctx, reason).or_else(|e| {
                        Ok(cpu(format!(
                            "the GPU {label} could not run this fit ({e}); using the CPU backend"
                        )))
                    })
                }
                AutoChoice::Cpu { reason } => Ok(cpu(reason)),
            },
        }
    }
    #[cfg(not(feature = "gpu"))]
    {
        let _ = gpu;
        match backend {
            Backend::Cpu => Ok(cpu(String::new())),
            Backend::Gpu => Err(crate::Error::NoGpuSupport),
            Backend::Auto => Ok(cpu(
                "emgpu was built without GPU support (the `gpu` feature)".to_string(),
            )),
        }
    }
}

/// The rule for a model that has only a CPU engine: `Cpu` builds it; `Auto` builds it and says
/// that `model` has no GPU engine; `Gpu` is an error saying so (no silent fallback).
pub fn cpu_only<'a, E: ?Sized + 'a>(
    backend: Backend,
    model: &str,
    cpu: impl FnOnce(String) -> Box<E>,
) -> Result<Box<E>> {
    match backend {
        Backend::Cpu => Ok(cpu(String::new())),
        Backend::Auto => Ok(cpu(format!("{model} has no GPU engine"))),
        Backend::Gpu => Err(crate::Error::param(format!(
            "{model} runs on the CPU only; use the CPU backend"
        ))),
    }
}

/// The report of a CPU engine: `Cpu`, the thread count, and why it was chosen.
pub fn cpu_report(reason: &str) -> BackendReport {
    BackendReport {
        backend: Backend::Cpu,
        device: format!("CPU ({} threads)", rayon::current_num_threads()),
        reason: reason.to_string(),
    }
}
