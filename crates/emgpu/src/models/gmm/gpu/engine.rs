//! The GPU engine: E-steps of a Gaussian mixture with wgpu compute shaders.
//!
//! Built once per fit (or per `predict`/`score` call) over one dataset:
//!
//! 1. **Plan.** The rows are cut into chunks no larger than one storage binding allows
//!    (`max_storage_buffer_binding_size`, `max_buffer_size`, u32 indexing). When the whole data
//!    fits the resident budget every chunk gets its own buffer, uploaded once (data *resident*);
//!    otherwise one chunk-sized buffer is refilled from the host for each chunk at every E-step
//!    (data *streamed*). `chunk_rows` forces streaming with chunks of that size. (This and the
//!    centring are [`GpuData`](crate::device::gpu::data), shared with the k-means engine.)
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
//!
//! Sample weights: when the dataset is weighted, [`GpuData`] holds each chunk's weights as f32
//! and the statistics kernel is built with `gmm_resp_estep_weighted.wgsl` (the E-step's
//! responsibilities and log-density of each point multiplied by its weight); `n_samples` is the
//! f64 `Σ w` of the host. The per-point outputs are not weighted.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::kernels::{ChunkUniform, GmmShape, Lse, PointsKernel, StatsKernel, Weights};
use crate::data::Dataset;
use crate::device::gpu::data::{GpuData, Scratch};
use crate::device::gpu::reduce::{ReduceKernel, ReduceUniform};
use crate::device::gpu::util::{
    OUT_BUDGET, PARTIALS_BUDGET, POINTS_BUDGET, bind, encoder, grid, groups_for, max_binding,
    partials_buffer, read_back,
};
use crate::device::gpu::{GpuContext, GpuEngineOptions, GpuVariant};
use crate::device::{Backend, BackendReport};
use crate::em::EStep;
use crate::error::{Error, Result};
use crate::models::gmm::GmmEngine;
use crate::models::gmm::{CovarianceType, GmmModel, GmmStats, Prepared};
use crate::models::kmeans::KMeansEngine;
use crate::models::kmeans::gpu::GpuKMeansEngine;

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
        let variant = options.variant_or_recommended();
        let mut shape = GmmShape::with_variant(
            covariance_type,
            k,
            d,
            options.tile_points.or(variant.tile_points.map(usize::from)),
            ctx.limits(),
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
        // Weighted data: the E-step's responsibilities times each row's sample weight.
        let weights = if gd.is_weighted() {
            Weights::SampleWeighted
        } else {
            Weights::EStep
        };
        let stats = StatsKernel::with_weights(ctx, &shape, weights)?;
        // The per-point kernel is built on the first per-point request; whether the device can
        // run it is known now.
        PointsKernel::max_tiles(ctx, &shape)?;
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
        let device = ctx.device();
        let limits = ctx.limits();
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
        // At most 64 tiles per workgroup when there are enough workgroups (fewer where the
        // driver bounds a kernel's loop iterations).
        let max_tiles = stats.max_tiles;
        let groups_of = |rows: usize| {
            groups_for(
                rows,
                shape.tile,
                max_tiles,
                options.min_workgroups,
                max_groups,
            )
        };
        for chunk in &gd.chunks {
            let (tiles, groups) = groups_of(chunk.rows);
            if stats.tiles_bounded && (tiles as usize).div_ceil(groups.max(1) as usize) > max_tiles
            {
                return Err(Error::DeviceLimits(format!(
                    "{} rows of {} {} components of {d} features need more than {max_tiles} tiles per workgroup on this device (it runs {groups} workgroups of {p_bytes} bytes of statistics), and this software adapter (llvmpipe) silently ends a kernel's loops beyond that; use smaller chunks (chunk_rows) or the CPU backend",
                    chunk.rows, shape.k, shape.cov
                )));
            }
        }
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
            let stats_bind = match gd.weights(c) {
                Some(w) => bind(
                    device,
                    &stats.kernel,
                    &[&chunk_uniform, gd.buffer(c), &params, &partials, w],
                ),
                None => bind(
                    device,
                    &stats.kernel,
                    &[&chunk_uniform, gd.buffer(c), &params, &partials],
                ),
            };
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
    /// `ctx`'s device; `reason` is reported by [`EStep::report`] (why this backend was
    /// chosen).
    ///
    /// Compiles (or takes from the context's cache) the kernels for `n_components`, uploads the
    /// data when it is to be resident, and allocates every buffer the E-steps use. E-steps with
    /// fewer components build their (small) kernels and buffers when first asked for. Fields of
    /// `options` left `None` are taken from the context's
    /// [`engine_defaults`](crate::device::gpu::GpuContextOptions::engine_defaults).
    pub fn new(
        ctx: Arc<GpuContext>,
        data: &'a Dataset<'a>,
        covariance_type: CovarianceType,
        n_components: usize,
        options: GpuEngineOptions,
        reason: String,
    ) -> Result<Self> {
        let options = options.or(&ctx.options().engine_defaults);
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
            ctx.limits(),
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
    /// ([`GpuEngineOptions::variant`], else the context's default) less what the device or the shape
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
        let (v, shift) = self.kernels.shape.params_f32(&self.gd.centre, p);
        self.gd
            .ctx
            .queue()
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
            self.gd.ctx.limits().max_compute_workgroups_per_dimension,
        );
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Runs the statistics of chunks `first..first + count` (all in one submit when resident)
    /// and adds their sums into `sums` in f64. Chunk `c` writes output slot `c % slots`: the
    /// chunks must not wrap around the slots (`first % slots + count ≤ slots`).
    fn run_batch(&mut self, first: usize, count: usize, sums: &mut [f64]) -> Result<()> {
        let p = self.kernels.stats.partial_len;
        let bytes = (count * p * 4) as u64;
        let offset = ((first % self.kernels.slots) * p * 4) as u64;
        debug_assert!(first % self.kernels.slots + count <= self.kernels.slots);
        let ctx = &self.gd.ctx;
        if self.is_resident() {
            let mut enc = encoder(ctx, "gmm");
            for c in first..first + count {
                self.encode_stats(c, &mut enc);
            }
            enc.copy_buffer_to_buffer(&self.kernels.out, offset, &self.kernels.staging, 0, bytes);
            ctx.queue().submit([enc.finish()]);
        } else {
            for c in first..first + count {
                self.gd.upload_stream(c, &mut self.scratch)?;
                let mut enc = encoder(ctx, "gmm");
                self.encode_stats(c, &mut enc);
                if c + 1 == first + count {
                    enc.copy_buffer_to_buffer(
                        &self.kernels.out,
                        offset,
                        &self.kernels.staging,
                        0,
                        bytes,
                    );
                }
                ctx.queue().submit([enc.finish()]);
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

    /// Statistics of `n` (weighted) points from the summed partial row `v`, about the GPU's
    /// shifts `gpu_shift`, moved to the exact shifts `p.means`. `n` is Σ w in f64 on the host
    /// (the number of rows without weights): the GPU sums only the weighted moments.
    fn unpack(&self, v: &[f64], n: f64, p: &Prepared, gpu_shift: &[f64]) -> GmmStats {
        self.kernels.shape.unpack(v, n, &p.means, gpu_shift)
    }

    /// The E-step over chunks `chunks` (in as few readbacks as the output slots allow), as
    /// statistics of `n` (weighted) points.
    fn e_step_chunks(
        &mut self,
        p: &Prepared,
        chunks: std::ops::Range<usize>,
        n: f64,
    ) -> Result<GmmStats> {
        self.use_shape_of(p)?;
        let gd = Arc::clone(&self.gd);
        gd.ctx.checked("GPU E-step", || {
            let gpu_shift = self.write_params(p);
            let mut sums = vec![0f64; self.kernels.stats.partial_len];
            let slots = self.kernels.slots;
            let mut first = chunks.start;
            while first < chunks.end {
                let count = (slots - first % slots).min(chunks.end - first);
                self.run_batch(first, count, &mut sums)?;
                first += count;
            }
            if !sums.iter().all(|v| v.is_finite()) {
                return Err(Error::Numerical(
                    "the GPU E-step produced a non-finite statistic; check the data's scale, increase reg_covar, or use the CPU backend".into(),
                ));
            }
            Ok(self.unpack(&sums, n, p, &gpu_shift))
        })
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
            let device = ctx.device();
            let k = kn.shape.k as u64;
            let max_chunk = self.gd.max_chunk_rows() as u64;
            let max_bind = max_binding(ctx.limits());
            // Few enough tiles per readback that no workgroup walks more than the kernel's
            // `max_tiles` within the dispatch limit.
            let max_tile_rows = (kernel.max_tiles as u64)
                .saturating_mul(kn.shape.tile as u64)
                .saturating_mul(ctx.limits().max_compute_workgroups_per_dimension as u64);
            let rows = (POINTS_BUDGET / (4 * (k + 1)))
                .min(max_tile_rows)
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
                gd.upload_stream(c, &mut self.scratch)?;
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
                    ctx.queue()
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
                            .max(tiles.div_ceil(state.kernel.max_tiles))
                            .min(ctx.limits().max_compute_workgroups_per_dimension as usize);
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
                    ctx.queue().submit([enc.finish()]);
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
        let (n_chunks, n) = (self.gd.chunks.len(), self.gd.data.sum_of_weights());
        self.e_step_chunks(p, 0..n_chunks, n)
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
    /// The chunks that make up `rows` exactly (build the engine with
    /// [`GpuEngineOptions::batch_rows`] so that mini-batches are whole chunks); other ranges are
    /// refused. Streamed chunks are uploaded through the streaming buffer as in a full E-step.
    fn e_step_rows(&mut self, p: &Prepared, rows: std::ops::Range<usize>) -> Result<GmmStats> {
        let chunks = &self.gd.chunks;
        let first = chunks.partition_point(|c| c.start < rows.start);
        let last = chunks.partition_point(|c| c.start < rows.end);
        let whole = rows.start < rows.end
            && chunks.get(first).is_some_and(|c| c.start == rows.start)
            && chunks[first..last]
                .last()
                .is_some_and(|c| c.start + c.rows == rows.end);
        if !whole {
            return Err(Error::param(format!(
                "rows {}..{} are not whole chunks of the GPU engine's data (build it with batch_rows)",
                rows.start, rows.end
            )));
        }
        let n = match self.gd.data.weights_of(rows.start, rows.end - rows.start) {
            Some(w) => w.iter().sum(),
            None => (rows.end - rows.start) as f64,
        };
        self.e_step_chunks(p, first..last, n)
    }

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
