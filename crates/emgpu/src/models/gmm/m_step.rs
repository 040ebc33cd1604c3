//! The M-step: parameters from sufficient statistics, exactly as scikit-learn's
//! `_estimate_gaussian_parameters` (in f64, on the host).

use super::{CovarianceType, GmmParams, GmmStats};
use crate::error::{Error, Result};

/// scikit-learn adds `10 * eps` to every `nk` so that an empty component divides by a tiny number
/// instead of zero (its mean and covariance then come out as 0 and `reg_covar`).
pub const NK_EPS: f64 = 10.0 * f64::EPSILON;

/// How the weights are normalized after estimating `nk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightNorm {
    /// `nk / Σ nk`: the M-step (scikit-learn's `_m_step`).
    Sum,
    /// `nk / n_samples`: the initialization from responsibilities (scikit-learn's `_initialize`).
    NSamples,
}

/// Weights, means and covariances from statistics, with `reg_covar` on the diagonal.
///
/// With `n_k = S0_k + 10·eps`, `μ_k = (S0_k·s_k + S1_k) / n_k` (`= Σ r x / n_k`), and with
/// `e = μ_k − s_k`, `Σ r (x − μ_k)(x − μ_k)ᵀ = S2_k − S1_k·eᵀ − e·S1_kᵀ + S0_k·e·eᵀ`, which is divided by
/// `n_k` (full, diag, spherical: the mean of the diagonal) or summed over k and divided by `Σ n_k`
/// (tied).
pub fn estimate_parameters(
    stats: &GmmStats,
    reg_covar: f64,
    norm: WeightNorm,
) -> Result<GmmParams> {
    estimate_with(stats, reg_covar, norm, |s0| s0 + NK_EPS)
}

/// [`estimate_parameters`] dividing by `S0_k` itself (hmmlearn's update: a state with a tiny
/// occupancy gets exactly its weighted mean), and by `10·eps` only where `S0_k = 0`.
pub fn estimate_parameters_exact(
    stats: &GmmStats,
    reg_covar: f64,
    norm: WeightNorm,
) -> Result<GmmParams> {
    estimate_with(
        stats,
        reg_covar,
        norm,
        |s0| if s0 > 0.0 { s0 } else { NK_EPS },
    )
}

/// The estimate with `n_k = nk(S0_k)`.
fn estimate_with(
    stats: &GmmStats,
    reg_covar: f64,
    norm: WeightNorm,
    nk: impl Fn(f64) -> f64,
) -> Result<GmmParams> {
    let (k, d) = (stats.n_components, stats.n_features);
    let cov_type = stats.covariance_type;
    let nk: Vec<f64> = stats.s0.iter().map(|s| nk(*s)).collect();
    let mut means = vec![0.0; k * d];
    for c in 0..k {
        for j in 0..d {
            means[c * d + j] = (stats.s0[c] * stats.shift[c * d + j] + stats.s1[c * d + j]) / nk[c];
        }
    }
    // e_k = μ_k − s_k
    let e: Vec<f64> = means.iter().zip(&stats.shift).map(|(m, s)| m - s).collect();

    let mut covariances = vec![0.0; cov_type.cov_len(k, d)];
    match cov_type {
        CovarianceType::Full | CovarianceType::Tied => {
            for c in 0..k {
                let s1 = &stats.s1[c * d..(c + 1) * d];
                let ec = &e[c * d..(c + 1) * d];
                let s2 = &stats.s2[c * d * d..(c + 1) * d * d];
                let (dst, scale) = match cov_type {
                    CovarianceType::Full => {
                        (&mut covariances[c * d * d..(c + 1) * d * d], 1.0 / nk[c])
                    }
                    _ => (&mut covariances[..], 1.0),
                };
                for i in 0..d {
                    for j in 0..d {
                        let v = s2[i * d + j] - s1[i] * ec[j] - ec[i] * s1[j]
                            + stats.s0[c] * ec[i] * ec[j];
                        dst[i * d + j] += v * scale;
                    }
                }
            }
            if cov_type == CovarianceType::Tied {
                let total: f64 = nk.iter().sum();
                covariances.iter_mut().for_each(|v| *v /= total);
            }
            // Symmetrize (rounding can differ between the triangles), then regularize.
            let mats = if cov_type == CovarianceType::Full {
                k
            } else {
                1
            };
            for c in 0..mats {
                let m = &mut covariances[c * d * d..(c + 1) * d * d];
                for i in 0..d {
                    for j in 0..i {
                        let v = 0.5 * (m[i * d + j] + m[j * d + i]);
                        m[i * d + j] = v;
                        m[j * d + i] = v;
                    }
                    m[i * d + i] += reg_covar;
                }
            }
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            let mut diag = vec![0.0; k * d];
            for c in 0..k {
                for j in 0..d {
                    let (s1, ec, s2) = (stats.s1[c * d + j], e[c * d + j], stats.s2[c * d + j]);
                    let v = s2 - 2.0 * s1 * ec + stats.s0[c] * ec * ec;
                    diag[c * d + j] = v / nk[c] + reg_covar;
                }
            }
            if cov_type == CovarianceType::Diag {
                covariances = diag;
            } else {
                for c in 0..k {
                    covariances[c] = diag[c * d..(c + 1) * d].iter().sum::<f64>() / d as f64;
                }
            }
        }
    }

    let denom = match norm {
        WeightNorm::Sum => nk.iter().sum::<f64>(),
        WeightNorm::NSamples => stats.n_samples,
    };
    let weights: Vec<f64> = nk.iter().map(|n| n / denom).collect();
    if means.iter().chain(&covariances).any(|v| !v.is_finite()) {
        return Err(Error::IllConditioned {
            component: 0,
            pivot: f64::NAN,
            reg_covar,
        });
    }
    debug_assert_eq!(weights.len(), k);
    Ok(GmmParams::from_parts(
        cov_type,
        weights,
        means,
        covariances,
        d,
    ))
}

/// One M-step: [`estimate_parameters`] with weights normalized to sum to 1.
pub fn m_step(stats: &GmmStats, reg_covar: f64) -> Result<GmmParams> {
    estimate_parameters(stats, reg_covar, WeightNorm::Sum)
}
