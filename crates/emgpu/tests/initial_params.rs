//! `GaussianMixture::initial_params` and `KMeans::initial_centers` give exactly the start of a
//! seeded fit: a fit from them (explicit parameters / centers) equals the seeded fit on the CPU,
//! bit for bit. `emgpu validate` relies on this to start two backends from the same point.

use emgpu::synth::Workload;
use emgpu::{Backend, CovarianceType, Error, GaussianMixture, Init, KMeans, KMeansInit};
use ndarray::Array2;

/// Three overlapping groups in 3-D (so the first iterations still move), 300 rows.
fn data() -> Array2<f64> {
    let w = Workload {
        n: 300,
        d: 3,
        k: 3,
        covariance_type: CovarianceType::Full,
        seed: 11,
        spread: 2.0,
    };
    w.generate_f64().unwrap()
}

#[test]
fn a_fit_from_initial_params_is_the_seeded_fit() {
    let x = data();
    for init in [
        Init::Kmeans,
        Init::KMeansPlusPlus,
        Init::Random,
        Init::RandomFromData,
    ] {
        for cov in [
            CovarianceType::Full,
            CovarianceType::Tied,
            CovarianceType::Diag,
            CovarianceType::Spherical,
        ] {
            for seed in [0, 7] {
                let what = format!("{} {cov} seed {seed}", init.name());
                let gm = GaussianMixture::params(3)
                    .covariance(cov)
                    .init(init.clone())
                    .tol(0.0)
                    .max_iter(6)
                    .seed(seed)
                    .backend(Backend::Cpu);
                let start = gm.initial_params(&x).unwrap();
                let seeded = gm.fit(&x).unwrap();
                let from_start = gm
                    .clone()
                    .init(Init::Params(start.clone()))
                    .fit(&x)
                    .unwrap();
                assert_eq!(seeded.n_iter(), 6, "{what}");
                assert_eq!(
                    seeded.lower_bound_trace(),
                    from_start.lower_bound_trace(),
                    "{what}: lower bounds"
                );
                assert_eq!(seeded.params(), from_start.params(), "{what}: parameters");
                // The start is not the end: the fit moved away from it.
                assert_ne!(&start, seeded.params(), "{what}");
                // Same builder, same start.
                assert_eq!(gm.initial_params(&x).unwrap(), start, "{what}: repeatable");
            }
        }
    }
}

#[test]
fn initial_params_of_explicit_parameters_are_those_and_bad_input_is_refused() {
    let x = data();
    let gm = GaussianMixture::params(2)
        .covariance(CovarianceType::Diag)
        .backend(Backend::Cpu);
    let p = gm.initial_params(&x).unwrap();
    assert_eq!(
        gm.clone()
            .init(Init::Params(p.clone()))
            .initial_params(&x)
            .unwrap(),
        p
    );
    // Different seeds, different starts.
    assert_ne!(gm.clone().seed(1).initial_params(&x).unwrap(), p);
    let few = Array2::<f64>::zeros((2, 3));
    assert!(matches!(
        GaussianMixture::params(3).initial_params(&few),
        Err(Error::TooManyComponents { .. })
    ));
    assert!(matches!(
        GaussianMixture::params(0).initial_params(&x),
        Err(Error::InvalidParameter(_))
    ));
}

#[test]
fn a_kmeans_fit_from_initial_centers_is_the_seeded_fit() {
    let x = data();
    for init in [KMeansInit::KMeansPlusPlus, KMeansInit::Random] {
        for seed in [0, 3] {
            let km = KMeans::params(4)
                .init(init.clone())
                .n_init(1)
                .seed(seed)
                .backend(Backend::Cpu);
            let centers = km.initial_centers(&x).unwrap();
            assert_eq!(centers.dim(), (4, 3));
            // Each initial center is a data row (k-means++ and random both pick rows).
            for c in centers.rows() {
                assert!(x.rows().into_iter().any(|r| r == c), "{init:?}: {c}");
            }
            let seeded = km.fit(&x).unwrap();
            let from_start = km
                .clone()
                .init(KMeansInit::Centers(centers))
                .fit(&x)
                .unwrap();
            assert_eq!(seeded.cluster_centers(), from_start.cluster_centers());
            assert_eq!(seeded.inertia(), from_start.inertia());
            assert_eq!(seeded.n_iter(), from_start.n_iter());
            assert_eq!(seeded.labels(), from_start.labels());
        }
    }
}
