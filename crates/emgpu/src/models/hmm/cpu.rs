//! The CPU engine of the Gaussian HMM: f64, parallel over sequences, and over time within a
//! long sequence.
//!
//! Sequences are gathered into groups of about [`GROUP_ROWS`] rows; groups run in parallel (each
//! reads its rows, computes the emission log-densities, runs forward-backward per sequence and
//! sums the statistics) and merge in order, so the result does not depend on the number of
//! threads. A sequence longer than `long_rows` (by default [`LONG_ROWS`]) is not left to one
//! thread: its emission densities, posteriors and statistics are computed over blocks of
//! [`TIME_BLOCK`] steps in parallel, and its forward and backward passes run at the same time on
//! two threads (they are independent in the scaled form, see [`super::forward_backward`]).
//! Memory: a few `T × K` buffers per sequence in flight (a long sequence: four of them).

use std::ops::Range;

use rayon::prelude::*;

use super::forward_backward::{backward, forward, forward_backward_log, posteriors, viterbi};
use super::{HmmModel, HmmPrepared, HmmStats};
use crate::data::Dataset;
use crate::device::{BackendReport, EngineOptions, cpu_report};
use crate::em::{EStep, Stats};
use crate::error::{Error, Result};

/// Rows per group of short sequences.
pub const GROUP_ROWS: usize = 16_384;
/// Default length from which a sequence is split over threads in time.
pub const LONG_ROWS: usize = 65_536;
/// Steps per block of a long sequence.
pub const TIME_BLOCK: usize = 8_192;

/// The per-point outputs of a fitted HMM (besides the statistics of an E-step).
pub trait HmmEngine: EStep<HmmModel> {
    /// The total log-likelihood of the data and the state posteriors `[N][K]` into `out`
    /// (hmmlearn's `score_samples`).
    fn posteriors(&mut self, p: &HmmPrepared, out: &mut [f64]) -> Result<f64>;
    /// The Viterbi path of every sequence into `states` (`[N]`) and the sum of their
    /// log-probabilities (hmmlearn's `decode`).
    fn viterbi(&mut self, p: &HmmPrepared, states: &mut [usize]) -> Result<f64>;
    /// The total log-likelihood of the data (hmmlearn's `score`).
    fn score(&mut self, p: &HmmPrepared) -> Result<f64>;
}

/// Where the sequences lie: row offsets (`[S + 1]`).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub offsets: Vec<usize>,
}

impl Layout {
    /// From a dataset's sequence lengths (one sequence of all rows without them).
    pub fn of(data: &Dataset) -> Self {
        let lengths = data
            .sequence_lengths()
            .unwrap_or_else(|| vec![data.n_samples()]);
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        offsets.push(0);
        for l in lengths {
            offsets.push(offsets.last().copied().unwrap_or(0) + l);
        }
        Self { offsets }
    }
    pub fn n_sequences(&self) -> usize {
        self.offsets.len() - 1
    }
    pub fn rows(&self, s: usize) -> Range<usize> {
        self.offsets[s]..self.offsets[s + 1]
    }
    /// Consecutive sequences in groups of about `group_rows` rows; a sequence of `long_rows` or
    /// more is a group of its own, flagged long.
    pub fn groups(&self, group_rows: usize, long_rows: usize) -> Vec<(Range<usize>, bool)> {
        let mut groups = Vec::new();
        let mut start = 0;
        for s in 0..self.n_sequences() {
            let len = self.rows(s).len();
            if len >= long_rows {
                if start < s {
                    groups.push((start..s, false));
                }
                groups.push((s..s + 1, true));
                start = s + 1;
            } else if self.offsets[s + 1] - self.offsets[start] >= group_rows {
                groups.push((start..s + 1, false));
                start = s + 1;
            }
        }
        if start < self.n_sequences() {
            groups.push((start..self.n_sequences(), false));
        }
        groups
    }
}

/// The scaled forward-backward of one sequence; `gamma` (`[T][K]`) gets the posteriors, `xi`
/// the summed transition posteriors. Falls back to log space where the scaled form underflows.
fn sequence_posteriors(
    p: &HmmPrepared,
    logb: &[f64],
    gamma: &mut [f64],
    beta: &mut [f64],
    xi: &mut [f64],
) -> Result<f64> {
    let t_len = logb.len() / p.n_components();
    if let Some(log_p) = forward(&p.log_startprob, &p.transmat, logb, gamma)
        && backward(&p.transmat, logb, beta)
    {
        let mut local = vec![0.0; xi.len()];
        if posteriors(&p.transmat, logb, gamma, beta, 0, 0..t_len, &mut local) {
            xi.iter_mut().zip(&local).for_each(|(x, v)| *x += v);
            return Ok(log_p);
        }
    }
    forward_backward_log(&p.log_startprob, &p.log_transmat, logb, gamma, xi)
}

/// Adds rows `x` (`[T][D]`) with posteriors `gamma` (`[T][K]`) to the emission statistics.
fn add_rows(stats: &mut HmmStats, x: &[f64], gamma: &[f64]) {
    let (k, d) = (stats.start.len(), stats.emission.n_features);
    for (row, g) in x.chunks_exact(d).zip(gamma.chunks_exact(k)) {
        stats.emission.add_point(row, g, 0.0);
    }
}

/// Scratch buffers of one thread.
#[derive(Default)]
struct Work {
    x: Vec<f64>,
    logb: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
}

/// What a pass over the data computes per group.
#[derive(Clone, Copy)]
enum Pass<'o> {
    Stats,
    Score,
    Posteriors(&'o [std::sync::atomic::AtomicU64]),
}

/// E-steps of a Gaussian HMM on the CPU.
pub struct CpuHmmEngine<'a> {
    data: &'a Dataset<'a>,
    layout: Layout,
    groups: Vec<(Range<usize>, bool)>,
    reason: String,
}

impl<'a> CpuHmmEngine<'a> {
    /// An engine over `data` (its sequence lengths, or one sequence); `options.chunk_rows` sets
    /// the length from which a sequence is split in time (default [`LONG_ROWS`]); `reason` says
    /// why the CPU was chosen.
    pub fn new(data: &'a Dataset<'a>, options: EngineOptions, reason: String) -> Self {
        let layout = Layout::of(data);
        let long_rows = options.chunk_rows.unwrap_or(LONG_ROWS).max(2);
        let groups = layout.groups(GROUP_ROWS.min(long_rows), long_rows);
        Self {
            data,
            layout,
            groups,
            reason,
        }
    }

    /// Statistics of a group of short sequences.
    fn short_group(&self, p: &HmmPrepared, seqs: &Range<usize>, w: &mut Work) -> Result<HmmStats> {
        let (k, d) = (p.n_components(), p.n_features());
        let rows = self.layout.offsets[seqs.start]..self.layout.offsets[seqs.end];
        let mut stats = HmmStats::zeros(p.emission.covariance_type, k, d, &p.emission.means);
        w.x.resize(rows.len() * d, 0.0);
        self.data.read_f64(rows.start, &mut w.x)?;
        w.logb.resize(rows.len() * k, 0.0);
        p.emission_log_densities(&w.x, &mut w.logb);
        for s in seqs.clone() {
            let r = self.layout.rows(s);
            let local = r.start - rows.start..r.end - rows.start;
            let logb = &w.logb[local.start * k..local.end * k];
            w.gamma.resize(logb.len(), 0.0);
            w.beta.resize(logb.len(), 0.0);
            let log_p = sequence_posteriors(p, logb, &mut w.gamma, &mut w.beta, &mut stats.trans)?;
            stats.emission.log_likelihood += log_p;
            stats.n_sequences += 1.0;
            stats
                .start
                .iter_mut()
                .zip(&w.gamma[..k])
                .for_each(|(a, g)| *a += g);
            add_rows(&mut stats, &w.x[local.start * d..local.end * d], &w.gamma);
        }
        Ok(stats)
    }

    /// Statistics of one long sequence, parallel in time.
    fn long_sequence(&self, p: &HmmPrepared, s: usize) -> Result<HmmStats> {
        let (k, d) = (p.n_components(), p.n_features());
        let rows = self.layout.rows(s);
        let t_len = rows.len();
        let x = self.read_parallel(rows.start, t_len, d)?;
        let logb = log_densities_parallel(p, &x);
        let mut gamma = vec![0.0; t_len * k];
        let mut beta = vec![0.0; t_len * k];
        let (log_p, ok) = rayon::join(
            || forward(&p.log_startprob, &p.transmat, &logb, &mut gamma),
            || backward(&p.transmat, &logb, &mut beta),
        );
        let mut trans = vec![0.0; k * k];
        let scaled = match log_p {
            Some(log_p) if ok => {
                let parts: Vec<Option<Vec<f64>>> = gamma
                    .par_chunks_mut(TIME_BLOCK * k)
                    .enumerate()
                    .map(|(b, g)| {
                        let t0 = b * TIME_BLOCK;
                        let range = t0..t0 + g.len() / k;
                        let mut xi = vec![0.0; k * k];
                        posteriors(&p.transmat, &logb, g, &beta, t0, range, &mut xi).then_some(xi)
                    })
                    .collect();
                parts.into_iter().collect::<Option<Vec<_>>>().map(|xis| {
                    for xi in xis {
                        trans.iter_mut().zip(&xi).for_each(|(a, v)| *a += v);
                    }
                    log_p
                })
            }
            _ => None,
        };
        let log_p = match scaled {
            Some(log_p) => log_p,
            None => {
                trans.fill(0.0);
                forward_backward_log(
                    &p.log_startprob,
                    &p.log_transmat,
                    &logb,
                    &mut gamma,
                    &mut trans,
                )?
            }
        };
        let empty = HmmStats::zeros(p.emission.covariance_type, k, d, &p.emission.means);
        let parts: Vec<HmmStats> = x
            .par_chunks(TIME_BLOCK * d)
            .zip(gamma.par_chunks(TIME_BLOCK * k))
            .map(|(xb, gb)| {
                let mut st = empty.clone();
                add_rows(&mut st, xb, gb);
                st
            })
            .collect();
        let mut stats = parts.iter().fold(empty, |mut acc, part| {
            acc.merge(part);
            acc
        });
        stats.trans = trans;
        stats.start.copy_from_slice(&gamma[..k]);
        stats.emission.log_likelihood = log_p;
        stats.n_sequences = 1.0;
        Ok(stats)
    }

    /// Rows `[start, start + len)` read in parallel blocks.
    fn read_parallel(&self, start: usize, len: usize, d: usize) -> Result<Vec<f64>> {
        let mut x = vec![0.0; len * d];
        x.par_chunks_mut(TIME_BLOCK * d)
            .enumerate()
            .try_for_each(|(b, xb)| self.data.read_f64(start + b * TIME_BLOCK, xb))?;
        Ok(x)
    }

    /// Runs `pass` over every group; returns the statistics of each (only their log-likelihood
    /// for `Score` and `Posteriors`).
    fn run(&self, p: &HmmPrepared, pass: Pass<'_>) -> Result<HmmStats> {
        check_shape(self.data, p)?;
        let (k, d) = (p.n_components(), p.n_features());
        let short: Vec<Option<HmmStats>> = self
            .groups
            .par_iter()
            .map_init(Work::default, |w, (seqs, long)| {
                if *long {
                    return Ok(None);
                }
                match pass {
                    Pass::Stats => self.short_group(p, seqs, w).map(Some),
                    Pass::Score => self.score_group(p, seqs, w).map(Some),
                    Pass::Posteriors(out) => self.posterior_group(p, seqs, w, out).map(Some),
                }
            })
            .collect::<Result<_>>()?;
        let mut total = HmmStats::zeros(p.emission.covariance_type, k, d, &p.emission.means);
        for ((seqs, _), part) in self.groups.iter().zip(short) {
            let part = match part {
                Some(part) => part,
                None => match pass {
                    Pass::Stats => self.long_sequence(p, seqs.start)?,
                    _ => {
                        let mut w = Work::default();
                        match pass {
                            Pass::Posteriors(out) => self.posterior_group(p, seqs, &mut w, out)?,
                            _ => self.score_group(p, seqs, &mut w)?,
                        }
                    }
                },
            };
            total.merge(&part);
        }
        Ok(total)
    }

    /// The log-likelihood (forward pass only) of a group.
    fn score_group(&self, p: &HmmPrepared, seqs: &Range<usize>, w: &mut Work) -> Result<HmmStats> {
        self.each_sequence(p, seqs, w, |p, logb, w, _| {
            w.gamma.resize(logb.len(), 0.0);
            match forward(&p.log_startprob, &p.transmat, logb, &mut w.gamma) {
                Some(log_p) => Ok(log_p),
                None => {
                    let mut xi = vec![0.0; p.transmat.len()];
                    forward_backward_log(
                        &p.log_startprob,
                        &p.log_transmat,
                        logb,
                        &mut w.gamma,
                        &mut xi,
                    )
                }
            }
        })
    }

    /// The log-likelihood of a group, its posteriors written to `out` (f64 bits, `[N][K]`).
    fn posterior_group(
        &self,
        p: &HmmPrepared,
        seqs: &Range<usize>,
        w: &mut Work,
        out: &[std::sync::atomic::AtomicU64],
    ) -> Result<HmmStats> {
        let k = p.n_components();
        self.each_sequence(p, seqs, w, |p, logb, w, rows| {
            w.gamma.resize(logb.len(), 0.0);
            w.beta.resize(logb.len(), 0.0);
            let mut xi = vec![0.0; k * k];
            let log_p = sequence_posteriors(p, logb, &mut w.gamma, &mut w.beta, &mut xi)?;
            for (o, g) in out[rows.start * k..rows.end * k].iter().zip(&w.gamma) {
                o.store(g.to_bits(), std::sync::atomic::Ordering::Relaxed);
            }
            Ok(log_p)
        })
    }

    /// Runs `f(p, logb, work, rows)` on every sequence of a group; sums the log-likelihoods.
    fn each_sequence(
        &self,
        p: &HmmPrepared,
        seqs: &Range<usize>,
        w: &mut Work,
        mut f: impl FnMut(&HmmPrepared, &[f64], &mut Work, Range<usize>) -> Result<f64>,
    ) -> Result<HmmStats> {
        let (k, d) = (p.n_components(), p.n_features());
        let rows = self.layout.offsets[seqs.start]..self.layout.offsets[seqs.end];
        let mut stats = HmmStats::zeros(p.emission.covariance_type, k, d, &p.emission.means);
        w.x.resize(rows.len() * d, 0.0);
        self.data.read_f64(rows.start, &mut w.x)?;
        let mut logb = std::mem::take(&mut w.logb);
        logb.resize(rows.len() * k, 0.0);
        p.emission_log_densities(&w.x, &mut logb);
        for s in seqs.clone() {
            let r = self.layout.rows(s);
            let local = (r.start - rows.start) * k..(r.end - rows.start) * k;
            stats.emission.log_likelihood += f(p, &logb[local], w, r.clone())?;
            stats.emission.n_samples += r.len() as f64;
            stats.n_sequences += 1.0;
        }
        w.logb = logb;
        Ok(stats)
    }
}

/// `log b_k(x_t)` of a long sequence, in parallel blocks.
fn log_densities_parallel(p: &HmmPrepared, x: &[f64]) -> Vec<f64> {
    let (k, d) = (p.n_components(), p.n_features());
    let mut logb = vec![0.0; x.len() / d * k];
    logb.par_chunks_mut(TIME_BLOCK * k)
        .zip(x.par_chunks(TIME_BLOCK * d))
        .for_each(|(o, xb)| p.emission_log_densities(xb, o));
    logb
}

/// An error unless the prepared model has the data's number of features.
fn check_shape(data: &Dataset, p: &HmmPrepared) -> Result<()> {
    if p.n_features() != data.n_features() {
        return Err(Error::DimensionMismatch {
            expected: p.n_features(),
            got: data.n_features(),
        });
    }
    Ok(())
}

impl EStep<HmmModel> for CpuHmmEngine<'_> {
    fn e_step(&mut self, p: &HmmPrepared) -> Result<HmmStats> {
        self.run(p, Pass::Stats)
    }
    fn report(&self) -> BackendReport {
        cpu_report(&self.reason)
    }
}

impl HmmEngine for CpuHmmEngine<'_> {
    fn posteriors(&mut self, p: &HmmPrepared, out: &mut [f64]) -> Result<f64> {
        let want = self.data.n_samples() * p.n_components();
        if out.len() != want {
            return Err(Error::param(format!(
                "the posteriors buffer holds {} values but the data need {want}",
                out.len()
            )));
        }
        let cells: Vec<std::sync::atomic::AtomicU64> = (0..want)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        let total = self.run(p, Pass::Posteriors(&cells))?;
        for (o, c) in out.iter_mut().zip(cells) {
            *o = f64::from_bits(c.into_inner());
        }
        Ok(total.log_likelihood())
    }

    fn viterbi(&mut self, p: &HmmPrepared, states: &mut [usize]) -> Result<f64> {
        check_shape(self.data, p)?;
        if states.len() != self.data.n_samples() {
            return Err(Error::param(format!(
                "the states buffer holds {} values but the data have {} rows",
                states.len(),
                self.data.n_samples()
            )));
        }
        let (k, d) = (p.n_components(), p.n_features());
        let layout = &self.layout;
        let mut pieces: Vec<(usize, &mut [usize])> = Vec::with_capacity(layout.n_sequences());
        let mut rest = states;
        for s in 0..layout.n_sequences() {
            let (head, tail) = rest.split_at_mut(layout.rows(s).len());
            pieces.push((s, head));
            rest = tail;
        }
        let logps: Vec<f64> = pieces
            .into_par_iter()
            .map(|(s, out)| {
                let r = layout.rows(s);
                let mut x = vec![0.0; r.len() * d];
                self.data.read_f64(r.start, &mut x)?;
                let mut logb = vec![0.0; r.len() * k];
                p.emission_log_densities(&x, &mut logb);
                Ok(viterbi(&p.log_startprob, &p.log_transmat, &logb, out))
            })
            .collect::<Result<_>>()?;
        Ok(logps.iter().sum())
    }

    fn score(&mut self, p: &HmmPrepared) -> Result<f64> {
        Ok(self.run(p, Pass::Score)?.log_likelihood())
    }
}
