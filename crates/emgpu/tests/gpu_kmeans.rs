//! k-means on the GPU against the f64 CPU engine (the oracle), and the GPU paths that use it:
//! a Gaussian mixture's k-means initialization, restarts and model selection.
//!
//! - Per-iteration statistics: the same centers into both engines, iteration after iteration of
//!   a CPU run. Labels agree except at near-ties (a point whose two nearest centers are within f32
//!   rounding of each other: the f32 GPU and the f64 CPU may see the tie differently; each such
//!   point is checked to be one). Counts, sums and inertia agree with the f64 statistics of the
//!   GPU's own labels (counts exactly; sums and inertia within relative 2e-3, with floors scaled
//!   to each sum's natural size), and with the CPU's statistics whenever no label differs.
//! - Whole fits through the library (same initial centers): centers and inertia within 2e-3,
//!   labels as above; empty clusters relocated as on the CPU (and as scikit-learn).
//! - `Init::Kmeans` on the GPU (k-means on the data the mixture engine uploaded) gives the
//!   mixture the GPU fits from the CPU's k-means initialization, within 2e-3; restarts
//!   (`n_init > 1`) and `select_gmm` on the GPU agree with the CPU.
//!
//! Datasets: iris and wine (the scikit-learn fixtures of `tests/kmeans.rs`, made by
//! `scripts/make_kmeans_fixtures.py`) and synthetic blobs: N not a multiple of the tile, K = 1,
//! D = 1, data offset by 1e4, streamed chunks, several resident chunks with several tiles per
//! workgroup, sums split over two passes. Everything runs on Mesa's lavapipe in seconds.

// Index loops over clusters and features read plainer than zipped iterators here.
#![allow(clippy::needless_range_loop)]
#![cfg(feature = "gpu")]

mod common;

use common::{assert_close, flatten};
use emgpu::device::EngineOptions;
use emgpu::device::gpu::GpuEngineOptions;
use emgpu::device::gpu::{AutoChoice, auto_choice};
use emgpu::em::EStep;
use emgpu::models::gmm::GmmEngine;
use emgpu::models::gmm::cpu::CpuEngine;
use emgpu::models::gmm::gpu::GpuGmmEngine;
use emgpu::models::kmeans::KMeansStats;
use emgpu::models::kmeans::cpu::CpuKMeansEngine;
use emgpu::models::kmeans::gpu::GpuKMeansEngine;
use emgpu::models::kmeans::{KMeansEngine, kmeans_engine};
use emgpu::synth::{Workload, blobs as blobs_around};
use emgpu::{
    Backend, CovarianceType, Criterion, Dataset, FittedKMeans, GaussianMixture, GmmParams, Init,
    KMeans, KMeansInit, select_gmm,
};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const RTOL: f64 = 2e-3;
/// Absolute floors, as a fraction of each quantity's natural scale.
const FLOOR: f64 = 1e-4;
/// Two distances within this fraction of the squared norms involved (in coordinates centred on
/// the data's mean) are a near-tie: f32 cannot order them reliably.
const TIE: f64 = 1e-5;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/sklearn_kmeans.json")).unwrap()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows = v.as_array().unwrap();
    let d = rows[0].as_array().unwrap().len();
    Array2::from_shape_vec((rows.len(), d), flatten(v)).unwrap()
}

/// The data and initial centers of the scikit-learn fixture case `name`.
fn fixture_case(name: &str) -> (Array2<f64>, Array2<f64>) {
    let doc = fixture();
    let case = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no fixture case {name}"))
        .clone();
    let x = matrix(&doc["datasets"][case["data"].as_str().unwrap()]);
    (x, matrix(&case["init"]))
}

/// `n` points in `d` dimensions from a random `k`-component mixture of round Gaussian blobs
/// (`emgpu::synth`: centres uniform in `[−sep, sep]^d`, variances in [0.5, 2]), shifted by
/// `offset`.
fn blobs(n: usize, d: usize, k: usize, sep: f64, offset: f64, seed: u64) -> Array2<f64> {
    let w = Workload {
        n,
        d,
        k,
        covariance_type: CovarianceType::Spherical,
        seed,
        spread: sep,
    };
    w.generate_f64().unwrap() + offset
}

/// `k` rows of `x` drawn without replacement (seeded), as `[k][D]`.
fn rows_of(x: &Array2<f64>, k: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picked: Vec<usize> = Vec::new();
    while picked.len() < k {
        let r = rng.random_range(0..x.nrows());
        if !picked.contains(&r) {
            picked.push(r);
        }
    }
    Array2::from_shape_fn((k, x.ncols()), |(c, j)| x[[picked[c], j]])
}

fn column_means(x: &Array2<f64>) -> Vec<f64> {
    (0..x.ncols())
        .map(|j| x.column(j).mean().unwrap())
        .collect()
}

fn std_devs(x: &Array2<f64>) -> Vec<f64> {
    (0..x.ncols()).map(|j| x.column(j).std(0.0)).collect()
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Rows where the GPU's labels differ from the CPU's; panics unless each is a near-tie (the two
/// centers at distances equal within f32 rounding).
#[track_caller]
fn near_tie_flips(what: &str, x: &Array2<f64>, centers: &[f64], gpu: &[u32], cpu: &[u32]) -> usize {
    let d = x.ncols();
    let mean = column_means(x);
    let centred = |v: &[f64]| sq_dist(v, &mean);
    let mut flips = 0;
    for (r, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        if g == c {
            continue;
        }
        let row: Vec<f64> = x.row(r).to_vec();
        let (cg, cc) = (
            &centers[g as usize * d..(g as usize + 1) * d],
            &centers[c as usize * d..(c as usize + 1) * d],
        );
        let (dg, dc) = (sq_dist(&row, cg), sq_dist(&row, cc));
        let scale = centred(&row) + centred(cg) + centred(cc) + 1e-300;
        assert!(
            (dg - dc).abs() <= TIE * scale,
            "{what}: row {r} labelled {g} on the GPU and {c} on the CPU, distances {dg} and {dc}: not a near-tie"
        );
        flips += 1;
    }
    flips
}

/// The f64 statistics of the assignment `labels` under `centers`, and per cluster and feature
/// `Σ (x − c)²` (for the floors).
fn stats_of_labels(
    x: &Array2<f64>,
    centers: &[f64],
    labels: &[u32],
    k: usize,
) -> (KMeansStats, Vec<f64>) {
    let d = x.ncols();
    let mut st = KMeansStats::zeros(k, d, centers);
    let mut sq = vec![0.0; k * d];
    for (r, &l) in labels.iter().enumerate() {
        let row: Vec<f64> = x.row(r).to_vec();
        let l = l as usize;
        let c = &centers[l * d..(l + 1) * d];
        st.add_point(&row, l, sq_dist(&row, c), false);
        for i in 0..d {
            sq[l * d + i] += (row[i] - c[i]) * (row[i] - c[i]);
        }
    }
    (st, sq)
}

/// GPU statistics against f64 ones: counts exactly, inertia within RTOL, sums within RTOL with
/// the floor `FLOOR·√(n_k·Σ(x − c)_i²)` (their natural size) plus a millionth of N·σ_i.
#[track_caller]
fn assert_stats_close(what: &str, gpu: &KMeansStats, want: &KMeansStats, sq: &[f64], sd: &[f64]) {
    let (k, d) = (want.n_clusters, want.n_features);
    assert_eq!(gpu.n_samples, want.n_samples, "{what}: n_samples");
    assert_eq!(gpu.shift, want.shift, "{what}: shift");
    assert_eq!(gpu.counts, want.counts, "{what}: counts");
    let n = want.n_samples;
    assert_close(
        &format!("{what}: inertia"),
        &[gpu.inertia],
        &[want.inertia],
        RTOL,
        1e-12,
    );
    for c in 0..k {
        for i in 0..d {
            let e = c * d + i;
            let floor = FLOOR * (want.counts[c] * sq[e]).sqrt() + 1e-6 * n * sd[i];
            assert_close(
                &format!("{what}: sums[{c}][{i}]"),
                &[gpu.sums[e]],
                &[want.sums[e]],
                RTOL,
                floor,
            );
        }
    }
}

/// The next centers from statistics: `c + S/n`; an empty cluster keeps its center.
fn next_centers(st: &KMeansStats) -> Vec<f64> {
    let d = st.n_features;
    (0..st.n_clusters * d)
        .map(|e| {
            let n = st.counts[e / d];
            if n == 0.0 {
                st.shift[e]
            } else {
                st.shift[e] + st.sums[e] / n
            }
        })
        .collect()
}

struct Case {
    name: &'static str,
    x: Array2<f64>,
    start: Array2<f64>,
    options: GpuEngineOptions,
    iters: usize,
}

fn cases() -> Vec<Case> {
    let def = GpuEngineOptions::default();
    let case = |name, x: Array2<f64>, k, seed, options, iters| {
        let start = rows_of(&x, k, seed);
        Case {
            name,
            x,
            start,
            options,
            iters,
        }
    };
    let (iris, iris_start) = fixture_case("iris_k5");
    let (wine, wine_start) = fixture_case("wine_std_k3");
    vec![
        Case {
            name: "iris k=5",
            x: iris,
            start: iris_start,
            options: def,
            iters: 6,
        },
        Case {
            name: "wine (standardized) d=13 k=3",
            x: wine,
            start: wine_start,
            options: def,
            iters: 6,
        },
        case(
            "blobs n=1037 d=3 k=4",
            blobs(1037, 3, 4, 3.0, 0.0, 1),
            4,
            11,
            def,
            6,
        ),
        case(
            "d=1 k=3 n=501",
            blobs(501, 1, 3, 3.0, 0.0, 2),
            3,
            12,
            def,
            6,
        ),
        case(
            "k=1 d=5 n=299",
            blobs(299, 5, 2, 2.0, 0.0, 3),
            1,
            13,
            def,
            2,
        ),
        case(
            "offset 1e4 n=777 d=2 k=3",
            blobs(777, 2, 3, 3.0, 1e4, 4),
            3,
            14,
            def,
            6,
        ),
        case(
            "streamed chunks of 100 rows, 3 readbacks, n=1000 d=4 k=3",
            blobs(1000, 4, 3, 2.5, 5.0, 5),
            3,
            15,
            GpuEngineOptions {
                chunk_rows: Some(100),
                resident: Some(false),
                readback_chunks: Some(4),
                ..def
            },
            5,
        ),
        case(
            "resident chunks of 333 rows, tiles of 16 points, 8 workgroups, n=1000 d=4 k=5",
            blobs(1000, 4, 5, 2.5, -3.0, 6),
            5,
            16,
            GpuEngineOptions {
                chunk_rows: Some(333),
                resident: Some(true),
                tile_points: Some(16),
                min_workgroups: Some(8),
                ..def
            },
            5,
        ),
        // 40·60 = 2400 sum entries > 256 invocations × 8: two passes.
        case(
            "two passes n=600 d=60 k=40",
            blobs(600, 60, 8, 2.0, 0.0, 7),
            40,
            17,
            def,
            3,
        ),
    ]
}

fn gpu_kmeans<'a>(data: &'a Dataset<'a>, options: GpuEngineOptions) -> GpuKMeansEngine<'a> {
    GpuKMeansEngine::new(
        common::shared_context().unwrap(),
        data,
        options,
        String::new(),
    )
    .unwrap()
}

#[test]
fn assignment_statistics_match_the_cpu_every_iteration() {
    let Some(_) = common::gpu_backend("assignment_statistics_match_the_cpu_every_iteration") else {
        return;
    };
    let mut total_flips = 0;
    for case in cases() {
        let (n, d) = case.x.dim();
        let k = case.start.nrows();
        let data = Dataset::from_array(&case.x);
        let sd = std_devs(&case.x);
        let mut cpu = CpuKMeansEngine::new(&data, EngineOptions::default(), String::new());
        let mut gpu = gpu_kmeans(&data, case.options);
        let mut centers: Vec<f64> = case.start.iter().copied().collect();
        let (mut lc, mut lg) = (vec![0u32; n], vec![0u32; n]);
        let mut prev_flips = 0;
        for it in 0..case.iters {
            let what = format!("{} iteration {it}", case.name);
            let want = cpu.assign_and_sum(&centers, k).unwrap();
            let got = gpu.assign_and_sum(&centers, k).unwrap();
            cpu.labels(&mut lc).unwrap();
            gpu.labels(&mut lg).unwrap();
            let flips = near_tie_flips(&what, &case.x, &centers, &lg, &lc);
            total_flips += flips;
            // Against the f64 statistics of the GPU's own labels.
            let (mine, sq) = stats_of_labels(&case.x, &centers, &lg, k);
            assert_stats_close(&what, &got, &mine, &sq, &sd);
            if flips == 0 {
                assert_stats_close(&format!("{what} (CPU)"), &got, &want, &sq, &sd);
                if prev_flips == 0 {
                    assert_eq!(got.n_changed, want.n_changed, "{what}: n_changed");
                }
            }
            if it == 0 {
                assert_eq!(got.n_changed, n as u64, "{what}: all labels are new");
            }
            assert_eq!((got.n_clusters, got.n_features), (k, d));
            prev_flips = flips;
            centers = next_centers(&want);
        }
    }
    eprintln!("labels that differed at near-ties: {total_flips}");
}

/// Fits k-means from `start` on `backend` (tol as scikit-learn's default, at most 100
/// iterations).
fn fit(
    x: &Array2<f64>,
    start: &Array2<f64>,
    backend: Backend,
    chunk_rows: Option<usize>,
) -> FittedKMeans {
    let mut km = KMeans::params(start.nrows())
        .init(KMeansInit::Centers(start.clone()))
        .max_iter(100)
        .backend(backend);
    if let Some(r) = chunk_rows {
        km = km.chunk_rows(r);
    }
    km.fit(x).unwrap()
}

/// Fitted k-means agree: centers measured from the data's mean (so that an offset of 1e4 does
/// not make the comparison loose) within RTOL with floor `FLOOR`·σ, inertia within RTOL, labels
/// equal except at near-ties of the final centers.
#[track_caller]
fn assert_fits_close(what: &str, gpu: &FittedKMeans, cpu: &FittedKMeans, x: &Array2<f64>) {
    let (mean, sd) = (column_means(x), std_devs(x));
    let (cg, cc) = (gpu.cluster_centers(), cpu.cluster_centers());
    for ((c, i), want) in cc.indexed_iter() {
        assert_close(
            &format!("{what}: centers[{c}][{i}] − mean"),
            &[cg[[c, i]] - mean[i]],
            &[want - mean[i]],
            RTOL,
            FLOOR * sd[i],
        );
    }
    assert_close(
        &format!("{what}: inertia"),
        &[gpu.inertia()],
        &[cpu.inertia()],
        RTOL,
        1e-12,
    );
    let as_u32 = |l: &[usize]| l.iter().map(|&v| v as u32).collect::<Vec<_>>();
    let centers: Vec<f64> = cc.iter().copied().collect();
    let flips = near_tie_flips(
        what,
        x,
        &centers,
        &as_u32(gpu.labels().unwrap()),
        &as_u32(cpu.labels().unwrap()),
    );
    if flips == 0 {
        assert_eq!(gpu.n_iter(), cpu.n_iter(), "{what}: n_iter");
        assert_eq!(gpu.converged(), cpu.converged(), "{what}: converged");
    }
}

#[test]
fn fits_match_the_cpu() {
    let Some(gpu) = common::gpu_backend("fits_match_the_cpu") else {
        return;
    };
    for case in cases() {
        // The library path takes `chunk_rows` only (streamed chunks).
        let chunk_rows = case.options.chunk_rows;
        let on_cpu = fit(&case.x, &case.start, Backend::Cpu, chunk_rows);
        let on_gpu = fit(&case.x, &case.start, gpu, chunk_rows);
        let report = on_gpu.backend_report().unwrap();
        assert_eq!(report.backend, Backend::Gpu);
        assert_fits_close(case.name, &on_gpu, &on_cpu, &case.x);
        // predict and score run on the GPU too (the fitted model's backend).
        let labels = on_gpu.predict(&case.x).unwrap();
        assert_eq!(labels.as_slice().unwrap(), on_gpu.labels().unwrap());
        assert_close(
            &format!("{}: score", case.name),
            &[on_gpu.score(&case.x).unwrap()],
            &[-on_gpu.inertia()],
            1e-5,
            1e-12,
        );
    }
}

#[test]
fn empty_clusters_are_relocated_on_the_gpu() {
    let Some(gpu) = common::gpu_backend("empty_clusters_are_relocated_on_the_gpu") else {
        return;
    };
    let doc = fixture();
    // scikit-learn's starts that leave clusters empty (iris, standardized wine), and a center far
    // from synthetic data.
    // (name, data, start, scikit-learn's inertia)
    let mut runs = Vec::new();
    for name in [
        "iris_k3_empty_cluster",
        "iris_k5_two_empty_clusters",
        "wine_std_k4_empty_cluster",
    ] {
        let (x, start) = fixture_case(name);
        let expected = doc["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["expected"]["inertia"].as_f64());
        assert!(expected.is_some(), "{name}");
        runs.push((name.to_string(), x, start, expected));
    }
    let x = blobs(700, 3, 3, 4.0, 0.0, 21);
    let mut start = rows_of(&x, 4, 22);
    start.row_mut(2).fill(1e3);
    runs.push(("blobs with a center at 1e3".into(), x, start, None));
    for (name, x, start, expected) in &runs {
        let on_cpu = fit(x, start, Backend::Cpu, None);
        let on_gpu = fit(x, start, gpu, None);
        assert_fits_close(name, &on_gpu, &on_cpu, x);
        assert!(on_gpu.cluster_centers().iter().all(|v| v.is_finite()));
        if let Some(e) = expected {
            // scikit-learn's own answer (the CPU meets it to 1e-6 in tests/kmeans.rs).
            assert_close(
                &format!("{name}: inertia vs scikit-learn"),
                &[on_gpu.inertia()],
                &[*e],
                RTOL,
                1e-12,
            );
        }
        // The first assignment leaves a cluster empty, and the relocation picks the same points
        // (the farthest by distance, rows breaking ties) on both engines.
        let data = Dataset::from_array(x);
        let k = start.nrows();
        let centers: Vec<f64> = start.iter().copied().collect();
        let mut cpu = CpuKMeansEngine::new(&data, EngineOptions::default(), String::new());
        let mut gpu_e = gpu_kmeans(&data, GpuEngineOptions::default());
        let st = gpu_e.assign_and_sum(&centers, k).unwrap();
        cpu.assign_and_sum(&centers, k).unwrap();
        assert!(st.counts.contains(&0.0), "{name}: {:?}", st.counts);
        let (fc, fg) = (cpu.farthest(5).unwrap(), gpu_e.farthest(5).unwrap());
        for (c, g) in fc.iter().zip(&fg) {
            if c.index != g.index {
                // Allowed only where the distances are equal within f32 rounding.
                assert!(
                    (c.sq_distance - g.sq_distance).abs() <= 1e-5 * c.sq_distance,
                    "{name}: farthest {fc:?} vs {fg:?}"
                );
            } else {
                assert_eq!(c.label, g.label, "{name}");
                assert_close(
                    &format!("{name}: farthest distance"),
                    &[g.sq_distance],
                    &[c.sq_distance],
                    1e-5,
                    1e-9,
                );
            }
        }
        let desc = fg.windows(2).all(|w| w[0].sq_distance >= w[1].sq_distance);
        assert!(desc, "{name}: {fg:?}");
    }
}

#[test]
fn exact_ties_go_to_the_lowest_index() {
    let Some(_) = common::gpu_backend("exact_ties_go_to_the_lowest_index") else {
        return;
    };
    // An 8×8 integer grid (mean 3.5, 3.5): every coordinate and distance is exact in f32 as in
    // f64, so ties are real ties on both engines. Centers 0 and 3 coincide (every point of theirs
    // is a tie: all go to 0, 3 stays empty); the grid's points on the bisector of centers 1 and
    // 2 are ties too (they go to 1).
    let x = Array2::from_shape_fn((64, 2), |(r, j)| if j == 0 { r / 8 } else { r % 8 } as f64);
    let data = Dataset::from_array(&x);
    let centers = [1.0, 1.0, 5.0, 2.0, 5.0, 6.0, 1.0, 1.0];
    let mut cpu = CpuKMeansEngine::new(&data, EngineOptions::default(), String::new());
    let mut gpu = gpu_kmeans(&data, GpuEngineOptions::default());
    let want = cpu.assign_and_sum(&centers, 4).unwrap();
    let got = gpu.assign_and_sum(&centers, 4).unwrap();
    let (mut lc, mut lg) = (vec![0u32; 64], vec![0u32; 64]);
    cpu.labels(&mut lc).unwrap();
    gpu.labels(&mut lg).unwrap();
    assert_eq!(lg, lc);
    // Row 8·5 + 4 = (5, 4) is 2 from both (5, 2) and (5, 6): cluster 1.
    assert_eq!(lg[44], 1);
    assert_eq!(got.counts, want.counts);
    assert_eq!(got.counts[3], 0.0);
    assert_eq!(got.inertia, want.inertia);
    assert_eq!(got.sums, want.sums);
    // The farthest points: many equal distances, ordered by row on both engines.
    assert_eq!(gpu.farthest(10).unwrap(), cpu.farthest(10).unwrap());
}

#[test]
fn the_engine_takes_any_k_and_checks_its_input() {
    let Some(_) = common::gpu_backend("the_engine_takes_any_k_and_checks_its_input") else {
        return;
    };
    let x = blobs(300, 2, 3, 4.0, 0.0, 31);
    let data = Dataset::from_array(&x);
    let mut gpu = gpu_kmeans(&data, GpuEngineOptions::default());
    let mut labels = vec![0u32; 300];
    assert!(matches!(
        gpu.labels(&mut labels),
        Err(emgpu::Error::InvalidParameter(_))
    ));
    assert!(gpu.farthest(1).is_err());
    assert!(gpu.assign_and_sum(&[0.0; 3], 1).is_err());
    assert!(gpu.assign_and_sum(&[], 0).is_err());
    assert!(gpu.assign_and_sum(&[f64::NAN, 0.0], 1).is_err());
    // K changes from call to call (restarts, model selection): every K is right.
    let mut cpu = CpuKMeansEngine::new(&data, EngineOptions::default(), String::new());
    let sd = std_devs(&x);
    for k in [3, 1, 7, 3] {
        let centers: Vec<f64> = rows_of(&x, k, k as u64).iter().copied().collect();
        let got = gpu.assign_and_sum(&centers, k).unwrap();
        cpu.assign_and_sum(&centers, k).unwrap();
        let mut lc = vec![0u32; 300];
        gpu.labels(&mut labels).unwrap();
        cpu.labels(&mut lc).unwrap();
        assert_eq!(near_tie_flips("k change", &x, &centers, &labels, &lc), 0);
        let (want, sq) = stats_of_labels(&x, &centers, &labels, k);
        assert_stats_close(&format!("k = {k}"), &got, &want, &sq, &sd);
    }
    assert!(gpu.labels(&mut [0u32; 3]).is_err());
    assert_eq!(gpu.report().backend, Backend::Gpu);
}

#[test]
fn auto_uses_the_cpu_for_kmeans_on_a_software_adapter() {
    let Some(_) = common::gpu_backend("auto_uses_the_cpu_for_kmeans_on_a_software_adapter") else {
        return;
    };
    // Enough values (AUTO_MIN_GPU_VALUES) for `Auto` to probe the adapters.
    let x = blobs(emgpu::device::AUTO_MIN_GPU_VALUES / 2, 2, 2, 3.0, 0.0, 41);
    let data = Dataset::from_array(&x);
    let engine = kmeans_engine(Backend::Auto, &data, EngineOptions::default()).unwrap();
    let report = engine.report();
    match auto_choice() {
        AutoChoice::Cpu { reason } => {
            assert_eq!(report.backend, Backend::Cpu);
            assert_eq!(report.reason, reason);
        }
        AutoChoice::Gpu(ctx) => {
            assert_eq!(report.backend, Backend::Gpu);
            assert!(
                report.reason.contains(&ctx.adapter_info().name),
                "{}",
                report.reason
            );
        }
    }
    let engine = kmeans_engine(Backend::Gpu, &data, EngineOptions::default()).unwrap();
    assert_eq!(engine.report().backend, Backend::Gpu);
}

/// Three well-separated round groups in 2-D of unequal sizes.
fn three_groups(seed: u64) -> Array2<f64> {
    let centers = [[0.0, 0.0], [14.0, 0.0], [3.0, 12.0]];
    blobs_around(&centers, &[150, 100, 60], &[1.0; 3], seed)
        .unwrap()
        .0
}

/// Parameters agree: weights within RTOL (floor 1e-6), means from the data's mean within RTOL
/// (floor `FLOOR`·σ), covariances within RTOL (floor `FLOOR`·σ_i·σ_j).
#[track_caller]
fn assert_params_close(what: &str, gpu: &GmmParams, cpu: &GmmParams, x: &Array2<f64>) {
    let (mean, sd) = (column_means(x), std_devs(x));
    let d = x.ncols();
    assert_close(
        &format!("{what}: weights"),
        gpu.weights(),
        cpu.weights(),
        RTOL,
        1e-6,
    );
    let rel =
        |v: &[f64]| -> Vec<f64> { v.iter().enumerate().map(|(e, m)| m - mean[e % d]).collect() };
    let mut floors = vec![0.0; cpu.means().len()];
    for (e, f) in floors.iter_mut().enumerate() {
        *f = FLOOR * sd[e % d];
    }
    for (e, (g, c)) in rel(gpu.means()).iter().zip(rel(cpu.means())).enumerate() {
        assert_close(&format!("{what}: means[{e}]"), &[*g], &[c], RTOL, floors[e]);
    }
    let scale = sd.iter().fold(0.0f64, |a, s| a.max(*s));
    assert_close(
        &format!("{what}: covariances"),
        gpu.covariances(),
        cpu.covariances(),
        RTOL,
        FLOOR * scale * scale,
    );
}

#[test]
fn kmeans_init_on_the_gpu_matches_the_cpus_init() {
    let Some(gpu) = common::gpu_backend("kmeans_init_on_the_gpu_matches_the_cpus_init") else {
        return;
    };
    let x = three_groups(51);
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let gm = GaussianMixture::params(3)
            .covariance(cov)
            .seed(5)
            .tol(0.0)
            .max_iter(8);
        let init_cpu = gm.clone().backend(Backend::Cpu).initial_params(&x).unwrap();
        let init_gpu = gm.clone().backend(gpu).initial_params(&x).unwrap();
        assert_params_close(&format!("{cov} initial"), &init_gpu, &init_cpu, &x);
        // The whole fit with k-means on the GPU, against the GPU fit from the CPU's k-means.
        let with_kmeans = gm.clone().backend(gpu).fit(&x).unwrap();
        let from_cpu_init = gm
            .clone()
            .backend(gpu)
            .init(Init::Params(init_cpu))
            .fit(&x)
            .unwrap();
        assert_eq!(with_kmeans.backend_report().unwrap().backend, Backend::Gpu);
        assert_params_close(
            &format!("{cov} fitted"),
            with_kmeans.params(),
            from_cpu_init.params(),
            &x,
        );
        assert_close(
            &format!("{cov} lower bound trace"),
            with_kmeans.lower_bound_trace(),
            from_cpu_init.lower_bound_trace(),
            RTOL,
            FLOOR,
        );
    }
}

#[test]
fn the_mixture_engine_shares_its_data_with_its_kmeans_engine() {
    let Some(_) = common::gpu_backend("the_mixture_engine_shares_its_data_with_its_kmeans_engine")
    else {
        return;
    };
    let x = blobs(900, 3, 3, 4.0, 100.0, 61);
    let data = Dataset::from_array(&x);
    for options in [
        GpuEngineOptions::default(),
        GpuEngineOptions {
            chunk_rows: Some(250),
            resident: Some(false),
            ..Default::default()
        },
    ] {
        let ctx = common::shared_context().unwrap();
        let mut gmm =
            GpuGmmEngine::new(ctx, &data, CovarianceType::Full, 3, options, String::new()).unwrap();
        let mut own = gpu_kmeans(&data, options);
        let centers: Vec<f64> = rows_of(&x, 3, 62).iter().copied().collect();
        let want = own.assign_and_sum(&centers, 3).unwrap();
        let km = gmm
            .kmeans_engine()
            .expect("the GPU engine offers a k-means engine");
        assert_eq!(km.report().backend, Backend::Gpu);
        // Same uploaded data (same centre, same chunks), same kernel: the same numbers.
        let got = km.assign_and_sum(&centers, 3).unwrap();
        assert_eq!(got, want);
        let (mut a, mut b) = (vec![0u32; 900], vec![0u32; 900]);
        km.labels(&mut a).unwrap();
        own.labels(&mut b).unwrap();
        assert_eq!(a, b);
    }
}

/// Simple parameters of `k` components: means at rows of `x`, unit covariances.
fn unit_params(x: &Array2<f64>, k: usize, cov: CovarianceType) -> GmmParams {
    let d = x.ncols();
    let means: Vec<f64> = rows_of(x, k, 71 + k as u64).iter().copied().collect();
    let covariances = match cov {
        CovarianceType::Full => (0..k * d * d)
            .map(|e| {
                if (e % (d * d)).is_multiple_of(d + 1) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect(),
        CovarianceType::Tied => (0..d * d)
            .map(|e| if e % (d + 1) == 0 { 1.0 } else { 0.0 })
            .collect(),
        CovarianceType::Diag => vec![1.0; k * d],
        CovarianceType::Spherical => vec![1.0; k],
    };
    GmmParams::new(cov, vec![1.0 / k as f64; k], means, covariances, d).unwrap()
}

#[test]
fn the_mixture_engine_takes_any_k_up_to_its_own() {
    let Some(_) = common::gpu_backend("the_mixture_engine_takes_any_k_up_to_its_own") else {
        return;
    };
    let x = blobs(700, 3, 4, 3.0, 0.0, 81);
    let data = Dataset::from_array(&x);
    let n = 700.0;
    for cov in [CovarianceType::Full, CovarianceType::Spherical] {
        let ctx = common::shared_context().unwrap();
        let mut gpu = GpuGmmEngine::new(
            ctx,
            &data,
            cov,
            5,
            GpuEngineOptions::default(),
            String::new(),
        )
        .unwrap();
        let mut cpu = CpuEngine::new(&data, EngineOptions::default(), String::new());
        for k in [5, 2, 1, 4, 5] {
            let p = unit_params(&x, k, cov).prepare().unwrap();
            let (got, want) = (gpu.e_step(&p).unwrap(), cpu.e_step(&p).unwrap());
            let what = format!("{cov} k = {k}");
            assert_eq!(got.n_components, k, "{what}");
            assert_close(
                &format!("{what}: log-likelihood"),
                &[got.log_likelihood],
                &[want.log_likelihood],
                RTOL,
                FLOOR * n,
            );
            assert_close(&format!("{what}: s0"), &got.s0, &want.s0, RTOL, FLOOR * n);
            assert_close(&format!("{what}: s1"), &got.s1, &want.s1, RTOL, 1e-3 * n);
            assert_close(&format!("{what}: s2"), &got.s2, &want.s2, RTOL, 1e-3 * n);
        }
        // More components than the engine was built for: refused.
        let p = unit_params(&x, 6, cov).prepare().unwrap();
        assert!(matches!(
            gpu.e_step(&p),
            Err(emgpu::Error::InvalidParameter(_))
        ));
    }
}

#[test]
fn restarts_on_the_gpu_match_the_cpu() {
    let Some(gpu) = common::gpu_backend("restarts_on_the_gpu_match_the_cpu") else {
        return;
    };
    let x = three_groups(91);
    for init in [Init::Kmeans, Init::RandomFromData] {
        let gm = GaussianMixture::params(3)
            .n_init(3)
            .seed(7)
            .tol(0.0)
            .max_iter(6)
            .init(init.clone());
        let on_cpu = gm.clone().backend(Backend::Cpu).fit(&x).unwrap();
        let on_gpu = gm.clone().backend(gpu).fit(&x).unwrap();
        let what = format!("{init:?}");
        assert_eq!(on_gpu.init_lower_bounds().len(), 3, "{what}");
        assert_close(
            &format!("{what}: lower bound of every restart"),
            on_gpu.init_lower_bounds(),
            on_cpu.init_lower_bounds(),
            RTOL,
            FLOOR,
        );
        // The kept restart has the highest lower bound.
        let best = on_gpu
            .init_lower_bounds()
            .iter()
            .fold(f64::NEG_INFINITY, |a, b| a.max(*b));
        assert_eq!(on_gpu.lower_bound(), best, "{what}");
        assert_params_close(&what, on_gpu.params(), on_cpu.params(), &x);
    }
}

#[test]
fn select_on_the_gpu_picks_the_cpus_number_of_components() {
    let Some(gpu) = common::gpu_backend("select_on_the_gpu_picks_the_cpus_number_of_components")
    else {
        return;
    };
    let x = three_groups(101);
    let covs = [CovarianceType::Full, CovarianceType::Diag];
    let base = GaussianMixture::params(1).seed(3);
    let on_cpu = select_gmm(
        &x,
        1..=5,
        &covs,
        Criterion::Bic,
        &base.clone().backend(Backend::Cpu),
    )
    .unwrap();
    let on_gpu = select_gmm(&x, 1..=5, &covs, Criterion::Bic, &base.backend(gpu)).unwrap();
    let table: Vec<(usize, CovarianceType, f64, f64)> = on_gpu
        .rows
        .iter()
        .zip(&on_cpu.rows)
        .map(|(g, c)| (g.n_components, g.covariance_type, g.bic, c.bic))
        .collect();
    println!("(K, covariance, BIC on the GPU, on the CPU): {table:?}");
    assert_eq!(on_cpu.best_row().n_components, 3);
    assert_eq!(on_gpu.best, on_cpu.best, "{table:?}");
    assert_eq!(
        on_gpu.best_model().backend_report().unwrap().backend,
        Backend::Gpu
    );
    for (g, c) in on_gpu.rows.iter().zip(&on_cpu.rows) {
        assert_eq!(
            (g.n_components, g.covariance_type),
            (c.n_components, c.covariance_type)
        );
        assert_close(
            &format!("K = {} {}: BIC", g.n_components, g.covariance_type),
            &[g.bic],
            &[c.bic],
            RTOL,
            FLOOR * x.nrows() as f64,
        );
    }
}
