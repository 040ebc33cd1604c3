//! Small helpers every GPU engine uses: bind groups, dispatch grids, command encoders, readbacks
//! of staging buffers, and the sizes of per-workgroup partials.

use std::sync::mpsc;

use super::context::GpuContext;
use super::data::GpuData;
use super::kernels::KernelPipeline;
use crate::error::{Error, Result};

/// Most bytes of workgroup partials (one row per workgroup of a statistics dispatch).
pub(crate) const PARTIALS_BUDGET: u64 = 256 << 20;
/// Most bytes of per-chunk statistics read back at once.
pub(crate) const OUT_BUDGET: u64 = 32 << 20;
/// Most bytes of per-point outputs read back at once.
pub(crate) const POINTS_BUDGET: u64 = 64 << 20;
/// Workgroups of a statistics dispatch when there are that many tiles: enough to fill a large
/// GPU several times over (on an H100 at N = 1M, about 1000 workgroups were 2–13% faster than
/// 512 and than 2000).
pub(crate) const DEFAULT_MIN_WORKGROUPS: usize = 1024;

/// The largest storage binding the device allows (bytes).
pub(crate) fn max_binding(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

/// A storage buffer for the per-workgroup partial rows (`p_bytes` each) of the largest chunk of
/// `gd`, with `groups_of(rows)` giving a chunk's dispatch (its `.1`: the workgroups).
pub(crate) fn partials_buffer(
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

/// `(tiles, workgroups)` of a dispatch over `rows` rows in tiles of `tile` points: enough
/// workgroups to fill a large GPU (`min_workgroups`), few enough tiles each that every
/// invocation's f32 sums stay short (at most `max_tiles` tiles per workgroup when there are
/// enough workgroups), within `max_groups`.
pub(crate) fn groups_for(
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

/// A bind group of `kernel`'s layout with `buffers` at bindings 0, 1, ...
pub(crate) fn bind(
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
pub(crate) fn grid(n: usize, max: u32) -> (u32, u32) {
    let x = n.clamp(1, max as usize);
    (x as u32, n.div_ceil(x).max(1) as u32)
}

/// A command encoder labelled `label`.
pub(crate) fn encoder(ctx: &GpuContext, label: &str) -> wgpu::CommandEncoder {
    ctx.device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
}

/// Maps `bytes` of `staging` (after the work that fills it was submitted), hands its floats to
/// `f`, and unmaps.
pub(crate) fn read_back(
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
pub(crate) fn read_back_bytes(
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
    ctx.device()
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
