//! The CPU backend against scikit-learn: same data, same initial parameters (a warm start), a
//! fixed number of iterations with tol = 0 (and converging runs with tol = 1e-3), then every
//! fitted quantity must agree to 1e-6 relative.
//!
//! The numbers come from `scripts/make_fixtures.py` (scikit-learn 1.9.1, numpy 2.4.6), committed
//! in `tests/fixtures/sklearn_gmm.json`.

mod common;

use common::{assert_close, flatten};
use emgpu::{Backend, CovarianceType, FittedGmm, GaussianMixture, GmmParams, Init};
use ndarray::Array2;
use serde_json::Value;

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-9;

fn cases() -> Vec<Value> {
    let text = include_str!("fixtures/sklearn_gmm.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

fn data(case: &Value) -> Array2<f64> {
    let rows = case["x"].as_array().unwrap();
    let d = rows[0].as_array().unwrap().len();
    Array2::from_shape_vec((rows.len(), d), flatten(&case["x"])).unwrap()
}

fn fit_case(case: &Value, backend: Backend) -> (FittedGmm, Array2<f64>) {
    let x = data(case);
    let cov: CovarianceType = case["covariance_type"].as_str().unwrap().parse().unwrap();
    let k = case["n_components"].as_u64().unwrap() as usize;
    let init = GmmParams::new(
        cov,
        flatten(&case["weights_init"]),
        flatten(&case["means_init"]),
        flatten(&case["covariances_init"]),
        x.ncols(),
    )
    .unwrap();
    let fitted = GaussianMixture::params(k)
        .covariance(cov)
        .tol(case["tol"].as_f64().unwrap())
        .reg_covar(case["reg_covar"].as_f64().unwrap())
        .max_iter(case["max_iter"].as_u64().unwrap() as usize)
        .init(Init::Params(init))
        .backend(backend)
        .fit(&x)
        .unwrap();
    (fitted, x)
}

#[test]
fn cpu_matches_scikit_learn_on_every_fixture() {
    let cases = cases();
    assert!(cases.len() >= 17);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let e = &case["expected"];
        let (m, x) = fit_case(case, Backend::Cpu);
        let what = |s: &str| format!("{name}: {s}");
        assert_eq!(
            m.n_iter() as u64,
            e["n_iter"].as_u64().unwrap(),
            "{name}: n_iter"
        );
        assert_eq!(
            m.converged(),
            e["converged"].as_bool().unwrap(),
            "{name}: converged"
        );
        assert_close(
            &what("lower_bound"),
            &[m.lower_bound()],
            &[e["lower_bound"].as_f64().unwrap()],
            RTOL,
            ATOL,
        );
        assert_close(
            &what("weights"),
            m.weights().as_slice().unwrap(),
            &flatten(&e["weights"]),
            RTOL,
            ATOL,
        );
        assert_close(
            &what("means"),
            m.means().as_slice().unwrap(),
            &flatten(&e["means"]),
            RTOL,
            ATOL,
        );
        assert_close(
            &what("covariances"),
            m.covariances().as_slice().unwrap(),
            &flatten(&e["covariances"]),
            RTOL,
            ATOL,
        );
        if let Some(lbs) = e.get("lower_bounds") {
            assert_close(
                &what("lower_bound_trace"),
                m.lower_bound_trace(),
                &flatten(lbs),
                RTOL,
                ATOL,
            );
        }
        assert_close(
            &what("score"),
            &[m.score(&x).unwrap()],
            &[e["score"].as_f64().unwrap()],
            RTOL,
            ATOL,
        );
        assert_close(
            &what("bic"),
            &[m.bic(&x).unwrap()],
            &[e["bic"].as_f64().unwrap()],
            RTOL,
            ATOL,
        );
        assert_close(
            &what("aic"),
            &[m.aic(&x).unwrap()],
            &[e["aic"].as_f64().unwrap()],
            RTOL,
            ATOL,
        );
        let head = x.slice(ndarray::s![..10.min(x.nrows()), ..]).to_owned();
        let ss = m.score_samples(&head).unwrap();
        assert_close(
            &what("score_samples"),
            ss.as_slice().unwrap(),
            &flatten(&e["score_samples_head"]),
            RTOL,
            ATOL,
        );
        let pp = m.predict_proba(&head).unwrap();
        assert_close(
            &what("predict_proba"),
            pp.as_slice().unwrap(),
            &flatten(&e["predict_proba_head"]),
            RTOL,
            1e-8,
        );
    }
}

#[test]
fn model_json_round_trips_exactly() {
    for case in cases().iter().take(12) {
        let (m, x) = fit_case(case, Backend::Cpu);
        let back = FittedGmm::from_json(&m.to_json()).unwrap();
        assert_eq!(back.params(), m.params());
        assert_eq!(back.n_iter(), m.n_iter());
        assert_eq!(back.lower_bound_trace(), m.lower_bound_trace());
        assert_eq!(back.score(&x).unwrap(), m.score(&x).unwrap());
    }
}
