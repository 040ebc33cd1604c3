//! The k-means kernel: nearest-center assignment fused with the per-cluster statistics
//! (`kmeans_assign.wgsl`), its `#[repr(C)]` uniform, and the sizes it is specialized on.
//! The second reduction pass is the shared `reduce_partials.wgsl`
//! ([`ReduceKernel`](crate::device::gpu::reduce::ReduceKernel)).
//!
//! CPU twin: [`assign_chunk_reference`](crate::models::kmeans::cpu::assign_chunk_reference) (same
//! assignment rule and statistics, in f64); `tests/gpu_kmeans.rs` compares them.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::device::gpu::GpuContext;
use crate::device::gpu::kernels::{KernelPipeline, Slot, WG, build_kernel};
use crate::error::{Error, Result};

const KMEANS_ASSIGN: &str = include_str!("kmeans_assign.wgsl");

/// Accumulated sum entries per invocation in one pass of `kmeans_assign`.
const MAX_ENTRIES_PER_THREAD: usize = 8;

/// Per-dispatch arguments of `kmeans_assign`. Mirrors `struct Assign` in
/// `kmeans_assign.wgsl` (four `u32`, 16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct AssignUniform {
    /// Rows of the chunk.
    pub n_rows: u32,
    /// `ceil(n_rows / T)`.
    pub n_tiles: u32,
    /// Where the chunk's `K + 1` counts go in the counts buffer (in `u32`).
    pub count_offset: u32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

/// The sizes `kmeans_assign` is specialized on, and the tile it runs with on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KMeansShape {
    /// Clusters.
    pub k: usize,
    /// Features.
    pub d: usize,
    /// Columns summed per point: D, or D + 1 with sample weights (the weight).
    pub dw: usize,
    /// Row stride of the tile in workgroup memory (`DW`, or `DW + 1` when DW is even).
    pub ds: usize,
    /// Points per tile (one per invocation of the assignment).
    pub tile: usize,
    /// Sum entries per invocation in one pass.
    pub ept: usize,
    /// Passes (dispatch y) that split the `K·DW` sum entries.
    pub passes: usize,
    /// Whether the points carry sample weights (a fifth storage binding, `sample_weights`).
    pub weighted: bool,
}

impl KMeansShape {
    /// The shape for `k` clusters of `d` features, with the largest tile of at most `tile`
    /// points (default 256, one per invocation; rounded down to a power of two) whose workgroup
    /// memory fits the device's limit.
    #[cfg(test)]
    pub fn new(k: usize, d: usize, tile: Option<usize>, limits: &wgpu::Limits) -> Result<Self> {
        Self::with_weights(k, d, tile, limits, false)
    }

    /// [`KMeansShape::new`] for points with sample weights (`weighted`) or without.
    pub fn with_weights(
        k: usize,
        d: usize,
        tile: Option<usize>,
        limits: &wgpu::Limits,
        weighted: bool,
    ) -> Result<Self> {
        if k == 0 || d == 0 {
            return Err(Error::param(format!(
                "k-means needs at least one cluster and one feature, got {k} and {d}"
            )));
        }
        let dw = d + usize::from(weighted);
        let ds = if dw.is_multiple_of(2) { dw + 1 } else { dw };
        let want = tile.unwrap_or(WG as usize).clamp(1, WG as usize);
        let mut tile = 1usize << want.ilog2();
        let limit = limits.max_compute_workgroup_storage_size as usize;
        let bytes = |t: usize| 4 * (t * ds + t + k + 1);
        while tile > 1 && bytes(tile) > limit {
            tile /= 2;
        }
        if bytes(tile) > limit {
            return Err(Error::DeviceLimits(format!(
                "one point of {d} features with {k} cluster counts needs {} bytes of workgroup memory, the device allows {limit}; use the CPU backend",
                bytes(1)
            )));
        }
        let ne = k * dw;
        // Indices into the centers, the partials and the tile are u32 on the GPU.
        if ne + tile > u32::MAX as usize / 4 {
            return Err(Error::DeviceLimits(format!(
                "{k} clusters of {d} features are too many for the GPU k-means kernel; use the CPU backend"
            )));
        }
        let wg = WG as usize;
        let passes = ne.div_ceil(wg * MAX_ENTRIES_PER_THREAD);
        if passes > limits.max_compute_workgroups_per_dimension as usize {
            return Err(Error::DeviceLimits(format!(
                "{k} clusters of {d} features need {passes} passes, more than the device's {} workgroups per dimension; use the CPU backend",
                limits.max_compute_workgroups_per_dimension
            )));
        }
        let ept = ne.div_ceil(wg * passes);
        Ok(Self {
            k,
            d,
            dw,
            ds,
            tile,
            ept,
            passes,
            weighted,
        })
    }

    /// Upper bounds on one invocation's loop iterations per tile of `kmeans_assign.wgsl`, and
    /// before and after the tiles: `(per_tile, fixed)`. Compared with
    /// [`crate::device::gpu::GpuContext::loop_budget`] (llvmpipe ends every loop of an invocation
    /// silently past it).
    pub fn loops(&self) -> (u64, u64) {
        let (t, k, d, dw, ept) = (self.tile, self.k, self.d, self.dw, self.ept);
        let wg = WG as usize;
        // Load the tile, assign (K centers × D), move by the center (and weight), then sum.
        let per_tile = (t * dw).div_ceil(wg) + k * (d + 1) + 3 * dw + 4 + ept * (t + 1);
        let fixed = (k + 1).div_ceil(wg) + 3 * ept + 16;
        (per_tile as u64, fixed as u64)
    }

    /// `NE = K·DW`: sum entries.
    pub fn ne(&self) -> usize {
        self.k * self.dw
    }

    /// `P = T + K·DW`: floats per workgroup partial (inertia columns, then the sums; with
    /// weights each cluster's D sums are followed by its weight).
    pub fn partial_len(&self) -> usize {
        self.tile + self.ne()
    }

    /// The WGSL `const` declarations the kernel needs.
    fn header(&self) -> String {
        let weights = if self.weighted {
            "@group(0) @binding(7) var<storage, read> sample_weights: array<f32>;\n\
             fn point_weight(n: u32) -> f32 { return sample_weights[n]; }\n"
        } else {
            "fn point_weight(n: u32) -> f32 { return 1.0; }\n"
        };
        format!(
            "const D: u32 = {}u;\nconst K: u32 = {}u;\nconst WG: u32 = {WG}u;\nconst T: u32 = {}u;\n\
             const DS: u32 = {}u;\nconst NE: u32 = {}u;\nconst EPT: u32 = {}u;\nconst P: u32 = {}u;\n\
             const DW: u32 = {}u;\nconst WEIGHTED: bool = {};\n{weights}",
            self.d,
            self.k,
            self.tile,
            self.ds,
            self.ne(),
            self.ept,
            self.partial_len(),
            self.dw,
            self.weighted,
        )
    }
}

/// The assignment + statistics kernel (`kmeans_assign.wgsl`).
pub(crate) struct AssignKernel {
    /// Pipeline and layout.
    pub kernel: Arc<KernelPipeline>,
}

impl AssignKernel {
    /// The kernel for `shape` (from the context's cache when it was built before).
    pub fn new(ctx: &GpuContext, shape: &KMeansShape) -> Result<Self> {
        let header = shape.header();
        let kernel = ctx.pipeline(&format!("kmeans_assign\n{header}"), || {
            let source = format!("{header}{KMEANS_ASSIGN}");
            let mut slots = vec![
                Slot::Uniform,
                Slot::Read,
                Slot::Read,
                Slot::ReadWrite,
                Slot::ReadWrite,
                Slot::ReadWrite,
                Slot::ReadWrite,
            ];
            if shape.weighted {
                slots.push(Slot::Read);
            }
            build_kernel(ctx, "kmeans_assign", &source, &slots)
        })?;
        Ok(Self { kernel })
    }
}

/// The full WGSL source of the kernel for `shape`, as the pipeline compiles it.
#[cfg(test)]
fn source_for_tests(shape: &KMeansShape) -> String {
    format!("{}{KMEANS_ASSIGN}", shape.header())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, source: &str) -> naga::Module {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        module
    }

    #[test]
    fn the_uniform_matches_its_wgsl_twin() {
        let shape = KMeansShape::new(3, 2, None, &wgpu::Limits::default()).unwrap();
        let module = parse("kmeans_assign", &source_for_tests(&shape));
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Assign"))
            .expect("struct Assign");
        let naga::TypeInner::Struct { span, .. } = &ty.inner else {
            panic!("Assign is not a struct");
        };
        assert_eq!(*span as usize, std::mem::size_of::<AssignUniform>());
    }

    #[test]
    fn the_kernel_validates_for_edge_shapes() {
        let limits = wgpu::Limits::default();
        for (k, d) in [
            (1, 1),
            (3, 2),
            (16, 16),
            (5, 7),
            (2, 33),
            (300, 20),
            (1, 400),
        ] {
            for weighted in [false, true] {
                let shape = KMeansShape::with_weights(k, d, None, &limits, weighted).unwrap();
                parse(
                    &format!("kmeans_assign k={k} d={d} weighted={weighted}"),
                    &source_for_tests(&shape),
                );
            }
        }
    }

    #[test]
    fn the_shape_fits_workgroup_memory_and_splits_entries_into_passes() {
        let mut limits = wgpu::Limits::default();
        // WebGPU's default 16 KiB: 256 points of 16 features (stride 17) do not fit, 128 do.
        let s = KMeansShape::new(16, 16, None, &limits).unwrap();
        assert_eq!((s.tile, s.ds, s.passes, s.ept), (128, 17, 1, 1));
        assert_eq!(s.partial_len(), 128 + 256);
        let s = KMeansShape::new(4, 3, Some(100), &limits).unwrap();
        assert_eq!((s.tile, s.ds), (64, 3));
        // 300·20 = 6000 entries > 256·8 per pass.
        let s = KMeansShape::new(300, 20, None, &limits).unwrap();
        assert_eq!(s.passes, 3);
        assert!(s.ept * 256 * s.passes >= 6000 && s.ept <= MAX_ENTRIES_PER_THREAD);
        limits.max_compute_workgroup_storage_size = 64;
        assert!(matches!(
            KMeansShape::new(16, 16, None, &limits),
            Err(Error::DeviceLimits(_))
        ));
        assert!(KMeansShape::new(0, 3, None, &limits).is_err());
    }
}
