//! Benchmarks: deterministic synthetic mixtures, and EM iterations timed on several backends from
//! the same initial parameters (the library side of `emgpu bench`).
//!
//! ```
//! use emgpu::Backend;
//! use emgpu::bench::{BenchOptions, Workload, run};
//!
//! let workload = Workload { n: 2_000, d: 4, k: 3, ..Workload::default() };
//! let report = run(&workload, &[Backend::Cpu], &BenchOptions { iters: 3, ..Default::default() },
//!     &mut |_| {})?;
//! assert_eq!(report.runs[0].iter_ms.len(), 3);
//! println!("{}", serde_json::to_string_pretty(&report).unwrap());
//! # Ok::<(), emgpu::Error>(())
//! ```
//!
//! # What is timed
//! Every backend gets the same data and the same initial parameters, `tol = 0` and a fixed number
//! of iterations, so every backend does the same work and ends at the same lower bound (up to
//! its rounding). **Setup** is the engine's construction (on a GPU: device buffers, upload,
//! pipelines); an **iteration** is what [`crate::GaussianMixture`]'s EM loop does each time:
//! prepare the parameters (Cholesky factors), the backend's E-step (responsibilities and
//! sufficient statistics), the M-step on the host. Times are medians over the iterations.
//!
//! # The flop model
//! [`flops_per_e_step`] counts the floating-point operations of the textbook E-step and statistics
//! for one pass over the data (additions and multiplications, one each; exponentials and
//! logarithms not counted), per point and component:
//!
//! | covariance   | log-density (E-step)                         | statistics                     |
//! |--------------|----------------------------------------------|--------------------------------|
//! | full, tied   | `D` (x − μ) + `D(D+1)` ((x − μ)ᵀU, triangular) + `2D` (‖y‖²) | `1 + 2D` (S0, S1) + `D(D+1)` (upper triangle of r·d·dᵀ) |
//! | diag         | `D` (x − μ) + `D` (·1/σ) + `2D` (squares, sum)  | `1 + 2D` + `2D` (r·d², sum)     |
//! | spherical    | `D` (x − μ) + `2D` (squares, sum) + `1` (·1/σ²) | `1 + 2D` + `2D`                 |
//!
//! For N = 1M, D = 16, K = 16 that is 10.0 GFLOP (full) and 2.1 GFLOP (diag) per iteration. A
//! backend may do more (a GEMM over a full D×D factor) or fewer operations; the model is only the
//! yardstick that turns a time into GFLOP/s.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, EngineOptions, gmm_engine};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::linalg::cholesky_lower;
use crate::models::gmm::{CovarianceType, GmmParams, m_step};

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
            .map(|c| match truth.covariance_type {
                CovarianceType::Full => {
                    cholesky_lower(&truth.covariances[c * d * d..(c + 1) * d * d], d)
                }
                CovarianceType::Tied => cholesky_lower(&truth.covariances, d),
                CovarianceType::Diag => Ok(truth.covariances[c * d..(c + 1) * d]
                    .iter()
                    .map(|v| v.sqrt())
                    .collect()),
                CovarianceType::Spherical => Ok(vec![truth.covariances[c].sqrt(); d]),
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Numerical(format!("generated covariance: {e:?}")))?;
        let full = matches!(
            truth.covariance_type,
            CovarianceType::Full | CovarianceType::Tied
        );
        let mut cumulative = truth.weights.clone();
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
                    let (mu, l) = (&truth.means[c * d..(c + 1) * d], &factors[c]);
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
        let init = initial_params(&x, n, d, k, truth.covariance_type, self.seed)?;
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

/// Floating-point operations of one E-step with statistics over `n` points (see the module docs).
pub fn flops_per_e_step(covariance_type: CovarianceType, n: usize, d: usize, k: usize) -> f64 {
    let d = d as f64;
    let per_pair = match covariance_type {
        CovarianceType::Full | CovarianceType::Tied => {
            (d + d * (d + 1.0) + 2.0 * d) + (1.0 + 2.0 * d + d * (d + 1.0))
        }
        CovarianceType::Diag => (4.0 * d) + (1.0 + 4.0 * d),
        CovarianceType::Spherical => (3.0 * d + 1.0) + (1.0 + 4.0 * d),
    };
    n as f64 * k as f64 * per_pair
}

/// Options of a benchmark run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchOptions {
    /// EM iterations per backend (tol = 0: all of them run).
    pub iters: usize,
    /// `reg_covar` of the M-step.
    pub reg_covar: f64,
    /// Engine options (chunk size, CPU path) given to every backend.
    pub engine: EngineOptions,
}

impl Default for BenchOptions {
    /// 10 iterations, `reg_covar = 1e-6`, default engines.
    fn default() -> Self {
        Self {
            iters: 10,
            reg_covar: 1e-6,
            engine: EngineOptions::default(),
        }
    }
}

/// Where a benchmark run is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchProgress {
    /// Drawing the data.
    Generating,
    /// Building the engine of this backend.
    Setup(Backend),
    /// This backend finished iteration `done` of `iters`.
    Iteration {
        /// The backend.
        backend: Backend,
        /// Iterations done.
        done: usize,
        /// Iterations in all.
        iters: usize,
    },
}

/// The timings and results of one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendRun {
    /// The backend asked for (`cpu`, `gpu`, `auto`).
    pub backend: String,
    /// The backend that ran (`cpu` or `gpu`).
    pub ran_on: String,
    /// The device's name.
    pub device: String,
    /// Why `auto` chose this backend, or why a GPU request ran elsewhere; empty otherwise.
    pub note: String,
    /// Engine construction (upload, pipelines), milliseconds.
    pub setup_ms: f64,
    /// Every iteration (prepare + E-step + M-step), milliseconds.
    pub iter_ms: Vec<f64>,
    /// Median of `iter_ms`.
    pub median_iter_ms: f64,
    /// Median time of the backend's E-step with statistics, milliseconds.
    pub median_e_step_ms: f64,
    /// Median time of the host M-step (with the preparation of the next parameters), ms.
    pub median_m_step_ms: f64,
    /// Points × iterations per second, at the median iteration.
    pub points_iters_per_s: f64,
    /// [`flops_per_e_step`] divided by the median E-step time, in GFLOP/s.
    pub e_step_gflops: f64,
    /// The lower bound (mean log-likelihood) of each iteration.
    pub lower_bounds: Vec<f64>,
    /// The last lower bound.
    pub final_lower_bound: f64,
}

/// The result of [`run`]: the workload and one [`BackendRun`] per backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// What was fitted.
    pub workload: Workload,
    /// Iterations per backend.
    pub iters: usize,
    /// The flop model's count for one E-step ([`flops_per_e_step`]).
    pub flops_per_e_step: f64,
    /// Time to draw the data, milliseconds.
    pub generate_ms: f64,
    /// Worker threads of the CPU backend.
    pub cpu_threads: usize,
    /// One entry per backend, in the order asked.
    pub runs: Vec<BackendRun>,
    /// Largest `|lb_a − lb_b| / |lb_b|` between the final lower bounds of any two runs (0 for one run).
    pub max_lower_bound_rel_diff: f64,
}

/// Median of `v` (mean of the two middle values for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

/// Generates the workload's data and times `opts.iters` EM iterations on each backend.
pub fn run(
    workload: &Workload,
    backends: &[Backend],
    opts: &BenchOptions,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<BenchReport> {
    progress(BenchProgress::Generating);
    let t = Instant::now();
    let synth = workload.generate()?;
    let generate_ms = t.elapsed().as_secs_f64() * 1e3;
    let data = synth.dataset()?;
    let mut report = bench_data(&data, &synth.init, backends, opts, progress)?;
    report.workload = *workload;
    report.generate_ms = generate_ms;
    Ok(report)
}

/// Times `opts.iters` EM iterations from `init` on each backend over `data` (any data source: a
/// mapped file, an array). The report's `workload` has `seed = 0`, `spread = 0` (unknown).
pub fn bench_data(
    data: &Dataset,
    init: &GmmParams,
    backends: &[Backend],
    opts: &BenchOptions,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<BenchReport> {
    if opts.iters == 0 {
        return Err(Error::param("a benchmark needs at least one iteration"));
    }
    if data.n_features() != init.n_features {
        return Err(Error::DimensionMismatch {
            expected: init.n_features,
            got: data.n_features(),
        });
    }
    let (n, d, k) = (data.n_samples(), data.n_features(), init.n_components);
    let mut runs = Vec::with_capacity(backends.len());
    for &backend in backends {
        runs.push(run_backend(data, init, backend, opts, progress)?);
    }
    let mut worst: f64 = 0.0;
    for a in &runs {
        for b in &runs {
            let diff = (a.final_lower_bound - b.final_lower_bound).abs()
                / b.final_lower_bound.abs().max(f64::MIN_POSITIVE);
            worst = worst.max(diff);
        }
    }
    Ok(BenchReport {
        workload: Workload {
            n,
            d,
            k,
            covariance_type: init.covariance_type,
            seed: 0,
            spread: 0.0,
        },
        iters: opts.iters,
        flops_per_e_step: flops_per_e_step(init.covariance_type, n, d, k),
        generate_ms: 0.0,
        cpu_threads: rayon::current_num_threads(),
        runs,
        max_lower_bound_rel_diff: worst,
    })
}

fn run_backend(
    data: &Dataset,
    init: &GmmParams,
    backend: Backend,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(BenchProgress),
) -> Result<BackendRun> {
    let (n, d, k) = (data.n_samples(), data.n_features(), init.n_components);
    let cov = init.covariance_type;
    progress(BenchProgress::Setup(backend));
    let t = Instant::now();
    let mut engine = gmm_engine(backend, data, cov, k, opts.engine)?;
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    let report = engine.report();
    let mut params = init.clone();
    let (mut iter_ms, mut e_ms, mut m_ms, mut lbs) = (vec![], vec![], vec![], vec![]);
    let mut prepared = params.prepare()?;
    for it in 0..opts.iters {
        let t0 = Instant::now();
        let stats = engine.e_step(&prepared)?;
        let t1 = Instant::now();
        params = m_step(&stats, opts.reg_covar)?;
        prepared = params.prepare()?;
        let t2 = Instant::now();
        let lb = stats.mean_log_likelihood();
        if !lb.is_finite() {
            return Err(Error::Numerical(format!(
                "the benchmark's log-likelihood became {lb} at iteration {} on {backend}",
                it + 1
            )));
        }
        lbs.push(lb);
        e_ms.push((t1 - t0).as_secs_f64() * 1e3);
        m_ms.push((t2 - t1).as_secs_f64() * 1e3);
        iter_ms.push((t2 - t0).as_secs_f64() * 1e3);
        progress(BenchProgress::Iteration {
            backend,
            done: it + 1,
            iters: opts.iters,
        });
    }
    let median_iter_ms = median(&iter_ms);
    let median_e_step_ms = median(&e_ms);
    Ok(BackendRun {
        backend: backend.to_string(),
        ran_on: report.backend.to_string(),
        device: report.device,
        note: report.reason,
        setup_ms,
        median_m_step_ms: median(&m_ms),
        points_iters_per_s: n as f64 / (median_iter_ms * 1e-3),
        e_step_gflops: flops_per_e_step(cov, n, d, k) / (median_e_step_ms * 1e-3) / 1e9,
        final_lower_bound: *lbs.last().unwrap_or(&f64::NAN),
        lower_bounds: lbs,
        iter_ms,
        median_iter_ms,
        median_e_step_ms,
    })
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
                .map(|c| a.truth.weights[c] * a.truth.means[c * 3 + j])
                .sum();
            assert!((m - want).abs() < 0.1, "feature {j}: {m} vs {want}");
        }
        let other = Workload { seed: 8, ..w }.generate().unwrap();
        assert_ne!(a.x, other.x);
    }

    #[test]
    fn flop_model_matches_the_documented_counts() {
        let full = flops_per_e_step(CovarianceType::Full, 1_000_000, 16, 16);
        assert!((full / 1e9 - 10.0).abs() < 0.1, "{full}");
        let diag = flops_per_e_step(CovarianceType::Diag, 1_000_000, 16, 16);
        assert!((diag / 1e9 - 2.06).abs() < 0.01, "{diag}");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
