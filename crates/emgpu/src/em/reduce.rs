//! Summing statistics across processes: the [`Reducer`] a distributed fit calls, and the E-step
//! wrapper ([`Reduced`]) that makes any engine's statistics those of all the processes' rows.
//!
//! A distributed fit runs the same program on every process (an MPI rank): each holds a block of
//! the rows, computes the statistics of its block, and the statistics are summed across the
//! processes with one collective call ([`Reducer::sum`]) per E-step; every process then runs the
//! same M-step on the same numbers and makes the same decisions. Nothing here knows MPI: the
//! command line's `mpi` feature implements [`Reducer`] with an `MPI_Allreduce`, and
//! [`LocalReducer`] is the one-process case (the sum of one term: the numbers are unchanged).
//!
//! # Exact enough that the split does not show
//! [`Reducer::sum`] must give every process the same bits (so that their decisions agree), and
//! should make the result depend as little as possible on how the rows were split. The MPI
//! reducer sums double-double pairs (`hi + lo`, [`dd_add`]), which is exact to about 2⁻¹⁰⁴
//! relative whatever the order of the ranks, and rounds once at the end: the only rounding left
//! is each process's own sum of its rows, and the engines sum rows in blocks aligned to global
//! row numbers ([`Dataset::with_global_rows`](crate::data::Dataset::with_global_rows)), so
//! that every whole block's partial sum is the same bits in a one-process run and in any split.
//!
//! # Failures
//! A collective call that one process never reaches hangs the others. So a process that fails
//! (its rows are unreadable, hold a NaN, its engine fails) does not return early: it reports the
//! failure through [`Reducer::agree`], which every process calls at the same point, and every
//! process then returns an error (the failed one its own, the others [`Error::Remote`] with the
//! failed process's message).

use super::{EStep, Model, Stats};
use crate::device::BackendReport;
use crate::error::{Error, Result};

/// Sums across the processes of a distributed fit. Every method is collective: every process
/// calls it, in the same order, with buffers of the same length.
pub trait Reducer {
    /// This process's number, from 0.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `values` by their element-wise sum over the processes; every process gets the
    /// same bits.
    fn sum(&self, values: &mut [f64]) -> Result<()>;
    /// Agrees on failure: `Ok` on every process if `local` is `Ok` on every process; otherwise
    /// the lowest-numbered failed process's error on all (on that process its own `local`,
    /// elsewhere [`Error::Remote`] with its message).
    fn agree(&self, local: Result<()>) -> Result<()>;

    /// `value` from process `root` on every process (a sum where only `root` contributes,
    /// which is exact).
    fn broadcast(&self, root: usize, values: &mut [f64]) -> Result<()> {
        if self.rank() != root {
            values.iter_mut().for_each(|v| *v = 0.0);
        }
        self.sum(values)
    }
    /// Every process's `values` (all of the same length) side by side, in rank order.
    fn gather(&self, values: &[f64]) -> Result<Vec<f64>> {
        let m = values.len();
        let mut all = vec![0.0; m * self.size()];
        all[self.rank() * m..][..m].copy_from_slice(values);
        self.sum(&mut all)?;
        Ok(all)
    }
}

/// The reducer of a one-process fit: the sum of one term.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalReducer;

impl Reducer for LocalReducer {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn agree(&self, local: Result<()>) -> Result<()> {
        local
    }
}

/// `a + b` as an unevaluated pair `(s, e)` with `s = fl(a + b)` and `s + e = a + b` exactly
/// (Knuth's TwoSum: no branch, any order of magnitudes).
#[inline]
pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// The sum of two double-double numbers `hi + lo` (relative error about 2⁻¹⁰⁴); commutative
/// bit for bit, so that a reduction tree gives every process the same pair.
#[inline]
pub fn dd_add(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    let (s, e) = two_sum(a.0, b.0);
    let e = e + (a.1 + b.1);
    let hi = s + e;
    (hi, e - (hi - s))
}

/// An E-step engine over this process's rows whose statistics are those of all the processes'
/// rows: the engine's statistics, agreed on ([`Reducer::agree`]) and summed
/// ([`Reducer::sum`]) through their flat view.
pub struct Reduced<'e, 'r, M: Model + ?Sized> {
    engine: &'e mut dyn EStep<M>,
    reducer: &'r dyn Reducer,
}

impl<'e, 'r, M: Model + ?Sized> Reduced<'e, 'r, M> {
    /// `engine` (over this process's rows) with its statistics summed by `reducer`.
    pub fn new(engine: &'e mut dyn EStep<M>, reducer: &'r dyn Reducer) -> Self {
        Self { engine, reducer }
    }
}

/// `local` agreed on ([`Reducer::agree`]): its value on every process where it is `Ok` on every
/// process, else the agreed error everywhere. Every result computed on one process between two
/// collective calls passes through here (or [`reduce_stats`]) before the next one, so that no
/// process leaves a collective sequence that the others continue.
pub fn agreed<T>(reducer: &dyn Reducer, local: Result<T>) -> Result<T> {
    let (value, status) = match local {
        Ok(v) => (Some(v), Ok(())),
        Err(e) => (None, Err(e)),
    };
    reducer.agree(status)?;
    value.ok_or_else(|| Error::param("a value missing after agreement"))
}

/// Agrees on `local` and sums its flat view: the statistics of all processes.
pub fn reduce_stats<S: Stats>(reducer: &dyn Reducer, local: Result<S>) -> Result<S> {
    let mut stats = agreed(reducer, local)?;
    if reducer.size() > 1 {
        let mut flat = stats.to_flat();
        reducer.sum(&mut flat)?;
        stats.read_flat(&flat);
    }
    Ok(stats)
}

impl<M: Model + ?Sized> EStep<M> for Reduced<'_, '_, M> {
    fn e_step(&mut self, prepared: &M::Prepared) -> Result<M::Stats> {
        let local = self.engine.e_step(prepared);
        reduce_stats(self.reducer, local)
    }
    fn report(&self) -> BackendReport {
        self.engine.report()
    }
}

/// The rows `[⌊r·N/P⌋, ⌊(r+1)·N/P⌋)` of process `r` of `P` (the split of a shared input).
pub fn split_rows(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let at = |r: usize| ((r as u128 * n as u128) / size.max(1) as u128) as usize;
    at(rank)..at(rank + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sum_is_exact_and_dd_add_commutes() {
        let (s, e) = two_sum(1.0, 1e-20);
        assert_eq!((s, e), (1.0, 1e-20));
        let a = (1.0 + 2f64.powi(-40), 3e-30);
        let b = (-1.0, -1e-31);
        assert_eq!(dd_add(a, b), dd_add(b, a));
        let r = dd_add(a, b);
        assert!((r.0 - 2f64.powi(-40)).abs() < 1e-27);
    }

    #[test]
    fn split_rows_covers_every_row_once() {
        for (n, p) in [(10, 3), (1_000_000, 3), (5, 7), (0, 2)] {
            let mut next = 0;
            for r in 0..p {
                let rows = split_rows(n, r, p);
                assert_eq!(rows.start, next);
                next = rows.end;
            }
            assert_eq!(next, n);
        }
        assert_eq!(split_rows(10, 1, 3), 3..6);
    }
}
