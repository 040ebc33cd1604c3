//! The blocked CPU E-step (quadratic features, GEMM-shaped) against the point-by-point reference.
//!
//! Tolerance: every statistic must agree to `1e-9` relative, with an absolute floor of `1e-9`
//! times the natural scale of the quantity (for `S1_k`: `√(S0_k · tr S2_k)`, which bounds
//! `|Σ r (x − μ)_j|` by Cauchy–Schwarz; for `S2_k`: `max_j S2_k[j][j]`, which bounds the
//! off-diagonal entries; for `S0_k` and the log-likelihood: the sum of their absolute terms, here
//! `N`). Why 1e-9: the blocked path differs from the reference by its summation order
//! (~`eps·√N`) and by the cancellation of its quadratic form, at most ~`eps · CANCELLATION_LIMIT`
//! = 2e-12 relative (components beyond the limit take the shifted path); 1e-9 leaves a margin of
//! several hundred for the constants, and is still a thousand times tighter than the 1e-6 at which
//! the CPU must match scikit-learn.

mod common;

use emgpu::device::{Backend, CpuPath, EngineOptions};
use emgpu::models::gmm::cpu::blocked::{
    chunk_stats_blocked, chunk_stats_per_component, components_on_shifted_path, e_step_blocked,
};
use emgpu::models::gmm::cpu::e_step_reference;
use emgpu::models::gmm::gmm_engine;
use emgpu::models::gmm::{GmmStats, Prepared};
use emgpu::synth::Workload;
use emgpu::{CovarianceType, Dataset, GaussianMixture, GmmParams, Init};

const RTOL: f64 = 1e-9;

/// Data drawn from a random mixture (see `emgpu::bench`), as f64, with its true parameters.
fn mixture(n: usize, d: usize, k: usize, cov: CovarianceType, seed: u64) -> (Vec<f64>, GmmParams) {
    let synth = Workload {
        n,
        d,
        k,
        covariance_type: cov,
        seed,
        spread: 3.0,
    }
    .generate()
    .unwrap();
    (synth.x.iter().map(|&v| v as f64).collect(), synth.truth)
}

#[track_caller]
fn check(what: &str, got: f64, want: f64, scale: f64) {
    let allowed = RTOL * (want.abs() + scale);
    assert!(
        (got - want).abs() <= allowed && got.is_finite() == want.is_finite(),
        "{what}: blocked {got:e}, reference {want:e} (|diff| {:.3e} > allowed {allowed:.3e})",
        (got - want).abs()
    );
}

#[track_caller]
fn assert_stats_close(case: &str, got: &GmmStats, want: &GmmStats) {
    let (k, d) = (want.n_components, want.n_features);
    assert_eq!(got.n_samples, want.n_samples, "{case}: n_samples");
    assert_eq!(got.shift, want.shift, "{case}: shifts");
    let n = want.n_samples;
    check(
        &format!("{case}: log-likelihood"),
        got.log_likelihood,
        want.log_likelihood,
        0.0,
    );
    let full = want.has_full_s2();
    for c in 0..k {
        check(
            &format!("{case}: S0[{c}]"),
            got.s0[c],
            want.s0[c],
            n * 1e-300,
        );
        let diag = |j: usize| {
            if full {
                want.s2[c * d * d + j * d + j]
            } else {
                want.s2[c * d + j]
            }
        };
        let trace: f64 = (0..d).map(diag).sum();
        let max_diag = (0..d).map(diag).fold(0.0, f64::max);
        let s1_scale = (want.s0[c] * trace).sqrt();
        for j in 0..d {
            check(
                &format!("{case}: S1[{c}][{j}]"),
                got.s1[c * d + j],
                want.s1[c * d + j],
                s1_scale,
            );
        }
        let len = if full { d * d } else { d };
        for i in 0..len {
            check(
                &format!("{case}: S2[{c}][{i}]"),
                got.s2[c * len + i],
                want.s2[c * len + i],
                max_diag,
            );
        }
    }
}

fn engine_stats(data: &Dataset, p: &Prepared, path: CpuPath, chunk: usize) -> GmmStats {
    let opts = EngineOptions {
        chunk_rows: Some(chunk),
        cpu_path: path,
    };
    let mut e = gmm_engine(Backend::Cpu, data, p.covariance_type, p.n_components, opts).unwrap();
    e.e_step(p).unwrap()
}

/// Blocked (through the engine, chunks of `chunk` rows) against the reference.
fn compare(case: &str, x: &[f64], d: usize, p: &Prepared, chunk: usize) {
    let n = x.len() / d;
    let data = Dataset::from_slice(x, n, d).unwrap();
    let want = e_step_reference(&data, p, 4096).unwrap();
    let got = engine_stats(&data, p, CpuPath::Blocked, chunk);
    assert_stats_close(case, &got, &want);
    // The single-threaded entry point computes the same.
    let single = chunk_stats_blocked(x, p, chunk);
    assert_stats_close(&format!("{case} (chunk_stats_blocked)"), &single, &want);
}

#[test]
fn blocked_statistics_match_the_reference_for_every_covariance_type() {
    for (i, cov) in CovarianceType::ALL.into_iter().enumerate() {
        let (x, truth) = mixture(3_000, 5, 4, cov, 10 + i as u64);
        let p = truth.prepare().unwrap();
        assert!(components_on_shifted_path(&p).is_empty(), "{cov}");
        // 3000 rows in chunks of 128: 23 full chunks and one of 56, two blocks.
        compare(&format!("{cov}"), &x, 5, &p, 128);
        // Also from parameters far from the truth (one shared diagonal start).
        let (x2, _) = mixture(500, 5, 4, cov, 20 + i as u64);
        let init = Workload {
            n: 500,
            d: 5,
            k: 4,
            covariance_type: cov,
            seed: 20 + i as u64,
            spread: 3.0,
        }
        .generate()
        .unwrap()
        .init;
        compare(
            &format!("{cov} (init)"),
            &x2,
            5,
            &init.prepare().unwrap(),
            512,
        );
    }
}

#[test]
fn per_component_shape_matches_the_reference() {
    // The other GEMM shape (every component shifted), used for the tight clusters: D = 16 as in
    // the benchmarks, and D = 1.
    for (i, cov) in CovarianceType::ALL.into_iter().enumerate() {
        for d in [16, 1] {
            let (x, truth) = mixture(1_100, d, 5, cov, 30 + i as u64);
            let p = truth.prepare().unwrap();
            let data = Dataset::from_slice(&x, 1_100, d).unwrap();
            let want = e_step_reference(&data, &p, 4096).unwrap();
            let got = chunk_stats_per_component(&x, &p, 256);
            assert_stats_close(&format!("{cov} D={d} per component"), &got, &want);
        }
    }
}

#[test]
fn edge_shapes() {
    for cov in CovarianceType::ALL {
        // N = 1, K = 1.
        let (x, truth) = mixture(1, 3, 1, cov, 1);
        compare(&format!("{cov} N=1"), &x, 3, &truth.prepare().unwrap(), 512);
        // N not a multiple of the chunk, and N smaller than one chunk.
        let (x, truth) = mixture(1_001, 4, 3, cov, 2);
        let p = truth.prepare().unwrap();
        compare(&format!("{cov} N=1001 chunk 64"), &x, 4, &p, 64);
        compare(&format!("{cov} N=1001 chunk 5000"), &x, 4, &p, 5_000);
        compare(&format!("{cov} N=1001 chunk 1"), &x, 4, &p, 1);
        // K = 1.
        let (x, truth) = mixture(700, 4, 1, cov, 3);
        compare(&format!("{cov} K=1"), &x, 4, &truth.prepare().unwrap(), 100);
        // D = 1.
        let (x, truth) = mixture(700, 1, 3, cov, 4);
        compare(&format!("{cov} D=1"), &x, 1, &truth.prepare().unwrap(), 100);
        // D = 40 (more features than the 16 of the benchmarks; F = 861 for full).
        let (x, truth) = mixture(600, 40, 3, cov, 5);
        compare(
            &format!("{cov} D=40"),
            &x,
            40,
            &truth.prepare().unwrap(),
            256,
        );
        // D = 70: past MAX_QUADRATIC_FEATURES_D, full and tied run on the per-component shape.
        let (x, truth) = mixture(300, 70, 2, cov, 15);
        let p = truth.prepare().unwrap();
        let shifted = components_on_shifted_path(&p).len();
        match cov {
            CovarianceType::Full | CovarianceType::Tied => assert_eq!(shifted, 2, "{cov} D=70"),
            _ => assert_eq!(shifted, 0, "{cov} D=70"),
        }
        compare(&format!("{cov} D=70"), &x, 70, &p, 128);
        // K = N.
        let (x, truth) = mixture(6, 2, 6, cov, 6);
        compare(&format!("{cov} K=N"), &x, 2, &truth.prepare().unwrap(), 4);
    }
}

#[test]
fn data_far_from_the_origin() {
    for cov in CovarianceType::ALL {
        let (x, truth) = mixture(2_000, 4, 3, cov, 7);
        let x: Vec<f64> = x.iter().map(|v| v + 1e4).collect();
        let means = truth.means().iter().map(|m| m + 1e4).collect();
        let shifted = GmmParams::new(
            cov,
            truth.weights().to_vec(),
            means,
            truth.covariances().to_vec(),
            4,
        )
        .unwrap();
        let p = shifted.prepare().unwrap();
        // Centring on the mixture's mean removes the offset: no component needs the shifted path.
        assert!(components_on_shifted_path(&p).is_empty(), "{cov}");
        compare(&format!("{cov} offset 1e4"), &x, 4, &p, 256);
    }
}

/// Two broad components near the origin and one with σ = 1e-3 at distance 10.
fn tight_cluster_case(cov: CovarianceType) -> (Vec<f64>, GmmParams) {
    let (d, n) = (3, 1_500);
    let (broad, _) = mixture(n, d, 2, CovarianceType::Spherical, 8);
    let mut x = broad;
    let (tight, _) = mixture(500, d, 1, CovarianceType::Spherical, 9);
    // `mixture` draws variances in [0.5, 2]: rescale the tight points to σ ≈ 1e-3 about (10, 0, 0).
    let tmean: Vec<f64> = (0..d)
        .map(|j| tight.iter().skip(j).step_by(d).sum::<f64>() / 500.0)
        .collect();
    for row in tight.chunks_exact(d) {
        for j in 0..d {
            let centre = if j == 0 { 10.0 } else { 0.0 };
            x.push(centre + (row[j] - tmean[j]) * 1e-3);
        }
    }
    let means = vec![-0.5, 0.0, 0.0, 0.5, 0.2, 0.0, 10.0, 0.0, 0.0];
    let (big, small) = (1.5, 1e-6);
    let covariances = match cov {
        CovarianceType::Full => {
            let mut c = vec![0.0; 3 * d * d];
            for (k, v) in [big, big, small].into_iter().enumerate() {
                for j in 0..d {
                    c[k * d * d + j * d + j] = v;
                }
                // Some correlation in the tight component too.
                if k == 2 {
                    c[k * d * d + 1] = 0.3 * v;
                    c[k * d * d + d] = 0.3 * v;
                }
            }
            c
        }
        CovarianceType::Diag => [big, big, small]
            .into_iter()
            .flat_map(|v| vec![v; d])
            .collect(),
        CovarianceType::Spherical => vec![big, big, small],
        CovarianceType::Tied => unreachable!("tied has one covariance for all components"),
    };
    let p = GmmParams::new(cov, vec![0.4, 0.35, 0.25], means, covariances, d).unwrap();
    (x, p)
}

#[test]
fn tight_cluster_far_from_the_others_takes_the_shifted_path() {
    for cov in [
        CovarianceType::Full,
        CovarianceType::Diag,
        CovarianceType::Spherical,
    ] {
        let (x, params) = tight_cluster_case(cov);
        let p = params.prepare().unwrap();
        assert_eq!(components_on_shifted_path(&p), vec![2], "{cov}");
        compare(&format!("{cov} tight cluster"), &x, 3, &p, 200);
    }
    // Tied: one small covariance for all, clusters 10 apart: every component is far from the centre.
    let (x, _) = tight_cluster_case(CovarianceType::Spherical);
    let mut cov = vec![0.0; 9];
    for j in 0..3 {
        cov[j * 3 + j] = 1e-6;
    }
    let p = GmmParams::new(
        CovarianceType::Tied,
        vec![0.4, 0.35, 0.25],
        vec![-0.5, 0.0, 0.0, 0.5, 0.2, 0.0, 10.0, 0.0, 0.0],
        cov,
        3,
    )
    .unwrap()
    .prepare()
    .unwrap();
    assert!(!components_on_shifted_path(&p).is_empty());
    compare("tied tight", &x, 3, &p, 200);
}

#[test]
fn component_with_almost_no_responsibility() {
    for cov in CovarianceType::ALL {
        let (x, truth) = mixture(1_000, 3, 3, cov, 11);
        // Component 2 gets weight 1e-200: responsibilities around 1e-200, far below the others'.
        let mut w = truth.weights().to_vec();
        w[2] = 1e-200;
        let s: f64 = w[..2].iter().sum();
        w[0] /= s;
        w[1] = 1.0 - w[0] - w[2];
        let p = GmmParams::new(
            cov,
            w,
            truth.means().to_vec(),
            truth.covariances().to_vec(),
            3,
        )
        .unwrap()
        .prepare()
        .unwrap();
        let data = Dataset::from_slice(&x, 1_000, 3).unwrap();
        let want = e_step_reference(&data, &p, 4096).unwrap();
        assert!(want.s0[2] > 0.0 && want.s0[2] < 1e-190, "{}", want.s0[2]);
        compare(&format!("{cov} empty component"), &x, 3, &p, 128);
    }
}

#[test]
fn blocked_result_does_not_depend_on_the_thread_count() {
    let (x, truth) = mixture(20_000, 6, 5, CovarianceType::Full, 12);
    let data = Dataset::from_slice(&x, 20_000, 6).unwrap();
    let p = truth.prepare().unwrap();
    let pool = |t: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
    };
    let one = pool(1).install(|| e_step_blocked(&data, &p, 100).unwrap());
    let two = pool(2).install(|| e_step_blocked(&data, &p, 100).unwrap());
    let three = pool(3).install(|| e_step_blocked(&data, &p, 100).unwrap());
    assert_eq!(one, two);
    assert_eq!(one, three);
}

#[test]
fn log_likelihoods_and_responsibilities_match_the_reference() {
    for cov in CovarianceType::ALL {
        let (x, truth) = mixture(1_234, 4, 5, cov, 13);
        let data = Dataset::from_slice(&x, 1_234, 4).unwrap();
        let p = truth.prepare().unwrap();
        let outputs = |path: CpuPath| {
            let opts = EngineOptions {
                chunk_rows: Some(100),
                cpu_path: path,
            };
            let mut e = gmm_engine(Backend::Cpu, &data, cov, 5, opts).unwrap();
            let mut lp = vec![0.0; 1_234];
            let mut r = vec![0.0; 1_234 * 5];
            e.log_likelihoods(&p, &mut lp).unwrap();
            e.responsibilities(&p, &mut r).unwrap();
            (lp, r)
        };
        let (lp_b, r_b) = outputs(CpuPath::Blocked);
        let (lp_r, r_r) = outputs(CpuPath::Reference);
        // log p(x) is O(10): relative 1e-9 with a floor of 1e-9.
        common::assert_close(&format!("{cov} log p(x)"), &lp_b, &lp_r, RTOL, RTOL);
        // Responsibilities are in [0, 1]: absolute 1e-9 (plus relative for the large ones).
        common::assert_close(&format!("{cov} responsibilities"), &r_b, &r_r, RTOL, RTOL);
        for row in r_b.chunks_exact(5) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}

#[test]
fn whole_fits_agree_between_the_paths() {
    for cov in CovarianceType::ALL {
        let synth = Workload {
            n: 4_000,
            d: 4,
            k: 3,
            covariance_type: cov,
            seed: 14,
            spread: 2.0,
        }
        .generate()
        .unwrap();
        let data = synth.dataset().unwrap();
        let fit = |path: CpuPath| {
            let opts = EngineOptions {
                chunk_rows: Some(300),
                cpu_path: path,
            };
            let mut e = gmm_engine(Backend::Cpu, &data, cov, 3, opts).unwrap();
            GaussianMixture::params(3)
                .covariance(cov)
                .tol(0.0)
                .max_iter(15)
                .init(Init::Params(synth.init.clone()))
                .fit_engine(&data, e.as_mut(), &mut |_| {})
                .unwrap()
        };
        let (b, r) = (fit(CpuPath::Blocked), fit(CpuPath::Reference));
        // Fifteen iterations amplify the per-iteration differences a little: 1e-8.
        let tol = 1e-8;
        common::assert_close(
            &format!("{cov} lower bounds"),
            b.lower_bound_trace(),
            r.lower_bound_trace(),
            tol,
            0.0,
        );
        let bp = b.params();
        let rp = r.params();
        common::assert_close(
            &format!("{cov} weights"),
            bp.weights(),
            rp.weights(),
            tol,
            tol,
        );
        common::assert_close(&format!("{cov} means"), bp.means(), rp.means(), tol, tol);
        common::assert_close(
            &format!("{cov} covariances"),
            bp.covariances(),
            rp.covariances(),
            tol,
            tol,
        );
    }
}
