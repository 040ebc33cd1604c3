//! `.npy` files, memory-mapped: rows are read from the page cache chunk by chunk, so a file larger
//! than memory can be fitted and nothing is copied whole.
//!
//! ndarray-npy parses and checks the file (header, dtype, endianness, alignment, exact length);
//! this module keeps the map and the place of the data in it, and converts rows on demand.
//!
//! Both layouts are read in place: C order (row-major, `numpy.save` of most arrays) and Fortran
//! order (column-major, `numpy.save(p, df.to_numpy())` of a pandas frame). A Fortran-order chunk
//! of rows is gathered column by column from the map, one contiguous run of values per feature,
//! so it is never transposed or copied whole.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use memmap2::Mmap;
use ndarray::ArrayViewD;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ViewNpyError, ViewNpyExt};

use super::{DataSource, Element, RowsRef};
use crate::error::{Error, Result};

/// The element type of a `.npy` file emgpu reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// `<f4`.
    F32,
    /// `<f8`.
    F64,
}

/// A memory-mapped `.npy` array of float32 or float64 in C or Fortran order, seen as `[N, D]`
/// rows (a 1-D array of N values is `[N, 1]`).
pub struct NpySource {
    map: Mmap,
    /// Byte offset of the first value in the map.
    offset: usize,
    n: usize,
    d: usize,
    dtype: NpyDtype,
    /// Column-major: value (i, j) is the `j * n + i`-th.
    fortran: bool,
}

impl std::fmt::Debug for NpySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpySource")
            .field("n", &self.n)
            .field("d", &self.d)
            .field("dtype", &self.dtype)
            .field("fortran", &self.fortran)
            .finish()
    }
}

impl NpySource {
    /// Maps `path` and checks it is a 1-D or 2-D float32/float64 little-endian array (C or
    /// Fortran order).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::bad_file(
                path,
                "the file is empty (0 bytes); expected a .npy array written by numpy.save",
            ));
        }
        // SAFETY: the map is read-only and lives as long as this source. Another process
        // truncating the file while it is mapped could fault the reads (SIGBUS); that is the
        // documented limitation of every memory-mapped reader and the price of not copying data
        // larger than memory.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;

        // Read the header first for the messages about dtype and layout.
        let header = Header::from_reader(&mut &map[..]).map_err(|e| {
            let view_err: ViewNpyError = e.into();
            describe(path, view_err)
        })?;
        let fortran = header.layout.is_fortran();
        let (dtype, shape) = match ArrayViewD::<f64>::view_npy(&map) {
            Ok(v) => (NpyDtype::F64, v.shape().to_vec()),
            Err(ViewNpyError::WrongDescriptor(_)) => match ArrayViewD::<f32>::view_npy(&map) {
                Ok(v) => (NpyDtype::F32, v.shape().to_vec()),
                Err(e) => return Err(describe(path, e)),
            },
            Err(e) => return Err(describe(path, e)),
        };
        let (n, d) = match shape[..] {
            [n] => (n, 1),
            [n, d] => (n, d),
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "the array is {}-D with shape {shape:?}; emgpu reads 2-D arrays [samples, features] (or 1-D: one feature); reshape it, e.g. x.reshape(len(x), -1)",
                        shape.len()
                    ),
                ));
            }
        };
        let size = match dtype {
            NpyDtype::F32 => 4,
            NpyDtype::F64 => 8,
        };
        // ndarray-npy refuses extra bytes after the data, so the data is the tail of the file.
        let offset = map.len() - n * d * size;
        Ok(Self {
            map,
            offset,
            n,
            d,
            dtype,
            fortran,
        })
    }

    /// The element type in the file.
    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }

    /// All the values, in file order.
    fn values<T: bytemuck::Pod>(&self) -> &[T] {
        let size = std::mem::size_of::<T>();
        // Alignment and length were checked by ndarray-npy when the file was opened.
        bytemuck::cast_slice(&self.map[self.offset..self.offset + self.n * self.d * size])
    }

    /// Rows `[start, start + out.len() / D)` into `out` (row-major), converted by `conv`.
    fn gather<T: bytemuck::Pod, O>(&self, start: usize, out: &mut [O], conv: fn(T) -> O) {
        let (n, d) = (self.n, self.d);
        let values = self.values::<T>();
        if !self.fortran {
            let (from, len) = (start * d, out.len());
            for (o, v) in out.iter_mut().zip(&values[from..from + len]) {
                *o = conv(*v);
            }
            return;
        }
        let rows = out.len() / d;
        for j in 0..d {
            let column = &values[j * n + start..j * n + start + rows];
            for (r, v) in column.iter().enumerate() {
                out[r * d + j] = conv(*v);
            }
        }
    }

    fn read<O>(
        &self,
        start: usize,
        out: &mut [O],
        conv64: fn(f64) -> O,
        conv32: fn(f32) -> O,
    ) -> Result<()> {
        super::check_range(self.n, self.d, start, out.len())?;
        match self.dtype {
            NpyDtype::F64 => self.gather(start, out, conv64),
            NpyDtype::F32 => self.gather(start, out, conv32),
        }
        Ok(())
    }
}

impl DataSource for NpySource {
    fn n_samples(&self) -> usize {
        self.n
    }
    fn n_features(&self) -> usize {
        self.d
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        self.read(start, out, Element::to_f64, Element::to_f64)
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.read(start, out, Element::to_f32, Element::to_f32)
    }
    fn borrow_rows(&self, start: usize, rows: usize) -> Option<RowsRef<'_>> {
        if self.fortran {
            return None;
        }
        match self.dtype {
            NpyDtype::F64 => RowsRef::of(self.values::<f64>(), self.d, start, rows),
            NpyDtype::F32 => RowsRef::of(self.values::<f32>(), self.d, start, rows),
        }
    }
}

/// ndarray-npy's error as one sentence about `path` that says what to do.
fn describe(path: &Path, e: ViewNpyError) -> Error {
    let message = match e {
        ViewNpyError::Io(e) if e.kind() == ErrorKind::UnexpectedEof => {
            "the file is truncated or not a .npy file: its header is incomplete".to_string()
        }
        ViewNpyError::Io(e) => return Error::io(path, e),
        ViewNpyError::ParseHeader(e) => {
            format!("not a valid .npy file ({e}); write it with numpy.save")
        }
        ViewNpyError::WrongDescriptor(d) => format!(
            "unsupported dtype {d}; emgpu reads float32 or float64 arrays: convert with x.astype(numpy.float64)"
        ),
        ViewNpyError::NonNativeEndian => {
            "the data is big-endian; emgpu reads little-endian float32/float64: convert with x.astype('<f8')".to_string()
        }
        ViewNpyError::MisalignedData => {
            "the data is not aligned for its type (not written by numpy.save?); rewrite it with numpy.save".to_string()
        }
        ViewNpyError::MissingBytes(n) => format!(
            "the file is truncated: {n} bytes of the data its header describes are missing"
        ),
        ViewNpyError::ExtraBytes(n) => format!(
            "the file has {n} bytes after the data its header describes (corrupt, or more than one array); rewrite it with numpy.save"
        ),
        ViewNpyError::LengthOverflow => {
            "the shape in the header is too large to address".to_string()
        }
        other => format!("cannot read the array: {other}"),
    };
    Error::bad_file(path, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, RowsRef};
    use ndarray::{Array1, Array2};
    use ndarray_npy::write_npy;

    #[test]
    fn rows_are_read_from_any_offset_in_both_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let x = Array2::from_shape_fn((1001, 3), |(i, j)| i as f64 * 10.0 + j as f64 + 0.25);
        let (p64, p32, p1) = (
            dir.path().join("x64.npy"),
            dir.path().join("x32.npy"),
            dir.path().join("x1.npy"),
        );
        write_npy(&p64, &x).unwrap();
        write_npy(&p32, &x.mapv(|v| v as f32)).unwrap();
        write_npy(&p1, &Array1::from_iter((0..7).map(|v| v as f32))).unwrap();

        let a = NpySource::open(&p64).unwrap();
        let b = NpySource::open(&p32).unwrap();
        assert_eq!((a.dtype(), b.dtype()), (NpyDtype::F64, NpyDtype::F32));
        assert_eq!((a.n_samples(), a.n_features()), (1001, 3));
        let mut row = vec![0.0f64; 6];
        a.read_f64(999, &mut row).unwrap();
        assert_eq!(
            row,
            vec![9990.25, 9991.25, 9992.25, 10000.25, 10001.25, 10002.25]
        );
        let mut row32 = vec![0.0f32; 3];
        b.read_f32(500, &mut row32).unwrap();
        assert_eq!(row32, vec![5000.25, 5001.25, 5002.25]);
        b.read_f64(0, &mut row[..3]).unwrap();
        assert_eq!(row[..3], [0.25, 1.25, 2.25]);

        // Through Dataset::open_npy; a 1-D array is one feature.
        let one = Dataset::open_npy(&p1).unwrap();
        assert_eq!((one.n_samples(), one.n_features()), (7, 1));
        assert_eq!(
            one.to_vec_f64().unwrap(),
            (0..7).map(f64::from).collect::<Vec<_>>()
        );
        assert_eq!(
            Dataset::open_npy(&p64).unwrap().to_vec_f64().unwrap(),
            x.into_raw_vec_and_offset().0
        );
    }

    #[test]
    fn c_order_rows_are_borrowed_in_place_and_fortran_order_rows_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let x = Array2::from_shape_fn((50, 3), |(i, j)| i as f64 + 0.5 * j as f64);
        let (p64, p32, pf) = (
            dir.path().join("x64.npy"),
            dir.path().join("x32.npy"),
            dir.path().join("xf.npy"),
        );
        write_npy(&p64, &x).unwrap();
        write_npy(&p32, &x.mapv(|v| v as f32)).unwrap();
        write_npy(&pf, &x.t().as_standard_layout().t()).unwrap();
        let a = Dataset::open_npy(&p64).unwrap();
        match a.borrow_rows(10, 2) {
            Some(RowsRef::F64(r)) => assert_eq!(r, &[10.0, 10.5, 11.0, 11.0, 11.5, 12.0]),
            other => panic!("f64 rows 10..12: {other:?}"),
        }
        match Dataset::open_npy(&p32).unwrap().borrow_rows(49, 1) {
            Some(RowsRef::F32(r)) => assert_eq!(r, &[49.0, 49.5, 50.0]),
            other => panic!("f32 row 49: {other:?}"),
        }
        // Past the end: nothing (not a panic). Through a range of rows: offset.
        assert!(a.borrow_rows(49, 2).is_none());
        assert!(a.borrow_rows(usize::MAX, 2).is_none());
        let range = a.row_range(20..30).unwrap();
        assert!(matches!(
            range.borrow_rows(0, 1),
            Some(RowsRef::F64(&[20.0, 20.5, 21.0]))
        ));
        assert!(range.borrow_rows(5, 6).is_none());
        // Fortran order: the rows are not contiguous; the source says so and copies.
        let f = Dataset::open_npy(&pf).unwrap();
        assert!(f.borrow_rows(0, 1).is_none());
        assert_eq!(f.to_vec_f64().unwrap(), a.to_vec_f64().unwrap());
    }

    #[test]
    fn fortran_order_files_read_like_c_order_ones() {
        use ndarray::ShapeBuilder;
        let dir = tempfile::tempdir().unwrap();
        let (n, d) = (257, 5);
        let values = |(i, j): (usize, usize)| i as f64 * 10.0 + j as f64 + 0.5;
        let c = Array2::from_shape_fn((n, d), values);
        let f = Array2::from_shape_fn((n, d).f(), values);
        assert!(f.t().is_standard_layout());
        let (pc, pf, pf32) = (
            dir.path().join("c.npy"),
            dir.path().join("f.npy"),
            dir.path().join("f32.npy"),
        );
        write_npy(&pc, &c).unwrap();
        write_npy(&pf, &f).unwrap();
        write_npy(&pf32, &f.mapv(|v| v as f32)).unwrap();
        let (a, b, b32) = (
            NpySource::open(&pc).unwrap(),
            NpySource::open(&pf).unwrap(),
            NpySource::open(&pf32).unwrap(),
        );
        assert!(b.fortran && !a.fortran);
        assert_eq!((b.n_samples(), b.n_features()), (n, d));
        for (start, rows) in [(0, n), (0, 1), (100, 57), (n - 3, 3)] {
            let mut want = vec![0.0f64; rows * d];
            let mut got = vec![0.0f64; rows * d];
            let mut got32 = vec![0.0f32; rows * d];
            a.read_f64(start, &mut want).unwrap();
            b.read_f64(start, &mut got).unwrap();
            b32.read_f32(start, &mut got32).unwrap();
            assert_eq!(got, want, "rows {start}..{}", start + rows);
            let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            assert_eq!(got32, want32);
        }
        assert!(b.read_f64(n - 1, &mut [0.0; 10]).is_err());
    }
}
