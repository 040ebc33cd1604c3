//! The Gaussian HMM on the CPU against hmmlearn: same sequences, same initial parameters (a warm
//! start), then the per-iteration log-likelihoods, the fitted parameters, the score, the Viterbi
//! paths and the posteriors must agree with hmmlearn's.
//!
//! The numbers come from `scripts/make_fixtures_hmm.py` (hmmlearn 0.3.3, numpy 2.4.6,
//! `GaussianHMM(covars_prior=0, init_params="", implementation="log")`), committed in
//! `tests/fixtures/hmmlearn_hmm.json`: all four covariance types, several sequences with one of
//! length 1, one sequence without lengths, a practically unvisited state (occupancy ~1e-10), and a
//! run that stops by hmmlearn's signed tolerance rule.

mod common;

use common::{assert_close, flatten};
use emgpu::models::hmm::{FittedHmm, GaussianHmm, HmmInit, HmmParams};
use emgpu::{Backend, CovarianceType, Dataset};
use serde_json::Value;

const RTOL: f64 = 1e-7;
const ATOL: f64 = 1e-9;

fn cases() -> Vec<Value> {
    let doc: Value = serde_json::from_str(include_str!("fixtures/hmmlearn_hmm.json")).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

fn params(case: &Value, which: &Value) -> HmmParams {
    let cov: CovarianceType = case["covariance_type"].as_str().unwrap().parse().unwrap();
    let d = case["n_features"].as_u64().unwrap() as usize;
    HmmParams::new(
        cov,
        flatten(&which["startprob"]),
        flatten(&which["transmat"]),
        flatten(&which["means"]),
        flatten(&which["covariances"]),
        d,
    )
    .unwrap()
}

struct Case {
    x: Vec<f64>,
    n: usize,
    d: usize,
    lengths: Option<Vec<usize>>,
}

impl Case {
    fn of(case: &Value) -> Self {
        let x = flatten(&case["X"]);
        let d = case["n_features"].as_u64().unwrap() as usize;
        let lengths = case["lengths"]
            .as_array()
            .map(|l| l.iter().map(|v| v.as_u64().unwrap() as usize).collect());
        Self {
            n: x.len() / d,
            x,
            d,
            lengths,
        }
    }
    fn data(&self) -> Dataset<'_> {
        let data = Dataset::from_slice(&self.x, self.n, self.d).unwrap();
        match &self.lengths {
            Some(l) => data.with_sequence_lengths(l.clone()).unwrap(),
            None => data,
        }
    }
}

fn states(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap() as usize)
        .collect()
}

/// The initial model's score, posteriors and Viterbi paths: one E-step, no fit.
#[test]
fn scores_posteriors_and_viterbi_of_the_initial_model_match_hmmlearn() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let c = Case::of(&case);
        let data = c.data();
        let model = FittedHmm::from_params(params(&case, &case["init"])).unwrap();
        let score = model.score(&data).unwrap();
        let want = case["init_score"].as_f64().unwrap();
        assert_close(
            &format!("{name}: init score"),
            &[score],
            &[want],
            1e-10,
            0.0,
        );
        let (lp, proba) = model.score_samples(&data).unwrap();
        assert_close(
            &format!("{name}: score_samples"),
            &[lp],
            &[want],
            1e-10,
            0.0,
        );
        let got: Vec<f64> = proba.iter().copied().collect();
        assert_close(
            &format!("{name}: init posteriors"),
            &got,
            &flatten(&case["init_posteriors"]),
            1e-8,
            1e-10,
        );
        let (vlp, path) = model.decode(&data).unwrap();
        let want_lp = case["init_viterbi_logprob"].as_f64().unwrap();
        assert_close(
            &format!("{name}: viterbi logprob"),
            &[vlp],
            &[want_lp],
            1e-10,
            0.0,
        );
        assert_eq!(
            path.to_vec(),
            states(&case["init_viterbi_states"]),
            "{name}: viterbi path"
        );
    }
}

/// Fits from the initial model: the same log-likelihood every iteration, the same parameters.
#[test]
fn fits_match_hmmlearn() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let c = Case::of(&case);
        let data = c.data();
        let init = params(&case, &case["init"]);
        let k = init.n_components();
        let tol = case["tol"].as_f64().unwrap();
        let fitted = GaussianHmm::params(k)
            .covariance(init.covariance_type())
            .init(HmmInit::Params(init))
            .max_iter(case["n_iter"].as_u64().unwrap() as usize)
            // hmmlearn runs n_iter iterations when tol is -1e300; emgpu says so with tol = 0.
            .tol(tol.max(0.0))
            .reg_covar(0.0)
            .backend(Backend::Cpu)
            .fit(&data)
            .unwrap();
        let exp = &case["expected"];
        let history = flatten(&exp["history"]);
        assert_eq!(
            fitted.n_iter(),
            exp["n_iter"].as_u64().unwrap() as usize,
            "{name}: n_iter"
        );
        assert_eq!(
            fitted.converged(),
            exp["converged_by_tol"].as_bool().unwrap(),
            "{name}: converged"
        );
        assert_close(
            &format!("{name}: history"),
            fitted.lower_bound_trace(),
            &history,
            1e-9,
            0.0,
        );
        assert_close(
            &format!("{name}: lower bound"),
            &[fitted.lower_bound()],
            &[*history.last().unwrap()],
            1e-9,
            0.0,
        );
        let want = params(&case, exp);
        let p = fitted.params();
        assert_close(
            &format!("{name}: startprob"),
            p.startprob(),
            want.startprob(),
            RTOL,
            ATOL,
        );
        assert_close(
            &format!("{name}: transmat"),
            p.transmat(),
            want.transmat(),
            RTOL,
            ATOL,
        );
        assert_close(
            &format!("{name}: means"),
            p.means(),
            want.means(),
            RTOL,
            ATOL,
        );
        assert_close(
            &format!("{name}: covariances"),
            p.covariances(),
            want.covariances(),
            RTOL,
            ATOL,
        );
        let score = fitted.score(&data).unwrap();
        assert_close(
            &format!("{name}: score"),
            &[score],
            &[exp["score"].as_f64().unwrap()],
            1e-9,
            0.0,
        );
        let (vlp, path) = fitted.decode(&data).unwrap();
        assert_close(
            &format!("{name}: viterbi logprob"),
            &[vlp],
            &[exp["viterbi_logprob"].as_f64().unwrap()],
            1e-9,
            0.0,
        );
        assert_eq!(
            path.to_vec(),
            states(&exp["viterbi_states"]),
            "{name}: viterbi path"
        );
        let proba: Vec<f64> = fitted
            .predict_proba(&data)
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_close(
            &format!("{name}: posteriors"),
            &proba,
            &flatten(&exp["posteriors"]),
            1e-6,
            1e-9,
        );
        // The log-likelihood never decreases (EM), here to rounding.
        for w in fitted.lower_bound_trace().windows(2) {
            assert!(
                w[1] >= w[0] - 1e-9 * w[0].abs(),
                "{name}: log-likelihood decreased: {w:?}"
            );
        }
    }
}

/// The model file keeps every parameter: written, read back, the same score.
#[test]
fn model_files_round_trip() {
    for case in cases() {
        let c = Case::of(&case);
        let model = FittedHmm::from_params(params(&case, &case["expected"])).unwrap();
        let back = FittedHmm::from_json(&model.to_json()).unwrap();
        assert_eq!(back.params(), model.params());
        let data = c.data();
        assert_eq!(back.score(&data).unwrap(), model.score(&data).unwrap());
    }
}
