//! Sample weights: a weighted fit is the fit of the rows repeated their (integer) weight's number
//! of times, on both CPU paths and for every model that takes weights; the GPU agrees with the CPU;
//! weighted k-means is scikit-learn's `KMeans.fit(X, sample_weight=W)`.
//!
//! - Statistics (property test over random data and random integer weights 0..=4, zeros
//!   included): the weighted E-step's statistics equal those of the repeated rows, relative 1e-9,
//!   on the reference and blocked CPU paths, all four covariance types; k-means assignment
//!   statistics likewise.
//! - Whole fits from the same initial parameters, `tol = 0`: weights, means, covariances and
//!   `lower_bound` (Gaussian mixtures), centers and inertia (k-means) within 1e-9 relative of the
//!   repeated rows' fit.
//! - GPU against CPU, weighted, within 2e-3 (skipped without an adapter unless
//!   `EMGPU_REQUIRE_GPU=1`).
//! - scikit-learn: `fixtures/sklearn_kmeans_weighted.json` (`scripts/make_weight_fixtures.py`),
//!   centers and inertia to 1e-9 on the CPU (the CPU is f64 as scikit-learn; the difference is the
//!   order of sums), 2e-3 on the GPU.
//! - Bad weights are errors; models without weights refuse weighted data.

mod common;

use common::{GPU_FLOOR, GPU_RTOL, assert_close, flatten, gpu_backend};
use emgpu::device::{CpuPath, EngineOptions};
use emgpu::em::Stats;
use emgpu::models::gmm::{GmmParams, gmm_engine};
use emgpu::models::kmeans::kmeans_engine;
use emgpu::synth::blobs;
use emgpu::{Backend, CovarianceType, Dataset, GaussianMixture, Init, KMeans, KMeansInit};
use ndarray::{Array2, Axis};
use proptest::prelude::*;

/// The rows of `x` repeated `w[i]` times each (weights are integers).
fn repeat_rows(x: &Array2<f64>, w: &[f64]) -> Array2<f64> {
    let idx: Vec<usize> = w
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| std::iter::repeat_n(i, c as usize))
        .collect();
    x.select(Axis(0), &idx)
}

/// Three blobs in `d` dimensions, `n` rows, with integer weights 0..=4 drawn from `seed`.
fn data(n: usize, d: usize, seed: u64) -> (Array2<f64>, Vec<f64>) {
    let centers: Vec<Vec<f64>> = (0..3)
        .map(|c| {
            (0..d)
                .map(|j| (c * 4 + j) as f64 * if j % 2 == 0 { 1.0 } else { -0.5 })
                .collect()
        })
        .collect();
    let sizes = [n / 3, n / 3, n - 2 * (n / 3)];
    let (x, _) = blobs(&centers, &sizes, &[1.0, 0.7, 1.3], seed).unwrap();
    let w = (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed * 97) % 5) as f64)
        .collect();
    (x, w)
}

fn rel_close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_close(what, got, want, rtol, rtol * 1e-3);
}

fn params_flat(p: &GmmParams) -> Vec<f64> {
    p.weights()
        .iter()
        .chain(p.means())
        .chain(p.covariances())
        .copied()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Weighted = repeated rows, statistics of one E-step, both CPU paths, every covariance type.
    #[test]
    fn weighted_statistics_equal_repeated_rows(
        seed in 0u64..1000,
        n in 5usize..120,
        d in 1usize..5,
        weights in proptest::collection::vec(0u32..5, 120),
    ) {
        let (x, _) = data(n, d, seed);
        let mut w: Vec<f64> = weights[..n].iter().map(|&v| v as f64).collect();
        if w.iter().all(|&v| v == 0.0) {
            w[0] = 1.0;
        }
        let rep = repeat_rows(&x, &w);
        let weighted = Dataset::from_array(&x).with_sample_weights(w.clone()).unwrap();
        let repeated = Dataset::from_array(&rep);
        for cov in CovarianceType::ALL {
            let k = 2.min(rep.nrows());
            let init = GaussianMixture::params(k)
                .covariance(cov)
                .init(Init::RandomFromData)
                .seed(seed)
                .backend(Backend::Cpu)
                .initial_params(&rep)
                .unwrap();
            let p = init.prepare().unwrap();
            for path in [CpuPath::Reference, CpuPath::Blocked] {
                let opts = EngineOptions { chunk_rows: Some(7), cpu_path: path };
                let a = gmm_engine(Backend::Cpu, &weighted, cov, k, opts).unwrap().e_step(&p).unwrap();
                let b = gmm_engine(Backend::Cpu, &repeated, cov, k, opts).unwrap().e_step(&p).unwrap();
                rel_close(&format!("{cov} {path}"), &a.to_flat(), &b.to_flat(), 1e-9);
            }
        }
        // k-means assignment statistics.
        let k = 3.min(rep.nrows());
        let centers: Vec<f64> = rep.rows().into_iter().take(k).flatten().copied().collect();
        for path in [CpuPath::Reference, CpuPath::Blocked] {
            let opts = EngineOptions { chunk_rows: Some(5), cpu_path: path };
            let a = kmeans_engine(Backend::Cpu, &weighted, opts).unwrap().assign_and_sum(&centers, k).unwrap();
            let b = kmeans_engine(Backend::Cpu, &repeated, opts).unwrap().assign_and_sum(&centers, k).unwrap();
            rel_close(&format!("k-means {path} counts"), &a.counts, &b.counts, 1e-12);
            rel_close(&format!("k-means {path} sums"), &a.sums, &b.sums, 1e-9);
            rel_close(&format!("k-means {path} inertia"), &[a.inertia, a.n_samples], &[b.inertia, b.n_samples], 1e-9);
        }
    }
}

/// Whole Gaussian-mixture fits from the same initial parameters, `tol = 0`: the weighted fit is
/// the repeated rows' fit (random integer weights, zeros included).
#[test]
fn weighted_gmm_fit_equals_repeated_rows_for_every_covariance_type() {
    for (s, cov) in CovarianceType::ALL.into_iter().enumerate() {
        for seed in [1u64, 2] {
            let (x, w) = data(300, 3, seed * 10 + s as u64);
            let rep = repeat_rows(&x, &w);
            let init = GaussianMixture::params(3)
                .covariance(cov)
                .seed(seed)
                .backend(Backend::Cpu)
                .initial_params(&rep)
                .unwrap();
            let gm = GaussianMixture::params(3)
                .covariance(cov)
                .init(Init::Params(init))
                .tol(0.0)
                .max_iter(15)
                .backend(Backend::Cpu);
            let a = gm.fit_weighted(&x, &w).unwrap();
            let b = gm.fit(&rep).unwrap();
            let what = format!("{cov} seed {seed}");
            assert_eq!(a.n_iter(), 15, "{what}");
            // Criteria and score on the weighted data are the repeated rows'.
            let weighted = Dataset::from_array(&x)
                .with_sample_weights(w.clone())
                .unwrap();
            rel_close(
                &format!("{what} bic, aic, score"),
                &[
                    a.bic(&weighted).unwrap(),
                    a.aic(&weighted).unwrap(),
                    a.score(&weighted).unwrap(),
                ],
                &[
                    b.bic(&rep).unwrap(),
                    b.aic(&rep).unwrap(),
                    b.score(&rep).unwrap(),
                ],
                1e-9,
            );
            rel_close(
                &what,
                &params_flat(a.params()),
                &params_flat(b.params()),
                1e-9,
            );
            rel_close(
                &format!("{what} lower bound"),
                a.lower_bound_trace(),
                b.lower_bound_trace(),
                1e-9,
            );
        }
    }
}

/// The default initializations are weighted too, and depend only on the weights' ratios: weights
/// `w` and `3·w` give the same fit (k-means++ draws `∝ w·D²`, the k-means start and the EM sums
/// are weighted means), the k-means inertia three times larger.
#[test]
fn scaled_weights_give_the_same_fit_from_the_default_initializations() {
    let (x, w) = data(240, 2, 5);
    let w3: Vec<f64> = w.iter().map(|v| 3.0 * v).collect();
    for cov in CovarianceType::ALL {
        let gm = GaussianMixture::params(3)
            .covariance(cov)
            .seed(3)
            .backend(Backend::Cpu);
        let a = gm.fit_weighted(&x, &w3).unwrap();
        let b = gm.fit_weighted(&x, &w).unwrap();
        rel_close(
            &format!("{cov}"),
            &params_flat(a.params()),
            &params_flat(b.params()),
            1e-9,
        );
        assert!((a.lower_bound() - b.lower_bound()).abs() < 1e-9 * b.lower_bound().abs());
    }
    for init in [KMeansInit::KMeansPlusPlus, KMeansInit::Random] {
        let km = KMeans::params(3).init(init).seed(4).backend(Backend::Cpu);
        let a = km.fit_weighted(&x, &w3).unwrap();
        let b = km.fit_weighted(&x, &w).unwrap();
        rel_close(
            "k-means",
            &flatten_arr(&a.cluster_centers()),
            &flatten_arr(&b.cluster_centers()),
            1e-9,
        );
        assert!((a.inertia() - 3.0 * b.inertia()).abs() < 1e-9 * b.inertia());
    }
}

fn flatten_arr(a: &Array2<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}

/// Whole k-means fits from the same centers, `tol = 0`: weighted = repeated rows.
#[test]
fn weighted_kmeans_fit_equals_repeated_rows() {
    for seed in [3u64, 4, 5] {
        let (x, w) = data(400, 4, seed);
        let rep = repeat_rows(&x, &w);
        let centers = x.select(Axis(0), &[1, 150, 300]);
        let km = KMeans::params(3)
            .init(KMeansInit::Centers(centers))
            .tol(0.0)
            .max_iter(6)
            .backend(Backend::Cpu);
        let a = km.fit_weighted(&x, &w).unwrap();
        let b = km.fit(&rep).unwrap();
        rel_close(
            &format!("seed {seed}"),
            &flatten_arr(&a.cluster_centers()),
            &flatten_arr(&b.cluster_centers()),
            1e-9,
        );
        rel_close(
            &format!("seed {seed} inertia"),
            &[a.inertia()],
            &[b.inertia()],
            1e-9,
        );
    }
}

/// The fixture cases of scikit-learn's weighted `KMeans`, on `backend`, within `rtol`.
fn sklearn_cases(backend: Backend, rtol: f64) {
    let text = include_str!("fixtures/sklearn_kmeans_weighted.json");
    let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rows = case["x"].as_array().unwrap();
        let d = rows[0].as_array().unwrap().len();
        let x = Array2::from_shape_vec((rows.len(), d), flatten(&case["x"])).unwrap();
        let w = flatten(&case["weights"]);
        let init = flatten(&case["init"]);
        let k = init.len() / d;
        let init = Array2::from_shape_vec((k, d), init).unwrap();
        let max_iter = case["max_iter"].as_u64().unwrap() as usize;
        let fitted = KMeans::params(k)
            .init(KMeansInit::Centers(init))
            .tol(0.0)
            .max_iter(max_iter)
            .backend(backend)
            .fit_weighted(&x, &w)
            .unwrap();
        let e = &case["expected"];
        let what = format!("{name} ({backend:?})");
        let floor = if backend == Backend::Gpu {
            GPU_FLOOR
        } else {
            0.0
        };
        assert_close(
            &format!("{what} centers"),
            &flatten_arr(&fitted.cluster_centers()),
            &flatten(&e["cluster_centers"]),
            rtol,
            floor,
        );
        assert_close(
            &format!("{what} inertia"),
            &[fitted.inertia()],
            &[e["inertia"].as_f64().unwrap()],
            rtol,
            0.0,
        );
        assert_eq!(
            fitted.n_iter() as u64,
            e["n_iter"].as_u64().unwrap(),
            "{what}"
        );
    }
}

#[test]
fn weighted_kmeans_matches_scikit_learn_on_the_cpu() {
    sklearn_cases(Backend::Cpu, 1e-9);
}

#[test]
fn weighted_kmeans_matches_scikit_learn_on_the_gpu() {
    if let Some(backend) = gpu_backend("weighted_kmeans_matches_scikit_learn_on_the_gpu") {
        sklearn_cases(backend, GPU_RTOL);
    }
}

/// GPU against CPU, weighted: one E-step's statistics and whole fits, every covariance type, and
/// k-means; with weights of a few rows forced to 0.
#[test]
fn weighted_gpu_matches_cpu() {
    let Some(gpu) = gpu_backend("weighted_gpu_matches_cpu") else {
        return;
    };
    let (x, mut w) = data(1000, 3, 9);
    for (i, v) in w.iter_mut().enumerate() {
        // Multiples of 1/4: every sum of weights is exact, whatever its order.
        *v = *v * 0.75 + (i % 3) as f64 * 0.25;
    }
    let weighted = Dataset::from_array(&x)
        .with_sample_weights(w.clone())
        .unwrap();
    for cov in CovarianceType::ALL {
        let init = GaussianMixture::params(3)
            .covariance(cov)
            .seed(1)
            .backend(Backend::Cpu)
            .initial_params(&weighted)
            .unwrap();
        let p = init.prepare().unwrap();
        let opts = EngineOptions::default();
        let cpu = gmm_engine(Backend::Cpu, &weighted, cov, 3, opts)
            .unwrap()
            .e_step(&p)
            .unwrap();
        let g = gmm_engine(gpu, &weighted, cov, 3, opts)
            .unwrap()
            .e_step(&p)
            .unwrap();
        let sd = x.std_axis(Axis(0), 0.0).to_vec();
        common::assert_gmm_stats_close(&format!("{cov} weighted"), &g, &cpu, &sd);
        assert_close(
            &format!("{cov} weighted log-likelihood"),
            &[g.log_likelihood],
            &[cpu.log_likelihood],
            GPU_RTOL,
            0.0,
        );
        let gm = GaussianMixture::params(3)
            .covariance(cov)
            .init(Init::Params(init))
            .tol(0.0)
            .max_iter(8);
        let a = gm.clone().backend(gpu).fit(&weighted).unwrap();
        let b = gm.backend(Backend::Cpu).fit(&weighted).unwrap();
        assert_close(
            &format!("{cov} fit"),
            &params_flat(a.params()),
            &params_flat(b.params()),
            GPU_RTOL,
            GPU_FLOOR,
        );
        assert_close(
            &format!("{cov} lower bound"),
            &[a.lower_bound()],
            &[b.lower_bound()],
            GPU_RTOL,
            0.0,
        );
    }
    let km = KMeans::params(3)
        .init(KMeansInit::Centers(x.select(Axis(0), &[0, 400, 800])))
        .tol(0.0)
        .max_iter(10);
    let a = km.clone().backend(gpu).fit(&weighted).unwrap();
    let b = km.backend(Backend::Cpu).fit(&weighted).unwrap();
    assert_close(
        "k-means centers",
        &flatten_arr(&a.cluster_centers()),
        &flatten_arr(&b.cluster_centers()),
        GPU_RTOL,
        GPU_FLOOR,
    );
    assert_close(
        "k-means inertia",
        &[a.inertia()],
        &[b.inertia()],
        GPU_RTOL,
        0.0,
    );
}

#[test]
fn bad_weights_are_errors() {
    let x = Array2::from_shape_fn((4, 2), |(i, j)| (i * 2 + j) as f64);
    let ds = || Dataset::from_array(&x);
    for (w, needle) in [
        (vec![1.0, -1.0, 1.0, 1.0], "≥ 0"),
        (vec![1.0, f64::NAN, 1.0, 1.0], "finite"),
        (vec![1.0, f64::INFINITY, 1.0, 1.0], "finite"),
        (vec![0.0; 4], "all zero"),
        (vec![1.0; 3], "3 values"),
    ] {
        let e = ds().with_sample_weights(w.clone()).unwrap_err().to_string();
        assert!(e.contains(needle), "{w:?}: {e}");
    }
    let e = GaussianMixture::params(1)
        .fit_weighted(&x, &[1.0, 1.0][..])
        .unwrap_err();
    assert!(e.to_string().contains("4 rows"), "{e}");
    // Models without sample weights refuse weighted data.
    let weighted = ds().with_sample_weights(vec![1.0; 4]).unwrap();
    let e = emgpu::models::hmm::GaussianHmm::params(1)
        .backend(Backend::Cpu)
        .fit(&weighted)
        .unwrap_err();
    assert!(e.to_string().contains("sample weights"), "{e}");
}

/// A weight column of a source: the other columns are the features.
#[test]
fn a_weight_column_of_a_source_weights_the_other_columns() {
    let (x, w) = data(90, 2, 11);
    let mut with_col = Array2::zeros((90, 3));
    with_col.column_mut(0).assign(&x.column(0));
    with_col
        .column_mut(1)
        .assign(&ndarray::Array1::from(w.clone()));
    with_col.column_mut(2).assign(&x.column(1));
    let flat: Vec<f64> = with_col.iter().copied().collect();
    let source = emgpu::data::SliceSource::new(&flat, 90, 3).unwrap();
    let ds = Dataset::with_weight_column(source, 1).unwrap();
    assert_eq!(ds.n_features(), 2);
    assert_eq!(ds.sample_weights().unwrap(), &w[..]);
    assert_eq!(
        ds.to_vec_f64().unwrap(),
        x.iter().copied().collect::<Vec<_>>()
    );
    let km = KMeans::params(3).seed(2).backend(Backend::Cpu);
    let a = km.fit(&ds).unwrap();
    let b = km.fit_weighted(&x, &w).unwrap();
    assert_eq!(a.inertia(), b.inertia());
}
