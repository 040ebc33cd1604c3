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
//!
//! Tests that need points around centers they choose (well-separated groups, unequal sizes) use
//! [`blobs`]; tests that need any seeded mixture use [`Workload::generate_f64`].

use ndarray::Array2;
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

    /// The points as an `N × D` f64 array (each value is the f32 it was drawn as, widened
    /// exactly).
    pub fn x_f64(&self) -> Array2<f64> {
        Array2::from_shape_fn((self.n, self.d), |(i, j)| self.x[i * self.d + j] as f64)
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

    /// Checks the workload's parameters and that its points and true covariances fit in memory,
    /// without generating anything ([`Workload::truth`] and [`Workload::generate`] do it too).
    pub fn check_size(&self) -> Result<()> {
        self.validate()?;
        let (n, k, d) = (self.n, self.k, self.d);
        // Full and tied covariances are D × D each (and two more while each is built).
        let matrices = match self.covariance_type {
            CovarianceType::Full => k.saturating_add(2),
            CovarianceType::Tied => 3,
            CovarianceType::Diag | CovarianceType::Spherical => 0,
        };
        crate::memory::ensure_available(
            crate::memory::bytes_of(&[matrices, d, d, std::mem::size_of::<f64>()]),
            || {
                format!(
                    "the workload's {} covariances (k = {k}, d = {d}, float64); use fewer features or components",
                    self.covariance_type.name()
                )
            },
        )?;
        crate::memory::ensure_available(
            crate::memory::bytes_of(&[n, d, std::mem::size_of::<f32>()]),
            || {
                format!(
                    "the workload's {n} points × {d} features (float32); use fewer points or features"
                )
            },
        )
    }

    /// The true mixture of this workload (deterministic in the seed).
    pub fn truth(&self) -> Result<GmmParams> {
        self.check_size()?;
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
                CovarianceType::Tied => cholesky_lower(truth.covariances(), d),
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
        let mut x: Vec<f32> = crate::memory::try_zeroed(n * d, || {
            format!(
                "the workload's {n} points × {d} features (float32); use fewer points or features"
            )
        })?;
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

    /// The points of [`Workload::generate`] as an `N × D` f64 array, for code that needs only
    /// seeded data from a known mixture (the mixture is [`Workload::truth`]).
    pub fn generate_f64(&self) -> Result<Array2<f64>> {
        Ok(self.generate()?.x_f64())
    }
}

/// Isotropic Gaussian blobs around centers the caller chooses: `sizes[c]` points drawn from
/// `N(centers[c], std_devs[c]²·I)`, blob after blob (rows `0..sizes[0]` are blob 0, and so on),
/// with the label of every row. Deterministic in `seed`.
///
/// Fails when `centers`, `sizes` and `std_devs` differ in length, when there is no blob, when
/// the centers differ in dimension or have none, when no point is asked for, or when a standard
/// deviation is negative or not finite.
///
/// ```
/// let (x, labels) = emgpu::synth::blobs(&[[0.0, 0.0], [10.0, 0.0]], &[3, 2], &[1.0, 0.5], 7)?;
/// assert_eq!(x.dim(), (5, 2));
/// assert_eq!(labels, [0, 0, 0, 1, 1]);
/// # Ok::<(), emgpu::Error>(())
/// ```
pub fn blobs<C: AsRef<[f64]>>(
    centers: &[C],
    sizes: &[usize],
    std_devs: &[f64],
    seed: u64,
) -> Result<(Array2<f64>, Vec<usize>)> {
    let k = centers.len();
    if k == 0 || sizes.len() != k || std_devs.len() != k {
        return Err(Error::param(format!(
            "blobs need one size and one standard deviation per center and at least one center \
             (got {k} centers, {} sizes, {} standard deviations)",
            sizes.len(),
            std_devs.len()
        )));
    }
    let d = centers[0].as_ref().len();
    if d == 0 || centers.iter().any(|c| c.as_ref().len() != d) {
        return Err(Error::param(
            "blob centers must all have the same dimension, at least 1",
        ));
    }
    if let Some(s) = std_devs.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
        return Err(Error::param(format!(
            "blob standard deviations must be finite and ≥ 0, got {s}"
        )));
    }
    let n: usize = sizes.iter().sum();
    if n == 0 {
        return Err(Error::param("blobs need at least one point"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, d));
    let mut labels = Vec::with_capacity(n);
    let mut rows = x.rows_mut().into_iter();
    for (c, (center, (&size, &sd))) in centers.iter().zip(sizes.iter().zip(std_devs)).enumerate() {
        for row in rows.by_ref().take(size) {
            for (v, &m) in row.into_iter().zip(center.as_ref()) {
                let z: f64 = rng.sample(StandardNormal);
                *v = m + sd * z;
            }
            labels.push(c);
        }
    }
    Ok((x, labels))
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

/// The two workloads of the benchmark of EM with missing values (issue 12; `emgpu bench
/// --missing`, `examples/missing_timing.rs`): a K = 8 full-covariance mixture ([`Workload`],
/// seed 7) with holes punched in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingWorkload {
    /// 336,776 × 4 (nycflights13's flights), about 2.8 % of rows incomplete in 2 patterns:
    /// 2.45 % miss columns 2 and 3, 0.35 % miss column 3 (as `dep_delay`/`arr_delay` do).
    Flights,
    /// 1,000,000 × 16 with 20 % of entries missing completely at random (tens of thousands of
    /// patterns; 2.8 % of rows complete); a row drawn with nothing observed gets column 0 = 0.
    Mcar,
}

/// A [`MissingWorkload`] drawn: the data before and after the holes.
#[derive(Debug, Clone)]
pub struct MissingData {
    /// The workload's complete data (f64, N × D row-major).
    pub complete: Vec<f64>,
    /// The same with NaN for the missing entries.
    pub holey: Vec<f64>,
    /// Number of rows.
    pub n: usize,
    /// Number of features.
    pub d: usize,
    /// The mixture the rows were drawn from.
    pub truth: GmmParams,
}

impl MissingWorkload {
    /// Both workloads, in the benchmark's order.
    pub const ALL: [MissingWorkload; 2] = [MissingWorkload::Flights, MissingWorkload::Mcar];

    /// `flights` or `mcar`.
    pub fn name(self) -> &'static str {
        match self {
            MissingWorkload::Flights => "flights",
            MissingWorkload::Mcar => "mcar",
        }
    }

    /// N at full size.
    pub fn n(self) -> usize {
        match self {
            MissingWorkload::Flights => 336_776,
            MissingWorkload::Mcar => 1_000_000,
        }
    }

    /// D.
    pub fn d(self) -> usize {
        match self {
            MissingWorkload::Flights => 4,
            MissingWorkload::Mcar => 16,
        }
    }

    /// Punches the workload's holes into one row.
    fn punch(self, rng: &mut ChaCha8Rng, row: &mut [f64]) {
        match self {
            MissingWorkload::Flights => {
                let u: f64 = rng.random();
                if u < 0.0245 {
                    row[2] = f64::NAN;
                    row[3] = f64::NAN;
                } else if u < 0.028 {
                    row[3] = f64::NAN;
                }
            }
            MissingWorkload::Mcar => {
                for v in row.iter_mut() {
                    if rng.random::<f64>() < 0.2 {
                        *v = f64::NAN;
                    }
                }
                if row.iter().all(|v| v.is_nan()) {
                    row[0] = 0.0;
                }
            }
        }
    }

    /// The workload with `n` rows (the issue's size: [`MissingWorkload::n`]); deterministic.
    pub fn generate(self, n: usize) -> Result<MissingData> {
        let d = self.d();
        let synth = Workload {
            n,
            d,
            k: 8,
            covariance_type: CovarianceType::Full,
            seed: 7,
            spread: 5.0,
        }
        .generate()?;
        let complete: Vec<f64> = synth.x.iter().map(|v| *v as f64).collect();
        let mut holey = complete.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for row in holey.chunks_exact_mut(d) {
            self.punch(&mut rng, row);
        }
        Ok(MissingData {
            complete,
            holey,
            n,
            d,
            truth: synth.truth,
        })
    }
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
        // The f64 array holds the same values.
        let x64 = w.generate_f64().unwrap();
        assert_eq!(x64.dim(), (70_000, 3));
        assert!(x64.iter().zip(&a.x).all(|(&v, &f)| v == f as f64));
    }

    #[test]
    fn blobs_follow_their_centers_and_are_deterministic() {
        let centers = [[0.0, 0.0, 0.0], [100.0, -50.0, 3.0]];
        let (x, labels) = blobs(&centers, &[4_000, 1_000], &[1.0, 2.0], 3).unwrap();
        assert_eq!(x.dim(), (5_000, 3));
        assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 1_000);
        assert!(labels[..4_000].iter().all(|&l| l == 0));
        for (c, rows, sd) in [(0, 0..4_000, 1.0), (1, 4_000..5_000, 2.0)] {
            let m = rows.len() as f64;
            for j in 0..3 {
                let col = x.slice(ndarray::s![rows.clone(), j]);
                let mean = col.sum() / m;
                let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
                // Sampling error of the mean: sd/√m ≤ 0.07; of the variance: sd²·√(2/m) ≤ 0.18.
                assert!(
                    (mean - centers[c][j]).abs() < 0.3,
                    "blob {c}, feature {j}: mean {mean}"
                );
                assert!(
                    (var - sd * sd).abs() < 0.6,
                    "blob {c}, feature {j}: variance {var}"
                );
            }
        }
        assert_eq!(
            blobs(&centers, &[4_000, 1_000], &[1.0, 2.0], 3).unwrap().0,
            x
        );
        assert_ne!(
            blobs(&centers, &[4_000, 1_000], &[1.0, 2.0], 4).unwrap().0,
            x
        );
        // Mismatched lengths, ragged centers, no points and bad deviations are errors.
        assert!(blobs(&centers, &[1], &[1.0, 1.0], 0).is_err());
        assert!(blobs(&[vec![0.0], vec![1.0, 2.0]], &[1, 1], &[1.0, 1.0], 0).is_err());
        assert!(blobs(&centers, &[0, 0], &[1.0, 1.0], 0).is_err());
        assert!(blobs(&centers, &[1, 1], &[1.0, f64::NAN], 0).is_err());
        assert!(blobs::<[f64; 2]>(&[], &[], &[], 0).is_err());
    }
}
