//! Model selection (`select_gmm`): BIC finds the number of components of well-separated
//! synthetic mixtures; rows, criteria and errors.

mod common;

use common::assert_close;
use emgpu::{
    Backend, CovarianceType, Criterion, Error, GaussianMixture, GmmParams, Init, select_gmm,
    select_gmm_with_progress,
};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `k` Gaussian blobs in 2-D on a circle of radius `10·k / π` (neighbours about 20 apart), with
/// unequal sizes and per-axis spreads.
fn mixture(k: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let r = 10.0 * k as f64 / std::f64::consts::PI;
    let mut rows = Vec::new();
    for c in 0..k {
        let a = 2.0 * std::f64::consts::PI * c as f64 / k as f64;
        let (cx, cy) = (r * a.cos(), r * a.sin());
        let (sx, sy) = (1.0 + 0.3 * c as f64, 1.5 - 0.2 * c as f64);
        for _ in 0..(60 + 25 * c) {
            let (zx, zy): (f64, f64) = (
                StandardNormal.sample(&mut rng),
                StandardNormal.sample(&mut rng),
            );
            rows.extend([cx + sx * zx, cy + sy * zy]);
        }
    }
    let n = rows.len() / 2;
    Array2::from_shape_vec((n, 2), rows).unwrap()
}

fn base() -> GaussianMixture {
    GaussianMixture::params(1).seed(3).backend(Backend::Cpu)
}

#[test]
fn bic_picks_the_true_number_of_components() {
    for (k, seed) in [(3, 1), (5, 2)] {
        let x = mixture(k, seed);
        let sel = select_gmm(&x, 1..=8, &[CovarianceType::Full], Criterion::Bic, &base()).unwrap();
        let table: Vec<(usize, f64)> = sel.rows.iter().map(|r| (r.n_components, r.bic)).collect();
        println!("true K = {k}: (K, BIC) = {table:?}");
        assert_eq!(sel.rows.len(), 8);
        assert_eq!(sel.best_row().n_components, k, "{table:?}");
        assert_eq!(sel.best_model().n_components(), k);
        // The row's criteria are those of the model it kept.
        let m = sel.best_model();
        assert_close(
            "bic",
            &[sel.best_row().bic],
            &[m.bic(&x).unwrap()],
            1e-10,
            0.0,
        );
        assert_close(
            "aic",
            &[sel.best_row().aic],
            &[m.aic(&x).unwrap()],
            1e-10,
            0.0,
        );
        assert_eq!(sel.best_row().lower_bound, m.lower_bound());
        let min = sel.rows.iter().map(|r| r.bic).fold(f64::INFINITY, f64::min);
        assert_eq!(sel.best_row().bic, min);
        for r in &sel.rows {
            assert!(r.fit_seconds >= 0.0 && r.n_iter >= 1 && r.lower_bound.is_finite());
        }
    }
}

#[test]
fn rows_cover_every_covariance_type_and_criterion() {
    let x = mixture(3, 4);
    let covs = [
        CovarianceType::Spherical,
        CovarianceType::Diag,
        CovarianceType::Full,
    ];
    let mut seen = Vec::new();
    let sel = select_gmm_with_progress(
        &x,
        [2, 3, 4],
        &covs,
        Criterion::Aic,
        &base().init(Init::KMeansPlusPlus).n_init(2),
        &mut |row| seen.push((row.covariance_type, row.n_components)),
    )
    .unwrap();
    let order: Vec<(CovarianceType, usize)> = covs
        .iter()
        .flat_map(|&c| [2, 3, 4].map(|k| (c, k)))
        .collect();
    assert_eq!(
        seen, order,
        "one callback per fit, covariance types outermost"
    );
    let rows: Vec<_> = sel
        .rows
        .iter()
        .map(|r| (r.covariance_type, r.n_components))
        .collect();
    assert_eq!(rows, order);
    assert_eq!(sel.criterion, Criterion::Aic);
    let min = sel.rows.iter().map(|r| r.aic).fold(f64::INFINITY, f64::min);
    assert_eq!(sel.best_row().aic, min);
    let best = sel.best_row().clone();
    assert_eq!(sel.best_model().covariance_type(), best.covariance_type);
    assert_eq!(sel.into_model().n_components(), best.n_components);
    assert_eq!("bic".parse::<Criterion>().unwrap(), Criterion::Bic);
    assert_eq!("aic".parse::<Criterion>().unwrap(), Criterion::Aic);
    assert!(
        "icl"
            .parse::<Criterion>()
            .unwrap_err()
            .to_string()
            .contains("bic or aic")
    );
}

#[test]
#[allow(clippy::reversed_empty_ranges)]
fn bad_ranges_and_settings_are_clear_errors() {
    let x = mixture(2, 5);
    let n = x.nrows();
    let full = [CovarianceType::Full];
    let msg = |r: Result<emgpu::Selection, Error>| r.unwrap_err().to_string();
    let m = msg(select_gmm(&x, 4..=3, &full, Criterion::Bic, &base()));
    assert!(m.contains("empty"), "{m}");
    let m = msg(select_gmm(&x, Vec::new(), &full, Criterion::Bic, &base()));
    assert!(m.contains("empty"), "{m}");
    let m = msg(select_gmm(&x, 1..=n + 1, &full, Criterion::Bic, &base()));
    assert!(
        m.contains(&format!("up to {}", n + 1)) && m.contains(&format!("{n} samples")),
        "{m}"
    );
    let m = msg(select_gmm(&x, 0..=3, &full, Criterion::Bic, &base()));
    assert!(m.contains("contains 0"), "{m}");
    let m = msg(select_gmm(
        &x,
        1..=3,
        &full,
        Criterion::Bic,
        &base().n_init(0),
    ));
    assert!(m.contains("n_init"), "{m}");
    let m = msg(select_gmm(&x, 1..=3, &[], Criterion::Bic, &base()));
    assert!(m.contains("covariance type"), "{m}");
    let p = GmmParams::new(
        CovarianceType::Full,
        vec![1.0],
        vec![0.0, 0.0],
        vec![1.0, 0.0, 0.0, 1.0],
        2,
    )
    .unwrap();
    let m = msg(select_gmm(
        &x,
        1..=3,
        &full,
        Criterion::Bic,
        &base().init(Init::Params(p)),
    ));
    assert!(m.contains("explicit parameters"), "{m}");
    let m = msg(select_gmm(
        &x,
        1..=3,
        &full,
        Criterion::Bic,
        &base().tol(-1.0),
    ));
    assert!(m.contains("tol"), "{m}");
}
