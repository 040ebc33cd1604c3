//! The hidden-Markov-model kernels: their shape (states, lanes, workgroup), the WGSL constants
//! they are specialized on, their pipelines, and how many steps one invocation may run within
//! the driver's loop budget.
//!
//! Every kernel is one WGSL file in this folder (`hmm_chain`, `hmm_post`, `hmm_scan`,
//! `hmm_viterbi`), after the shared `hmm_common.wgsl`, built into the binary with
//! `include_str!`. CPU twins: [`crate::models::hmm::forward_backward`] (`forward`, `backward`,
//! `posteriors`, `viterbi`); `tests/gpu_hmm.rs` compares the engine with the CPU engine.

use std::sync::Arc;

use crate::device::gpu::GpuContext;
use crate::device::gpu::kernels::{KernelPipeline, Slot, build_kernel};
use crate::error::{Error, Result};

const HMM_COMMON: &str = include_str!("hmm_common.wgsl");
const HMM_CHAIN: &str = include_str!("hmm_chain.wgsl");
const HMM_POST: &str = include_str!("hmm_post.wgsl");
const HMM_SCAN: &str = include_str!("hmm_scan.wgsl");
const HMM_VITERBI: &str = include_str!("hmm_viterbi.wgsl");

/// The most states the kernels take: one lane per state, the lanes of a vector within one
/// workgroup of 256 invocations.
pub const MAX_STATES: usize = 256;
/// The most states of the transfer matrices (K × K lanes in one workgroup of 256): with more,
/// a long sequence is not split in time.
pub const MAX_TRANSFER_STATES: usize = 16;
/// The smallest workgroup the kernels run with (several vectors per workgroup when K is small).
const MIN_WG: usize = 64;

/// Per-dispatch arguments of `hmm_chain` and `hmm_post` (`struct Args`) and of `hmm_scan` and
/// `hmm_viterbi` (`struct Block`, whose first field is the first iteration of the dispatch):
/// four `u32`, 16 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct HmmArgs {
    /// `Args`: items of the dispatch; `Block`: its first iteration.
    pub a: u32,
    /// `Args`: chunks of long sequences (X); `Block`: items.
    pub b: u32,
    /// `Block` of `hmm_scan`: X.
    pub c: u32,
    /// Padding.
    pub d: u32,
}

/// Which recursion `hmm_chain` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Forward (α̂).
    Forward,
    /// Backward (β̂).
    Backward,
}

/// What an item of `hmm_chain` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A run of steps whose vectors are written (`MODE 0`).
    Segment,
    /// A chunk of a long sequence whose transfer matrix is computed (`MODE 1`).
    Transfer,
}

/// The sizes the HMM kernels are specialized on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HmmShape {
    /// States K.
    pub k: usize,
    /// Lanes per vector: K rounded up to a power of two.
    pub lk: usize,
}

impl HmmShape {
    /// The shape for `k` states, or the error that refuses it.
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 || k > MAX_STATES {
            return Err(Error::DeviceLimits(format!(
                "the GPU HMM kernels take 1 to {MAX_STATES} states, the model has {k}; use the CPU backend"
            )));
        }
        Ok(Self {
            k,
            lk: k.next_power_of_two(),
        })
    }

    /// Whether long sequences can be split in time (transfer matrices of K × K lanes).
    pub fn splits_in_time(&self) -> bool {
        self.k <= MAX_TRANSFER_STATES
    }

    /// Invocations per workgroup for items of `rows` vectors.
    pub fn wg(&self, rows: usize) -> usize {
        (rows * self.lk).max(MIN_WG)
    }

    /// Items per workgroup for items of `rows` vectors.
    pub fn ipw(&self, rows: usize) -> usize {
        self.wg(rows) / (rows * self.lk)
    }

    /// Floats per partial row of `hmm_post`: log-likelihood, start γ, Σ ξ.
    pub fn ph(&self) -> usize {
        1 + self.k + self.k * self.k
    }

    /// Floats of the parameter buffer `hp`.
    pub fn hp_len(&self) -> usize {
        self.k + 2 * self.k * self.k
    }

    fn log_lk(&self) -> u64 {
        self.lk.ilog2() as u64
    }

    /// Loop iterations per step of `hmm_chain` (the larger of its two directions and modes).
    pub fn chain_loops_per_step(&self) -> u64 {
        1 + self.k as u64 + 2 * self.log_lk() + 2
    }

    /// Loop iterations per step of `hmm_post`.
    pub fn post_loops_per_step(&self) -> u64 {
        1 + 3 * self.k as u64 + 4 * self.log_lk() + 2
    }

    /// Loop iterations per chunk of `hmm_scan`.
    pub fn scan_loops_per_chunk(&self) -> u64 {
        2 * (self.k as u64 + 2 * self.log_lk() + 2) + 1
    }

    /// Loop iterations per step of `hmm_viterbi`.
    pub fn viterbi_loops_per_step(&self) -> u64 {
        1 + self.k as u64 + self.log_lk() + 1
    }

    /// Loop iterations outside the steps (zeroing, the final fold of a transfer matrix).
    pub fn fixed_loops(&self) -> u64 {
        2 * self.k as u64 + 16
    }

    fn header(&self, rows: usize, extra: &str) -> String {
        let (k, lk) = (self.k, self.lk);
        format!(
            "const K: u32 = {k}u;\nconst LK: u32 = {lk}u;\nconst ROWS: u32 = {rows}u;\n\
             const WG: u32 = {}u;\nconst IPW: u32 = {}u;\nconst OFF_A: u32 = {k}u;\n\
             const OFF_LA: u32 = {}u;\nconst PH: u32 = {}u;\n{extra}",
            self.wg(rows),
            self.ipw(rows),
            k + k * k,
            self.ph(),
        )
    }

    /// The source of `hmm_chain` for `dir` and `mode`.
    fn chain_source(&self, dir: Dir, mode: Mode) -> (String, String) {
        let rows = match mode {
            Mode::Segment => 1,
            Mode::Transfer => self.lk,
        };
        let extra = format!(
            "const DIR: u32 = {}u;\nconst MODE: u32 = {}u;\n",
            (dir == Dir::Backward) as u32,
            (mode == Mode::Transfer) as u32
        );
        let h = self.header(rows, &extra);
        (h.clone(), format!("{h}{HMM_COMMON}{HMM_CHAIN}"))
    }

    fn post_source(&self) -> (String, String) {
        let h = self.header(1, "");
        (h.clone(), format!("{h}{HMM_COMMON}{HMM_POST}"))
    }

    fn scan_source(&self, cb: u32) -> (String, String) {
        let h = self.header(1, &format!("const CB: u32 = {cb}u;\n"));
        (h.clone(), format!("{h}{HMM_COMMON}{HMM_SCAN}"))
    }

    fn viterbi_source(&self, vb: u32) -> (String, String) {
        let h = self.header(1, &format!("const VB: u32 = {vb}u;\n"));
        (h.clone(), format!("{h}{HMM_COMMON}{HMM_VITERBI}"))
    }
}

/// The most steps (or chunks) one invocation may run at `per_step` loop iterations each on
/// `ctx`'s device (at most `want`), or the error that refuses the shape when not even
/// `at_least` fit the driver's loop budget.
pub(crate) fn steps_within_loop_budget(
    ctx: &GpuContext,
    shape: &HmmShape,
    kernel: &str,
    per_step: u64,
    want: usize,
    at_least: usize,
) -> Result<usize> {
    let Some(budget) = ctx.loop_budget() else {
        return Ok(want);
    };
    let fit = budget.saturating_sub(shape.fixed_loops()) / per_step.max(1);
    let fit = usize::try_from(fit).unwrap_or(usize::MAX);
    if fit < at_least {
        return Err(Error::DeviceLimits(format!(
            "the {kernel} kernel for {} states needs about {per_step} loop iterations per step, and this software adapter (llvmpipe) ends a kernel's loops after {budget}; use the CPU backend",
            shape.k
        )));
    }
    Ok(want.min(fit))
}

fn build(
    ctx: &GpuContext,
    name: &str,
    (header, source): (String, String),
    slots: &[Slot],
) -> Result<Arc<KernelPipeline>> {
    ctx.pipeline(&format!("{name}\n{header}"), || {
        build_kernel(ctx, name, &source, slots)
    })
}

/// `hmm_chain` for `dir` and `mode`.
pub(crate) fn chain_kernel(
    ctx: &GpuContext,
    shape: &HmmShape,
    dir: Dir,
    mode: Mode,
) -> Result<Arc<KernelPipeline>> {
    use Slot::*;
    build(
        ctx,
        "hmm_chain",
        shape.chain_source(dir, mode),
        &[Uniform, Read, Read, Read, Read, Read, ReadWrite, ReadWrite],
    )
}

/// `hmm_post`.
pub(crate) fn post_kernel(ctx: &GpuContext, shape: &HmmShape) -> Result<Arc<KernelPipeline>> {
    use Slot::*;
    build(
        ctx,
        "hmm_post",
        shape.post_source(),
        &[
            Uniform, Read, Read, Read, Read, Read, ReadWrite, Read, ReadWrite,
        ],
    )
}

/// `hmm_scan` with `cb` chunks per dispatch.
pub(crate) fn scan_kernel(
    ctx: &GpuContext,
    shape: &HmmShape,
    cb: u32,
) -> Result<Arc<KernelPipeline>> {
    use Slot::*;
    build(
        ctx,
        "hmm_scan",
        shape.scan_source(cb),
        &[Uniform, Read, Read, Read, Read, ReadWrite],
    )
}

/// `hmm_viterbi` with `vb` steps per dispatch.
pub(crate) fn viterbi_kernel(
    ctx: &GpuContext,
    shape: &HmmShape,
    vb: u32,
) -> Result<Arc<KernelPipeline>> {
    use Slot::*;
    build(
        ctx,
        "hmm_viterbi",
        shape.viterbi_source(vb),
        &[Uniform, Read, Read, Read, Read, ReadWrite, ReadWrite],
    )
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

    fn struct_size(module: &naga::Module, name: &str) -> u32 {
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
    fn every_kernel_validates_and_its_uniform_matches() {
        for k in [1, 2, 3, 8, 16, 17, 64, 256] {
            let s = HmmShape::new(k).unwrap();
            let mut sources = vec![
                ("post", s.post_source().1),
                ("scan", s.scan_source(100).1),
                ("viterbi", s.viterbi_source(100).1),
            ];
            for dir in [Dir::Forward, Dir::Backward] {
                sources.push(("chain", s.chain_source(dir, Mode::Segment).1));
                if s.splits_in_time() {
                    sources.push(("chain", s.chain_source(dir, Mode::Transfer).1));
                }
            }
            for (name, src) in sources {
                let m = parse(&format!("{name} k={k}"), &src);
                let uniform = if matches!(name, "scan" | "viterbi") {
                    "Block"
                } else {
                    "Args"
                };
                assert_eq!(
                    struct_size(&m, uniform) as usize,
                    std::mem::size_of::<HmmArgs>()
                );
            }
        }
        assert!(HmmShape::new(257).is_err());
        assert!(HmmShape::new(0).is_err());
    }
}
