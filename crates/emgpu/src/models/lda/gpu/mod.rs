//! The GPU E-step of LDA (wgpu + WGSL, f32), with the CPU engine ([`super::cpu`]) as its twin.
//!
//! **Layout.** The documents are cut into chunks of contiguous rows (at most 2²² stored entries
//! and 2¹⁸ documents each, fewer when the device's bindings are smaller). Per chunk the GPU holds the rows
//! (`doc_ptr`, word ids, counts as f32), a per-document state (γ and t, `[doc][2K]`; the γ updates
//! done and the document's part of the bound) and one f32 `r_j = cnt_j / norm_j` per entry, plus
//! the chunk's entries in word order, cut into segments of at most [`SEG`] entries. exp(E[log β])
//! (`[V][K]` f32, written at every E-step) and the statistics S (`[V][K]`) are shared. The chunks
//! stay on the GPU when they fit the resident budget (as the Gaussian-mixture data: 1 GiB on a
//! software adapter, 4 GiB on hardware), else one set of chunk buffers is filled per chunk at
//! every E-step.
//!
//! **Per E-step**, per chunk: `lda_doc.wgsl` (one workgroup per document: the γ fixed point of
//! scikit-learn's `_update_doc_distribution`, up to 100 updates, stopping at mean |Δγ| < 1e-3;
//! then the final t, the entries' r and the document's part of the approximate bound), run as
//! often as needed for every document to reach 100 updates when the adapter bounds the loop
//! iterations of a dispatch (Mesa's llvmpipe); `lda_seg.wgsl` (per segment and topic,
//! Σ r_j·t_{doc(j)}) and `lda_word.wgsl` (per word and topic, S += Σ of its segments: no atomics,
//! the same sums in the same order every run); then the chunk's bounds are read back and added in
//! f64. After the last chunk S is read back once and multiplied by exp(E[log β]) in f64, as the
//! CPU engine does. The words and documents are counted on the host.
//!
//! **Precision.** Everything per document is f32: ψ is scikit-learn's approximation and ln Γ a
//! shifted Stirling series (`lda_common.wgsl`). A document whose mean |Δγ| lands within f32
//! rounding of 1e-3 may stop one update earlier or later than on the CPU; λ then differs by far
//! less than the tolerance the tests use (5e-3 relative on λ, 2e-3 on the bound and θ).

use std::ops::Range;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use ndarray::Array2;

use super::{
    EPS, LdaEngine, LdaModel, LdaPrepared, LdaStats, MAX_DOC_UPDATE_ITER, MEAN_CHANGE_TOL,
};
use crate::data::sparse::CountMatrix;
use crate::device::gpu::GpuContext;
use crate::device::gpu::kernels::{KernelPipeline, Slot, WG, build_kernel};
use crate::device::gpu::util::{bind, encoder, grid, max_binding, read_back_bytes};
use crate::device::{Backend, BackendReport};
use crate::em::EStep;
use crate::error::{Error, Result};
use crate::numerics::special::ln_gamma;

const LDA_COMMON: &str = include_str!("lda_common.wgsl");
const LDA_DOC: &str = include_str!("lda_doc.wgsl");
const LDA_SEG: &str = include_str!("lda_seg.wgsl");
const LDA_WORD: &str = include_str!("lda_word.wgsl");

/// Invocations of a document's workgroup in `lda_doc.wgsl`. Documents of ~100 distinct terms
/// give 64 invocations one or two terms each per pass, and its reductions and barriers stay
/// short (on llvmpipe a 64-invocation workgroup also ran the tests' E-steps about 4× faster
/// than 256).
const DOC_WG: usize = 64;
/// Most entries of one word summed by one invocation of `lda_seg.wgsl`.
pub const SEG: usize = 256;
/// Most stored entries of a chunk (fewer when the device's bindings are smaller).
const MAX_CHUNK_NNZ: usize = 1 << 22;
/// Most documents of a chunk: its γ and t (8·K bytes per document) and their readback stay
/// within ~100 MiB at K = 50.
const MAX_CHUNK_DOCS: usize = 1 << 18;
/// Resident chunk bytes when the options give no budget: as the Gaussian-mixture data.
const RESIDENT_BUDGET_HW: u64 = 4 << 30;
const RESIDENT_BUDGET_SW: u64 = 1 << 30;
/// The `DONE` bit of a document's status (`lda_doc.wgsl`).
const DONE: u32 = 0x8000_0000;

/// Mirrors `struct Info` of `lda_doc.wgsl` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
struct DocInfo {
    n_docs: u32,
    updates: u32,
    alpha: f32,
    tol: f32,
    ln_gamma_alpha: f32,
    ln_gamma_k_alpha: f32,
    eps: f32,
    _pad: u32,
}

/// Mirrors `struct SegInfo` / `struct WordInfo` (a count and padding, 16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
struct CountInfo {
    n: u32,
    _pad: [u32; 3],
}

/// The sizes the kernels are specialized on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    k: usize,
    v: usize,
    /// Word slices of the topic sums: `WG / K` when K ≤ WG, else 1.
    g: usize,
}

impl Shape {
    fn new(model: &LdaModel, limits: &wgpu::Limits) -> Result<Self> {
        let (k, v) = (model.n_components, model.n_features);
        let wg = DOC_WG;
        // t, γ, s (K each), two WG-sized reductions and a flag.
        let bytes = 4 * (3 * k + 2 * wg + 1);
        let limit = limits.max_compute_workgroup_storage_size as usize;
        if bytes > limit {
            return Err(Error::DeviceLimits(format!(
                "the LDA GPU kernel for {k} topics needs {bytes} bytes of workgroup memory, the device allows {limit} (at most {} topics); use the CPU backend",
                (limit.saturating_sub(4 * (2 * wg + 1))) / 12
            )));
        }
        let vk = (v as u64) * (k as u64) * 4;
        let max = max_binding(limits);
        if vk > max || v * k >= u32::MAX as usize {
            return Err(Error::DeviceLimits(format!(
                "{v} terms × {k} topics ({vk} bytes of topic-word parameters as f32) exceed the device's largest storage binding ({max} bytes); use the CPU backend"
            )));
        }
        Ok(Self {
            k,
            v,
            g: if k <= wg { wg / k } else { 1 },
        })
    }

    /// The constants of a kernel of `wg` invocations per workgroup.
    fn header(&self, wg: usize) -> String {
        format!(
            "const K: u32 = {}u;\nconst WG: u32 = {wg}u;\nconst G: u32 = {}u;\nconst MAX_UPDATES: u32 = {}u;\n",
            self.k, self.g, MAX_DOC_UPDATE_ITER
        )
    }

    /// Upper bounds on one invocation's loop iterations in `lda_doc.wgsl` for documents of at
    /// most `m` entries: `(per γ update, once per dispatch)`.
    fn doc_loops(&self, m: usize) -> (u64, u64) {
        let wg = DOC_WG;
        let kw = self.k.div_ceil(wg) + 1;
        let red = 2 * wg.ilog2() as usize + 2;
        let dots = m.div_ceil(wg) * (self.k + 2) + 1;
        let sums = if self.g == 1 {
            kw * (m + 2)
        } else {
            m.div_ceil(self.g) + self.g + 2
        };
        let t = 2 * kw + red;
        let per_update = t + dots + sums + kw + red + 2;
        let fixed = kw + t + kw + dots + red + 4;
        (per_update as u64, fixed as u64)
    }

    fn source(&self, body: &str, wg: usize) -> String {
        format!("{}{LDA_COMMON}{body}", self.header(wg))
    }
}

/// The three kernels of a shape.
struct Kernels {
    doc: Arc<KernelPipeline>,
    seg: Arc<KernelPipeline>,
    word: Arc<KernelPipeline>,
}

impl Kernels {
    fn new(ctx: &GpuContext, shape: &Shape) -> Result<Self> {
        let build = |name: &str, body: &str, wg: usize, slots: &[Slot]| {
            let source = shape.source(body, wg);
            ctx.pipeline(&format!("{name}\n{}", shape.header(wg)), || {
                build_kernel(ctx, name, &source, slots)
            })
        };
        let wg = WG as usize;
        use Slot::{Read, ReadWrite, Uniform};
        Ok(Self {
            doc: build(
                "lda_doc",
                LDA_DOC,
                DOC_WG,
                &[
                    Uniform, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite,
                ],
            )?,
            seg: build(
                "lda_seg",
                LDA_SEG,
                wg,
                &[Uniform, Read, Read, Read, Read, ReadWrite],
            )?,
            word: build("lda_word", LDA_WORD, wg, &[Uniform, Read, Read, ReadWrite])?,
        })
    }
}

/// One chunk's rows as the kernels read them (host side).
#[derive(Debug, Clone, PartialEq)]
struct ChunkHost {
    /// `[docs + 1]`, from 0.
    doc_ptr: Vec<u32>,
    words: Vec<u32>,
    cnt: Vec<f32>,
    /// `[segments + 1]`: where each segment starts in `ent`.
    seg_ptr: Vec<u32>,
    /// `[entries][2]` in word order (then document order): position in the rows, document.
    ent: Vec<u32>,
    /// `[V + 1]`: each word's segments.
    word_seg: Vec<u32>,
}

impl ChunkHost {
    /// The rows `docs` of `x` (`v` terms).
    fn build(x: &CountMatrix, docs: Range<usize>, v: usize) -> Self {
        let indptr = x.indptr();
        let (lo, hi) = (indptr[docs.start], indptr[docs.end]);
        let nnz = hi - lo;
        let doc_ptr: Vec<u32> = indptr[docs.start..=docs.end]
            .iter()
            .map(|&p| (p - lo) as u32)
            .collect();
        let mut words = Vec::with_capacity(nnz);
        let mut cnt = Vec::with_capacity(nnz);
        for i in docs.clone() {
            let (ids, c) = x.row(i);
            words.extend_from_slice(ids);
            cnt.extend(c.iter().map(|&c| c as f32));
        }
        // Counting sort of the entries by word (stable: documents in order within a word).
        let mut start = vec![0u32; v + 1];
        for &w in &words {
            start[w as usize + 1] += 1;
        }
        for w in 0..v {
            start[w + 1] += start[w];
        }
        let mut next = start.clone();
        let mut ent = vec![0u32; 2 * nnz];
        for (d, pair) in doc_ptr.windows(2).enumerate() {
            for j in pair[0]..pair[1] {
                let w = words[j as usize] as usize;
                let q = next[w] as usize;
                next[w] += 1;
                ent[2 * q] = j;
                ent[2 * q + 1] = d as u32;
            }
        }
        let mut seg_ptr = Vec::with_capacity(nnz / SEG + 2);
        let mut word_seg = Vec::with_capacity(v + 1);
        word_seg.push(0u32);
        for w in 0..v {
            let (a, b) = (start[w] as usize, start[w + 1] as usize);
            let mut s = a;
            while s < b {
                seg_ptr.push(s as u32);
                s += SEG;
            }
            word_seg.push(seg_ptr.len() as u32);
        }
        seg_ptr.push(nnz as u32);
        Self {
            doc_ptr,
            words,
            cnt,
            seg_ptr,
            ent,
            word_seg,
        }
    }

    fn n_docs(&self) -> usize {
        self.doc_ptr.len() - 1
    }
    fn n_segs(&self) -> usize {
        self.seg_ptr.len() - 1
    }
}

/// A chunk: its documents, entries and segments.
#[derive(Debug, Clone)]
struct ChunkPlan {
    docs: Range<usize>,
    nnz: usize,
    n_segs: usize,
    /// γ updates per dispatch of `lda_doc.wgsl` (all 100 unless the adapter bounds loops).
    updates: usize,
}

/// The GPU buffers of one chunk (or of every chunk in turn, when streamed).
struct ChunkBufs {
    doc_ptr: wgpu::Buffer,
    words: wgpu::Buffer,
    cnt: wgpu::Buffer,
    seg_ptr: wgpu::Buffer,
    ent: wgpu::Buffer,
    word_seg: wgpu::Buffer,
    gt: wgpu::Buffer,
    state: wgpu::Buffer,
    /// Bound in the bind groups only.
    _r: wgpu::Buffer,
    doc_info: wgpu::Buffer,
    seg_info: wgpu::Buffer,
    word_info: wgpu::Buffer,
    doc_bind: wgpu::BindGroup,
    seg_bind: wgpu::BindGroup,
    word_bind: wgpu::BindGroup,
}

/// Sizes (elements) of a chunk's buffers.
#[derive(Debug, Clone, Copy, Default)]
struct ChunkSizes {
    docs: usize,
    nnz: usize,
    segs: usize,
}

impl ChunkSizes {
    fn max(self, o: Self) -> Self {
        Self {
            docs: self.docs.max(o.docs),
            nnz: self.nnz.max(o.nnz),
            segs: self.segs.max(o.segs),
        }
    }
    fn bytes(&self, shape: &Shape) -> u64 {
        let (d, n, s) = (self.docs as u64, self.nnz as u64, self.segs as u64);
        4 * ((d + 1) + 5 * n + (s + 1) + (shape.v as u64 + 1) + 2 * d * shape.k as u64 + 2 * d)
    }
}

/// The GPU LDA E-step engine over one count matrix.
pub struct GpuLdaEngine<'a> {
    x: &'a CountMatrix,
    ctx: Arc<GpuContext>,
    reason: String,
    shape: Shape,
    kernels: Kernels,
    chunks: Vec<ChunkPlan>,
    /// One per chunk (resident), or one for all chunks in turn (streamed).
    bufs: Vec<ChunkBufs>,
    resident: bool,
    eb: wgpu::Buffer,
    s: wgpu::Buffer,
    s_staging: wgpu::Buffer,
    state_staging: wgpu::Buffer,
    gt_staging: wgpu::Buffer,
    n_words: f64,
}

impl std::fmt::Debug for GpuLdaEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuLdaEngine")
            .field("device", &self.ctx.device_label())
            .field("chunks", &self.chunks.len())
            .field("resident", &self.resident)
            .finish()
    }
}

/// Options of [`GpuLdaEngine::with_options`] (tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuLdaOptions {
    /// Most documents per chunk (`None`: as the device's bindings allow).
    pub chunk_docs: Option<usize>,
    /// `Some(true)`: keep every chunk on the GPU; `Some(false)`: fill one set of buffers per
    /// chunk at every E-step; `None`: resident when the chunks fit the context's resident budget.
    pub resident: Option<bool>,
}

impl<'a> GpuLdaEngine<'a> {
    /// An engine over `x` for `model` on `ctx`; `reason` says why the GPU was chosen (empty when
    /// asked for).
    pub fn new(
        ctx: Arc<GpuContext>,
        x: &'a CountMatrix,
        model: &LdaModel,
        reason: String,
    ) -> Result<Self> {
        Self::with_options(ctx, x, model, reason, GpuLdaOptions::default())
    }

    /// [`new`](Self::new) with explicit chunking options.
    pub fn with_options(
        ctx: Arc<GpuContext>,
        x: &'a CountMatrix,
        model: &LdaModel,
        reason: String,
        options: GpuLdaOptions,
    ) -> Result<Self> {
        model.validate()?;
        if x.n_cols() != model.n_features {
            return Err(Error::DimensionMismatch {
                expected: model.n_features,
                got: x.n_cols(),
            });
        }
        let limits = ctx.limits().clone();
        let shape = Shape::new(model, &limits)?;
        let kernels = Kernels::new(&ctx, &shape)?;
        let chunks = plan_chunks(x, &shape, &limits, ctx.loop_budget(), options.chunk_docs)?;
        let sizes: Vec<ChunkSizes> = chunks
            .iter()
            .map(|c| ChunkSizes {
                docs: c.docs.len(),
                nnz: c.nnz,
                segs: c.n_segs,
            })
            .collect();
        let total: u64 = sizes.iter().map(|s| s.bytes(&shape)).sum();
        let defaults = ctx.options().engine_defaults;
        let budget = defaults.resident_budget.unwrap_or(if ctx.is_software() {
            RESIDENT_BUDGET_SW
        } else {
            RESIDENT_BUDGET_HW
        });
        let resident = options
            .resident
            .or(defaults.resident)
            .unwrap_or(total <= budget);
        let largest = sizes.iter().fold(ChunkSizes::default(), |a, &b| a.max(b));
        let n_words = x.total();
        ctx.clone().checked("allocating the GPU LDA buffers", || {
            let device = ctx.device();
            let vk = (shape.v * shape.k) as u64 * 4;
            let buffer = |label: &str, size: u64, usage: wgpu::BufferUsages| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: size.max(4),
                    usage,
                    mapped_at_creation: false,
                })
            };
            use wgpu::BufferUsages as U;
            let eb = buffer("lda exp(E[log β])", vk, U::STORAGE | U::COPY_DST);
            let s = buffer("lda statistics", vk, U::STORAGE | U::COPY_SRC | U::COPY_DST);
            let seg_part = buffer(
                "lda segment sums",
                4 * (largest.segs * shape.k) as u64,
                U::STORAGE,
            );
            let s_staging = buffer("lda statistics readback", vk, U::MAP_READ | U::COPY_DST);
            let state_staging = buffer(
                "lda bounds readback",
                8 * largest.docs as u64,
                U::MAP_READ | U::COPY_DST,
            );
            let gt_staging = buffer(
                "lda γ readback",
                8 * (largest.docs * shape.k) as u64,
                U::MAP_READ | U::COPY_DST,
            );
            let bufs = if resident {
                chunks
                    .iter()
                    .map(|c| {
                        let host = ChunkHost::build(x, c.docs.clone(), shape.v);
                        let sz = ChunkSizes {
                            docs: c.docs.len(),
                            nnz: c.nnz,
                            segs: c.n_segs,
                        };
                        let b = ChunkBufs::new(device, &kernels, &shape, sz, &eb, &s, &seg_part);
                        b.upload(ctx.queue(), &host, c, model);
                        b
                    })
                    .collect()
            } else {
                vec![ChunkBufs::new(
                    device, &kernels, &shape, largest, &eb, &s, &seg_part,
                )]
            };
            Ok(Self {
                x,
                ctx: Arc::clone(&ctx),
                reason,
                shape,
                kernels,
                chunks,
                bufs,
                resident,
                eb,
                s,
                s_staging,
                state_staging,
                gt_staging,
                n_words,
            })
        })
    }

    /// Chunks of documents the engine cuts the corpus into.
    pub fn n_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The fewest γ updates one dispatch of the document kernel runs (100, all of them, unless
    /// the adapter bounds an invocation's loop iterations, as llvmpipe does).
    pub fn updates_per_dispatch(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.updates)
            .min()
            .unwrap_or(MAX_DOC_UPDATE_ITER)
    }

    /// Whether the chunks stay on the GPU (else they are uploaded at every E-step).
    pub fn is_resident(&self) -> bool {
        self.resident
    }

    /// Writes exp(E[log β]) of `p` (f32, `[V][K]`).
    fn write_eb(&self, p: &LdaPrepared) {
        let (k, kp) = (self.shape.k, p.model.padded_k());
        let eb: Vec<f32> = p
            .exp_beta
            .chunks_exact(kp)
            .flat_map(|row| row[..k].iter().map(|&e| e as f32))
            .collect();
        self.ctx
            .queue()
            .write_buffer(&self.eb, 0, bytemuck::cast_slice(&eb));
    }

    /// Runs the per-document kernel over chunk `c` (uploading it first when streamed), then,
    /// with `stats`, the two statistics passes; submits, and hands the chunk's buffers to `after`
    /// once the GPU has finished.
    fn run_chunk(
        &self,
        c: usize,
        p: &LdaPrepared,
        stats: bool,
        after: &mut dyn FnMut(&ChunkBufs, &ChunkPlan) -> Result<()>,
    ) -> Result<()> {
        let plan = &self.chunks[c];
        let b = if self.resident {
            &self.bufs[c]
        } else {
            let b = &self.bufs[0];
            let host = ChunkHost::build(self.x, plan.docs.clone(), self.shape.v);
            b.upload(self.ctx.queue(), &host, plan, &p.model);
            b
        };
        let ctx = &self.ctx;
        let max_dim = ctx.limits().max_compute_workgroups_per_dimension;
        let mut enc = encoder(ctx, "lda e-step");
        enc.clear_buffer(&b.state, 0, None);
        let docs = plan.docs.len();
        let passes = MAX_DOC_UPDATE_ITER.div_ceil(plan.updates.max(1));
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("lda documents"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.kernels.doc.pipeline);
            pass.set_bind_group(0, &b.doc_bind, &[]);
            let (gx, gy) = grid(docs, max_dim);
            for _ in 0..passes {
                pass.dispatch_workgroups(gx, gy, 1);
            }
            if stats {
                let k = self.shape.k;
                let wg = WG as usize;
                pass.set_pipeline(&self.kernels.seg.pipeline);
                pass.set_bind_group(0, &b.seg_bind, &[]);
                let (gx, gy) = grid((plan.n_segs * k).div_ceil(wg), max_dim);
                pass.dispatch_workgroups(gx, gy, 1);
                pass.set_pipeline(&self.kernels.word.pipeline);
                pass.set_bind_group(0, &b.word_bind, &[]);
                let (gx, gy) = grid((self.shape.v * k).div_ceil(wg), max_dim);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        ctx.queue().submit([enc.finish()]);
        after(b, plan)
    }

    /// Reads back the first `bytes` of `src` through `staging`.
    fn read(&self, src: &wgpu::Buffer, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let mut enc = encoder(&self.ctx, "lda readback");
        enc.copy_buffer_to_buffer(src, 0, staging, 0, bytes);
        self.ctx.queue().submit([enc.finish()]);
        let mut out = Vec::new();
        read_back_bytes(&self.ctx, staging, bytes, |v| out.extend_from_slice(v))?;
        Ok(out)
    }

    /// The chunk's per-document bounds, after checking every document stopped.
    fn chunk_bound(&self, b: &ChunkBufs, plan: &ChunkPlan) -> Result<f64> {
        let docs = plan.docs.len();
        if docs == 0 {
            return Ok(0.0);
        }
        let bytes = self.read(&b.state, &self.state_staging, 8 * docs as u64)?;
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        let mut bound = 0.0;
        for (d, st) in words.chunks_exact(2).enumerate() {
            if st[0] & DONE == 0 {
                return Err(Error::Gpu(format!(
                    "the LDA GPU kernel left document {} unfinished after {} γ updates",
                    plan.docs.start + d,
                    st[0]
                )));
            }
            bound += f32::from_bits(st[1]) as f64;
        }
        Ok(bound)
    }

    /// γ of every document `[N, K]` under `p` (scikit-learn's `_unnormalized_transform`).
    fn gammas(&mut self, p: &LdaPrepared) -> Result<Array2<f64>> {
        self.ctx.checked("the LDA GPU transform", || {
            self.write_eb(p);
            let k = self.shape.k;
            let mut out = Array2::<f64>::zeros((self.x.n_rows(), k));
            for c in 0..self.chunks.len() {
                self.run_chunk(c, p, false, &mut |b, plan| {
                    self.chunk_bound(b, plan)?;
                    let docs = plan.docs.len();
                    if docs == 0 {
                        return Ok(());
                    }
                    let bytes = self.read(&b.gt, &self.gt_staging, 8 * (docs * k) as u64)?;
                    let gt: &[f32] = bytemuck::cast_slice(&bytes);
                    for (d, row) in gt.chunks_exact(2 * k).enumerate() {
                        let mut o = out.row_mut(plan.docs.start + d);
                        for (o, &g) in o.iter_mut().zip(&row[..k]) {
                            *o = g as f64;
                        }
                    }
                    Ok(())
                })?;
            }
            Ok(out)
        })
    }
}

impl ChunkBufs {
    #[allow(clippy::too_many_arguments)]
    fn new(
        device: &wgpu::Device,
        kernels: &Kernels,
        shape: &Shape,
        sz: ChunkSizes,
        eb: &wgpu::Buffer,
        s: &wgpu::Buffer,
        seg_part: &wgpu::Buffer,
    ) -> Self {
        use wgpu::BufferUsages as U;
        let buffer = |label: &str, elems: usize, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (4 * elems as u64).max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let read = U::STORAGE | U::COPY_DST;
        let rw = U::STORAGE | U::COPY_SRC | U::COPY_DST;
        let doc_ptr = buffer("lda doc_ptr", sz.docs + 1, read);
        let words = buffer("lda words", sz.nnz, read);
        let cnt = buffer("lda counts", sz.nnz, read);
        let seg_ptr = buffer("lda seg_ptr", sz.segs + 1, read);
        let ent = buffer("lda entries", 2 * sz.nnz, read);
        let word_seg = buffer("lda word_seg", shape.v + 1, read);
        let gt = buffer("lda γ t", 2 * sz.docs * shape.k, rw);
        let state = buffer("lda state", 2 * sz.docs, rw);
        let r = buffer("lda r", sz.nnz, U::STORAGE);
        let uniform = |label: &str, bytes: usize| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes as u64,
                usage: U::UNIFORM | U::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let doc_info = uniform("lda doc info", std::mem::size_of::<DocInfo>());
        let seg_info = uniform("lda seg info", std::mem::size_of::<CountInfo>());
        let word_info = uniform("lda word info", std::mem::size_of::<CountInfo>());
        let doc_bind = bind(
            device,
            &kernels.doc,
            &[&doc_info, &doc_ptr, &words, &cnt, eb, &gt, &state, &r],
        );
        let seg_bind = bind(
            device,
            &kernels.seg,
            &[&seg_info, &seg_ptr, &ent, &r, &gt, seg_part],
        );
        let word_bind = bind(device, &kernels.word, &[&word_info, &word_seg, seg_part, s]);
        Self {
            doc_ptr,
            words,
            cnt,
            seg_ptr,
            ent,
            word_seg,
            gt,
            state,
            _r: r,
            doc_info,
            seg_info,
            word_info,
            doc_bind,
            seg_bind,
            word_bind,
        }
    }

    /// Writes a chunk's rows and its uniforms.
    fn upload(&self, queue: &wgpu::Queue, host: &ChunkHost, plan: &ChunkPlan, model: &LdaModel) {
        let w = |b: &wgpu::Buffer, data: &[u8]| {
            if !data.is_empty() {
                queue.write_buffer(b, 0, data);
            }
        };
        w(&self.doc_ptr, bytemuck::cast_slice(&host.doc_ptr));
        w(&self.words, bytemuck::cast_slice(&host.words));
        w(&self.cnt, bytemuck::cast_slice(&host.cnt));
        w(&self.seg_ptr, bytemuck::cast_slice(&host.seg_ptr));
        w(&self.ent, bytemuck::cast_slice(&host.ent));
        w(&self.word_seg, bytemuck::cast_slice(&host.word_seg));
        let alpha = model.doc_topic_prior;
        let info = DocInfo {
            n_docs: host.n_docs() as u32,
            updates: plan.updates as u32,
            alpha: alpha as f32,
            tol: MEAN_CHANGE_TOL as f32,
            ln_gamma_alpha: ln_gamma(alpha) as f32,
            ln_gamma_k_alpha: ln_gamma(model.n_components as f64 * alpha) as f32,
            eps: EPS as f32,
            _pad: 0,
        };
        w(&self.doc_info, bytemuck::bytes_of(&info));
        let count = |n: usize| CountInfo {
            n: n as u32,
            _pad: [0; 3],
        };
        w(&self.seg_info, bytemuck::bytes_of(&count(host.n_segs())));
        w(
            &self.word_info,
            bytemuck::bytes_of(&count(host.word_seg.len() - 1)),
        );
    }
}

/// Cuts the documents into chunks within the device's bindings (and `chunk_docs`), and sets how
/// many γ updates one dispatch may run where the adapter bounds an invocation's loop iterations.
fn plan_chunks(
    x: &CountMatrix,
    shape: &Shape,
    limits: &wgpu::Limits,
    loop_budget: Option<u64>,
    chunk_docs: Option<usize>,
) -> Result<Vec<ChunkPlan>> {
    let max = max_binding(limits) as usize;
    // ent is 8 bytes per entry; γ and t 8·K per document; segment sums 4·K per segment.
    let nnz_cap = MAX_CHUNK_NNZ.min(max / 8).min(max / 4 / shape.k * SEG / 2);
    let docs_cap = (max / (8 * shape.k))
        .min(MAX_CHUNK_DOCS)
        .min(chunk_docs.unwrap_or(usize::MAX))
        .max(1);
    let indptr = x.indptr();
    let n = x.n_rows();
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && end - start < docs_cap && indptr[end + 1] - indptr[start] <= nnz_cap {
            end += 1;
        }
        let nnz = indptr[end] - indptr[start];
        if nnz > max / 8 {
            return Err(Error::DeviceLimits(format!(
                "document {start} has {nnz} distinct terms, more than the LDA GPU kernel's bindings hold on this device; use the CPU backend"
            )));
        }
        out.push(plan_chunk(x, start..end, shape, limits, loop_budget)?);
        start = end;
    }
    Ok(out)
}

fn plan_chunk(
    x: &CountMatrix,
    docs: Range<usize>,
    shape: &Shape,
    limits: &wgpu::Limits,
    loop_budget: Option<u64>,
) -> Result<ChunkPlan> {
    let indptr = x.indptr();
    let nnz = indptr[docs.end] - indptr[docs.start];
    // Segments: ⌈entries / SEG⌉ per word present.
    let mut per_word = vec![0usize; shape.v];
    let mut longest = 0;
    for i in docs.clone() {
        let (ids, _) = x.row(i);
        longest = longest.max(ids.len());
        for &w in ids {
            per_word[w as usize] += 1;
        }
    }
    let n_segs: usize = per_word.iter().map(|&c| c.div_ceil(SEG)).sum();
    let seg_bytes = 4 * (n_segs as u64) * (shape.k as u64);
    if seg_bytes > max_binding(limits) {
        return Err(Error::DeviceLimits(format!(
            "the LDA statistics of documents {}..{} need {seg_bytes} bytes of segment sums, more than the device's largest storage binding; use the CPU backend",
            docs.start, docs.end
        )));
    }
    let updates = match loop_budget {
        None => MAX_DOC_UPDATE_ITER,
        Some(budget) => {
            let (per, fixed) = shape.doc_loops(longest);
            let fit = budget.saturating_sub(fixed) / per.max(1);
            // lda_word: one iteration per segment of a word.
            let word_loops = per_word.iter().map(|&c| c.div_ceil(SEG)).max().unwrap_or(0) as u64;
            if fit == 0 || word_loops + 4 > budget {
                return Err(Error::DeviceLimits(format!(
                    "a document of {longest} distinct terms with {} topics needs more loop iterations per GPU invocation than this software adapter (llvmpipe) runs before it silently ends a kernel's loops; use the CPU backend",
                    shape.k
                )));
            }
            (fit as usize).min(MAX_DOC_UPDATE_ITER)
        }
    };
    Ok(ChunkPlan {
        docs,
        nnz,
        n_segs,
        updates,
    })
}

impl EStep<LdaModel> for GpuLdaEngine<'_> {
    fn e_step(&mut self, p: &LdaPrepared) -> Result<LdaStats> {
        self.ctx.checked("the LDA GPU E-step", || {
            self.write_eb(p);
            let mut enc = encoder(&self.ctx, "lda clear");
            enc.clear_buffer(&self.s, 0, None);
            self.ctx.queue().submit([enc.finish()]);
            let mut doc_bound = 0.0;
            for c in 0..self.chunks.len() {
                self.run_chunk(c, p, true, &mut |b, plan| {
                    doc_bound += self.chunk_bound(b, plan)?;
                    Ok(())
                })?;
            }
            let (k, v, kp) = (self.shape.k, self.shape.v, p.model.padded_k());
            let bytes = self.read(&self.s, &self.s_staging, 4 * (v * k) as u64)?;
            let s: &[f32] = bytemuck::cast_slice(&bytes);
            let mut word_topic = vec![0.0; v * kp];
            for ((out, eb), row) in word_topic
                .chunks_exact_mut(kp)
                .zip(p.exp_beta.chunks_exact(kp))
                .zip(s.chunks_exact(k))
            {
                for c in 0..k {
                    out[c] = row[c] as f64 * eb[c];
                }
            }
            Ok(LdaStats {
                word_topic,
                doc_bound,
                n_words: self.n_words,
                n_docs: self.x.n_rows() as f64,
                topic_bound: p.topic_bound,
            })
        })
    }

    fn report(&self) -> BackendReport {
        BackendReport {
            backend: Backend::Gpu,
            device: self.ctx.device_label(),
            reason: self.reason.clone(),
        }
    }
}

impl LdaEngine for GpuLdaEngine<'_> {
    fn doc_topic(&mut self, p: &LdaPrepared) -> Result<Array2<f64>> {
        self.gammas(p)
    }
}

/// The WGSL sources as the pipelines compile them, for a shape of `k` topics over `v` terms
/// (naga validation tests).
#[cfg(test)]
fn sources_for_tests(k: usize, v: usize) -> Vec<(&'static str, String)> {
    let model = LdaModel {
        n_components: k,
        n_features: v,
        doc_topic_prior: 0.1,
        topic_word_prior: 0.1,
    };
    let shape = Shape::new(&model, &wgpu::Limits::default()).unwrap();
    vec![
        ("lda_doc", shape.source(LDA_DOC, DOC_WG)),
        ("lda_seg", shape.source(LDA_SEG, WG as usize)),
        ("lda_word", shape.source(LDA_WORD, WG as usize)),
    ]
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

    fn struct_size(module: &naga::Module, name: &str) -> usize {
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("struct {name}"));
        let naga::TypeInner::Struct { span, .. } = &ty.inner else {
            panic!("{name} is not a struct");
        };
        *span as usize
    }

    #[test]
    fn the_kernels_validate_and_their_uniforms_match() {
        for (k, v) in [
            (1, 1),
            (5, 800),
            (50, 20_000),
            (64, 10),
            (300, 7),
            (1300, 3),
        ] {
            for (name, source) in sources_for_tests(k, v) {
                let module = parse(&format!("{name} k={k}"), &source);
                match name {
                    "lda_doc" => {
                        assert_eq!(struct_size(&module, "Info"), size_of::<DocInfo>())
                    }
                    "lda_seg" => {
                        assert_eq!(struct_size(&module, "SegInfo"), size_of::<CountInfo>())
                    }
                    _ => assert_eq!(struct_size(&module, "WordInfo"), size_of::<CountInfo>()),
                }
            }
        }
    }

    #[test]
    fn too_many_topics_or_terms_are_refused_up_front() {
        let limits = wgpu::Limits::default();
        let model = |k, v| LdaModel {
            n_components: k,
            n_features: v,
            doc_topic_prior: 0.1,
            topic_word_prior: 0.1,
        };
        assert!(Shape::new(&model(1300, 10), &limits).is_ok());
        assert!(matches!(
            Shape::new(&model(1400, 10), &limits),
            Err(Error::DeviceLimits(m)) if m.contains("topics")
        ));
        assert!(matches!(
            Shape::new(&model(1000, 1_000_000), &limits),
            Err(Error::DeviceLimits(m)) if m.contains("storage binding")
        ));
    }

    #[test]
    fn chunk_rows_are_sorted_by_word_into_segments() {
        // 3 documents over 4 terms; term 2 appears in all.
        let x = CountMatrix::from_csr(
            3,
            4,
            vec![0, 2, 3, 6],
            vec![0, 2, 2, 1, 2, 3],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        )
        .unwrap();
        let h = ChunkHost::build(&x, 0..3, 4);
        assert_eq!(h.doc_ptr, vec![0, 2, 3, 6]);
        assert_eq!(h.words, vec![0, 2, 2, 1, 2, 3]);
        assert_eq!(h.cnt, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // Word order: 0 (pos 0, doc 0), 1 (pos 3, doc 2), 2 (pos 1, 2, 4), 3 (pos 5).
        assert_eq!(h.ent, vec![0, 0, 3, 2, 1, 0, 2, 1, 4, 2, 5, 2]);
        assert_eq!(h.seg_ptr, vec![0, 1, 2, 5, 6]);
        assert_eq!(h.word_seg, vec![0, 1, 2, 3, 4]);
        // The second document alone: term 2 only.
        let h = ChunkHost::build(&x, 1..2, 4);
        assert_eq!(h.doc_ptr, vec![0, 1]);
        assert_eq!(h.ent, vec![0, 0]);
        assert_eq!(h.seg_ptr, vec![0, 1]);
        assert_eq!(h.word_seg, vec![0, 0, 0, 1, 1]);
    }

    #[test]
    fn a_long_word_is_cut_into_segments() {
        let n = 2 * SEG + 3;
        let x = CountMatrix::from_csr(n, 2, (0..=n).collect(), vec![1; n], vec![1.0; n]).unwrap();
        let h = ChunkHost::build(&x, 0..n, 2);
        assert_eq!(h.seg_ptr, vec![0, SEG as u32, 2 * SEG as u32, n as u32]);
        assert_eq!(h.word_seg, vec![0, 0, 3]);
    }

    #[test]
    fn a_loop_budget_splits_the_updates_across_dispatches() {
        let model = LdaModel {
            n_components: 50,
            n_features: 100,
            doc_topic_prior: 0.1,
            topic_word_prior: 0.1,
        };
        let limits = wgpu::Limits::default();
        let shape = Shape::new(&model, &limits).unwrap();
        // One document of 100 distinct terms.
        let ids: Vec<u32> = (0..100).collect();
        let x = CountMatrix::from_csr(1, 100, vec![0, 100], ids, vec![1.0; 100]).unwrap();
        let hw = plan_chunks(&x, &shape, &limits, None, None).unwrap();
        assert_eq!(hw[0].updates, MAX_DOC_UPDATE_ITER);
        let sw = plan_chunks(&x, &shape, &limits, Some(60_000), None).unwrap();
        let (per, fixed) = shape.doc_loops(100);
        assert!(sw[0].updates as u64 * per + fixed <= 60_000);
        assert!(sw[0].updates >= 1);
        assert!(plan_chunks(&x, &shape, &limits, Some(100), None).is_err());
    }
}
