//! Seeded synthetic data: N points of a random K-component Gaussian mixture in D dimensions, with
//! the true parameters and a common starting point. The tests, the criterion benches and
//! `emgpu bench` draw their data here, so that every one of them sees the same workloads.
//!
//! ```
//! use emgpu::synth::Workload;
//!
//! let w = Workload { n: 1_000, d: 3, k: 2, ..Workload::default() };
//! let s = w.generate()?;
//! assert_eq!(s.x.len(), 3_000);
//! assert_eq!(s.truth.n_components(), 2);
//! # Ok::<(), emgpu::Error>(())
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::gmm::{CovarianceType, GmmParams};
use crate::numerics::linalg::cholesky_lower;

/// A synthetic benchmark workload: N points of a random K-component mixture in D dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Number of points N.
    pub n: usize,
    /// Number of features D.
    pub d: usize,
    /// Number of components K (of the data and of the fitted model).
    pub k: usize,
    /// Covariance structure of the data and of the fit.
    pub covariance_type: CovarianceType,
    /// Seed of everything random (parameters, points, initial parameters).
    pub seed: u64,
    /// True means are drawn uniformly from `[−spread, spread]^D`; the components' variances are
    /// between 0.5 and 4.5, so the default 5 gives distinct but not trivially separated clusters.
    pub spread: f64,
}

impl Default for Workload {
    /// The benchmark workload of the README: N = 1M, D = 16, K = 16, full covariances.
    fn default() -> Self {
        Self {
            n: 1_000_000,
            d: 16,
            k: 16,
            covariance_type: CovarianceType::Full,
            seed: 0,
            spread: 5.0,
        }
    }
}

/// Rows generated per independent random stream (the data do not depend on the thread count).
const ROWS_PER_STREAM: usize = 1 << 16;

/// A generated data set with its true and initial parameters.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// The points, N × D row-major, f32 (what a large data file would hold).
    pub x: Vec<f32>,
    /// Number of points.
    pub n: usize,
    /// Number of features.
    pub d: usize,
    /// The mixture the points were drawn from.
    pub truth: GmmParams,
    /// The initial parameters every backend starts from: K distinct data points as means, the
    /// per-feature variance of the data as (diagonal) covariances, equal weights.
    pub init: GmmParams,
}

impl Synthetic {
    /// A [`Dataset`] over the points.
    pub fn dataset(&self) -> Result<Dataset<'_>> {
        Dataset::from_slice(&self.x, self.n, self.d)
    }
}

impl Workload {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.n == 0 || self.d == 0 || self.k == 0 {
            return Err(Error::param(format!(
                "a benchmark needs n, d, k ≥ 1 (got n = {}, d = {}, k = {})",
                self.n, self.d, self.k
            )));
        }
        if self.k > self.n {
            return Err(Error::param(format!(
                "a benchmark needs at least as many points as components (n = {}, k = {})",
                self.n, self.k
            )));
        }
        if self
            .n
            .checked_mul(self.d)
            .is_none_or(|v| v > isize::MAX as usize / 4)
        {
            return Err(Error::param(format!(
                "{} × {} values do not fit in memory",
                self.n, self.d
            )));
        }
        if !(self.spread.is_finite() && self.spread >= 0.0) {
            return Err(Error::param(format!(
                "spread must be a finite number ≥ 0, got {}",
                self.spread
            )));
        }
        Ok(())
    }

    /// The true mixture of this workload (deterministic in the seed).
    pub fn truth(&self) -> Result<GmmParams> {
        self.validate()?;
        let (k, d) = (self.k, self.d);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let raw: Vec<f64> = (0..k).map(|_| rng.random_range(1.0..2.0)).collect();
        let total: f64 = raw.iter().sum();
        let mut weights: Vec<f64> = raw.iter().map(|w| w / total).collect();
        // Sum exactly 1 up to rounding of the last term.
        let head: f64 = weights[..k - 1].iter().sum();
        weights[k - 1] = 1.0 - head;
        let means: Vec<f64> = (0..k * d)
            .map(|_| rng.random_range(-1.0..=1.0) * self.spread)
            .collect();
        // A well-conditioned SPD matrix: B·Bᵀ/D + ½·I (eigenvalues in about [0.5, 4.5]).
        let spd = |rng: &mut ChaCha8Rng| {
            let b: Vec<f64> = (0..d * d).map(|_| rng.sample(StandardNormal)).collect();
            let mut s = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    s[i * d + j] = (0..d).map(|l| b[i * d + l] * b[j * d + l]).sum::<f64>()
                        / d as f64
                        + if i == j { 0.5 } else { 0.0 };
                }
            }
            s
        };
        let covariances = match self.covariance_type {
            CovarianceType::Full => (0..k).flat_map(|_| spd(&mut rng)).collect(),
            CovarianceType::Tied => spd(&mut rng),
            CovarianceType::Diag => (0..k * d).map(|_| rng.random_range(0.5..2.0)).collect(),
            CovarianceType::Spherical => (0..k).map(|_| rng.random_range(0.5..2.0)).collect(),
        };
        GmmParams::new(self.covariance_type, weights, means, covariances, d)
    }

    /// Draws the points and the initial parameters (deterministic in the seed, whatever the
    /// number of threads).
    pub fn generate(&self) -> Result<Synthetic> {
        let truth = self.truth()?;
        let (n, d, k) = (self.n, self.d, self.k);
        // Per component: x = μ + L·ε with L the Cholesky factor of the covariance.
        let factors: Vec<Vec<f64>> = (0..k)
            .map(|c| match truth.covariance_type() {
                CovarianceType::Full => {
                    cholesky_lower(&truth.covariances()[c * d * d..(c + 1) * d * d], d)
                }
                CovarianceType::Tied => cholesky_lower(&truth.covariances(), d),
                CovarianceType::Diag => Ok(truth.covariances()[c * d..(c + 1) * d]
                    .iter()
                    .map(|v| v.sqrt())
                    .collect()),
                CovarianceType::Spherical => Ok(vec![truth.covariances()[c].sqrt(); d]),
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Numerical(format!("generated covariance: {e:?}")))?;
        let full = matches!(
            truth.covariance_type(),
            CovarianceType::Full | CovarianceType::Tied
        );
        let mut cumulative = truth.weights().to_vec();
        for c in 1..k {
            cumulative[c] += cumulative[c - 1];
        }
        let mut x = vec![0.0f32; n * d];
        x.par_chunks_mut(ROWS_PER_STREAM * d)
            .enumerate()
            .for_each(|(s, block)| {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                rng.set_stream(s as u64 + 1);
                let mut eps = vec![0.0f64; d];
                for row in block.chunks_exact_mut(d) {
                    let u: f64 = rng.random();
                    let c = cumulative.iter().position(|&w| u < w).unwrap_or(k - 1);
                    for e in eps.iter_mut() {
                        *e = rng.sample(StandardNormal);
                    }
                    let (mu, l) = (&truth.means()[c * d..(c + 1) * d], &factors[c]);
                    for i in 0..d {
                        let noise = if full {
                            (0..=i).map(|j| l[i * d + j] * eps[j]).sum::<f64>()
                        } else {
                            l[i] * eps[i]
                        };
                        row[i] = (mu[i] + noise) as f32;
                    }
                }
            });
        let init = initial_params(&x, n, d, k, truth.covariance_type(), self.seed)?;
        Ok(Synthetic {
            x,
            n,
            d,
            truth,
            init,
        })
    }
}

/// K distinct points as means, the data's per-feature variance as covariances, equal weights.
fn initial_params(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    covariance_type: CovarianceType,
    seed: u64,
) -> Result<GmmParams> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1bad_5eed);
    let picks = rand::seq::index::sample(&mut rng, n, k).into_vec();
    let means: Vec<f64> = picks
        .iter()
        .flat_map(|&r| x[r * d..(r + 1) * d].iter().map(|&v| v as f64))
        .collect();
    // Per-feature variance (two passes in f64).
    let mut mean = vec![0.0; d];
    for row in x.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = vec![0.0; d];
    for row in x.chunks_exact(d) {
        for j in 0..d {
            let e = row[j] as f64 - mean[j];
            var[j] += e * e;
        }
    }
    // A constant feature still gets a positive variance.
    var.iter_mut().for_each(|v| *v = (*v / n as f64).max(1e-6));
    let diag_matrix = |v: &[f64]| {
        let mut m = vec![0.0; d * d];
        for j in 0..d {
            m[j * d + j] = v[j];
        }
        m
    };
    let covariances = match covariance_type {
        CovarianceType::Full => (0..k).flat_map(|_| diag_matrix(&var)).collect(),
        CovarianceType::Tied => diag_matrix(&var),
        CovarianceType::Diag => (0..k).flat_map(|_| var.clone()).collect(),
        CovarianceType::Spherical => vec![var.iter().sum::<f64>() / d as f64; k],
    };
    GmmParams::new(
        covariance_type,
        vec![1.0 / k as f64; k],
        means,
        covariances,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_follows_the_truth() {
        let w = Workload {
            n: 70_000,
            d: 3,
            k: 2,
            covariance_type: CovarianceType::Diag,
            seed: 7,
            spread: 10.0,
        };
        let a = w.generate().unwrap();
        let b = w.generate().unwrap();
        assert_eq!(a.x, b.x);
        assert_eq!(a.init, b.init);
        // The overall mean is the weighted mean of the true means (within sampling error).
        for j in 0..3 {
            let m: f64 =
                a.x.iter()
                    .skip(j)
                    .step_by(3)
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / 7e4;
            let want: f64 = (0..2)
                .map(|c| a.truth.weights()[c] * a.truth.means()[c * 3 + j])
                .sum();
            assert!((m - want).abs() < 0.1, "feature {j}: {m} vs {want}");
        }
        let other = Workload { seed: 8, ..w }.generate().unwrap();
        assert_ne!(a.x, other.x);
    }
}
