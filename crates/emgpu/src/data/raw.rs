//! Raw files of little-endian float32 values, row after row, `D` per row (`--dims D`);
//! memory-mapped like `.npy` files.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::{DataSource, RowsRef};
use crate::error::{Error, Result};

/// A memory-mapped file of little-endian f32 values seen as rows of `d` features.
pub struct RawF32Source {
    map: Mmap,
    n: usize,
    d: usize,
}

impl std::fmt::Debug for RawF32Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawF32Source")
            .field("n", &self.n)
            .field("d", &self.d)
            .finish()
    }
}

impl RawF32Source {
    /// Maps `path` as rows of `d` float32 values; its size must be a multiple of `4·d` bytes.
    pub fn open(path: &Path, d: usize) -> Result<Self> {
        if d == 0 {
            return Err(Error::param(
                "raw float32 data needs at least 1 value per row",
            ));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::bad_file(
                path,
                "the file is empty (0 bytes); expected raw little-endian float32 values",
            ));
        }
        if len % 4 != 0 {
            return Err(Error::bad_file(
                path,
                format!(
                    "the file has {len} bytes, not a whole number of float32 values (4 bytes each); is it really raw float32?"
                ),
            ));
        }
        let values = len / 4;
        if values % d as u64 != 0 {
            return Err(Error::bad_file(
                path,
                format!(
                    "the file holds {values} float32 values, which do not divide into rows of {d} values; check the number of values per row"
                ),
            ));
        }
        // SAFETY: read-only map that lives as long as this source (see `NpySource::open`).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let n = map.len() / 4 / d;
        Ok(Self { map, n, d })
    }

    fn values(&self, start: usize, count: usize) -> impl Iterator<Item = f32> + '_ {
        let from = start * self.d * 4;
        self.map[from..from + count * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl DataSource for RawF32Source {
    fn n_samples(&self) -> usize {
        self.n
    }
    fn n_features(&self) -> usize {
        self.d
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        let len = out.len();
        super::check_range(self.n, self.d, start, len)?;
        for (o, v) in out.iter_mut().zip(self.values(start, len)) {
            *o = v as f64;
        }
        Ok(())
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let len = out.len();
        super::check_range(self.n, self.d, start, len)?;
        for (o, v) in out.iter_mut().zip(self.values(start, len)) {
            *o = v;
        }
        Ok(())
    }
    fn borrow_rows(&self, start: usize, rows: usize) -> Option<RowsRef<'_>> {
        // The map starts on a page boundary, so its values are aligned for f32; their bytes are
        // the file's little-endian ones, the in-memory layout only on a little-endian CPU.
        if cfg!(target_endian = "little") {
            let values: &[f32] = bytemuck::try_cast_slice(&self.map[..]).ok()?;
            RowsRef::of(values, self.d, start, rows)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_borrowed_from_the_map_and_equal_the_copies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.f32");
        let values: Vec<f32> = (0..12).map(|v| v as f32 * 0.5).collect();
        std::fs::write(&path, bytemuck::cast_slice::<f32, u8>(&values)).unwrap();
        let src = RawF32Source::open(&path, 3).unwrap();
        let mut copy = vec![0.0f32; 6];
        src.read_f32(1, &mut copy).unwrap();
        match src.borrow_rows(1, 2) {
            Some(RowsRef::F32(r)) => assert_eq!(r, &copy[..]),
            other => panic!("rows 1..3: {other:?}"),
        }
        assert!(src.borrow_rows(3, 2).is_none());
    }
}
