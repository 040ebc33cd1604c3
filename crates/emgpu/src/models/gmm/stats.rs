//! Additive sufficient statistics of a Gaussian mixture.
//!
//! For each component k, with responsibilities `r_nk` and a shift `s_k` (the component's mean when
//! the E-step ran), the M-step needs only
//!
//! - `S0_k = Σ_n r_nk`,
//! - `S1_k = Σ_n r_nk (x_n − s_k)`,
//! - `S2_k = Σ_n r_nk (x_n − s_k)(x_n − s_k)ᵀ` (full and tied: the D×D matrix; diag and spherical:
//!   its diagonal),
//!
//! plus `Σ_n log p(x_n)` for the lower bound. These add over any partition of the points (chunks,
//! files, GPUs, processes), which is what makes chunked, streamed and distributed fits the same
//! computation. The shift keeps second moments small where f32 would otherwise cancel (data far
//! from the origin); it does not change the result, only its rounding.

use super::CovarianceType;
use crate::em::Stats;

/// Sufficient statistics of a Gaussian mixture over a set of points (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct GmmStats {
    /// Covariance structure: decides the shape of `s2`.
    pub covariance_type: CovarianceType,
    /// K.
    pub n_components: usize,
    /// D.
    pub n_features: usize,
    /// Number of points summed (weighted: a sum of weights; scaled by [`Stats::scale`]).
    pub n_samples: f64,
    /// `Σ_n log p(x_n)` (log of the mixture density).
    pub log_likelihood: f64,
    /// `S0_k`, `[K]`.
    pub s0: Vec<f64>,
    /// `S1_k`, `[K][D]`.
    pub s1: Vec<f64>,
    /// `S2_k`: full/tied `[K][D][D]` (symmetric, both triangles stored), diag/spherical `[K][D]`.
    pub s2: Vec<f64>,
    /// The shifts `s_k`, `[K][D]`.
    pub shift: Vec<f64>,
}

impl GmmStats {
    /// Zero statistics about `shift` (`[K][D]`).
    pub fn zeros(
        covariance_type: CovarianceType,
        n_components: usize,
        n_features: usize,
        shift: &[f64],
    ) -> Self {
        let (k, d) = (n_components, n_features);
        assert_eq!(shift.len(), k * d, "shift must be [K][D]");
        Self {
            covariance_type,
            n_components: k,
            n_features: d,
            n_samples: 0.0,
            log_likelihood: 0.0,
            s0: vec![0.0; k],
            s1: vec![0.0; k * d],
            s2: vec![0.0; Self::s2_len(covariance_type, k, d)],
            shift: shift.to_vec(),
        }
    }

    /// Length of `s2` for this structure.
    pub fn s2_len(covariance_type: CovarianceType, k: usize, d: usize) -> usize {
        match covariance_type {
            CovarianceType::Full | CovarianceType::Tied => k * d * d,
            CovarianceType::Diag | CovarianceType::Spherical => k * d,
        }
    }

    /// Whether `s2` holds full D×D matrices (full, tied) rather than diagonals.
    pub fn has_full_s2(&self) -> bool {
        matches!(
            self.covariance_type,
            CovarianceType::Full | CovarianceType::Tied
        )
    }

    /// Adds `other` (statistics of other points, about the same shifts) into `self`.
    pub fn merge(&mut self, other: &GmmStats) {
        assert_eq!(
            (self.covariance_type, self.n_components, self.n_features),
            (other.covariance_type, other.n_components, other.n_features),
            "merging statistics of different models"
        );
        assert!(
            self.shift == other.shift,
            "merging statistics about different shifts"
        );
        self.n_samples += other.n_samples;
        self.log_likelihood += other.log_likelihood;
        for (a, b) in self.s0.iter_mut().zip(&other.s0) {
            *a += b;
        }
        for (a, b) in self.s1.iter_mut().zip(&other.s1) {
            *a += b;
        }
        for (a, b) in self.s2.iter_mut().zip(&other.s2) {
            *a += b;
        }
    }

    /// The same statistics about `new_shift` (`[K][D]`) instead of `self.shift`: with
    /// `δ = old − new` and `u = x − old`, `x − new = u + δ`, so `S1 += S0·δ` and
    /// `S2 += S1·δᵀ + δ·S1ᵀ + S0·δ·δᵀ` (with S1 before its update; diagonal S2 takes the diagonal).
    /// Exact algebra: the GPU engine sums about the f32 shifts it used and moves the result to the
    /// f64 means here.
    pub fn reshift(&mut self, new_shift: &[f64]) {
        let (k, d) = (self.n_components, self.n_features);
        assert_eq!(new_shift.len(), k * d, "shift must be [K][D]");
        let full = self.has_full_s2();
        for c in 0..k {
            let delta: Vec<f64> = (0..d)
                .map(|i| self.shift[c * d + i] - new_shift[c * d + i])
                .collect();
            if delta.iter().all(|x| *x == 0.0) {
                continue;
            }
            let s0 = self.s0[c];
            let s1: Vec<f64> = self.s1[c * d..(c + 1) * d].to_vec();
            if full {
                for i in 0..d {
                    for j in 0..d {
                        self.s2[c * d * d + i * d + j] +=
                            s1[i] * delta[j] + delta[i] * s1[j] + s0 * delta[i] * delta[j];
                    }
                }
            } else {
                for i in 0..d {
                    self.s2[c * d + i] += 2.0 * s1[i] * delta[i] + s0 * delta[i] * delta[i];
                }
            }
            for i in 0..d {
                self.s1[c * d + i] += s0 * delta[i];
            }
        }
        self.shift.copy_from_slice(new_shift);
    }

    /// Mean log-likelihood per point: scikit-learn's `lower_bound_` for this E-step.
    pub fn mean_log_likelihood(&self) -> f64 {
        self.log_likelihood / self.n_samples
    }

    /// Adds one point `x` with responsibilities `resp` (`[K]`) and log-density `log_px`: the
    /// reference accumulation (twin of the GPU statistics kernel).
    pub fn add_point(&mut self, x: &[f64], resp: &[f64], log_px: f64) {
        super::params::with_scratch(self.n_features, |diff| self.add_point_with(x, resp, diff));
        self.n_samples += 1.0;
        self.log_likelihood += log_px;
    }

    /// Adds one point with sample weight `weight`: [`GmmStats::add_point`] with the
    /// responsibilities, the log-density and the count multiplied by `weight` (`resp` is
    /// scaled in place). A zero weight adds nothing (not even a `0 · −∞`).
    pub fn add_weighted_point(&mut self, x: &[f64], resp: &mut [f64], log_px: f64, weight: f64) {
        if weight == 0.0 {
            return;
        }
        resp.iter_mut().for_each(|r| *r *= weight);
        super::params::with_scratch(self.n_features, |diff| self.add_point_with(x, resp, diff));
        self.n_samples += weight;
        self.log_likelihood += weight * log_px;
    }

    /// The sums of [`GmmStats::add_point`], with `diff` (`[D]`) as scratch space.
    fn add_point_with(&mut self, x: &[f64], resp: &[f64], diff: &mut [f64]) {
        let d = self.n_features;
        let full = self.has_full_s2();
        for (c, &r) in resp.iter().enumerate() {
            self.s0[c] += r;
            if r == 0.0 {
                continue;
            }
            let s = &self.shift[c * d..(c + 1) * d];
            for j in 0..d {
                diff[j] = x[j] - s[j];
                self.s1[c * d + j] += r * diff[j];
            }
            if full {
                let m = &mut self.s2[c * d * d..(c + 1) * d * d];
                for i in 0..d {
                    let ri = r * diff[i];
                    for j in 0..d {
                        m[i * d + j] += ri * diff[j];
                    }
                }
            } else {
                for j in 0..d {
                    self.s2[c * d + j] += r * diff[j] * diff[j];
                }
            }
        }
    }
}

/// The flat view is `[n_samples, log_likelihood, S0 (K), S1 (K·D), S2]`; the shifts are not
/// additive and stay as they are.
impl Stats for GmmStats {
    fn merge(&mut self, other: &Self) {
        GmmStats::merge(self, other)
    }
    /// Moves the statistics to `like`'s shifts ([`GmmStats::reshift`]).
    fn rebase(&mut self, like: &Self) {
        if self.shift != like.shift {
            self.reshift(&like.shift);
        }
    }
    fn scale(&mut self, factor: f64) {
        self.n_samples *= factor;
        self.log_likelihood *= factor;
        for v in self.s0.iter_mut().chain(&mut self.s1).chain(&mut self.s2) {
            *v *= factor;
        }
    }
    fn log_likelihood(&self) -> f64 {
        self.log_likelihood
    }
    fn n_samples(&self) -> f64 {
        self.n_samples
    }
    fn flat_len(&self) -> usize {
        2 + self.s0.len() + self.s1.len() + self.s2.len()
    }
    fn write_flat(&self, out: &mut [f64]) {
        let (head, rest) = out.split_at_mut(2);
        head.copy_from_slice(&[self.n_samples, self.log_likelihood]);
        let (s0, rest) = rest.split_at_mut(self.s0.len());
        let (s1, s2) = rest.split_at_mut(self.s1.len());
        s0.copy_from_slice(&self.s0);
        s1.copy_from_slice(&self.s1);
        s2.copy_from_slice(&self.s2);
    }
    fn read_flat(&mut self, src: &[f64]) {
        self.n_samples = src[0];
        self.log_likelihood = src[1];
        let (k, d1) = (self.s0.len(), self.s1.len());
        self.s0.copy_from_slice(&src[2..2 + k]);
        self.s1.copy_from_slice(&src[2 + k..2 + k + d1]);
        self.s2.copy_from_slice(&src[2 + k + d1..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statistics gathered about shift A and moved to shift B equal those gathered about B.
    #[test]
    fn reshift_equals_summing_about_the_new_shift() {
        let (k, d) = (2, 3);
        let a: Vec<f64> = (0..k * d).map(|i| i as f64 * 0.7 - 1.0).collect();
        let b: Vec<f64> = (0..k * d).map(|i| 2.0 - i as f64 * 0.3).collect();
        for cov in CovarianceType::ALL {
            let (mut about_a, mut about_b) = (
                GmmStats::zeros(cov, k, d, &a),
                GmmStats::zeros(cov, k, d, &b),
            );
            for n in 0..50 {
                let x: Vec<f64> = (0..d)
                    .map(|j| ((n * 7 + j * 3) % 11) as f64 - 4.0)
                    .collect();
                let r0 = (n % 5) as f64 / 4.0;
                about_a.add_point(&x, &[r0, 1.0 - r0], -1.5);
                about_b.add_point(&x, &[r0, 1.0 - r0], -1.5);
            }
            about_a.reshift(&b);
            assert_eq!(about_a.shift, about_b.shift);
            for (x, y) in about_a
                .s1
                .iter()
                .chain(&about_a.s2)
                .zip(about_b.s1.iter().chain(&about_b.s2))
            {
                assert!(
                    (x - y).abs() <= 1e-12 * y.abs().max(1.0),
                    "{cov}: {x} vs {y}"
                );
            }
            assert_eq!(about_a.s0, about_b.s0);
        }
    }
}
