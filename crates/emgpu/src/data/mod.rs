//! Data access: a [`Dataset`] is N rows of D features, read in chunks of rows.
//!
//! Fits never need the whole data as one slice: backends ask for rows `[start, start + n)` converted
//! to the precision they compute in (f64 on the CPU, f32 on the GPU). That is what lets the same
//! code run on an in-memory `ndarray`, a memory-mapped `.npy` file larger than RAM, or a stream.

use std::sync::Arc;

use ndarray::{ArrayBase, ArrayView2, Data, Ix1, Ix2};
use rayon::prelude::*;

use crate::error::{Error, Result};

pub mod npy;
pub mod raw;
pub mod sparse;
pub mod write;

pub use write::{check_output_path, same_file, write_atomic, write_npy_atomic, write_text_atomic};

/// A source of rows of floating-point data.
///
/// Implement it to feed emgpu from your own storage; [`Dataset`] wraps one. Reads can fail (a
/// remote or streamed source reports its I/O error): the fit that asked stops with that error.
pub trait DataSource: Send + Sync {
    /// Number of rows (samples).
    fn n_samples(&self) -> usize;
    /// Number of columns (features).
    fn n_features(&self) -> usize;
    /// Copies rows `[start, start + out.len() / D)` into `out`, row-major, as f64.
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()>;
    /// Copies rows `[start, start + out.len() / D)` into `out`, row-major, as f32.
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()>;
    /// The lengths of the sequences the rows form, in order, when the source has them (time
    /// series for hidden Markov models); `None`: the rows are independent samples.
    fn sequence_lengths(&self) -> Option<Vec<usize>> {
        None
    }
    /// Rows `[start, start + rows)` in place, row-major, when the source holds them so (a
    /// row-major slice, a C-order `.npy` map): a fast path that reads them without a copy.
    /// `None` (the default) when it does not; callers then copy with `read_f64`/`read_f32`.
    fn borrow_rows(&self, start: usize, rows: usize) -> Option<RowsRef<'_>> {
        let _ = (start, rows);
        None
    }
}

/// Rows held in place by a source, in their stored precision ([`DataSource::borrow_rows`]).
#[derive(Debug, Clone, Copy)]
pub enum RowsRef<'a> {
    /// float32 values, row-major.
    F32(&'a [f32]),
    /// float64 values, row-major.
    F64(&'a [f64]),
}

impl<'a> RowsRef<'a> {
    /// The values of `rows` rows of `d` features from row `start` of `values`, or `None` when they
    /// are not all there.
    fn of<T: Element>(values: &'a [T], d: usize, start: usize, rows: usize) -> Option<Self> {
        let from = start.checked_mul(d)?;
        let to = from.checked_add(rows.checked_mul(d)?)?;
        T::rows_ref(values.get(from..to)?)
    }
}

/// Anything that converts losslessly (or by rounding, for f64 → f32) to both f32 and f64.
pub trait Element: Copy + Send + Sync + 'static {
    /// As f64.
    fn to_f64(self) -> f64;
    /// As f32 (rounded).
    fn to_f32(self) -> f32;
    /// `values` as a [`RowsRef`] when the type is one it holds (f32 or f64); `None` by default.
    fn rows_ref(values: &[Self]) -> Option<RowsRef<'_>> {
        let _ = values;
        None
    }
}
impl Element for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn rows_ref(values: &[Self]) -> Option<RowsRef<'_>> {
        Some(RowsRef::F64(values))
    }
}
impl Element for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    fn rows_ref(values: &[Self]) -> Option<RowsRef<'_>> {
        Some(RowsRef::F32(values))
    }
}

/// Rows held in a row-major slice (the common case: a standard-layout ndarray, a mapped file).
pub struct SliceSource<'a, T> {
    data: &'a [T],
    n: usize,
    d: usize,
}

impl<'a, T: Element> SliceSource<'a, T> {
    /// `data.len()` must be `n * d`.
    pub fn new(data: &'a [T], n: usize, d: usize) -> Result<Self> {
        if n.checked_mul(d) != Some(data.len()) {
            return Err(Error::param(format!(
                "a slice of {} values cannot hold {n} rows of {d} features",
                data.len()
            )));
        }
        Ok(Self { data, n, d })
    }
}

impl<T: Element> DataSource for SliceSource<'_, T> {
    fn n_samples(&self) -> usize {
        self.n
    }
    fn n_features(&self) -> usize {
        self.d
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        let src = rows_of(self.data, self.d, start, out.len())?;
        for (o, s) in out.iter_mut().zip(src) {
            *o = s.to_f64();
        }
        Ok(())
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let src = rows_of(self.data, self.d, start, out.len())?;
        for (o, s) in out.iter_mut().zip(src) {
            *o = s.to_f32();
        }
        Ok(())
    }
    fn borrow_rows(&self, start: usize, rows: usize) -> Option<RowsRef<'_>> {
        RowsRef::of(self.data, self.d, start, rows)
    }
}

/// Rows of an ndarray view of any layout (strided, Fortran order).
struct ViewSource<'a, T> {
    view: ArrayView2<'a, T>,
}

impl<T: Element> DataSource for ViewSource<'_, T> {
    fn n_samples(&self) -> usize {
        self.view.nrows()
    }
    fn n_features(&self) -> usize {
        self.view.ncols()
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        let d = self.view.ncols();
        check_range(self.view.nrows(), d, start, out.len())?;
        for (r, row) in out.chunks_exact_mut(d).enumerate() {
            for (o, v) in row.iter_mut().zip(self.view.row(start + r)) {
                *o = v.to_f64();
            }
        }
        Ok(())
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let d = self.view.ncols();
        check_range(self.view.nrows(), d, start, out.len())?;
        for (r, row) in out.chunks_exact_mut(d).enumerate() {
            for (o, v) in row.iter_mut().zip(self.view.row(start + r)) {
                *o = v.to_f32();
            }
        }
        Ok(())
    }
}

/// An error unless `len` values from row `start` are whole rows of `d` inside `n` rows.
pub fn check_range(n: usize, d: usize, start: usize, len: usize) -> Result<()> {
    let whole = d > 0 && len.is_multiple_of(d);
    if whole && start.checked_add(len / d).is_some_and(|end| end <= n) {
        Ok(())
    } else {
        Err(Error::param(format!(
            "a read of {len} values from row {start} is not whole rows inside {n} rows of {d} features"
        )))
    }
}

/// Rows `[start, start + len / d)` of a row-major slice, checked.
fn rows_of<T>(data: &[T], d: usize, start: usize, len: usize) -> Result<&[T]> {
    check_range(data.len() / d.max(1), d, start, len)?;
    Ok(&data[start * d..start * d + len])
}

/// N samples × D features, read in chunks of rows. Cheap to create; borrows the data.
///
/// Besides the rows it can carry the lengths of the sequences they form
/// ([`Dataset::with_sequence_lengths`], for models of sequences), whether NaN marks a missing
/// entry ([`Dataset::with_missing_values`], for models that handle missing data) and a weight per
/// row ([`Dataset::with_sample_weights`], for the Gaussian mixture and k-means); models that
/// handle none of these refuse such data with a clear error.
pub struct Dataset<'a> {
    source: Box<dyn DataSource + 'a>,
    sequence_lengths: Option<Vec<usize>>,
    missing_values: bool,
    weights: Option<SampleWeights>,
    /// `(offset, total)`: these rows are rows `offset..offset + N` of `total` rows split across
    /// processes (see [`Dataset::with_global_rows`]).
    global: Option<(usize, usize)>,
}

/// Per-row sample weights of a [`Dataset`]: checked (finite, ≥ 0, not all zero, one per row)
/// and shared cheaply between the datasets that borrow the same rows.
#[derive(Clone)]
struct SampleWeights {
    values: Arc<[f64]>,
    /// `Σ w`, summed in row order.
    sum: f64,
}

impl<'a> Dataset<'a> {
    /// Wraps any [`DataSource`].
    pub fn from_source(source: impl DataSource + 'a) -> Self {
        Self {
            source: Box::new(source),
            sequence_lengths: None,
            missing_values: false,
            weights: None,
            global: None,
        }
    }

    /// Marks these rows as rows `offset..offset + N` of `total` rows split across the processes
    /// of a distributed fit: errors name global row numbers, and the engines cut their blocks
    /// of rows at multiples of global row numbers (a block's partial sum is then the same bits
    /// whatever the split). Without it the rows are all the rows (offset 0, total N).
    pub fn with_global_rows(mut self, offset: usize, total: usize) -> Result<Self> {
        let n = self.n_samples();
        if offset.checked_add(n).is_none_or(|end| end > total) {
            return Err(Error::param(format!(
                "rows {offset}..{} are not inside {total} rows",
                offset.saturating_add(n)
            )));
        }
        self.global = Some((offset, total));
        Ok(self)
    }

    /// The global number of this dataset's first row (0 unless [`Dataset::with_global_rows`]).
    pub fn global_offset(&self) -> usize {
        self.global.map_or(0, |g| g.0)
    }

    /// The number of rows of all processes (N unless [`Dataset::with_global_rows`]).
    pub fn global_rows(&self) -> usize {
        self.global.map_or_else(|| self.n_samples(), |g| g.1)
    }

    /// The same rows with a sample weight per row: `weights[i]` is the weight of row `i`. A
    /// weighted fit gives the model a fit on the rows repeated their (integer) weight's number of
    /// times would: every statistic is `Σ w_i · (contribution of row i)`, the sample count is
    /// `Σ w`, the lower bound `Σ w_i ℓ_i / Σ w`. The weights must be one per row, finite, ≥ 0 and
    /// not all zero.
    pub fn with_sample_weights(mut self, weights: impl Into<Arc<[f64]>>) -> Result<Self> {
        let values: Arc<[f64]> = weights.into();
        let n = self.n_samples();
        if values.len() != n {
            return Err(Error::param(format!(
                "the sample weights hold {} values but the data has {n} rows",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|w| !w.is_finite()) {
            return Err(Error::param(format!(
                "sample weight {i} is {}; weights must be finite",
                values[i]
            )));
        }
        if let Some(i) = values.iter().position(|w| *w < 0.0) {
            return Err(Error::param(format!(
                "sample weight {i} is {}; weights must be ≥ 0",
                values[i]
            )));
        }
        let sum: f64 = values.iter().sum();
        if sum <= 0.0 {
            return Err(Error::param(
                "the sample weights are all zero; at least one row needs a positive weight",
            ));
        }
        if !sum.is_finite() {
            return Err(Error::param(
                "the sample weights add up to more than a float holds; scale them down",
            ));
        }
        self.weights = Some(SampleWeights { values, sum });
        Ok(self)
    }

    /// The same rows as the other columns of the source, weighted by column `column` (see
    /// [`Dataset::with_sample_weights`]): the weight column is read once, in chunks, and kept (one
    /// f64 per row); the features are the remaining columns, in order.
    pub fn with_weight_column(source: impl DataSource + 'a, column: usize) -> Result<Self> {
        let (n, d) = (source.n_samples(), source.n_features());
        if column >= d || d < 2 {
            return Err(Error::param(format!(
                "the weight column {column} is not one of the {d} columns, or no feature column is left"
            )));
        }
        let rows = chunk_rows_for(d, 1 << 16);
        let mut weights = vec![0.0; n];
        let mut buf = Vec::new();
        for (c, w) in weights.chunks_mut(rows).enumerate() {
            buf.resize(w.len() * d, 0.0);
            source.read_f64(c * rows, &mut buf)?;
            for (o, row) in w.iter_mut().zip(buf.chunks_exact(d)) {
                *o = row[column];
            }
        }
        Dataset::from_source(WithoutColumn { source, column }).with_sample_weights(weights)
    }

    /// Whether the rows carry sample weights.
    pub fn is_weighted(&self) -> bool {
        self.weights.is_some()
    }

    /// The sample weights (`[N]`), if any.
    pub fn sample_weights(&self) -> Option<&[f64]> {
        self.weights.as_ref().map(|w| &w.values[..])
    }

    /// The weights of rows `[start, start + rows)`, if the dataset is weighted (the range must lie
    /// inside the data, as reads of the rows do).
    pub fn weights_of(&self, start: usize, rows: usize) -> Option<&[f64]> {
        self.weights
            .as_ref()
            .map(|w| &w.values[start..start + rows])
    }

    /// `Σ w` over the rows: the (weighted) number of samples; N without weights.
    pub fn sum_of_weights(&self) -> f64 {
        match &self.weights {
            Some(w) => w.sum,
            None => self.n_samples() as f64,
        }
    }

    /// An error unless the rows are unweighted (the models that have no sample weights call
    /// this; `model` names the model in the message).
    pub fn require_unweighted(&self, model: &str) -> Result<()> {
        if self.weights.is_some() {
            return Err(Error::param(format!(
                "{model} does not take sample weights; give the data without them"
            )));
        }
        Ok(())
    }

    /// The same rows as sequences of these lengths, in order (they must add up to N, each ≥ 1).
    pub fn with_sequence_lengths(mut self, lengths: Vec<usize>) -> Result<Self> {
        let n = self.n_samples();
        if lengths.contains(&0) {
            return Err(Error::param("every sequence needs at least one row"));
        }
        let total: usize = lengths.iter().sum();
        if total != n {
            return Err(Error::param(format!(
                "the sequence lengths add up to {total} rows, but the data has {n}"
            )));
        }
        self.sequence_lengths = Some(lengths);
        Ok(self)
    }

    /// The lengths of the sequences the rows form (given to [`Dataset::with_sequence_lengths`],
    /// or by the source); `None` for independent samples.
    pub fn sequence_lengths(&self) -> Option<Vec<usize>> {
        self.sequence_lengths
            .clone()
            .or_else(|| self.source.sequence_lengths())
    }

    /// The same rows, where NaN marks a missing entry (missing at random): [`Dataset::validate`]
    /// then accepts NaN (still not ±∞), and [`Dataset::read_missing_mask`] gives the mask.
    pub fn with_missing_values(mut self) -> Self {
        self.missing_values = true;
        self
    }

    /// Whether NaN marks missing entries in this dataset.
    pub fn has_missing_values(&self) -> bool {
        self.missing_values
    }

    /// Reads the missing-value mask of the rows from `start`: `out[i]` is true where the entry
    /// is missing (NaN). All false for a dataset without missing values.
    pub fn read_missing_mask(&self, start: usize, out: &mut [bool]) -> Result<()> {
        if !self.missing_values {
            check_range(self.n_samples(), self.n_features(), start, out.len())?;
            out.fill(false);
            return Ok(());
        }
        let mut buf = vec![0.0; out.len()];
        self.read_f64(start, &mut buf)?;
        for (m, v) in out.iter_mut().zip(&buf) {
            *m = v.is_nan();
        }
        Ok(())
    }

    /// [`Dataset::validate`] and [`Dataset::require_plain`]: what a model of independent, complete
    /// samples checks before it runs.
    pub fn validate_for(&self, model: &str) -> Result<()> {
        self.require_plain(model)?;
        self.validate()
    }

    /// An error unless the data are plain independent samples with no missing values (the
    /// models that handle neither call this; `model` names the model in the message).
    pub fn require_plain(&self, model: &str) -> Result<()> {
        if self.missing_values {
            return Err(Error::param(format!(
                "{model} does not handle missing values; remove or impute the rows with NaN"
            )));
        }
        if self.sequence_lengths.is_some() {
            return Err(Error::param(format!(
                "{model} treats rows as independent samples; give the data without sequence lengths"
            )));
        }
        Ok(())
    }

    /// A dataset over an ndarray (f32 or f64, any layout; row-major is read fastest).
    pub fn from_array<T: Element, S: Data<Elem = T>>(array: &'a ArrayBase<S, Ix2>) -> Self {
        let view = array.view();
        let (n, d) = view.dim();
        match view.to_slice() {
            Some(slice) => Self::from_source(SliceSource { data: slice, n, d }),
            None => Self::from_source(ViewSource { view }),
        }
    }

    /// A dataset over a row-major slice of `n * d` values.
    pub fn from_slice<T: Element>(data: &'a [T], n: usize, d: usize) -> Result<Self> {
        Ok(Self::from_source(SliceSource::new(data, n, d)?))
    }

    /// The same rows as independent samples: no sequence lengths, no missing-value marking (a
    /// hidden Markov model's k-means initialization clusters the rows of its sequences); sample
    /// weights, if any, are kept.
    pub fn rows(&self) -> Dataset<'_> {
        let mut rows = Dataset::from_source(Borrowed(self.source.as_ref(), false));
        rows.weights = self.weights.clone();
        rows
    }

    /// Rows `[range.start, range.end)` of this dataset as a dataset of their own (row 0 of the
    /// view is row `range.start` here), as independent samples. Nothing is copied: reads are
    /// forwarded with the offset. Stepwise EM runs its mini-batches on such views.
    pub fn row_range(&self, range: std::ops::Range<usize>) -> Result<Dataset<'_>> {
        let n = self.n_samples();
        if range.start > range.end || range.end > n {
            return Err(Error::param(format!(
                "rows {}..{} are not a range inside {n} rows",
                range.start, range.end
            )));
        }
        let mut rows = Dataset::from_source(RowRange {
            inner: self.source.as_ref(),
            start: range.start,
            rows: range.end - range.start,
        });
        // The range's own weights (a mini-batch may weigh 0 in all: its statistics are then 0).
        rows.weights = self.weights.as_ref().map(|w| {
            let values: Arc<[f64]> = w.values[range.clone()].into();
            SampleWeights {
                sum: values.iter().sum(),
                values,
            }
        });
        Ok(rows)
    }

    /// Number of rows.
    pub fn n_samples(&self) -> usize {
        self.source.n_samples()
    }

    /// Number of columns.
    pub fn n_features(&self) -> usize {
        self.source.n_features()
    }

    /// Copies `out.len() / D` rows from `start` as f64.
    pub fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        self.source.read_f64(start, out)
    }

    /// Copies `out.len() / D` rows from `start` as f32.
    pub fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.source.read_f32(start, out)
    }

    /// Rows `[start, start + rows)` without a copy, when the source holds them row-major in
    /// place ([`DataSource::borrow_rows`]); `None` otherwise (read them with `read_f64`).
    pub fn borrow_rows(&self, start: usize, rows: usize) -> Option<RowsRef<'_>> {
        self.source.borrow_rows(start, rows)
    }

    /// All rows as a new row-major f64 vector (for small data and tests).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        let mut out = vec![0.0; self.n_samples() * self.n_features()];
        self.read_f64(0, &mut out)?;
        Ok(out)
    }

    /// Checks the data is non-empty and finite (NaN allowed where it marks missing values); the
    /// error names the first bad row and column, or the read that failed.
    pub fn validate(&self) -> Result<()> {
        let (n, d) = (self.n_samples(), self.n_features());
        if n == 0 || d == 0 {
            return Err(Error::EmptyData {
                n_samples: n,
                n_features: d,
            });
        }
        let rows = chunk_rows_for(d, 8192);
        let missing = self.missing_values;
        let bad = |v: &f64| !(v.is_finite() || (missing && v.is_nan()));
        let found = (0..n.div_ceil(rows))
            .into_par_iter()
            .map_init(Vec::new, |buf, c| {
                let start = c * rows;
                let len = rows.min(n - start);
                buf.resize(len * d, 0.0);
                self.read_f64(start, buf)?;
                Ok(buf.iter().position(bad).map(|p| (start * d + p, buf[p])))
            })
            .collect::<Result<Vec<_>>>()?;
        let first_bad = found.into_iter().flatten().min_by_key(|(pos, _)| *pos);
        match first_bad {
            None => Ok(()),
            Some((pos, v)) => Err(Error::NonFinite {
                row: self.global_offset() + pos / d,
                column: pos % d,
                value: format!("{v}"),
            }),
        }
    }
}

impl std::fmt::Debug for Dataset<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("n_samples", &self.n_samples())
            .field("n_features", &self.n_features())
            .field(
                "sequence_lengths",
                &self.sequence_lengths.as_ref().map(Vec::len),
            )
            .field("missing_values", &self.missing_values)
            .field("weighted", &self.weights.is_some())
            .finish()
    }
}

impl Dataset<'static> {
    /// Opens a NumPy `.npy` file (float32 or float64, C or Fortran order, 2-D `[N, D]` or 1-D), memory-mapped:
    /// rows are read in chunks, never copied whole. Non-finite values are found by
    /// [`Dataset::validate`], which every fit runs.
    pub fn open_npy(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Ok(Dataset::from_source(npy::NpySource::open(path.as_ref())?))
    }
}

/// Rows per chunk so that a chunk of `d` f64 features holds about `target_values` values.
pub fn chunk_rows_for(d: usize, target_values: usize) -> usize {
    (target_values / d.max(1)).max(1)
}

/// Things a fit accepts as data: ndarray arrays and views (f32 or f64), and [`Dataset`].
pub trait AsDataset {
    /// A [`Dataset`] borrowing `self`.
    fn as_dataset(&self) -> Dataset<'_>;
}

impl<T: Element, S: Data<Elem = T>> AsDataset for ArrayBase<S, Ix2> {
    fn as_dataset(&self) -> Dataset<'_> {
        Dataset::from_array(self)
    }
}

impl AsDataset for Dataset<'_> {
    fn as_dataset(&self) -> Dataset<'_> {
        Dataset {
            source: Box::new(Borrowed(self.source.as_ref(), true)),
            sequence_lengths: self.sequence_lengths.clone(),
            missing_values: self.missing_values,
            weights: self.weights.clone(),
            global: self.global,
        }
    }
}

/// Sample weights as a fit takes them: a slice, a vector, or a 1-D ndarray (f64).
pub trait AsWeights {
    /// The weights as one shared f64 array.
    fn to_weights(&self) -> Arc<[f64]>;
}

impl AsWeights for [f64] {
    fn to_weights(&self) -> Arc<[f64]> {
        self.into()
    }
}

/// Rows `[start, start + rows)` of another source ([`Dataset::row_range`]).
struct RowRange<'a> {
    inner: &'a dyn DataSource,
    start: usize,
    rows: usize,
}

impl DataSource for RowRange<'_> {
    fn n_samples(&self) -> usize {
        self.rows
    }
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        check_range(self.rows, self.n_features(), start, out.len())?;
        self.inner.read_f64(self.start + start, out)
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        check_range(self.rows, self.n_features(), start, out.len())?;
        self.inner.read_f32(self.start + start, out)
    }
    fn borrow_rows(&self, start: usize, rows: usize) -> Option<RowsRef<'_>> {
        if start.checked_add(rows)? > self.rows {
            return None;
        }
        self.inner.borrow_rows(self.start + start, rows)
    }
}

impl AsWeights for Vec<f64> {
    fn to_weights(&self) -> Arc<[f64]> {
        self[..].into()
    }
}

impl<S: Data<Elem = f64>> AsWeights for ArrayBase<S, Ix1> {
    fn to_weights(&self) -> Arc<[f64]> {
        self.iter().copied().collect()
    }
}

/// A source without one of its columns (the weight column of [`Dataset::with_weight_column`]).
struct WithoutColumn<S> {
    source: S,
    column: usize,
}

impl<S: DataSource> WithoutColumn<S> {
    fn read<T: Copy + Default>(
        &self,
        start: usize,
        out: &mut [T],
        read: impl Fn(&S, usize, &mut [T]) -> Result<()>,
    ) -> Result<()> {
        let d = self.source.n_features();
        check_range(self.source.n_samples(), d - 1, start, out.len())?;
        let mut full = vec![T::default(); out.len() / (d - 1) * d];
        read(&self.source, start, &mut full)?;
        for (o, row) in out.chunks_exact_mut(d - 1).zip(full.chunks_exact(d)) {
            o[..self.column].copy_from_slice(&row[..self.column]);
            o[self.column..].copy_from_slice(&row[self.column + 1..]);
        }
        Ok(())
    }
}

impl<S: DataSource> DataSource for WithoutColumn<S> {
    fn n_samples(&self) -> usize {
        self.source.n_samples()
    }
    fn n_features(&self) -> usize {
        self.source.n_features() - 1
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        self.read(start, out, |s, a, o| s.read_f64(a, o))
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.read(start, out, |s, a, o| s.read_f32(a, o))
    }
    fn sequence_lengths(&self) -> Option<Vec<usize>> {
        self.source.sequence_lengths()
    }
}

/// A dataset borrowing another's source; with `false` its rows as independent samples (the
/// source's sequence lengths hidden, [`Dataset::rows`]).
struct Borrowed<'a>(&'a dyn DataSource, bool);

impl DataSource for Borrowed<'_> {
    fn n_samples(&self) -> usize {
        self.0.n_samples()
    }
    fn n_features(&self) -> usize {
        self.0.n_features()
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        self.0.read_f64(start, out)
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.0.read_f32(start, out)
    }
    fn borrow_rows(&self, start: usize, rows: usize) -> Option<RowsRef<'_>> {
        self.0.borrow_rows(start, rows)
    }
    fn sequence_lengths(&self) -> Option<Vec<usize>> {
        self.1.then(|| self.0.sequence_lengths()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    #[test]
    fn row_range_reads_the_rows_it_names_and_nothing_else() {
        let a = Array2::from_shape_fn((10, 3), |(i, j)| (i * 3 + j) as f64);
        let data = Dataset::from_array(&a);
        let view = data.row_range(4..7).unwrap();
        assert_eq!((view.n_samples(), view.n_features()), (3, 3));
        assert_eq!(
            view.to_vec_f64().unwrap(),
            (12..21).map(f64::from).collect::<Vec<_>>()
        );
        let mut one = [0f32; 3];
        view.read_f32(2, &mut one).unwrap();
        assert_eq!(one, [18.0, 19.0, 20.0]);
        assert!(view.read_f64(2, &mut [0.0; 6]).is_err());
        assert!(data.row_range(8..11).is_err());
        assert_eq!(data.row_range(10..10).unwrap().n_samples(), 0);
    }

    #[test]
    fn reads_row_major_and_fortran_arrays_alike() {
        let c = Array2::from_shape_fn((5, 3), |(i, j)| (i * 10 + j) as f64);
        let f = Array2::from_shape_fn((5, 3).f(), |(i, j)| (i * 10 + j) as f32);
        let (dc, df) = (c.as_dataset(), f.as_dataset());
        let mut a = vec![0.0; 6];
        let mut b = vec![0.0; 6];
        dc.read_f64(2, &mut a).unwrap();
        df.read_f64(2, &mut b).unwrap();
        assert_eq!(a, vec![20.0, 21.0, 22.0, 30.0, 31.0, 32.0]);
        assert_eq!(a, b);
    }

    #[test]
    fn validate_names_the_first_non_finite_value() {
        let mut x = Array2::<f64>::zeros((20_000, 2));
        x[[15_000, 1]] = f64::INFINITY;
        x[[17_000, 0]] = f64::NAN;
        match x.as_dataset().validate() {
            Err(Error::NonFinite {
                row: 15_000,
                column: 1,
                value,
            }) => assert_eq!(value, "inf"),
            other => panic!("{other:?}"),
        }
        let empty = Array2::<f32>::zeros((0, 3));
        assert!(matches!(
            empty.as_dataset().validate(),
            Err(Error::EmptyData { .. })
        ));
    }
}
