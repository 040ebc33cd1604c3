//! The Poisson mixture's statistics, [`Model`] and CPU [`EStep`] engine.

use crate::data::{Dataset, chunk_rows_for};
use crate::device::cpu::map_chunks;
use crate::device::{Backend, BackendReport, choose, cpu_report};
use crate::em::{EStep, Model, Stats};
use crate::error::{Error, Result};
use crate::numerics::log_sum_exp;

/// Parameters: weights `[K]` and rates `[K][D]` (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct PoissonParams {
    /// Mixture weights π_k.
    pub weights: Vec<f64>,
    /// Rates λ_kd, `[K][D]`.
    pub rates: Vec<f64>,
}

/// Parameters prepared for an E-step: log π_k − Σ_d λ_kd `[K]` and log λ_kd `[K][D]`.
#[derive(Debug, Clone)]
pub struct PoissonPrepared {
    offsets: Vec<f64>,
    log_rates: Vec<f64>,
}

/// `S0_k = Σ r_nk`, `S1_kd = Σ r_nk x_nd`, `Σ log p(x_n)` and n. Flat view: `[n, loglik, S0, S1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoissonStats {
    /// n.
    pub n_samples: f64,
    /// Σ_n log p(x_n).
    pub log_likelihood: f64,
    /// `[K]`.
    pub s0: Vec<f64>,
    /// `[K][D]`.
    pub s1: Vec<f64>,
}

impl PoissonStats {
    /// Zero statistics for K components and D features.
    pub fn zeros(k: usize, d: usize) -> Self {
        let (s0, s1) = (vec![0.0; k], vec![0.0; k * d]);
        Self {
            n_samples: 0.0,
            log_likelihood: 0.0,
            s0,
            s1,
        }
    }
}

impl Stats for PoissonStats {
    fn merge(&mut self, other: &Self) {
        let mut flat = self.to_flat();
        flat.iter_mut()
            .zip(other.to_flat())
            .for_each(|(a, b)| *a += b);
        self.read_flat(&flat);
    }
    fn scale(&mut self, factor: f64) {
        let flat: Vec<f64> = self.to_flat().iter().map(|v| v * factor).collect();
        self.read_flat(&flat);
    }
    fn log_likelihood(&self) -> f64 {
        self.log_likelihood
    }
    fn n_samples(&self) -> f64 {
        self.n_samples
    }
    fn flat_len(&self) -> usize {
        2 + self.s0.len() + self.s1.len()
    }
    fn write_flat(&self, out: &mut [f64]) {
        let (head, rest) = out.split_at_mut(2 + self.s0.len());
        head[0] = self.n_samples;
        head[1] = self.log_likelihood;
        head[2..].copy_from_slice(&self.s0);
        rest.copy_from_slice(&self.s1);
    }
    fn read_flat(&mut self, src: &[f64]) {
        let k = self.s0.len();
        (self.n_samples, self.log_likelihood) = (src[0], src[1]);
        self.s0.copy_from_slice(&src[2..2 + k]);
        self.s1.copy_from_slice(&src[2 + k..]);
    }
}

/// A mixture of `n_components` products of `n_features` independent Poissons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoissonMixtureModel {
    /// K.
    pub n_components: usize,
    /// D.
    pub n_features: usize,
    /// Floor of every rate (an empty component gets rates `min_rate`, not NaN).
    pub min_rate: f64,
}

impl Model for PoissonMixtureModel {
    type Params = PoissonParams;
    type Prepared = PoissonPrepared;
    type Stats = PoissonStats;

    fn prepare(&self, p: &PoissonParams) -> Result<PoissonPrepared> {
        let (k, d) = (self.n_components, self.n_features);
        if p.weights.len() != k || p.rates.len() != k * d {
            return Err(Error::param(format!(
                "Poisson parameters must be [{k}] and [{k}][{d}]"
            )));
        }
        let offsets = (0..k).map(|c| p.weights[c].ln() - p.rates[c * d..][..d].iter().sum::<f64>());
        let log_rates = p.rates.iter().map(|r| r.ln()).collect();
        Ok(PoissonPrepared {
            offsets: offsets.collect(),
            log_rates,
        })
    }

    fn m_step(&self, s: &PoissonStats) -> Result<PoissonParams> {
        let d = self.n_features;
        let nk: Vec<f64> = s.s0.iter().map(|v| v + 10.0 * f64::EPSILON).collect();
        let total: f64 = nk.iter().sum();
        let weights = nk.iter().map(|v| v / total).collect();
        let rates = (s.s1.iter().enumerate()).map(|(i, v)| (v / nk[i / d]).max(self.min_rate));
        Ok(PoissonParams {
            weights,
            rates: rates.collect(),
        })
    }

    fn n_parameters(&self) -> usize {
        self.n_components * self.n_features + self.n_components - 1
    }
}

/// `ln x!` for a non-negative integer `x`: a sum of logs up to 1024, Stirling's series beyond.
pub fn ln_factorial(x: f64) -> f64 {
    if x < 1024.0 {
        return (2..=x as u32).map(|i| f64::from(i).ln()).sum();
    }
    let tau = std::f64::consts::TAU;
    x * x.ln() - x + 0.5 * (tau * x).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x.powi(3))
}

/// `log π_k p(x | k)` for every component into `out`; returns `log p(x)`.
pub(crate) fn weighted_log_probs(p: &PoissonPrepared, x: &[f64], out: &mut [f64]) -> f64 {
    let lf: f64 = x.iter().map(|&v| ln_factorial(v)).sum();
    for (c, o) in out.iter_mut().enumerate() {
        let lr = &p.log_rates[c * x.len()..][..x.len()];
        let dot: f64 = x
            .iter()
            .zip(lr)
            .filter(|(v, _)| **v != 0.0)
            .map(|(v, l)| v * l)
            .sum();
        *o = p.offsets[c] + dot - lf;
    }
    log_sum_exp(out)
}

/// The CPU E-step engine of the Poisson mixture over one data set of counts.
pub struct CpuPoissonEngine<'a> {
    data: &'a Dataset<'a>,
    chunk_rows: usize,
    reason: String,
}

impl CpuPoissonEngine<'_> {
    /// Per point: the most likely component and `log p(x_n)`.
    pub fn point_outputs(&self, p: &PoissonPrepared) -> Vec<(usize, f64)> {
        let (k, d) = (p.offsets.len(), self.data.n_features());
        let chunks = map_chunks(self.data, self.chunk_rows, |_, rows| {
            let mut buf = vec![0.0; k];
            let row_out = |x: &[f64]| {
                let lp = weighted_log_probs(p, x, &mut buf);
                let best = (0..k).fold(0, |b, c| if buf[c] > buf[b] { c } else { b });
                (best, lp)
            };
            rows.chunks_exact(d).map(row_out).collect::<Vec<_>>()
        });
        chunks.concat()
    }
}

impl EStep<PoissonMixtureModel> for CpuPoissonEngine<'_> {
    fn e_step(&mut self, p: &PoissonPrepared) -> Result<PoissonStats> {
        let (k, d) = (p.offsets.len(), self.data.n_features());
        let chunks = map_chunks(self.data, self.chunk_rows, |_, rows| {
            let (mut s, mut buf) = (PoissonStats::zeros(k, d), vec![0.0; k]);
            for x in rows.chunks_exact(d) {
                let lp = weighted_log_probs(p, x, &mut buf);
                (s.n_samples, s.log_likelihood) = (s.n_samples + 1.0, s.log_likelihood + lp);
                for (c, w) in buf.iter().enumerate() {
                    let r = (w - lp).exp();
                    s.s0[c] += r;
                    s.s1[c * d..][..d]
                        .iter_mut()
                        .zip(x)
                        .for_each(|(a, v)| *a += r * v);
                }
            }
            s
        });
        let mut total = PoissonStats::zeros(k, d);
        chunks.iter().for_each(|c| total.merge(c));
        Ok(total)
    }

    fn report(&self) -> BackendReport {
        cpu_report(&self.reason)
    }
}

/// Checks `data` is non-empty and holds finite, non-negative integer counts.
pub fn validate_counts(data: &Dataset) -> Result<()> {
    data.validate()?;
    let d = data.n_features();
    let bad = map_chunks(data, chunk_rows_for(d, 8192), |start, rows| {
        let p = rows.iter().position(|v| *v < 0.0 || v.fract() != 0.0);
        p.map(|p| (start * d + p, rows[p]))
    });
    match bad.into_iter().flatten().next() {
        None => Ok(()),
        Some((pos, v)) => Err(Error::param(format!(
            "the Poisson mixture needs non-negative integer counts, got {v} at row {}, column {} (0-based)",
            pos / d,
            pos % d
        ))),
    }
}

/// The engine of `backend` for `data` (validated) through [`choose`]: `Cpu` and `Auto` run the
/// CPU; `Gpu` is an error.
pub fn poisson_engine<'a>(
    backend: Backend,
    data: &'a Dataset<'a>,
) -> Result<Box<CpuPoissonEngine<'a>>> {
    const NO_GPU: &str = "the Poisson mixture example runs on the CPU only; use the CPU backend";
    validate_counts(data)?;
    let chunk_rows = chunk_rows_for(data.n_features(), 8192);
    let auto = backend == Backend::Auto;
    let cpu = |reason: String| {
        // The real reason Auto runs the CPU; `choose` says why *its* probe failed.
        let reason = if auto {
            "the Poisson mixture has no GPU engine".into()
        } else {
            reason
        };
        Box::new(CpuPoissonEngine {
            data,
            chunk_rows,
            reason,
        })
    };
    // `choose` may fail before calling the GPU closure (no adapter, no `gpu` feature): same answer.
    choose(backend, cpu, |_, _| Err(Error::param(NO_GPU))).map_err(|_| Error::param(NO_GPU))
}
