//! Writing results: every file is written to a temporary file in the same directory, flushed to
//! disk, then renamed over the destination, so an interrupted run never leaves a half-written file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayBase, Data, Dimension};
use ndarray_npy::{WritableElement, WriteNpyExt};

use crate::error::{Error, Result};

/// Checks that `path` can be an output file: its directory exists and it is not a directory.
///
/// Call it before a long computation so a typo in the output path fails at once.
pub fn check_output_path(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::bad_file(
                path,
                format!("cannot write here: {} is not a directory", dir.display()),
            ));
        }
        Err(_) => {
            return Err(Error::bad_file(
                path,
                format!(
                    "cannot write here: the directory {} does not exist; create it or choose another output path",
                    dir.display()
                ),
            ));
        }
    }
    if path.is_dir() {
        return Err(Error::bad_file(
            path,
            "is a directory; give a file name for the output",
        ));
    }
    Ok(())
}

/// Writes `path` atomically: `write` fills a temporary file in the same directory, which is then
/// synced and renamed to `path`. On any error the temporary file is removed and `path` is left
/// as it was.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    check_output_path(path)?;
    let (tmp_path, file) = create_temp_beside(path)?;
    let result = (|| {
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp_path, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Writes an array as a `.npy` file, atomically.
pub fn write_npy_atomic<A, S, D>(path: &Path, array: &ArrayBase<S, D>) -> Result<()>
where
    A: WritableElement,
    S: Data<Elem = A>,
    D: Dimension,
{
    write_atomic(path, |w| array.write_npy(w).map_err(io::Error::other))
}

/// Writes text (a model file), atomically.
pub fn write_text_atomic(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |w| w.write_all(text.as_bytes()))
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new, uniquely named temporary file next to `path`.
fn create_temp_beside(path: &Path) -> Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let dir = parent_dir(path);
    loop {
        let tmp = dir.join(format!(
            ".{name}.{}.{}.emgpu-tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn failed_writes_leave_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_text_atomic(&path, "first").unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("interrupted"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("interrupted"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");
    }

    #[test]
    fn npy_round_trips_and_missing_directories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let a = array![[1.0f64, 2.0], [3.0, 4.0]];
        write_npy_atomic(&path, &a).unwrap();
        let back: ndarray::Array2<f64> = ndarray_npy::read_npy(&path).unwrap();
        assert_eq!(a, back);
        let missing = dir.path().join("nope").join("a.npy");
        let err = write_npy_atomic(&missing, &a).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
