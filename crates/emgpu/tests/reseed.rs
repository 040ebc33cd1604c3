//! Re-seeding of collapsed components on a constructed collapse: one component of the initial
//! model sits far from every point, so its first M-step leaves it empty (weight ≈ 1e-18, as
//! scikit-learn). With re-seeding it moves to the worst-explained point and the fit ends with
//! no weight below 1e-6, every number finite and a lower bound at least that of the fit
//! without it.

use emgpu::synth::blobs;
use emgpu::{Backend, CovarianceType, FittedGmm, GaussianMixture, GmmParams, Init};

/// Three blobs in 2-D and an initial model of three components, the third far from them all.
fn collapse_case(cov: CovarianceType) -> (ndarray::Array2<f64>, GmmParams) {
    let (x, _) = blobs(
        &[[0.0, 5.0], [6.0, 5.0], [3.0, 11.0]],
        &[400, 400, 400],
        &[1.0, 1.0, 1.0],
        3,
    )
    .unwrap();
    let means = vec![0.0, 5.0, 4.5, 7.5, 500.0, -500.0];
    let covs = match cov {
        CovarianceType::Full => [1.0, 0.0, 0.0, 1.0].repeat(3),
        CovarianceType::Tied => vec![1.0, 0.0, 0.0, 1.0],
        CovarianceType::Diag => vec![1.0; 6],
        CovarianceType::Spherical => vec![1.0; 3],
    };
    let init = GmmParams::new(cov, vec![0.4, 0.4, 0.2], means, covs, 2).unwrap();
    (x, init)
}

fn all_finite(m: &FittedGmm) -> bool {
    let p = m.params();
    p.weights()
        .iter()
        .chain(p.means())
        .chain(p.covariances())
        .all(|v| v.is_finite())
        && m.lower_bound().is_finite()
}

#[test]
fn a_collapsed_component_is_reseeded() {
    for cov in CovarianceType::ALL {
        let (x, init) = collapse_case(cov);
        let base = GaussianMixture::params(3)
            .covariance(cov)
            .init(Init::Params(init))
            .tol(1e-6)
            .max_iter(300)
            .backend(Backend::Cpu);
        let plain = base.clone().fit(&x).unwrap();
        // scikit-learn's behaviour: the empty component stays, tiny and finite.
        assert!(all_finite(&plain), "{cov}");
        assert!(
            plain.params().weights()[2] < 1e-12,
            "{cov}: {:?}",
            plain.params().weights()
        );
        assert!(plain.reseeds().is_empty());

        let reseeded = base.reseed(true).fit(&x).unwrap();
        assert!(all_finite(&reseeded), "{cov}");
        assert!(!reseeded.reseeds().is_empty(), "{cov}");
        let first = &reseeded.reseeds()[0];
        assert_eq!((first.step, first.component), (1, 2), "{cov}: {first:?}");
        assert!(first.row < x.nrows() && first.weight < 1e-6);
        let w = reseeded.params().weights();
        assert!(w.iter().all(|&w| w >= 1e-6), "{cov}: {w:?}");
        assert!(
            reseeded.lower_bound() >= plain.lower_bound(),
            "{cov}: {} < {}",
            reseeded.lower_bound(),
            plain.lower_bound(),
        );
        assert!(reseeded.reseeds().len() <= 3 * 3);
        // The events travel in the model file.
        let back = FittedGmm::from_json(&reseeded.to_json()).unwrap();
        assert_eq!(back.reseeds(), reseeded.reseeds());
    }
}

#[test]
fn reseeding_changes_nothing_when_nothing_collapses() {
    let (x, _) = blobs(&[[0.0, 0.0], [8.0, 0.0]], &[300, 300], &[1.0, 1.0], 5).unwrap();
    let base = GaussianMixture::params(2)
        .init(Init::KMeansPlusPlus)
        .backend(Backend::Cpu);
    let plain = base.clone().fit(&x).unwrap();
    let with = base.reseed(true).fit(&x).unwrap();
    assert!(with.reseeds().is_empty());
    assert_eq!(with.params(), plain.params());
    assert_eq!(with.lower_bound_trace(), plain.lower_bound_trace());
}

#[test]
fn online_fits_reseed_too() {
    let (x, init) = collapse_case(CovarianceType::Full);
    let base = GaussianMixture::params(3)
        .init(Init::Params(init))
        .backend(Backend::Cpu)
        .online(Some(emgpu::em::online::OnlineOptions {
            batch_size: 50,
            passes: 10,
            ..Default::default()
        }));
    let plain = base.clone().fit(&x).unwrap();
    let with = base.reseed(true).fit(&x).unwrap();
    assert!(!with.reseeds().is_empty());
    let e = &with.reseeds()[0];
    assert_eq!(e.component, 2);
    // Without re-seeding the stale component fades as the step sizes forget the start.
    assert!(
        plain.params().weights()[2] < 1e-6,
        "{:?}",
        plain.params().weights()
    );
    assert!(with.params().weights().iter().all(|&w| w >= 1e-6));
    assert!(all_finite(&with));
    assert!(with.lower_bound() >= plain.lower_bound());
}

#[test]
fn thresholds_outside_the_range_are_refused() {
    let (x, _) = collapse_case(CovarianceType::Diag);
    for t in [0.0, 1e-7, 2e-3, f64::NAN] {
        let err = GaussianMixture::params(2)
            .backend(Backend::Cpu)
            .reseed_threshold(t)
            .fit(&x)
            .unwrap_err();
        assert!(
            matches!(err, emgpu::Error::InvalidParameter(_)),
            "{t}: {err}"
        );
    }
}
