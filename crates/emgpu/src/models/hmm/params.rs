//! The parameters of a Gaussian hidden Markov model and their preparation for an E-step.

use crate::error::{Error, Result};
use crate::models::gmm::{CovarianceType, GmmParams, Prepared};

/// Tolerance of the check that `startprob` and every row of `transmat` sum to 1.
pub const SUM_TOLERANCE: f64 = 1e-6;

/// Parameters of a Gaussian HMM with K states in D dimensions: the initial state distribution
/// `startprob` `[K]`, the transition matrix `transmat` `[K][K]` (row `i`: from state `i`), and one
/// Gaussian emission per state (means `[K][D]`, covariances in scikit-learn's shape for the
/// covariance type).
#[derive(Debug, Clone, PartialEq)]
pub struct HmmParams {
    startprob: Vec<f64>,
    transmat: Vec<f64>,
    /// The emissions as a mixture with uniform weights (the weights are not used).
    emission: GmmParams,
}

impl HmmParams {
    /// Checks shapes and values (parameters from outside: files, users): `startprob` and every
    /// row of `transmat` non-negative and summing to 1 within [`SUM_TOLERANCE`], means finite,
    /// covariances positive definite. `transmat` is row-major `[K][K]`; `covariances` as
    /// [`GmmParams::new`].
    pub fn new(
        covariance_type: CovarianceType,
        startprob: Vec<f64>,
        transmat: Vec<f64>,
        means: Vec<f64>,
        covariances: Vec<f64>,
        n_features: usize,
    ) -> Result<Self> {
        let k = startprob.len();
        if k == 0 {
            return Err(Error::BadModel(
                "a hidden Markov model needs at least one state (startprob is empty)".into(),
            ));
        }
        check_distribution("startprob", &startprob)?;
        if transmat.len() != k * k {
            return Err(Error::BadModel(format!(
                "transmat must have shape [{k}, {k}] ({} values) for {k} states, got {} values",
                k * k,
                transmat.len()
            )));
        }
        for (i, row) in transmat.chunks_exact(k).enumerate() {
            check_distribution(&format!("row {i} of transmat"), row)?;
        }
        let weights = vec![1.0 / k as f64; k];
        let emission = GmmParams::new(covariance_type, weights, means, covariances, n_features)
            .map_err(|e| match e {
                Error::BadModel(m) => Error::BadModel(m.replace("component", "state")),
                other => other,
            })?;
        Ok(Self {
            startprob,
            transmat,
            emission,
        })
    }

    /// From parts the library computed (an M-step): no checks.
    pub(crate) fn from_parts(startprob: Vec<f64>, transmat: Vec<f64>, emission: GmmParams) -> Self {
        Self {
            startprob,
            transmat,
            emission,
        }
    }

    /// Number of states K.
    pub fn n_components(&self) -> usize {
        self.startprob.len()
    }
    /// Number of features D.
    pub fn n_features(&self) -> usize {
        self.emission.n_features()
    }
    /// Covariance structure of the emissions.
    pub fn covariance_type(&self) -> CovarianceType {
        self.emission.covariance_type()
    }
    /// Initial state distribution `[K]`.
    pub fn startprob(&self) -> &[f64] {
        &self.startprob
    }
    /// Transition matrix, row-major `[K][K]`.
    pub fn transmat(&self) -> &[f64] {
        &self.transmat
    }
    /// Emission means `[K][D]`.
    pub fn means(&self) -> &[f64] {
        self.emission.means()
    }
    /// Emission covariances (scikit-learn's shape for the type, flattened).
    pub fn covariances(&self) -> &[f64] {
        self.emission.covariances()
    }
    /// The emissions as a Gaussian mixture with uniform weights.
    pub fn emission(&self) -> &GmmParams {
        &self.emission
    }

    /// What an E-step needs: the emissions' Cholesky factors (log-weights zero, so the mixture's
    /// log-joint is the emission log-density) and the logs of `startprob` and `transmat`.
    pub fn prepare(&self) -> Result<HmmPrepared> {
        let mut emission = self.emission.prepare()?;
        emission.log_weights.fill(0.0);
        Ok(HmmPrepared {
            log_startprob: self.startprob.iter().map(|p| p.ln()).collect(),
            log_transmat: self.transmat.iter().map(|p| p.ln()).collect(),
            startprob: self.startprob.clone(),
            transmat: self.transmat.clone(),
            emission,
        })
    }
}

/// An error unless `p` is a probability vector (finite, ≥ 0, sum 1 within [`SUM_TOLERANCE`]).
fn check_distribution(what: &str, p: &[f64]) -> Result<()> {
    if let Some(v) = p.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(Error::BadModel(format!(
            "{what} must be finite and non-negative, found {v}"
        )));
    }
    let sum: f64 = p.iter().sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(Error::BadModel(format!(
            "{what} must sum to 1 (within {SUM_TOLERANCE:e}), it sums to {sum}"
        )));
    }
    Ok(())
}

/// [`HmmParams`] prepared for an E-step.
#[derive(Debug, Clone, PartialEq)]
pub struct HmmPrepared {
    /// The emissions (log-weights zero: `log_joint_point` gives `log b_k(x)`).
    pub emission: Prepared,
    /// `startprob` `[K]`.
    pub startprob: Vec<f64>,
    /// `transmat` `[K][K]`.
    pub transmat: Vec<f64>,
    /// `ln startprob` (−∞ where 0).
    pub log_startprob: Vec<f64>,
    /// `ln transmat` (−∞ where 0).
    pub log_transmat: Vec<f64>,
}

impl HmmPrepared {
    /// Number of states K.
    pub fn n_components(&self) -> usize {
        self.startprob.len()
    }
    /// Number of features D.
    pub fn n_features(&self) -> usize {
        self.emission.n_features
    }
    /// `log b_k(x_t)` for rows `x` (`[T][D]`) into `out` (`[T][K]`): the reference formula
    /// ([`Prepared::log_joint_point`] with zero log-weights).
    pub fn emission_log_densities(&self, x: &[f64], out: &mut [f64]) {
        let (k, d) = (self.n_components(), self.n_features());
        for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(k)) {
            self.emission.log_joint_point(row, o);
        }
    }
}
