//! The GPU engine: E-steps of a Gaussian mixture with wgpu compute shaders.
//!
//! Built once per fit (or per `predict`/`score` call) over one dataset:
//!
//! 1. **Plan.** The rows are cut into chunks no larger than one storage binding allows
//!    (`max_storage_buffer_binding_size`, `max_buffer_size`, u32 indexing). When the whole data
//!    fits the resident budget every chunk gets its own buffer, uploaded once (data *resident*);
//!    otherwise one chunk-sized buffer is refilled from the host for each chunk at every E-step
//!    (data *streamed*). `chunk_rows` forces streaming with chunks of that size.
//! 2. **Centre.** The data are uploaded as f32 *minus a centre* (the f64 mean of a sample of rows),
//!    so data far from the origin keep their precision in f32; means are sent in the same
//!    coordinates. The statistics do not depend on the coordinates (they are about shifts).
//!    The uploaded data (`GpuData`) are shared with the k-means engine of the fit's
//!    initialization ([`GmmEngine::kmeans_engine`]): one upload per engine, not two.
//! 3. **Per E-step.** Write the parameter buffer (means, log-constants, precision factors: a few
//!    KiB, converted from the f64 [`Prepared`]); one command encoder with, per chunk, the fused
//!    statistics kernel (`gmm_stats_full` or `gmm_stats_diag`: responsibilities and per-workgroup
//!    partial statistics, never an N×K buffer) and the second reduction pass
//!    (`reduce_partials`) into that chunk's slot of a small output buffer; one submit (resident
//!    data; streamed data submit once per chunk after its upload); one readback of the slots.
//!    The host adds the chunks' statistics in f64 and moves them from the f32 shifts the GPU used
//!    to the exact f64 means (a closed-form correction), giving [`GmmStats`] about `Prepared.means`.
//!
//! The engine is built for at most `n_components` components and takes parameters of any number
//! of components up to that (model selection fits every K on one engine): the kernels and the small
//! buffers of one K (parameters, partials, readback) are built when an E-step first asks for that
//! K, replacing those of the previous K; the data stay where they are.
//!
//! Per-point outputs (`log_likelihoods`, `responsibilities`) run the `gmm_points` kernel and read
//! back their N-sized results in slices of bounded size.

use std::sync::{Arc, mpsc};

use wgpu::util::DeviceExt;

use super::gpu_kmeans::GpuKMeansEngine;
use super::{Backend, BackendReport, EngineOptions, GmmEngine, KMeansEngine};
use crate::data::Dataset;
use crate::em::EStep;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::gpu::kernels::{
    ChunkUniform, GmmShape, KernelPipeline, Lse, PointsKernel, ReduceKernel, ReduceUniform,
    StatsKernel,
};
use crate::models::gmm::{CovarianceType, GmmModel, GmmStats, Prepared};

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Resident-data budget on hardware GPUs when none is given (bytes).
const DEFAULT_RESIDENT_BUDGET_HW: u64 = 4 << 30;
/// Resident-data budget on software adapters (their "GPU memory" is host memory).
const DEFAULT_RESIDENT_BUDGET_SW: u64 = 1 << 30;
/// Size of the streaming buffer when data is streamed and no chunk size is given (bytes).
const STREAM_CHUNK_BYTES: u64 = 256 << 20;
/// Most bytes of workgroup partials (one row per workgroup of a statistics dispatch).
pub(super) const PARTIALS_BUDGET: u64 = 256 << 20;
/// Most bytes of per-chunk statistics read back at once.
pub(super) const OUT_BUDGET: u64 = 32 << 20;
/// Most bytes of per-point outputs read back at once.
pub(super) const POINTS_BUDGET: u64 = 64 << 20;
/// Workgroups of a statistics dispatch when there are that many tiles: enough to fill a large
/// GPU several times over (on an H100 at N = 1M, about 1000 workgroups were 2–13% faster than
/// 512 and than 2000).
pub(super) const DEFAULT_MIN_WORKGROUPS: usize = 1024;
/// Rows sampled to compute the centre of the data.
const CENTRE_SAMPLE: usize = 4096;

/// Options of the GPU engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuEngineOptions {
    /// Rows per chunk (capped by the device's binding limits). `None`: as large as the device
    /// allows when resident, 256 MiB of rows when streamed.
    pub chunk_rows: Option<usize>,
    /// `Some(true)`: keep the data on the GPU (one buffer per chunk); `Some(false)`: stream the
    /// chunks at every E-step through one buffer. `None`: resident when the data fits
    /// `resident_budget`.
    pub resident: Option<bool>,
    /// Bytes of data (as f32) kept on the GPU when `resident` is `None`. `None`:
    /// `EMGPU_GPU_RESIDENT_BYTES` if set, else 4 GiB on hardware adapters and 1 GiB on software
    /// ones.
    pub resident_budget: Option<u64>,
    /// Most chunks whose statistics are read back together (one readback per group of chunks).
    /// `None`: all of them, within 32 MiB.
    pub readback_chunks: Option<usize>,
    /// Points per tile of the kernels (a power of two from 4 to 256; shrunk to fit the
    /// adapter's workgroup memory). `None`: 64 for the Gaussian-mixture kernels, 256 for
    /// k-means. A tuning knob for benchmarks.
    pub tile_points: Option<usize>,
    /// Points per invocation of the E-step kernels' log-density loop: 4 (default; each parameter
    /// read serves four points) or 2 (half the registers). A tuning knob for benchmarks.
    pub e_step_points: Option<usize>,
    /// Minimum number of workgroups of a statistics dispatch (when there are that many tiles).
    /// `None`: 1024, enough to fill a large GPU. A tuning knob for benchmarks.
    pub min_workgroups: Option<usize>,
    /// Which forms of the Gaussian-mixture kernels to build. `None`: `EMGPU_GPU_VARIANT` if set
    /// (parsed by [`GpuVariant`]'s `FromStr`), else [`GpuVariant::recommended`]. A tuning knob for
    /// benchmarks.
    pub variant: Option<GpuVariant>,
}

/// Forms of the Gaussian-mixture kernels (tuning variants; every one computes the same
/// statistics and passes the same tests). Written as a `+`-separated list of flags, `base` for
/// none: `lse`, `sg`, `stage`, `red`, and `tN` / `pN` for the tile and the points per E-step
/// invocation (e.g. `stage+sg+red`, `stage+sg+p4`, `sg+t128`); see each field. Where the device
/// or the shape cannot run a flag, the engine uses the next plainer form
/// ([`GpuGmmEngine::kernel_variant`] says what ran).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct GpuVariant {
    /// `lse`: the log-sum-exp of each point on up to 4 invocations (partial maxima and sums
    /// exchanged through workgroup memory, two more barriers per tile) instead of one
    /// invocation per point walking all K components while the rest of the workgroup waits.
    pub parallel_lse: bool,
    /// `sg`: as `lse`, exchanging with subgroup shuffles (no workgroup memory, no extra
    /// barrier); `lse` where the device has no subgroup operations.
    pub subgroups: bool,
    /// `stage` (full and tied only): √r·(x − s) of every point and component staged in
    /// workgroup memory once per tile, so that the second-moment blocks are plain outer
    /// products (two 16-byte loads per 16 FMAs); tiles of 32 points.
    pub staged: bool,
    /// `red`: the reduction pass with 16 columns × 16 lanes per workgroup and four loads in
    /// flight per invocation (instead of 32 × 8 and one).
    pub wide_reduce: bool,
    /// `tN`: points per tile, as [`GpuEngineOptions::tile_points`] (which wins when set).
    pub tile_points: Option<u16>,
    /// `pN` (2 or 4): points per E-step invocation, as [`GpuEngineOptions::e_step_points`]
    /// (which wins when set).
    pub e_step_points: Option<u8>,
}

impl std::str::FromStr for GpuVariant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut v = GpuVariant::default();
        for flag in s.split(['+', ',']).map(str::trim).filter(|f| !f.is_empty()) {
            match flag {
                "base" => {}
                "lse" => v.parallel_lse = true,
                "sg" => v.subgroups = true,
                "stage" => v.staged = true,
                "red" => v.wide_reduce = true,
                f if f.len() > 1
                    && f.starts_with('t')
                    && f[1..].parse::<u16>().is_ok_and(|t| (4..=256).contains(&t)) =>
                {
                    v.tile_points = f[1..].parse().ok();
                }
                "p2" => v.e_step_points = Some(2),
                "p4" => v.e_step_points = Some(4),
                other => {
                    return Err(Error::param(format!(
                        "unknown GPU kernel variant flag {other:?} in {s:?}; use base or a '+'-separated list of lse, sg, stage, red, t4..t256, p2, p4"
                    )));
                }
            }
        }
        Ok(v)
    }
}

impl std::fmt::Display for GpuVariant {
    /// The flags joined by `+` (`base` for none), as `FromStr` reads them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut flags: Vec<String> = [
            (self.parallel_lse, "lse"),
            (self.subgroups, "sg"),
            (self.staged, "stage"),
            (self.wide_reduce, "red"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_string())
        .collect();
        flags.extend(self.tile_points.map(|t| format!("t{t}")));
        flags.extend(self.e_step_points.map(|p| format!("p{p}")));
        if flags.is_empty() {
            f.write_str("base")
        } else {
            f.write_str(&flags.join("+"))
        }
    }
}

impl GpuVariant {
    /// `options.variant`, else `EMGPU_GPU_VARIANT`, else the default.
    fn resolve(options: &GpuEngineOptions) -> Result<Self> {
        match options.variant {
            Some(v) => Ok(v),
            None => match std::env::var("EMGPU_GPU_VARIANT") {
                Ok(s) => s.parse().map_err(|e| match e {
                    Error::InvalidParameter(m) => Error::param(format!("EMGPU_GPU_VARIANT: {m}")),
                    other => other,
                }),
                Err(_) => Ok(Self::recommended()),
            },
        }
    }

    /// What runs when nothing is asked for: `sg` (the log-sum-exp split over subgroup lanes;
    /// `lse` where the device has no subgroups). On an NVIDIA H100 (1M points, D = K = 16) it took
    /// the E-step from 1.32–1.35 ms to 1.24 ms (full) and from 0.45–0.47 ms to 0.35 ms (diag);
    /// see docs/gpu_tuning.md. [`GpuVariant::default`] is `base`, the plain kernels.
    pub fn recommended() -> Self {
        Self {
            subgroups: true,
            ..Self::default()
        }
    }
}

impl From<EngineOptions> for GpuEngineOptions {
    /// `EngineOptions::chunk_rows` smaller than N means streamed chunks of that size.
    fn from(o: EngineOptions) -> Self {
        Self {
            chunk_rows: o.chunk_rows,
            resident: o.chunk_rows.map(|_| false),
            resident_budget: None,
            readback_chunks: None,
            tile_points: None,
            e_step_points: None,
            min_workgroups: None,
            variant: None,
        }
    }
}

/// One dispatch range of the data.
pub(crate) struct DataChunk {
    /// First row in the dataset.
    pub start: usize,
    /// Rows.
    pub rows: usize,
    /// The chunk's own buffer when the data is resident.
    buffer: Option<wgpu::Buffer>,
}

/// Host buffers reused by streamed uploads (one set per engine).
#[derive(Default)]
pub(crate) struct Scratch {
    f64s: Vec<f64>,
    f32s: Vec<f32>,
}

/// One dataset on the GPU, as f32 minus a centre, in chunks: resident (one buffer per chunk,
/// uploaded once) or streamed (one buffer refilled for each chunk). Shared by the engines over
/// the same data (a Gaussian mixture's and its k-means initialization's).
pub(crate) struct GpuData<'a> {
    /// The device.
    pub ctx: Arc<GpuContext>,
    /// The data on the host.
    pub data: &'a Dataset<'a>,
    /// Subtracted from every row before the f32 conversion, `[D]`.
    pub centre: Vec<f64>,
    /// The chunks, in row order.
    pub chunks: Vec<DataChunk>,
    /// The buffer streamed chunks are uploaded into (None when resident).
    stream: Option<wgpu::Buffer>,
}

impl<'a> GpuData<'a> {
    /// Plans the chunks of `data` on `ctx`'s device and uploads them when they are to be
    /// resident (see the module docs).
    pub fn new(
        ctx: Arc<GpuContext>,
        data: &'a Dataset<'a>,
        options: &GpuEngineOptions,
    ) -> Result<Self> {
        let (n, d) = (data.n_samples(), data.n_features());
        if n == 0 || d == 0 {
            return Err(Error::EmptyData {
                n_samples: n,
                n_features: d,
            });
        }
        let centre = data_centre(data);
        let ctx2 = Arc::clone(&ctx);
        ctx2.checked("uploading the data to the GPU", move || {
            Self::upload(ctx, data, centre, options)
        })
    }

    fn upload(
        ctx: Arc<GpuContext>,
        data: &'a Dataset<'a>,
        centre: Vec<f64>,
        options: &GpuEngineOptions,
    ) -> Result<Self> {
        let (n, d) = (data.n_samples(), data.n_features());
        let device = &ctx.device;
        let limits = &ctx.limits;
        let row_bytes = 4 * d as u64;
        let max_bind = max_binding(limits);
        // Kernels index the bound data with u32: keep every chunk under 2^31 floats.
        let max_rows = (max_bind / row_bytes).min((1u64 << 31) / d as u64) as usize;
        if max_rows == 0 {
            return Err(Error::DeviceLimits(format!(
                "one row of {d} features ({row_bytes} bytes) exceeds the device's largest storage binding ({max_bind} bytes); use the CPU backend"
            )));
        }
        let budget = options
            .resident_budget
            .or_else(|| {
                std::env::var("EMGPU_GPU_RESIDENT_BYTES")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(if ctx.is_software() {
                DEFAULT_RESIDENT_BUDGET_SW
            } else {
                DEFAULT_RESIDENT_BUDGET_HW
            });
        let fits = n as u64 * row_bytes <= budget;
        let chunk_rows = match options.chunk_rows {
            Some(0) => return Err(Error::param("chunk_rows must be at least 1")),
            Some(r) => r.min(max_rows),
            None => max_rows,
        };
        // Streamed only when asked for with chunks smaller than the data, or when the data
        // does not fit the budget.
        let resident = match options.resident {
            Some(r) => r || chunk_rows >= n,
            None => fits,
        };
        let chunk_rows = if !resident && options.chunk_rows.is_none() {
            ((STREAM_CHUNK_BYTES / row_bytes) as usize).clamp(1, max_rows)
        } else {
            chunk_rows
        };
        // Resident chunks of equal size.
        let chunk_rows = if resident {
            n.div_ceil(n.div_ceil(chunk_rows))
        } else {
            chunk_rows.min(n)
        };
        let n_chunks = n.div_ceil(chunk_rows);
        let stream = if resident {
            None
        } else {
            Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("streamed chunk"),
                size: chunk_rows as u64 * row_bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        };
        let mut chunks = Vec::with_capacity(n_chunks);
        for c in 0..n_chunks {
            let start = c * chunk_rows;
            let rows = chunk_rows.min(n - start);
            let buffer = if resident {
                Some(upload_resident(device, data, &centre, start, rows)?)
            } else {
                None
            };
            chunks.push(DataChunk {
                start,
                rows,
                buffer,
            });
        }
        if resident {
            // Flush the uploads now rather than with the first E-step.
            ctx.queue.submit([]);
        }
        Ok(Self {
            ctx,
            data,
            centre,
            chunks,
            stream,
        })
    }

    /// Whether the data stays on the GPU between iterations (else it is streamed every time).
    pub fn is_resident(&self) -> bool {
        self.stream.is_none()
    }

    /// The buffer chunk `c` is read from by the kernels (its own, or the streaming buffer).
    pub fn buffer(&self, c: usize) -> &wgpu::Buffer {
        match (&self.chunks[c].buffer, &self.stream) {
            (Some(b), _) | (None, Some(b)) => b,
            (None, None) => unreachable!("a chunk is resident or streamed"),
        }
    }

    /// The distinct data buffers: one per chunk when resident, the streaming buffer otherwise.
    pub fn buffers(&self) -> Vec<&wgpu::Buffer> {
        match &self.stream {
            Some(s) => vec![s],
            None => self
                .chunks
                .iter()
                .filter_map(|c| c.buffer.as_ref())
                .collect(),
        }
    }

    /// Rows of the largest chunk.
    pub fn max_chunk_rows(&self) -> usize {
        self.chunks.iter().map(|c| c.rows).max().unwrap_or(1)
    }

    /// Uploads streamed chunk `c` (rows minus the centre, as f32) into the streaming buffer; the
    /// copy happens at the next submit, after the work already submitted. Nothing when resident.
    pub fn upload_stream(&self, c: usize, scratch: &mut Scratch) {
        let Some(buf) = &self.stream else {
            return;
        };
        let (start, rows) = (self.chunks[c].start, self.chunks[c].rows);
        let d = self.centre.len();
        scratch.f64s.resize(rows * d, 0.0);
        scratch.f32s.resize(rows * d, 0.0);
        convert_rows(
            self.data,
            &self.centre,
            start,
            &mut scratch.f64s,
            &mut scratch.f32s,
        );
        self.ctx
            .queue
            .write_buffer(buf, 0, bytemuck::cast_slice(&scratch.f32s));
    }
}

/// The largest storage binding the device allows (bytes).
pub(super) fn max_binding(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

/// `(tiles, workgroups)` of a dispatch over `rows` rows in tiles of `tile` points: enough
/// workgroups to fill a large GPU (`min_workgroups`), few enough tiles each that every
/// invocation's f32 sums stay short (at most `max_tiles` tiles per workgroup when there are
/// enough workgroups), within `max_groups`.
/// A storage buffer for the per-workgroup partial rows (`p_bytes` each) of the largest chunk of
/// `gd`, with `groups_of(rows)` giving a chunk's dispatch (its `.1`: the workgroups).
pub(super) fn partials_buffer(
    device: &wgpu::Device,
    gd: &GpuData,
    groups_of: &dyn Fn(usize) -> (u32, u32),
    p_bytes: u64,
    label: &str,
) -> wgpu::Buffer {
    let chunk_groups = gd
        .chunks
        .iter()
        .map(|c| groups_of(c.rows).1 as u64)
        .max()
        .unwrap_or(1);
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (chunk_groups * p_bytes).max(4),
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

pub(super) fn groups_for(
    rows: usize,
    tile: usize,
    max_tiles: usize,
    min_workgroups: Option<usize>,
    max_groups: usize,
) -> (u32, u32) {
    let tiles = rows.div_ceil(tile);
    let groups = tiles
        .min(
            tiles
                .div_ceil(max_tiles.max(1))
                .max(min_workgroups.unwrap_or(DEFAULT_MIN_WORKGROUPS)),
        )
        .min(max_groups);
    (tiles as u32, groups as u32)
}

/// The statistics kernel and reduction pass of one chunk, bound to its buffers.
struct ChunkBinds {
    /// Workgroups of the statistics kernel (x).
    groups: u32,
    stats_bind: wgpu::BindGroup,
    reduce_bind: wgpu::BindGroup,
}

/// The per-point kernel with its buffers, built on the first per-point request.
struct PointsState {
    kernel: PointsKernel,
    uniform: wgpu::Buffer,
    log_px: wgpu::Buffer,
    resp: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Rows per readback.
    rows: usize,
    /// One bind group per chunk (resident), or one on the streaming buffer.
    binds: Vec<wgpu::BindGroup>,
}

/// The kernels and buffers of one number of components: built for the engine's K, rebuilt when
/// an E-step asks for another K.
struct Kernels {
    shape: GmmShape,
    stats: StatsKernel,
    reduce: ReduceKernel,
    params: wgpu::Buffer,
    /// Workgroup partials (bound in the chunks' bind groups; kept for clarity of ownership).
    _partials: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Chunk results per readback.
    slots: usize,
    /// One per data chunk.
    binds: Vec<ChunkBinds>,
    points: Option<PointsState>,
}

impl Kernels {
    /// Compiles (or takes from the context's cache) the kernels for `k` components of
    /// `covariance_type` and allocates their buffers over `gd`'s chunks.
    fn new(
        gd: &GpuData,
        covariance_type: CovarianceType,
        k: usize,
        options: &GpuEngineOptions,
    ) -> Result<Self> {
        let ctx = &gd.ctx;
        let d = gd.centre.len();
        let variant = GpuVariant::resolve(options)?;
        let mut shape = GmmShape::with_variant(
            covariance_type,
            k,
            d,
            options.tile_points.or(variant.tile_points.map(usize::from)),
            &ctx.limits,
            &variant,
            ctx.subgroup_sizes(),
        )?;
        shape.ppt = match options
            .e_step_points
            .or(variant.e_step_points.map(usize::from))
        {
            None => shape.ppt,
            Some(4) => 4,
            Some(2) => 2,
            Some(other) => {
                return Err(Error::param(format!(
                    "e_step_points must be 2 or 4, got {other}"
                )));
            }
        };
        let stats = StatsKernel::new(ctx, &shape)?;
        let reduce = ReduceKernel::with_layout(ctx, variant.wide_reduce)?;
        ctx.checked("allocating the GPU buffers", || {
            Self::allocate(gd, shape, stats, reduce, options)
        })
    }

    fn allocate(
        gd: &GpuData,
        shape: GmmShape,
        stats: StatsKernel,
        reduce: ReduceKernel,
        options: &GpuEngineOptions,
    ) -> Result<Self> {
        let ctx = &gd.ctx;
        let device = &ctx.device;
        let limits = &ctx.limits;
        let d = shape.d;
        let max_bind = max_binding(limits);
        let n_chunks = gd.chunks.len();

        // ---- partials, output slots, staging
        let p = stats.partial_len;
        let p_bytes = 4 * p as u64;
        let max_groups = (PARTIALS_BUDGET.min(max_bind) / p_bytes)
            .min(limits.max_compute_workgroups_per_dimension as u64)
            as usize;
        if max_groups == 0 {
            return Err(Error::DeviceLimits(format!(
                "the statistics of {} components of {d} features ({p_bytes} bytes per workgroup) exceed the device's storage binding; use the CPU backend",
                shape.k
            )));
        }
        // At most 64 tiles per workgroup when there are enough workgroups.
        let groups_of =
            |rows: usize| groups_for(rows, shape.tile, 64, options.min_workgroups, max_groups);
        let partials = partials_buffer(device, gd, &groups_of, p_bytes, "gmm partials");
        let slots = n_chunks
            .min((OUT_BUDGET / p_bytes).max(1) as usize)
            .min(options.readback_chunks.unwrap_or(usize::MAX).max(1));
        let out_bytes = slots as u64 * p_bytes;
        let out = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gmm chunk statistics"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gmm statistics readback"),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gmm parameters"),
            size: 4 * shape.params_len() as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        // ---- per-chunk bind groups
        let mut binds = Vec::with_capacity(n_chunks);
        for (c, chunk) in gd.chunks.iter().enumerate() {
            let (tiles, groups) = groups_of(chunk.rows);
            let chunk_uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("gmm chunk"),
                contents: bytemuck::bytes_of(&ChunkUniform {
                    n_rows: chunk.rows as u32,
                    row_offset: 0,
                    n_tiles: tiles,
                    flags: 0,
                }),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let reduce_uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("gmm reduce"),
                contents: bytemuck::bytes_of(&ReduceUniform {
                    n_rows: groups,
                    n_cols: p as u32,
                    out_offset: ((c % slots) * p) as u32,
                    _pad: 0,
                }),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let stats_bind = bind(
                device,
                &stats.kernel,
                &[&chunk_uniform, gd.buffer(c), &params, &partials],
            );
            let reduce_bind = bind(device, &reduce.kernel, &[&reduce_uniform, &partials, &out]);
            binds.push(ChunkBinds {
                groups,
                stats_bind,
                reduce_bind,
            });
        }
        Ok(Self {
            shape,
            stats,
            reduce,
            params,
            _partials: partials,
            out,
            staging,
            slots,
            binds,
            points: None,
        })
    }
}

/// E-steps of a Gaussian mixture on a GPU, over one dataset.
pub struct GpuGmmEngine<'a> {
    gd: Arc<GpuData<'a>>,
    covariance_type: CovarianceType,
    /// The most components an E-step may ask for.
    max_components: usize,
    options: GpuEngineOptions,
    /// The kernels and buffers of the last K asked for.
    kernels: Kernels,
    scratch: Scratch,
    /// The k-means engine over the same uploaded data (built on first request).
    kmeans: Option<GpuKMeansEngine<'a>>,
    reason: String,
}

impl<'a> GpuGmmEngine<'a> {
    /// An engine over `data` for up to `n_components` components of `covariance_type`, on
    /// `ctx`'s device; `reason` is reported by [`GmmEngine::report`] (why this backend was
    /// chosen).
    ///
    /// Compiles (or takes from the context's cache) the kernels for `n_components`, uploads the
    /// data when it is to be resident, and allocates every buffer the E-steps use. E-steps with
    /// fewer components build their (small) kernels and buffers when first asked for.
    pub fn new(
        ctx: Arc<GpuContext>,
        data: &'a Dataset<'a>,
        covariance_type: CovarianceType,
        n_components: usize,
        options: GpuEngineOptions,
        reason: String,
    ) -> Result<Self> {
        let (n, d) = (data.n_samples(), data.n_features());
        if n == 0 || d == 0 {
            return Err(Error::EmptyData {
                n_samples: n,
                n_features: d,
            });
        }
        if n_components == 0 {
            return Err(Error::param("n_components must be at least 1"));
        }
        // The shape first: a K or D the device cannot take fails before the upload.
        GmmShape::new(
            covariance_type,
            n_components,
            d,
            options.tile_points,
            &ctx.limits,
        )?;
        let gd = GpuData::new(ctx, data, &options)?;
        let kernels = Kernels::new(&gd, covariance_type, n_components, &options)?;
        Ok(Self {
            gd: Arc::new(gd),
            covariance_type,
            max_components: n_components,
            options,
            kernels,
            scratch: Scratch::default(),
            kmeans: None,
            reason,
        })
    }

    /// Whether the data stays on the GPU between E-steps (else it is streamed every E-step).
    pub fn is_resident(&self) -> bool {
        self.gd.is_resident()
    }

    /// Number of chunks (dispatch ranges) the data is cut into.
    pub fn n_chunks(&self) -> usize {
        self.gd.chunks.len()
    }

    /// Points per tile of the kernels of the last K on this device.
    pub fn tile_points(&self) -> usize {
        self.kernels.shape.tile
    }

    /// The kernel variant the last K runs with on this device: the one asked for
    /// ([`GpuEngineOptions::variant`] or `EMGPU_GPU_VARIANT`) less what the device or the shape
    /// could not run, with the tile and points per E-step invocation it runs with.
    pub fn kernel_variant(&self) -> GpuVariant {
        let s = &self.kernels.shape;
        GpuVariant {
            parallel_lse: s.lse == Lse::Workgroup,
            subgroups: s.lse == Lse::Subgroup,
            staged: s.staged,
            wide_reduce: self.kernels.reduce.wide,
            tile_points: u16::try_from(s.tile).ok(),
            e_step_points: u8::try_from(s.ppt).ok(),
        }
    }

    /// The context the engine runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.gd.ctx
    }

    /// Checks `p`'s shape against the engine's and makes the kernels of its K current.
    fn use_shape_of(&mut self, p: &Prepared) -> Result<()> {
        let d = self.gd.centre.len();
        let (cov, max_k) = (self.covariance_type, self.max_components);
        if p.covariance_type != cov
            || p.n_features != d
            || p.n_components == 0
            || p.n_components > max_k
        {
            return Err(Error::param(format!(
                "the engine was built for up to {max_k} {cov} components of {d} features, the parameters are {} {} of {}",
                p.n_components, p.covariance_type, p.n_features
            )));
        }
        if p.n_components != self.kernels.shape.k {
            self.kernels = Kernels::new(&self.gd, cov, p.n_components, &self.options)?;
        }
        Ok(())
    }

    /// Writes the parameter buffer from `p` and returns the shifts the GPU uses, in the data's
    /// coordinates (the f32-rounded means plus the centre), `[K][D]`.
    fn write_params(&self, p: &Prepared) -> Vec<f64> {
        let s = &self.kernels.shape;
        let centre = &self.gd.centre;
        let (k, d, dp) = (s.k, s.d, s.dp);
        let mut v = vec![0f32; s.params_len()];
        let mut shift = vec![0f64; k * d];
        for c in 0..k {
            for i in 0..d {
                let m = (p.means[c * d + i] - centre[i]) as f32;
                v[c * dp + i] = m;
                shift[c * d + i] = m as f64 + centre[i];
            }
            v[s.off_logc() + c] =
                (p.log_weights[c] + p.log_det[c] - 0.5 * d as f64 * LN_2PI) as f32;
        }
        for (dst, src) in v[s.off_prec()..].iter_mut().zip(&p.prec_chol) {
            *dst = *src as f32;
        }
        self.gd
            .ctx
            .queue
            .write_buffer(&self.kernels.params, 0, bytemuck::cast_slice(&v));
        shift
    }

    fn encode_stats(&self, c: usize, enc: &mut wgpu::CommandEncoder) {
        let kn = &self.kernels;
        let chunk = &kn.binds[c];
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("gmm e-step"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&kn.stats.kernel.pipeline);
        pass.set_bind_group(0, &chunk.stats_bind, &[]);
        pass.dispatch_workgroups(chunk.groups, kn.stats.passes, 1);
        pass.set_pipeline(&kn.reduce.kernel.pipeline);
        pass.set_bind_group(0, &chunk.reduce_bind, &[]);
        let (x, y) = grid(
            kn.stats.partial_len.div_ceil(kn.reduce.cols),
            self.gd.ctx.limits.max_compute_workgroups_per_dimension,
        );
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Runs the statistics of chunks `first..first + count` (all in one submit when resident)
    /// and adds their sums into `sums` in f64.
    fn run_batch(&mut self, first: usize, count: usize, sums: &mut [f64]) -> Result<()> {
        let p = self.kernels.stats.partial_len;
        let bytes = (count * p * 4) as u64;
        let ctx = &self.gd.ctx;
        if self.is_resident() {
            let mut enc = encoder(ctx, "gmm");
            for c in first..first + count {
                self.encode_stats(c, &mut enc);
            }
            enc.copy_buffer_to_buffer(&self.kernels.out, 0, &self.kernels.staging, 0, bytes);
            ctx.queue.submit([enc.finish()]);
        } else {
            for c in first..first + count {
                self.gd.upload_stream(c, &mut self.scratch);
                let mut enc = encoder(ctx, "gmm");
                self.encode_stats(c, &mut enc);
                if c + 1 == first + count {
                    enc.copy_buffer_to_buffer(
                        &self.kernels.out,
                        0,
                        &self.kernels.staging,
                        0,
                        bytes,
                    );
                }
                ctx.queue.submit([enc.finish()]);
            }
        }
        read_back(ctx, &self.kernels.staging, bytes, |v| {
            for row in v.chunks_exact(p) {
                for (s, x) in sums.iter_mut().zip(row) {
                    *s += *x as f64;
                }
            }
        })
    }

    /// Statistics from the summed partial row `v`, about the GPU's shifts `gpu_shift`, moved
    /// to the exact shifts `p.means`.
    fn unpack(&self, v: &[f64], p: &Prepared, gpu_shift: &[f64]) -> GmmStats {
        let s = &self.kernels.shape;
        let (k, d) = (s.k, s.d);
        let mut st = GmmStats::zeros(s.cov, k, d, &p.means);
        st.n_samples = self.gd.data.n_samples() as f64;
        let t = s.tile;
        // Σ log p(x): one column per invocation of a tile.
        st.log_likelihood = v[..t].iter().sum();
        if s.full_s2() {
            // Layout of gmm_stats_full.wgsl: the S2 blocks, then the row pieces.
            let (nb, nb2) = (s.nb(), d.div_ceil(4));
            let nbt = nb2 * (nb2 + 1) / 2;
            let rows = t + 16 * k * nbt;
            // Entry (i, j), i ≤ j < D, of component c's S2.
            let s2 = |c: usize, i: usize, j: usize| -> f64 {
                let (ib, jb) = (i / 4, j / 4);
                let local = ib * nb2 - ib * (ib.saturating_sub(1)) / 2 + (jb - ib);
                v[t + 16 * (c * nbt + local) + 4 * (i % 4) + j % 4]
            };
            // Σ r·(x̃ − s̃)_i, i ≤ D (i = D: Σ r).
            let row = |c: usize, i: usize| -> f64 { v[rows + 4 * (c * nb + i / 4) + i % 4] };
            for c in 0..k {
                st.s0[c] = row(c, d);
                for i in 0..d {
                    st.s1[c * d + i] = row(c, i);
                    for j in i..d {
                        let m = s2(c, i, j);
                        st.s2[c * d * d + i * d + j] = m;
                        st.s2[c * d * d + j * d + i] = m;
                    }
                }
            }
        } else {
            for c in 0..k {
                let e = |i: usize| t + 2 * (c * (d + 1) + i);
                st.s0[c] = v[e(d)];
                for i in 0..d {
                    st.s1[c * d + i] = v[e(i)];
                    st.s2[c * d + i] = v[e(i) + 1];
                }
            }
        }
        // About s_gpu = μ + δ; about μ: with u = x − s_gpu, x − μ = u + δ, so
        // S1 += S0·δ and S2 += S1·δᵀ + δ·S1ᵀ + S0·δ·δᵀ (S1 before its update).
        for c in 0..k {
            let delta: Vec<f64> = (0..d)
                .map(|i| gpu_shift[c * d + i] - p.means[c * d + i])
                .collect();
            if delta.iter().all(|x| *x == 0.0) {
                continue;
            }
            let s0 = st.s0[c];
            let s1: Vec<f64> = st.s1[c * d..(c + 1) * d].to_vec();
            if s.full_s2() {
                for i in 0..d {
                    for j in 0..d {
                        st.s2[c * d * d + i * d + j] +=
                            s1[i] * delta[j] + delta[i] * s1[j] + s0 * delta[i] * delta[j];
                    }
                }
            } else {
                for i in 0..d {
                    st.s2[c * d + i] += 2.0 * s1[i] * delta[i] + s0 * delta[i] * delta[i];
                }
            }
            for i in 0..d {
                st.s1[c * d + i] += s0 * delta[i];
            }
        }
        st
    }

    fn points_state(&mut self) -> Result<()> {
        if self.kernels.points.is_none() {
            let state = self.build_points()?;
            self.kernels.points = Some(state);
        }
        Ok(())
    }

    fn build_points(&self) -> Result<PointsState> {
        let ctx = &self.gd.ctx;
        let kn = &self.kernels;
        let kernel = PointsKernel::new(ctx, &kn.shape)?;
        ctx.checked("allocating the per-point GPU buffers", || {
            let device = &ctx.device;
            let k = kn.shape.k as u64;
            let max_chunk = self.gd.max_chunk_rows() as u64;
            let max_bind = max_binding(&ctx.limits);
            let rows = (POINTS_BUDGET / (4 * (k + 1)))
                .min(max_bind / (4 * k))
                .min(max_chunk)
                .max(1);
            let storage = |label, size| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            };
            let log_px = storage("gmm log p(x)", 4 * rows);
            let resp = storage("gmm responsibilities", 4 * rows * k);
            let staging = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gmm per-point readback"),
                size: 4 * rows * (k + 1),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gmm points chunk"),
                size: std::mem::size_of::<ChunkUniform>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let binds = self
                .gd
                .buffers()
                .into_iter()
                .map(|b| {
                    bind(
                        device,
                        &kernel.kernel,
                        &[&uniform, b, &kn.params, &log_px, &resp],
                    )
                })
                .collect();
            Ok(PointsState {
                kernel,
                uniform,
                log_px,
                resp,
                staging,
                rows: rows as usize,
                binds,
            })
        })
    }

    /// log p(x) and/or responsibilities of every point under `p`.
    fn point_outputs(
        &mut self,
        p: &Prepared,
        mut log_px: Option<&mut [f64]>,
        mut resp: Option<&mut [f64]>,
    ) -> Result<()> {
        self.use_shape_of(p)?;
        let (n, k) = (self.gd.data.n_samples(), self.kernels.shape.k);
        if log_px.as_ref().is_some_and(|o| o.len() != n)
            || resp.as_ref().is_some_and(|o| o.len() != n * k)
        {
            return Err(Error::param(format!(
                "output buffers must hold {n} log-likelihoods or {n}×{k} responsibilities"
            )));
        }
        self.points_state()?;
        let gd = Arc::clone(&self.gd);
        let ctx = &gd.ctx;
        ctx.checked("per-point GPU outputs", || {
            self.write_params(p);
            let want_resp = resp.is_some();
            let tile = self.kernels.shape.tile;
            for c in 0..gd.chunks.len() {
                gd.upload_stream(c, &mut self.scratch);
                let (start, rows) = (gd.chunks[c].start, gd.chunks[c].rows);
                let Some(state) = self.kernels.points.as_ref() else {
                    unreachable!("built above")
                };
                let bind = &state.binds[if gd.is_resident() { c } else { 0 }];
                let mut r0 = 0;
                while r0 < rows {
                    let m = state.rows.min(rows - r0);
                    let tiles = m.div_ceil(tile);
                    let uniform = ChunkUniform {
                        n_rows: m as u32,
                        row_offset: r0 as u32,
                        n_tiles: tiles as u32,
                        flags: want_resp as u32,
                    };
                    ctx.queue
                        .write_buffer(&state.uniform, 0, bytemuck::bytes_of(&uniform));
                    let mut enc = encoder(ctx, "gmm points");
                    {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("gmm points"),
                            timestamp_writes: None,
                        });
                        pass.set_pipeline(&state.kernel.kernel.pipeline);
                        pass.set_bind_group(0, bind, &[]);
                        let groups = tiles
                            .min(tiles.div_ceil(16).max(512))
                            .min(ctx.limits.max_compute_workgroups_per_dimension as usize);
                        pass.dispatch_workgroups(groups as u32, 1, 1);
                    }
                    let lp_bytes = 4 * m as u64;
                    let resp_off = 4 * state.rows as u64;
                    enc.copy_buffer_to_buffer(&state.log_px, 0, &state.staging, 0, lp_bytes);
                    if want_resp {
                        enc.copy_buffer_to_buffer(
                            &state.resp,
                            0,
                            &state.staging,
                            resp_off,
                            lp_bytes * k as u64,
                        );
                    }
                    ctx.queue.submit([enc.finish()]);
                    let total = resp_off + lp_bytes * k as u64;
                    let row0 = start + r0;
                    read_back(ctx, &state.staging, total, |v| {
                        if let Some(out) = log_px.as_deref_mut() {
                            for (o, x) in out[row0..row0 + m].iter_mut().zip(&v[..m]) {
                                *o = *x as f64;
                            }
                        }
                        if let Some(out) = resp.as_deref_mut() {
                            let src = &v[state.rows..state.rows + m * k];
                            for (o, x) in out[row0 * k..(row0 + m) * k].iter_mut().zip(src) {
                                *o = *x as f64;
                            }
                        }
                    })?;
                    r0 += m;
                }
            }
            Ok(())
        })
    }
}

impl EStep<GmmModel> for GpuGmmEngine<'_> {
    fn e_step(&mut self, p: &Prepared) -> Result<GmmStats> {
        self.use_shape_of(p)?;
        let gd = Arc::clone(&self.gd);
        gd.ctx.checked("GPU E-step", || {
            let gpu_shift = self.write_params(p);
            let mut sums = vec![0f64; self.kernels.stats.partial_len];
            let n_chunks = gd.chunks.len();
            let mut first = 0;
            while first < n_chunks {
                let count = self.kernels.slots.min(n_chunks - first);
                self.run_batch(first, count, &mut sums)?;
                first += count;
            }
            if !sums.iter().all(|v| v.is_finite()) {
                return Err(Error::Numerical(
                    "the GPU E-step produced a non-finite statistic; check the data's scale, increase reg_covar, or use the CPU backend".into(),
                ));
            }
            Ok(self.unpack(&sums, p, &gpu_shift))
        })
    }

    fn report(&self) -> BackendReport {
        BackendReport {
            backend: Backend::Gpu,
            device: self.gd.ctx.device_label(),
            reason: self.reason.clone(),
        }
    }
}

impl<'a> GmmEngine for GpuGmmEngine<'a> {
    fn log_likelihoods(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.point_outputs(p, Some(out), None)
    }

    fn responsibilities(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.point_outputs(p, None, Some(out))?;
        // The kernel's f32 responsibilities sum to 1 within f32 rounding; renormalizing each row
        // in f64 makes them sum to 1 as the CPU's do (the ratios are the kernel's).
        let k = p.n_components.max(1);
        for row in out.chunks_exact_mut(k) {
            let sum: f64 = row.iter().sum();
            if sum > 0.0 && sum.is_finite() {
                row.iter_mut().for_each(|v| *v /= sum);
            }
        }
        Ok(())
    }

    /// The GPU k-means engine over the data this engine uploaded (built on first request,
    /// then reused by every restart). `None` if the device cannot build it; the fit then builds
    /// its own k-means engine, which reports the error.
    fn kmeans_engine(&mut self) -> Option<&mut dyn KMeansEngine> {
        if self.kmeans.is_none() {
            self.kmeans =
                GpuKMeansEngine::with_data(Arc::clone(&self.gd), self.options, self.reason.clone())
                    .ok();
        }
        self.kmeans.as_mut().map(|e| e as &mut dyn KMeansEngine)
    }
}

/// A bind group of `kernel`'s layout with `buffers` at bindings 0, 1, ...
pub(super) fn bind(
    device: &wgpu::Device,
    kernel: &KernelPipeline,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &kernel.layout,
        entries: &entries,
    })
}

/// A 2-D grid of at least `n` workgroups, each side within `max`.
pub(super) fn grid(n: usize, max: u32) -> (u32, u32) {
    let x = n.clamp(1, max as usize);
    (x as u32, n.div_ceil(x).max(1) as u32)
}

/// A command encoder labelled `label`.
pub(super) fn encoder(ctx: &GpuContext, label: &str) -> wgpu::CommandEncoder {
    ctx.device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
}

/// Maps `bytes` of `staging` (after the work that fills it was submitted), hands its floats to
/// `f`, and unmaps.
pub(super) fn read_back(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
    f: impl FnOnce(&[f32]),
) -> Result<()> {
    read_back_bytes(ctx, staging, bytes, |view| {
        let floats: Vec<f32> = view
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        f(&floats);
    })
}

/// Maps `bytes` of `staging` (after the work that fills it was submitted), hands them to `f`,
/// and unmaps.
pub(super) fn read_back_bytes(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
    f: impl FnOnce(&[u8]),
) -> Result<()> {
    let slice = staging.slice(..bytes);
    let (tx, rx) = mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        // The receiver waits below; if it is gone there is nobody to tell.
        let _ = tx.send(r);
    });
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
    match rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::Gpu(format!("reading GPU results failed: {e}"))),
        Err(_) => return Err(Error::Gpu("the GPU never returned its results".into())),
    }
    {
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading GPU results failed: {e}")))?;
        f(&view);
    }
    staging.unmap();
    Ok(())
}

/// The f64 mean of up to [`CENTRE_SAMPLE`] rows spread evenly over the data.
fn data_centre(data: &Dataset) -> Vec<f64> {
    let (n, d) = (data.n_samples(), data.n_features());
    let m = n.min(CENTRE_SAMPLE);
    let mut centre = vec![0.0; d];
    let mut row = vec![0.0; d];
    for s in 0..m {
        data.read_f64(s * n / m, &mut row);
        for (c, v) in centre.iter_mut().zip(&row) {
            *c += v;
        }
    }
    for c in &mut centre {
        *c /= m as f64;
    }
    centre
}

/// Rows `[start, start + f32s.len() / D)` minus `centre`, as f32, into `f32s` (`f64s` is
/// scratch of the same length).
fn convert_rows(data: &Dataset, centre: &[f64], start: usize, f64s: &mut [f64], f32s: &mut [f32]) {
    use rayon::prelude::*;
    let d = centre.len();
    // Blocks of rows converted in parallel (reading may be from a memory-mapped file).
    let block = (1 << 14) * d;
    f64s.par_chunks_mut(block)
        .zip(f32s.par_chunks_mut(block))
        .enumerate()
        .for_each(|(b, (src, dst))| {
            data.read_f64(start + b * (block / d), src);
            for (row_in, row_out) in src.chunks_exact(d).zip(dst.chunks_exact_mut(d)) {
                for ((o, x), c) in row_out.iter_mut().zip(row_in).zip(centre) {
                    *o = (x - c) as f32;
                }
            }
        });
}

/// A storage buffer holding rows `[start, start + rows)` minus `centre` as f32, written while
/// mapped at creation (no extra copy of the data on the host).
fn upload_resident(
    device: &wgpu::Device,
    data: &Dataset,
    centre: &[f64],
    start: usize,
    rows: usize,
) -> Result<wgpu::Buffer> {
    let d = centre.len();
    let bytes = (rows * d * 4) as u64;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("gmm resident data"),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: true,
    });
    let block_rows = (1usize << 22).div_ceil(d).max(1);
    let mut f64s = Vec::new();
    let mut f32s = Vec::new();
    let mut r = 0;
    while r < rows {
        let m = block_rows.min(rows - r);
        f64s.resize(m * d, 0.0);
        f32s.resize(m * d, 0.0);
        convert_rows(data, centre, start + r, &mut f64s, &mut f32s);
        let off = (r * d * 4) as u64;
        let mut view = buffer
            .get_mapped_range_mut(off..off + (m * d * 4) as u64)
            .map_err(|e| Error::Gpu(format!("uploading the data failed: {e}")))?;
        view.copy_from_slice(bytemuck::cast_slice(&f32s));
        drop(view);
        r += m;
    }
    buffer.unmap();
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_print_and_reject_unknown_flags() {
        let v: GpuVariant = "stage+sg+red".parse().unwrap();
        assert!(v.staged && v.subgroups && v.wide_reduce && !v.parallel_lse);
        assert_eq!(v.to_string(), "sg+stage+red");
        assert_eq!("base".parse::<GpuVariant>().unwrap(), GpuVariant::default());
        assert_eq!("".parse::<GpuVariant>().unwrap(), GpuVariant::default());
        assert_eq!(GpuVariant::default().to_string(), "base");
        let v: GpuVariant = "lse, t128 ,p2".parse().unwrap();
        assert_eq!(
            v,
            GpuVariant {
                parallel_lse: true,
                tile_points: Some(128),
                e_step_points: Some(2),
                ..Default::default()
            }
        );
        assert_eq!(v.to_string().parse::<GpuVariant>().unwrap(), v);
        for bad in ["stage+fast", "t3", "t512", "p3", "tx"] {
            assert!(
                matches!(bad.parse::<GpuVariant>(), Err(Error::InvalidParameter(m)) if m.contains("lse, sg, stage")),
                "{bad}"
            );
        }
    }
}
