//! Properties that guard the core:
//!
//! - The sufficient statistics add over any partition of the points: cut random data into random
//!   contiguous parts (single-row parts included), compute each part's statistics, merge them, and
//!   get the statistics of the whole. Checked for the Gaussian mixture on both CPU paths (the
//!   point-by-point reference and the blocked path) and every covariance type, and for the k-means
//!   assignment. Chunked, streamed and multi-pass fits rely on this.
//! - A model written with `to_json` and read back with `from_json` has the same parameters, bit
//!   for bit (serde_json is built with `float_roundtrip`), for random valid Gaussian mixtures and
//!   random k-means centers.
//!
//! Every property runs on a fixed proptest seed, so a failure reproduces; sizes stay small so the
//! file runs in seconds in release.

use emgpu::models::gmm::{GmmStats, Prepared};
use emgpu::models::kmeans::KMeansStats;
use emgpu::synth::Workload;
use emgpu::testing::assign_reference;
use emgpu::testing::{e_step_blocked, e_step_reference};
use emgpu::{CovarianceType, Dataset, FittedGmm, FittedKMeans, GmmParams};
use ndarray::Array2;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Merged parts against the whole: relative tolerance, with an absolute floor (see `close`).
const RTOL: f64 = 1e-10;
const ATOL: f64 = 1e-9;

/// The proptest settings of this file: a fixed seed, no regression files.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x6d65_7267_6521),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Whether `got` is within `RTOL·|want| + ATOL` of `want`.
///
/// Why these numbers: a part's statistics are sums of the same per-point terms as the whole's
/// (every point's responsibilities and log-density depend only on the point and the parameters),
/// grouped differently. Regrouping a sum of at most N = 200 terms changes it by at most
/// `(N−1)·ε·Σ|terms|` (ε = 2.2e-16), in practice `~√N·ε·Σ|terms|`: about 3e-15 of the sum of
/// the absolute terms. For the positive sums (S0, the diagonal of S2, and the log-likelihood,
/// whose terms share a sign here) that is a relative error far below 1e-10. S1 and off-diagonal
/// S2 entries can cancel to nearly zero, so relative error means nothing there: the floor 1e-9
/// covers `√N·ε·Σ|terms|` for terms up to ~1e5 (data within ±20 of the shift, so `|x−s|² ≤ 400`,
/// times N = 200 is 8e4). The blocked path also recentres its raw moments once per part, which
/// loses at most `ε·CANCELLATION_LIMIT` ≈ 2e-12 relative (its module docs): still a factor 50
/// inside RTOL. A real bug (a point dropped or counted twice, a part summed about another shift)
/// moves a statistic by a whole term: at least ~1e-3 here.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= RTOL * want.abs() + ATOL
}

/// Asserts (as a proptest failure) that `got` ≈ `want` elementwise, naming the first bad entry.
fn all_close(what: &str, got: &[f64], want: &[f64]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: lengths", what);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            close(g, w),
            "{}[{}]: merged parts {:e}, whole {:e} (|diff| {:.3e})",
            what,
            i,
            g,
            w,
            (g - w).abs()
        );
    }
    Ok(())
}

/// The contiguous parts `[start, end)` of `0..n` cut at `cuts` (fractions of `n`), plus one
/// single-row part at `single` (a fraction of `n`) so that every case has one.
fn parts(n: usize, cuts: &[f64], single: f64) -> Vec<(usize, usize)> {
    let at = |f: f64| ((f * n as f64) as usize).min(n);
    let one = at(single).min(n - 1);
    let mut points: Vec<usize> = cuts.iter().map(|&f| at(f)).collect();
    points.extend([0, one, one + 1, n]);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| (w[0], w[1])).collect()
}

/// A random mixture's data (f64, `N × D`) with its true parameters, both moved by `offset` (data
/// far from the origin put the blocked path's components on its shifted path).
fn mixture(
    n: usize,
    d: usize,
    k: usize,
    cov: CovarianceType,
    seed: u64,
    offset: f64,
) -> (Array2<f64>, GmmParams) {
    let w = Workload {
        n,
        d,
        k,
        covariance_type: cov,
        seed,
        spread: 3.0,
    };
    let truth = w.truth().unwrap();
    let x = w.generate_f64().unwrap() + offset;
    let means = truth.means().iter().map(|m| m + offset).collect();
    let params = GmmParams::new(
        cov,
        truth.weights().to_vec(),
        means,
        truth.covariances().to_vec(),
        d,
    )
    .unwrap();
    (x, params)
}

/// The merged statistics of `parts` of `x` against the statistics of the whole, for one E-step.
fn check_gmm_merge(
    x: &Array2<f64>,
    p: &Prepared,
    parts: &[(usize, usize)],
    chunk_rows: usize,
    e_step: fn(&Dataset, &Prepared, usize) -> emgpu::Result<GmmStats>,
) -> Result<(), TestCaseError> {
    let (n, d) = x.dim();
    let flat = x.as_slice().unwrap();
    let whole = e_step(&Dataset::from_slice(flat, n, d).unwrap(), p, chunk_rows).unwrap();
    let mut merged = GmmStats::zeros(p.covariance_type, p.n_components, d, &p.means);
    for &(start, end) in parts {
        let part = Dataset::from_slice(&flat[start * d..end * d], end - start, d).unwrap();
        merged.merge(&e_step(&part, p, chunk_rows).unwrap());
    }
    prop_assert_eq!(merged.n_samples, whole.n_samples);
    // Counts are sums of ones: exact in f64.
    prop_assert_eq!(merged.n_samples, n as f64);
    prop_assert_eq!(&merged.shift, &whole.shift);
    all_close(
        "log-likelihood",
        &[merged.log_likelihood],
        &[whole.log_likelihood],
    )?;
    all_close("S0", &merged.s0, &whole.s0)?;
    all_close("S1", &merged.s1, &whole.s1)?;
    all_close("S2", &merged.s2, &whole.s2)?;
    Ok(())
}

/// Covariance types by index (proptest draws the index).
const COV: [CovarianceType; 4] = [
    CovarianceType::Full,
    CovarianceType::Tied,
    CovarianceType::Diag,
    CovarianceType::Spherical,
];

proptest! {
    #![proptest_config(config(256))]

    /// GMM statistics of a random partition, merged, equal those of the whole, on both CPU paths.
    #[test]
    fn gmm_statistics_of_parts_merge_to_the_whole(
        seed in 0u64..1_000_000,
        n in 1usize..200,
        d in 1usize..5,
        k in 1usize..5,
        cov_index in 0usize..4,
        offset in prop_oneof![Just(0.0), Just(-7.5), Just(1e3)],
        cuts in prop::collection::vec(0.0f64..1.0, 0..8),
        single in 0.0f64..1.0,
        chunk_rows in 1usize..64,
    ) {
        let cov = COV[cov_index];
        let k = k.min(n);
        let (x, params) = mixture(n, d, k, cov, seed, offset);
        let p = params.prepare().unwrap();
        let parts = parts(n, &cuts, single);
        check_gmm_merge(&x, &p, &parts, chunk_rows, e_step_reference)
            .map_err(|e| TestCaseError::fail(format!("{cov} reference path: {e}")))?;
        check_gmm_merge(&x, &p, &parts, chunk_rows, e_step_blocked)
            .map_err(|e| TestCaseError::fail(format!("{cov} blocked path: {e}")))?;
    }

    /// k-means statistics (counts, sums, inertia) and the per-point outputs of a random
    /// partition, merged, equal those of the whole.
    #[test]
    fn kmeans_statistics_of_parts_merge_to_the_whole(
        seed in 0u64..1_000_000,
        n in 1usize..200,
        d in 1usize..5,
        k in 1usize..6,
        offset in prop_oneof![Just(0.0), Just(1e3)],
        cuts in prop::collection::vec(0.0f64..1.0, 0..8),
        single in 0.0f64..1.0,
        chunk_rows in 1usize..64,
        jitter in prop::collection::vec(-0.5f64..0.5, 5 * 4),
    ) {
        let k = k.min(n);
        let (x, params) = mixture(n, d, k, CovarianceType::Spherical, seed, offset);
        // Centers near, not at, the true means.
        let centers: Vec<f64> = params.means().iter().zip(&jitter).map(|(m, j)| m + j).collect();
        let flat = x.as_slice().unwrap();
        let assign = |rows: &[f64], m: usize| {
            let data = Dataset::from_slice(rows, m, d).unwrap();
            let mut labels = vec![u32::MAX; m];
            let mut dists = vec![0.0; m];
            let stats = assign_reference(&data, &centers, k, chunk_rows, &mut labels, &mut dists).unwrap();
            (stats, labels, dists)
        };
        let (whole, whole_labels, whole_dists) = assign(flat, n);
        let mut merged = KMeansStats::zeros(k, d, &centers);
        let (mut labels, mut dists) = (Vec::new(), Vec::new());
        for (start, end) in parts(n, &cuts, single) {
            let (s, l, dd) = assign(&flat[start * d..end * d], end - start);
            merged.merge(&s);
            labels.extend(l);
            dists.extend(dd);
        }
        // Counts are sums of ones: exact in f64.
        prop_assert_eq!(merged.n_samples, n as f64);
        prop_assert_eq!(merged.n_samples, whole.n_samples);
        prop_assert_eq!(merged.n_changed, whole.n_changed);
        prop_assert_eq!(&merged.counts, &whole.counts);
        prop_assert_eq!(merged.counts.iter().sum::<f64>(), n as f64);
        prop_assert_eq!(&merged.shift, &whole.shift);
        all_close("sums", &merged.sums, &whole.sums)?;
        all_close("inertia", &[merged.inertia], &[whole.inertia])?;
        // Each point's own outputs do not depend on the part it was in.
        prop_assert_eq!(labels, whole_labels);
        prop_assert_eq!(dists, whole_dists);
    }
}

/// Any finite f64 (normal, subnormal, ±0), the values a parameter file must carry exactly.
fn finite() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

/// `A·Aᵀ + 0.1·I` (`D × D`, row-major): symmetric positive definite for any `A`.
fn spd(a: &[f64], d: usize) -> Vec<f64> {
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            s[i * d + j] = (0..d).map(|l| a[i * d + l] * a[j * d + l]).sum::<f64>()
                + if i == j { 0.1 } else { 0.0 };
        }
    }
    s
}

/// Random valid mixture parameters: K, D, covariance type, positive normalized weights, any
/// finite means, positive definite covariances.
fn gmm_params() -> impl Strategy<Value = GmmParams> {
    (1usize..6, 1usize..5, 0usize..4).prop_flat_map(|(k, d, cov_index)| {
        let cov = COV[cov_index];
        (
            prop::collection::vec(1e-3f64..1.0, k),
            prop::collection::vec(finite(), k * d),
            prop::collection::vec(-10.0f64..10.0, k * d * d),
            prop::collection::vec(1e-3f64..1e3, k * d),
        )
            .prop_map(move |(raw, means, a, positive)| {
                let total: f64 = raw.iter().sum();
                let weights = raw.iter().map(|w| w / total).collect();
                let covariances = match cov {
                    CovarianceType::Full => a.chunks(d * d).flat_map(|a| spd(a, d)).collect(),
                    CovarianceType::Tied => spd(&a[..d * d], d),
                    CovarianceType::Diag => positive,
                    CovarianceType::Spherical => positive[..k].to_vec(),
                };
                GmmParams::new(cov, weights, means, covariances, d).unwrap()
            })
    })
}

/// Bit patterns, so that `-0.0 ≠ 0.0` and any rounding shows.
fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(config(256))]

    /// GMM parameters → JSON → GMM parameters: every array equal bit for bit.
    #[test]
    fn gmm_json_round_trip_is_exact(params in gmm_params()) {
        let model = FittedGmm::from_params(params.clone()).unwrap();
        let back = FittedGmm::from_json(&model.to_json()).unwrap();
        let got = back.params();
        prop_assert_eq!(got.covariance_type(), params.covariance_type());
        prop_assert_eq!(got.n_components(), params.n_components());
        prop_assert_eq!(got.n_features(), params.n_features());
        prop_assert_eq!(bits(got.weights()), bits(params.weights()));
        prop_assert_eq!(bits(got.means()), bits(params.means()));
        prop_assert_eq!(bits(got.covariances()), bits(params.covariances()));
        // The E-step inputs are recomputed from the same numbers, so they agree too.
        prop_assert_eq!(bits(&back.prepared().prec_chol), bits(&model.prepared().prec_chol));
    }

    /// k-means centers → JSON → k-means centers: equal bit for bit.
    #[test]
    fn kmeans_json_round_trip_is_exact(
        (k, d, centers) in (1usize..8, 1usize..6)
            .prop_flat_map(|(k, d)| (Just(k), Just(d), prop::collection::vec(finite(), k * d)))
    ) {
        let centers = Array2::from_shape_vec((k, d), centers).unwrap();
        let model = FittedKMeans::from_centers(&centers).unwrap();
        let back = FittedKMeans::from_json(&model.to_json()).unwrap();
        prop_assert_eq!(back.n_clusters(), k);
        prop_assert_eq!(back.n_features(), d);
        let (got, want) = (back.cluster_centers(), centers);
        prop_assert_eq!(bits(got.as_slice().unwrap()), bits(want.as_slice().unwrap()));
    }
}
