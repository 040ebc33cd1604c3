//! The GPU k-means engine: Lloyd assignments with a wgpu compute shader.
//!
//! Built over one dataset (or over the data a [`GpuGmmEngine`](crate::models::gmm::gpu::GpuGmmEngine) already
//! uploaded: the k-means initialization of a Gaussian mixture shares them):
//!
//! - **Data** as the Gaussian-mixture engine holds them (`GpuData`): f32 minus a centre, in
//!   chunks, resident or streamed. Per chunk, two N-sized buffers stay on the GPU for the length of
//!   the fit: the label (stored as label + 1, so that the zero-initialized buffer means "not
//!   assigned yet") and the squared distance of every row.
//! - **Per assignment** ([`KMeansEngine::assign_and_sum`]): write the centers (f32, minus the
//!   centre: K·D floats); one command encoder that clears the integer counters and runs, per
//!   chunk, `kmeans_assign` (nearest center of every point; labels, distances, changed labels;
//!   per-workgroup partial sums of `x − c_label` and of the distances in workgroup memory; counts
//!   through u32 atomics) and the second reduction pass `reduce_partials` into the chunk's slot;
//!   one submit (streamed data: one per chunk, after its upload); one readback of the slots
//!   (K·D + K + 1 numbers and T inertia columns per chunk). The host adds chunks in f64 and moves
//!   the sums from the f32 centers the GPU used to the exact f64 centers:
//!   `Σ (x − c) = Σ (x − c_gpu) + n_k·(c_gpu − c)`.
//! - **Labels** ([`KMeansEngine::labels`]) are one N-sized readback, once per fit; the
//!   **farthest points** ([`KMeansEngine::farthest`], only when a cluster is empty) read the
//!   distances back and pick on the host.
//!
//! The kernels are specialized on K and D; the engine takes any K the device allows on each
//! call: the kernel and the small buffers of a K are built when an assignment first asks for it
//! (pipelines come from the context's cache), replacing those of the previous K.
//!
//! **Precision.** Distances are f32 sums over the features in the centred coordinates, so a point
//! whose two nearest centers are at distances within f32 rounding (about 1e-7 relative) of each
//! other may be assigned differently from the f64 CPU backend: both engines give ties to the lowest
//! index, but f32 and f64 do not see the same ties. Counts then differ by the few such points,
//! and so can the points chosen to relocate an empty cluster (farthest distances equal in f32).

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::kernels::{AssignKernel, AssignUniform, KMeansShape};
use crate::data::Dataset;
use crate::device::gpu::data::{GpuData, Scratch};
use crate::device::gpu::reduce::{ReduceKernel, ReduceUniform};
use crate::device::gpu::util::{
    DEFAULT_MIN_WORKGROUPS, OUT_BUDGET, PARTIALS_BUDGET, POINTS_BUDGET, bind, encoder, grid,
    groups_for, max_binding, partials_buffer, read_back_bytes,
};
use crate::device::gpu::{GpuContext, GpuEngineOptions};
use crate::device::{Backend, BackendReport};
use crate::error::{Error, Result};
use crate::models::kmeans::KMeansStats;
use crate::models::kmeans::cpu::farthest_reference;
use crate::models::kmeans::{FarPoint, KMeansEngine};

/// Points a workgroup sums per invocation and entry before more workgroups are used (the f32
/// partial sums stay short): 4096, as the Gaussian-mixture kernels (64 tiles of 64 points).
const POINTS_PER_WORKGROUP: usize = 4096;

/// The assignment kernel and reduction pass of one chunk, bound to its buffers.
struct ChunkBinds {
    /// Workgroups of the assignment kernel (x).
    groups: u32,
    assign_bind: wgpu::BindGroup,
    reduce_bind: wgpu::BindGroup,
}

/// The kernels and buffers of one number of clusters.
struct Kernels {
    shape: KMeansShape,
    assign: AssignKernel,
    reduce: ReduceKernel,
    /// `[K][D]` f32, minus the data's centre.
    centers: wgpu::Buffer,
    /// Workgroup partials (bound in the chunks' bind groups).
    _partials: wgpu::Buffer,
    /// `[slots][P]` f32: per chunk, the inertia columns and the sums.
    out: wgpu::Buffer,
    /// `[slots][K + 1]` u32: per chunk, the counts and the changed labels.
    counts: wgpu::Buffer,
    /// `out` then `counts`, for the readback.
    staging: wgpu::Buffer,
    /// Chunk results per readback.
    slots: usize,
    /// One per data chunk.
    binds: Vec<ChunkBinds>,
}

impl Kernels {
    fn new(
        gd: &GpuData,
        labels: &[wgpu::Buffer],
        dists: &[wgpu::Buffer],
        k: usize,
        options: &GpuEngineOptions,
    ) -> Result<Self> {
        let ctx = &gd.ctx;
        let d = gd.centre.len();
        let shape =
            KMeansShape::with_weights(k, d, options.tile_points, ctx.limits(), gd.is_weighted())?;
        let assign = AssignKernel::new(ctx, &shape)?;
        let reduce = ReduceKernel::new(ctx)?;
        ctx.checked("allocating the GPU k-means buffers", || {
            Self::allocate(gd, labels, dists, shape, assign, reduce, options)
        })
    }

    fn allocate(
        gd: &GpuData,
        labels: &[wgpu::Buffer],
        dists: &[wgpu::Buffer],
        shape: KMeansShape,
        assign: AssignKernel,
        reduce: ReduceKernel,
        options: &GpuEngineOptions,
    ) -> Result<Self> {
        let ctx = &gd.ctx;
        let device = ctx.device();
        let limits = ctx.limits();
        let (k, d) = (shape.k, shape.d);
        let n_chunks = gd.chunks.len();
        let p = shape.partial_len();
        let p_bytes = 4 * p as u64;
        let max_groups = (PARTIALS_BUDGET.min(max_binding(limits)) / p_bytes)
            .min(limits.max_compute_workgroups_per_dimension as u64)
            as usize;
        if max_groups == 0 {
            return Err(Error::DeviceLimits(format!(
                "the k-means statistics of {k} clusters of {d} features ({p_bytes} bytes per workgroup) exceed the device's storage binding; use the CPU backend"
            )));
        }
        let mut max_tiles = (POINTS_PER_WORKGROUP / shape.tile).max(1);
        // A driver with a loop budget (llvmpipe) ends an invocation's loops silently past it:
        // no workgroup may walk more tiles than fit (issue 16), or the shape is refused.
        if let Some(budget) = ctx.loop_budget() {
            let (per_tile, fixed) = shape.loops();
            let fit = budget.saturating_sub(fixed) / per_tile.max(1);
            if fit == 0 {
                return Err(Error::DeviceLimits(format!(
                    "the k-means kernel for {k} clusters of {d} features needs about {} loop iterations per invocation, more than the {budget} that this software adapter (llvmpipe) runs before it silently ends a kernel's loops; use the CPU backend",
                    per_tile + fixed
                )));
            }
            max_tiles = max_tiles.min(usize::try_from(fit).unwrap_or(usize::MAX));
        }
        let min_groups = Some(options.min_workgroups.unwrap_or(DEFAULT_MIN_WORKGROUPS));
        let groups_of =
            |rows: usize| groups_for(rows, shape.tile, max_tiles, min_groups, max_groups);
        if ctx.loop_budget().is_some() {
            // The workgroups of a chunk are also capped by the partials' memory: then they walk
            // more tiles each.
            for c in &gd.chunks {
                let (tiles, groups) = groups_of(c.rows);
                if (tiles as usize).div_ceil(groups.max(1) as usize) > max_tiles {
                    return Err(Error::DeviceLimits(format!(
                        "the k-means kernel for {k} clusters of {d} features on chunks of {} rows would run more loop iterations per invocation than this software adapter (llvmpipe) allows; use smaller chunks or the CPU backend",
                        c.rows
                    )));
                }
            }
        }
        let partials = partials_buffer(device, gd, &groups_of, p_bytes, "kmeans partials");
        let nc = k + 1;
        let slot_bytes = p_bytes + 4 * nc as u64;
        let slots = n_chunks
            .min((OUT_BUDGET / slot_bytes).max(1) as usize)
            .min(options.readback_chunks.unwrap_or(usize::MAX).max(1));
        let out = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kmeans chunk sums"),
            size: slots as u64 * p_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let counts = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kmeans chunk counts"),
            size: slots as u64 * 4 * nc as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kmeans statistics readback"),
            size: slots as u64 * slot_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let centers = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kmeans centers"),
            size: 4 * (k * d) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut binds = Vec::with_capacity(n_chunks);
        for (c, chunk) in gd.chunks.iter().enumerate() {
            let (tiles, groups) = groups_of(chunk.rows);
            let slot = c % slots;
            let assign_uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("kmeans chunk"),
                contents: bytemuck::bytes_of(&AssignUniform {
                    n_rows: chunk.rows as u32,
                    n_tiles: tiles,
                    count_offset: (slot * nc) as u32,
                    _pad: 0,
                }),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let reduce_uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("kmeans reduce"),
                contents: bytemuck::bytes_of(&ReduceUniform {
                    n_rows: groups,
                    n_cols: p as u32,
                    out_offset: (slot * p) as u32,
                    _pad: 0,
                }),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let mut buffers = vec![
                &assign_uniform,
                gd.buffer(c),
                &centers,
                &labels[c],
                &dists[c],
                &partials,
                &counts,
            ];
            buffers.extend(gd.weights(c));
            let assign_bind = bind(device, &assign.kernel, &buffers);
            let reduce_bind = bind(device, &reduce.kernel, &[&reduce_uniform, &partials, &out]);
            binds.push(ChunkBinds {
                groups,
                assign_bind,
                reduce_bind,
            });
        }
        Ok(Self {
            shape,
            assign,
            reduce,
            centers,
            _partials: partials,
            out,
            counts,
            staging,
            slots,
            binds,
        })
    }
}

/// k-means assignments on a GPU, over one dataset.
pub struct GpuKMeansEngine<'a> {
    gd: Arc<GpuData<'a>>,
    options: GpuEngineOptions,
    /// Per chunk: label + 1 of every row (0 before the first assignment), u32.
    labels: Vec<wgpu::Buffer>,
    /// Per chunk: squared distance of every row to its center at the last assignment, f32.
    dists: Vec<wgpu::Buffer>,
    /// The kernels and buffers of the last K asked for.
    kernels: Option<Kernels>,
    /// Readback buffer of labels and distances (built on first request).
    point_staging: Option<(wgpu::Buffer, usize)>,
    scratch: Scratch,
    assigned: bool,
    reason: String,
}

impl<'a> GpuKMeansEngine<'a> {
    /// An engine over `data` on `ctx`'s device; `reason` is reported by
    /// [`KMeansEngine::report`] (why this backend was chosen). Uploads the data when it is to be
    /// resident (see [`GpuEngineOptions`]) and allocates the label and distance buffers; the
    /// kernel of a number of clusters is built at the first assignment with that number. Fields
    /// of `options` left `None` are taken from the context's
    /// [`engine_defaults`](crate::device::gpu::GpuContextOptions::engine_defaults).
    pub fn new(
        ctx: Arc<GpuContext>,
        data: &'a Dataset<'a>,
        options: GpuEngineOptions,
        reason: String,
    ) -> Result<Self> {
        let options = options.or(&ctx.options().engine_defaults);
        let gd = GpuData::new(ctx, data, &options)?;
        Self::with_data(Arc::new(gd), options, reason)
    }

    /// An engine over data already on the GPU (a Gaussian-mixture engine's).
    pub(crate) fn with_data(
        gd: Arc<GpuData<'a>>,
        options: GpuEngineOptions,
        reason: String,
    ) -> Result<Self> {
        let ctx = Arc::clone(&gd.ctx);
        let (labels, dists) = ctx.checked("allocating the GPU k-means label buffers", || {
            let storage = |label, rows: usize| {
                ctx.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: 4 * rows as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            };
            let labels = gd
                .chunks
                .iter()
                .map(|c| storage("kmeans labels", c.rows))
                .collect();
            let dists = gd
                .chunks
                .iter()
                .map(|c| storage("kmeans distances", c.rows))
                .collect();
            Ok((labels, dists))
        })?;
        Ok(Self {
            gd,
            options,
            labels,
            dists,
            kernels: None,
            point_staging: None,
            scratch: Scratch::default(),
            assigned: false,
            reason,
        })
    }

    /// Whether the data stays on the GPU between assignments (else it is streamed every time).
    pub fn is_resident(&self) -> bool {
        self.gd.is_resident()
    }

    /// Number of chunks (dispatch ranges) the data is cut into.
    pub fn n_chunks(&self) -> usize {
        self.gd.chunks.len()
    }

    /// Points per tile of the kernel of the last K (`None` before the first assignment).
    pub fn tile_points(&self) -> Option<usize> {
        self.kernels.as_ref().map(|k| k.shape.tile)
    }

    /// Makes the kernels of `k` clusters current.
    fn use_k(&mut self, k: usize) -> Result<&Kernels> {
        if self.kernels.as_ref().is_none_or(|kn| kn.shape.k != k) {
            // The previous K's buffers go first: only one set is held.
            self.kernels = None;
            let kn = Kernels::new(&self.gd, &self.labels, &self.dists, k, &self.options)?;
            self.kernels = Some(kn);
        }
        match self.kernels.as_ref() {
            Some(kn) => Ok(kn),
            None => unreachable!("built just above"),
        }
    }

    /// Writes the centers (f32, minus the centre) and returns where the GPU's centers are in the
    /// data's coordinates (the f32 values plus the centre), `[K][D]`.
    fn write_centers(&self, kn: &Kernels, centers: &[f64]) -> Vec<f64> {
        let centre = &self.gd.centre;
        let d = centre.len();
        let mut v = vec![0f32; centers.len()];
        let mut gpu = vec![0f64; centers.len()];
        for (e, (dst, c)) in v.iter_mut().zip(centers).enumerate() {
            *dst = (c - centre[e % d]) as f32;
            gpu[e] = *dst as f64 + centre[e % d];
        }
        self.gd
            .ctx
            .queue()
            .write_buffer(&kn.centers, 0, bytemuck::cast_slice(&v));
        gpu
    }

    fn encode(&self, kn: &Kernels, c: usize, enc: &mut wgpu::CommandEncoder) {
        let b = &kn.binds[c];
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("kmeans assign"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&kn.assign.kernel.pipeline);
        pass.set_bind_group(0, &b.assign_bind, &[]);
        pass.dispatch_workgroups(b.groups, kn.shape.passes as u32, 1);
        pass.set_pipeline(&kn.reduce.kernel.pipeline);
        pass.set_bind_group(0, &b.reduce_bind, &[]);
        let (x, y) = grid(
            kn.shape.partial_len().div_ceil(ReduceKernel::COLS),
            self.gd.ctx.limits().max_compute_workgroups_per_dimension,
        );
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Runs chunks `first..first + count` (all in one submit when resident) and adds their
    /// sums into `sums` (f64) and their counts into `counts` (u64).
    fn run_batch(
        &mut self,
        first: usize,
        count: usize,
        sums: &mut [f64],
        counts: &mut [u64],
    ) -> Result<()> {
        let gd = Arc::clone(&self.gd);
        let ctx = &gd.ctx;
        let Some(kn) = self.kernels.as_ref() else {
            unreachable!("the kernels are built before a batch runs")
        };
        let (p, nc) = (kn.shape.partial_len(), kn.shape.k + 1);
        let out_bytes = (count * p * 4) as u64;
        let counts_at = (kn.slots * p * 4) as u64;
        let counts_bytes = (count * nc * 4) as u64;
        let finish = |enc: &mut wgpu::CommandEncoder| {
            enc.copy_buffer_to_buffer(&kn.out, 0, &kn.staging, 0, out_bytes);
            enc.copy_buffer_to_buffer(&kn.counts, 0, &kn.staging, counts_at, counts_bytes);
        };
        if gd.is_resident() {
            let mut enc = encoder(ctx, "kmeans");
            enc.clear_buffer(&kn.counts, 0, None);
            for c in first..first + count {
                self.encode(kn, c, &mut enc);
            }
            finish(&mut enc);
            ctx.queue().submit([enc.finish()]);
        } else {
            for c in first..first + count {
                gd.upload_stream(c, &mut self.scratch)?;
                let mut enc = encoder(ctx, "kmeans");
                if c == first {
                    enc.clear_buffer(&kn.counts, 0, None);
                }
                self.encode(kn, c, &mut enc);
                if c + 1 == first + count {
                    finish(&mut enc);
                }
                ctx.queue().submit([enc.finish()]);
            }
        }
        read_back_bytes(ctx, &kn.staging, counts_at + counts_bytes, |v| {
            let word = |i: usize| [v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]];
            for slot in 0..count {
                for (j, s) in sums.iter_mut().enumerate() {
                    *s += f32::from_le_bytes(word(slot * p + j)) as f64;
                }
                let base = (counts_at / 4) as usize + slot * nc;
                for (j, n) in counts.iter_mut().enumerate() {
                    *n += u32::from_le_bytes(word(base + j)) as u64;
                }
            }
        })
    }

    /// The readback buffer of labels and distances, and its rows.
    fn point_staging(&mut self) -> Result<(wgpu::Buffer, usize)> {
        if self.point_staging.is_none() {
            let rows = (self.gd.max_chunk_rows() as u64).clamp(1, POINTS_BUDGET / 8);
            let ctx = &self.gd.ctx;
            let buffer = ctx.checked("allocating the GPU k-means readback", || {
                Ok(ctx.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kmeans labels readback"),
                    size: 8 * rows,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }))
            })?;
            self.point_staging = Some((buffer, rows as usize));
        }
        match &self.point_staging {
            Some((b, rows)) => Ok((b.clone(), *rows)),
            None => unreachable!("built just above"),
        }
    }

    /// The labels (and with `dists`, the squared distances) of the last assignment, read back
    /// chunk by chunk in slices of at most 64 MiB.
    fn read_assignment(&mut self, labels: &mut [u32], mut dists: Option<&mut [f64]>) -> Result<()> {
        if !self.assigned {
            return Err(Error::param(
                "the k-means engine has no assignment yet; call assign_and_sum first",
            ));
        }
        let n = self.gd.data.n_samples();
        if labels.len() != n || dists.as_ref().is_some_and(|d| d.len() != n) {
            return Err(Error::param(format!(
                "the labels buffer holds {} values but the data has {n} rows",
                labels.len()
            )));
        }
        let (staging, per) = self.point_staging()?;
        let gd = Arc::clone(&self.gd);
        let ctx = &gd.ctx;
        ctx.checked("reading the k-means labels from the GPU", || {
            for (c, chunk) in gd.chunks.iter().enumerate() {
                let mut r0 = 0;
                while r0 < chunk.rows {
                    let m = per.min(chunk.rows - r0);
                    let (off, bytes) = (4 * r0 as u64, 4 * m as u64);
                    let mut enc = encoder(ctx, "kmeans labels");
                    enc.copy_buffer_to_buffer(&self.labels[c], off, &staging, 0, bytes);
                    let total = if dists.is_some() {
                        let at = 4 * per as u64;
                        enc.copy_buffer_to_buffer(&self.dists[c], off, &staging, at, bytes);
                        at + bytes
                    } else {
                        bytes
                    };
                    ctx.queue().submit([enc.finish()]);
                    let row0 = chunk.start + r0;
                    read_back_bytes(ctx, &staging, total, |v| {
                        let word = |i: usize| [v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]];
                        // Stored as label + 1 (every row is assigned by now).
                        for (j, l) in labels[row0..row0 + m].iter_mut().enumerate() {
                            *l = u32::from_le_bytes(word(j)).wrapping_sub(1);
                        }
                        if let Some(out) = dists.as_deref_mut() {
                            for (j, o) in out[row0..row0 + m].iter_mut().enumerate() {
                                *o = f32::from_le_bytes(word(per + j)) as f64;
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

impl KMeansEngine for GpuKMeansEngine<'_> {
    fn assign_and_sum(&mut self, centers: &[f64], n_clusters: usize) -> Result<KMeansStats> {
        let (n, d) = (self.gd.data.n_samples(), self.gd.centre.len());
        if n_clusters == 0 || centers.len() != n_clusters * d {
            return Err(Error::param(format!(
                "k-means centers must be [n_clusters ≥ 1][{d}], got {} values for {n_clusters} clusters",
                centers.len()
            )));
        }
        if centers.iter().any(|c| !c.is_finite()) {
            return Err(Error::param("the k-means centers must be finite"));
        }
        self.use_k(n_clusters)?;
        let gd = Arc::clone(&self.gd);
        let stats = gd.ctx.checked("GPU k-means assignment", || {
            let Some(kn) = self.kernels.as_ref() else {
                unreachable!("built above")
            };
            let gpu_centers = self.write_centers(kn, centers);
            let (tile, slots) = (kn.shape.tile, kn.slots);
            let (weighted, dw) = (kn.shape.weighted, kn.shape.dw);
            let mut sums = vec![0f64; kn.shape.partial_len()];
            let mut counts = vec![0u64; n_clusters + 1];
            let n_chunks = gd.chunks.len();
            let mut first = 0;
            while first < n_chunks {
                let count = slots.min(n_chunks - first);
                self.run_batch(first, count, &mut sums, &mut counts)?;
                first += count;
            }
            if !sums.iter().all(|v| v.is_finite()) {
                return Err(Error::Numerical(
                    "the GPU k-means assignment produced a non-finite sum; scale the data (values this large overflow f32) or use the CPU backend".into(),
                ));
            }
            let mut st = KMeansStats::zeros(n_clusters, d, &gpu_centers);
            st.inertia = sums[..tile].iter().sum();
            st.n_changed = counts[n_clusters];
            if weighted {
                // Per cluster: its D weighted sums, then its weight (summed in f32 per chunk).
                for (c, entry) in sums[tile..tile + n_clusters * dw]
                    .chunks_exact(dw)
                    .enumerate()
                {
                    st.sums[c * d..(c + 1) * d].copy_from_slice(&entry[..d]);
                    // Exactly 0 when the cluster's points all weigh 0: empty, as scikit-learn's.
                    st.counts[c] = entry[d];
                }
                st.n_samples = gd.data.sum_of_weights();
            } else {
                st.n_samples = n as f64;
                for (dst, &c) in st.counts.iter_mut().zip(&counts[..n_clusters]) {
                    *dst = c as f64;
                }
                st.sums.copy_from_slice(&sums[tile..tile + n_clusters * d]);
            }
            // Summed about the f32 centers the GPU used; moved to the exact centers.
            st.reshift(centers);
            Ok(st)
        })?;
        self.assigned = true;
        Ok(stats)
    }

    fn labels(&mut self, out: &mut [u32]) -> Result<()> {
        self.read_assignment(out, None)
    }

    fn farthest(&mut self, n: usize) -> Result<Vec<FarPoint>> {
        let rows = self.gd.data.n_samples();
        let mut labels = vec![0u32; rows];
        let mut dists = vec![0f64; rows];
        self.read_assignment(&mut labels, Some(&mut dists))?;
        Ok(farthest_reference(&labels, &dists, n))
    }

    fn report(&self) -> BackendReport {
        BackendReport {
            backend: Backend::Gpu,
            device: self.gd.ctx.device_label(),
            reason: self.reason.clone(),
        }
    }
}
