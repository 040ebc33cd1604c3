//! The Gaussian HMM as an EM [`Model`]: hmmlearn's maximum-likelihood M-step.

use super::{HmmParams, HmmPrepared, HmmStats};
use crate::em::{Model, Step};
use crate::error::Result;
use crate::models::gmm::{CovarianceType, GmmParams, WeightNorm, estimate_parameters_exact};

/// A Gaussian HMM of a given shape as an EM [`Model`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HmmModel {
    /// Covariance structure of the emissions.
    pub covariance_type: CovarianceType,
    /// Number of states K.
    pub n_components: usize,
    /// Number of features D.
    pub n_features: usize,
    /// Non-negative regularization added to the diagonal of the emission covariances (as the
    /// Gaussian mixture's `reg_covar`; 0 gives hmmlearn's update with `covars_prior = 0`).
    pub reg_covar: f64,
}

impl Model for HmmModel {
    type Params = HmmParams;
    type Prepared = HmmPrepared;
    type Stats = HmmStats;

    fn prepare(&self, params: &HmmParams) -> Result<HmmPrepared> {
        params
            .prepare()
            .map_err(|e| crate::models::gmm::with_reg(e, self.reg_covar))
    }

    /// hmmlearn's update (`startprob_prior = transmat_prior = 1`, `means_weight = 0`,
    /// `covars_prior = 0`): `startprob ∝ Σ γ_0`, `transmat_i· ∝ Σ ξ(i, ·)`, and the emissions are
    /// the Gaussian mixture's estimate from the γ-weighted moments, dividing by the occupancy
    /// `Σ_t γ_tk` itself as hmmlearn (not by occupancy + 10·eps as scikit-learn's mixtures), with
    /// `reg_covar` on the diagonal. Where hmmlearn produces NaN (0/0) for a state whose occupancy
    /// is exactly 0 (it cannot be reached), that state gets mean 0 and covariance `reg_covar·I`
    /// (an error asking for `reg_covar > 0` when it is 0), as an empty mixture component. A state
    /// with no expected outgoing transition gets a uniform row, where hmmlearn leaves a row of
    /// zeros (which its own checks then refuse); it changes no likelihood.
    fn m_step(&self, stats: &HmmStats) -> Result<HmmParams> {
        let k = self.n_components;
        let total: f64 = stats.start.iter().sum();
        let startprob = if total > 0.0 {
            stats.start.iter().map(|v| v / total).collect()
        } else {
            vec![1.0 / k as f64; k]
        };
        let mut transmat = stats.trans.clone();
        for row in transmat.chunks_exact_mut(k) {
            let s: f64 = row.iter().sum();
            if s > 0.0 {
                row.iter_mut().for_each(|v| *v /= s);
            } else {
                row.fill(1.0 / k as f64);
            }
        }
        let mixture = estimate_parameters_exact(&stats.emission, self.reg_covar, WeightNorm::Sum)
            .map_err(|e| crate::models::gmm::with_reg(e, self.reg_covar))?;
        let emission = GmmParams::from_parts(
            mixture.covariance_type(),
            vec![1.0 / k as f64; k],
            mixture.means().to_vec(),
            mixture.covariances().to_vec(),
            self.n_features,
        );
        Ok(HmmParams::from_parts(startprob, transmat, emission))
    }

    /// hmmlearn's count: `(K − 1) + K(K − 1) + K·D` plus the covariance parameters.
    fn n_parameters(&self) -> usize {
        let (k, d) = (self.n_components, self.n_features);
        (k - 1) + k * (k - 1) + k * d + self.covariance_type.n_cov_parameters(k, d)
    }

    fn numerical_advice(&self) -> &'static str {
        "scale the data (values this large or small overflow) or increase reg_covar"
    }

    /// hmmlearn's monitor: converged when the total log-likelihood rose by less than `tol`
    /// (signed: a decrease also stops). `tol = 0` runs `max_iter` iterations.
    fn converged(&self, step: &Step<'_, Self>, tol: f64) -> (bool, f64) {
        let change = step.lower_bound - step.previous_lower_bound;
        (tol > 0.0 && change < tol, change)
    }
}
