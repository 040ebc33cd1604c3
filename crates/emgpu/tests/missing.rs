//! EM with missing entries (NaN) and imputation, against references written here.
//!
//! - An independent f64 EM written from the textbook formulas (Ghahramani & Jordan 1994): per
//!   row and component, the marginal density of the observed entries by Gauss–Jordan inversion
//!   and an LU determinant, `x̂_m = μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o)`, `Ĉ = Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om`,
//!   raw (unshifted) moments `Σ r x̂`, `Σ r (x̂ x̂ᵀ + Ĉ)`, scikit-learn's M-step. Small data with
//!   every pattern of D = 3, all four covariance types, both library paths (every pattern through
//!   the complete-data engine, and every pattern through the direct path).
//! - Complete data marked as having missing values: the ordinary fit, to 1e-12.
//! - The lower bound (mean observed-data log-likelihood) never decreases.
//! - Imputation of a 2-D Gaussian and of a 2-D mixture against the closed form, to 1e-12;
//!   observed entries bit for bit; imputation from the fitted model within 1 % of the RMSE of
//!   imputation with the true parameters.
//! - Errors: a row with nothing observed, NaN without the missing-value marking.
//! - GPU against CPU (lavapipe in CI) within 2e-3.

#![allow(clippy::needless_range_loop)]

mod common;

use emgpu::em::{EStep, Model};
use emgpu::models::gmm::missing::{
    MissingEngine, MissingIndex, MissingLayout, Scan, StreamEngine, engine::group_datasets,
    stream::stream_groups,
};
use emgpu::models::gmm::{GmmEngine, GmmModel, GmmStats};
use emgpu::{Backend, CovarianceType, Dataset, Error, FittedGmm, GaussianMixture, GmmParams, Init};
use ndarray::{Array2, array};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const REG: f64 = 1e-6;
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Inverse and log-determinant of a small SPD matrix by Gauss–Jordan with partial pivoting.
fn inv_logdet(a: &[f64], n: usize) -> (Vec<f64>, f64) {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    let mut logdet = 0.0;
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&x, &y| m[x * n + col].abs().total_cmp(&m[y * n + col].abs()))
            .unwrap();
        if piv != col {
            for j in 0..n {
                m.swap(col * n + j, piv * n + j);
                inv.swap(col * n + j, piv * n + j);
            }
        }
        let p = m[col * n + col];
        logdet += p.abs().ln();
        for j in 0..n {
            m[col * n + j] /= p;
            inv[col * n + j] /= p;
        }
        for r in 0..n {
            if r != col {
                let f = m[r * n + col];
                for j in 0..n {
                    m[r * n + j] -= f * m[col * n + j];
                    inv[r * n + j] -= f * inv[col * n + j];
                }
            }
        }
    }
    (inv, logdet)
}

/// Full D×D covariance of component `c` of `p`.
fn full_cov(p: &GmmParams, c: usize) -> Vec<f64> {
    let d = p.n_features();
    let cv = p.covariances();
    let mut s = vec![0.0; d * d];
    match p.covariance_type() {
        CovarianceType::Full => s.copy_from_slice(&cv[c * d * d..(c + 1) * d * d]),
        CovarianceType::Tied => s.copy_from_slice(&cv[..d * d]),
        CovarianceType::Diag => (0..d).for_each(|j| s[j * d + j] = cv[c * d + j]),
        CovarianceType::Spherical => (0..d).for_each(|j| s[j * d + j] = cv[c]),
    }
    s
}

/// One row's per-component log p(x_o, k), conditional means x̂ (full D) and conditional
/// covariances Ĉ (D×D, zero outside the missing block), from the textbook formulas.
fn textbook_row(p: &GmmParams, x: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (k, d) = (p.n_components(), p.n_features());
    let o: Vec<usize> = (0..d).filter(|&j| !x[j].is_nan()).collect();
    let m: Vec<usize> = (0..d).filter(|&j| x[j].is_nan()).collect();
    let (no, nm) = (o.len(), m.len());
    let (mut lj, mut xh, mut ch) = (vec![0.0; k], Vec::new(), Vec::new());
    for c in 0..k {
        let s = full_cov(p, c);
        let mu = &p.means()[c * d..(c + 1) * d];
        let soo: Vec<f64> = o
            .iter()
            .flat_map(|&i| o.iter().map(move |&j| (i, j)))
            .map(|(i, j)| s[i * d + j])
            .collect();
        let (inv, logdet) = inv_logdet(&soo, no);
        let u: Vec<f64> = o.iter().map(|&j| x[j] - mu[j]).collect();
        let mut q = 0.0;
        for a in 0..no {
            for b in 0..no {
                q += u[a] * inv[a * no + b] * u[b];
            }
        }
        lj[c] = p.weights()[c].ln() - 0.5 * (no as f64 * LN_2PI + logdet + q);
        let mut full = x.to_vec();
        let mut cc = vec![0.0; d * d];
        for (a, &i) in m.iter().enumerate() {
            // Σ_mo Σ_oo⁻¹ (x_o − μ_o)
            let mut v = mu[i];
            for b in 0..no {
                for e in 0..no {
                    v += s[i * d + o[b]] * inv[b * no + e] * u[e];
                }
            }
            full[i] = v;
            for (bb, &j) in m.iter().enumerate() {
                let mut w = s[i * d + j];
                for b in 0..no {
                    for e in 0..no {
                        w -= s[i * d + o[b]] * inv[b * no + e] * s[o[e] * d + j];
                    }
                }
                let _ = (a, bb);
                cc[i * d + j] = w;
            }
        }
        let _ = nm;
        xh.push(full);
        ch.push(cc);
    }
    (lj, xh, ch)
}

/// One textbook EM iteration: (new parameters, mean observed-data log-likelihood before it).
fn textbook_iteration(p: &GmmParams, x: &Array2<f64>) -> (GmmParams, f64) {
    let (k, d, n) = (p.n_components(), p.n_features(), x.nrows());
    let (mut nk, mut sx, mut sxx) = (vec![0.0; k], vec![0.0; k * d], vec![0.0; k * d * d]);
    let mut ll = 0.0;
    for row in x.rows() {
        let row = row.to_vec();
        let (lj, xh, ch) = textbook_row(p, &row);
        let mx = lj.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = mx + lj.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
        ll += lse;
        for c in 0..k {
            let r = (lj[c] - lse).exp();
            nk[c] += r;
            for i in 0..d {
                sx[c * d + i] += r * xh[c][i];
                for j in 0..d {
                    sxx[c * d * d + i * d + j] += r * (xh[c][i] * xh[c][j] + ch[c][i * d + j]);
                }
            }
        }
    }
    let cov = p.covariance_type();
    let nk: Vec<f64> = nk.iter().map(|v| v + 10.0 * f64::EPSILON).collect();
    let means: Vec<f64> = (0..k * d).map(|i| sx[i] / nk[i / d]).collect();
    let raw_cov = |c: usize| -> Vec<f64> {
        (0..d * d)
            .map(|ij| {
                let (i, j) = (ij / d, ij % d);
                sxx[c * d * d + ij] / nk[c] - means[c * d + i] * means[c * d + j]
            })
            .collect()
    };
    let covariances: Vec<f64> = match cov {
        CovarianceType::Full => (0..k)
            .flat_map(|c| {
                let mut m = raw_cov(c);
                (0..d).for_each(|i| m[i * d + i] += REG);
                m
            })
            .collect(),
        CovarianceType::Tied => {
            let total: f64 = nk.iter().sum();
            let mut m = vec![0.0; d * d];
            for c in 0..k {
                for (a, v) in m.iter_mut().zip(raw_cov(c)) {
                    *a += v * nk[c] / total;
                }
            }
            (0..d).for_each(|i| m[i * d + i] += REG);
            m
        }
        CovarianceType::Diag => (0..k)
            .flat_map(|c| {
                let m = raw_cov(c);
                (0..d).map(move |i| m[i * d + i] + REG).collect::<Vec<_>>()
            })
            .collect(),
        CovarianceType::Spherical => (0..k)
            .map(|c| {
                let m = raw_cov(c);
                (0..d).map(|i| m[i * d + i]).sum::<f64>() / d as f64 + REG
            })
            .collect(),
    };
    let weights: Vec<f64> = nk.iter().map(|v| v / n as f64).collect();
    // Weights sum to 1 + K·10 eps / N: renormalize for the checked constructor only.
    let s: f64 = weights.iter().sum();
    let checked = weights.iter().map(|w| w / s).collect();
    let p = GmmParams::new(cov, checked, means, covariances, d).unwrap();
    (p, ll / n as f64)
}

/// Data from a correlated 3-D, 2-component mixture with every missingness pattern.
fn holey_data(n: usize, rate: f64, seed: u64) -> Array2<f64> {
    let truth = GmmParams::new(
        CovarianceType::Full,
        vec![0.4, 0.6],
        vec![0.0, 1.0, -1.0, 4.0, 3.0, 2.0],
        vec![
            1.0, 0.6, 0.2, 0.6, 1.5, -0.4, 0.2, -0.4, 0.8, //
            0.7, -0.3, 0.1, -0.3, 1.2, 0.5, 0.1, 0.5, 1.0,
        ],
        3,
    )
    .unwrap();
    let (mut x, _) = FittedGmm::from_params(truth)
        .unwrap()
        .sample(n, seed)
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let d = x.ncols();
    for mut row in x.rows_mut() {
        let keep = rng.random_range(0..d); // at least one observed entry per row
        for j in 0..d {
            if j != keep && rng.random::<f64>() < rate {
                row[j] = f64::NAN;
            }
        }
    }
    // Every pattern of D = 3 with something observed appears at least once.
    let patterns = [
        [false, false, false],
        [true, false, false],
        [false, true, false],
        [false, false, true],
        [true, true, false],
        [true, false, true],
        [false, true, true],
    ];
    for (i, pat) in patterns.iter().enumerate().filter(|_| rate > 0.0) {
        for j in 0..d {
            if pat[j] {
                x[[i, j]] = f64::NAN;
            } else if x[[i, j]].is_nan() {
                x[[i, j]] = 0.5;
            }
        }
    }
    x
}

fn initial(cov: CovarianceType) -> GmmParams {
    let d = 3;
    let covariances = match cov {
        CovarianceType::Full => [[1.0, 0.2, 0.0, 0.2, 1.0, 0.1, 0.0, 0.1, 1.0]; 2].concat(),
        CovarianceType::Tied => vec![1.5, 0.2, 0.0, 0.2, 1.0, 0.1, 0.0, 0.1, 1.2],
        CovarianceType::Diag => vec![1.0, 2.0, 1.5, 0.8, 1.1, 1.3],
        CovarianceType::Spherical => vec![1.0, 2.0],
    };
    GmmParams::new(
        cov,
        vec![0.5, 0.5],
        vec![0.5, 0.0, 0.0, 3.0, 2.5, 1.5],
        covariances,
        d,
    )
    .unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y} (tol {tol})"
        );
    }
}

#[test]
fn em_with_missing_entries_matches_the_textbook_reference() {
    let x = holey_data(400, 0.3, 11);
    let data = Dataset::from_array(&x).with_missing_values();
    let iters = 6;
    for cov in CovarianceType::ALL {
        let mut p = initial(cov);
        let mut trace = Vec::new();
        for _ in 0..iters {
            let (next, lb) = textbook_iteration(&p, &x);
            trace.push(lb);
            p = next;
        }
        // Grouped, group_rows 1: every pattern through the complete-data engine; usize::MAX:
        // the direct path (the complete pattern always takes the engine). Streamed (the CPU's
        // default): one chunk, the incomplete patterns on its direct path.
        for (layout, group_rows) in [
            (MissingLayout::Grouped, 1),
            (MissingLayout::Grouped, usize::MAX),
            (MissingLayout::Streamed, 1),
            (MissingLayout::Auto, 1),
        ] {
            let fit = GaussianMixture::params(2)
                .covariance(cov)
                .reg_covar(REG)
                .tol(0.0)
                .max_iter(iters)
                .init(Init::Params(initial(cov)))
                .backend(Backend::Cpu)
                .missing_layout(layout)
                .missing_group_rows(group_rows)
                .fit(&data)
                .unwrap();
            let what = format!("{cov} {layout:?} group_rows {group_rows}");
            close(
                fit.lower_bound_trace(),
                &trace,
                1e-11,
                &format!("{what} lower bound"),
            );
            let q = fit.params();
            close(q.weights(), p.weights(), 1e-9, &format!("{what} weights"));
            close(q.means(), p.means(), 1e-9, &format!("{what} means"));
            close(
                q.covariances(),
                p.covariances(),
                1e-9,
                &format!("{what} covariances"),
            );
        }
    }
}

/// The statistics moved to `shift`, flattened: `[n, ll, s0, s1, s2]`.
fn flat(mut s: GmmStats, shift: &[f64]) -> Vec<f64> {
    if s.shift != shift {
        s.reshift(shift);
    }
    let mut v = vec![s.n_samples, s.log_likelihood];
    v.extend(&s.s0);
    v.extend(&s.s1);
    v.extend(&s.s2);
    v
}

#[test]
fn streamed_layout_equals_the_grouped_layout() {
    // Chunks of 1, 7, 64 and all rows; patterns through the blocked kernel from 1 row, 5 rows,
    // never: every path of the streamed engine against the grouped engine (the sums reordered
    // only: 1e-12). Also D = 5 with 40 % missing (more patterns than rows per chunk).
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut wide = Array2::from_shape_fn((700, 5), |_| rng.random::<f64>() * 4.0 - 1.0);
    for (i, mut row) in wide.rows_mut().into_iter().enumerate() {
        for j in 0..5 {
            if j != i % 5 && rng.random::<f64>() < 0.4 {
                row[j] = f64::NAN;
            }
        }
    }
    for x in [holey_data(900, 0.3, 17), wide] {
        let (n, d) = x.dim();
        let data = Dataset::from_array(&x).with_missing_values();
        let index = MissingIndex::build(&data).unwrap();
        let groups = group_datasets(&index, 40).unwrap();
        for cov in CovarianceType::ALL {
            let model = GmmModel {
                covariance_type: cov,
                n_components: 2,
                n_features: d,
                reg_covar: REG,
            };
            let start = GaussianMixture::params(2)
                .covariance(cov)
                .backend(Backend::Cpu)
                .initial_params(&Dataset::from_array(
                    &x.mapv(|v| if v.is_nan() { 0.3 } else { v }),
                ))
                .unwrap();
            let p = model.prepare(&start).unwrap();
            let mut grouped =
                MissingEngine::new(&index, &groups, Backend::Cpu, cov, 2, Default::default())
                    .unwrap();
            let want = flat(grouped.e_step(&p).unwrap(), &p.means);
            let mut ll_want = vec![0.0; n];
            grouped.log_likelihoods(&p, &mut ll_want).unwrap();
            let mut resp_want = vec![0.0; n * 2];
            grouped.responsibilities(&p, &mut resp_want).unwrap();
            let mut imp_want = vec![0.0; n * d];
            grouped.impute(&p, &mut imp_want).unwrap();
            for chunk in [1, 7, 64, n] {
                for blocked in [1, 5, usize::MAX] {
                    let what = format!("D {d} {cov} chunk {chunk} blocked {blocked}");
                    let mut e =
                        StreamEngine::new(&data, Some(chunk), None, "").with_blocked_rows(blocked);
                    let got = flat(e.e_step(&p).unwrap(), &p.means);
                    close(&got, &want, 1e-12, &format!("{what} statistics"));
                    let mut ll = vec![0.0; n];
                    e.log_likelihoods(&p, &mut ll).unwrap();
                    close(&ll, &ll_want, 1e-12, &format!("{what} log p(x_o)"));
                    let mut resp = vec![0.0; n * 2];
                    e.responsibilities(&p, &mut resp).unwrap();
                    close(
                        &resp,
                        &resp_want,
                        1e-12,
                        &format!("{what} responsibilities"),
                    );
                    let mut imp = vec![0.0; n * d];
                    e.impute(&p, &mut imp).unwrap();
                    close(&imp, &imp_want, 1e-12, &format!("{what} imputed"));
                    // Observed entries bit for bit.
                    for (a, b) in imp.iter().zip(x.iter()) {
                        assert!(
                            b.is_nan() || a.to_bits() == b.to_bits(),
                            "{what}: observed changed"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn streamed_layout_with_engine_groups_equals_the_grouped_layout() {
    // The streamed layout of a GPU fit, run with CPU engines: the complete rows and the
    // patterns of ≥ 40 rows through engines over their rows read in place (`PatternRows`), the
    // other rows through the chunked CPU code; against the grouped layout with the same split
    // (the sums reordered only: 1e-12). Also the pattern rows read at any offset.
    let x = holey_data(900, 0.3, 17);
    let (n, d) = x.dim();
    let data = Dataset::from_array(&x).with_missing_values();
    let index = MissingIndex::build(&data).unwrap();
    let groups = group_datasets(&index, 40).unwrap();
    let scan = Scan::of(&data).unwrap();
    let sgroups = stream_groups(&data, &scan, 40).unwrap();
    assert_eq!(sgroups.len(), groups.len());
    assert!(sgroups.len() >= 3, "several pattern groups");
    assert!(
        sgroups[0].pattern().missing.is_empty(),
        "complete pattern first"
    );
    // Each group's rows, read whole and in pieces at every offset, are the index's rows of
    // that pattern (bit for bit).
    for g in &sgroups {
        let (i, _) = index
            .patterns()
            .iter()
            .enumerate()
            .find(|(_, p)| p.missing == g.pattern().missing)
            .unwrap();
        let want = index.patterns()[i].values(&index);
        let d_o = g.pattern().n_observed();
        let m = g.data().n_samples();
        assert_eq!(m * d_o, want.len());
        let mut all = vec![0.0; m * d_o];
        g.data().read_f64(0, &mut all).unwrap();
        assert_eq!(all, want);
        for start in (0..m).step_by(7) {
            let len = 13.min(m - start);
            let mut part = vec![0.0; len * d_o];
            g.data().read_f64(start, &mut part).unwrap();
            assert_eq!(part, want[start * d_o..(start + len) * d_o]);
        }
        let mut past = vec![0.0; d_o];
        assert!(g.data().read_f64(m, &mut past).is_err(), "past the end");
    }
    for cov in CovarianceType::ALL {
        let model = GmmModel {
            covariance_type: cov,
            n_components: 2,
            n_features: d,
            reg_covar: REG,
        };
        let p = model.prepare(&initial(cov)).unwrap();
        let mut grouped =
            MissingEngine::new(&index, &groups, Backend::Cpu, cov, 2, Default::default()).unwrap();
        let want = flat(grouped.e_step(&p).unwrap(), &p.means);
        let mut ll_want = vec![0.0; n];
        grouped.log_likelihoods(&p, &mut ll_want).unwrap();
        let mut resp_want = vec![0.0; n * 2];
        grouped.responsibilities(&p, &mut resp_want).unwrap();
        let mut imp_want = vec![0.0; n * d];
        grouped.impute(&p, &mut imp_want).unwrap();
        for chunk in [7, n] {
            let what = format!("{cov} chunk {chunk}");
            let mut e = StreamEngine::with_engines(
                &data,
                Some(chunk),
                Some(&scan),
                &sgroups,
                Backend::Cpu,
                cov,
                2,
                Default::default(),
            )
            .unwrap();
            let engine_rows: usize = groups.iter().map(|(_, g)| g.n_samples()).sum();
            assert_eq!(e.engine_rows(), engine_rows);
            let report = e.report();
            assert!(
                report
                    .reason
                    .contains("on the cpu engine (read from the data in place)"),
                "{report:?}"
            );
            let got = flat(e.e_step(&p).unwrap(), &p.means);
            close(&got, &want, 1e-12, &format!("{what} statistics"));
            let mut ll = vec![0.0; n];
            e.log_likelihoods(&p, &mut ll).unwrap();
            close(&ll, &ll_want, 1e-12, &format!("{what} log p(x_o)"));
            let mut resp = vec![0.0; n * 2];
            e.responsibilities(&p, &mut resp).unwrap();
            close(
                &resp,
                &resp_want,
                1e-12,
                &format!("{what} responsibilities"),
            );
            let mut imp = vec![0.0; n * d];
            e.impute(&p, &mut imp).unwrap();
            close(&imp, &imp_want, 1e-12, &format!("{what} imputed"));
            for (a, b) in imp.iter().zip(x.iter()) {
                assert!(
                    b.is_nan() || a.to_bits() == b.to_bits(),
                    "{what}: observed changed"
                );
            }
        }
    }
}

#[test]
fn complete_data_marked_missing_is_the_ordinary_fit() {
    let x = holey_data(600, 0.0, 5);
    assert!(x.iter().all(|v| v.is_finite()));
    for cov in CovarianceType::ALL {
        let gm = GaussianMixture::params(3)
            .covariance(cov)
            .max_iter(30)
            .n_init(2)
            .seed(3)
            .backend(Backend::Cpu);
        let plain = gm.fit(&x).unwrap();
        let marked = gm
            .fit(&Dataset::from_array(&x).with_missing_values())
            .unwrap();
        close(
            marked.lower_bound_trace(),
            plain.lower_bound_trace(),
            1e-12,
            &format!("{cov} trace"),
        );
        let (a, b) = (marked.params(), plain.params());
        close(a.weights(), b.weights(), 1e-12, "weights");
        close(a.means(), b.means(), 1e-12, "means");
        close(a.covariances(), b.covariances(), 1e-12, "covariances");
        assert_eq!(marked.n_iter(), plain.n_iter());
    }
}

#[test]
fn lower_bound_never_decreases() {
    let x = holey_data(3000, 0.35, 8);
    let data = Dataset::from_array(&x).with_missing_values();
    for cov in CovarianceType::ALL {
        for init in [Init::Kmeans, Init::Random] {
            let fit = GaussianMixture::params(4)
                .covariance(cov)
                .tol(0.0)
                .max_iter(60)
                .init(init)
                .seed(9)
                .backend(Backend::Cpu)
                .fit(&data)
                .unwrap();
            let t = fit.lower_bound_trace();
            assert_eq!(t.len(), 60);
            for w in t.windows(2) {
                assert!(
                    w[1] >= w[0] - 1e-12 * w[0].abs(),
                    "{cov}: {} then {}",
                    w[0],
                    w[1]
                );
            }
            assert!(t[59] > t[0], "{cov}: EM made no progress");
        }
    }
}

#[test]
fn imputes_the_closed_form_conditional_of_a_2d_gaussian_and_mixture() {
    // One Gaussian: E[x1 | x0] = μ1 + Σ10/Σ00 (x0 − μ0), and symmetrically.
    let g = GmmParams::new(
        CovarianceType::Full,
        vec![1.0],
        vec![1.0, -2.0],
        vec![2.0, 0.6, 0.6, 1.0],
        2,
    )
    .unwrap();
    let fitted = FittedGmm::from_params(g).unwrap();
    let x = array![
        [3.0, f64::NAN],
        [f64::NAN, 0.5],
        [0.1f64.sqrt(), 7.25],
        [-1.0, f64::NAN]
    ];
    let y = fitted.impute(&x).unwrap();
    assert!(
        (y[[0, 1]] - (-2.0 + 0.3 * 2.0)).abs() < 1e-12,
        "{}",
        y[[0, 1]]
    );
    assert!(
        (y[[1, 0]] - (1.0 + 0.6 * 2.5)).abs() < 1e-12,
        "{}",
        y[[1, 0]]
    );
    assert!((y[[3, 1]] - (-2.0 + 0.3 * -2.0)).abs() < 1e-12);
    for (a, b) in x.iter().zip(&y) {
        if !a.is_nan() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "observed entries are copied bit for bit"
            );
        }
    }
    // Two components: the responsibilities come from the 1-D marginals of x0.
    let (w, m0, m1, s00, s01, s11) = (
        [0.3, 0.7],
        [0.0, 3.0],
        [1.0, -1.0],
        [1.0, 0.5],
        [0.4, -0.2],
        [2.0, 1.0],
    );
    let mix = GmmParams::new(
        CovarianceType::Full,
        w.to_vec(),
        vec![m0[0], m1[0], m0[1], m1[1]],
        vec![
            s00[0], s01[0], s01[0], s11[0], s00[1], s01[1], s01[1], s11[1],
        ],
        2,
    )
    .unwrap();
    let fitted = FittedGmm::from_params(mix).unwrap();
    for x0 in [-1.0, 0.7, 1.9, 4.0] {
        let lj: Vec<f64> = (0..2)
            .map(|c| w[c].ln() - 0.5 * (LN_2PI + s00[c].ln() + (x0 - m0[c]).powi(2) / s00[c]))
            .collect();
        let mx = lj[0].max(lj[1]);
        let lse = mx + ((lj[0] - mx).exp() + (lj[1] - mx).exp()).ln();
        let want: f64 = (0..2)
            .map(|c| (lj[c] - lse).exp() * (m1[c] + s01[c] / s00[c] * (x0 - m0[c])))
            .sum();
        let input = array![[x0, f64::NAN]];
        let got = fitted.impute(&input).unwrap()[[0, 1]];
        assert!((got - want).abs() < 1e-12, "x0 = {x0}: {got} vs {want}");
        // score_samples on the same row: the marginal log-density of x0.
        let marked = Dataset::from_array(&input).with_missing_values();
        let s = fitted.score_samples(&marked).unwrap()[0];
        assert!((s - lse).abs() < 1e-12, "score {s} vs {lse}");
        let proba = fitted.predict_proba(&marked).unwrap();
        assert!((proba[[0, 0]] - (lj[0] - lse).exp()).abs() < 1e-12);
    }
}

#[test]
fn fitted_imputation_is_as_good_as_imputing_with_the_true_parameters() {
    let truth_x = holey_data(20_000, 0.0, 21);
    let mut x = truth_x.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for mut row in x.rows_mut() {
        let keep = rng.random_range(0..3);
        for j in 0..3 {
            if j != keep && rng.random::<f64>() < 0.25 {
                row[j] = f64::NAN;
            }
        }
    }
    let data = Dataset::from_array(&x).with_missing_values();
    let fit = GaussianMixture::params(2)
        .seed(1)
        .backend(Backend::Cpu)
        .fit(&data)
        .unwrap();
    let truth = GmmParams::new(
        CovarianceType::Full,
        vec![0.4, 0.6],
        vec![0.0, 1.0, -1.0, 4.0, 3.0, 2.0],
        vec![
            1.0, 0.6, 0.2, 0.6, 1.5, -0.4, 0.2, -0.4, 0.8, //
            0.7, -0.3, 0.1, -0.3, 1.2, 0.5, 0.1, 0.5, 1.0,
        ],
        3,
    )
    .unwrap();
    let oracle = FittedGmm::from_params(truth).unwrap().impute(&x).unwrap();
    let fitted = fit.impute(&x).unwrap();
    let rmse = |y: &Array2<f64>| -> f64 {
        let (mut s, mut n) = (0.0, 0);
        for ((a, b), h) in y.iter().zip(&truth_x).zip(&x) {
            if h.is_nan() {
                s += (a - b).powi(2);
                n += 1;
            }
        }
        (s / n as f64).sqrt()
    };
    // Column-mean imputation, for scale.
    let mut mean_imp = x.clone();
    for j in 0..3 {
        let col: Vec<f64> = x
            .column(j)
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect();
        let m = col.iter().sum::<f64>() / col.len() as f64;
        mean_imp
            .column_mut(j)
            .mapv_inplace(|v| if v.is_nan() { m } else { v });
    }
    let (r_fit, r_oracle, r_mean) = (rmse(&fitted), rmse(&oracle), rmse(&mean_imp));
    eprintln!(
        "imputation RMSE: fitted {r_fit:.4}, true parameters {r_oracle:.4}, column means {r_mean:.4}"
    );
    assert!(
        r_fit <= 1.01 * r_oracle,
        "fitted {r_fit} vs oracle {r_oracle}"
    );
    assert!(
        r_oracle < 0.6 * r_mean,
        "the data are informative: {r_oracle} vs {r_mean}"
    );
    assert!(
        x.iter()
            .zip(&fitted)
            .all(|(a, b)| a.is_nan() || a.to_bits() == b.to_bits())
    );
}

#[test]
fn bad_rows_are_errors_that_say_what_to_do() {
    let mut x = holey_data(50, 0.2, 2);
    x.row_mut(17).fill(f64::NAN);
    let gm = GaussianMixture::params(2).backend(Backend::Cpu);
    match gm.fit(&Dataset::from_array(&x).with_missing_values()) {
        Err(Error::NothingObserved { row }) => assert_eq!(row, 17),
        other => panic!("expected NothingObserved, got {other:?}"),
    }
    // Without the marking, NaN is a non-finite value.
    let x = holey_data(50, 0.2, 2);
    let first = x.iter().position(|v| v.is_nan()).unwrap();
    match gm.fit(&x) {
        Err(Error::NonFinite { row, column, .. }) => assert_eq!(row * 3 + column, first),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let fitted = gm
        .fit(&Dataset::from_array(&x).with_missing_values())
        .unwrap();
    assert!(matches!(
        fitted.score_samples(&x),
        Err(Error::NonFinite { .. })
    ));
    // Sample weights with missing values: refused.
    let w = vec![1.0; 50];
    let data = Dataset::from_array(&x)
        .with_missing_values()
        .with_sample_weights(w)
        .unwrap();
    let e = gm.fit(&data).unwrap_err().to_string();
    assert!(e.contains("sample weights"), "{e}");
}

#[test]
fn gpu_matches_cpu_with_missing_entries() {
    let Some(gpu) = common::gpu_backend("gpu_matches_cpu_with_missing_entries") else {
        return;
    };
    let x = holey_data(5000, 0.3, 31);
    let data = Dataset::from_array(&x).with_missing_values();
    for cov in CovarianceType::ALL {
        let fit = |backend| {
            GaussianMixture::params(2)
                .covariance(cov)
                .tol(0.0)
                .max_iter(8)
                .init(Init::Params(initial(cov)))
                .backend(backend)
                .missing_group_rows(100)
                .fit(&data)
                .unwrap()
        };
        let (g, c) = (fit(gpu), fit(Backend::Cpu));
        let report = g.backend_report().unwrap();
        assert_eq!(report.backend, Backend::Gpu, "{report:?}");
        close(
            g.lower_bound_trace(),
            c.lower_bound_trace(),
            2e-3,
            "lower bound",
        );
        close(g.params().weights(), c.params().weights(), 2e-3, "weights");
        close(g.params().means(), c.params().means(), 2e-3, "means");
        close(
            g.params().covariances(),
            c.params().covariances(),
            2e-3,
            "covariances",
        );
    }
}

#[test]
fn gpu_outputs_match_cpu_with_missing_entries() {
    // score_samples, predict_proba and impute with missing values on the GPU: every pattern
    // group of ≥ 100 rows (and the complete rows) through the GPU engine with the marginal
    // parameters, the rest on the CPU, against the CPU's streamed engine (f64) within 2e-3.
    let Some(gpu) = common::gpu_backend("gpu_outputs_match_cpu_with_missing_entries") else {
        return;
    };
    let x = holey_data(5000, 0.3, 41);
    let (n, d) = x.dim();
    let data = Dataset::from_array(&x).with_missing_values();
    let index = MissingIndex::build(&data).unwrap();
    let groups = group_datasets(&index, 100).unwrap();
    assert!(groups.len() >= 3, "several pattern groups on the GPU");
    for cov in CovarianceType::ALL {
        let model = GmmModel {
            covariance_type: cov,
            n_components: 2,
            n_features: d,
            reg_covar: REG,
        };
        let p = model.prepare(&initial(cov)).unwrap();
        let mut cpu = StreamEngine::new(&data, None, None, "");
        let mut g = MissingEngine::new(&index, &groups, gpu, cov, 2, Default::default()).unwrap();
        let report = g.report();
        assert_eq!(report.backend, Backend::Gpu, "{report:?}");
        assert!(
            report.reason.contains("rows of rare patterns on the CPU"),
            "{report:?}"
        );
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        g.log_likelihoods(&p, &mut a).unwrap();
        cpu.log_likelihoods(&p, &mut b).unwrap();
        close(&a, &b, 2e-3, &format!("{cov} log p(x_o)"));
        let (mut a, mut b) = (vec![0.0; n * 2], vec![0.0; n * 2]);
        g.responsibilities(&p, &mut a).unwrap();
        cpu.responsibilities(&p, &mut b).unwrap();
        close(&a, &b, 2e-3, &format!("{cov} responsibilities"));
        let (mut a, mut b) = (vec![0.0; n * d], vec![0.0; n * d]);
        g.impute(&p, &mut a).unwrap();
        cpu.impute(&p, &mut b).unwrap();
        close(&a, &b, 2e-3, &format!("{cov} imputed"));
        for (v, o) in a.iter().zip(x.iter()) {
            assert!(o.is_nan() || v.to_bits() == o.to_bits(), "observed changed");
        }
    }
    // Through the fitted model: with_backend(GPU) puts the complete rows on the GPU.
    let fitted = FittedGmm::from_params(initial(CovarianceType::Full)).unwrap();
    let (s_cpu, r_cpu) = fitted.score_samples_with_report(&data).unwrap();
    let gpu_model = fitted.clone().with_backend(gpu);
    let (s_gpu, r_gpu) = gpu_model.score_samples_with_report(&data).unwrap();
    assert_eq!(r_cpu.backend, Backend::Cpu);
    assert_eq!(r_gpu.backend, Backend::Gpu, "{r_gpu:?}");
    assert!(r_gpu.reason.contains("on the gpu engine"), "{r_gpu:?}");
    close(
        s_gpu.as_slice().unwrap(),
        s_cpu.as_slice().unwrap(),
        2e-3,
        "score_samples",
    );
    let (p_gpu, p_cpu) = (
        gpu_model.predict_proba(&data).unwrap(),
        fitted.predict_proba(&data).unwrap(),
    );
    close(
        p_gpu.as_slice().unwrap(),
        p_cpu.as_slice().unwrap(),
        2e-3,
        "predict_proba",
    );
    let (i_gpu, rep) = gpu_model.impute_with_report(&x).unwrap();
    assert_eq!(rep.backend, Backend::Gpu, "{rep:?}");
    close(
        i_gpu.as_slice().unwrap(),
        fitted.impute(&x).unwrap().as_slice().unwrap(),
        2e-3,
        "impute",
    );
}

#[test]
fn gpu_streamed_layout_matches_the_cpu_streamed_layout() {
    // The streamed layout on the GPU: the complete rows and the patterns of ≥ 100 rows on the
    // GPU engine (read from the dataset in place), the rest streamed on the CPU; against the
    // CPU's streamed layout (f64) within 2e-3: one E-step's statistics, the per-row outputs,
    // and 8 iterations of the fit, all four covariance types.
    let Some(gpu) = common::gpu_backend("gpu_streamed_layout_matches_the_cpu_streamed_layout")
    else {
        return;
    };
    let x = holey_data(5000, 0.3, 31);
    let (n, d) = x.dim();
    let data = Dataset::from_array(&x).with_missing_values();
    let scan = Scan::of(&data).unwrap();
    let groups = stream_groups(&data, &scan, 100).unwrap();
    assert!(groups.len() >= 3, "several pattern groups on the GPU");
    for cov in CovarianceType::ALL {
        let model = GmmModel {
            covariance_type: cov,
            n_components: 2,
            n_features: d,
            reg_covar: REG,
        };
        let p = model.prepare(&initial(cov)).unwrap();
        let mut cpu = StreamEngine::new(&data, None, None, "");
        let mut g = StreamEngine::with_engines(
            &data,
            None,
            Some(&scan),
            &groups,
            gpu,
            cov,
            2,
            Default::default(),
        )
        .unwrap();
        let report = g.report();
        assert_eq!(report.backend, Backend::Gpu, "{report:?}");
        assert!(
            report
                .reason
                .contains("on the gpu engine (read from the data in place)"),
            "{report:?}"
        );
        let s_gpu = flat(g.e_step(&p).unwrap(), &p.means);
        let s_cpu = flat(cpu.e_step(&p).unwrap(), &p.means);
        close(&s_gpu, &s_cpu, 2e-3, &format!("{cov} statistics"));
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        g.log_likelihoods(&p, &mut a).unwrap();
        cpu.log_likelihoods(&p, &mut b).unwrap();
        close(&a, &b, 2e-3, &format!("{cov} log p(x_o)"));
        let (mut a, mut b) = (vec![0.0; n * 2], vec![0.0; n * 2]);
        g.responsibilities(&p, &mut a).unwrap();
        cpu.responsibilities(&p, &mut b).unwrap();
        close(&a, &b, 2e-3, &format!("{cov} responsibilities"));
        let (mut a, mut b) = (vec![0.0; n * d], vec![0.0; n * d]);
        g.impute(&p, &mut a).unwrap();
        cpu.impute(&p, &mut b).unwrap();
        close(&a, &b, 2e-3, &format!("{cov} imputed"));
        for (v, o) in a.iter().zip(x.iter()) {
            assert!(o.is_nan() || v.to_bits() == o.to_bits(), "observed changed");
        }
        // The fit.
        let fit = |backend| {
            GaussianMixture::params(2)
                .covariance(cov)
                .tol(0.0)
                .max_iter(8)
                .init(Init::Params(initial(cov)))
                .backend(backend)
                .missing_layout(MissingLayout::Streamed)
                .missing_group_rows(100)
                .fit(&data)
                .unwrap()
        };
        let (g, c) = (fit(gpu), fit(Backend::Cpu));
        let report = g.backend_report().unwrap();
        assert_eq!(report.backend, Backend::Gpu, "{report:?}");
        assert!(report.reason.contains("streamed in chunks"), "{report:?}");
        close(
            g.lower_bound_trace(),
            c.lower_bound_trace(),
            2e-3,
            "lower bound",
        );
        close(g.params().weights(), c.params().weights(), 2e-3, "weights");
        close(g.params().means(), c.params().means(), 2e-3, "means");
        close(
            g.params().covariances(),
            c.params().covariances(),
            2e-3,
            "covariances",
        );
    }
}
