//! Parameters of a Gaussian mixture, and the form the E-step consumes.

use ndarray::{Array1, Array2, ArrayD, IxDyn};

use super::CovarianceType;
use crate::error::{Error, Result};
use crate::numerics::linalg::precision_cholesky;

/// `ln(2π)`.
pub(crate) const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Weights, means and covariances of a Gaussian mixture, in scikit-learn's shapes (flattened
/// row-major here; see [`GmmParams::covariances_array`]). The fields are private: the lengths
/// and values are checked once, by [`GmmParams::new`] (or made by the M-step), and stay valid.
#[derive(Debug, Clone, PartialEq)]
pub struct GmmParams {
    covariance_type: CovarianceType,
    weights: Vec<f64>,
    means: Vec<f64>,
    covariances: Vec<f64>,
    n_components: usize,
    n_features: usize,
}

impl GmmParams {
    /// Covariance structure.
    pub fn covariance_type(&self) -> CovarianceType {
        self.covariance_type
    }
    /// Mixture weights `[K]` (sum to 1 after any M-step).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
    /// Means `[K][D]`, row-major.
    pub fn means(&self) -> &[f64] {
        &self.means
    }
    /// Covariances, row-major, shape given by [`CovarianceType::cov_shape`].
    pub fn covariances(&self) -> &[f64] {
        &self.covariances
    }
    /// Number of components K.
    pub fn n_components(&self) -> usize {
        self.n_components
    }
    /// Number of features D.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Parameters the M-step computed (lengths consistent by construction; not re-checked).
    pub(crate) fn from_parts(
        covariance_type: CovarianceType,
        weights: Vec<f64>,
        means: Vec<f64>,
        covariances: Vec<f64>,
        n_features: usize,
    ) -> Self {
        Self {
            covariance_type,
            n_components: weights.len(),
            weights,
            means,
            covariances,
            n_features,
        }
    }

    /// Checks shapes and values; use it on parameters that come from outside (files, users).
    pub fn new(
        covariance_type: CovarianceType,
        weights: Vec<f64>,
        means: Vec<f64>,
        covariances: Vec<f64>,
        n_features: usize,
    ) -> Result<Self> {
        let k = weights.len();
        if k == 0 || n_features == 0 {
            return Err(Error::BadModel(format!(
                "a mixture needs at least one component and one feature (got {k} components, {n_features} features)"
            )));
        }
        if means.len() != k * n_features {
            return Err(Error::BadModel(format!(
                "means must have shape [{k}, {n_features}] ({} values), got {} values",
                k * n_features,
                means.len()
            )));
        }
        let want = covariance_type.cov_len(k, n_features);
        if covariances.len() != want {
            return Err(Error::BadModel(format!(
                "{covariance_type} covariances must have shape {:?} ({want} values), got {} values",
                covariance_type.cov_shape(k, n_features),
                covariances.len()
            )));
        }
        if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(Error::BadModel(format!(
                "weights must be finite and non-negative, found {w}"
            )));
        }
        let sum: f64 = weights.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(Error::BadModel(format!(
                "weights must sum to 1, they sum to {sum}"
            )));
        }
        if means.iter().chain(&covariances).any(|v| !v.is_finite()) {
            return Err(Error::BadModel(
                "means and covariances must be finite".into(),
            ));
        }
        check_symmetric(covariance_type, &covariances, k, n_features)?;
        let params = Self {
            covariance_type,
            weights,
            means,
            covariances,
            n_components: k,
            n_features,
        };
        // Positive definiteness: preparing computes every Cholesky factor.
        params.prepare().map_err(|e| match e {
            Error::IllConditioned { component, pivot, .. } => Error::BadModel(format!(
                "the covariance of component {component} is not positive definite (Cholesky pivot {pivot:.3e})"
            )),
            other => other,
        })?;
        Ok(params)
    }

    /// Weights as an array `[K]`.
    pub fn weights_array(&self) -> Array1<f64> {
        Array1::from(self.weights.clone())
    }

    /// Means as an array `[K, D]`.
    pub fn means_array(&self) -> Array2<f64> {
        Array2::from_shape_vec((self.n_components, self.n_features), self.means.clone())
            .expect("means length is checked at construction")
    }

    /// Covariances in scikit-learn's shape for the covariance type.
    pub fn covariances_array(&self) -> ArrayD<f64> {
        let shape = self
            .covariance_type
            .cov_shape(self.n_components, self.n_features);
        ArrayD::from_shape_vec(IxDyn(&shape), self.covariances.clone())
            .expect("covariances length is checked at construction")
    }

    /// Number of free parameters (scikit-learn's `_n_parameters`), for BIC and AIC.
    pub fn n_parameters(&self) -> usize {
        let (k, d) = (self.n_components, self.n_features);
        self.covariance_type.n_cov_parameters(k, d) + k * d + k - 1
    }

    /// `(BIC, AIC)` of these parameters from the total log-likelihood of `n` samples, as
    /// scikit-learn's `bic` (`−2·log L + p·ln n`) and `aic` (`−2·log L + 2p`), p =
    /// [`GmmParams::n_parameters`]. Lower is better.
    pub fn information_criteria(&self, log_likelihood: f64, n: usize) -> (f64, f64) {
        crate::em::information_criteria(log_likelihood, self.n_parameters(), n)
    }

    /// Computes the Cholesky factors of the precisions and the other E-step inputs.
    ///
    /// Fails with [`Error::IllConditioned`] when a covariance is not positive definite; the
    /// `reg_covar` reported is 0 here (callers that know it re-label the error).
    pub fn prepare(&self) -> Result<Prepared> {
        let (k, d) = (self.n_components, self.n_features);
        let ill = |component: usize, pivot: f64| Error::IllConditioned {
            component,
            pivot,
            reg_covar: 0.0,
        };
        let mut prec_chol = vec![0.0; self.covariance_type.cov_len(k, d)];
        let mut log_det = vec![0.0; k];
        match self.covariance_type {
            CovarianceType::Full => {
                for c in 0..k {
                    let cov = &self.covariances[c * d * d..(c + 1) * d * d];
                    let (u, ld) = precision_cholesky(cov, d).map_err(|e| ill(c, e.pivot))?;
                    prec_chol[c * d * d..(c + 1) * d * d].copy_from_slice(&u);
                    log_det[c] = ld;
                }
            }
            CovarianceType::Tied => {
                let (u, ld) =
                    precision_cholesky(&self.covariances, d).map_err(|e| ill(0, e.pivot))?;
                prec_chol.copy_from_slice(&u);
                log_det.fill(ld);
            }
            CovarianceType::Diag => {
                for (i, (&v, p)) in self
                    .covariances
                    .iter()
                    .zip(prec_chol.iter_mut())
                    .enumerate()
                {
                    if v <= 0.0 || !v.is_finite() {
                        return Err(ill(i / d, v));
                    }
                    *p = 1.0 / v.sqrt();
                    log_det[i / d] += p.ln();
                }
            }
            CovarianceType::Spherical => {
                for (c, (&v, p)) in self
                    .covariances
                    .iter()
                    .zip(prec_chol.iter_mut())
                    .enumerate()
                {
                    if v <= 0.0 || !v.is_finite() {
                        return Err(ill(c, v));
                    }
                    *p = 1.0 / v.sqrt();
                    log_det[c] = d as f64 * p.ln();
                }
            }
        }
        let log_weights = self.weights.iter().map(|w| w.ln()).collect();
        Ok(Prepared {
            covariance_type: self.covariance_type,
            n_components: k,
            n_features: d,
            means: self.means.clone(),
            prec_chol,
            log_det,
            log_weights,
        })
    }
}

/// Relative tolerance of the symmetry check of covariance matrices from outside:
/// `|C_ij − C_ji| ≤ SYMMETRY_RTOL · √(C_ii C_jj)`.
pub const SYMMETRY_RTOL: f64 = 1e-8;

/// An error unless every full (or the tied) covariance matrix is symmetric within
/// [`SYMMETRY_RTOL`] (the Cholesky factorization reads one triangle only: an asymmetric matrix
/// would be half ignored).
fn check_symmetric(cov: CovarianceType, covariances: &[f64], k: usize, d: usize) -> Result<()> {
    let mats = match cov {
        CovarianceType::Full => k,
        CovarianceType::Tied => 1,
        CovarianceType::Diag | CovarianceType::Spherical => return Ok(()),
    };
    for c in 0..mats {
        let m = &covariances[c * d * d..(c + 1) * d * d];
        for i in 0..d {
            for j in 0..i {
                let (a, b) = (m[i * d + j], m[j * d + i]);
                let scale = (m[i * d + i].abs() * m[j * d + j].abs()).sqrt();
                if (a - b).abs() > SYMMETRY_RTOL * scale.max(f64::MIN_POSITIVE) {
                    let which = match cov {
                        CovarianceType::Tied => "the tied covariance".to_string(),
                        _ => format!("the covariance of component {c}"),
                    };
                    return Err(Error::BadModel(format!(
                        "{which} is not symmetric: [{i}][{j}] = {a} but [{j}][{i}] = {b}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// What the E-step needs, derived from [`GmmParams`] on the host after each M-step.
///
/// `log p(x, k) = log_weights[k] − ½·(D·ln 2π + ‖(x − μ_k)ᵀ·U_k‖²) + log_det[k]` where `U_k` is the
/// upper-triangular Cholesky factor of the precision (`prec_chol`, scikit-learn's
/// `precisions_cholesky_`): full `[K][D][D]` row-major, tied `[D][D]`, diag `[K][D]` (1/σ),
/// spherical `[K]` (1/σ).
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Covariance structure.
    pub covariance_type: CovarianceType,
    /// K.
    pub n_components: usize,
    /// D.
    pub n_features: usize,
    /// Means `[K][D]`; also the shifts about which statistics are accumulated.
    pub means: Vec<f64>,
    /// Cholesky factors of the precisions (see the type's documentation).
    pub prec_chol: Vec<f64>,
    /// `log det U_k` per component.
    pub log_det: Vec<f64>,
    /// `ln weight_k` per component.
    pub log_weights: Vec<f64>,
}

impl Prepared {
    /// `log p(x, k)` for one point and every component (the reference formula; the twin of the
    /// GPU kernel and the oracle of the blocked CPU path). `out.len() == K`.
    pub fn log_joint_point(&self, x: &[f64], out: &mut [f64]) {
        with_scratch(self.n_features, |diff| self.log_joint_with(x, out, diff));
    }

    /// [`Prepared::log_joint_point`] with `diff` (`[D]`) as scratch space.
    fn log_joint_with(&self, x: &[f64], out: &mut [f64], diff: &mut [f64]) {
        let (k, d) = (self.n_components, self.n_features);
        for c in 0..k {
            let mu = &self.means[c * d..(c + 1) * d];
            for j in 0..d {
                diff[j] = x[j] - mu[j];
            }
            let maha = match self.covariance_type {
                CovarianceType::Full | CovarianceType::Tied => {
                    let u = match self.covariance_type {
                        CovarianceType::Full => &self.prec_chol[c * d * d..(c + 1) * d * d],
                        _ => &self.prec_chol[..],
                    };
                    // y_j = Σ_{i ≤ j} diff_i · U[i][j]
                    let mut s = 0.0;
                    for j in 0..d {
                        let mut yj = 0.0;
                        for i in 0..=j {
                            yj += diff[i] * u[i * d + j];
                        }
                        s += yj * yj;
                    }
                    s
                }
                CovarianceType::Diag => {
                    let p = &self.prec_chol[c * d..(c + 1) * d];
                    diff.iter().zip(p).map(|(e, p)| (e * p) * (e * p)).sum()
                }
                CovarianceType::Spherical => {
                    let p = self.prec_chol[c];
                    diff.iter().map(|e| e * e).sum::<f64>() * p * p
                }
            };
            out[c] = self.log_weights[c] - 0.5 * (d as f64 * LN_2PI + maha) + self.log_det[c];
        }
    }
}

/// Runs `f` with a zeroed scratch slice of `d` values: on the stack up to 64 features (the
/// per-point reference loops call this for every point), on the heap beyond.
pub(crate) fn with_scratch<R>(d: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    let mut stack = [0.0f64; 64];
    if d <= stack.len() {
        f(&mut stack[..d])
    } else {
        f(&mut vec![0.0; d])
    }
}
