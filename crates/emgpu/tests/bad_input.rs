//! Bad input to the library: each case returns the documented error with a message that says
//! what to do; nothing panics.

use emgpu::{Backend, CovarianceType, Error, FittedGmm, GaussianMixture, GmmParams, Init};
use ndarray::{Array2, array};

fn data() -> Array2<f64> {
    Array2::from_shape_fn((20, 2), |(i, j)| {
        (i as f64 * 0.37 + j as f64 * 1.3).sin() + i as f64 * 0.1
    })
}

fn cpu(k: usize) -> GaussianMixture {
    GaussianMixture::params(k).backend(Backend::Cpu)
}

#[test]
fn non_finite_data_names_row_and_column() {
    for (bad, shown) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ] {
        let mut x = data();
        x[[13, 1]] = bad;
        let err = cpu(2).fit(&x).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NonFinite {
                    row: 13,
                    column: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("row 13") && msg.contains("column 1") && msg.contains(shown),
            "{msg}"
        );
    }
    // f32 data too.
    let mut x = data().mapv(|v| v as f32);
    x[[0, 0]] = f32::NAN;
    assert!(matches!(
        cpu(2).fit(&x),
        Err(Error::NonFinite {
            row: 0,
            column: 0,
            ..
        })
    ));
}

#[test]
fn component_count_is_checked() {
    let x = data();
    let err = cpu(0).fit(&x).unwrap_err();
    assert!(
        err.to_string().contains("n_components must be at least 1"),
        "{err}"
    );
    let err = cpu(21).fit(&x).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooManyComponents {
                n_components: 21,
                n_samples: 20
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("use at most 20 components"),
        "{err}"
    );
    // K = N is allowed.
    assert!(cpu(20).reg_covar(1e-3).fit(&x).is_ok());
}

#[test]
fn empty_data_is_an_error() {
    let x = Array2::<f64>::zeros((0, 3));
    assert!(matches!(
        cpu(1).fit(&x),
        Err(Error::EmptyData {
            n_samples: 0,
            n_features: 3
        })
    ));
    let x = Array2::<f64>::zeros((4, 0));
    assert!(matches!(cpu(1).fit(&x), Err(Error::EmptyData { .. })));
}

#[test]
fn settings_out_of_range_are_errors() {
    let x = data();
    let cases = [
        (cpu(2).tol(-1.0), "tol"),
        (cpu(2).tol(f64::NAN), "tol"),
        (cpu(2).reg_covar(-1e-6), "reg_covar"),
        (cpu(2).max_iter(0), "max_iter"),
        (cpu(2).n_init(0), "n_init"),
    ];
    for (gm, word) in cases {
        let err = gm.fit(&x).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter(_)), "{err:?}");
        assert!(err.to_string().contains(word), "{err}");
    }
}

#[test]
fn dimension_mismatch_in_predict_and_warm_start() {
    let x = data();
    let m = cpu(2).fit(&x).unwrap();
    let wide = Array2::<f64>::zeros((5, 3));
    let err = m.predict(&wide).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DimensionMismatch {
                expected: 2,
                got: 3
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("pass data with 2 columns"),
        "{err}"
    );
    assert!(matches!(
        m.score(&wide),
        Err(Error::DimensionMismatch { .. })
    ));
    let err = cpu(2)
        .init(Init::Params(m.params().clone()))
        .fit(&wide)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::DimensionMismatch {
                expected: 2,
                got: 3
            }
        ),
        "{err:?}"
    );
    // A warm start must match the fit's K and covariance type.
    let err = cpu(3)
        .init(Init::Params(m.params().clone()))
        .fit(&x)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("initial model has 2 full components"),
        "{err}"
    );
}

#[test]
fn singular_covariance_says_increase_reg_covar() {
    // Collapsed samples (every point the same): with reg_covar = 0 every covariance type is
    // singular, exactly (scikit-learn fails the same way on these data).
    let x = Array2::from_elem((30, 2), 0.0);
    for cov_type in CovarianceType::ALL {
        let err = cpu(1)
            .covariance(cov_type)
            .reg_covar(0.0)
            .fit(&x)
            .unwrap_err();
        assert!(
            matches!(err, Error::IllConditioned { .. }),
            "{cov_type}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("increase reg_covar") && msg.contains("reduce the number of components"),
            "{msg}"
        );
        // The default reg_covar makes it well-defined.
        assert!(cpu(1).covariance(cov_type).fit(&x).is_ok(), "{cov_type}");
    }
}

#[test]
fn invalid_initial_parameters_are_rejected() {
    let bad_shape = GmmParams::new(
        CovarianceType::Diag,
        vec![0.5, 0.5],
        vec![0.0; 4],
        vec![1.0; 3],
        2,
    );
    assert!(matches!(bad_shape, Err(Error::BadModel(m)) if m.contains("shape [2, 2]")));
    let bad_weights = GmmParams::new(
        CovarianceType::Spherical,
        vec![0.7, 0.7],
        vec![0.0; 4],
        vec![1.0; 2],
        2,
    );
    assert!(matches!(bad_weights, Err(Error::BadModel(m)) if m.contains("sum to 1")));
    let not_pd = GmmParams::new(
        CovarianceType::Tied,
        vec![1.0],
        vec![0.0; 2],
        vec![1.0, 2.0, 2.0, 1.0],
        2,
    );
    assert!(matches!(not_pd, Err(Error::BadModel(m)) if m.contains("not positive definite")));
    // A non-symmetric covariance would be half ignored by the factorization: refused.
    let asymmetric = GmmParams::new(
        CovarianceType::Full,
        vec![0.5, 0.5],
        vec![0.0; 4],
        vec![1.0, 0.0, 0.0, 1.0, 2.0, 0.5, 0.1, 2.0],
        2,
    );
    assert!(
        matches!(&asymmetric, Err(Error::BadModel(m)) if m.contains("component 1 is not symmetric: [1][0] = 0.1 but [0][1] = 0.5")),
        "{asymmetric:?}"
    );
    // Rounding-level asymmetry (a matrix written with 17 digits) is accepted.
    let nearly = GmmParams::new(
        CovarianceType::Tied,
        vec![1.0],
        vec![0.0; 2],
        vec![2.0, 0.3, 0.3 + 1e-15, 1.0],
        2,
    );
    assert!(nearly.is_ok());
}

#[test]
fn model_json_errors_say_what_is_wrong() {
    let m = cpu(2).fit(&data()).unwrap();
    let good: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    let check = |doc: serde_json::Value, want: &str| {
        let err = FittedGmm::from_json(&doc.to_string()).unwrap_err();
        assert!(err.to_string().contains(want), "want {want:?} in {err}");
    };
    assert!(
        FittedGmm::from_json("{not json")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON")
    );
    let mut doc = good.clone();
    doc["format"] = "other".into();
    check(doc, "\"format\" must be \"emgpu-model\"");
    let mut doc = good.clone();
    doc["model"] = "hmm".into();
    check(doc, "not a Gaussian mixture");
    let mut doc = good.clone();
    doc["means"] = serde_json::json!([[0.0, 1.0]]);
    check(doc, "\"means\" does not have the shape");
    let mut doc = good.clone();
    doc["covariance_type"] = "banana".into();
    check(doc, "unknown covariance type");
    let mut doc = good.clone();
    doc.as_object_mut().unwrap().remove("weights");
    check(doc, "missing field \"weights\"");
    let mut doc = good;
    doc["version"] = 99.into();
    check(doc, "\"version\" must be");
}

#[test]
fn sample_rejects_zero_samples() {
    let x = array![
        [0.0, 0.0],
        [0.1, 0.2],
        [5.0, 5.0],
        [5.1, 4.9],
        [0.2, -0.1],
        [4.8, 5.2]
    ];
    let m = cpu(2).reg_covar(1e-2).fit(&x).unwrap();
    assert!(matches!(m.sample(0, 1), Err(Error::InvalidParameter(_))));
}
