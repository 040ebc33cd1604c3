//! The GPU engine of the Gaussian HMM ([`GpuHmmEngine`]): emission densities with the Gaussian
//! mixture's kernel, forward-backward with the states across invocations and many sequences per
//! dispatch, long sequences split in time, and the statistics reduced on the GPU.
//!
//! Built once per fit (or per `score`/`predict` call) over one dataset:
//!
//! 1. **Data.** Uploaded once as f32 minus a centre (`GpuData`, shared with the mixture's
//!    engine), in one buffer: the `[N][K]` buffers below must each fit one storage binding too,
//!    or the engine is refused (`Backend::Auto` then runs the CPU engine and says why).
//! 2. **Emissions.** `log b_k(x_t)` of all N × K pairs by the mixture's per-point kernel
//!    (`gmm_points.wgsl`) in its log-joint mode, with the emission parameters as a mixture of zero
//!    log-weights: its log-joint *is* the emission log-density.
//! 3. **Forward-backward** (`hmm_chain.wgsl`), f32, the scaled recursion of
//!    [`forward_backward`](super::forward_backward) with every vector kept as a logarithm
//!    normalized at every step and the max-shift of the CPU's forward pass on both sides (no
//!    step under- or overflows; a state whose probability underflows f32 in a sum contributes 0,
//!    as the CPU's f64 path does below 1e-308). One vector per item with one lane per state
//!    (K ≤ 256), many items per workgroup when K is small, every item of a pass in one dispatch.
//!    An item is a *segment*: a whole sequence, or a chunk of a long one.
//! 4. **Long sequences: chunked in time, exact.** A sequence longer than the segment length L
//!    (default [`SEGMENT_LEN`], lowered so that one invocation stays within llvmpipe's loop
//!    budget) is cut into chunks of L steps, and three passes replace the serial recursion:
//!    (a) every chunk, in parallel, runs its recursion from each unit vector (K × K lanes:
//!    K ≤ [`MAX_TRANSFER_STATES`]), giving its *transfer matrix*:
//!    the normalized image of each unit vector and its log-scale relative to the first, forward
//!    and backward; (b) a short serial pass per sequence (`hmm_scan.wgsl`, one lane per state,
//!    one step per *chunk*: L times fewer than the sequence) chains the transfer matrices from
//!    the sequence's ends into every chunk's true incoming vector (log-sum-exp weights, so any
//!    range of relative scales combines); (c) every chunk reruns its forward and backward
//!    recursion from its true incoming vector, in parallel, as a segment. The result equals the
//!    serial recursion up to f32 rounding (the recursion is linear in its incoming vector, so
//!    the chunk's map is exactly its transfer matrix); the work is about K + 2 times the
//!    serial recursion's, spread over N / L chunks. With more than 16 states long sequences are
//!    not split: on llvmpipe such a sequence is refused, on hardware it runs as one segment.
//! 5. **Posteriors and statistics.** `hmm_post.wgsl` turns ln α̂, ln β̂ into γ (in place) and
//!    sums ξ per segment (log-sum-exp normalizers); the mixture's statistics kernel in its
//!    buffer-weight mode (`gmm_resp_weights.wgsl`) sums the γ-weighted moments about the shifts;
//!    `reduce_partials.wgsl` reduces both the mixture's workgroup partials and the segments'
//!    rows (log-likelihood, start γ, Σ ξ) into one small buffer: one submit and one readback per
//!    E-step. The host converts the sums to [`HmmStats`] in f64 (moments moved to the exact f64
//!    means, as the mixture's engine does).
//! 6. **Viterbi** (`hmm_viterbi.wgsl`): the recursion on the GPU (one item per sequence, states
//!    across lanes, backpointers `[N][K]` u32), serial in time, a dispatch per block of steps
//!    within the loop budget; the host reads the backpointers back and backtracks.
//!
//! `score` runs steps 2–4 forward only; `posteriors` runs steps 2–5 and reads γ back. Where a
//! normalizer still vanishes (a sequence impossible under the model in f32), the E-step is redone
//! by the CPU engine, as the CPU's scaled path falls back to log space.

mod kernels;

use std::sync::Arc;

use wgpu::util::DeviceExt;

use self::kernels::{Dir, HmmArgs, HmmShape, Mode};
use super::cpu::Layout;
use super::{CpuHmmEngine, HmmEngine, HmmModel, HmmPrepared, HmmStats};
use crate::data::Dataset;
use crate::device::gpu::data::GpuData;
use crate::device::gpu::kernels::KernelPipeline;
use crate::device::gpu::reduce::{ReduceKernel, ReduceUniform};
use crate::device::gpu::util::{
    PARTIALS_BUDGET, bind, encoder, grid, groups_for, max_binding, read_back, read_back_bytes,
};
use crate::device::gpu::{GpuContext, GpuEngineOptions};
use crate::device::{Backend, BackendReport, EngineOptions};
use crate::em::EStep;
use crate::error::{Error, Result};
use crate::models::gmm::CovarianceType;
use crate::models::gmm::gpu::kernels::{
    ChunkUniform, GmmShape, POINTS_LOG_JOINT, PointsKernel, StatsKernel, Weights,
};

pub use kernels::{MAX_STATES, MAX_TRANSFER_STATES};

/// Steps per segment unless a test asks otherwise (lowered to fit llvmpipe's loop budget): long
/// enough that the transfer matrices' extra work is spread thin, short enough that a sequence of
/// 10⁵–10⁶ steps gives hundreds of chunks to run in parallel.
pub const SEGMENT_LEN: usize = 1024;

/// Bit of an item's flags: the item starts its sequence (`FIRST` in `hmm_common.wgsl`).
const FIRST: u32 = 1;
/// Bit of an item's flags: the item ends its sequence (`LAST` in `hmm_common.wgsl`).
const LAST: u32 = 2;
/// Segments (partial rows) the reduction pass sums within llvmpipe's loop budget (8 lanes per
/// column, ≤ 60 000 rows each, with a margin).
const MAX_SEGMENTS_SOFTWARE: usize = 400_000;

/// A pass over items: its pipeline, bind group(s) and workgroup grid.
struct Pass {
    pipeline: Arc<KernelPipeline>,
    binds: Vec<wgpu::BindGroup>,
    grid: (u32, u32),
}

impl Pass {
    fn encode(&self, cpass: &mut wgpu::ComputePass<'_>) {
        cpass.set_pipeline(&self.pipeline.pipeline);
        for b in &self.binds {
            cpass.set_bind_group(0, b, &[]);
            cpass.dispatch_workgroups(self.grid.0, self.grid.1, 1);
        }
    }
}

/// The Viterbi kernel and its buffers, built on the first `viterbi` call.
struct ViterbiState {
    pass: Pass,
    bp: wgpu::Buffer,
    dl: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Item → sequence.
    order: Vec<usize>,
    _bufs: Vec<wgpu::Buffer>,
}

/// E-steps, posteriors, scores and Viterbi paths of a Gaussian HMM on a GPU, over one dataset
/// (its sequence lengths, or one sequence). See the module docs for the passes.
pub struct GpuHmmEngine<'a> {
    gd: GpuData<'a>,
    covariance_type: CovarianceType,
    shape: HmmShape,
    gshape: GmmShape,
    layout: Layout,
    seg_len: usize,
    n_segments: usize,
    n_chunks: usize,
    points: Pass,
    xfer: Vec<Pass>,
    scan: Option<Pass>,
    fwd: Pass,
    bwd: Pass,
    post: Pass,
    stats: Pass,
    reduce_gmm: Pass,
    reduce_hmm: Pass,
    partial_len: usize,
    gmm_params: wgpu::Buffer,
    hp: wgpu::Buffer,
    logb: wgpu::Buffer,
    gamma: wgpu::Buffer,
    seg_ll: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    ll_staging: wgpu::Buffer,
    gamma_staging: Option<wgpu::Buffer>,
    viterbi: Option<ViterbiState>,
    _bufs: Vec<wgpu::Buffer>,
    cpu: Option<CpuHmmEngine<'a>>,
    fallbacks: usize,
    reason: String,
}

/// A read-only storage buffer holding `data`.
fn storage_init(device: &wgpu::Device, label: &str, data: &[u8]) -> wgpu::Buffer {
    let mut v = data.to_vec();
    if v.is_empty() {
        v.resize(16, 0);
    }
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &v,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

fn uniform_init(device: &wgpu::Device, label: &str, data: &[u8]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: data,
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

fn buffer(
    device: &wgpu::Device,
    label: &str,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16).next_multiple_of(4),
        usage,
        mapped_at_creation: false,
    })
}

/// The per-workgroup step counts of `counts` (items in order, `ipw` per workgroup).
fn wg_steps(counts: &[u32], ipw: usize) -> Vec<u32> {
    counts
        .chunks(ipw)
        .map(|c| c.iter().copied().max().unwrap_or(0))
        .collect()
}

/// `log` as f32 with 0 ↦ `NEG` (`hmm_common.wgsl`: no infinities in the kernels).
fn log_f32(v: f64) -> f32 {
    let l = v.ln();
    if l.is_finite() { l as f32 } else { -1.0e30 }
}

impl<'a> GpuHmmEngine<'a> {
    /// An engine over `data` (its sequence lengths, or one sequence) for `n_components` states
    /// with `covariance_type` emissions, on `ctx`'s device; `reason` is reported by
    /// [`EStep::report`]. An error when the device or the kernels cannot take the shape (more
    /// than [`MAX_STATES`] states, `[N][K]` buffers beyond one storage binding, a long sequence
    /// with more than [`MAX_TRANSFER_STATES`] states on llvmpipe).
    pub fn new(
        ctx: Arc<GpuContext>,
        data: &'a Dataset<'a>,
        covariance_type: CovarianceType,
        n_components: usize,
        reason: String,
    ) -> Result<Self> {
        Self::with_segment_len(ctx, data, covariance_type, n_components, None, reason)
    }

    /// [`GpuHmmEngine::new`] with segments of at most `segment_len` steps (default
    /// [`SEGMENT_LEN`]; lowered to the loop budget): tests force the chunked-in-time path with it.
    #[doc(hidden)]
    pub fn with_segment_len(
        ctx: Arc<GpuContext>,
        data: &'a Dataset<'a>,
        covariance_type: CovarianceType,
        n_components: usize,
        segment_len: Option<usize>,
        reason: String,
    ) -> Result<Self> {
        let (n, d) = (data.n_samples(), data.n_features());
        if n == 0 || d == 0 {
            return Err(Error::EmptyData {
                n_samples: n,
                n_features: d,
            });
        }
        let shape = HmmShape::new(n_components)?;
        let k = n_components;
        let limits = ctx.limits().clone();
        let max_bind = max_binding(&limits);
        if (n as u64) * (k as u64) * 4 > max_bind || n as u64 * k as u64 >= u32::MAX as u64 {
            return Err(Error::DeviceLimits(format!(
                "{n} rows × {k} states exceed one GPU storage binding ({max_bind} bytes) of the HMM engine; use the CPU backend"
            )));
        }
        let layout = Layout::of(data);
        // Segment length within the loop budget of every segment kernel.
        let per_step = shape
            .chain_loops_per_step()
            .max(shape.post_loops_per_step());
        // The transfer matrices' backward pass runs one step more than its chunk.
        let want = segment_len.unwrap_or(SEGMENT_LEN).max(1);
        let seg_len =
            kernels::steps_within_loop_budget(&ctx, &shape, "hmm", per_step, want + 1, 3)? - 1;
        let options = GpuEngineOptions::default().or(&ctx.options().engine_defaults);
        let gd_options = GpuEngineOptions {
            resident: Some(true),
            chunk_rows: None,
            ..options
        };
        let gd = GpuData::new(Arc::clone(&ctx), data, &gd_options)?;
        if gd.chunks.len() != 1 {
            return Err(Error::DeviceLimits(format!(
                "{n} rows of {d} features exceed one GPU storage binding ({max_bind} bytes) of the HMM engine; use the CPU backend"
            )));
        }
        let variant = options.variant_or_recommended();
        let gshape = GmmShape::with_variant(
            covariance_type,
            k,
            d,
            options.tile_points.or(variant.tile_points.map(usize::from)),
            &limits,
            &variant,
            ctx.subgroup_sizes(),
        )?;
        let ctx2 = Arc::clone(&ctx);
        ctx2.checked("building the GPU HMM engine", move || {
            Self::build(
                gd,
                shape,
                gshape,
                layout,
                seg_len,
                covariance_type,
                options,
                reason,
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        gd: GpuData<'a>,
        shape: HmmShape,
        gshape: GmmShape,
        layout: Layout,
        seg_len: usize,
        covariance_type: CovarianceType,
        options: GpuEngineOptions,
        reason: String,
    ) -> Result<Self> {
        let ctx = Arc::clone(&gd.ctx);
        let device = ctx.device();
        let limits = ctx.limits();
        let max_dim = limits.max_compute_workgroups_per_dimension;
        let (n, k) = (gd.data.n_samples(), shape.k);
        let storage = wgpu::BufferUsages::STORAGE;
        let copy_src = wgpu::BufferUsages::COPY_SRC;
        let copy_dst = wgpu::BufferUsages::COPY_DST;

        // ---- segments and chunks
        let mut segments: Vec<[u32; 4]> = Vec::new();
        let mut chunks: Vec<[u32; 4]> = Vec::new();
        let mut long: Vec<[u32; 4]> = Vec::new();
        for s in 0..layout.n_sequences() {
            let r = layout.rows(s);
            let len = r.len();
            if len <= seg_len || !shape.splits_in_time() {
                if len > seg_len && ctx.loop_budget().is_some() {
                    return Err(Error::DeviceLimits(format!(
                        "a sequence of {len} steps with {k} states (more than {MAX_TRANSFER_STATES}: not split in time) exceeds what this software adapter (llvmpipe) runs in one kernel ({seg_len} steps); use the CPU backend"
                    )));
                }
                segments.push([r.start as u32, len as u32, FIRST | LAST, 0]);
                continue;
            }
            let nch = len.div_ceil(seg_len);
            let xid0 = chunks.len() as u32;
            long.push([xid0, nch as u32, 0, 0]);
            for c in 0..nch {
                let row0 = r.start + c * seg_len;
                let clen = seg_len.min(r.end - row0);
                let mut flags = 0;
                if c == 0 {
                    flags |= FIRST;
                }
                if c + 1 == nch {
                    flags |= LAST;
                }
                let item = [row0 as u32, clen as u32, flags, xid0 + c as u32];
                segments.push(item);
                chunks.push(item);
            }
        }
        segments.sort_by_key(|s| std::cmp::Reverse(s[1]));
        long.sort_by_key(|s| std::cmp::Reverse(s[1]));
        let (n_seg, n_x) = (segments.len(), chunks.len());
        if ctx.loop_budget().is_some() && n_seg > MAX_SEGMENTS_SOFTWARE {
            return Err(Error::DeviceLimits(format!(
                "{n_seg} sequences or chunks are more than this software adapter (llvmpipe) reduces in one pass ({MAX_SEGMENTS_SOFTWARE}); use the CPU backend"
            )));
        }

        // ---- buffers
        let nk_bytes = 4 * (n * k) as u64;
        let logb = buffer(device, "hmm log b", nk_bytes, storage);
        let gamma = buffer(device, "hmm ln α̂ / γ", nk_bytes, storage | copy_src);
        let lbeta = buffer(device, "hmm ln β̂", nk_bytes, storage);
        let log_px = buffer(device, "hmm log p(x) (unused)", 4 * n as u64, storage);
        let hp = buffer(
            device,
            "hmm parameters",
            4 * shape.hp_len() as u64,
            storage | copy_dst,
        );
        let gmm_params = buffer(
            device,
            "hmm emission parameters",
            4 * gshape.params_len() as u64,
            storage | copy_dst,
        );
        let stride = (k + 1) * k;
        let xfer_buf = buffer(
            device,
            "hmm transfer matrices",
            4 * (2 * n_x * stride) as u64,
            storage,
        );
        let vecs = buffer(
            device,
            "hmm chunk vectors",
            4 * (2 * n_x * k) as u64,
            storage,
        );
        let seg_ll = buffer(
            device,
            "hmm segment log-likelihoods",
            4 * n_seg as u64,
            storage | copy_src,
        );
        let ph = shape.ph();
        let part = buffer(
            device,
            "hmm segment partials",
            4 * (n_seg * ph) as u64,
            storage,
        );
        let seg_items = storage_init(device, "hmm segments", bytemuck::cast_slice(&segments));
        let ipw1 = shape.ipw(1);
        let seg_counts: Vec<u32> = segments.iter().map(|s| s[1]).collect();
        let seg_steps = storage_init(
            device,
            "hmm segment steps",
            bytemuck::cast_slice(&wg_steps(&seg_counts, ipw1)),
        );
        let seg_grid = grid(n_seg.div_ceil(ipw1), max_dim);
        let seg_args = uniform_init(
            device,
            "hmm segment args",
            bytemuck::bytes_of(&HmmArgs {
                a: n_seg as u32,
                b: n_x as u32,
                c: 0,
                d: 0,
            }),
        );
        let mut bufs = vec![
            lbeta.clone(),
            log_px.clone(),
            xfer_buf.clone(),
            vecs.clone(),
            part.clone(),
        ];

        // ---- emissions: the mixture's per-point kernel in log-joint mode
        let points_kernel = PointsKernel::new(&ctx, &gshape)?;
        let tiles = n.div_ceil(gshape.tile);
        let points_groups = tiles
            .min(tiles.div_ceil(16).max(512))
            .max(tiles.div_ceil(points_kernel.max_tiles));
        if points_groups > max_dim as usize {
            return Err(Error::DeviceLimits(format!(
                "{n} rows need more than the device's {max_dim} workgroups of the emission kernel; use the CPU backend"
            )));
        }
        let points_uniform = uniform_init(
            device,
            "hmm points chunk",
            bytemuck::bytes_of(&ChunkUniform {
                n_rows: n as u32,
                row_offset: 0,
                n_tiles: tiles as u32,
                flags: POINTS_LOG_JOINT,
            }),
        );
        let points = Pass {
            binds: vec![bind(
                device,
                &points_kernel.kernel,
                &[&points_uniform, gd.buffer(0), &gmm_params, &log_px, &logb],
            )],
            pipeline: Arc::clone(&points_kernel.kernel),
            grid: (points_groups as u32, 1),
        };

        // ---- forward-backward
        let chain_pass = |dir,
                          mode,
                          items: &wgpu::Buffer,
                          steps: &wgpu::Buffer,
                          args: &wgpu::Buffer,
                          out: &wgpu::Buffer,
                          grid|
         -> Result<Pass> {
            let pipeline = kernels::chain_kernel(&ctx, &shape, dir, mode)?;
            let binds = vec![bind(
                device,
                &pipeline,
                &[args, items, steps, &logb, &hp, &vecs, out, &seg_ll],
            )];
            Ok(Pass {
                pipeline,
                binds,
                grid,
            })
        };
        let fwd = chain_pass(
            Dir::Forward,
            Mode::Segment,
            &seg_items,
            &seg_steps,
            &seg_args,
            &gamma,
            seg_grid,
        )?;
        let bwd = chain_pass(
            Dir::Backward,
            Mode::Segment,
            &seg_items,
            &seg_steps,
            &seg_args,
            &lbeta,
            seg_grid,
        )?;
        let mut xfer = Vec::new();
        let mut scan = None;
        if n_x > 0 {
            let ipw = shape.ipw(shape.lk);
            let xgrid = grid(n_x.div_ceil(ipw), max_dim);
            let x_items = storage_init(device, "hmm chunks", bytemuck::cast_slice(&chunks));
            let x_args = uniform_init(
                device,
                "hmm chunk args",
                bytemuck::bytes_of(&HmmArgs {
                    a: n_x as u32,
                    b: n_x as u32,
                    c: 0,
                    d: 0,
                }),
            );
            for (dir, extra) in [(Dir::Forward, 0), (Dir::Backward, 1)] {
                let counts: Vec<u32> = chunks.iter().map(|c| c[1] + extra).collect();
                let steps = storage_init(
                    device,
                    "hmm chunk steps",
                    bytemuck::cast_slice(&wg_steps(&counts, ipw)),
                );
                xfer.push(chain_pass(
                    dir,
                    Mode::Transfer,
                    &x_items,
                    &steps,
                    &x_args,
                    &xfer_buf,
                    xgrid,
                )?);
                bufs.push(steps);
            }
            // The serial pass over chunks, in blocks within the loop budget.
            let max_iter = long.iter().map(|l| l[1] as usize - 1).max().unwrap_or(0);
            let cb = kernels::steps_within_loop_budget(
                &ctx,
                &shape,
                "hmm_scan",
                shape.scan_loops_per_chunk(),
                max_iter.max(1),
                1,
            )?;
            let pipeline = kernels::scan_kernel(&ctx, &shape, cb as u32)?;
            let l_items = storage_init(device, "hmm long sequences", bytemuck::cast_slice(&long));
            let counts: Vec<u32> = long.iter().map(|l| l[1] - 1).collect();
            let l_steps = storage_init(
                device,
                "hmm scan steps",
                bytemuck::cast_slice(&wg_steps(&counts, ipw1)),
            );
            let mut binds = Vec::new();
            for first in (0..max_iter).step_by(cb) {
                let u = uniform_init(
                    device,
                    "hmm scan block",
                    bytemuck::bytes_of(&HmmArgs {
                        a: first as u32,
                        b: long.len() as u32,
                        c: n_x as u32,
                        d: 0,
                    }),
                );
                binds.push(bind(
                    device,
                    &pipeline,
                    &[&u, &l_items, &l_steps, &hp, &xfer_buf, &vecs],
                ));
                bufs.push(u);
            }
            scan = Some(Pass {
                pipeline,
                binds,
                grid: grid(long.len().div_ceil(ipw1), max_dim),
            });
            bufs.extend([x_items, x_args, l_items, l_steps]);
        }
        let post_pipeline = kernels::post_kernel(&ctx, &shape)?;
        let post = Pass {
            binds: vec![bind(
                device,
                &post_pipeline,
                &[
                    &seg_args, &seg_items, &seg_steps, &logb, &hp, &lbeta, &gamma, &seg_ll, &part,
                ],
            )],
            pipeline: post_pipeline,
            grid: seg_grid,
        };

        // ---- statistics: the mixture's kernel weighted by γ, and the reductions
        let stats_kernel = StatsKernel::with_weights(&ctx, &gshape, Weights::Buffer)?;
        let variant = options.variant_or_recommended();
        let reduce = ReduceKernel::with_layout(&ctx, variant.wide_reduce)?;
        let p = stats_kernel.partial_len;
        let p_bytes = 4 * p as u64;
        let max_groups =
            (PARTIALS_BUDGET.min(max_bind_of(limits)) / p_bytes).min(max_dim as u64) as usize;
        if max_groups == 0 {
            return Err(Error::DeviceLimits(format!(
                "the statistics of {k} states of {} features exceed the device's storage binding; use the CPU backend",
                gshape.d
            )));
        }
        let (s_tiles, s_groups) = groups_for(
            n,
            gshape.tile,
            stats_kernel.max_tiles,
            options.min_workgroups,
            max_groups,
        );
        if stats_kernel.tiles_bounded
            && (s_tiles as usize).div_ceil(s_groups.max(1) as usize) > stats_kernel.max_tiles
        {
            return Err(Error::DeviceLimits(format!(
                "{n} rows need more than {} tiles per workgroup of the statistics kernel on this software adapter (llvmpipe); use the CPU backend",
                stats_kernel.max_tiles
            )));
        }
        let partials = buffer(
            device,
            "hmm emission partials",
            s_groups as u64 * p_bytes,
            storage,
        );
        let out_len = p + ph;
        let out = buffer(
            device,
            "hmm statistics",
            4 * out_len as u64,
            storage | copy_src,
        );
        let staging = buffer(
            device,
            "hmm statistics readback",
            4 * out_len as u64,
            wgpu::BufferUsages::MAP_READ | copy_dst,
        );
        let ll_staging = buffer(
            device,
            "hmm log-likelihood readback",
            4 * n_seg as u64,
            wgpu::BufferUsages::MAP_READ | copy_dst,
        );
        let stats_uniform = uniform_init(
            device,
            "hmm stats chunk",
            bytemuck::bytes_of(&ChunkUniform {
                n_rows: n as u32,
                row_offset: 0,
                n_tiles: s_tiles,
                flags: 0,
            }),
        );
        let stats = Pass {
            binds: vec![bind(
                device,
                &stats_kernel.kernel,
                &[&stats_uniform, gd.buffer(0), &gmm_params, &partials, &gamma],
            )],
            pipeline: Arc::clone(&stats_kernel.kernel),
            grid: (s_groups, stats_kernel.passes),
        };
        let reduce_pass = |rows: usize, cols: usize, offset: usize, src: &wgpu::Buffer| {
            let u = uniform_init(
                device,
                "hmm reduce",
                bytemuck::bytes_of(&ReduceUniform {
                    n_rows: rows as u32,
                    n_cols: cols as u32,
                    out_offset: offset as u32,
                    _pad: 0,
                }),
            );
            Pass {
                binds: vec![bind(device, &reduce.kernel, &[&u, src, &out])],
                pipeline: Arc::clone(&reduce.kernel),
                grid: grid(cols.div_ceil(reduce.cols), max_dim),
            }
        };
        let reduce_gmm = reduce_pass(s_groups as usize, p, 0, &partials);
        let reduce_hmm = reduce_pass(n_seg, ph, p, &part);
        bufs.extend([
            partials,
            seg_items,
            seg_steps,
            seg_args,
            points_uniform,
            stats_uniform,
        ]);

        Ok(Self {
            gd,
            covariance_type,
            shape,
            gshape,
            layout,
            seg_len,
            n_segments: n_seg,
            n_chunks: n_x,
            points,
            xfer,
            scan,
            fwd,
            bwd,
            post,
            stats,
            reduce_gmm,
            reduce_hmm,
            partial_len: p,
            gmm_params,
            hp,
            logb,
            gamma,
            seg_ll,
            out,
            staging,
            ll_staging,
            gamma_staging: None,
            viterbi: None,
            _bufs: bufs,
            cpu: None,
            fallbacks: 0,
            reason,
        })
    }

    /// Steps per segment: sequences longer than this are split in time.
    pub fn segment_len(&self) -> usize {
        self.seg_len
    }

    /// Chunks of long sequences (0 when no sequence is split in time).
    pub fn n_time_chunks(&self) -> usize {
        self.n_chunks
    }

    /// How many E-steps, scores or posteriors the CPU engine redid (f32 normalizers vanished).
    #[doc(hidden)]
    pub fn cpu_fallbacks(&self) -> usize {
        self.fallbacks
    }

    fn check(&self, p: &HmmPrepared) -> Result<()> {
        let d = self.gd.centre.len();
        if p.n_components() != self.shape.k
            || p.n_features() != d
            || p.emission.covariance_type != self.covariance_type
        {
            return Err(Error::param(format!(
                "the engine was built for {} states with {} covariances of {d} features, the parameters have {} with {} of {}",
                self.shape.k,
                self.covariance_type,
                p.n_components(),
                p.emission.covariance_type,
                p.n_features()
            )));
        }
        Ok(())
    }

    /// Writes the emission and Markov parameters; returns the GPU's shifts (see
    /// [`GmmShape::params_f32`]).
    fn write_params(&self, p: &HmmPrepared) -> Vec<f64> {
        let (v, shift) = self.gshape.params_f32(&self.gd.centre, &p.emission);
        let queue = self.gd.ctx.queue();
        queue.write_buffer(&self.gmm_params, 0, bytemuck::cast_slice(&v));
        let hp: Vec<f32> = p
            .startprob
            .iter()
            .map(|v| log_f32(*v))
            .chain(p.transmat.iter().map(|v| *v as f32))
            .chain(p.transmat.iter().map(|v| log_f32(*v)))
            .collect();
        queue.write_buffer(&self.hp, 0, bytemuck::cast_slice(&hp));
        shift
    }

    /// Encodes emissions, the chunks' passes, forward, and (with `backward`) backward and
    /// posteriors.
    fn encode_chain(&self, cpass: &mut wgpu::ComputePass<'_>, backward: bool) {
        self.points.encode(cpass);
        for x in &self.xfer {
            x.encode(cpass);
        }
        if let Some(scan) = &self.scan {
            scan.encode(cpass);
        }
        self.fwd.encode(cpass);
        if backward {
            self.bwd.encode(cpass);
            self.post.encode(cpass);
        }
    }

    /// The CPU engine the GPU falls back to where f32 could not.
    fn cpu(&mut self) -> &mut CpuHmmEngine<'a> {
        self.fallbacks += 1;
        let data = self.gd.data;
        let reason = self.reason.clone();
        self.cpu
            .get_or_insert_with(|| CpuHmmEngine::new(data, EngineOptions::default(), reason))
    }

    fn gpu_e_step(&mut self, p: &HmmPrepared) -> Result<Option<HmmStats>> {
        let ctx = Arc::clone(&self.gd.ctx);
        ctx.checked("GPU HMM E-step", || {
            let shift = self.write_params(p);
            let mut enc = encoder(&ctx, "hmm e-step");
            {
                let mut cpass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("hmm e-step"),
                    timestamp_writes: None,
                });
                self.encode_chain(&mut cpass, true);
                self.stats.encode(&mut cpass);
                self.reduce_gmm.encode(&mut cpass);
                self.reduce_hmm.encode(&mut cpass);
            }
            let (p_len, ph) = (self.partial_len, self.shape.ph());
            let bytes = 4 * (p_len + ph) as u64;
            enc.copy_buffer_to_buffer(&self.out, 0, &self.staging, 0, bytes);
            ctx.queue().submit([enc.finish()]);
            let mut v = Vec::new();
            read_back(&ctx, &self.staging, bytes, |f| {
                v = f.iter().map(|x| *x as f64).collect()
            })?;
            if !v.iter().all(|x| x.is_finite()) {
                return Ok(None);
            }
            let k = self.shape.k;
            let n = self.gd.data.n_samples() as f64;
            let mut emission = self
                .gshape
                .unpack(&v[..p_len], n, &p.emission.means, &shift);
            let h = &v[p_len..];
            emission.log_likelihood = h[0];
            Ok(Some(HmmStats {
                emission,
                start: h[1..1 + k].to_vec(),
                trans: h[1 + k..1 + k + k * k].to_vec(),
                n_sequences: self.layout.n_sequences() as f64,
            }))
        })
    }

    fn gpu_score(&mut self, p: &HmmPrepared) -> Result<Option<f64>> {
        let ctx = Arc::clone(&self.gd.ctx);
        ctx.checked("GPU HMM score", || {
            self.write_params(p);
            let mut enc = encoder(&ctx, "hmm score");
            {
                let mut cpass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("hmm score"),
                    timestamp_writes: None,
                });
                self.encode_chain(&mut cpass, false);
            }
            let bytes = 4 * self.n_segments as u64;
            enc.copy_buffer_to_buffer(&self.seg_ll, 0, &self.ll_staging, 0, bytes);
            ctx.queue().submit([enc.finish()]);
            let mut total = 0.0;
            read_back(&ctx, &self.ll_staging, bytes, |f| {
                total = f.iter().map(|x| *x as f64).sum()
            })?;
            Ok(total.is_finite().then_some(total))
        })
    }

    fn gpu_posteriors(&mut self, p: &HmmPrepared, out: &mut [f64]) -> Result<Option<f64>> {
        let ctx = Arc::clone(&self.gd.ctx);
        let nk = out.len() as u64;
        ctx.checked("GPU HMM posteriors", || {
            let staging = self.gamma_staging.get_or_insert_with(|| {
                buffer(
                    ctx.device(),
                    "hmm posteriors readback",
                    4 * nk,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                )
            });
            let staging = staging.clone();
            self.write_params(p);
            let mut enc = encoder(&ctx, "hmm posteriors");
            {
                let mut cpass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("hmm posteriors"),
                    timestamp_writes: None,
                });
                self.encode_chain(&mut cpass, true);
            }
            let ll_bytes = 4 * self.n_segments as u64;
            enc.copy_buffer_to_buffer(&self.gamma, 0, &staging, 0, 4 * nk);
            enc.copy_buffer_to_buffer(&self.seg_ll, 0, &self.ll_staging, 0, ll_bytes);
            ctx.queue().submit([enc.finish()]);
            let mut ok = true;
            read_back(&ctx, &staging, 4 * nk, |f| {
                for (o, g) in out.iter_mut().zip(f) {
                    *o = *g as f64;
                    ok &= o.is_finite();
                }
            })?;
            let mut total = 0.0;
            read_back(&ctx, &self.ll_staging, ll_bytes, |f| {
                total = f.iter().map(|x| *x as f64).sum()
            })?;
            if !(ok && total.is_finite()) {
                return Ok(None);
            }
            // Each row renormalized in f64 (the kernel's f32 rows sum to 1 within rounding).
            for row in out.chunks_exact_mut(self.shape.k) {
                let s: f64 = row.iter().sum();
                if s > 0.0 {
                    row.iter_mut().for_each(|v| *v /= s);
                }
            }
            Ok(Some(total))
        })
    }

    fn viterbi_state(&mut self) -> Result<()> {
        if self.viterbi.is_some() {
            return Ok(());
        }
        let ctx = Arc::clone(&self.gd.ctx);
        let device = ctx.device();
        let shape = self.shape;
        let (n, k) = (self.gd.data.n_samples(), shape.k);
        let mut order: Vec<usize> = (0..self.layout.n_sequences()).collect();
        order.sort_by_key(|s| std::cmp::Reverse(self.layout.rows(*s).len()));
        let items: Vec<[u32; 4]> = order
            .iter()
            .map(|s| {
                let r = self.layout.rows(*s);
                [r.start as u32, r.len() as u32, 0, 0]
            })
            .collect();
        let max_len = items.first().map_or(1, |i| i[1] as usize);
        let vb = kernels::steps_within_loop_budget(
            &ctx,
            &shape,
            "hmm_viterbi",
            shape.viterbi_loops_per_step(),
            max_len,
            1,
        )?;
        let pipeline = kernels::viterbi_kernel(&ctx, &shape, vb as u32)?;
        let ipw = shape.ipw(1);
        let counts: Vec<u32> = items.iter().map(|i| i[1]).collect();
        let n_items = items.len();
        ctx.checked("allocating the GPU Viterbi buffers", || {
            let items_buf = storage_init(
                device,
                "hmm viterbi sequences",
                bytemuck::cast_slice(&items),
            );
            let steps = storage_init(
                device,
                "hmm viterbi steps",
                bytemuck::cast_slice(&wg_steps(&counts, ipw)),
            );
            let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let bp = buffer(device, "hmm backpointers", 4 * (n * k) as u64, storage);
            let dl_len = n_items * k + 2 * n_items;
            let dl = buffer(device, "hmm viterbi δ", 4 * dl_len as u64, storage);
            let staging = buffer(
                device,
                "hmm viterbi readback",
                4 * (n * k + dl_len) as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            );
            let mut binds = Vec::new();
            let mut bufs = Vec::new();
            for first in (0..max_len).step_by(vb) {
                let u = uniform_init(
                    device,
                    "hmm viterbi block",
                    bytemuck::bytes_of(&HmmArgs {
                        a: first as u32,
                        b: n_items as u32,
                        c: 0,
                        d: 0,
                    }),
                );
                binds.push(bind(
                    device,
                    &pipeline,
                    &[&u, &items_buf, &steps, &self.logb, &self.hp, &bp, &dl],
                ));
                bufs.push(u);
            }
            bufs.extend([items_buf, steps]);
            self.viterbi = Some(ViterbiState {
                pass: Pass {
                    pipeline,
                    binds,
                    grid: grid(
                        n_items.div_ceil(ipw),
                        ctx.limits().max_compute_workgroups_per_dimension,
                    ),
                },
                bp,
                dl,
                staging,
                order,
                _bufs: bufs,
            });
            Ok(())
        })
    }
}

fn max_bind_of(limits: &wgpu::Limits) -> u64 {
    max_binding(limits)
}

impl EStep<HmmModel> for GpuHmmEngine<'_> {
    fn e_step(&mut self, p: &HmmPrepared) -> Result<HmmStats> {
        self.check(p)?;
        match self.gpu_e_step(p)? {
            Some(stats) => Ok(stats),
            None => self.cpu().e_step(p),
        }
    }

    /// Says how many passes the CPU redid (a sequence whose probability underflowed f32): not
    /// a silent fallback.
    fn report(&self) -> BackendReport {
        let mut reason = self.reason.clone();
        if self.fallbacks > 0 {
            if !reason.is_empty() {
                reason.push_str("; ");
            }
            reason.push_str(&format!(
                "{} pass(es) redone by the CPU engine where f32 underflowed (a sequence too improbable for f32 under the model)",
                self.fallbacks
            ));
        }
        BackendReport {
            backend: Backend::Gpu,
            device: self.gd.ctx.device_label(),
            reason,
        }
    }
}

impl HmmEngine for GpuHmmEngine<'_> {
    fn posteriors(&mut self, p: &HmmPrepared, out: &mut [f64]) -> Result<f64> {
        self.check(p)?;
        let want = self.gd.data.n_samples() * self.shape.k;
        if out.len() != want {
            return Err(Error::param(format!(
                "the posteriors buffer holds {} values but the data need {want}",
                out.len()
            )));
        }
        match self.gpu_posteriors(p, out)? {
            Some(ll) => Ok(ll),
            None => self.cpu().posteriors(p, out),
        }
    }

    fn viterbi(&mut self, p: &HmmPrepared, states: &mut [usize]) -> Result<f64> {
        self.check(p)?;
        let n = self.gd.data.n_samples();
        if states.len() != n {
            return Err(Error::param(format!(
                "the states buffer holds {} values but the data have {n} rows",
                states.len()
            )));
        }
        self.viterbi_state()?;
        let ctx = Arc::clone(&self.gd.ctx);
        let k = self.shape.k;
        self.write_params(p);
        let Some(v) = self.viterbi.as_ref() else {
            unreachable!("built above")
        };
        let layout = &self.layout;
        ctx.checked("GPU Viterbi", || {
            let mut enc = encoder(&ctx, "hmm viterbi");
            {
                let mut cpass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("hmm viterbi"),
                    timestamp_writes: None,
                });
                self.points.encode(&mut cpass);
                v.pass.encode(&mut cpass);
            }
            let bp_bytes = 4 * (n * k) as u64;
            let dl_bytes = v.dl.size();
            enc.copy_buffer_to_buffer(&v.bp, 0, &v.staging, 0, bp_bytes);
            enc.copy_buffer_to_buffer(&v.dl, 0, &v.staging, bp_bytes, dl_bytes);
            ctx.queue().submit([enc.finish()]);
            let mut total = 0.0;
            read_back_bytes(&ctx, &v.staging, bp_bytes + dl_bytes, |bytes| {
                let (bp_b, dl_b) = bytes.split_at(bp_bytes as usize);
                let bp: Vec<u32> = bp_b
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let dl: Vec<f32> = dl_b
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let m = v.order.len();
                for (it, &s) in v.order.iter().enumerate() {
                    let r = layout.rows(s);
                    let delta = &dl[it * k..(it + 1) * k];
                    let (mut arg, mut best) = (0, delta[0]);
                    for (j, &x) in delta.iter().enumerate() {
                        if x > best {
                            (arg, best) = (j, x);
                        }
                    }
                    total +=
                        dl[m * k + 2 * it] as f64 + dl[m * k + 2 * it + 1] as f64 + best as f64;
                    states[r.end - 1] = arg;
                    for t in (r.start + 1..r.end).rev() {
                        arg = bp[t * k + arg] as usize;
                        states[t - 1] = arg;
                    }
                }
            })?;
            Ok(total)
        })
    }

    fn score(&mut self, p: &HmmPrepared) -> Result<f64> {
        self.check(p)?;
        match self.gpu_score(p)? {
            Some(ll) => Ok(ll),
            None => self.cpu().score(p),
        }
    }
}
