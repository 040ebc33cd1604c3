//! Helpers shared by the integration tests.
#![allow(dead_code)]

use emgpu::Backend;

/// Whether GPU tests must run (CI sets `EMGPU_REQUIRE_GPU=1`): then a missing adapter fails them.
pub fn gpu_required() -> bool {
    std::env::var("EMGPU_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The shared GPU context, configured first from the environment as the `emgpu` binary does
/// (the library reads no environment variable): `EMGPU_GPU_VARIANT` (kernel variant),
/// `EMGPU_GPU_RESIDENT_BYTES` (resident-data budget), `EMGPU_SHADER_BOUNDS_CHECKS=1` (kernel
/// bounds checks). Every test reaches the shared context through here (or [`gpu_backend`]).
#[cfg(feature = "gpu")]
pub fn shared_context() -> emgpu::Result<std::sync::Arc<emgpu::device::gpu::GpuContext>> {
    use emgpu::device::gpu::{GpuContext, GpuContextOptions, GpuEngineOptions, GpuVariant};
    let variant = std::env::var("EMGPU_GPU_VARIANT").ok().map(|s| {
        s.parse::<GpuVariant>()
            .unwrap_or_else(|e| panic!("EMGPU_GPU_VARIANT: {e}"))
    });
    let resident_budget = std::env::var("EMGPU_GPU_RESIDENT_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    GpuContext::configure_shared(GpuContextOptions {
        shader_bounds_checks: std::env::var("EMGPU_SHADER_BOUNDS_CHECKS").is_ok_and(|v| v == "1"),
        engine_defaults: GpuEngineOptions {
            variant,
            resident_budget,
            ..GpuEngineOptions::default()
        },
    })
    .expect("the shared GPU context is configured once, from the environment");
    GpuContext::shared()
}

/// `Backend::Gpu` when an adapter exists; otherwise `None` after printing why the test skips,
/// or a panic when `EMGPU_REQUIRE_GPU=1`.
#[cfg(not(feature = "gpu"))]
pub fn gpu_backend(test: &str) -> Option<Backend> {
    if gpu_required() {
        panic!("{test}: EMGPU_REQUIRE_GPU=1 but emgpu was built without the `gpu` feature");
    }
    eprintln!("skipping {test}: built without the `gpu` feature");
    None
}

/// `Backend::Gpu` when an adapter exists; otherwise `None` after printing why the test skips,
/// or a panic when `EMGPU_REQUIRE_GPU=1`.
#[cfg(feature = "gpu")]
pub fn gpu_backend(test: &str) -> Option<Backend> {
    match shared_context() {
        Ok(_) => Some(Backend::Gpu),
        Err(e) if gpu_required() => panic!("{test}: EMGPU_REQUIRE_GPU=1 but no GPU adapter: {e}"),
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            None
        }
    }
}

/// `|a − b| ≤ atol + rtol·|b|`, elementwise, with a message naming the worst element.
#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0.0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            !g.is_nan() && !w.is_nan(),
            "{what}[{i}]: NaN (got {g}, want {w})"
        );
        let excess = (g - w).abs() / (atol + rtol * w.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(
        worst.1 <= 1.0,
        "{what}[{i}]: got {}, want {} (|diff| = {:.3e}, allowed {:.3e})",
        got[i],
        want[i],
        (got[i] - want[i]).abs(),
        atol + rtol * want[i].abs()
    );
}

/// Largest relative difference `|a − b| / max(|b|, floor)`.
pub fn max_rel_diff(got: &[f64], want: &[f64], floor: f64) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(floor))
        .fold(0.0, f64::max)
}

/// A flat f64 vector from nested JSON arrays.
pub fn flatten(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(flatten).collect(),
        other => vec![other.as_f64().expect("a number")],
    }
}
