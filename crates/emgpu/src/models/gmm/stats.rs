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
