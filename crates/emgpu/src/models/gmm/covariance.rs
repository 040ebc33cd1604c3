//! The four covariance structures of scikit-learn's `GaussianMixture`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the covariance of each component is constrained (scikit-learn's `covariance_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CovarianceType {
    /// Each component has its own general covariance matrix, shape `[K, D, D]`.
    #[default]
    Full,
    /// All components share one general covariance matrix, shape `[D, D]`.
    Tied,
    /// Each component has its own diagonal covariance, shape `[K, D]`.
    Diag,
    /// Each component has its own single variance, shape `[K]`.
    Spherical,
}

impl CovarianceType {
    /// All four, in scikit-learn's order of documentation.
    pub const ALL: [CovarianceType; 4] = [
        CovarianceType::Full,
        CovarianceType::Tied,
        CovarianceType::Diag,
        CovarianceType::Spherical,
    ];

    /// The name scikit-learn uses (`"full"`, `"tied"`, `"diag"`, `"spherical"`).
    pub fn name(self) -> &'static str {
        match self {
            CovarianceType::Full => "full",
            CovarianceType::Tied => "tied",
            CovarianceType::Diag => "diag",
            CovarianceType::Spherical => "spherical",
        }
    }

    /// Number of f64 values of the covariances (and of the precision Cholesky factors) for
    /// `k` components of `d` features.
    pub fn cov_len(self, k: usize, d: usize) -> usize {
        match self {
            CovarianceType::Full => k * d * d,
            CovarianceType::Tied => d * d,
            CovarianceType::Diag => k * d,
            CovarianceType::Spherical => k,
        }
    }

    /// The shape of the covariances array, as scikit-learn's `covariances_`.
    pub fn cov_shape(self, k: usize, d: usize) -> Vec<usize> {
        match self {
            CovarianceType::Full => vec![k, d, d],
            CovarianceType::Tied => vec![d, d],
            CovarianceType::Diag => vec![k, d],
            CovarianceType::Spherical => vec![k],
        }
    }

    /// Free parameters of the covariances (for BIC/AIC), as scikit-learn's `_n_parameters`.
    pub fn n_cov_parameters(self, k: usize, d: usize) -> usize {
        match self {
            CovarianceType::Full => k * d * (d + 1) / 2,
            CovarianceType::Tied => d * (d + 1) / 2,
            CovarianceType::Diag => k * d,
            CovarianceType::Spherical => k,
        }
    }
}

impl std::fmt::Display for CovarianceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CovarianceType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(CovarianceType::Full),
            "tied" => Ok(CovarianceType::Tied),
            "diag" => Ok(CovarianceType::Diag),
            "spherical" => Ok(CovarianceType::Spherical),
            other => Err(Error::param(format!(
                "unknown covariance type {other:?}; use one of full, tied, diag, spherical"
            ))),
        }
    }
}
