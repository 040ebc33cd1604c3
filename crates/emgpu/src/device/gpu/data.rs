//! One dataset on the GPU: planned in chunks, centred, converted to f32 and uploaded (resident)
//! or streamed, shared by every engine over the same data.
//!
//! - **Plan.** The rows are cut into chunks no larger than one storage binding allows
//!   (`max_storage_buffer_binding_size`, `max_buffer_size`, u32 indexing). When the whole data
//!   fits the resident budget every chunk gets its own buffer, uploaded once (data *resident*);
//!   otherwise one chunk-sized buffer is refilled from the host for each chunk at every E-step
//!   (data *streamed*). `chunk_rows` forces streaming with chunks of that size.
//! - **Centre.** The data are uploaded as f32 *minus a centre* (the f64 mean of a sample of
//!   rows), so data far from the origin keep their precision in f32; the engines send their
//!   parameters in the same coordinates.
//! - **Sample weights.** A weighted dataset's weights are uploaded once per chunk as f32
//!   ([`GpuData::weights`]), resident even when the rows are streamed (4 bytes per row, 1/D of
//!   the data); the kernels multiply each point's contribution by its weight.

use std::sync::Arc;

use super::context::GpuContext;
use super::options::GpuEngineOptions;
use super::util::max_binding;
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Resident-data budget on hardware GPUs when none is given (bytes).
const DEFAULT_RESIDENT_BUDGET_HW: u64 = 4 << 30;
/// Resident-data budget on software adapters (their "GPU memory" is host memory).
const DEFAULT_RESIDENT_BUDGET_SW: u64 = 1 << 30;
/// Size of the streaming buffer when data is streamed and no chunk size is given (bytes).
const STREAM_CHUNK_BYTES: u64 = 256 << 20;
/// Rows sampled to compute the centre of the data.
const CENTRE_SAMPLE: usize = 4096;

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
    /// The sample weights of each chunk as f32 (empty when the data are unweighted).
    weights: Vec<wgpu::Buffer>,
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
        let centre = data_centre(data)?;
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
        let device = ctx.device();
        let limits = ctx.limits();
        let row_bytes = 4 * d as u64;
        let max_bind = max_binding(limits);
        // Kernels index the bound data with u32: keep every chunk under 2^31 floats.
        let max_rows = (max_bind / row_bytes).min((1u64 << 31) / d as u64) as usize;
        if max_rows == 0 {
            return Err(Error::DeviceLimits(format!(
                "one row of {d} features ({row_bytes} bytes) exceeds the device's largest storage binding ({max_bind} bytes); use the CPU backend"
            )));
        }
        let budget = options.resident_budget.unwrap_or(if ctx.is_software() {
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
        let plan = match options.batch_rows {
            Some(0) => return Err(Error::param("batch_rows must be at least 1")),
            Some(b) => plan_in_batches(n, b, chunk_rows.max(1)),
            None => (0..n.div_ceil(chunk_rows))
                .map(|c| (c * chunk_rows, chunk_rows.min(n - c * chunk_rows)))
                .collect(),
        };
        let largest = plan.iter().map(|c| c.1).max().unwrap_or(1);
        let stream = if resident {
            None
        } else {
            Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("streamed chunk"),
                size: largest as u64 * row_bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        };
        let mut chunks = Vec::with_capacity(plan.len());
        for (start, rows) in plan {
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
        let weights = match data.sample_weights() {
            None => Vec::new(),
            Some(w) => chunks
                .iter()
                .map(|c| {
                    use wgpu::util::DeviceExt;
                    let v: Vec<f32> = w[c.start..c.start + c.rows]
                        .iter()
                        .map(|&x| x as f32)
                        .collect();
                    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("sample weights"),
                        contents: bytemuck::cast_slice(&v),
                        usage: wgpu::BufferUsages::STORAGE,
                    })
                })
                .collect(),
        };
        if resident {
            // Flush the uploads now rather than with the first E-step.
            ctx.queue().submit([]);
        }
        Ok(Self {
            ctx,
            data,
            centre,
            chunks,
            stream,
            weights,
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

    /// The f32 sample weights of chunk `c` (`[rows]`), when the data are weighted.
    pub fn weights(&self, c: usize) -> Option<&wgpu::Buffer> {
        self.weights.get(c)
    }

    /// Whether the data carry sample weights (then every chunk has [`GpuData::weights`]).
    pub fn is_weighted(&self) -> bool {
        !self.weights.is_empty()
    }

    /// Rows of the largest chunk.
    pub fn max_chunk_rows(&self) -> usize {
        self.chunks.iter().map(|c| c.rows).max().unwrap_or(1)
    }

    /// Uploads streamed chunk `c` (rows minus the centre, as f32) into the streaming buffer; the
    /// copy happens at the next submit, after the work already submitted. Nothing when resident.
    pub fn upload_stream(&self, c: usize, scratch: &mut Scratch) -> Result<()> {
        let Some(buf) = &self.stream else {
            return Ok(());
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
        )?;
        self.ctx
            .queue()
            .write_buffer(buf, 0, bytemuck::cast_slice(&scratch.f32s));
        Ok(())
    }
}

/// Chunks `(start, rows)` of `n` rows, at most `max_rows` each, none straddling a multiple of
/// `batch` rows: each batch is cut into equal pieces (the last batch may be shorter).
fn plan_in_batches(n: usize, batch: usize, max_rows: usize) -> Vec<(usize, usize)> {
    let mut plan = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let len = end - start;
        let piece = len.div_ceil(len.div_ceil(max_rows));
        let mut s = start;
        while s < end {
            plan.push((s, piece.min(end - s)));
            s += piece;
        }
        start = end;
    }
    plan
}

/// The f64 mean of up to [`CENTRE_SAMPLE`] rows spread evenly over the data.
fn data_centre(data: &Dataset) -> Result<Vec<f64>> {
    let (n, d) = (data.n_samples(), data.n_features());
    let m = n.min(CENTRE_SAMPLE);
    let mut centre = vec![0.0; d];
    let mut row = vec![0.0; d];
    for s in 0..m {
        data.read_f64(s * n / m, &mut row)?;
        for (c, v) in centre.iter_mut().zip(&row) {
            *c += v;
        }
    }
    for c in &mut centre {
        *c /= m as f64;
    }
    Ok(centre)
}

/// Rows `[start, start + f32s.len() / D)` minus `centre`, as f32, into `f32s` (`f64s` is
/// scratch of the same length).
fn convert_rows(
    data: &Dataset,
    centre: &[f64],
    start: usize,
    f64s: &mut [f64],
    f32s: &mut [f32],
) -> Result<()> {
    use rayon::prelude::*;
    let d = centre.len();
    // Blocks of rows converted in parallel (reading may be from a memory-mapped file).
    let block = (1 << 14) * d;
    f64s.par_chunks_mut(block)
        .zip(f32s.par_chunks_mut(block))
        .enumerate()
        .try_for_each(|(b, (src, dst))| {
            data.read_f64(start + b * (block / d), src)?;
            for (row_in, row_out) in src.chunks_exact(d).zip(dst.chunks_exact_mut(d)) {
                for ((o, x), c) in row_out.iter_mut().zip(row_in).zip(centre) {
                    *o = (x - c) as f32;
                }
            }
            Ok(())
        })
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
        convert_rows(data, centre, start + r, &mut f64s, &mut f32s)?;
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
    use super::plan_in_batches;

    #[test]
    fn chunks_stay_inside_batches_and_cover_the_rows() {
        for (n, batch, max) in [(10, 4, 100), (10, 4, 3), (7, 10, 2), (100, 7, 7), (1, 1, 1)] {
            let plan = plan_in_batches(n, batch, max);
            let mut next = 0;
            for &(start, rows) in &plan {
                assert_eq!(start, next, "{n} {batch} {max}: {plan:?}");
                assert!(rows >= 1 && rows <= max);
                assert_eq!(start / batch, (start + rows - 1) / batch, "{plan:?}");
                next = start + rows;
            }
            assert_eq!(next, n);
        }
    }
}
