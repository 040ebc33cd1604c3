//! Sparse count matrices ([`CountMatrix`], compressed sparse rows): the document-term matrices of
//! LDA, read from SciPy's `scipy.sparse.save_npz` files or dense 2-D `.npy` arrays.
//!
//! A `.npz` of `save_npz` is a zip archive (deflated by default) of `.npy` members: `format`
//! (`b'csr'`, `b'csc'` or `b'coo'`), `shape` `[2]`, `data` (any integer or float dtype), and
//! `indices` + `indptr` (CSR, CSC) or `row` + `col` (COO). CSC and COO are reordered to rows
//! (entries of a row in the order of their columns; duplicate entries are kept, each counted).
//! Values are converted to f64 whatever the dtype; they must be finite and non-negative
//! (non-integer counts are accepted). The whole matrix is held in memory: about 12 bytes per
//! non-zero entry.

use std::io::Read;
use std::path::Path;

use ndarray::{Array1, Array2, ArrayView2};
use ndarray_npy::ReadNpyExt;

use crate::error::{Error, Result};

/// A matrix of non-negative counts in compressed sparse rows: row `i`'s entries are
/// `indices[indptr[i]..indptr[i + 1]]` (columns) and the same range of `data` (values).
#[derive(Debug, Clone, PartialEq)]
pub struct CountMatrix {
    n_rows: usize,
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    data: Vec<f64>,
}

impl CountMatrix {
    /// A matrix from its CSR arrays, checked: `indptr` has `n_rows + 1` non-decreasing entries
    /// from 0 to `indices.len() == data.len()`, every column index is below `n_cols`, every value
    /// finite and ≥ 0.
    pub fn from_csr(
        n_rows: usize,
        n_cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        data: Vec<f64>,
    ) -> Result<Self> {
        let m = Self {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        };
        m.check().map_err(Error::param)?;
        Ok(m)
    }

    /// The non-zero entries of a dense `[N, V]` array (each value finite and ≥ 0).
    pub fn from_dense(x: ArrayView2<f64>) -> Result<Self> {
        let (n_rows, n_cols) = x.dim();
        let mut indptr = Vec::with_capacity(n_rows + 1);
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        indptr.push(0);
        for row in x.rows() {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(u32::try_from(j).map_err(|_| too_many_columns(n_cols))?);
                    data.push(v);
                }
            }
            indptr.push(indices.len());
        }
        Self::from_csr(n_rows, n_cols, indptr, indices, data)
    }

    /// Reads a `.npz` (`scipy.sparse.save_npz`) or a dense 2-D `.npy` file (by its extension; a
    /// name with neither is tried as `.npz` when it starts as a zip archive, else as `.npy`).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.is_empty() {
            return Err(Error::bad_file(
                path,
                "the file is empty (0 bytes); expected a scipy.sparse.save_npz .npz or a numpy.save .npy document-term matrix",
            ));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let npz = match ext.as_deref() {
            Some("npz") => true,
            Some("npy") => false,
            _ => bytes.starts_with(b"PK"),
        };
        let read = if npz {
            read_npz(&bytes)
        } else {
            read_dense_npy(&bytes)
        };
        read.map_err(|m| Error::bad_file(path, m))
    }

    /// Number of rows (documents).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
    /// Number of columns (vocabulary terms).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }
    /// The columns and values of row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[r.clone()], &self.data[r])
    }
    /// The sum of all values (the number of words of a corpus).
    pub fn total(&self) -> f64 {
        self.data.iter().sum()
    }
    /// The CSR row pointers (`n_rows + 1` entries).
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }
    /// The matrix as a dense `[N, V]` array (for tests and small data).
    pub fn to_dense(&self) -> Array2<f64> {
        let mut out = Array2::zeros((self.n_rows, self.n_cols));
        for i in 0..self.n_rows {
            let (idx, val) = self.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                out[[i, j as usize]] += v;
            }
        }
        out
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.indptr.len() != self.n_rows + 1 {
            return Err(format!(
                "indptr has {} entries for {} rows (expected {})",
                self.indptr.len(),
                self.n_rows,
                self.n_rows + 1
            ));
        }
        if self.indices.len() != self.data.len() {
            return Err(format!(
                "indices has {} entries but data has {}",
                self.indices.len(),
                self.data.len()
            ));
        }
        if self.indptr[0] != 0
            || self.indptr[self.n_rows] != self.data.len()
            || self.indptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(format!(
                "indptr must rise from 0 to the number of entries ({}) without decreasing",
                self.data.len()
            ));
        }
        if let Some(&j) = self.indices.iter().find(|&&j| j as usize >= self.n_cols) {
            return Err(format!(
                "column index {j} is out of range for {} columns",
                self.n_cols
            ));
        }
        if let Some(p) = self.data.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            let row = self.indptr.partition_point(|&s| s <= p) - 1;
            let (v, col) = (self.data[p], self.indices[p]);
            let what = if v.is_finite() {
                "a negative count"
            } else {
                "a non-finite value"
            };
            return Err(format!(
                "{what} {v} at row {row}, column {col} (0-based); a document-term matrix holds counts ≥ 0"
            ));
        }
        Ok(())
    }
}

fn too_many_columns(n: usize) -> Error {
    Error::param(format!(
        "{n} columns: at most 2^32 vocabulary terms are supported"
    ))
}

/// The members of a `save_npz` archive as a CSR matrix.
fn read_npz(bytes: &[u8]) -> std::result::Result<CountMatrix, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        format!("not a readable .npz (zip) archive ({e}): truncated, or not written by scipy.sparse.save_npz")
    })?;
    let mut member = |name: &str| -> std::result::Result<Vec<u8>, String> {
        let mut f = zip.by_name(&format!("{name}.npy")).map_err(|_| {
            format!("the archive has no member \"{name}\": not a scipy.sparse.save_npz file")
        })?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(|e| {
            format!("member \"{name}\" cannot be read ({e}): the archive is corrupt or truncated")
        })?;
        Ok(out)
    };
    let format = member("format")?;
    let format = npy_payload(&format).map_err(|e| format!("member \"format\": {e}"))?;
    let format: Vec<u8> = format.iter().copied().filter(|&b| b != 0).collect();
    let shape = ints(&member("shape")?, "shape")?;
    let [n_rows, n_cols] = shape[..] else {
        return Err(format!(
            "member \"shape\" has {} entries; a matrix has 2",
            shape.len()
        ));
    };
    u32::try_from(n_cols.saturating_sub(1)).map_err(|_| too_many_columns(n_cols).to_string())?;
    let data = floats(&member("data")?, "data")?;
    let checked = |m: CountMatrix| m.check().map(|()| m);
    match &format[..] {
        b"csr" => {
            let indptr = ints(&member("indptr")?, "indptr")?;
            let indices = ints(&member("indices")?, "indices")?;
            let indices = indices.into_iter().map(|j| j as u32).collect();
            checked(CountMatrix {
                n_rows,
                n_cols,
                indptr,
                indices,
                data,
            })
        }
        b"csc" => {
            let indptr = ints(&member("indptr")?, "indptr")?;
            let rows = ints(&member("indices")?, "indices")?;
            let csc = checked(CountMatrix {
                n_rows: n_cols,
                n_cols: n_rows,
                indptr,
                indices: rows.into_iter().map(|r| r as u32).collect(),
                data,
            })
            .map_err(|e| format!("{e} (CSC: rows and columns swapped)"))?;
            let mut rows = Vec::with_capacity(csc.nnz());
            let mut cols = Vec::with_capacity(csc.nnz());
            for c in 0..csc.n_rows {
                let (idx, _) = csc.row(c);
                rows.extend(idx.iter().map(|&r| r as usize));
                cols.extend(std::iter::repeat_n(c, idx.len()));
            }
            Ok(from_triplets(n_rows, n_cols, &rows, &cols, &csc.data))
        }
        b"coo" => {
            let rows = ints(&member("row")?, "row")?;
            let cols = ints(&member("col")?, "col")?;
            if rows.len() != data.len() || cols.len() != data.len() {
                return Err("members row, col and data have different lengths".into());
            }
            if let Some(i) = (0..rows.len()).find(|&i| rows[i] >= n_rows || cols[i] >= n_cols) {
                return Err(format!(
                    "entry ({}, {}) is outside the shape ({n_rows}, {n_cols})",
                    rows[i], cols[i]
                ));
            }
            checked(from_triplets(n_rows, n_cols, &rows, &cols, &data))
        }
        other => Err(format!(
            "sparse format {:?} is not supported; save a CSR, CSC or COO matrix (x.tocsr())",
            String::from_utf8_lossy(other)
        )),
    }
}

/// A CSR matrix from (row, column, value) triplets (in bounds), a stable counting sort by row:
/// entries of a row keep their order.
fn from_triplets(
    n_rows: usize,
    n_cols: usize,
    rows: &[usize],
    cols: &[usize],
    data: &[f64],
) -> CountMatrix {
    let mut indptr = vec![0usize; n_rows + 1];
    for &r in rows {
        indptr[r + 1] += 1;
    }
    for i in 0..n_rows {
        indptr[i + 1] += indptr[i];
    }
    let mut next = indptr.clone();
    let mut indices = vec![0u32; data.len()];
    let mut values = vec![0.0; data.len()];
    // Column order within a row: visit the entries sorted by column.
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| cols[i]);
    for i in order {
        let p = next[rows[i]];
        indices[p] = cols[i] as u32;
        values[p] = data[i];
        next[rows[i]] += 1;
    }
    CountMatrix {
        n_rows,
        n_cols,
        indptr,
        indices,
        data: values,
    }
}

/// The bytes after a `.npy` header.
fn npy_payload(bytes: &[u8]) -> std::result::Result<&[u8], String> {
    let mut r = bytes;
    ndarray_npy::npy::header::Header::from_reader(&mut r)
        .map_err(|e| format!("not a valid .npy member ({e})"))?;
    Ok(r)
}

/// A 1-D integer array as non-negative `usize`s.
fn ints(bytes: &[u8], name: &str) -> std::result::Result<Vec<usize>, String> {
    let signed: Option<Vec<i64>> = if let Ok(a) = Array1::<i64>::read_npy(bytes) {
        Some(a.to_vec())
    } else if let Ok(a) = Array1::<i32>::read_npy(bytes) {
        Some(a.iter().map(|&v| v as i64).collect())
    } else if let Ok(a) = Array1::<u32>::read_npy(bytes) {
        Some(a.iter().map(|&v| v as i64).collect())
    } else if let Ok(a) = Array1::<u64>::read_npy(bytes) {
        Some(a.iter().map(|&v| v.min(i64::MAX as u64) as i64).collect())
    } else {
        None
    };
    let v = signed.ok_or_else(|| {
        format!("member \"{name}\" is not a 1-D array of 32- or 64-bit integers (or is truncated)")
    })?;
    v.into_iter()
        .map(|x| usize::try_from(x).map_err(|_| format!("member \"{name}\" holds {x} < 0")))
        .collect()
}

/// A 1-D numeric array as f64.
fn floats(bytes: &[u8], name: &str) -> std::result::Result<Vec<f64>, String> {
    macro_rules! try_types {
        ($($t:ty),*) => {
            $(if let Ok(a) = Array1::<$t>::read_npy(bytes) {
                return Ok(a.iter().map(|&v| v as f64).collect());
            })*
        };
    }
    try_types!(f64, f32, i64, i32, i16, i8, u64, u32, u16, u8);
    Err(format!(
        "member \"{name}\" is not a 1-D array of integers or floats (or is truncated)"
    ))
}

/// A dense 2-D `.npy` of any integer or float dtype, as a CSR matrix.
fn read_dense_npy(bytes: &[u8]) -> std::result::Result<CountMatrix, String> {
    macro_rules! try_types {
        ($($t:ty),*) => {
            $(if let Ok(a) = Array2::<$t>::read_npy(bytes) {
                let a = a.mapv(|v| v as f64);
                return CountMatrix::from_dense(a.view()).map_err(|e| match e {
                    Error::InvalidParameter(m) => m,
                    other => other.to_string(),
                });
            })*
        };
    }
    try_types!(f64, f32, i64, i32, i16, i8, u64, u32, u16, u8);
    let mut r = bytes;
    match ndarray_npy::npy::header::Header::from_reader(&mut r) {
        Err(e) => Err(format!(
            "not a valid .npy file ({e}); write a dense matrix with numpy.save or a sparse one with scipy.sparse.save_npz"
        )),
        Ok(h) => Err(format!(
            "a document-term matrix must be a 2-D array of integers or floats, C or Fortran order, complete; this .npy has shape {:?} and dtype {:?} (or is truncated)",
            h.shape, h.type_descriptor
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets_and_dense_agree() {
        let rows = [1, 0, 1, 2];
        let cols = [3, 1, 0, 2];
        let data = [2.0, 1.0, 0.5, 4.0];
        let m = from_triplets(3, 4, &rows, &cols, &data);
        m.check().unwrap();
        assert_eq!(m.row(1), (&[0u32, 3][..], &[0.5, 2.0][..]));
        let d = CountMatrix::from_dense(m.to_dense().view()).unwrap();
        assert_eq!(d, m);
    }

    #[test]
    fn negative_counts_are_refused() {
        let e = CountMatrix::from_csr(1, 2, vec![0, 1], vec![1], vec![-1.0]).unwrap_err();
        assert!(
            e.to_string()
                .contains("negative count -1 at row 0, column 1"),
            "{e}"
        );
    }
}
