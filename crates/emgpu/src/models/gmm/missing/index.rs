//! Rows grouped by missingness pattern: a permutation computed once per dataset.
//!
//! The index reads the data once, in chunks, finds each row's pattern (which columns are NaN),
//! and keeps a grouped copy of the *observed* values: the rows of one pattern lie together,
//! each row holding only its observed columns (`d_o` values). Its memory is O(N·D) f64 — the
//! size of the data held resident, as the GPU engine does. The streamed layout
//! ([`super::stream`]) keeps no such copy.

use std::collections::HashMap;
use std::ops::Range;

use crate::data::{Dataset, chunk_rows_for};
use crate::error::{Error, Result};

/// One missingness pattern: the columns observed and missing, and where its rows lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Observed columns, increasing (never empty).
    pub observed: Vec<usize>,
    /// Missing columns, increasing.
    pub missing: Vec<usize>,
    /// The pattern's positions in the permuted order ([`MissingIndex::rows`]).
    pub rows: Range<usize>,
    /// Where its observed values start in [`MissingIndex::values`].
    pub offset: usize,
}

impl Pattern {
    /// `d_o`, the number of observed columns.
    pub fn n_observed(&self) -> usize {
        self.observed.len()
    }
    /// The observed values of its rows, row-major `[rows][d_o]`.
    pub fn values<'i>(&self, index: &'i MissingIndex) -> &'i [f64] {
        let len = self.rows.len() * self.n_observed();
        &index.values[self.offset..self.offset + len]
    }
}

/// The rows of a dataset grouped by missingness pattern (see the module docs).
#[derive(Debug, Clone)]
pub struct MissingIndex {
    n_features: usize,
    patterns: Vec<Pattern>,
    /// Original row of each permuted position.
    rows: Vec<usize>,
    values: Vec<f64>,
    n_missing: usize,
}

impl MissingIndex {
    /// Groups the rows of `data` by pattern. NaN marks a missing entry; ±∞ is an error naming
    /// its row and column; a row with nothing observed is [`Error::NothingObserved`]. The
    /// patterns are in order of their first row (a dataset without NaN has one pattern, all
    /// rows in order).
    pub fn build(data: &Dataset) -> Result<Self> {
        let (n, d) = (data.n_samples(), data.n_features());
        if n == 0 || d == 0 {
            return Err(Error::EmptyData {
                n_samples: n,
                n_features: d,
            });
        }
        let words = d.div_ceil(64);
        let mut ids: HashMap<Vec<u64>, u32> = HashMap::new();
        let mut keys: Vec<Vec<u64>> = Vec::new();
        let mut pattern_of = vec![0u32; n];
        let mut counts: Vec<usize> = Vec::new();
        let chunk = chunk_rows_for(d, 1 << 16);
        let mut buf = Vec::new();
        let mut key = vec![0u64; words];
        let mut n_missing = 0;
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            buf.resize(len * d, 0.0);
            data.read_f64(start, &mut buf)?;
            for (r, row) in buf.chunks_exact(d).enumerate() {
                key.fill(0);
                let mut observed = 0;
                for (j, v) in row.iter().enumerate() {
                    if v.is_nan() {
                        key[j / 64] |= 1 << (j % 64);
                        n_missing += 1;
                    } else if v.is_infinite() {
                        return Err(Error::NonFinite {
                            row: start + r,
                            column: j,
                            value: format!("{v}"),
                        });
                    } else {
                        observed += 1;
                    }
                }
                if observed == 0 {
                    return Err(Error::NothingObserved { row: start + r });
                }
                let id = match ids.get(&key) {
                    Some(&id) => id,
                    None => {
                        let id = keys.len() as u32;
                        ids.insert(key.clone(), id);
                        keys.push(key.clone());
                        counts.push(0);
                        id
                    }
                };
                pattern_of[start + r] = id;
                counts[id as usize] += 1;
            }
        }
        // Counting sort of the rows by pattern (stable: rows keep their order inside a pattern).
        let mut patterns = Vec::with_capacity(keys.len());
        let (mut row_at, mut offset) = (0, 0);
        for (key, &count) in keys.iter().zip(&counts) {
            let is_missing = |j: usize| key[j / 64] >> (j % 64) & 1 == 1;
            let observed: Vec<usize> = (0..d).filter(|&j| !is_missing(j)).collect();
            let missing: Vec<usize> = (0..d).filter(|&j| is_missing(j)).collect();
            patterns.push(Pattern {
                rows: row_at..row_at + count,
                offset,
                observed,
                missing,
            });
            row_at += count;
            offset += count * patterns.last().map_or(0, Pattern::n_observed);
        }
        let mut next: Vec<usize> = patterns.iter().map(|p| p.rows.start).collect();
        let mut rows = vec![0; n];
        for (i, &p) in pattern_of.iter().enumerate() {
            rows[next[p as usize]] = i;
            next[p as usize] += 1;
        }
        drop(pattern_of);
        let mut values = vec![0.0; offset];
        // Fill the grouped values pattern by pattern, reading the rows through the permutation
        // in chunks of consecutive original rows.
        let mut position = vec![0usize; n];
        for (at, &i) in rows.iter().enumerate() {
            position[i] = at;
        }
        let pattern_at = {
            let mut v = vec![0u32; n];
            for (p, pat) in patterns.iter().enumerate() {
                v[pat.rows.clone()].fill(p as u32);
            }
            v
        };
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            buf.resize(len * d, 0.0);
            data.read_f64(start, &mut buf)?;
            for (r, row) in buf.chunks_exact(d).enumerate() {
                let at = position[start + r];
                let pat = &patterns[pattern_at[at] as usize];
                let d_o = pat.n_observed();
                let dst = pat.offset + (at - pat.rows.start) * d_o;
                for (o, &j) in values[dst..dst + d_o].iter_mut().zip(&pat.observed) {
                    *o = row[j];
                }
            }
        }
        Ok(Self {
            n_features: d,
            patterns,
            rows,
            values,
            n_missing,
        })
    }

    /// D.
    pub fn n_features(&self) -> usize {
        self.n_features
    }
    /// N.
    pub fn n_samples(&self) -> usize {
        self.rows.len()
    }
    /// The patterns, in order of their first row.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }
    /// The original row of every permuted position.
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }
    /// Number of missing entries.
    pub fn n_missing(&self) -> usize {
        self.n_missing
    }
    /// The grouped observed values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }
    /// Column means of the observed values (the mean imputation of the initialization).
    pub fn observed_means(&self) -> Vec<f64> {
        let d = self.n_features;
        let (mut sum, mut count) = (vec![0.0; d], vec![0usize; d]);
        for p in &self.patterns {
            for row in p.values(self).chunks_exact(p.n_observed()) {
                for (v, &j) in row.iter().zip(&p.observed) {
                    sum[j] += v;
                    count[j] += 1;
                }
            }
        }
        sum.iter()
            .zip(&count)
            .map(|(s, &c)| if c == 0 { 0.0 } else { s / c as f64 })
            .collect()
    }
}
