//! The second reduction pass (`reduce_partials.wgsl`): sums the per-workgroup partial rows of a
//! statistics kernel into one row, on the GPU. Every model's statistics kernel writes partial
//! rows of floats; this pass is shared by all of them.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::context::GpuContext;
use super::kernels::{KernelPipeline, Slot, WG, build_kernel};
use crate::error::Result;

const REDUCE_PARTIALS: &str = include_str!("reduce_partials.wgsl");

/// Arguments of the second reduction pass. Mirrors `struct Reduce` in
/// `reduce_partials.wgsl` (four `u32`, 16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct ReduceUniform {
    /// Rows of partials to sum.
    pub n_rows: u32,
    /// Floats per row.
    pub n_cols: u32,
    /// Where the sums go in the output buffer (in floats).
    pub out_offset: u32,
    /// Padding to 16 bytes.
    pub _pad: u32,
}

/// The second reduction pass (`reduce_partials.wgsl`).
pub(crate) struct ReduceKernel {
    /// Pipeline and layout.
    pub kernel: Arc<KernelPipeline>,
    /// Columns each workgroup sums.
    pub cols: usize,
    /// Whether this is the wide layout (see [`ReduceKernel::with_layout`]).
    pub wide: bool,
}

impl ReduceKernel {
    /// Columns each workgroup of [`ReduceKernel::new`]'s kernel sums.
    pub const COLS: usize = 32;

    /// The kernel with 32 columns × 8 lanes per workgroup, one load in flight per invocation.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Self::with_layout(ctx, false)
    }

    /// `wide`: 16 columns × 16 lanes per workgroup and four loads in flight per invocation (twice
    /// the workgroups, each invocation summing an eighth as many rows in chains a quarter as
    /// long); otherwise as [`ReduceKernel::new`].
    pub fn with_layout(ctx: &GpuContext, wide: bool) -> Result<Self> {
        let (cols, lanes, unroll) = if wide {
            (16, 16, 4)
        } else {
            (Self::COLS, 8, 1)
        };
        let header = reduce_header(cols, lanes, unroll);
        let kernel = ctx.pipeline(&format!("reduce_partials\n{header}"), || {
            let source = format!("{header}{REDUCE_PARTIALS}");
            build_kernel(
                ctx,
                "reduce_partials",
                &source,
                &[Slot::Uniform, Slot::Read, Slot::ReadWrite],
            )
        })?;
        Ok(Self { kernel, cols, wide })
    }
}

/// The constants of `reduce_partials.wgsl`.
fn reduce_header(cols: usize, lanes: usize, unroll: usize) -> String {
    format!(
        "const WG: u32 = {WG}u;\nconst COLS: u32 = {cols}u;\nconst LANES: u32 = {lanes}u;\nconst UNROLL: u32 = {unroll}u;\n"
    )
}

/// The WGSL sources of both layouts of the reduction pass, as the pipelines compile them (for
/// tests that validate the shaders without a device).
#[cfg(test)]
pub(crate) fn sources_for_tests() -> Vec<(&'static str, String)> {
    vec![
        (
            "reduce_partials",
            format!("{}{REDUCE_PARTIALS}", reduce_header(32, 8, 1)),
        ),
        (
            "reduce_partials",
            format!("{}{REDUCE_PARTIALS}", reduce_header(16, 16, 4)),
        ),
    ]
}
