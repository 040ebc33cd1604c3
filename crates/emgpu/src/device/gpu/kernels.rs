//! Building compute kernels: WGSL source to a pipeline with the layout of its one bind group.
//!
//! Every kernel of emgpu is one WGSL file next to the code that drives it (the model's GPU
//! module), built into the binary with `include_str!`; sizes known per fit are prepended as WGSL
//! `const` declarations. [`build_kernel`] compiles such a source; the [`GpuContext`] caches the
//! result under the kernel's name and those constants.

use super::context::GpuContext;
use crate::error::Result;

/// Invocations per workgroup of every kernel (WebGPU guarantees 256 on every adapter).
pub(crate) const WG: u32 = 256;

/// A compiled kernel: its pipeline and the layout of its one bind group.
pub(crate) struct KernelPipeline {
    /// The compute pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// The layout of bind group 0.
    pub layout: wgpu::BindGroupLayout,
}

/// How a kernel's binding is used.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Uniform,
    Read,
    ReadWrite,
}

/// Compiles `source` (with entry point `main`) against a bind group of `slots` (bindings 0..).
pub(crate) fn build_kernel(
    ctx: &GpuContext,
    label: &str,
    source: &str,
    slots: &[Slot],
) -> Result<KernelPipeline> {
    ctx.checked(&format!("building the {label} kernel"), || {
        let device = ctx.device();
        let checks = wgpu::ShaderRuntimeChecks {
            // Off unless the context's options ask for them (a debugging aid): every index of
            // these kernels is in bounds by construction (see below), and the clamps naga would
            // add to each dynamic index of workgroup and storage arrays cost about 15% of the
            // E-step on an H100.
            bounds_checks: ctx.options().shader_bounds_checks,
            // Every loop of these kernels ends: its bound is a constant or a count from a
            // uniform that the host sets (tiles, rows), and every step adds at least 1. Without
            // the injected loop counters the drivers can unroll the constant loops, which keeps
            // the per-point arrays in registers.
            force_loop_bounding: false,
            // No division has a divisor that can be 0 (all are constants ≥ 1).
            int_div_checks: false,
            ..wgpu::ShaderRuntimeChecks::checked()
        };
        // SAFETY: `ShaderRuntimeChecks` lists the obligations of the checks turned off above.
        // (1) No infinite loop and no integer division by 0: stated next to each flag. (2) No
        // out-of-bounds access: the engine binds buffers of exactly the sizes the constants and
        // uniforms describe (data: the chunk's rows × D; parameters: `params_len`; partials:
        // the dispatch's workgroups × P; outputs: their rows), and the kernels index them only
        // below those sizes: data rows are read only when `e < rows·D`, workgroup arrays with
        // t < T, k < K, blocks < NB, statistic units below their counts, partial rows with
        // wid.x < the workgroups dispatched. `tests/gpu_vs_cpu.rs` runs every kernel on edge
        // shapes (N not a multiple of the tile, D = 1, K = 1, several passes and chunks).
        let module = unsafe {
            device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                },
                checks,
            )
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match s {
                    Slot::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: matches!(s, Slot::Read),
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        Ok(KernelPipeline { pipeline, layout })
    })
}
