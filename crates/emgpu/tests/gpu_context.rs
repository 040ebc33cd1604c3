//! The GPU context, adapter discovery and backend selection (`Backend::Gpu`, `Backend::Auto`).

#![cfg(feature = "gpu")]

mod common;

use emgpu::device::EngineOptions;
use emgpu::device::gpu::{AutoChoice, GpuContext, adapters, auto_choice, preferred_adapter};
use emgpu::models::gmm::gmm_engine;
use emgpu::{Backend, CovarianceType, Dataset};

#[test]
fn the_shared_context_is_one_per_process_with_the_adapters_limits() {
    let Some(_) = common::gpu_backend("the_shared_context_is_one_per_process") else {
        return;
    };
    let a = common::shared_context().unwrap();
    let b = GpuContext::shared().unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    // The device was requested with the adapter's own limits, not WebGPU's defaults.
    let adapter_limits = a.adapter().limits();
    assert_eq!(
        a.limits().max_storage_buffer_binding_size,
        adapter_limits.max_storage_buffer_binding_size
    );
    assert_eq!(
        a.limits().max_compute_workgroup_storage_size,
        adapter_limits.max_compute_workgroup_storage_size
    );
    let listed = adapters();
    assert!(
        listed.iter().any(|s| s.name == a.adapter_info().name),
        "{listed:?}"
    );
    let preferred = preferred_adapter().unwrap();
    assert_eq!(preferred.name, a.adapter_info().name);
    eprintln!("adapters: {listed:#?}");
}

/// The diagonal two-component engine of `backend` over `data`.
fn diag2<'a>(
    backend: Backend,
    data: &'a Dataset<'a>,
) -> Box<dyn emgpu::models::gmm::GmmEngine + 'a> {
    gmm_engine(
        backend,
        data,
        CovarianceType::Diag,
        2,
        EngineOptions::default(),
    )
    .unwrap()
}

#[test]
fn auto_uses_the_cpu_on_a_software_adapter_and_says_why() {
    let Some(_) = common::gpu_backend("auto_uses_the_cpu_on_a_software_adapter") else {
        return;
    };
    let ctx = common::shared_context().unwrap();
    // Small data: the CPU, decided without probing the adapters.
    let x = ndarray::Array2::from_shape_fn((50, 2), |(i, j)| (i * 3 + j) as f64 * 0.1);
    let data = Dataset::from_array(&x);
    let engine = diag2(Backend::Auto, &data);
    assert_eq!(engine.report().backend, Backend::Cpu);
    assert!(
        engine
            .report()
            .reason
            .contains("too small for a GPU to matter"),
        "{}",
        engine.report().reason
    );
    // Data large enough (AUTO_MIN_GPU_VALUES values) for the probe to decide.
    let n = emgpu::device::AUTO_MIN_GPU_VALUES / 2;
    let x = ndarray::Array2::from_shape_fn((n, 2), |(i, j)| ((i * 3 + j) % 101) as f64 * 0.1);
    let data = Dataset::from_array(&x);
    let engine = diag2(Backend::Auto, &data);
    let report = engine.report();
    match auto_choice() {
        AutoChoice::Cpu { reason } => {
            assert!(ctx.is_software());
            assert_eq!(report.backend, Backend::Cpu);
            assert_eq!(report.reason, reason);
            assert!(reason.contains(&ctx.adapter_info().name), "{reason}");
            assert!(reason.contains("CPU backend"), "{reason}");
        }
        AutoChoice::Gpu(c) => {
            assert!(!c.is_software());
            assert_eq!(report.backend, Backend::Gpu);
        }
    }
    // Backend::Gpu takes any adapter, a software one included.
    let engine = diag2(Backend::Gpu, &data);
    assert_eq!(engine.report().backend, Backend::Gpu);
    assert_eq!(engine.report().device, ctx.device_label());
}

#[test]
fn a_device_the_caller_owns_can_be_wrapped() {
    let Some(_) = common::gpu_backend("a_device_the_caller_owns_can_be_wrapped") else {
        return;
    };
    let shared = common::shared_context().unwrap();
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .find(|a| a.get_info().name == shared.adapter_info().name)
        .unwrap();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let ctx = GpuContext::from_wgpu(adapter, device, queue);
    // WebGPU's default limits, as requested.
    assert_eq!(
        ctx.limits().max_storage_buffer_binding_size,
        wgpu::Limits::default().max_storage_buffer_binding_size
    );
    assert_eq!(ctx.adapter_info().name, shared.adapter_info().name);
}

#[test]
fn a_context_on_a_chosen_adapter() {
    let Some(_) = common::gpu_backend("a_context_on_a_chosen_adapter") else {
        return;
    };
    let all = adapters();
    let shared = common::shared_context().unwrap();
    let i = all
        .iter()
        .position(|a| a.name == shared.adapter_info().name)
        .expect("the shared adapter is listed");
    let ctx = GpuContext::for_adapter(i).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&ctx, &shared));
    assert_eq!(ctx.adapter_info().name, shared.adapter_info().name);
    assert_eq!(ctx.limits(), shared.limits());
    // A fit on it gives what a fit on the shared context gives.
    let x = ndarray::Array2::from_shape_fn((300, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
    let data = Dataset::from_array(&x);
    let p = emgpu::GmmParams::new(
        CovarianceType::Diag,
        vec![0.5, 0.5],
        vec![2.0, 2.0, 8.0, 8.0],
        vec![1.0; 4],
        2,
    )
    .unwrap()
    .prepare()
    .unwrap();
    let stats = |ctx| {
        let mut e = emgpu::models::gmm::gpu::GpuGmmEngine::new(
            ctx,
            &data,
            CovarianceType::Diag,
            2,
            Default::default(),
            String::new(),
        )
        .unwrap();
        emgpu::em::EStep::e_step(&mut e, &p).unwrap()
    };
    assert_eq!(stats(ctx).s1, stats(shared).s1);
    assert!(matches!(
        GpuContext::for_adapter(all.len()),
        Err(emgpu::Error::InvalidParameter(m)) if m.contains("no GPU adapter")
    ));
}
