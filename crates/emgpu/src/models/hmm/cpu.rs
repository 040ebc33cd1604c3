//! The CPU engine of the Gaussian HMM: f64, parallel over sequences, and over time within a
//! long sequence.
//!
//! Sequences are gathered into groups of about [`GROUP_ROWS`] rows; groups run in parallel (each
//! reads its rows, computes the emission log-densities, runs forward-backward per sequence and
//! sums the statistics) and merge in order, so the result does not depend on the number of
//! threads. A sequence longer than `long_rows` (by default [`LONG_ROWS`]) is not left to one
//! thread: in the scaled form its forward and backward passes are independent (see
//! [`super::forward_backward`]) and resume block by block ([`TIME_BLOCK`] steps), and the
//! posteriors of a block need only its rows. Two schedules use that: on up to
//! [`FUSED_MAX_THREADS`] threads the fused schedule (one thread runs the forward pass over the first half
//! while the other runs the backward pass over the second, each computing the emission
//! densities of its blocks as it goes; then each crosses into the other half and turns every
//! block into posteriors and moments as soon as both passes have covered it), on more threads
//! the phased one (emissions on all threads, forward ∥ backward, posteriors on all threads).
//! Either way the work is the same as for short sequences; the long sequence's `T × K` buffers
//! (emission densities, forward and backward rows; kept across E-steps) are read back from
//! memory once where short sequences stay in cache, which costs about 10 % per step on the
//! development machine. Memory: a few `T × K` buffers per sequence in flight (a long sequence:
//! four of them).

use std::ops::Range;

use rayon::prelude::*;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::forward_backward::{
    LN_FLUSH, backward, backward_block, backward_posteriors_block, forward, forward_backward_log,
    forward_block, forward_pair, posteriors, viterbi,
};
use super::{HmmModel, HmmPrepared, HmmStats};
use crate::data::Dataset;
use crate::device::{BackendReport, EngineOptions, cpu_report};
use crate::em::{EStep, Stats};
use crate::error::{Error, Result};
use crate::models::gmm::GmmStats;
use crate::models::gmm::cpu::blocked::WeightedMoments;

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

/// Forward-backward of the rows `x` in log space (the exact fallback).
fn log_space(p: &HmmPrepared, x: &[f64], gamma: &mut [f64], xi: &mut [f64]) -> Result<f64> {
    let mut logb = vec![0.0; gamma.len()];
    p.emission_log_densities(x, &mut logb);
    forward_backward_log(&p.log_startprob, &p.log_transmat, &logb, gamma, xi)
}

/// Scratch buffers: the rows `[T][D]` and the `[T][K]` / `[T]` buffers of a group of short
/// sequences (one per thread) or of a long sequence (kept in the engine).
#[derive(Default)]
struct Work {
    x: Vec<f64>,
    e: Vec<f64>,
    shift: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    norms: Vec<f64>,
    /// Scratch of the fused backward pass (`backward_posteriors_block`).
    cw: Vec<f64>,
}

/// What a pass over the data computes.
#[derive(Clone, Copy)]
enum Pass<'o> {
    /// The statistics of an E-step.
    Stats,
    /// The log-likelihood only.
    Score,
    /// The log-likelihood, and the posteriors written to the cells (f64 bits, `[N][K]`).
    Posteriors(&'o [AtomicU64]),
}

/// E-steps of a Gaussian HMM on the CPU.
pub struct CpuHmmEngine<'a> {
    data: &'a Dataset<'a>,
    layout: Layout,
    groups: Vec<(Range<usize>, bool)>,
    reason: String,
    /// The buffers of the long sequences, kept from one E-step to the next (allocating hundreds
    /// of megabytes anew each time costs more in page faults than the pass itself).
    long: Mutex<Work>,
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
            long: Mutex::new(Work::default()),
        }
    }

    /// `pass` over a group of short sequences, one after the other.
    fn short_group(
        &self,
        p: &HmmPrepared,
        seqs: &Range<usize>,
        w: &mut Work,
        pass: Pass<'_>,
    ) -> Result<HmmStats> {
        let (k, d) = (p.n_components(), p.n_features());
        let rows = self.layout.offsets[seqs.start]..self.layout.offsets[seqs.end];
        let n = rows.len();
        let mut moments = WeightedMoments::new(&p.emission);
        w.x.resize(n * d, 0.0);
        self.data.read_f64(rows.start, &mut w.x)?;
        w.e.resize(n * k, 0.0);
        w.shift.resize(n, 0.0);
        moments.relative_densities(&w.x, &mut w.e, &mut w.shift, LN_FLUSH);
        w.gamma.resize(n * k, 0.0);
        let mut stats = HmmStats::zeros(p.emission.covariance_type, k, d, &p.emission.means);
        let mut log_likelihood = 0.0;
        let local = |s: usize| {
            let r = self.layout.rows(s);
            r.start - rows.start..r.end - rows.start
        };
        // Two sequences at a time: their forward passes interleaved (see `forward_pair`).
        let mut s = seqs.start;
        while s < seqs.end {
            let pair = if s + 1 < seqs.end { s..s + 2 } else { s..s + 1 };
            let (r0, r1) = (local(pair.start), local(pair.end - 1));
            let (g0, g1) = w.gamma[r0.start * k..r1.end * k].split_at_mut(r0.len() * k);
            let alphas = if pair.len() == 2 {
                let (lp0, lp1) = forward_pair(
                    &p.startprob,
                    &p.transmat,
                    (&w.e[r0.start * k..r0.end * k], &w.shift[r0.clone()], g0),
                    (&w.e[r1.start * k..r1.end * k], &w.shift[r1.clone()], g1),
                );
                [lp0, lp1]
            } else {
                let e = &w.e[r0.start * k..r0.end * k];
                [
                    forward(&p.startprob, &p.transmat, e, &w.shift[r0.clone()], g0),
                    None,
                ]
            };
            for (seq, alpha_lp) in pair.clone().zip(alphas) {
                let r = self.layout.rows(seq);
                let l = local(seq);
                let e = &w.e[l.start * k..l.end * k];
                let x = &w.x[l.start * d..l.end * d];
                let gamma = &mut w.gamma[l.start * k..l.end * k];
                log_likelihood += match pass {
                    Pass::Score => match alpha_lp {
                        Some(lp) => lp,
                        None => log_space(p, x, gamma, &mut vec![0.0; k * k])?,
                    },
                    Pass::Stats | Pass::Posteriors(_) => {
                        let mut xi = vec![0.0; k * k];
                        let lp = match alpha_lp.filter(|_| {
                            backward_posteriors_block(
                                &p.transmat,
                                e,
                                None,
                                gamma,
                                &mut xi,
                                &mut None,
                                &mut w.cw,
                            )
                        }) {
                            Some(lp) => lp,
                            None => {
                                xi.fill(0.0);
                                log_space(p, x, gamma, &mut xi)?
                            }
                        };
                        stats.trans.iter_mut().zip(&xi).for_each(|(a, v)| *a += v);
                        stats
                            .start
                            .iter_mut()
                            .zip(&gamma[..k])
                            .for_each(|(a, g)| *a += g);
                        if let Pass::Posteriors(out) = pass {
                            for (o, g) in out[r.start * k..r.end * k].iter().zip(gamma.iter()) {
                                o.store(g.to_bits(), Ordering::Relaxed);
                            }
                        }
                        lp
                    }
                };
                stats.n_sequences += 1.0;
            }
            s = pair.end;
        }
        if let Pass::Stats = pass {
            moments.add(&w.x, &w.gamma);
            stats.emission = moments.finish();
        }
        stats.emission.n_samples = n as f64;
        stats.emission.log_likelihood = log_likelihood;
        Ok(stats)
    }

    /// `pass` over one long sequence, parallel in time (see the module docs): with up to
    /// [`FUSED_MAX_THREADS`] threads the fused two-thread schedule, with more the phased one.
    fn long_sequence(&self, p: &HmmPrepared, s: usize, pass: Pass<'_>) -> Result<HmmStats> {
        let (k, d) = (p.n_components(), p.n_features());
        let rows = self.layout.rows(s);
        let t_len = rows.len();
        let mut guard = self
            .long
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let buf = &mut *guard;
        buf.x.resize(t_len * d, 0.0);
        buf.e.resize(t_len * k, 0.0);
        buf.shift.resize(t_len, 0.0);
        buf.gamma.resize(t_len * k, 0.0);
        buf.beta.resize(t_len * k, 0.0);
        buf.norms.resize(t_len, 0.0);
        let mut b = Buffers {
            x: &mut buf.x[..t_len * d],
            e: &mut buf.e[..t_len * k],
            shift: &mut buf.shift[..t_len],
            gamma: &mut buf.gamma[..t_len * k],
            beta: &mut buf.beta[..t_len * k],
            norms: &mut buf.norms[..t_len],
        };
        self.read_parallel(rows.start, b.x)?;
        let mut stats = HmmStats::zeros(p.emission.covariance_type, k, d, &p.emission.means);
        stats.n_sequences = 1.0;
        let want_moments = matches!(pass, Pass::Stats);
        let outcome = if let Pass::Score = pass {
            emissions(p, b.x, b.e, b.shift);
            forward(&p.startprob, &p.transmat, b.e, b.shift, b.gamma)
                .map(|lp| (lp, Vec::new(), Vec::new(), Vec::new()))
        } else if rayon::current_num_threads() <= FUSED_MAX_THREADS {
            let keep_gamma = matches!(pass, Pass::Posteriors(_));
            fused(p, &mut b, want_moments, keep_gamma)
        } else {
            phased(p, &mut b, want_moments)
        };
        let log_p = match outcome {
            Some((log_p, xis, moments, gamma0)) => {
                if !matches!(pass, Pass::Score) {
                    stats.start.copy_from_slice(&gamma0);
                }
                for xi in xis {
                    stats.trans.iter_mut().zip(&xi).for_each(|(a, v)| *a += v);
                }
                if want_moments {
                    stats.emission = merged(p, &moments);
                }
                log_p
            }
            None => {
                // The scaled recursion underflowed somewhere: the whole sequence in log space.
                stats.trans.fill(0.0);
                let (x, gamma) = (&*b.x, &mut *b.gamma);
                let log_p = log_space(p, x, gamma, &mut stats.trans)?;
                if want_moments {
                    let parts: Vec<_> = x
                        .par_chunks(TIME_BLOCK * d)
                        .zip(gamma.par_chunks(TIME_BLOCK * k))
                        .map(|(xb, gb)| block_moments(p, xb, gb))
                        .collect();
                    stats.emission = merged(p, &parts);
                }
                stats.start.copy_from_slice(&gamma[..k]);
                log_p
            }
        };
        if let Pass::Posteriors(out) = pass {
            for (o, g) in out[rows.start * k..rows.end * k].iter().zip(b.gamma.iter()) {
                o.store(g.to_bits(), Ordering::Relaxed);
            }
        }
        stats.emission.n_samples = t_len as f64;
        stats.emission.log_likelihood = log_p;
        Ok(stats)
    }

    /// Rows from `start` into `x`, read in parallel blocks.
    fn read_parallel(&self, start: usize, x: &mut [f64]) -> Result<()> {
        let d = self.data.n_features();
        x.par_chunks_mut(TIME_BLOCK * d)
            .enumerate()
            .try_for_each(|(b, xb)| self.data.read_f64(start + b * TIME_BLOCK, xb))
    }

    /// Runs `pass` over every group: the short groups in parallel, then the long sequences one
    /// by one (each parallel in time); the statistics merge in group order.
    fn run(&self, p: &HmmPrepared, pass: Pass<'_>) -> Result<HmmStats> {
        check_shape(self.data, p)?;
        let (k, d) = (p.n_components(), p.n_features());
        let short: Vec<Option<HmmStats>> = self
            .groups
            .par_iter()
            .map_init(Work::default, |w, (seqs, long)| {
                (!*long)
                    .then(|| self.short_group(p, seqs, w, pass))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let mut total = HmmStats::zeros(p.emission.covariance_type, k, d, &p.emission.means);
        for ((seqs, _), part) in self.groups.iter().zip(short) {
            let part = match part {
                Some(part) => part,
                None => self.long_sequence(p, seqs.start, pass)?,
            };
            total.merge(&part);
        }
        Ok(total)
    }
}

/// Up to this many threads, a long sequence runs the fused schedule (the fused schedule), which keeps
/// two threads busy and reads every large buffer about once less; with more threads the phased
/// one (`phased`), whose emission and posterior phases use them all.
pub const FUSED_MAX_THREADS: usize = 3;

/// The `[T]…` buffers of one long sequence.
struct Buffers<'b> {
    x: &'b mut [f64],
    e: &'b mut [f64],
    shift: &'b mut [f64],
    gamma: &'b mut [f64],
    beta: &'b mut [f64],
    norms: &'b mut [f64],
}

/// What the passes of a long sequence give: `log p(x)`, the ξ sums and the weighted moments of
/// each block (merged in a fixed order by the caller), and the posteriors of the first step;
/// `None` where the scaled recursion underflowed.
type LongOutcome<'p> = Option<(f64, Vec<Vec<f64>>, Vec<WeightedMoments<'p>>, Vec<f64>)>;

/// The relative emission densities and shifts of the rows `x`, block by block in parallel.
fn emissions(p: &HmmPrepared, x: &[f64], e: &mut [f64], shift: &mut [f64]) {
    let (k, d) = (p.n_components(), p.n_features());
    e.par_chunks_mut(TIME_BLOCK * k)
        .zip(shift.par_chunks_mut(TIME_BLOCK))
        .zip(x.par_chunks(TIME_BLOCK * d))
        .for_each(|((eb, sb), xb)| emission_block(p, xb, eb, sb));
}

/// The γ-weighted moments of one block of rows `x` with posteriors `g`.
fn block_moments<'p>(p: &'p HmmPrepared, x: &[f64], g: &[f64]) -> WeightedMoments<'p> {
    let mut m = WeightedMoments::new(&p.emission);
    m.add(x, g);
    m
}

/// The emission statistics of the blocks' moments, merged in order.
fn merged(p: &HmmPrepared, parts: &[WeightedMoments<'_>]) -> GmmStats {
    let mut total = WeightedMoments::new(&p.emission);
    parts.iter().for_each(|m| total.merge(m));
    total.finish()
}

/// The relative densities of one block of rows.
fn emission_block(p: &HmmPrepared, x: &[f64], e: &mut [f64], shift: &mut [f64]) {
    WeightedMoments::new(&p.emission).relative_densities(x, e, shift, LN_FLUSH);
}

/// The row after a block of lo: the next block's first (`in_lo`), else hi's first (when hi is
/// not empty), else none (the end of the sequence).
fn first_row_after<'s>(
    in_lo: bool,
    has_hi: bool,
    k: usize,
    lo_rows: &'s [f64],
    hi_rows: &'s [f64],
) -> Option<&'s [f64]> {
    if in_lo {
        Some(&lo_rows[..k])
    } else if has_hi {
        Some(&hi_rows[..k])
    } else {
        None
    }
}

/// The phased schedule: emissions (all threads), forward ∥ backward (two threads), then
/// posteriors and moments (all threads, block by block).
fn phased<'p>(p: &'p HmmPrepared, b: &mut Buffers<'_>, want_moments: bool) -> LongOutcome<'p> {
    let (k, d) = (p.n_components(), p.n_features());
    emissions(p, b.x, b.e, b.shift);
    let (e, shift, x) = (&*b.e, &*b.shift, &*b.x);
    let (gamma, beta, norms) = (&mut *b.gamma, &mut *b.beta, &mut *b.norms);
    let (log_p, ok) = rayon::join(
        || forward(&p.startprob, &p.transmat, e, shift, gamma),
        || backward(&p.transmat, e, beta, norms),
    );
    let (log_p, beta, norms) = (log_p.filter(|_| ok)?, &*beta, &*norms);
    let t_len = shift.len();
    let parts: Vec<Option<(Vec<f64>, Option<WeightedMoments>)>> = gamma
        .par_chunks_mut(TIME_BLOCK * k)
        .zip(x.par_chunks(TIME_BLOCK * d))
        .enumerate()
        .map(|(blk, (g, xb))| {
            let r = blk * TIME_BLOCK..(blk * TIME_BLOCK + g.len() / k);
            let next = (r.end < t_len).then(|| {
                (
                    &e[r.end * k..(r.end + 1) * k],
                    &beta[r.end * k..(r.end + 1) * k],
                )
            });
            let mut xi = vec![0.0; k * k];
            let (eb, bb) = (&e[r.start * k..r.end * k], &beta[r.start * k..r.end * k]);
            if !posteriors(&p.transmat, eb, bb, &norms[r], next, g, &mut xi) {
                return None;
            }
            Some((xi, want_moments.then(|| block_moments(p, xb, g))))
        })
        .collect();
    let parts = parts.into_iter().collect::<Option<Vec<_>>>()?;
    let (xis, moments): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let gamma0 = gamma[..k].to_vec();
    Some((log_p, xis, moments.into_iter().flatten().collect(), gamma0))
}

/// The fused schedule for two threads. The blocks are split in two halves, lo and hi.
/// Phase A: one thread computes the emissions of lo and runs the forward pass over them while
/// they are in cache; the other does the same for hi, backwards. Phase B: the first thread
/// continues the forward pass over hi and, block by block, turns it into posteriors and moments
/// (hi's backward pass is done); the second continues the backward pass over lo fused with the
/// posteriors (`backward_posteriors_block`: lo's backward rows are never stored). The work equals the phased schedule's, and every block of the emissions, the
/// forward and the backward rows is read once while hot.
fn fused<'p>(
    p: &'p HmmPrepared,
    b: &mut Buffers<'_>,
    want_moments: bool,
    keep_gamma: bool,
) -> LongOutcome<'p> {
    let (k, d) = (p.n_components(), p.n_features());
    let t_len = b.shift.len();
    let n_blocks = t_len.div_ceil(TIME_BLOCK);
    let split = (n_blocks / 2).max(1).min(n_blocks) * TIME_BLOCK;
    let split = split.min(t_len);
    let (x_lo, x_hi) = b.x.split_at(split * d);
    let (e_lo, e_hi) = b.e.split_at_mut(split * k);
    let (s_lo, s_hi) = b.shift.split_at_mut(split);
    let (g_lo, g_hi) = b.gamma.split_at_mut(split * k);
    let (_, b_hi) = b.beta.split_at_mut(split * k);
    let (_, n_hi) = b.norms.split_at_mut(split);
    let blocks = |len: usize| {
        (0..len.div_ceil(TIME_BLOCK)).map(move |i| i * TIME_BLOCK..((i + 1) * TIME_BLOCK).min(len))
    };
    // Phase A.
    let (fwd, bwd) = rayon::join(
        || {
            let mut carry = None;
            for r in blocks(split) {
                let (e, sh) = (&mut e_lo[r.start * k..r.end * k], &mut s_lo[r.clone()]);
                emission_block(p, &x_lo[r.start * d..r.end * d], e, sh);
                let g = &mut g_lo[r.start * k..r.end * k];
                if !forward_block(&p.startprob, &p.transmat, e, sh, g, &mut carry) {
                    return None;
                }
            }
            Some(carry)
        },
        || {
            let mut carry = None;
            let hi_len = t_len - split;
            for r in blocks(hi_len).collect::<Vec<_>>().into_iter().rev() {
                let (e_here, e_after) = e_hi.split_at_mut(r.end * k);
                let e = &mut e_here[r.start * k..];
                emission_block(p, &x_hi[r.start * d..r.end * d], e, &mut s_hi[r.clone()]);
                let e_next = (r.end < hi_len).then(|| &e_after[..k]);
                let (bb, nb) = (&mut b_hi[r.start * k..r.end * k], &mut n_hi[r.clone()]);
                if !backward_block(&p.transmat, e, e_next, bb, nb, &mut carry) {
                    return None;
                }
            }
            Some(carry)
        },
    );
    let (mut fwd_carry, mut bwd_carry) = (fwd?, bwd?);
    let (e_lo, e_hi, s_hi) = (&*e_lo, &*e_hi, &*s_hi);
    let (b_hi, n_hi) = (&*b_hi, &*n_hi);
    let moments_of = |xb: &[f64], g: &[f64]| want_moments.then(|| block_moments(p, xb, g));
    // Phase B.
    let (hi, lo) = rayon::join(
        || {
            let hi_len = t_len - split;
            let (mut xis, mut moments) = (Vec::new(), Vec::new());
            // The block's forward rows, then its posteriors, in a block-sized buffer that stays
            // in cache (copied out only when the posteriors are the output).
            let mut scratch = vec![0.0; TIME_BLOCK * k];
            for r in blocks(hi_len) {
                let e = &e_hi[r.start * k..r.end * k];
                let g = &mut scratch[..r.len() * k];
                if !forward_block(
                    &p.startprob,
                    &p.transmat,
                    e,
                    &s_hi[r.clone()],
                    g,
                    &mut fwd_carry,
                ) {
                    return None;
                }
                let next = (r.end < hi_len).then(|| {
                    (
                        &e_hi[r.end * k..(r.end + 1) * k],
                        &b_hi[r.end * k..(r.end + 1) * k],
                    )
                });
                let mut xi = vec![0.0; k * k];
                let bb = &b_hi[r.start * k..r.end * k];
                if !posteriors(&p.transmat, e, bb, &n_hi[r.clone()], next, g, &mut xi) {
                    return None;
                }
                xis.push(xi);
                moments.extend(moments_of(&x_hi[r.start * d..r.end * d], g));
                if keep_gamma {
                    g_hi[r.start * k..r.end * k].copy_from_slice(g);
                }
            }
            let log_p = fwd_carry.as_ref().map_or(0.0, |c| c.log_likelihood());
            Some((log_p, xis, moments))
        },
        || {
            let (mut xis, mut moments) = (Vec::new(), Vec::new());
            // The block's posteriors in a block-sized buffer that stays in cache, the backward
            // pass fused with them (its rows are never stored); the next block's first
            // backward row is the carry's.
            let (mut cw, mut g_scr) = (Vec::new(), vec![0.0; TIME_BLOCK * k]);
            let mut gamma0 = Vec::new();
            for r in blocks(split).collect::<Vec<_>>().into_iter().rev() {
                let e = &e_lo[r.start * k..r.end * k];
                let e_next =
                    first_row_after(r.end < split, t_len > split, k, &e_lo[r.end * k..], e_hi);
                let mut xi = vec![0.0; k * k];
                let g = &mut g_scr[..r.len() * k];
                g.copy_from_slice(&g_lo[r.start * k..r.end * k]);
                if !backward_posteriors_block(
                    &p.transmat,
                    e,
                    e_next,
                    g,
                    &mut xi,
                    &mut bwd_carry,
                    &mut cw,
                ) {
                    return None;
                }
                xis.push(xi);
                moments.extend(moments_of(&x_lo[r.start * d..r.end * d], g));
                if keep_gamma {
                    g_lo[r.start * k..r.end * k].copy_from_slice(g);
                }
                if r.start == 0 {
                    gamma0 = g[..k].to_vec();
                }
            }
            xis.reverse();
            moments.reverse();
            Some((xis, moments, gamma0))
        },
    );
    let ((log_p, xi_hi, m_hi), (mut xis, mut moments, gamma0)) = (hi?, lo?);
    xis.extend(xi_hi);
    moments.extend(m_hi);
    Some((log_p, xis, moments, gamma0))
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
                WeightedMoments::new(&p.emission).log_joint(&x, &mut logb);
                Ok(viterbi(&p.log_startprob, &p.log_transmat, &logb, out))
            })
            .collect::<Result<_>>()?;
        Ok(logps.iter().sum())
    }

    fn score(&mut self, p: &HmmPrepared) -> Result<f64> {
        Ok(self.run(p, Pass::Score)?.log_likelihood())
    }
}
