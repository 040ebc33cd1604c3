//! Where the E-step runs: [`Backend::Cpu`], [`Backend::Gpu`] or [`Backend::Auto`].
//!
//! The backend is a parameter of the same API, not a parallel API: the EM driver asks an
//! [`GmmEngine`] for the statistics of one E-step and runs the M-step itself, on the host, in f64.

use crate::data::Dataset;
use crate::error::Result;
use crate::models::gmm::{GmmStats, Prepared};
use crate::models::kmeans::KMeansStats;

pub mod cpu;

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

/// An E-step engine bound to one dataset for the length of a fit.
///
/// Implementations hold what they prepared for the data (uploaded buffers, chunk plans) so that
/// each iteration only sends the small parameter buffers and reads back the statistics.
pub trait GmmEngine {
    /// The statistics of one E-step over all the data under the parameters `p`.
    fn e_step(&mut self, p: &Prepared) -> Result<GmmStats>;

    /// `log p(x_n)` for every point under `p` (for `score_samples`), into `out` (`[N]`).
    fn log_likelihoods(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()>;

    /// Responsibilities `[N][K]` under `p` (for `predict_proba`), into `out`.
    fn responsibilities(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()>;

    /// What runs this engine.
    fn report(&self) -> BackendReport;

    /// A k-means engine over the same data, when this engine can offer one that shares what it
    /// prepared (a GPU engine: the uploaded data). The k-means initialization of a Gaussian
    /// mixture uses it instead of building (and uploading) its own. `None` by default.
    fn kmeans_engine(&mut self) -> Option<&mut dyn KMeansEngine> {
        None
    }
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

/// Builds the engine of `backend` for `data` with `k` components of the given covariance type.
pub fn gmm_engine<'a>(
    backend: Backend,
    data: &'a Dataset<'a>,
    covariance_type: crate::CovarianceType,
    n_components: usize,
    options: EngineOptions,
) -> Result<Box<dyn GmmEngine + 'a>> {
    let cpu = |reason| Box::new(cpu::CpuEngine::new(data, options, reason)) as Box<_>;
    #[cfg(feature = "gpu")]
    {
        choose_engine::<dyn GmmEngine + 'a>(backend, cpu, |ctx, reason| {
            let engine = crate::models::gmm::gpu::GpuGmmEngine::new(
                ctx,
                data,
                covariance_type,
                n_components,
                options.into(),
                reason,
            )?;
            Ok(Box::new(engine))
        })
    }
    #[cfg(not(feature = "gpu"))]
    {
        // Only the GPU engine is built for a covariance type and a number of components.
        let _ = (covariance_type, n_components);
        choose_engine::<dyn GmmEngine + 'a>(backend, cpu)
    }
}

/// The rule every engine factory follows: `Cpu` builds `cpu`; `Gpu` builds `gpu` on the shared
/// context or fails (no silent fallback); `Auto` builds `gpu` on a hardware adapter and otherwise,
/// or when the GPU cannot take the fit, `cpu` with the reason, which the fit reports.
#[cfg(feature = "gpu")]
fn choose_engine<'a, E: ?Sized + 'a>(
    backend: Backend,
    cpu: impl FnOnce(String) -> Box<E>,
    gpu: impl FnOnce(std::sync::Arc<crate::device::gpu::GpuContext>, String) -> Result<Box<E>>,
) -> Result<Box<E>> {
    use crate::device::gpu::{AutoChoice, GpuContext, auto_choice};
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

/// The rule without GPU support (the `gpu` feature off): `Cpu` and `Auto` build `cpu` (`Auto`
/// saying why), `Gpu` is [`Error::NoGpuSupport`](crate::Error::NoGpuSupport).
#[cfg(not(feature = "gpu"))]
fn choose_engine<'a, E: ?Sized + 'a>(
    backend: Backend,
    cpu: impl FnOnce(String) -> Box<E>,
) -> Result<Box<E>> {
    match backend {
        Backend::Cpu => Ok(cpu(String::new())),
        Backend::Gpu => Err(crate::Error::NoGpuSupport),
        Backend::Auto => Ok(cpu("built without GPU support".into())),
    }
}

/// One point far from its center, as [`KMeansEngine::farthest`] reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FarPoint {
    /// Row of the point in the data.
    pub index: usize,
    /// The cluster it was assigned to.
    pub label: usize,
    /// Its squared distance to that cluster's center.
    pub sq_distance: f64,
}

/// A k-means assignment engine bound to one dataset for the length of a fit (the twin of
/// [`GmmEngine`] for k-means: the backend does the per-point work, the host the update).
///
/// The engine remembers the labels and distances of its last assignment, so that the host can ask
/// whether labels changed (strict convergence), where the farthest points are (to relocate empty
/// clusters) and, once, for the labels, without N-sized transfers inside the loop.
pub trait KMeansEngine {
    /// Assigns every point to its nearest center (squared Euclidean distance; ties go to the lowest
    /// index), remembers the labels and distances, and returns the statistics of the assignment:
    /// counts, sums about the centers, inertia and how many labels changed since the previous call.
    /// `centers` is `[n_clusters][D]`, row-major; any `n_clusters ≥ 1` may be asked for.
    fn assign_and_sum(&mut self, centers: &[f64], n_clusters: usize) -> Result<KMeansStats>;

    /// The labels of the last assignment, into `out` (`[N]`).
    fn labels(&mut self, out: &mut [u32]) -> Result<()>;

    /// The `n` points of the last assignment farthest from their centers (at most N), by
    /// decreasing distance; equal distances in increasing row order.
    fn farthest(&mut self, n: usize) -> Result<Vec<FarPoint>>;

    /// What runs this engine.
    fn report(&self) -> BackendReport;
}

/// Builds the k-means engine of `backend` for `data`.
pub fn kmeans_engine<'a>(
    backend: Backend,
    data: &'a Dataset<'a>,
    options: EngineOptions,
) -> Result<Box<dyn KMeansEngine + 'a>> {
    let cpu = |reason| Box::new(cpu::CpuKMeansEngine::new(data, options, reason)) as Box<_>;
    #[cfg(feature = "gpu")]
    {
        choose_engine::<dyn KMeansEngine + 'a>(backend, cpu, |ctx, reason| {
            let engine = crate::models::kmeans::gpu::GpuKMeansEngine::new(
                ctx,
                data,
                options.into(),
                reason,
            )?;
            Ok(Box::new(engine))
        })
    }
    #[cfg(not(feature = "gpu"))]
    {
        choose_engine::<dyn KMeansEngine + 'a>(backend, cpu)
    }
}
