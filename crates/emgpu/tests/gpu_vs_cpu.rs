//! The GPU backend against the f64 CPU backend (the oracle), for every covariance type.
//!
//! - Per-iteration statistics: the same `Prepared` into both engines, iteration after iteration
//!   of a CPU fit; S0, S1, S2 and Σ log p(x) agree within relative 2e-3 (absolute floors scaled
//!   to each statistic's natural size, since S1 and off-diagonal S2 entries can cancel to ~0).
//! - Final parameters of a whole fit (tol = 0, fixed iterations, same explicit init) through the
//!   library API: weights, means, covariances within relative 2e-3 (same floors).
//! - `score_samples` and `predict_proba` on the GPU against the CPU.
//!
//! Datasets: N not a multiple of any workgroup or tile size, D = 1, K = 1, data offset by 1e4,
//! the chunked paths (streamed chunks, several resident buffers, several readbacks), statistics
//! split over several passes (large K·D), and well-separated clusters. Everything runs on Mesa's
//! lavapipe in seconds.

// Index loops over components and features read plainer than zipped iterators here.
#![allow(clippy::needless_range_loop)]
#![cfg(feature = "gpu")]

mod common;

use common::assert_close;
use emgpu::device::EngineOptions;
use emgpu::device::gpu::GpuEngineOptions;
use emgpu::em::EStep;
use emgpu::models::gmm::GmmEngine;
use emgpu::models::gmm::cpu::CpuEngine;
use emgpu::models::gmm::gpu::{GpuGmmEngine, GpuVariant};
use emgpu::models::gmm::m_step;
use emgpu::synth::Workload;
use emgpu::{Backend, CovarianceType, Dataset, FittedGmm, GaussianMixture, GmmParams, Init};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The tolerances of every GPU-vs-CPU comparison (see `common::assert_gmm_stats_close`).
use common::{GPU_FLOOR as FLOOR, GPU_RTOL as RTOL};
const REG: f64 = 1e-6;

/// A test dataset with its mixture size.
struct Case {
    name: &'static str,
    x: Array2<f64>,
    k: usize,
    /// GPU options (chunking) of the case.
    options: GpuEngineOptions,
    /// EM iterations compared.
    iters: usize,
}

/// `n` points in `d` dimensions from a random `k`-component mixture with correlated covariances
/// (`emgpu::synth`: centres uniform in `[−sep, sep]^d`, covariance eigenvalues in about
/// [0.5, 4.5]); everything shifted by `offset`.
fn blobs(n: usize, d: usize, k: usize, sep: f64, offset: f64, seed: u64) -> Array2<f64> {
    let w = Workload {
        n,
        d,
        k,
        covariance_type: CovarianceType::Full,
        seed,
        spread: sep,
    };
    w.generate_f64().unwrap() + offset
}

/// Initial parameters from the data: means at random points (jittered), covariances from the
/// data's covariance scaled per component, random weights.
fn init_params(x: &Array2<f64>, k: usize, cov: CovarianceType, seed: u64) -> GmmParams {
    let (n, d) = x.dim();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mean: Vec<f64> = (0..d).map(|j| x.column(j).mean().unwrap()).collect();
    let mut c = vec![0.0; d * d];
    for r in 0..n {
        for i in 0..d {
            for j in 0..d {
                c[i * d + j] += (x[[r, i]] - mean[i]) * (x[[r, j]] - mean[j]) / n as f64;
            }
        }
    }
    for i in 0..d {
        c[i * d + i] += 1e-3;
    }
    let mut weights: Vec<f64> = (0..k).map(|_| rng.random_range(0.5..1.5)).collect();
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    let mut means = vec![0.0; k * d];
    for m in 0..k {
        let r = rng.random_range(0..n);
        for j in 0..d {
            means[m * d + j] = x[[r, j]] + 0.1 * c[j * d + j].sqrt() * rng.random_range(-1.0..1.0);
        }
    }
    let scales: Vec<f64> = (0..k).map(|_| rng.random_range(0.3..1.0)).collect();
    let covariances = match cov {
        CovarianceType::Full => scales
            .iter()
            .flat_map(|s| c.iter().map(move |v| v * s))
            .collect(),
        CovarianceType::Tied => c.iter().map(|v| v * 0.5).collect(),
        CovarianceType::Diag => scales
            .iter()
            .flat_map(|s| (0..d).map(|i| c[i * d + i] * s).collect::<Vec<_>>())
            .collect(),
        CovarianceType::Spherical => scales
            .iter()
            .map(|s| s * (0..d).map(|i| c[i * d + i]).sum::<f64>() / d as f64)
            .collect(),
    };
    GmmParams::new(cov, weights, means, covariances, d).unwrap()
}

fn cases() -> Vec<Case> {
    let def = GpuEngineOptions::default();
    vec![
        Case {
            name: "blobs n=1037 d=3 k=4",
            x: blobs(1037, 3, 4, 2.0, 0.0, 1),
            k: 4,
            options: def,
            iters: 6,
        },
        Case {
            name: "d=1 k=3 n=501",
            x: blobs(501, 1, 3, 3.0, 0.0, 2),
            k: 3,
            options: def,
            iters: 6,
        },
        Case {
            name: "k=1 d=5 n=299",
            x: blobs(299, 5, 1, 0.0, 0.0, 3),
            k: 1,
            options: def,
            iters: 3,
        },
        Case {
            name: "offset 1e4 n=777 d=2 k=3",
            x: blobs(777, 2, 3, 3.0, 1e4, 4),
            k: 3,
            options: def,
            iters: 6,
        },
        Case {
            name: "streamed chunks of 100 rows, 3 readbacks, 2 points per E-step invocation, n=1000 d=4 k=3",
            x: blobs(1000, 4, 3, 2.5, 5.0, 5),
            k: 3,
            options: GpuEngineOptions {
                chunk_rows: Some(100),
                resident: Some(false),
                readback_chunks: Some(4),
                e_step_points: Some(2),
                ..def
            },
            iters: 5,
        },
        Case {
            name: "resident chunks of 333 rows, tiles of 16 points, 8 workgroups, n=1000 d=4 k=3",
            x: blobs(1000, 4, 3, 2.5, -3.0, 6),
            k: 3,
            options: GpuEngineOptions {
                chunk_rows: Some(333),
                resident: Some(true),
                tile_points: Some(16),
                min_workgroups: Some(8),
                ..def
            },
            iters: 5,
        },
        Case {
            name: "well separated n=600 d=2 k=3",
            x: blobs(600, 2, 3, 60.0, 0.0, 7),
            k: 3,
            options: def,
            iters: 5,
        },
        Case {
            name: "d=16 k=16 n=2000",
            x: blobs(2000, 16, 16, 4.0, 0.0, 8),
            k: 16,
            options: def,
            iters: 4,
        },
        Case {
            // Full: 32 components × 45 blocks of 4×4 > one pass (1024 blocks); diag: 64 × 33
            // entries > one pass (2048 entries).
            name: "several statistic passes n=3200 d=32",
            x: blobs(3200, 32, 32, 3.0, 0.0, 9),
            k: 0, // per covariance type, see `k_for`
            options: def,
            iters: 2,
        },
    ]
}

/// Standard deviation of every column.
fn std_devs(x: &Array2<f64>) -> Vec<f64> {
    (0..x.ncols()).map(|j| x.column(j).std(0.0)).collect()
}

/// The case's K for `cov` (the multi-pass case needs more components for diag/spherical).
fn k_for(case: &Case, cov: CovarianceType) -> usize {
    match (case.k, cov) {
        (0, CovarianceType::Full | CovarianceType::Tied) => 32,
        (0, _) => 64,
        (k, _) => k,
    }
}

fn gpu_engine<'a>(
    data: &'a Dataset<'a>,
    cov: CovarianceType,
    k: usize,
    options: GpuEngineOptions,
) -> GpuGmmEngine<'a> {
    let ctx = common::shared_context().unwrap();
    GpuGmmEngine::new(ctx, data, cov, k, options, String::new()).unwrap()
}

#[test]
fn e_step_statistics_match_the_cpu_every_iteration() {
    let Some(_) = common::gpu_backend("e_step_statistics_match_the_cpu_every_iteration") else {
        return;
    };
    for case in cases() {
        let data = Dataset::from_array(&case.x);
        let sd = std_devs(&case.x);
        for cov in CovarianceType::ALL {
            let k = k_for(&case, cov);
            let what = format!("{} {cov}", case.name);
            let mut cpu = CpuEngine::new(&data, EngineOptions::default(), String::new());
            let mut gpu = gpu_engine(&data, cov, k, case.options);
            let mut params = init_params(&case.x, k, cov, 11);
            for it in 0..case.iters {
                let prepared = params.prepare().unwrap();
                let want = cpu.e_step(&prepared).unwrap();
                let got = gpu.e_step(&prepared).unwrap();
                common::assert_gmm_stats_close(&format!("{what} iteration {it}"), &got, &want, &sd);
                params = m_step(&want, REG).unwrap();
            }
        }
    }
}

#[test]
fn the_engine_plans_the_chunks_it_was_asked_for() {
    let Some(_) = common::gpu_backend("the_engine_plans_the_chunks_it_was_asked_for") else {
        return;
    };
    let x = blobs(1000, 4, 3, 2.5, 0.0, 5);
    let data = Dataset::from_array(&x);
    let cov = CovarianceType::Full;
    let e = gpu_engine(&data, cov, 3, GpuEngineOptions::default());
    assert!(e.is_resident());
    assert_eq!(e.n_chunks(), 1);
    let e = gpu_engine(
        &data,
        cov,
        3,
        EngineOptions {
            chunk_rows: Some(100),
            ..EngineOptions::default()
        }
        .into(),
    );
    assert!(!e.is_resident());
    assert_eq!(e.n_chunks(), 10);
    let opts = GpuEngineOptions {
        chunk_rows: Some(333),
        resident: Some(true),
        ..Default::default()
    };
    let e = gpu_engine(&data, cov, 3, opts);
    assert!(e.is_resident());
    assert_eq!(e.n_chunks(), 4);
    // Data over the resident budget is streamed.
    let opts = GpuEngineOptions {
        resident_budget: Some(1000),
        ..Default::default()
    };
    let e = gpu_engine(&data, cov, 3, opts);
    assert!(!e.is_resident());
}

fn fit(
    x: &Array2<f64>,
    init: &GmmParams,
    iters: usize,
    backend: Backend,
    chunk_rows: Option<usize>,
) -> FittedGmm {
    let mut gm = GaussianMixture::params(init.n_components())
        .covariance(init.covariance_type())
        .tol(0.0)
        .max_iter(iters)
        .reg_covar(REG)
        .init(Init::Params(init.clone()))
        .backend(backend);
    if let Some(r) = chunk_rows {
        gm = gm.chunk_rows(r);
    }
    gm.fit(x).unwrap()
}

/// Fitted parameters agree: weights within RTOL (floor 1e-6); means measured from the data's
/// mean (so that an offset of 1e4 does not make the comparison loose), floor `FLOOR`·σ;
/// covariances with floor `FLOOR`·√(C_ii·C_jj).
#[track_caller]
fn assert_params_close(what: &str, gpu: &GmmParams, cpu: &GmmParams, x: &Array2<f64>) {
    let (k, d) = (cpu.n_components(), cpu.n_features());
    assert_close(
        &format!("{what}: weights"),
        gpu.weights(),
        cpu.weights(),
        RTOL,
        1e-6,
    );
    let centre: Vec<f64> = (0..d).map(|j| x.column(j).mean().unwrap()).collect();
    let var = |c: usize, i: usize| -> f64 {
        match cpu.covariance_type() {
            CovarianceType::Full => cpu.covariances()[c * d * d + i * d + i],
            CovarianceType::Tied => cpu.covariances()[i * d + i],
            CovarianceType::Diag => cpu.covariances()[c * d + i],
            CovarianceType::Spherical => cpu.covariances()[c],
        }
    };
    for c in 0..k {
        for i in 0..d {
            let e = c * d + i;
            assert_close(
                &format!("{what}: means[{c}][{i}] − centre"),
                &[gpu.means()[e] - centre[i]],
                &[cpu.means()[e] - centre[i]],
                RTOL,
                FLOOR * var(c, i).sqrt(),
            );
        }
    }
    let n_mat = match cpu.covariance_type() {
        CovarianceType::Full => k,
        CovarianceType::Tied => 1,
        _ => 0,
    };
    if n_mat > 0 {
        for c in 0..n_mat {
            for i in 0..d {
                for j in 0..d {
                    let e = c * d * d + i * d + j;
                    assert_close(
                        &format!("{what}: covariances[{c}][{i}][{j}]"),
                        &[gpu.covariances()[e]],
                        &[cpu.covariances()[e]],
                        RTOL,
                        FLOOR * (var(c, i) * var(c, j)).sqrt(),
                    );
                }
            }
        }
    } else {
        assert_close(
            &format!("{what}: covariances"),
            gpu.covariances(),
            cpu.covariances(),
            RTOL,
            0.0,
        );
    }
}

#[test]
fn fitted_parameters_match_the_cpu() {
    let Some(gpu) = common::gpu_backend("fitted_parameters_match_the_cpu") else {
        return;
    };
    for case in cases() {
        // The library path takes `chunk_rows` only (streamed chunks).
        let chunk_rows = case.options.chunk_rows;
        for cov in CovarianceType::ALL {
            let k = k_for(&case, cov);
            let what = format!("{} {cov}", case.name);
            let init = init_params(&case.x, k, cov, 12);
            let iters = case.iters + 2;
            let on_cpu = fit(&case.x, &init, iters, Backend::Cpu, chunk_rows);
            let on_gpu = fit(&case.x, &init, iters, gpu, chunk_rows);
            assert_eq!(on_gpu.backend_report().unwrap().backend, Backend::Gpu);
            assert_eq!(on_gpu.n_iter(), iters);
            assert_params_close(&what, on_gpu.params(), on_cpu.params(), &case.x);
            assert_close(
                &format!("{what}: lower bound trace"),
                on_gpu.lower_bound_trace(),
                on_cpu.lower_bound_trace(),
                RTOL,
                FLOOR,
            );
        }
    }
}

#[test]
fn score_samples_and_predict_proba_match_the_cpu() {
    let Some(gpu) = common::gpu_backend("score_samples_and_predict_proba_match_the_cpu") else {
        return;
    };
    for case in cases() {
        for cov in CovarianceType::ALL {
            let k = k_for(&case, cov);
            let what = format!("{} {cov}", case.name);
            let init = init_params(&case.x, k, cov, 13);
            let model = fit(&case.x, &init, 2, Backend::Cpu, None);
            let on_cpu = model.clone().with_backend(Backend::Cpu);
            let on_gpu = model.with_backend(gpu);
            let want = on_cpu.score_samples(&case.x).unwrap();
            let got = on_gpu.score_samples(&case.x).unwrap();
            // log p(x) is O(D) in size; f32 keeps ~1e-6 of the quadratic form.
            let scale = 1e-4 * case.x.ncols() as f64;
            assert_close(
                &format!("{what}: score_samples"),
                got.as_slice().unwrap(),
                want.as_slice().unwrap(),
                RTOL,
                scale,
            );
            let want = on_cpu.predict_proba(&case.x).unwrap();
            let got = on_gpu.predict_proba(&case.x).unwrap();
            assert_close(
                &format!("{what}: predict_proba"),
                got.as_slice().unwrap(),
                want.as_slice().unwrap(),
                RTOL,
                1e-4,
            );
            // Rows sum to 1 as the CPU's do (the engine renormalizes the f32 kernel's rows in f64).
            for row in got.rows() {
                assert!(
                    (row.sum() - 1.0).abs() < 1e-12,
                    "{what}: a row sums to {}",
                    row.sum()
                );
            }
        }
    }
}

#[test]
fn per_point_outputs_cover_every_chunk() {
    let Some(_) = common::gpu_backend("per_point_outputs_cover_every_chunk") else {
        return;
    };
    let x = blobs(1000, 3, 2, 3.0, 0.0, 21);
    let data = Dataset::from_array(&x);
    for cov in [CovarianceType::Full, CovarianceType::Spherical] {
        let p = init_params(&x, 2, cov, 22).prepare().unwrap();
        let mut cpu = CpuEngine::new(&data, EngineOptions::default(), String::new());
        let (mut lp_cpu, mut r_cpu) = (vec![0.0; 1000], vec![0.0; 2000]);
        cpu.log_likelihoods(&p, &mut lp_cpu).unwrap();
        cpu.responsibilities(&p, &mut r_cpu).unwrap();
        for resident in [true, false] {
            let opts = GpuEngineOptions {
                chunk_rows: Some(301),
                resident: Some(resident),
                ..Default::default()
            };
            let mut gpu = gpu_engine(&data, cov, 2, opts);
            let (mut lp, mut r) = (vec![f64::NAN; 1000], vec![f64::NAN; 2000]);
            gpu.log_likelihoods(&p, &mut lp).unwrap();
            gpu.responsibilities(&p, &mut r).unwrap();
            let what = format!("{cov} resident={resident}");
            assert_close(&format!("{what}: log p(x)"), &lp, &lp_cpu, RTOL, 1e-4);
            assert_close(&format!("{what}: responsibilities"), &r, &r_cpu, RTOL, 1e-4);
        }
    }
}

#[test]
fn the_gpu_engine_rejects_parameters_of_another_shape() {
    let Some(_) = common::gpu_backend("the_gpu_engine_rejects_parameters_of_another_shape") else {
        return;
    };
    let x = blobs(100, 2, 2, 3.0, 0.0, 31);
    let data = Dataset::from_array(&x);
    let mut gpu = gpu_engine(&data, CovarianceType::Full, 2, GpuEngineOptions::default());
    let p = init_params(&x, 3, CovarianceType::Full, 1)
        .prepare()
        .unwrap();
    assert!(matches!(
        gpu.e_step(&p),
        Err(emgpu::Error::InvalidParameter(_))
    ));
    let p = init_params(&x, 2, CovarianceType::Diag, 1)
        .prepare()
        .unwrap();
    assert!(matches!(
        gpu.e_step(&p),
        Err(emgpu::Error::InvalidParameter(_))
    ));
}

/// Every kernel variant (`GpuEngineOptions::variant`, `EMGPU_GPU_VARIANT`) against the CPU: the
/// E-step statistics of a few iterations on the cases that reach each variant's edges (K = 1,
/// D = 1 has one lane per point, D = K = 16, tiles of 16 points in resident chunks, streamed
/// chunks), and the per-point outputs, which share the log-sum-exp. (The whole file runs with
/// any variant under `EMGPU_GPU_VARIANT`.)
/// The variants that a device can run are checked to be the ones that ran.
#[test]
fn every_kernel_variant_matches_the_cpu() {
    let Some(gpu_b) = common::gpu_backend("every_kernel_variant_matches_the_cpu") else {
        return;
    };
    let ctx = common::shared_context().unwrap();
    let subgroups_usable = ctx.subgroup_sizes().is_some_and(|(lo, hi)| {
        lo.is_power_of_two() && hi.is_power_of_two() && lo >= 4 && hi <= 256
    });
    // `stage` with the serial log-sum-exp; `lse` and `sg` alone; everything together.
    // `sg` is what runs by default (every other test here runs it); `base` is the plain kernels.
    let wanted = ["base", "lse", "stage", "stage+sg+red"];
    let all = cases();
    let picked: Vec<&Case> = all
        .iter()
        .filter(|c| {
            c.name.starts_with("d=1 ")
                || c.name.starts_with("k=1 ")
                || c.name.starts_with("d=16 k=16")
                || c.name.starts_with("streamed")
                || c.name.starts_with("resident chunks")
        })
        .collect();
    assert_eq!(picked.len(), 5, "the cases this test picks by name");
    // With nothing asked for, the recommended kernels run: `sg` where the device has subgroups.
    {
        let case = picked
            .iter()
            .find(|c| c.name.starts_with("d=16 k=16"))
            .unwrap();
        let data = Dataset::from_array(&case.x);
        let options = GpuEngineOptions {
            variant: None,
            ..case.options
        };
        if std::env::var_os("EMGPU_GPU_VARIANT").is_none() {
            let ran = gpu_engine(
                &data,
                CovarianceType::Full,
                k_for(case, CovarianceType::Full),
                options,
            )
            .kernel_variant();
            assert_eq!(
                ran.subgroups, subgroups_usable,
                "default variant ran as {ran}"
            );
            assert_eq!(
                ran.parallel_lse, !subgroups_usable,
                "default variant ran as {ran}"
            );
        }
    }
    for name in wanted {
        let variant: GpuVariant = name.parse().unwrap();
        for case in &picked {
            let data = Dataset::from_array(&case.x);
            let sd = std_devs(&case.x);
            let covs = if variant.staged && !variant.parallel_lse && !variant.subgroups {
                vec![CovarianceType::Full, CovarianceType::Tied]
            } else {
                vec![
                    CovarianceType::Full,
                    CovarianceType::Tied,
                    CovarianceType::Diag,
                ]
            };
            for cov in covs {
                let k = k_for(case, cov);
                let options = GpuEngineOptions {
                    variant: Some(variant),
                    ..case.options
                };
                let mut cpu = CpuEngine::new(&data, EngineOptions::default(), String::new());
                let mut gpu = gpu_engine(&data, cov, k, options);
                let ran = gpu.kernel_variant();
                let what = format!("{} {cov} variant {name} (ran {ran})", case.name);
                if case.name.starts_with("d=16 k=16") {
                    let full = matches!(cov, CovarianceType::Full | CovarianceType::Tied);
                    assert_eq!(ran.staged, variant.staged && full, "{what}");
                    assert_eq!(ran.wide_reduce, variant.wide_reduce, "{what}");
                    assert_eq!(
                        ran.subgroups,
                        variant.subgroups && subgroups_usable,
                        "{what}"
                    );
                    assert_eq!(
                        ran.parallel_lse,
                        (variant.parallel_lse || variant.subgroups) && !ran.subgroups,
                        "{what}"
                    );
                }
                let mut params = init_params(&case.x, k, cov, 11);
                for it in 0..case.iters.min(2) {
                    let prepared = params.prepare().unwrap();
                    let want = cpu.e_step(&prepared).unwrap();
                    let got = gpu.e_step(&prepared).unwrap();
                    common::assert_gmm_stats_close(
                        &format!("{what} iteration {it}"),
                        &got,
                        &want,
                        &sd,
                    );
                    params = m_step(&want, REG).unwrap();
                }
                // Per-point outputs with the same log-sum-exp.
                let n = case.x.nrows();
                let p = params.prepare().unwrap();
                let (mut lp_cpu, mut r_cpu) = (vec![0.0; n], vec![0.0; n * k]);
                cpu.log_likelihoods(&p, &mut lp_cpu).unwrap();
                cpu.responsibilities(&p, &mut r_cpu).unwrap();
                let (mut lp, mut r) = (vec![f64::NAN; n], vec![f64::NAN; n * k]);
                gpu.log_likelihoods(&p, &mut lp).unwrap();
                gpu.responsibilities(&p, &mut r).unwrap();
                let scale = 1e-4 * case.x.ncols() as f64;
                assert_close(&format!("{what}: log p(x)"), &lp, &lp_cpu, RTOL, scale);
                assert_close(&format!("{what}: responsibilities"), &r, &r_cpu, RTOL, 1e-4);
            }
        }
        eprintln!("variant {name}: ok on {}", ctx.device_label());
    }
    let _ = gpu_b;
    eprintln!("subgroups {:?}", ctx.subgroup_sizes());
}
