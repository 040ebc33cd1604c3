//! Criterion benches of the Gaussian-mixture stages, per backend and data size (see
//! `benches/README.md` for what each group measures).
//!
//! `cargo bench --bench gmm` runs all of them (a few minutes); filter with a regex, e.g.
//! `cargo bench --bench gmm -- 'e_step/full/cpu'`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use emgpu::device::{Backend, CpuPath, EngineOptions};
use emgpu::models::gmm::gmm_engine;
use emgpu::models::gmm::m_step;
use emgpu::synth::{Synthetic, Workload};
use emgpu::{CovarianceType, GmmParams};

const D: usize = 16;
const K: usize = 16;
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const REG_COVAR: f64 = 1e-6;

/// An engine configuration: a label for the bench id, the backend and its options.
struct Engine {
    label: &'static str,
    backend: Backend,
    options: EngineOptions,
    /// Largest N it runs at (the point-by-point reference is slow).
    max_n: usize,
}

fn engines() -> Vec<Engine> {
    #[cfg_attr(not(feature = "gpu"), allow(unused_mut))]
    let mut v = vec![
        Engine {
            label: "cpu",
            backend: Backend::Cpu,
            options: EngineOptions::default(),
            max_n: usize::MAX,
        },
        Engine {
            label: "cpu-reference",
            backend: Backend::Cpu,
            options: EngineOptions {
                cpu_path: CpuPath::Reference,
                ..Default::default()
            },
            max_n: 100_000,
        },
    ];
    #[cfg(feature = "gpu")]
    match emgpu::device::gpu::GpuContext::shared() {
        Ok(_) => v.insert(
            0,
            Engine {
                label: "gpu",
                backend: Backend::Gpu,
                options: EngineOptions::default(),
                max_n: usize::MAX,
            },
        ),
        Err(e) => eprintln!("no GPU benches: {e}"),
    }
    #[cfg(not(feature = "gpu"))]
    eprintln!("no GPU benches: built without the `gpu` feature");
    v
}

fn data(n: usize, cov: CovarianceType) -> Synthetic {
    Workload {
        n,
        d: D,
        k: K,
        covariance_type: cov,
        seed: 0,
        spread: 5.0,
    }
    .generate()
    .expect("benchmark data")
}

/// Few samples at one million points, so that the whole suite stays within minutes.
fn size_group(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    group.throughput(Throughput::Elements(n as u64));
    if n >= 1_000_000 {
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(4));
    } else {
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(3));
    }
}

/// One E-step with sufficient statistics (and, on the GPU, their reduction and read-back).
fn e_step(c: &mut Criterion) {
    let engines = engines();
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let mut group = c.benchmark_group(format!("e_step/{cov}"));
        group.warm_up_time(Duration::from_secs(1));
        for n in SIZES {
            let synth = data(n, cov);
            let data = synth.dataset().expect("dataset");
            let prepared = synth.init.prepare().expect("prepare");
            size_group(&mut group, n);
            for e in engines.iter().filter(|e| n <= e.max_n) {
                let mut engine = gmm_engine(e.backend, &data, cov, K, e.options).expect("engine");
                group.bench_with_input(BenchmarkId::new(e.label, n), &prepared, |b, p| {
                    b.iter(|| black_box(engine.e_step(p).expect("e_step")))
                });
            }
        }
        group.finish();
    }
}

/// The M-step on the host (f64, K Cholesky factorisations of D×D matrices): independent of N.
fn m_step_bench(c: &mut Criterion) {
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let mut group = c.benchmark_group(format!("m_step/{cov}"));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(2));
        let synth = data(10_000, cov);
        let data = synth.dataset().expect("dataset");
        let mut engine =
            gmm_engine(Backend::Cpu, &data, cov, K, EngineOptions::default()).expect("engine");
        let stats = engine
            .e_step(&synth.init.prepare().expect("prepare"))
            .expect("e_step");
        group.bench_with_input(
            BenchmarkId::new("host", format!("d{D}_k{K}")),
            &stats,
            |b, s| {
                b.iter(|| {
                    let params: GmmParams = m_step(s, REG_COVAR).expect("m_step");
                    black_box(params.prepare().expect("prepare"))
                })
            },
        );
        group.finish();
    }
}

/// One whole EM iteration, as the fit runs it: E-step, M-step, preparation of the next E-step.
fn iteration(c: &mut Criterion) {
    let engines = engines();
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let mut group = c.benchmark_group(format!("iteration/{cov}"));
        group.warm_up_time(Duration::from_secs(1));
        for n in SIZES {
            let synth = data(n, cov);
            let data = synth.dataset().expect("dataset");
            size_group(&mut group, n);
            for e in engines.iter().filter(|e| n <= e.max_n) {
                let mut engine = gmm_engine(e.backend, &data, cov, K, e.options).expect("engine");
                // Iterate from the same start each time, so every sample does the same work.
                let start = synth.init.prepare().expect("prepare");
                group.bench_with_input(BenchmarkId::new(e.label, n), &start, |b, p| {
                    b.iter(|| {
                        let stats = engine.e_step(p).expect("e_step");
                        let params = m_step(&stats, REG_COVAR).expect("m_step");
                        black_box(params.prepare().expect("prepare"))
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, e_step, m_step_bench, iteration);
criterion_main!(benches);
