//! Helpers shared by the integration tests.
#![allow(dead_code)]

use emgpu::Backend;
use emgpu::models::gmm::GmmStats;

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

/// Relative tolerance of GPU (f32) statistics against the f64 CPU oracle.
pub const GPU_RTOL: f64 = 2e-3;
/// Absolute floor of that comparison, relative to the natural scale of each entry.
pub const GPU_FLOOR: f64 = 1e-4;

/// Compares GPU statistics with CPU ones. Floors: S0 and Σ log p(x) relative to N; S1_i to
/// √(S0·S2_ii) (its Cauchy–Schwarz bound); S2_ij to √(S2_ii·S2_jj); plus, for S1 and S2, a
/// millionth of the same statistic over all the data as one component (N·σ_i, N·σ_i·σ_j with
/// the data's standard deviations `sd`). The last floor matters for nearly empty components:
/// their responsibilities are tails exp(−½·maha) of large Mahalanobis distances, which f32
/// knows only to ~1e-7·maha absolutely, so their tiny statistics carry a relative error that
/// no f32 kernel avoids (and that moves no fitted parameter of the other components).
#[track_caller]
pub fn assert_gmm_stats_close(what: &str, gpu: &GmmStats, cpu: &GmmStats, sd: &[f64]) {
    let (k, d) = (cpu.n_components, cpu.n_features);
    assert_eq!(gpu.n_samples, cpu.n_samples, "{what}: n_samples");
    assert_eq!(gpu.shift, cpu.shift, "{what}: shift");
    let n = cpu.n_samples;
    assert_close(
        &format!("{what}: log-likelihood"),
        &[gpu.log_likelihood],
        &[cpu.log_likelihood],
        GPU_RTOL,
        GPU_FLOOR * n,
    );
    assert_close(
        &format!("{what}: s0"),
        &gpu.s0,
        &cpu.s0,
        GPU_RTOL,
        GPU_FLOOR * 1e-2 * n,
    );
    let diag = |c: usize, i: usize| -> f64 {
        if cpu.has_full_s2() {
            cpu.s2[c * d * d + i * d + i]
        } else {
            cpu.s2[c * d + i]
        }
    };
    for c in 0..k {
        for i in 0..d {
            let scale = (cpu.s0[c] * diag(c, i)).sqrt();
            assert_close(
                &format!("{what}: s1[{c}][{i}]"),
                &[gpu.s1[c * d + i]],
                &[cpu.s1[c * d + i]],
                GPU_RTOL,
                GPU_FLOOR * scale + 1e-6 * n * sd[i],
            );
            if cpu.has_full_s2() {
                for j in 0..d {
                    let e = c * d * d + i * d + j;
                    assert_close(
                        &format!("{what}: s2[{c}][{i}][{j}]"),
                        &[gpu.s2[e]],
                        &[cpu.s2[e]],
                        GPU_RTOL,
                        GPU_FLOOR * (diag(c, i) * diag(c, j)).sqrt() + 1e-6 * n * sd[i] * sd[j],
                    );
                }
            } else {
                assert_close(
                    &format!("{what}: s2[{c}][{i}]"),
                    &[gpu.s2[c * d + i]],
                    &[cpu.s2[c * d + i]],
                    GPU_RTOL,
                    GPU_FLOOR * diag(c, i) + 1e-6 * n * sd[i] * sd[i],
                );
            }
        }
    }
}
