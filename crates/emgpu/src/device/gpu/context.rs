//! The GPU context: one wgpu instance, adapter, device and queue per process.
//!
//! [`GpuContext::shared`] builds it on first use and hands out the same `Arc` afterwards (the
//! error too, when there is no adapter: asking again would not find one). The adapter is chosen
//! by [`preferred_adapter`]'s rule: `WGPU_ADAPTER_NAME` when set, else a discrete GPU before an
//! integrated one before anything else, a software adapter (Mesa's llvmpipe) last; or, when
//! configured so ([`GpuContext::configure_shared_adapter`], as the command line does under
//! `mpirun`), hardware adapter `i mod n` for process `i` of a node. The device is
//! requested with the adapter's own limits, so that large storage bindings, large buffers and
//! large workgroup memory are available wherever the hardware has them; nothing here assumes one
//! GPU's numbers.
//!
//! [`GpuContext::from_wgpu`] wraps a device the caller already has (an application that renders
//! with wgpu, a test harness), following wgpu's compute examples where the device is set up apart
//! from the work; [`GpuContext::for_adapter`] builds a context on the adapter of one's choice
//! ("process i uses GPU i"). [`GpuContextOptions`] (kernel bounds checks, engine defaults) are set
//! per context ([`GpuContext::with_options`]), and for the shared one once, before its first use
//! ([`GpuContext::configure_shared`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::kernels::KernelPipeline;
use super::options::GpuContextOptions;
use crate::error::{Error, Result};

/// An adapter wgpu sees, with the limits that matter to emgpu (for `emgpu devices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name (e.g. "NVIDIA H100 80GB HBM3", "llvmpipe (LLVM 15.0.7, 256 bits)").
    pub name: String,
    /// The graphics API wgpu reaches it through ("Vulkan", "Metal", "Dx12", "Gl").
    pub backend: String,
    /// "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu" or "Other".
    pub device_type: String,
    /// The driver's name and version, as the driver reports them.
    pub driver: String,
    /// Whether this is a software adapter (a CPU implementation such as llvmpipe).
    pub is_software: bool,
    /// Largest storage-buffer binding, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Workgroup (shared) memory per workgroup, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Smallest and largest subgroup (warp, wavefront) size the adapter reports.
    pub subgroup_sizes: (u32, u32),
}

impl AdapterSummary {
    fn new(info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> Self {
        let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
            (false, false) => format!("{} {}", info.driver, info.driver_info),
            (false, true) => info.driver.clone(),
            (true, _) => info.driver_info.clone(),
        };
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver,
            is_software: info.device_type == wgpu::DeviceType::Cpu,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        }
    }

    /// One line for logs and reports: name, API, kind.
    pub fn label(&self) -> String {
        format!("{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// A wgpu device and queue with what emgpu needs to know about them.
pub struct GpuContext {
    /// The instance the adapter came from (kept alive with the device).
    _instance: Option<wgpu::Instance>,
    /// The adapter.
    adapter: wgpu::Adapter,
    /// The logical device.
    device: wgpu::Device,
    /// Its queue.
    queue: wgpu::Queue,
    /// The adapter's description.
    info: wgpu::AdapterInfo,
    /// The limits the device was created with (what validation allows).
    limits: wgpu::Limits,
    /// Kernel build options and engine defaults.
    options: GpuContextOptions,
    /// `(j, n)` when the shared context took hardware adapter j of the n present
    /// ([`SharedAdapter::HardwareModulo`]).
    hardware_slot: Option<(usize, usize)>,
    pipelines: Mutex<HashMap<String, Arc<KernelPipeline>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("device_type", &self.info.device_type)
            .finish_non_exhaustive()
    }
}

/// Loop iterations per invocation that kernels plan for on llvmpipe: its hard limit is 65 535
/// ([`GpuContext::loop_budget`]); the kernels' estimates are upper bounds, and this leaves a
/// further margin for loops they do not count (a handful per kernel).
const LLVMPIPE_LOOP_BUDGET: u64 = 60_000;

/// Why the shared context could not be built (kept, since `Error` is not `Clone`).
#[derive(Debug, Clone)]
enum SharedError {
    NoAdapter,
    Device(String),
}

impl From<&SharedError> for Error {
    fn from(e: &SharedError) -> Self {
        match e {
            SharedError::NoAdapter => Error::NoAdapter,
            SharedError::Device(m) => Error::Gpu(m.clone()),
        }
    }
}

/// Which adapter [`GpuContext::shared`] takes ([`GpuContext::configure_shared_adapter`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedAdapter {
    /// The adapter `WGPU_ADAPTER_NAME` names when that variable is set, else the best ranked
    /// ([`preferred_adapter`]).
    #[default]
    Preferred,
    /// Hardware adapter `i mod n` of the `n` hardware (not software) adapters present, on the
    /// API of the best ranked one, best ranked first (ties in enumeration order): one GPU per
    /// process of a node, process `i` (its rank on the node) on GPU `i mod n`. When
    /// `WGPU_ADAPTER_NAME` is set, the adapter it names; with no hardware adapter, as
    /// [`SharedAdapter::Preferred`] (a software one, if any).
    HardwareModulo(usize),
}

static SHARED: OnceLock<std::result::Result<Arc<GpuContext>, SharedError>> = OnceLock::new();
/// The adapter the shared context takes (set at most once, before it is built).
static SHARED_ADAPTER: OnceLock<SharedAdapter> = OnceLock::new();
/// The options the shared context is built with (set at most once, before it is built).
static SHARED_OPTIONS: OnceLock<GpuContextOptions> = OnceLock::new();

impl GpuContext {
    /// The process's context, built on first use from [`preferred_adapter`]'s choice.
    ///
    /// [`Error::NoAdapter`] when wgpu finds no adapter; [`Error::Gpu`] when the device request
    /// fails. The outcome is cached: later calls return the same context or the same error.
    pub fn shared() -> Result<Arc<GpuContext>> {
        SHARED
            .get_or_init(|| {
                let instance = new_instance();
                let (adapter, slot) = pick_adapter(&instance).ok_or(SharedError::NoAdapter)?;
                let options = SHARED_OPTIONS.get_or_init(GpuContextOptions::default);
                Self::create(instance, adapter).map(|mut ctx| {
                    ctx.hardware_slot = slot;
                    Arc::new(ctx.with_options(*options))
                })
            })
            .as_ref()
            .map(Arc::clone)
            .map_err(Error::from)
    }

    /// Sets the options of the shared context ([`GpuContext::shared`]). Call it before anything
    /// uses the shared context (the command line does, first thing); calling it again with the
    /// same options is harmless. An error when the shared context already runs with other
    /// options (it has compiled kernels and built engines with them).
    pub fn configure_shared(options: GpuContextOptions) -> Result<()> {
        let set = SHARED_OPTIONS.get_or_init(|| options);
        if *set == options {
            Ok(())
        } else {
            Err(Error::param(format!(
                "the shared GPU context is already configured with {set:?}; configure it once, before its first use"
            )))
        }
    }

    /// Sets which adapter the shared context ([`GpuContext::shared`]) takes. Call it before
    /// anything uses the shared context (the command line does, under `mpirun`: each rank
    /// takes hardware adapter (its rank on the node) mod (their number)); calling it again with
    /// the same choice is harmless. An error when another choice was set first.
    pub fn configure_shared_adapter(choice: SharedAdapter) -> Result<()> {
        let set = SHARED_ADAPTER.get_or_init(|| choice);
        if *set == choice {
            Ok(())
        } else {
            Err(Error::param(format!(
                "the shared GPU context's adapter is already chosen ({set:?}); choose it once, before its first use"
            )))
        }
    }

    /// `(j, n)` when this context is the shared one and took hardware adapter `j` of the `n`
    /// present by [`SharedAdapter::HardwareModulo`]; `None` otherwise (the preferred adapter,
    /// `WGPU_ADAPTER_NAME`'s, or no hardware adapter).
    pub fn hardware_slot(&self) -> Option<(usize, usize)> {
        self.hardware_slot
    }

    /// A new context (its own device and queue) on the adapter at `index` in [`adapters`]'s
    /// order, with default options, so that each process or thread can use a GPU of its own.
    /// [`Error::InvalidParameter`] when there is no such adapter; [`Error::Gpu`] when the device
    /// request fails.
    pub fn for_adapter(index: usize) -> Result<Arc<GpuContext>> {
        let instance = new_instance();
        let mut all = all_adapters(&instance);
        if index >= all.len() {
            return Err(Error::param(format!(
                "there is no GPU adapter {index}: wgpu sees {} (list them with `adapters()`)",
                all.len()
            )));
        }
        let adapter = all.swap_remove(index);
        Self::create(instance, adapter)
            .map(Arc::new)
            .map_err(|e| Error::from(&e))
    }

    /// A device on `adapter` with its own limits, subgroups where it has them.
    fn create(
        instance: wgpu::Instance,
        adapter: wgpu::Adapter,
    ) -> std::result::Result<Self, SharedError> {
        let info = adapter.get_info();
        let desc = wgpu::DeviceDescriptor {
            label: Some("emgpu"),
            // Subgroup operations where the adapter has them (the `sg` kernel variant uses them;
            // every kernel has a form without them).
            required_features: adapter.features() & wgpu::Features::SUBGROUP,
            // The adapter's own limits: the biggest bindings, buffers and workgroup memory this
            // hardware (or driver) allows, not WebGPU's portable defaults.
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            SharedError::Device(format!(
                "the adapter {} refused a device: {e}; update the driver, or use the CPU backend",
                info.name
            ))
        })?;
        // Our own device: errors outside a scope are logged instead of wgpu's default panic.
        install_error_handler(&device);
        let mut ctx = Self::from_wgpu(adapter, device, queue);
        ctx._instance = Some(instance);
        Ok(ctx)
    }

    /// Wraps a device the caller already has. Its limits are the device's (what it was requested
    /// with), so request the adapter's limits when large data is to be fitted. The caller's
    /// uncaptured-error handler is left alone: emgpu's own operations run inside error scopes.
    pub fn from_wgpu(adapter: wgpu::Adapter, device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = adapter.get_info();
        let limits = device.limits();
        Self {
            _instance: None,
            adapter,
            device,
            queue,
            info,
            limits,
            options: GpuContextOptions::default(),
            hardware_slot: None,
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    /// The context with `options` (before any kernel is built on it: the options decide how
    /// kernels compile).
    pub fn with_options(mut self, options: GpuContextOptions) -> Self {
        self.options = options;
        self
    }

    /// The options kernels and engines built on this context follow.
    pub fn options(&self) -> &GpuContextOptions {
        &self.options
    }

    /// The adapter.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.adapter
    }

    /// The logical device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The device's queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter's description (name, API, kind, driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits the device was created with (what validation allows).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether the adapter is a software implementation on the CPU (such as Mesa's llvmpipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The most loop iterations one invocation of a kernel may run, when the driver has such a
    /// limit: Mesa's llvmpipe (lavapipe) counts the back edges of every loop of a shader
    /// invocation in one shared counter and silently ends all loops once it reaches 65 535
    /// (`LP_MAX_TGSI_LOOP_ITERATIONS`, "shared between every loop"), so a kernel that needs
    /// more returns wrong numbers. `None`: no such limit (hardware drivers).
    pub fn loop_budget(&self) -> Option<u64> {
        self.info
            .name
            .contains("llvmpipe")
            .then_some(LLVMPIPE_LOOP_BUDGET)
    }

    /// The adapter's description with the device's limits.
    pub fn summary(&self) -> AdapterSummary {
        AdapterSummary::new(&self.info, &self.limits)
    }

    /// The smallest and largest subgroup size when the device was created with subgroup
    /// operations (`wgpu::Features::SUBGROUP`), else `None`.
    pub fn subgroup_sizes(&self) -> Option<(u32, u32)> {
        self.device
            .features()
            .contains(wgpu::Features::SUBGROUP)
            .then_some((self.info.subgroup_min_size, self.info.subgroup_max_size))
    }

    /// The device's name for reports: adapter name, API and kind.
    pub fn device_label(&self) -> String {
        self.summary().label()
    }

    /// A compute pipeline from cache, or built by `build` and cached under `key` (the kernel's
    /// name with everything its source was specialized on).
    pub(crate) fn pipeline(
        &self,
        key: &str,
        build: impl FnOnce() -> Result<KernelPipeline>,
    ) -> Result<Arc<KernelPipeline>> {
        if let Some(p) = self.lock_pipelines().get(key) {
            return Ok(Arc::clone(p));
        }
        // Built outside the lock: compiling can take a while and must not block other threads'
        // look-ups. Two threads may build the same pipeline once each; the first one is kept.
        let built = Arc::new(build()?);
        Ok(Arc::clone(
            self.lock_pipelines()
                .entry(key.to_string())
                .or_insert(built),
        ))
    }

    fn lock_pipelines(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<KernelPipeline>>> {
        // A poisoned cache only means another thread panicked while holding it; the map itself
        // is always consistent (one insert).
        self.pipelines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` and turns any validation or out-of-memory error the device raised meanwhile into
    /// an `Err` (wgpu reports them asynchronously, and would otherwise panic).
    pub(crate) fn checked<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        let out = out?;
        if let Some(e) = o {
            return Err(Error::DeviceLimits(format!(
                "{what}: the GPU ran out of memory ({e}); use smaller chunks or the CPU backend"
            )));
        }
        if let Some(e) = v {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        Ok(out)
    }
}

/// An uncaptured device error (outside any error scope) of the shared device is logged to stderr
/// instead of wgpu's default panic; the operation that caused it reports failure through its own
/// checks.
fn install_error_handler(device: &wgpu::Device) {
    device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
        eprintln!("emgpu: uncaptured GPU error: {e}");
    }));
}

fn new_instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Rank of an adapter: lower is preferred.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    rank_of(info.device_type, info.backend)
}

/// [`rank`] of an adapter of this kind on this API.
fn rank_of(device_type: wgpu::DeviceType, backend: wgpu::Backend) -> (u8, u8) {
    let kind = match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    // Native compute APIs before OpenGL (whose compute support is the narrowest).
    let api = match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, api)
}

/// The hardware (not software) adapters among `kinds` (each adapter's kind and API, in
/// enumeration order), one entry per GPU: those on the API of the best ranked one (a GPU seen
/// through Vulkan and OpenGL counts once), best ranked first, ties in enumeration order.
fn hardware_order(kinds: &[(wgpu::DeviceType, wgpu::Backend)]) -> Vec<usize> {
    let mut hardware: Vec<usize> = (0..kinds.len())
        .filter(|&i| kinds[i].0 != wgpu::DeviceType::Cpu)
        .collect();
    hardware.sort_by_key(|&i| (rank_of(kinds[i].0, kinds[i].1), i));
    if let Some(&best) = hardware.first() {
        let api = kinds[best].1;
        hardware.retain(|&i| kinds[i].1 == api);
    }
    hardware
}

fn all_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// The adapter the shared context uses (see [`SharedAdapter`]): the one whose name contains
/// `WGPU_ADAPTER_NAME` (case-insensitive) when that variable is set; else, for
/// [`SharedAdapter::HardwareModulo`], that hardware adapter (with its slot `(j, n)`); else the
/// best ranked (discrete, integrated, virtual, other, software; native APIs before OpenGL;
/// enumeration order breaks ties).
fn pick_adapter(instance: &wgpu::Instance) -> Option<(wgpu::Adapter, Option<(usize, usize)>)> {
    let mut adapters = all_adapters(instance);
    if let Ok(want) = std::env::var("WGPU_ADAPTER_NAME") {
        let want = want.to_lowercase();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&want))
            .map(|a| (a, None));
    }
    let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
    if let Some(SharedAdapter::HardwareModulo(i)) = SHARED_ADAPTER.get().copied() {
        let kinds: Vec<_> = infos.iter().map(|a| (a.device_type, a.backend)).collect();
        let hardware = hardware_order(&kinds);
        if !hardware.is_empty() {
            let j = i % hardware.len();
            let adapter = adapters.swap_remove(hardware[j]);
            return Some((adapter, Some((j, hardware.len()))));
        }
    }
    let best = (0..infos.len()).min_by_key(|&i| (rank(&infos[i]), i))?;
    Some((adapters.swap_remove(best), None))
}

/// Every adapter wgpu sees on this machine, in enumeration order, with its limits.
pub fn adapters() -> Vec<AdapterSummary> {
    let instance = new_instance();
    all_adapters(&instance)
        .iter()
        .map(|a| AdapterSummary::new(&a.get_info(), &a.limits()))
        .collect()
}

/// The adapter [`GpuContext::shared`] uses (or would use), without creating a device; `None`
/// when there is none.
pub fn preferred_adapter() -> Option<AdapterSummary> {
    if let Some(Ok(ctx)) = SHARED.get() {
        return Some(AdapterSummary::new(&ctx.info, &ctx.adapter.limits()));
    }
    let instance = new_instance();
    pick_adapter(&instance).map(|(a, _)| AdapterSummary::new(&a.get_info(), &a.limits()))
}

/// What `Backend::Auto` runs on.
#[derive(Debug, Clone)]
pub enum AutoChoice {
    /// A hardware GPU: the shared context.
    Gpu(Arc<GpuContext>),
    /// The CPU backend, and why (no adapter, only a software adapter, or the device failed).
    Cpu {
        /// A sentence for `BackendReport::reason`.
        reason: String,
    },
}

/// The choice of `Backend::Auto`: the shared context when its adapter is a hardware GPU; else
/// the CPU backend, with the reason. A software adapter (llvmpipe) is slower than the CPU
/// backend, so Auto never picks one (`Backend::Gpu` still does).
pub fn auto_choice() -> AutoChoice {
    match GpuContext::shared() {
        Ok(ctx) if ctx.is_software() => AutoChoice::Cpu {
            reason: format!(
                "only a software adapter ({}, {:?}) was found; using the CPU backend, which is faster than it (Backend::Gpu forces it)",
                ctx.adapter_info().name,
                ctx.adapter_info().backend
            ),
        },
        Ok(ctx) => AutoChoice::Gpu(ctx),
        Err(Error::NoAdapter) => AutoChoice::Cpu {
            reason: "no GPU adapter was found; using the CPU backend".into(),
        },
        Err(e) => AutoChoice::Cpu {
            reason: format!("the GPU could not be used ({e}); using the CPU backend"),
        },
    }
}

#[cfg(test)]
mod adapter_order_tests {
    use super::*;
    use wgpu::{Backend as Api, DeviceType as Kind};

    #[test]
    fn hardware_adapters_one_per_gpu_best_first() {
        // Two discrete GPUs through Vulkan and OpenGL, an integrated one, llvmpipe twice.
        let kinds = [
            (Kind::Cpu, Api::Vulkan),
            (Kind::IntegratedGpu, Api::Vulkan),
            (Kind::DiscreteGpu, Api::Vulkan),
            (Kind::DiscreteGpu, Api::Gl),
            (Kind::DiscreteGpu, Api::Vulkan),
            (Kind::Cpu, Api::Gl),
        ];
        assert_eq!(hardware_order(&kinds), [2, 4, 1]);
        // Only software adapters: none (the shared context then takes the preferred one).
        assert!(hardware_order(&[(Kind::Cpu, Api::Vulkan), (Kind::Cpu, Api::Gl)]).is_empty());
        // A GPU only OpenGL sees still counts.
        assert_eq!(
            hardware_order(&[(Kind::Cpu, Api::Vulkan), (Kind::DiscreteGpu, Api::Gl)]),
            [1]
        );
    }
}
