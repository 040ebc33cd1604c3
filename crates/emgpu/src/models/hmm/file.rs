//! The HMM's model file: `"model": "hmm"`, `covariance_type`, `n_features`, `n_components`,
//! `startprob` `[K]`, `transmat` `[K][K]`, `means` `[K][D]`, `covariances` in scikit-learn's shape
//! for the type, and how the fit went (`lower_bound`: the total log-likelihood of the last
//! E-step, `n_iter`, `converged`, `lower_bound_trace`).

use serde::{Deserialize, Serialize};

use super::{FittedHmm, HmmParams};
use crate::error::{Error, Result};
use crate::models::gmm::CovarianceType;
use crate::models::model_file::{self, MODEL_FORMAT, MODEL_VERSION, Nested, finite};

#[derive(Debug, Serialize, Deserialize)]
struct HmmFile {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    model: String,
    covariance_type: String,
    n_features: usize,
    n_components: usize,
    startprob: Nested,
    transmat: Nested,
    means: Nested,
    covariances: Nested,
    /// `null` when not finite (a model made from parameters has no lower bound).
    #[serde(default)]
    lower_bound: Option<f64>,
    #[serde(default)]
    n_iter: usize,
    #[serde(default)]
    converged: bool,
    #[serde(default)]
    lower_bound_trace: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
}

pub(super) fn write(m: &FittedHmm) -> String {
    let p = &m.params;
    let (k, d, cov) = (p.n_components(), p.n_features(), p.covariance_type());
    model_file::write(&HmmFile {
        format: Some(MODEL_FORMAT.into()),
        version: Some(MODEL_VERSION),
        model: "hmm".into(),
        covariance_type: cov.name().into(),
        n_features: d,
        n_components: k,
        startprob: Nested::from_flat(p.startprob(), &[k]),
        transmat: Nested::from_flat(p.transmat(), &[k, k]),
        means: Nested::from_flat(p.means(), &[k, d]),
        covariances: Nested::from_flat(p.covariances(), &cov.cov_shape(k, d)),
        lower_bound: finite(m.lower_bound),
        n_iter: m.n_iter,
        converged: m.converged,
        lower_bound_trace: m.lower_bound_trace.clone(),
        backend: m.report.as_ref().map(|r| r.backend.to_string()),
        device: m.report.as_ref().map(|r| r.device.clone()),
    })
}

pub(super) fn read(text: &str) -> Result<FittedHmm> {
    let f: HmmFile = model_file::read_with(text, "hmm", "a hidden Markov model", false)?;
    let cov: CovarianceType = f
        .covariance_type
        .parse()
        .map_err(|e: Error| Error::BadModel(e.to_string()))?;
    let (k, d) = (f.n_components, f.n_features);
    if k == 0 || d == 0 {
        return Err(Error::BadModel(format!(
            "a hidden Markov model needs at least one state and one feature (got {k} states, {d} features)"
        )));
    }
    let params = HmmParams::new(
        cov,
        f.startprob.to_flat(&[k], "startprob")?,
        f.transmat.to_flat(&[k, k], "transmat")?,
        f.means.to_flat(&[k, d], "means")?,
        f.covariances.to_flat(&cov.cov_shape(k, d), "covariances")?,
        d,
    )?;
    let mut m = FittedHmm::from_params(params)?;
    m.lower_bound = f.lower_bound.unwrap_or(f64::NAN);
    m.n_iter = f.n_iter;
    m.converged = f.converged;
    m.lower_bound_trace = f.lower_bound_trace;
    Ok(m)
}
