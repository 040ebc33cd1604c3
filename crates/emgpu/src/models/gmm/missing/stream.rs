//! The streamed layout of EM with missing entries: memory independent of N.
//!
//! The grouped layout ([`super::index`]) keeps a copy of every observed value grouped by
//! pattern (O(N·D)). This one keeps nothing N-sized: each E-step reads the rows straight from
//! the [`Dataset`] (a memory map streams from the page cache) in fixed chunks of
//! [`stream_chunk_rows`] rows, groups each chunk by pattern on the fly into a per-thread
//! scratch (a counting sort of the chunk's rows), and computes the chunk's statistics:
//!
//! - the chunk's complete rows, and every pattern with at least [`STREAM_BLOCKED_ROWS`] rows in
//!   the chunk, run through the blocked CPU kernel ([`chunk_stats_blocked`]) on their observed
//!   columns with the marginal parameters, and are expanded to the full statistics exactly as
//!   in the grouped layout (`factors::expand`);
//! - the other rows run through the direct per-row path: the marginal log-densities and the
//!   completed rows `x̂_k − μ_k = [u_k; B_k u_k]` (`Light`: per (chunk, pattern) only `Λ_mm`
//!   is factored and inverted; `B_k u_k` is two triangular solves per row), whose
//!   responsibility-weighted moments are summed straight into the full statistics about `μ`
//!   (plus `S0·C` on the missing block per pattern): no per-pattern expansion.
//!
//! The cost against the grouped layout: a pattern's factors are computed once per chunk it
//! appears in rather than once per fit iteration, and fewer rows reach the blocked kernel
//! (a pattern needs [`STREAM_BLOCKED_ROWS`] rows in one chunk, not in the whole data). With
//! tens of thousands of patterns (20 % MCAR in 16 columns) that made an iteration about 2×
//! the grouped one in the measurements of the README; with few patterns, 1.4–2× the
//! complete-data iteration.
//!
//! Peak memory: per thread two chunk buffers (`2 · chunk · D` f64, at most 4 MiB each) and the
//! statistics (O(K·D²)); the pattern factors of one chunk's pattern at a time. The sums are
//! deterministic: chunks are cut by N and D only, summed in order inside a fixed number of
//! blocks, and the blocks in order, whatever the number of threads. The statistics equal the
//! grouped layout's up to the order of the sums (~1e-12 relative).
//!
//! The per-row outputs (`log p(x_o)`, responsibilities, imputation) stream the same way and
//! write each chunk's rows in place: no permutation.
//!
//! **On a GPU** ([`StreamEngine::with_engines`]): the patterns of [`stream_groups`] (the
//! complete pattern and those with at least `group_rows` rows in the whole data, counted by
//! [`Scan::of`]) run on the backend's complete-data engine over [`PatternRows`], a view that
//! reads a pattern's observed columns from the dataset on demand (the GPU engine uploads them
//! once when they fit its budget, else reads them every E-step), with the marginal parameters,
//! and are expanded as in the grouped layout; the chunked CPU code skips them. Their per-row
//! outputs are written to their rows by one more pass over the data. Host memory: besides the
//! above, one count per [`PATTERN_ROWS_STEP`] rows per such pattern, and the per-row outputs
//! of their rows until that pass.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use rayon::prelude::*;

use super::engine::conditional_mean;
use super::factors::{PatternFactors, Shared, cholesky_lower_in_place, expand, marginal_prepared};
use super::index::Pattern;
use crate::data::{DataSource, Dataset};
use crate::device::{Backend, BackendReport, EngineOptions, cpu_report};
use crate::em::EStep;
use crate::error::{Error, Result};
use crate::models::gmm::CovarianceType;
use crate::models::gmm::cpu::blocked::{BLOCKED_CHUNK_ROWS, chunk_stats_blocked};
use crate::models::gmm::params::LN_2PI;
use crate::models::gmm::{GmmEngine, GmmModel, GmmStats, Prepared, gmm_engine};
use crate::numerics::log_sum_exp;

/// Values (N·D) from which a CPU fit with missing values streams by default
/// ([`super::MissingLayout::Auto`]): 2²⁷, where the grouped copy would take 1 GiB. Below it the
/// grouped layout is faster (its pattern groups are whole-data sized: more rows per factored
/// pattern and more patterns on the blocked kernel), at the cost of the copy.
pub const STREAM_AUTO_VALUES: usize = 1 << 27;

/// Bytes of one chunk buffer (f64 values): [`stream_chunk_rows`] is this over `8·D`.
pub const STREAM_CHUNK_BYTES: usize = 4 << 20;
/// Rows of one pattern inside a chunk from which the blocked kernel takes them (fewer: the
/// direct per-row path). The complete rows of a chunk always take the blocked kernel.
pub const STREAM_BLOCKED_ROWS: usize = 256;
/// At most this many blocks of chunks (the unit of parallel work; summed in order).
const MAX_BLOCKS: usize = 64;

/// At most this many rows per chunk (narrow data: enough chunks to share among the threads).
pub const STREAM_MAX_CHUNK_ROWS: usize = 32_768;

/// Rows per chunk of the streamed layout for `d` features: 4 MiB of f64 per chunk, at most
/// [`STREAM_MAX_CHUNK_ROWS`].
pub fn stream_chunk_rows(d: usize) -> usize {
    (STREAM_CHUNK_BYTES / (8 * d.max(1))).clamp(1, STREAM_MAX_CHUNK_ROWS)
}

/// What one pass over the data finds (the streamed layout's only whole-data pass, at build):
/// the number of patterns, of missing entries, and the observed values per column. Memory:
/// one key per distinct pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// N.
    pub n_samples: usize,
    /// Distinct missingness patterns.
    pub n_patterns: usize,
    /// Rows with at least one missing entry.
    pub n_incomplete_rows: usize,
    /// Missing entries.
    pub n_missing: usize,
    /// Observed entries per column.
    pub observed_counts: Vec<usize>,
    /// Mean of the observed entries per column (0 where none is observed).
    pub observed_means: Vec<f64>,
    /// Rows per pattern key (bit j set: column j missing).
    pattern_rows: HashMap<Vec<u64>, usize, BuildHasherDefault<KeyHasher>>,
}

impl Scan {
    /// Reads `data` once in chunks. NaN marks a missing entry; ±∞ is [`Error::NonFinite`]
    /// naming its row and column; a row with nothing observed is [`Error::NothingObserved`].
    pub fn of(data: &Dataset) -> Result<Self> {
        let (n, d) = (data.n_samples(), data.n_features());
        if n == 0 || d == 0 {
            return Err(Error::EmptyData {
                n_samples: n,
                n_features: d,
            });
        }
        let chunk = stream_chunk_rows(d);
        let mut keys: HashMap<Vec<u64>, usize, BuildHasherDefault<KeyHasher>> = Default::default();
        let mut key = vec![0u64; d.div_ceil(64)];
        let (mut sum, mut count) = (vec![0.0; d], vec![0usize; d]);
        let (mut n_missing, mut n_incomplete) = (0, 0);
        let mut buf = Vec::new();
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            buf.resize(len * d, 0.0);
            data.read_f64(start, &mut buf)?;
            for (r, row) in buf.chunks_exact(d).enumerate() {
                let missing = row_key(row, start + r, &mut key)?;
                n_missing += missing;
                n_incomplete += usize::from(missing > 0);
                for (j, v) in row.iter().enumerate() {
                    if !v.is_nan() {
                        sum[j] += v;
                        count[j] += 1;
                    }
                }
                match keys.get_mut(key.as_slice()) {
                    Some(c) => *c += 1,
                    None => {
                        keys.insert(key.clone(), 1);
                    }
                }
            }
        }
        let observed_means = sum
            .iter()
            .zip(&count)
            .map(|(s, &c)| if c == 0 { 0.0 } else { s / c as f64 })
            .collect();
        Ok(Self {
            n_samples: n,
            n_patterns: keys.len(),
            n_incomplete_rows: n_incomplete,
            n_missing,
            observed_counts: count,
            observed_means,
            pattern_rows: keys,
        })
    }
}

/// The pattern key of one row (bit j set: column j missing) into `key`; the number of missing
/// entries. Errors on ±∞ and on a row with nothing observed (`row`: its 0-based index).
fn row_key(row: &[f64], at: usize, key: &mut [u64]) -> Result<usize> {
    key.fill(0);
    let mut missing = 0;
    for (j, v) in row.iter().enumerate() {
        if v.is_nan() {
            key[j / 64] |= 1 << (j % 64);
            missing += 1;
        } else if v.is_infinite() {
            return Err(Error::NonFinite {
                row: at,
                column: j,
                value: format!("{v}"),
            });
        }
    }
    if missing == row.len() {
        return Err(Error::NothingObserved { row: at });
    }
    Ok(missing)
}

/// Rows of the dataset per entry of a [`PatternRows`] table.
pub const PATTERN_ROWS_STEP: usize = 256;

/// The rows of one missingness pattern of a dataset, on the pattern's observed columns, as a
/// [`DataSource`]: read from the dataset when asked (a memory map reads from the page cache),
/// never copied. The only state that grows with N is a table of one count per
/// [`PATTERN_ROWS_STEP`] rows of the dataset (the pattern's rows before it: 8 bytes per 256
/// rows), which finds the dataset row of any of the pattern's rows by reading at most
/// [`PATTERN_ROWS_STEP`] rows before it. The streamed layout builds the engine of the fit's
/// backend (the GPU's) over it: the GPU engine uploads the rows once when they fit in its
/// memory, and reads them again every E-step otherwise.
pub struct PatternRows<'a> {
    data: &'a Dataset<'a>,
    key: Vec<u64>,
    observed: Vec<usize>,
    n: usize,
    /// `before[b]`: the pattern's rows among the dataset's rows `[0, b·STEP)`.
    before: Vec<usize>,
}

impl PatternRows<'_> {
    /// Copies the pattern's rows `[start, start + out.len() / d_o)` into `out`.
    fn read(&self, start: usize, out: &mut [f64]) -> Result<()> {
        let (total, d) = (self.data.n_samples(), self.data.n_features());
        let d_o = self.observed.len();
        let rows = out.len() / d_o;
        if start + rows > self.n {
            return Err(Error::param(format!(
                "rows {start}..{} of a pattern of {} rows",
                start + rows,
                self.n
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        // The block holding the pattern's row `start`: the last with `before[b] ≤ start`.
        let b = self.before.partition_point(|&c| c <= start) - 1;
        let mut skip = start - self.before[b];
        let mut at = b * PATTERN_ROWS_STEP;
        let mut filled = 0;
        let mut key = vec![0u64; self.key.len()];
        // Reads grow from one block to 64 as the rows run on (one row, or many).
        let mut len = PATTERN_ROWS_STEP;
        let mut buf = Vec::new();
        while filled < rows {
            if at >= total {
                return Err(Error::Numerical(format!(
                    "the data changed while read: the pattern has fewer than {} rows",
                    start + rows
                )));
            }
            let take = len.min(total - at);
            buf.resize(take * d, 0.0);
            self.data.read_f64(at, &mut buf)?;
            for (r, row) in buf.chunks_exact(d).enumerate() {
                row_key(row, at + r, &mut key)?;
                if key != self.key {
                    continue;
                }
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                for (o, &j) in out[filled * d_o..(filled + 1) * d_o]
                    .iter_mut()
                    .zip(&self.observed)
                {
                    *o = row[j];
                }
                filled += 1;
                if filled == rows {
                    break;
                }
            }
            at += take;
            len = (len * 2).min(64 * PATTERN_ROWS_STEP);
        }
        Ok(())
    }
}

impl DataSource for PatternRows<'_> {
    fn n_samples(&self) -> usize {
        self.n
    }
    fn n_features(&self) -> usize {
        self.observed.len()
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        self.read(start, out)
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let mut buf = vec![0.0; out.len()];
        self.read(start, &mut buf)?;
        for (o, v) in out.iter_mut().zip(&buf) {
            *o = *v as f32;
        }
        Ok(())
    }
}

/// One pattern of the streamed layout that runs on an engine of the fit's backend: the pattern
/// and its rows ([`PatternRows`]) as a dataset.
pub struct StreamGroup<'a> {
    pattern: Pattern,
    key: Vec<u64>,
    data: Dataset<'a>,
}

impl<'a> StreamGroup<'a> {
    /// The pattern (`rows`: `0..` its number of rows; `offset` unused: its rows are read from
    /// the dataset).
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The pattern's rows on its observed columns ([`PatternRows`]).
    pub fn data(&self) -> &Dataset<'a> {
        &self.data
    }
}

/// The patterns of `data` that the streamed layout gives an engine: the complete pattern (when
/// any row is complete) and every pattern with at least `group_rows` rows (`scan`: what
/// [`Scan::of`] found on `data`), ordered by key (the complete pattern first). Reads the data
/// once to build their [`PatternRows`] tables.
pub fn stream_groups<'a>(
    data: &'a Dataset<'a>,
    scan: &Scan,
    group_rows: usize,
) -> Result<Vec<StreamGroup<'a>>> {
    let (n, d) = (data.n_samples(), data.n_features());
    let mut keys: Vec<(&Vec<u64>, usize)> = scan
        .pattern_rows
        .iter()
        .map(|(k, &c)| (k, c))
        .filter(|(k, c)| *c >= group_rows || k.iter().all(|&w| w == 0))
        .collect();
    keys.sort();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut tables: Vec<Vec<usize>> =
        vec![Vec::with_capacity(n.div_ceil(PATTERN_ROWS_STEP)); keys.len()];
    let mut counts = vec![0usize; keys.len()];
    let chunk = stream_chunk_rows(d).next_multiple_of(PATTERN_ROWS_STEP);
    let mut buf = Vec::new();
    let mut key = vec![0u64; d.div_ceil(64)];
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        buf.resize(len * d, 0.0);
        data.read_f64(start, &mut buf)?;
        for (r, row) in buf.chunks_exact(d).enumerate() {
            if (start + r) % PATTERN_ROWS_STEP == 0 {
                for (t, &c) in tables.iter_mut().zip(&counts) {
                    t.push(c);
                }
            }
            row_key(row, start + r, &mut key)?;
            if let Ok(g) = keys.binary_search_by(|(k, _)| k.as_slice().cmp(key.as_slice())) {
                counts[g] += 1;
            }
        }
    }
    keys.iter()
        .zip(tables)
        .zip(counts)
        .map(|(((k, c), before), counted)| {
            if *c != counted {
                return Err(Error::Numerical(format!(
                    "the data changed between two reads: a pattern had {c} rows, then {counted}"
                )));
            }
            let missing: Vec<usize> = (0..d).filter(|&j| k[j / 64] >> (j % 64) & 1 == 1).collect();
            let observed: Vec<usize> = (0..d).filter(|&j| k[j / 64] >> (j % 64) & 1 == 0).collect();
            let rows = PatternRows {
                data,
                key: (*k).clone(),
                observed: observed.clone(),
                n: counted,
                before,
            };
            Ok(StreamGroup {
                pattern: Pattern {
                    observed,
                    missing,
                    rows: 0..counted,
                    offset: 0,
                },
                key: (*k).clone(),
                data: Dataset::from_source(rows),
            })
        })
        .collect()
}

/// One chunk grouped by pattern (per-thread scratch, reused from chunk to chunk).
#[derive(Default)]
struct ChunkGroups {
    raw: Vec<f64>,
    /// The observed values of the chunk's rows, grouped by pattern (each row `d_o` values).
    grouped: Vec<f64>,
    /// The chunk row (0-based inside the chunk) of every grouped position.
    order: Vec<u32>,
    /// Pattern id of every chunk row.
    pattern_of: Vec<u32>,
    /// The chunk's patterns, in order of their first row; `rows` are grouped positions.
    patterns: Vec<Pattern>,
    /// The key of each of `patterns`.
    keys: Vec<Vec<u64>>,
    ids: HashMap<Vec<u64>, u32, BuildHasherDefault<KeyHasher>>,
    key: Vec<u64>,
    last: Vec<u64>,
}

/// A fast hash of pattern keys (bit masks; no adversary here): multiply-rotate per word.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for w in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..w.len()].copy_from_slice(w);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl ChunkGroups {
    /// Reads rows `start..start + len` of `data` and groups them by pattern.
    fn load(&mut self, data: &Dataset, start: usize, len: usize) -> Result<()> {
        let d = data.n_features();
        self.raw.resize(len * d, 0.0);
        data.read_f64(start, &mut self.raw)?;
        self.ids.clear();
        self.patterns.clear();
        self.keys.clear();
        self.key.resize(d.div_ceil(64), 0);
        self.pattern_of.resize(len, 0);
        let mut counts: Vec<usize> = Vec::new();
        let mut last_id = u32::MAX;
        for (r, row) in self.raw.chunks_exact(d).enumerate() {
            row_key(row, start + r, &mut self.key)?;
            if last_id != u32::MAX && self.key == self.last {
                // Runs of one pattern (complete rows, mostly) skip the hash.
                self.pattern_of[r] = last_id;
                counts[last_id as usize] += 1;
                continue;
            }
            let id = match self.ids.get(self.key.as_slice()) {
                Some(&id) => id,
                None => {
                    let id = counts.len() as u32;
                    self.ids.insert(self.key.clone(), id);
                    self.keys.push(self.key.clone());
                    counts.push(0);
                    let observed: Vec<usize> = (0..d).filter(|&j| !row[j].is_nan()).collect();
                    let missing: Vec<usize> = (0..d).filter(|&j| row[j].is_nan()).collect();
                    self.patterns.push(Pattern {
                        observed,
                        missing,
                        rows: 0..0,
                        offset: 0,
                    });
                    id
                }
            };
            self.pattern_of[r] = id;
            counts[id as usize] += 1;
            last_id = id;
            self.last.clone_from(&self.key);
        }
        // Counting sort (stable: rows keep their order inside a pattern).
        let (mut at, mut offset) = (0, 0);
        for (pat, &c) in self.patterns.iter_mut().zip(&counts) {
            pat.rows = at..at + c;
            pat.offset = offset;
            at += c;
            offset += c * pat.observed.len();
        }
        self.grouped.resize(offset, 0.0);
        self.order.resize(len, 0);
        let mut next: Vec<usize> = self.patterns.iter().map(|p| p.rows.start).collect();
        for (r, row) in self.raw.chunks_exact(d).enumerate() {
            let id = self.pattern_of[r] as usize;
            let pat = &self.patterns[id];
            let g = next[id];
            next[id] += 1;
            self.order[g] = r as u32;
            let d_o = pat.observed.len();
            let dst = pat.offset + (g - pat.rows.start) * d_o;
            for (o, &j) in self.grouped[dst..dst + d_o].iter_mut().zip(&pat.observed) {
                *o = row[j];
            }
        }
        Ok(())
    }

    /// The observed values of pattern `i`'s rows, `[rows][d_o]`.
    fn values(&self, i: usize) -> &[f64] {
        let p = &self.patterns[i];
        &self.grouped[p.offset..p.offset + p.rows.len() * p.observed.len()]
    }
}

/// The factors of one pattern that the direct per-row path needs, computed per (chunk,
/// pattern) into reused buffers: only the m×m block `Λ_mm` of each precision is factored
/// (`Λ_mm = L Lᵀ`) and inverted (`C = Λ_mm⁻¹ = Cov[x_m | x_o]`), O(m³); the regression
/// `B u = −Λ_mm⁻¹ Λ_mo u` of each row is two triangular solves with `L` instead of a formed
/// `B` (O(m²·d_o) per pattern, which costs more than the rows when a pattern has few rows in a
/// chunk, as most of the tens of thousands of patterns of MCAR data do).
#[derive(Default)]
struct Light {
    d_o: usize,
    d_m: usize,
    /// `L` per matrix, `[m][m]` lower.
    l: Vec<f64>,
    /// `C = Λ_mm⁻¹` per matrix, `[m][m]`.
    c: Vec<f64>,
    /// `Λ_mo` per matrix, `[m][d_o]`.
    lmo: Vec<f64>,
    /// `½ log det Σ_oo = −log det U + log det L` per matrix.
    half_log_det: Vec<f64>,
    /// `μ_o` per component, `[K][d_o]`.
    mu_o: Vec<f64>,
    tied: bool,
    /// Scratch of [`Light::compute`].
    tmp: Vec<f64>,
}

impl Light {
    /// The factors of `pat` under `p` (`shared` computed from `p`).
    fn compute(&mut self, p: &Prepared, shared: &Shared, pat: &Pattern) -> Result<()> {
        let (k, d) = (p.n_components, p.n_features);
        let (o, m) = (&pat.observed, &pat.missing);
        let (d_o, d_m) = (o.len(), m.len());
        let mats = shared.log_det_u.len();
        self.d_o = d_o;
        self.d_m = d_m;
        self.tied = p.covariance_type == CovarianceType::Tied;
        self.l.resize(mats * d_m * d_m, 0.0);
        self.c.resize(mats * d_m * d_m, 0.0);
        self.lmo.resize(mats * d_m * d_o, 0.0);
        self.half_log_det.resize(mats, 0.0);
        for c in 0..mats {
            let lam = &shared.lam[c * d * d..(c + 1) * d * d];
            let l = &mut self.l[c * d_m * d_m..(c + 1) * d_m * d_m];
            for (a, &i) in m.iter().enumerate() {
                for (b, &j) in m.iter().enumerate() {
                    l[a * d_m + b] = lam[i * d + j];
                }
                for (b, &j) in o.iter().enumerate() {
                    self.lmo[c * d_m * d_o + a * d_o + b] = lam[i * d + j];
                }
            }
            cholesky_lower_in_place(l, d_m).map_err(|pivot| Error::IllConditioned {
                component: c,
                pivot,
                reg_covar: 0.0,
            })?;
            let log_det_l: f64 = (0..d_m).map(|a| l[a * d_m + a].ln()).sum();
            self.half_log_det[c] = -shared.log_det_u[c] + log_det_l;
            // C = Λ_mm⁻¹ = L⁻ᵀ L⁻¹: V = L⁻¹ (lower) by forward substitution, then
            // C_ab = Σ_{r ≥ max(a, b)} V_ra V_rb (m³/3 in all).
            let v = &mut self.tmp;
            v.clear();
            v.resize(d_m * d_m, 0.0);
            for col in 0..d_m {
                for a in col..d_m {
                    let mut t = if a == col { 1.0 } else { 0.0 };
                    for r in col..a {
                        t -= l[a * d_m + r] * v[r * d_m + col];
                    }
                    v[a * d_m + col] = t / l[a * d_m + a];
                }
            }
            let cm = &mut self.c[c * d_m * d_m..(c + 1) * d_m * d_m];
            for a in 0..d_m {
                for b in 0..=a {
                    let t: f64 = (a..d_m).map(|r| v[r * d_m + a] * v[r * d_m + b]).sum();
                    cm[a * d_m + b] = t;
                    cm[b * d_m + a] = t;
                }
            }
        }
        self.mu_o.resize(k * d_o, 0.0);
        for c in 0..k {
            for (a, &j) in o.iter().enumerate() {
                self.mu_o[c * d_o + a] = p.means[c * d + j];
            }
        }
        Ok(())
    }

    fn mat(&self, c: usize) -> usize {
        if self.tied { 0 } else { c }
    }

    /// `C_k = Cov[x_m | x_o]` of component `c`, `[m][m]`.
    fn cond_cov(&self, c: usize) -> &[f64] {
        let (m, t) = (self.d_m, self.mat(c));
        &self.c[t * m * m..(t + 1) * m * m]
    }

    /// `log p(x_o, k)` of one observed sub-row `x` for every component (`out`: `[K]`), and the
    /// completed rows about the means `x̂_k − μ_k = [u_k; B_k u_k]` into `w` (`[K][D]`, the
    /// original column order); `z` is scratch (`[D + d_o + m]`).
    #[allow(clippy::too_many_arguments)]
    fn log_joint(
        &self,
        p: &Prepared,
        shared: &Shared,
        pat: &Pattern,
        x: &[f64],
        out: &mut [f64],
        w: &mut [f64],
        z: &mut [f64],
    ) {
        let (d, d_o, d_m) = (p.n_features, self.d_o, self.d_m);
        let (z, rest) = z.split_at_mut(d);
        let (u, y) = rest.split_at_mut(d_o);
        let y = &mut y[..d_m];
        for (c, o) in out.iter_mut().enumerate() {
            let t = self.mat(c);
            let wc = &mut w[c * d..(c + 1) * d];
            for ((v, xv), mu) in u.iter_mut().zip(x).zip(&self.mu_o[c * d_o..(c + 1) * d_o]) {
                *v = xv - mu;
            }
            for (a, &j) in pat.observed.iter().enumerate() {
                wc[j] = u[a];
            }
            if d_m > 0 {
                // w_m = B u = −Λ_mm⁻¹ Λ_mo u: y = −Λ_mo u, then L Lᵀ w_m = y.
                let lmo = &self.lmo[t * d_m * d_o..(t + 1) * d_m * d_o];
                for (a, ya) in y.iter_mut().enumerate() {
                    *ya = -lmo[a * d_o..(a + 1) * d_o]
                        .iter()
                        .zip(u.iter())
                        .map(|(l, u)| l * u)
                        .sum::<f64>();
                }
                let l = &self.l[t * d_m * d_m..(t + 1) * d_m * d_m];
                for a in 0..d_m {
                    let s: f64 = (0..a).map(|r| l[a * d_m + r] * y[r]).sum();
                    y[a] = (y[a] - s) / l[a * d_m + a];
                }
                for a in (0..d_m).rev() {
                    let s: f64 = (a + 1..d_m).map(|r| l[r * d_m + a] * y[r]).sum();
                    y[a] = (y[a] - s) / l[a * d_m + a];
                }
                for (a, &j) in pat.missing.iter().enumerate() {
                    wc[j] = y[a];
                }
            }
            // ‖(x̂ − μ)ᵀ U‖²: z = wᵀ U as a sum of rows of U (contiguous: vectorizes).
            let um = &shared.u[t * d * d..(t + 1) * d * d];
            z.fill(0.0);
            for a in 0..d {
                let wa = wc[a];
                for (zj, uij) in z[a..].iter_mut().zip(&um[a * d + a..(a + 1) * d]) {
                    *zj += wa * uij;
                }
            }
            let q: f64 = z.iter().map(|v| v * v).sum();
            *o = p.log_weights[c] - 0.5 * (d_o as f64 * LN_2PI + q) - self.half_log_det[t];
        }
    }
}

/// Per-thread buffers of the per-row work.
#[derive(Default)]
struct RowScratch {
    bufs: Bufs,
    light: Light,
    /// Lower triangles (full types) or diagonals of the direct rows' `Σ r w wᵀ`, `[K][T]`.
    tri: Vec<f64>,
}

/// The per-row buffers of [`Light::log_joint`].
#[derive(Default)]
struct Bufs {
    lj: Vec<f64>,
    z: Vec<f64>,
    w: Vec<f64>,
}

impl RowScratch {
    fn resize(&mut self, k: usize, d: usize, t: usize) {
        self.bufs.lj.resize(k, 0.0);
        self.bufs.z.resize(3 * d, 0.0);
        self.bufs.w.resize(k * d, 0.0);
        if self.tri.len() != k * t {
            self.tri = vec![0.0; k * t];
        }
    }
}

/// The chunked CPU work of the streamed layout (shared by the threads).
struct Chunked<'a> {
    data: &'a Dataset<'a>,
    chunk_rows: usize,
    blocked_rows: usize,
    /// The keys of the patterns that run on engines ([`StreamGroup`]): skipped here.
    engine_keys: Vec<Vec<u64>>,
}

/// The E-step engine of the streamed layout (see the module docs). On the CPU every row runs
/// through the chunked CPU code; with engines ([`StreamEngine::with_engines`]: the GPU's) the
/// complete rows and the large patterns run on them, read from the data in place, and the
/// other rows through the chunked CPU code.
pub struct StreamEngine<'a> {
    rows: Chunked<'a>,
    /// The patterns on engines, with their engines.
    engines: Vec<(&'a StreamGroup<'a>, Box<dyn GmmEngine + 'a>)>,
    report: BackendReport,
}

impl<'a> StreamEngine<'a> {
    /// The engine over `data` (marked with missing values or not: NaN is missing here), every
    /// row on the CPU; `chunk_rows`: `None` for [`stream_chunk_rows`]; `scan`: what
    /// [`Scan::of`] found, for the report (`None`: no pattern count in the report).
    pub fn new(
        data: &'a Dataset<'a>,
        chunk_rows: Option<usize>,
        scan: Option<&Scan>,
        reason: &str,
    ) -> Self {
        let chunk_rows = chunk_rows
            .unwrap_or_else(|| stream_chunk_rows(data.n_features()))
            .max(1);
        let mut report = cpu_report(reason);
        let note = match scan {
            Some(s) => format!(
                "missing values: {} patterns, {} incomplete rows; streamed in chunks of {chunk_rows} rows on the CPU",
                s.n_patterns, s.n_incomplete_rows
            ),
            None => format!("missing values: streamed in chunks of {chunk_rows} rows on the CPU"),
        };
        report.reason = join_reason(&report.reason, &note);
        Self {
            rows: Chunked {
                data,
                chunk_rows,
                blocked_rows: STREAM_BLOCKED_ROWS,
                engine_keys: Vec::new(),
            },
            engines: Vec::new(),
            report,
        }
    }

    /// The engine over `data` with the patterns of `groups` ([`stream_groups`] of `data`) on
    /// engines of `backend` ([`gmm_engine`]: on a GPU backend, the GPU engine over each
    /// pattern's rows read in place) and the other rows through the chunked CPU code;
    /// `chunk_rows` and `scan` as in [`StreamEngine::new`].
    #[allow(clippy::too_many_arguments)]
    pub fn with_engines(
        data: &'a Dataset<'a>,
        chunk_rows: Option<usize>,
        scan: Option<&Scan>,
        groups: &'a [StreamGroup<'a>],
        backend: Backend,
        covariance_type: CovarianceType,
        n_components: usize,
        options: EngineOptions,
    ) -> Result<Self> {
        let mut s = Self::new(data, chunk_rows, None, "");
        let mut engines = Vec::with_capacity(groups.len());
        for g in groups {
            if g.pattern.observed.len() + g.pattern.missing.len() != data.n_features() {
                return Err(Error::param(
                    "the pattern groups are of another dataset (their width differs)",
                ));
            }
            let e = gmm_engine(backend, &g.data, covariance_type, n_components, options)?;
            engines.push((g, e));
        }
        s.rows.engine_keys = groups.iter().map(|g| g.key.clone()).collect();
        let engine_rows: usize = groups.iter().map(|g| g.data.n_samples()).sum();
        let other_rows = data.n_samples() - engine_rows;
        let mut report = match engines.iter().max_by_key(|(g, _)| g.data.n_samples()) {
            Some((_, e)) => e.report(),
            None => cpu_report(""),
        };
        let patterns = match scan {
            Some(sc) => format!(
                "{} patterns, {} incomplete rows; ",
                sc.n_patterns, sc.n_incomplete_rows
            ),
            None => String::new(),
        };
        let note = format!(
            "missing values: {patterns}{engine_rows} rows in {} pattern group{} on the {} engine (read from the data in place), {other_rows} rows streamed in chunks of {} rows on the CPU",
            engines.len(),
            if engines.len() == 1 { "" } else { "s" },
            report.backend,
            s.rows.chunk_rows,
        );
        report.reason = join_reason(&report.reason, &note);
        s.engines = engines;
        s.report = report;
        Ok(s)
    }

    /// Patterns with at least `rows` rows in a chunk take the blocked kernel (default
    /// [`STREAM_BLOCKED_ROWS`]; `usize::MAX`: every incomplete row direct).
    pub fn with_blocked_rows(mut self, rows: usize) -> Self {
        self.rows.blocked_rows = rows.max(1);
        self
    }

    /// Rows of a pattern in a chunk from which the blocked kernel takes them.
    pub fn blocked_rows(&self) -> usize {
        self.rows.blocked_rows
    }

    /// Rows per chunk.
    pub fn chunk_rows(&self) -> usize {
        self.rows.chunk_rows
    }

    /// Rows on engines ([`StreamEngine::with_engines`]); 0 on the CPU.
    pub fn engine_rows(&self) -> usize {
        self.engines.iter().map(|(g, _)| g.data.n_samples()).sum()
    }

    /// The per-row outputs of the engine groups: `engine_out(engine, parameters, buffer)` on
    /// each group with its marginal parameters, written to the groups' rows of `out` (one
    /// pass over the data finds them). Holds the groups' outputs (`per_row` values a row of
    /// theirs) until then.
    fn engine_outputs(
        &mut self,
        p: &Prepared,
        cov: &Shared,
        out: &mut [f64],
        per_row: usize,
        engine_out: impl Fn(&mut dyn GmmEngine, &Prepared, &mut [f64]) -> Result<()>,
    ) -> Result<()> {
        if self.engines.is_empty() {
            return Ok(());
        }
        let mut bufs = Vec::with_capacity(self.engines.len());
        for (g, engine) in &mut self.engines {
            let pat = &g.pattern;
            let mut buf = vec![0.0; g.data.n_samples() * per_row];
            if pat.missing.is_empty() {
                engine_out(engine.as_mut(), p, &mut buf)?;
            } else {
                let marginal = marginal_prepared(p, &cov.cov, &pat.observed)?;
                engine_out(engine.as_mut(), &marginal, &mut buf)?;
            }
            bufs.push(buf);
        }
        self.rows.engine_rows(|g, j, n, _| {
            out[n * per_row..(n + 1) * per_row]
                .copy_from_slice(&bufs[g][j * per_row..(j + 1) * per_row]);
        })
    }

    /// `E[x | x_o]` of every row under `p` (`out`: `[N][D]`): observed entries copied, each
    /// missing entry replaced by `Σ_k r_k (μ_km + B_k (x_o − μ_ko))`. The responsibilities
    /// of the rows of engine groups come from their engine (the GPU's); the conditional means
    /// from the CPU.
    pub fn impute(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        let (k, d) = (p.n_components, p.n_features);
        self.rows
            .for_each_row(p, out, d, |cov, pat, light, xr, orow, s| {
                for (a, &j) in pat.observed.iter().enumerate() {
                    orow[j] = xr[a];
                }
                if pat.missing.is_empty() {
                    return;
                }
                let Bufs { lj, z, w } = s;
                light.log_joint(p, cov, pat, xr, lj, w, z);
                let lse = log_sum_exp(lj);
                for &j in &pat.missing {
                    orow[j] = 0.0;
                }
                for c in 0..k {
                    let r = (lj[c] - lse).exp();
                    if r == 0.0 {
                        continue;
                    }
                    // x̂_k = μ_k + w_k on the missing columns.
                    for &j in &pat.missing {
                        orow[j] += r * (p.means[c * d + j] + w[c * d + j]);
                    }
                }
            })?;
        if self.engines.is_empty() {
            return Ok(());
        }
        let cov = Shared::new(p);
        // Per group: the responsibilities from its engine, and its factors (none for the
        // complete pattern: its rows are copied).
        let mut resp = Vec::with_capacity(self.engines.len());
        let mut factors = Vec::with_capacity(self.engines.len());
        for (g, engine) in &mut self.engines {
            let pat = &g.pattern;
            if pat.missing.is_empty() {
                resp.push(Vec::new());
                factors.push(None);
                continue;
            }
            let marginal = marginal_prepared(p, &cov.cov, &pat.observed)?;
            let mut r = vec![0.0; g.data.n_samples() * k];
            engine.responsibilities(&marginal, &mut r)?;
            resp.push(r);
            factors.push(Some(PatternFactors::new(p, &cov, pat)?));
        }
        let groups: Vec<&Pattern> = self.engines.iter().map(|(g, _)| &g.pattern).collect();
        let mut xo = vec![0.0; d];
        self.rows.engine_rows(|g, j, n, row| {
            let orow = &mut out[n * d..(n + 1) * d];
            match &factors[g] {
                None => orow.copy_from_slice(row),
                Some(f) => {
                    let pat = groups[g];
                    let xo = &mut xo[..pat.n_observed()];
                    for (o, &c) in xo.iter_mut().zip(&pat.observed) {
                        *o = row[c];
                    }
                    conditional_mean(f, pat, xo, &resp[g][j * k..(j + 1) * k], orow);
                }
            }
        })
    }
}

/// `reason; note`, or `note` when there is no reason.
fn join_reason(reason: &str, note: &str) -> String {
    if reason.is_empty() {
        note.to_string()
    } else {
        format!("{reason}; {note}")
    }
}

impl Chunked<'_> {
    fn chunks(&self) -> Vec<Range<usize>> {
        let n = self.data.n_samples();
        (0..n)
            .step_by(self.chunk_rows)
            .map(|s| s..(s + self.chunk_rows).min(n))
            .collect()
    }

    /// Whether the pattern of `key` runs on an engine.
    fn on_engine(&self, key: &[u64]) -> bool {
        self.engine_keys.iter().any(|k| k.as_slice() == key)
    }

    /// Calls `f(group, j, n, row)` for every row of the dataset whose pattern runs on an
    /// engine, in order: `group` indexes `engine_keys`, `j` is the row's position among its
    /// pattern's rows, `n` its row in the dataset and `row` its `D` values. One pass in chunks.
    fn engine_rows(&self, mut f: impl FnMut(usize, usize, usize, &[f64])) -> Result<()> {
        let (n, d) = (self.data.n_samples(), self.data.n_features());
        let mut next = vec![0usize; self.engine_keys.len()];
        let mut key = vec![0u64; d.div_ceil(64)];
        let mut buf = Vec::new();
        for rows in self.chunks() {
            buf.resize(rows.len() * d, 0.0);
            self.data.read_f64(rows.start, &mut buf)?;
            for (r, row) in buf.chunks_exact(d).enumerate() {
                row_key(row, rows.start + r, &mut key)?;
                if let Some(g) = self.engine_keys.iter().position(|k| *k == key) {
                    f(g, next[g], rows.start + r, row);
                    next[g] += 1;
                }
            }
        }
        debug_assert!(n == 0 || !next.is_empty() || self.engine_keys.is_empty());
        Ok(())
    }

    /// The statistics of one loaded chunk, added to `acc` (the direct rows' second moments
    /// into `scratch.tri`).
    fn chunk_stats(
        &self,
        p: &Prepared,
        cov: &Shared,
        g: &ChunkGroups,
        scratch: &mut RowScratch,
        acc: &mut GmmStats,
    ) -> Result<()> {
        let (k, d) = (p.n_components, p.n_features);
        let full = acc.has_full_s2();
        for (i, pat) in g.patterns.iter().enumerate() {
            if self.on_engine(&g.keys[i]) {
                continue;
            }
            let x = g.values(i);
            if pat.missing.is_empty() {
                let mut s = chunk_stats_blocked(x, p, BLOCKED_CHUNK_ROWS);
                s.rebase_to(&p.means);
                acc.merge(&s);
                continue;
            }
            if pat.rows.len() >= self.blocked_rows {
                let f = PatternFactors::new(p, cov, pat)?;
                let marginal = marginal_prepared(p, &cov.cov, &pat.observed)?;
                let mut s = chunk_stats_blocked(x, &marginal, BLOCKED_CHUNK_ROWS);
                s.rebase_to(&marginal.means);
                acc.n_samples += s.n_samples;
                acc.log_likelihood += s.log_likelihood;
                expand(acc, pat, &f, &s.s0, &s.s1, &s.s2);
                continue;
            }
            // Direct rows: Σ r, Σ r (x̂ − μ), Σ r (x̂ − μ)(x̂ − μ)ᵀ about μ, then S0·C.
            let d_o = pat.n_observed();
            let t = if full { d * (d + 1) / 2 } else { d };
            let mut s0 = vec![0.0; k];
            let mut ll = 0.0;
            let RowScratch {
                bufs: Bufs { lj, z, w },
                tri,
                light,
            } = scratch;
            light.compute(p, cov, pat)?;
            for xr in x.chunks_exact(d_o) {
                light.log_joint(p, cov, pat, xr, lj, w, z);
                // log p(x_o) = log Σ_k exp(log p(x_o, k)), by log-sum-exp.
                let lse = log_sum_exp(lj);
                ll += lse;
                for c in 0..k {
                    let r = (lj[c] - lse).exp();
                    s0[c] += r;
                    if r == 0.0 {
                        continue;
                    }
                    let wc = &w[c * d..(c + 1) * d];
                    for (s, v) in acc.s1[c * d..(c + 1) * d].iter_mut().zip(wc) {
                        *s += r * v;
                    }
                    let tc = &mut tri[c * t..(c + 1) * t];
                    if full {
                        let mut at = 0;
                        for a in 0..d {
                            let ra = r * wc[a];
                            for (s, wb) in tc[at..at + a + 1].iter_mut().zip(&wc[..=a]) {
                                *s += ra * wb;
                            }
                            at += a + 1;
                        }
                    } else {
                        for (s, v) in tc.iter_mut().zip(wc) {
                            *s += r * v * v;
                        }
                    }
                }
            }
            acc.n_samples += pat.rows.len() as f64;
            acc.log_likelihood += ll;
            let d_m = pat.missing.len();
            for (c, &r0) in s0.iter().enumerate() {
                acc.s0[c] += r0;
                let cm = light.cond_cov(c);
                for (a, &i) in pat.missing.iter().enumerate() {
                    if full {
                        for (b, &j) in pat.missing.iter().enumerate() {
                            acc.s2[c * d * d + i * d + j] += r0 * cm[a * d_m + b];
                        }
                    } else {
                        acc.s2[c * d + i] += r0 * cm[a * d_m + a];
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `row(shared, pattern, factors, x_o, out_row, buffers)` for every row, in parallel
    /// over chunks, each chunk writing its rows of `out` (`per_row` values a row) in place.
    fn for_each_row<T: Send>(
        &self,
        p: &Prepared,
        out: &mut [T],
        per_row: usize,
        row: impl Fn(&Shared, &Pattern, &Light, &[f64], &mut [T], &mut Bufs) + Sync,
    ) -> Result<()> {
        let n = self.data.n_samples();
        let want = n * per_row;
        if out.len() != want {
            return Err(Error::param(format!(
                "the output buffer holds {} values but the data need {want}",
                out.len()
            )));
        }
        let (k, d) = (p.n_components, p.n_features);
        let cov = Shared::new(p);
        let c = self.chunk_rows;
        out.par_chunks_mut(c * per_row)
            .enumerate()
            .map_init(
                || (ChunkGroups::default(), RowScratch::default()),
                |(g, scratch), (ci, o)| -> Result<()> {
                    let start = ci * c;
                    g.load(self.data, start, o.len() / per_row)?;
                    scratch.resize(k, d, 0);
                    let RowScratch { bufs, light, .. } = scratch;
                    for (i, pat) in g.patterns.iter().enumerate() {
                        if self.on_engine(&g.keys[i]) {
                            continue;
                        }
                        light.compute(p, &cov, pat)?;
                        let d_o = pat.n_observed();
                        for (at, xr) in pat.rows.clone().zip(g.values(i).chunks_exact(d_o)) {
                            let r = g.order[at] as usize;
                            let orow = &mut o[r * per_row..(r + 1) * per_row];
                            row(&cov, pat, light, xr, orow, bufs);
                        }
                    }
                    Ok(())
                },
            )
            .collect::<Result<Vec<()>>>()?;
        Ok(())
    }
}

impl EStep<GmmModel> for StreamEngine<'_> {
    fn e_step(&mut self, p: &Prepared) -> Result<GmmStats> {
        let (k, d) = (p.n_components, p.n_features);
        let cov = Shared::new(p);
        let mut acc = GmmStats::zeros(p.covariance_type, k, d, &p.means);
        // The patterns on engines (the complete pattern on the parameters as they are, the
        // others on their marginals), expanded as in the grouped layout.
        for (g, engine) in &mut self.engines {
            let pat = &g.pattern;
            if pat.missing.is_empty() {
                let mut s = engine.e_step(p)?;
                s.rebase_to(&p.means);
                acc.merge(&s);
                continue;
            }
            let marginal = marginal_prepared(p, &cov.cov, &pat.observed)?;
            let mut s = engine.e_step(&marginal)?;
            s.rebase_to(&marginal.means);
            let f = PatternFactors::new(p, &cov, pat)?;
            acc.n_samples += s.n_samples;
            acc.log_likelihood += s.log_likelihood;
            expand(&mut acc, pat, &f, &s.s0, &s.s1, &s.s2);
        }
        let rows = &self.rows;
        let chunks = rows.chunks();
        let per_block = chunks.len().div_ceil(MAX_BLOCKS).max(1);
        let blocks = chunks
            .par_chunks(per_block)
            .map_init(
                || (ChunkGroups::default(), RowScratch::default()),
                |(g, scratch), block| -> Result<GmmStats> {
                    let mut acc = GmmStats::zeros(p.covariance_type, k, d, &p.means);
                    let full = acc.has_full_s2();
                    let t = if full { d * (d + 1) / 2 } else { d };
                    scratch.resize(k, d, t);
                    scratch.tri.fill(0.0);
                    for chunk in block {
                        g.load(rows.data, chunk.start, chunk.len())?;
                        rows.chunk_stats(p, &cov, g, scratch, &mut acc)?;
                    }
                    // The direct rows' second moments, both triangles.
                    for c in 0..k {
                        let tc = &scratch.tri[c * t..(c + 1) * t];
                        if full {
                            let m = &mut acc.s2[c * d * d..(c + 1) * d * d];
                            let mut at = 0;
                            for a in 0..d {
                                for b in 0..=a {
                                    m[a * d + b] += tc[at + b];
                                    if a != b {
                                        m[b * d + a] += tc[at + b];
                                    }
                                }
                                at += a + 1;
                            }
                        } else {
                            for (s, v) in acc.s2[c * d..(c + 1) * d].iter_mut().zip(tc) {
                                *s += v;
                            }
                        }
                    }
                    Ok(acc)
                },
            )
            .collect::<Result<Vec<_>>>()?;
        for b in &blocks {
            acc.merge(b);
        }
        Ok(acc)
    }

    fn report(&self) -> BackendReport {
        self.report.clone()
    }
}

impl GmmEngine for StreamEngine<'_> {
    /// `log p(x_o)`: the marginal density of each row's observed entries (engine groups on
    /// their engine).
    fn log_likelihoods(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.rows
            .for_each_row(p, out, 1, |cov, pat, light, xr, o, s| {
                let Bufs { lj, z, w } = s;
                light.log_joint(p, cov, pat, xr, lj, w, z);
                o[0] = log_sum_exp(lj);
            })?;
        let cov = Shared::new(p);
        self.engine_outputs(p, &cov, out, 1, |e, q, o| e.log_likelihoods(q, o))
    }

    /// Responsibilities under the marginal of each row's observed entries (engine groups on
    /// their engine).
    fn responsibilities(&mut self, p: &Prepared, out: &mut [f64]) -> Result<()> {
        self.rows
            .for_each_row(p, out, p.n_components, |cov, pat, light, xr, o, s| {
                let Bufs { z, w, .. } = s;
                light.log_joint(p, cov, pat, xr, o, w, z);
                let lse = log_sum_exp(o);
                o.iter_mut().for_each(|v| *v = (*v - lse).exp());
            })?;
        let cov = Shared::new(p);
        self.engine_outputs(p, &cov, out, p.n_components, |e, q, o| {
            e.responsibilities(q, o)
        })
    }
}
