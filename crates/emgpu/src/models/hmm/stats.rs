//! Additive sufficient statistics of a Gaussian HMM: the Gaussian mixture's weighted moments with
//! the state posteriors γ as weights, the posteriors of the first step of every sequence, and the
//! expected transition counts Σ ξ.

use crate::em::Stats;
use crate::models::gmm::{CovarianceType, GmmStats};

/// Sufficient statistics of a Gaussian HMM over a set of sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct HmmStats {
    /// The emissions' statistics: `S0_k = Σ_t γ_tk`, `S1`, `S2` about the shifts (the means of
    /// the E-step), `n_samples` = number of points, `log_likelihood` = Σ over sequences of
    /// `log p(sequence)`.
    pub emission: GmmStats,
    /// `Σ_sequences γ_0k`, `[K]`.
    pub start: Vec<f64>,
    /// `Σ_sequences Σ_t ξ_t(i, j)`, `[K][K]` row-major.
    pub trans: Vec<f64>,
    /// Number of sequences summed.
    pub n_sequences: f64,
}

impl HmmStats {
    /// Zero statistics for K states about `shift` (`[K][D]`).
    pub fn zeros(covariance_type: CovarianceType, k: usize, d: usize, shift: &[f64]) -> Self {
        Self {
            emission: GmmStats::zeros(covariance_type, k, d, shift),
            start: vec![0.0; k],
            trans: vec![0.0; k * k],
            n_sequences: 0.0,
        }
    }
}

/// The flat view is the emission statistics' flat view, then `start`, `trans` and
/// `n_sequences`.
impl Stats for HmmStats {
    fn merge(&mut self, other: &Self) {
        self.emission.merge(&other.emission);
        self.start
            .iter_mut()
            .zip(&other.start)
            .for_each(|(a, b)| *a += b);
        self.trans
            .iter_mut()
            .zip(&other.trans)
            .for_each(|(a, b)| *a += b);
        self.n_sequences += other.n_sequences;
    }
    fn log_likelihood(&self) -> f64 {
        self.emission.log_likelihood
    }
    fn n_samples(&self) -> f64 {
        self.emission.n_samples
    }
    fn flat_len(&self) -> usize {
        self.emission.flat_len() + self.start.len() + self.trans.len() + 1
    }
    fn write_flat(&self, out: &mut [f64]) {
        let (e, rest) = out.split_at_mut(self.emission.flat_len());
        self.emission.write_flat(e);
        let (s, rest) = rest.split_at_mut(self.start.len());
        s.copy_from_slice(&self.start);
        let (t, rest) = rest.split_at_mut(self.trans.len());
        t.copy_from_slice(&self.trans);
        rest[0] = self.n_sequences;
    }
    fn read_flat(&mut self, src: &[f64]) {
        let (e, rest) = src.split_at(self.emission.flat_len());
        self.emission.read_flat(e);
        let (s, rest) = rest.split_at(self.start.len());
        self.start.copy_from_slice(s);
        let (t, rest) = rest.split_at(self.trans.len());
        self.trans.copy_from_slice(t);
        self.n_sequences = rest[0];
    }
    /// hmmlearn's convergence monitor and `score` use the **total** log-likelihood of the data,
    /// not a mean per point: so does the HMM's lower bound.
    fn lower_bound(&self) -> f64 {
        self.emission.log_likelihood
    }
}
