//! The Gaussian-mixture kernels: one small struct per kernel holding its pipeline and bind-group
//! layout, and the `#[repr(C)]` uniforms they read.
//!
//! Every kernel is one WGSL file in this folder, built into the binary with `include_str!`.
//! Sizes the kernels must know at compile time (D, K, the tile, the covariance type, offsets
//! into the parameter buffer) are prepended to the source as WGSL `const` declarations, so the
//! driver's compiler sees constant loop bounds and fixed-size arrays (registers). Pipelines are
//! cached in the [`GpuContext`] under the kernel's name and those constants, so building several
//! engines of the same shape compiles once.
//!
//! CPU twins: the statistics kernels' twin is
//! [`chunk_stats_reference`](crate::models::gmm::cpu::chunk_stats_reference) (same formulas, f64),
//! the per-point kernel's is the reference per-point path; `tests/gpu_vs_cpu.rs` compares them.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::device::gpu::kernels::{KernelPipeline, Slot, WG, build_kernel};
use crate::device::gpu::{GpuContext, GpuVariant};
use crate::error::{Error, Result};
use crate::models::gmm::{CovarianceType, GmmStats, Prepared};

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

const GMM_COMMON: &str = include_str!("gmm_common.wgsl");
const GMM_STATS_FULL: &str = include_str!("gmm_stats_full.wgsl");
const GMM_STATS_FULL_STAGED: &str = include_str!("gmm_stats_full_staged.wgsl");
const GMM_LSE_SERIAL: &str = include_str!("gmm_lse_serial.wgsl");
const GMM_LSE_WG: &str = include_str!("gmm_lse_wg.wgsl");
const GMM_LSE_SG: &str = include_str!("gmm_lse_sg.wgsl");
const GMM_STATS_DIAG: &str = include_str!("gmm_stats_diag.wgsl");
const GMM_POINTS: &str = include_str!("gmm_points.wgsl");
const GMM_RESP_ESTEP: &str = include_str!("gmm_resp_estep.wgsl");
const GMM_RESP_WEIGHTS: &str = include_str!("gmm_resp_weights.wgsl");
const GMM_RESP_ESTEP_WEIGHTED: &str = include_str!("gmm_resp_estep_weighted.wgsl");

/// Points per tile unless the caller asks otherwise. Large enough that the workgroup barriers of
/// a tile are amortized over many points and that every invocation of the E-step has work for
/// K ≥ 16; small enough to leave room for several workgroups per multiprocessor and to fit
/// WebGPU's default 16 KiB of workgroup memory for D = K = 16 (9 KiB). The tile shrinks by
/// halves until it fits the adapter's workgroup memory. Measured at N = 1M, D = K = 16 on an
/// H100: full 64 and 128 within 3% (256 slower), diag 64 15–20% faster than 32 or 128; on
/// lavapipe 64 is about twice as fast as 128.
pub(crate) const DEFAULT_TILE: usize = 64;

/// Points per tile of the staged full-covariance kernel (`gmm_stats_full_staged.wgsl`) unless the
/// caller asks otherwise: its staged deviations take 16·K·⌈D/4⌉ bytes per point (1 KiB at
/// D = K = 16), so 32 points (37.5 KiB in all with the log-sum-exp arrays) fit the 48 KiB
/// that NVIDIA's Vulkan driver allows a workgroup.
pub(crate) const STAGED_TILE: usize = 32;

/// The smallest tile the staged kernel runs with; below it the plain kernel is used.
const STAGED_MIN_TILE: usize = 8;

/// Units (4×4 blocks or row pieces, 16 floats of accumulators) per invocation in one pass of
/// `gmm_stats_full`.
const MAX_BLOCKS_PER_THREAD: usize = 4;
/// Columns of the precision factor per block of the full and tied quadratic form
/// (`log_jointv` in `gmm_common.wgsl`): its private accumulators are `QUAD_BLOCK` vectors of
/// points, whatever D is.
const QUAD_BLOCK: usize = 32;
/// Accumulated entries (2 floats each) per invocation in one pass of `gmm_stats_diag`.
const MAX_ENTRIES_PER_THREAD: usize = 8;

/// Per-dispatch arguments of the GMM kernels. Mirrors `struct Chunk` in
/// `gmm_common.wgsl` (four `u32`, 16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct ChunkUniform {
    /// Rows this dispatch covers.
    pub n_rows: u32,
    /// Index of its first row in the bound data buffer.
    pub row_offset: u32,
    /// `ceil(n_rows / T)`.
    pub n_tiles: u32,
    /// `gmm_points`: bit 0 → also write responsibilities; bit 1 → write the log-joint
    /// `log p(x, k)` instead ([`POINTS_LOG_JOINT`]).
    pub flags: u32,
}

/// [`ChunkUniform::flags`] bit of `gmm_points`: write the log-joint `log p(x_n, k)` of every row
/// and component (before the log-sum-exp) where the responsibilities would go. With zero
/// log-weights these are the component log-densities (a hidden Markov model's emissions).
pub(crate) const POINTS_LOG_JOINT: u32 = 2;

/// Where the statistics kernels take the responsibilities of a tile from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weights {
    /// Computed from the parameters (the mixture's E-step; `gmm_resp_estep.wgsl`).
    EStep,
    /// Read from a buffer of `[N][K]` weights bound at binding 4 (`gmm_resp_weights.wgsl`): the
    /// weighted moments of any weights (a hidden Markov model's state posteriors); the
    /// log-likelihood columns of the partials are then 0.
    Buffer,
    /// Computed from the parameters and multiplied by a per-row sample weight read from a
    /// buffer of `[N]` weights bound at binding 4 (`gmm_resp_estep_weighted.wgsl`): the weighted
    /// mixture's E-step; the log-likelihood columns hold `Σ w·log p(x)`.
    SampleWeighted,
}

impl Weights {
    fn source(self) -> &'static str {
        match self {
            Weights::EStep => GMM_RESP_ESTEP,
            Weights::Buffer => GMM_RESP_WEIGHTS,
            Weights::SampleWeighted => GMM_RESP_ESTEP_WEIGHTED,
        }
    }

    /// Whether the kernel binds a fifth buffer (binding 4).
    fn binds_buffer(self) -> bool {
        self != Weights::EStep
    }
}

/// Which log-sum-exp the E-step kernels are built with (`gmm_lse_*.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lse {
    /// One invocation per point (`gmm_lse_serial.wgsl`).
    Serial,
    /// `lpp` invocations per point, exchanging through workgroup memory (`gmm_lse_wg.wgsl`).
    Workgroup,
    /// `lpp` invocations per point, exchanging with subgroup shuffles (`gmm_lse_sg.wgsl`).
    Subgroup,
}

impl Lse {
    fn code(self) -> u32 {
        match self {
            Lse::Serial => 0,
            Lse::Workgroup => 1,
            Lse::Subgroup => 2,
        }
    }

    fn source(self) -> &'static str {
        match self {
            Lse::Serial => GMM_LSE_SERIAL,
            Lse::Workgroup => GMM_LSE_WG,
            Lse::Subgroup => GMM_LSE_SG,
        }
    }
}

/// The sizes a GMM kernel is specialized on, and the tile it runs with on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GmmShape {
    /// Covariance type.
    pub cov: CovarianceType,
    /// Components.
    pub k: usize,
    /// Features.
    pub d: usize,
    /// `D + 1` rounded up to a multiple of 4 (the augmented, padded point).
    pub dp: usize,
    /// Points per tile.
    pub tile: usize,
    /// Points per invocation of the E-step (2 or 4).
    pub ppt: usize,
    /// The log-sum-exp.
    pub lse: Lse,
    /// Invocations per point of the log-sum-exp (1 for [`Lse::Serial`]).
    pub lpp: usize,
    /// Full and tied: the staged statistics kernel (`gmm_stats_full_staged.wgsl`).
    pub staged: bool,
}

impl GmmShape {
    /// The shape for `k` components of `d` features, with the largest tile of at most `tile`
    /// points (default [`DEFAULT_TILE`]; rounded down to a power of two ≥ 4) whose workgroup
    /// memory fits the device's limit, and the default kernels.
    pub fn new(
        cov: CovarianceType,
        k: usize,
        d: usize,
        tile: Option<usize>,
        limits: &wgpu::Limits,
    ) -> Result<Self> {
        Self::with_variant(cov, k, d, tile, limits, &GpuVariant::default(), None)
    }

    /// The shape of `variant`'s kernels, where this device can run them: the staged kernel only
    /// for full and tied covariances and when a tile of at least 8 points fits the workgroup
    /// memory (default tile [`STAGED_TILE`]); a parallel log-sum-exp only with at least 2
    /// components and 2 invocations per point; subgroup shuffles only when `subgroups` (the
    /// device's smallest and largest subgroup size, `None` without the feature) are powers of
    /// two from the lanes per point to [`WG`]. Otherwise the next plainer kernel.
    pub fn with_variant(
        cov: CovarianceType,
        k: usize,
        d: usize,
        tile: Option<usize>,
        limits: &wgpu::Limits,
        variant: &GpuVariant,
        subgroups: Option<(u32, u32)>,
    ) -> Result<Self> {
        let dp = (d + 1).div_ceil(4) * 4;
        let nb2 = d.div_ceil(4);
        let wg = WG as usize;
        let limit = limits.max_compute_workgroup_storage_size as usize;
        let parallel = variant.parallel_lse || variant.subgroups;
        // Lanes per point of a parallel log-sum-exp: a power of two ≤ 4, ≤ K, with T·LPP ≤ WG.
        let lpp_of = |t: usize| {
            if parallel {
                let m = 4.min(k).min(wg / t).max(1);
                1usize << m.ilog2()
            } else {
                1
            }
        };
        let sg_ok = |lpp: usize| {
            variant.subgroups
                && subgroups.is_some_and(|(lo, hi)| {
                    lo.is_power_of_two()
                        && hi.is_power_of_two()
                        && lo as usize >= lpp
                        && hi as usize <= wg
                })
        };
        let lse_of = |t: usize| {
            let lpp = lpp_of(t);
            if lpp < 2 {
                (Lse::Serial, 1)
            } else if sg_ok(lpp) {
                (Lse::Subgroup, lpp)
            } else {
                (Lse::Workgroup, lpp)
            }
        };
        let bytes = |t: usize, staged: bool| {
            let (lse, lpp) = lse_of(t);
            let mut b = 4 * (t * dp + t * k);
            if lse == Lse::Workgroup {
                b += 8 * t * lpp;
            }
            if staged {
                b += 16 * t * k * nb2 + 4 * t * k;
            }
            b
        };
        let pow2_tile = |want: usize| 1usize << want.clamp(4, wg).ilog2();
        // The staged kernel where a tile of at least STAGED_MIN_TILE points fits.
        let mut staged = false;
        let mut tile_pts = 0;
        if variant.staged && matches!(cov, CovarianceType::Full | CovarianceType::Tied) {
            let mut t = pow2_tile(tile.unwrap_or(STAGED_TILE));
            while t > STAGED_MIN_TILE && bytes(t, true) > limit {
                t /= 2;
            }
            if t >= STAGED_MIN_TILE && bytes(t, true) <= limit {
                staged = true;
                tile_pts = t;
            }
        }
        if !staged {
            let mut t = pow2_tile(tile.unwrap_or(DEFAULT_TILE));
            // A multiple of 4: the E-step takes four points per invocation.
            while t > 4 && bytes(t, false) > limit {
                t /= 2;
            }
            if bytes(t, false) > limit {
                return Err(Error::DeviceLimits(format!(
                    "a tile of 4 points of {d} features with {k} components needs {} bytes of workgroup memory, the device allows {limit}; use the CPU backend",
                    bytes(4, false)
                )));
            }
            tile_pts = t;
        }
        // Indices into the parameter buffer and the tiles are u32 on the GPU.
        let params = k * dp + k + cov.cov_len(k, d);
        if params > u32::MAX as usize / 2 {
            return Err(Error::DeviceLimits(format!(
                "{k} components of {d} features have too many parameters for the GPU kernels; use the CPU backend"
            )));
        }
        let (lse, lpp) = lse_of(tile_pts);
        // The staged kernel's smaller tiles give too few (point, component) pairs for four
        // points per invocation to keep every invocation of the E-step busy.
        let ppt = if staged && (tile_pts / 4) * k < wg {
            2
        } else {
            4
        };
        Ok(Self {
            cov,
            k,
            d,
            dp,
            tile: tile_pts,
            ppt,
            lse,
            lpp,
            staged,
        })
    }

    /// An estimate of the loop iterations one invocation runs per tile in the part every GMM
    /// kernel shares: loading the tile, log p(x, k) of its share of (point, component) pairs,
    /// the log-sum-exp. Constant loops of PPT (≤ 4) iterations are not counted: llvmpipe
    /// unrolls them (measured: the full kernels at K = 1, T = 16 went wrong from D = 349–350,
    /// where this count, without them, reaches 63 500 + the few loops of the statistics).
    /// Compared with [`GpuContext::loop_budget`], which keeps a margin below llvmpipe's 65 535.
    fn e_step_loops_per_tile(&self) -> u64 {
        let (t, k, d, ppt) = (self.tile, self.k, self.d, self.ppt);
        let wg = WG as usize;
        let load = (t * d).div_ceil(wg);
        let calls = ((t / ppt) * k).div_ceil(wg);
        let quad = if self.full_s2() {
            let jb = d.min(QUAD_BLOCK);
            let blocks = d.div_ceil(jb);
            // Rows read per block (the block's last column + 1), the triangle's entries, the
            // squares of the columns.
            let rows: usize = (1..=blocks).map(|b| (b * jb).min(d)).sum();
            rows + d * (d + 1) / 2 + d + blocks
        } else {
            d
        };
        let lse = 3 * k + 2 * self.lpp + 4;
        (load + calls * (quad + 1) + lse + 1) as u64
    }

    /// Loop iterations of one invocation before its first tile (zeroing the tile).
    fn setup_loops(&self) -> u64 {
        ((self.tile * self.nb()).div_ceil(WG as usize) + self.tile + 16) as u64
    }

    /// `NB`: 4-wide column blocks of the augmented point.
    pub fn nb(&self) -> usize {
        self.dp / 4
    }

    /// Offset of the log-constants in the parameter buffer.
    pub fn off_logc(&self) -> usize {
        self.k * self.dp
    }

    /// Offset of the precision factors in the parameter buffer.
    pub fn off_prec(&self) -> usize {
        self.off_logc() + self.k
    }

    /// Floats in the parameter buffer.
    pub fn params_len(&self) -> usize {
        self.off_prec() + self.cov.cov_len(self.k, self.d)
    }

    /// Whether the statistics hold full matrices (full, tied) rather than diagonals.
    pub fn full_s2(&self) -> bool {
        matches!(self.cov, CovarianceType::Full | CovarianceType::Tied)
    }

    fn cov_code(&self) -> u32 {
        match self.cov {
            CovarianceType::Full => 0,
            CovarianceType::Tied => 1,
            CovarianceType::Diag => 2,
            CovarianceType::Spherical => 3,
        }
    }

    /// The parameter buffer of `p` (see `gmm_common.wgsl`: means minus `centre`, log-constants,
    /// precision factors, as f32) and the shifts the GPU uses, in the data's coordinates (the
    /// f32-rounded means plus the centre), `[K][D]`.
    pub fn params_f32(&self, centre: &[f64], p: &Prepared) -> (Vec<f32>, Vec<f64>) {
        let (k, d, dp) = (self.k, self.d, self.dp);
        let mut v = vec![0f32; self.params_len()];
        let mut shift = vec![0f64; k * d];
        for c in 0..k {
            for i in 0..d {
                let m = (p.means[c * d + i] - centre[i]) as f32;
                v[c * dp + i] = m;
                shift[c * d + i] = m as f64 + centre[i];
            }
            v[self.off_logc() + c] =
                (p.log_weights[c] + p.log_det[c] - 0.5 * d as f64 * LN_2PI) as f32;
        }
        for (dst, src) in v[self.off_prec()..].iter_mut().zip(&p.prec_chol) {
            *dst = *src as f32;
        }
        (v, shift)
    }

    /// The statistics of `n_samples` points from the summed partial row `v` of a statistics
    /// kernel (its layout: `gmm_stats_full.wgsl` or `gmm_stats_diag.wgsl`), summed about the
    /// GPU's shifts `gpu_shift` and moved to the exact shifts `means` (`[K][D]`).
    pub fn unpack(&self, v: &[f64], n_samples: f64, means: &[f64], gpu_shift: &[f64]) -> GmmStats {
        let (k, d) = (self.k, self.d);
        let mut st = GmmStats::zeros(self.cov, k, d, gpu_shift);
        st.n_samples = n_samples;
        let t = self.tile;
        // Σ log p(x): one column per invocation of a tile.
        st.log_likelihood = v[..t].iter().sum();
        if self.full_s2() {
            // Layout of gmm_stats_full.wgsl: the S2 blocks, then the row pieces.
            let (nb, nb2) = (self.nb(), d.div_ceil(4));
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
        // Summed about the f32 shifts the GPU used; moved to the exact f64 means.
        st.reshift(means);
        st
    }

    /// The WGSL `const` declarations of `gmm_common.wgsl`.
    fn header(&self) -> String {
        format!(
            "const D: u32 = {}u;\nconst K: u32 = {}u;\nconst DP: u32 = {}u;\nconst NB: u32 = {}u;\n\
             const T: u32 = {}u;\nconst WG: u32 = {WG}u;\nconst COV: u32 = {}u;\n\
             const OFF_LOGC: u32 = {}u;\nconst OFF_PREC: u32 = {}u;\n\
             const PPT: u32 = {}u;\nalias PV = vec{}<f32>;\n\
             const LSE: u32 = {}u;\nconst LPP: u32 = {}u;\nconst JB: u32 = {}u;\n",
            self.d,
            self.k,
            self.dp,
            self.nb(),
            self.tile,
            self.cov_code(),
            self.off_logc(),
            self.off_prec(),
            self.ppt,
            self.ppt,
            self.lse.code(),
            self.lpp,
            self.d.min(QUAD_BLOCK),
        )
    }

    /// The WGSL source of the log-sum-exp (prepended after `gmm_common.wgsl`).
    fn lse_source(&self) -> &'static str {
        self.lse.source()
    }
}

/// Which statistics kernel a shape uses and the constants it is specialized on.
struct StatsSpec {
    name: &'static str,
    source: &'static str,
    consts: String,
    partial_len: usize,
    passes: usize,
    /// Upper bound on one invocation's loop iterations per tile, and before and after the
    /// tiles (see [`GmmShape::e_step_loops_per_tile`]).
    loops_per_tile: u64,
    loops_fixed: u64,
}

impl StatsSpec {
    fn new(shape: &GmmShape) -> Self {
        let wg = WG as usize;
        if shape.full_s2() {
            let nb2 = shape.d.div_ceil(4);
            let nbt = nb2 * (nb2 + 1) / 2;
            let nblk = shape.k * nbt;
            let nu = nblk + shape.k * shape.nb();
            let passes = nu.div_ceil(wg * MAX_BLOCKS_PER_THREAD);
            let bpt = nu.div_ceil(wg * passes);
            let p = shape.tile + 16 * nblk + 4 * shape.k * shape.nb();
            let (name, source) = if shape.staged {
                ("gmm_stats_full_staged", GMM_STATS_FULL_STAGED)
            } else {
                ("gmm_stats_full", GMM_STATS_FULL)
            };
            Self {
                name,
                source,
                consts: format!(
                    "const NB2: u32 = {nb2}u;\nconst NBT: u32 = {nbt}u;\nconst NBLK: u32 = {nblk}u;\n\
                     const NU: u32 = {nu}u;\nconst BPT: u32 = {bpt}u;\nconst P: u32 = {p}u;\n"
                ),
                partial_len: p,
                passes,
                // Per unit: the T points and `block_coords`' walk over ≤ NB2 block rows.
                loops_per_tile: shape.e_step_loops_per_tile()
                    + (bpt * (shape.tile + nb2 + 1)) as u64,
                loops_fixed: shape.setup_loops() + 10 * bpt as u64,
            }
        } else {
            let ne = shape.k * (shape.d + 1);
            let passes = ne.div_ceil(wg * MAX_ENTRIES_PER_THREAD);
            let ept = ne.div_ceil(wg * passes);
            let p = shape.tile + 2 * ne;
            Self {
                name: "gmm_stats_diag",
                source: GMM_STATS_DIAG,
                consts: format!(
                    "const NE: u32 = {ne}u;\nconst EPT: u32 = {ept}u;\nconst P: u32 = {p}u;\n"
                ),
                partial_len: p,
                passes,
                loops_per_tile: shape.e_step_loops_per_tile() + (ept * (shape.tile + 1)) as u64,
                loops_fixed: shape.setup_loops() + 3 * ept as u64,
            }
        }
    }
}

/// The most tiles one workgroup may walk on `ctx`'s device when each costs `per_tile` loop
/// iterations after `fixed` ones (at most `want`), or the error that refuses the shape when not
/// even one tile fits the driver's loop budget.
fn tiles_within_loop_budget(
    ctx: &GpuContext,
    shape: &GmmShape,
    kernel: &str,
    per_tile: u64,
    fixed: u64,
    want: usize,
) -> Result<usize> {
    let Some(budget) = ctx.loop_budget() else {
        return Ok(want);
    };
    let fit = budget.saturating_sub(fixed) / per_tile.max(1);
    if fit == 0 {
        return Err(Error::DeviceLimits(format!(
            "the {kernel} kernel for {} {} components of {} features needs about {} loop iterations per invocation, more than the {budget} that this software adapter (llvmpipe) runs before it silently ends a kernel's loops; use the CPU backend",
            shape.k,
            shape.cov,
            shape.d,
            per_tile + fixed
        )));
    }
    Ok(want.min(usize::try_from(fit).unwrap_or(usize::MAX)))
}

/// The fused E-step + statistics kernel (`gmm_stats_full.wgsl` or `gmm_stats_diag.wgsl`).
pub(crate) struct StatsKernel {
    /// Pipeline and layout.
    pub kernel: Arc<KernelPipeline>,
    /// Floats per workgroup partial (one row of the partials buffer).
    pub partial_len: usize,
    /// Passes (dispatch y) that split the statistic entries among workgroups.
    pub passes: u32,
    /// The most tiles one workgroup should walk (64, fewer under the driver's loop budget).
    pub max_tiles: usize,
    /// Whether `max_tiles` is a hard limit (the driver ends longer loops).
    pub tiles_bounded: bool,
}

impl StatsKernel {
    /// The kernel for `shape` with the responsibilities from `weights`; with
    /// [`Weights::Buffer`] its bind group has a fifth binding, the `[N][K]` weights, with
    /// [`Weights::SampleWeighted`] the `[N]` sample weights.
    pub fn with_weights(ctx: &GpuContext, shape: &GmmShape, weights: Weights) -> Result<Self> {
        let StatsSpec {
            name,
            source,
            consts,
            partial_len,
            passes,
            mut loops_per_tile,
            loops_fixed,
        } = StatsSpec::new(shape);
        if weights.binds_buffer() {
            // The copy (or scaling) of the tile's weights (Buffer: fewer loops than the E-step
            // it replaces, which stays counted).
            loops_per_tile += (shape.tile * shape.k).div_ceil(WG as usize) as u64;
        }
        let max_tiles =
            tiles_within_loop_budget(ctx, shape, name, loops_per_tile, loops_fixed, 64)?;
        if passes > ctx.limits().max_compute_workgroups_per_dimension as usize {
            return Err(Error::DeviceLimits(format!(
                "{} components of {} features need {passes} statistic passes, more than the device's {} workgroups per dimension; use the CPU backend",
                shape.k,
                shape.d,
                ctx.limits().max_compute_workgroups_per_dimension
            )));
        }
        let header = format!("{}{consts}", shape.header());
        let mut slots = vec![Slot::Uniform, Slot::Read, Slot::Read, Slot::ReadWrite];
        if weights.binds_buffer() {
            slots.push(Slot::Read);
        }
        let key = format!("{name} {weights:?}\n{header}");
        let kernel = ctx.pipeline(&key, || {
            let source = stats_source(shape, &header, source, weights);
            build_kernel(ctx, name, &source, &slots)
        })?;
        Ok(Self {
            kernel,
            partial_len,
            passes: passes as u32,
            max_tiles,
            tiles_bounded: ctx.loop_budget().is_some(),
        })
    }
}

/// The full source of a statistics kernel: constants, the common part, the log-sum-exp, where
/// the responsibilities come from, the kernel.
fn stats_source(shape: &GmmShape, header: &str, kernel: &str, weights: Weights) -> String {
    format!(
        "{header}{GMM_COMMON}{}{}{kernel}",
        shape.lse_source(),
        weights.source()
    )
}

/// The per-point kernel (`gmm_points.wgsl`): log p(x) and responsibilities.
pub(crate) struct PointsKernel {
    /// Pipeline and layout.
    pub kernel: Arc<KernelPipeline>,
    /// The most tiles one workgroup may walk (the driver's loop budget; else unbounded).
    pub max_tiles: usize,
}

impl PointsKernel {
    /// The most tiles one workgroup of the kernel for `shape` may walk on `ctx`'s device, or
    /// the error that refuses the shape there (checked when an engine is built, before the
    /// kernel is).
    pub fn max_tiles(ctx: &GpuContext, shape: &GmmShape) -> Result<usize> {
        // Per tile: the shared E-step part and the copy of the responsibilities.
        let per_tile =
            shape.e_step_loops_per_tile() + (shape.tile * shape.k).div_ceil(WG as usize) as u64;
        tiles_within_loop_budget(
            ctx,
            shape,
            "gmm_points",
            per_tile,
            shape.setup_loops(),
            usize::MAX,
        )
    }

    /// The kernel for `shape`.
    pub fn new(ctx: &GpuContext, shape: &GmmShape) -> Result<Self> {
        let max_tiles = Self::max_tiles(ctx, shape)?;
        let header = shape.header();
        let kernel = ctx.pipeline(&format!("gmm_points\n{header}"), || {
            let source = format!("{header}{GMM_COMMON}{}{GMM_POINTS}", shape.lse_source());
            build_kernel(
                ctx,
                "gmm_points",
                &source,
                &[
                    Slot::Uniform,
                    Slot::Read,
                    Slot::Read,
                    Slot::ReadWrite,
                    Slot::ReadWrite,
                ],
            )
        })?;
        Ok(Self { kernel, max_tiles })
    }
}

/// The full WGSL sources of every kernel for `shape`, as the pipelines compile them (for tests
/// that validate the shaders without a device).
#[cfg(test)]
pub(crate) fn sources_for_tests(shape: &GmmShape) -> Vec<(&'static str, String)> {
    let h = shape.header();
    let lse = shape.lse_source();
    let stats = StatsSpec::new(shape);
    let stats_header = format!("{h}{}", stats.consts);
    vec![
        (
            stats.name,
            stats_source(shape, &stats_header, stats.source, Weights::EStep),
        ),
        (
            stats.name,
            stats_source(shape, &stats_header, stats.source, Weights::Buffer),
        ),
        (
            stats.name,
            stats_source(shape, &stats_header, stats.source, Weights::SampleWeighted),
        ),
        ("gmm_points", format!("{h}{GMM_COMMON}{lse}{GMM_POINTS}")),
    ]
    .into_iter()
    .chain(crate::device::gpu::reduce::sources_for_tests())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::gpu::reduce::ReduceUniform;

    fn parse(name: &str, source: &str) -> naga::Module {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        // Subgroup operations need the capability; the other kernels need none.
        let caps = if source.contains("subgroup") {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        module
    }

    /// Size in bytes of the WGSL struct `name` in `module`, as naga lays it out.
    fn wgsl_struct_size(module: &naga::Module, name: &str) -> u32 {
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no struct {name}"));
        match &ty.inner {
            naga::TypeInner::Struct { span, .. } => *span,
            other => panic!("{name} is not a struct: {other:?}"),
        }
    }

    #[test]
    fn uniform_structs_match_their_wgsl_twins() {
        let shape = GmmShape {
            cov: CovarianceType::Full,
            k: 3,
            d: 2,
            dp: 4,
            tile: 64,
            ppt: 4,
            lse: Lse::Serial,
            lpp: 1,
            staged: false,
        };
        for (name, source) in sources_for_tests(&shape) {
            let module = parse(name, &source);
            if name == "reduce_partials" {
                assert_eq!(
                    wgsl_struct_size(&module, "Reduce") as usize,
                    std::mem::size_of::<ReduceUniform>()
                );
            } else {
                assert_eq!(
                    wgsl_struct_size(&module, "Chunk") as usize,
                    std::mem::size_of::<ChunkUniform>()
                );
            }
        }
    }

    #[test]
    fn every_kernel_validates_for_every_covariance_type_and_edge_shapes() {
        let limits = wgpu::Limits {
            max_compute_workgroup_storage_size: 48 << 10,
            ..Default::default()
        };
        for variant in ["base", "lse", "sg", "stage", "stage+sg+red"] {
            let variant: GpuVariant = variant.parse().unwrap();
            for cov in CovarianceType::ALL {
                for (k, d) in [(1, 1), (3, 2), (16, 16), (5, 7), (2, 33), (4, 8)] {
                    let mut shape =
                        GmmShape::with_variant(cov, k, d, None, &limits, &variant, Some((32, 32)))
                            .unwrap();
                    for ppt in [2, 4] {
                        shape.ppt = ppt;
                        for (name, source) in sources_for_tests(&shape) {
                            parse(
                                &format!("{name} {variant} {cov} k={k} d={d} ppt={ppt}"),
                                &source,
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn variants_fall_back_where_the_device_or_the_shape_cannot_run_them() {
        let mut limits = wgpu::Limits {
            max_compute_workgroup_storage_size: 48 << 10,
            ..Default::default()
        };
        let all: GpuVariant = "stage+sg+red".parse().unwrap();
        let shape = |cov, k, d, limits: &wgpu::Limits, sg| {
            GmmShape::with_variant(cov, k, d, None, limits, &all, sg).unwrap()
        };
        // D = K = 16 on an H100-like device: staged, 32 points, 2 per E-step invocation,
        // subgroup log-sum-exp with 4 lanes per point.
        let s = shape(CovarianceType::Full, 16, 16, &limits, Some((32, 32)));
        assert_eq!((s.staged, s.tile, s.ppt), (true, 32, 2));
        assert_eq!((s.lse, s.lpp), (Lse::Subgroup, 4));
        // No subgroup feature, or subgroups smaller than the lanes of a point: workgroup memory.
        let s = shape(CovarianceType::Tied, 16, 16, &limits, None);
        assert_eq!((s.staged, s.lse, s.lpp), (true, Lse::Workgroup, 4));
        let s = shape(CovarianceType::Full, 16, 16, &limits, Some((2, 64)));
        assert_eq!(s.lse, Lse::Workgroup);
        // Diag has no staged kernel; K = 1 has nothing to parallelize; K = 3 gets 2 lanes.
        let s = shape(CovarianceType::Diag, 16, 16, &limits, Some((32, 32)));
        assert_eq!((s.staged, s.tile, s.lse), (false, 64, Lse::Subgroup));
        let s = shape(CovarianceType::Full, 1, 5, &limits, Some((32, 32)));
        assert_eq!((s.lse, s.lpp), (Lse::Serial, 1));
        let s = shape(CovarianceType::Full, 3, 5, &limits, Some((32, 32)));
        assert_eq!((s.lse, s.lpp), (Lse::Subgroup, 2));
        // The staged tile shrinks with the workgroup memory (32 KiB: 16 points), and the plain
        // kernel takes over when not even 8 points fit.
        limits.max_compute_workgroup_storage_size = 32 << 10;
        let s = shape(CovarianceType::Full, 16, 16, &limits, Some((8, 8)));
        assert_eq!((s.staged, s.tile), (true, 16));
        let s = shape(CovarianceType::Full, 64, 32, &limits, Some((8, 8)));
        assert!(!s.staged);
        assert!(s.tile >= 4);
    }

    #[test]
    fn the_tile_shrinks_to_fit_workgroup_memory() {
        let mut limits = wgpu::Limits::default();
        let s = GmmShape::new(CovarianceType::Full, 16, 16, None, &limits).unwrap();
        assert_eq!(s.tile, 64);
        assert_eq!(s.dp, 20);
        let s = GmmShape::new(CovarianceType::Full, 16, 16, Some(200), &limits).unwrap();
        assert_eq!(s.tile, 64);
        limits.max_compute_workgroup_storage_size = 32768;
        let s = GmmShape::new(CovarianceType::Full, 16, 16, Some(200), &limits).unwrap();
        assert_eq!(s.tile, 128);
        // 4·(64·20 + 64·16) = 9 216 bytes fit WebGPU's default 16 KiB; 128 points do not.
        limits.max_compute_workgroup_storage_size = 8192;
        let s = GmmShape::new(CovarianceType::Full, 16, 16, Some(64), &limits).unwrap();
        assert_eq!(s.tile, 32);
        limits.max_compute_workgroup_storage_size = 512;
        assert!(matches!(
            GmmShape::new(CovarianceType::Full, 16, 16, Some(64), &limits),
            Err(Error::DeviceLimits(_))
        ));
    }
}
