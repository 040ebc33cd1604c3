//! Timing of the GPU engine on synthetic data (a scratch tool for tuning; `emgpu bench` is the
//! user-facing benchmark).
//!
//! `gpu_timing N D K COVS ITERS` with COVS like `full,diag`; environment: `TILES=64,128`,
//! `G_MIN=512,2048` (sweeps), `VARIANTS="base stage+sg"` (kernel variants, space-separated; see
//! `GpuVariant`), `FIT=1` (also a library fit), `CPU=1` (also one CPU E-step). Each line says
//! which variant ran (what the device could run of the one asked for).
use std::time::Instant;

use emgpu::device::EngineOptions;
use emgpu::device::gpu::{GpuContext, GpuEngineOptions};
use emgpu::em::EStep;
use emgpu::models::gmm::cpu::CpuEngine;
use emgpu::models::gmm::gpu::{GpuGmmEngine, GpuVariant};
use emgpu::{Backend, CovarianceType, Dataset, GaussianMixture, GmmParams, Init};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn list(var: &str) -> Vec<Option<usize>> {
    match std::env::var(var) {
        Ok(v) => v.split(',').map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![None],
    }
}

/// `VARIANTS` (space-separated), else `EMGPU_GPU_VARIANT`, else `[None]` (the engine's default).
fn variants() -> Vec<Option<GpuVariant>> {
    match std::env::var("VARIANTS") {
        Ok(v) => v
            .split_whitespace()
            .map(|s| Some(s.parse().unwrap()))
            .collect(),
        Err(_) => vec![
            std::env::var("EMGPU_GPU_VARIANT")
                .ok()
                .map(|s| s.parse().unwrap()),
        ],
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: gpu_timing N D K COVS ITERS");
        std::process::exit(2);
    }
    let n: usize = a[1].parse().unwrap();
    let d: usize = a[2].parse().unwrap();
    let k: usize = a[3].parse().unwrap();
    let iters: usize = a[5].parse().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let centres: Vec<f64> = (0..k * d)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            5.0 * z
        })
        .collect();
    let t0 = Instant::now();
    let mut x = Array2::<f32>::zeros((n, d));
    for r in 0..n {
        let c = rng.random_range(0..k);
        for j in 0..d {
            let z: f64 = StandardNormal.sample(&mut rng);
            x[[r, j]] = (centres[c * d + j] + z) as f32;
        }
    }
    println!("data {n}x{d} (K={k}) generated in {:.2?}", t0.elapsed());
    let ctx = GpuContext::shared().unwrap();
    println!(
        "device: {} (driver {})",
        ctx.device_label(),
        ctx.summary().driver
    );
    let data = Dataset::from_array(&x);
    for cov in a[4].split(',') {
        let cov: CovarianceType = cov.parse().unwrap();
        let means: Vec<f64> = (0..k * d)
            .map(|i| x[[(i / d) * 7919 % n, i % d]] as f64)
            .collect();
        let eye = |e: usize| if e / d == e % d { 4.0 } else { 0.0 };
        let covariances: Vec<f64> = match cov {
            CovarianceType::Full => (0..k * d * d).map(|e| eye(e % (d * d))).collect(),
            CovarianceType::Tied => (0..d * d).map(eye).collect(),
            CovarianceType::Diag => vec![4.0; k * d],
            CovarianceType::Spherical => vec![4.0; k],
        };
        let init = GmmParams::new(cov, vec![1.0 / k as f64; k], means, covariances, d).unwrap();
        let prepared = init.prepare().unwrap();
        let mut reference: Option<f64> = None;
        for (variant, (tile, ppt, groups)) in variants().into_iter().flat_map(|v| {
            list("TILES")
                .into_iter()
                .flat_map(|t| {
                    list("PPT")
                        .into_iter()
                        .flat_map(move |p| list("G_MIN").into_iter().map(move |g| (t, p, g)))
                })
                .map(move |x| (v, x))
        }) {
            {
                let options = GpuEngineOptions {
                    tile_points: tile,
                    e_step_points: ppt,
                    min_workgroups: groups,
                    variant,
                    ..Default::default()
                };
                let t = Instant::now();
                let mut eng =
                    GpuGmmEngine::new(ctx.clone(), &data, cov, k, options, String::new()).unwrap();
                let build = t.elapsed();
                let first = Instant::now();
                let s = eng.e_step(&prepared).unwrap();
                let first = first.elapsed();
                let mut times = Vec::new();
                for _ in 0..iters {
                    let t = Instant::now();
                    let s2 = eng.e_step(&prepared).unwrap();
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                    assert_eq!(
                        s2.log_likelihood, s.log_likelihood,
                        "E-steps not reproducible"
                    );
                }
                times.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let lb = s.mean_log_likelihood();
                let rel = reference.map(|r| (lb - r).abs() / r.abs()).unwrap_or(0.0);
                reference.get_or_insert(lb);
                println!(
                    "{cov:9} {:14} tile={:3} ppt={} min_groups={:5}: build {:7.1} ms, first {:8.1} ms, e-step median {:8.3} ms min {:8.3} ms ({} resident={}), lb {lb:.6} (rel diff {rel:.1e})",
                    eng.kernel_variant().to_string(),
                    eng.tile_points(),
                    ppt.map_or("-".into(), |p| p.to_string()),
                    groups.map_or("-".into(), |g| g.to_string()),
                    build.as_secs_f64() * 1e3,
                    first.as_secs_f64() * 1e3,
                    times[times.len() / 2],
                    times[0],
                    eng.n_chunks(),
                    eng.is_resident(),
                );
            }
        }
        if std::env::var("CPU").is_ok_and(|v| v == "1") {
            let mut cpu = CpuEngine::new(&data, EngineOptions::default(), String::new());
            let t = Instant::now();
            let c = cpu.e_step(&prepared).unwrap();
            println!(
                "{cov:9} CPU f64 reference E-step: {:.1} ms, lb {:.6} (GPU rel diff {:.1e})",
                t.elapsed().as_secs_f64() * 1e3,
                c.mean_log_likelihood(),
                reference.map_or(0.0, |r| (r - c.mean_log_likelihood()).abs() / r.abs())
            );
        }
        if std::env::var("FIT").is_ok_and(|v| v == "1") {
            let t = Instant::now();
            let f = GaussianMixture::params(k)
                .covariance(cov)
                .tol(0.0)
                .max_iter(iters)
                .init(Init::Params(init))
                .backend(Backend::Gpu)
                .fit(&x)
                .unwrap();
            let el = t.elapsed().as_secs_f64();
            println!(
                "{cov:9} library fit, {iters} iterations on {}: {:.3} s total, {:.3} ms per iteration (setup included), lower bound {:.6}",
                f.backend_report()
                    .map_or(String::new(), |r| r.device.clone()),
                el,
                el * 1e3 / iters as f64,
                f.lower_bound()
            );
        }
    }
}
