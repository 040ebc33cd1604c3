//! `emgpu bench`: EM iterations timed on several backends from the same initial parameters, over
//! [`emgpu::synth`] data or a file.
//!
//! # What is timed
//! Every backend gets the same data and the same initial parameters, `tol = 0` and a fixed number
//! of iterations, so every backend does the same work and ends at the same lower bound (up to
//! its rounding). **Setup** is the engine's construction (on a GPU: device buffers, upload,
//! pipelines); an **iteration** is what [`emgpu::GaussianMixture`]'s EM loop does each time:
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

use serde::{Deserialize, Serialize};

use emgpu::device::EngineOptions;
use emgpu::em::{Control, Progress, StopRule, run_em};
use emgpu::models::gmm::GmmModel;
use emgpu::models::gmm::gmm_engine;
use emgpu::synth::Workload;
use emgpu::{Backend, CovarianceType, Dataset, Error, GmmParams, Result};

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
    if data.n_features() != init.n_features() {
        return Err(Error::DimensionMismatch {
            expected: init.n_features(),
            got: data.n_features(),
        });
    }
    // Non-finite data is named as such, not found later as a NaN log-likelihood.
    data.validate()?;
    let (n, d, k) = (data.n_samples(), data.n_features(), init.n_components());
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
            covariance_type: init.covariance_type(),
            seed: 0,
            spread: 0.0,
        },
        iters: opts.iters,
        flops_per_e_step: flops_per_e_step(init.covariance_type(), n, d, k),
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
    let (n, d, k) = (data.n_samples(), data.n_features(), init.n_components());
    let cov = init.covariance_type();
    progress(BenchProgress::Setup(backend));
    let t = Instant::now();
    let mut engine = gmm_engine(backend, data, cov, k, opts.engine)?;
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    let report = engine.report();
    // The library's EM loop, as a fit runs it (tol = 0: every iteration runs); the loop times
    // each E-step and M-step and reports them to the progress callback.
    let model = GmmModel {
        covariance_type: cov,
        n_components: k,
        n_features: d,
        reg_covar: opts.reg_covar,
    };
    let rule = StopRule {
        tol: 0.0,
        max_iter: opts.iters,
    };
    let (mut iter_ms, mut e_ms, mut m_ms) = (vec![], vec![], vec![]);
    let run = run_em(
        &model,
        engine.as_mut(),
        init.clone(),
        rule,
        0,
        &mut |p: &Progress| {
            e_ms.push(p.e_step_seconds * 1e3);
            m_ms.push(p.m_step_seconds * 1e3);
            iter_ms.push((p.e_step_seconds + p.m_step_seconds) * 1e3);
            progress(BenchProgress::Iteration {
                backend,
                done: p.iteration,
                iters: opts.iters,
            });
            Control::Continue(())
        },
    )
    .map_err(|e| match e {
        Error::Numerical(m) => Error::Numerical(format!("{m} (benchmark on {backend})")),
        other => other,
    })?;
    let lbs = run.lower_bound_trace;
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
