//! Timing of one k-means iteration (assignment + statistics + readback, and the host update) on
//! the GPU and CPU engines, on synthetic data (a scratch tool; `emgpu bench` is the user-facing
//! benchmark).
//!
//! `kmeans_timing N D K ITERS` (default 100000 16 16 10); `TILES=64,256` sweeps the tile. Without a
//! GPU adapter (or with `NO_GPU=1`) only the CPU engines are timed (the blocked and the reference assignment).
//! `BLOCKED_ONLY=1` times only the blocked CPU assignment. `DUMP=dir` writes the data (`X.f32`, `[N][D]` little-endian f32) and the start centers
//! (`C.f64`, `[K][D]` f64) for `scripts/compare_sklearn_kmeans.py`.
use std::time::Instant;

use emgpu::device::gpu::{GpuContext, GpuEngineOptions};
use emgpu::device::{CpuPath, EngineOptions};
use emgpu::models::kmeans::KMeansEngine;
use emgpu::models::kmeans::cpu::CpuKMeansEngine;
use emgpu::models::kmeans::gpu::GpuKMeansEngine;
use emgpu::{Dataset, KMeans, KMeansInit};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Seconds per call of `f`, over `iters` calls after one warm-up call.
fn per_call(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() / iters as f64
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("N D K ITERS are numbers"))
        .collect();
    let arg = |i: usize, def: usize| a.get(i).copied().unwrap_or(def);
    let (n, d, k, iters) = (arg(0, 100_000), arg(1, 16), arg(2, 16), arg(3, 10));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let centres: Vec<f64> = (0..k * d)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            5.0 * z
        })
        .collect();
    let mut x = Array2::<f32>::zeros((n, d));
    for mut row in x.rows_mut() {
        let c = rng.random_range(0..k);
        for (j, v) in row.iter_mut().enumerate() {
            let z: f64 = StandardNormal.sample(&mut rng);
            *v = (centres[c * d + j] + z) as f32;
        }
    }
    let data = Dataset::from_array(&x);
    let start: Vec<f64> = (0..k * d)
        .map(|e| x[[(e / d) * (n / k), e % d]] as f64)
        .collect();
    if let Ok(dir) = std::env::var("DUMP") {
        let dir = std::path::Path::new(&dir);
        let xs: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let cs: Vec<u8> = start.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join("X.f32"), xs).expect("write X.f32");
        std::fs::write(dir.join("C.f64"), cs).expect("write C.f64");
    }
    let ctx = if std::env::var_os("NO_GPU").is_some() {
        None
    } else {
        GpuContext::shared().ok()
    };
    match &ctx {
        Some(ctx) => println!(
            "N = {n}, D = {d}, K = {k}; device: {} (driver {})",
            ctx.device_label(),
            ctx.summary().driver
        ),
        None => println!("N = {n}, D = {d}, K = {k}; no GPU adapter: CPU only"),
    }
    let tiles: Vec<Option<usize>> = match std::env::var("TILES") {
        Ok(v) => v.split(',').map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![None],
    };
    for tile in tiles {
        let Some(ctx) = &ctx else { break };
        let options = GpuEngineOptions {
            tile_points: tile,
            ..Default::default()
        };
        let t = Instant::now();
        let mut gpu = GpuKMeansEngine::new(ctx.clone(), &data, options, String::new())
            .expect("the GPU engine");
        let build = t.elapsed().as_secs_f64();
        let s = per_call(iters, || {
            gpu.assign_and_sum(&start, k).expect("a GPU assignment");
        });
        println!(
            "gpu tile {:>3}: engine built (upload) in {:.1} ms; assign_and_sum {:.2} ms per iteration",
            gpu.tile_points().unwrap_or(0),
            1e3 * build,
            1e3 * s
        );
    }
    // `BLOCKED_ONLY=1`: only the blocked assignment (for profiling it).
    let blocked_only = std::env::var_os("BLOCKED_ONLY").is_some();
    let paths = if blocked_only {
        vec![CpuPath::Blocked]
    } else {
        vec![CpuPath::Blocked, CpuPath::Reference]
    };
    for path in paths {
        let options = EngineOptions {
            cpu_path: path,
            ..Default::default()
        };
        let mut cpu = CpuKMeansEngine::new(&data, options, String::new());
        let s = per_call(iters, || {
            cpu.assign_and_sum(&start, k).expect("a CPU assignment");
        });
        println!(
            "cpu {path} ({} threads): assign_and_sum {:.2} ms per iteration",
            rayon::current_num_threads(),
            1e3 * s
        );
    }
    if blocked_only {
        return;
    }
    // Whole fits from the same centers, fixed iterations (tol 0), per iteration.
    let centers = Array2::from_shape_vec((k, d), start).expect("[K][D]");
    let backends = if ctx.is_some() {
        vec![emgpu::Backend::Gpu, emgpu::Backend::Cpu]
    } else {
        vec![emgpu::Backend::Cpu]
    };
    // Per iteration of a whole fit: (t(1 + ITERS) − t(1)) / ITERS, scikit-learn's measure.
    let fit = |backend, max_iter| {
        let km = KMeans::params(k)
            .init(KMeansInit::Centers(centers.clone()))
            .tol(0.0)
            .max_iter(max_iter)
            .backend(backend);
        let t = Instant::now();
        let m = km.fit(&x).expect("a fit");
        (t.elapsed().as_secs_f64(), m)
    };
    for backend in backends {
        let (t1, _) = fit(backend, 1);
        let (tm, m) = fit(backend, 1 + iters);
        println!(
            "{backend} fit: {} iterations, {:.2} ms per iteration ((t(1+M) − t(1))/M), inertia {:.15e}",
            m.n_iter(),
            1e3 * (tm - t1) / (m.n_iter() - 1).max(1) as f64,
            m.inertia()
        );
    }
}
