//! Writing results without ever losing a file.
//!
//! A regular destination is written to a temporary file in the same directory, flushed to disk,
//! then renamed over the destination, so an interrupted run never leaves a half-written file. On
//! Linux the temporary file is anonymous (`O_TMPFILE`) until it is complete: a run killed while
//! writing (even by SIGKILL) leaves nothing behind; it gets a name only for the instant between
//! `linkat` and `rename`. Elsewhere (or on file systems without `O_TMPFILE`) it is a hidden
//! `.NAME.PID.N.emgpu-tmp` file, removed on every error.
//!
//! A destination that exists and is not a regular file (`/dev/null`, a FIFO, a terminal) is
//! written in place, never replaced: a rename would put a regular file where the device node
//! was. A symbolic link is followed: the file it points to is replaced, the link stays. A
//! read-only destination is refused rather than replaced. Whether an output is the same file as
//! an input is [`same_file`]'s question, which callers ask before they start.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayBase, Data, Dimension};
use ndarray_npy::{WritableElement, WriteNpyExt};

use crate::error::{Error, Result};

/// Checks that `path` can be an output file: its directory exists, it is not a directory, and if
/// it exists it is writable.
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
    if let Ok(m) = std::fs::metadata(path)
        && m.is_file()
        && m.permissions().readonly()
    {
        return Err(Error::bad_file(
            path,
            "is read-only, and emgpu does not replace read-only files; make it writable (chmod u+w) or choose another output name",
        ));
    }
    Ok(())
}

/// Whether `a` and `b` are the same file: for files that exist, the same device and inode (so
/// hard links, symbolic links and different spellings of one path all count); for two paths
/// that do not exist yet, the same name in the same directory (both would write one file).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => same_inode(&ma, &mb, a, b),
        (Err(_), Err(_)) => match (resolved_name(a), resolved_name(b)) {
            (Some(ra), Some(rb)) => ra == rb,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(unix)]
fn same_inode(ma: &std::fs::Metadata, mb: &std::fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    ma.dev() == mb.dev() && ma.ino() == mb.ino()
}

#[cfg(not(unix))]
fn same_inode(_: &std::fs::Metadata, _: &std::fs::Metadata, a: &Path, b: &Path) -> bool {
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(ca), Ok(cb)) if ca == cb
    )
}

/// A path that does not exist yet, as its canonical directory joined with its file name.
fn resolved_name(path: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(parent_dir(path)).ok()?;
    Some(dir.join(path.file_name()?))
}

/// Writes `path` without ever leaving it half-written: `write` fills a temporary file in the
/// same directory, which is then synced and renamed to `path`. On any error the temporary file
/// is removed and `path` is left as it was. A `path` that exists and is not a regular file (a
/// device such as `/dev/null`, a FIFO) is written in place instead (see the module docs).
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    check_output_path(path)?;
    // Replace the file a symbolic link points to, not the link.
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    };
    if let Ok(m) = std::fs::metadata(&target)
        && !m.is_file()
    {
        return write_in_place(&target, write).map_err(|e| Error::io(path, e));
    }
    let (file, mut temp) = TempFile::create_beside(&target).map_err(|e| Error::io(path, e))?;
    let result = (|| {
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        temp.persist(&file, &target)
    })();
    // On an error, dropping `temp` removes whatever name the temporary file got.
    drop(temp);
    result.map_err(|e| Error::io(path, e))
}

/// Writes into an existing file that is not a regular file (no temporary, no rename).
fn write_in_place(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    out.flush()
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

/// A temporary file next to the destination; removed when dropped unless persisted.
struct TempFile {
    /// Its name, while it has one (a named temporary, or an anonymous one once linked).
    name: Option<PathBuf>,
    /// Whether it was created anonymous (`O_TMPFILE`) and still needs a name.
    anonymous: bool,
    /// The name to give an anonymous file before the rename.
    link_name: PathBuf,
}

impl TempFile {
    /// An anonymous `O_TMPFILE` in the destination's directory where the system has them, else
    /// a new, uniquely named hidden file there.
    fn create_beside(path: &Path) -> io::Result<(File, Self)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let dir = parent_dir(path);
        let fresh_name = || {
            dir.join(format!(
                ".{name}.{}.{}.emgpu-tmp",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ))
        };
        if let Some(file) = anonymous::create(&dir) {
            let temp = Self {
                name: None,
                anonymous: true,
                link_name: fresh_name(),
            };
            return Ok((file, temp));
        }
        loop {
            let tmp = fresh_name();
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    let temp = Self {
                        name: Some(tmp.clone()),
                        anonymous: false,
                        link_name: tmp,
                    };
                    return Ok((file, temp));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives the complete (already synced) `file` the name `path`.
    fn persist(&mut self, file: &File, path: &Path) -> io::Result<()> {
        if self.anonymous {
            anonymous::link(file, &self.link_name)?;
            self.anonymous = false;
            self.name = Some(self.link_name.clone());
        }
        if let Some(name) = &self.name {
            std::fs::rename(name, path)?;
        }
        self.name = None;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = std::fs::remove_file(name);
        }
    }
}

/// Anonymous temporary files: `O_TMPFILE`, named with `linkat` through `/proc/self/fd` once
/// complete (Linux 3.11+, on file systems that have it).
#[cfg(target_os = "linux")]
mod anonymous {
    use std::ffi::CString;
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    use std::path::Path;

    /// An unnamed file in `dir`, or `None` where that is not possible (the caller then uses a
    /// named temporary file).
    pub fn create(dir: &Path) -> Option<File> {
        // Without /proc the file could not be named afterwards.
        if !Path::new("/proc/self/fd").is_dir() {
            return None;
        }
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o666)
            .open(dir)
            .ok()
    }

    /// Gives the unnamed `file` the name `name` (which must not exist).
    pub fn link(file: &File, name: &Path) -> io::Result<()> {
        let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(io::Error::other)?;
        let name = CString::new(name.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: both arguments are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc_path.as_ptr(),
                libc::AT_FDCWD,
                name.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// No anonymous temporary files here: always a named one.
#[cfg(not(target_os = "linux"))]
mod anonymous {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    pub fn create(_: &Path) -> Option<File> {
        None
    }

    pub fn link(_: &File, _: &Path) -> io::Result<()> {
        Err(io::Error::other(
            "no anonymous temporary files on this system",
        ))
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

    #[cfg(target_os = "linux")]
    #[test]
    fn while_writing_the_temporary_file_has_no_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, |w| {
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(names.is_empty(), "a named temporary file exists: {names:?}");
            w.write_all(b"data")
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_only_destinations_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_text_atomic(&path, "first").unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&path, perms).unwrap();
        let err = write_text_atomic(&path, "second").unwrap_err().to_string();
        assert!(err.contains("read-only"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        let link = dir.path().join("link.txt");
        write_text_atomic(&real, "first").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_text_atomic(&link, "second").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "second");
        assert!(same_file(&real, &link));
    }

    #[cfg(unix)]
    #[test]
    fn same_file_compares_inodes_not_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        let hard = dir.path().join("hard.txt");
        let other = dir.path().join("other.txt");
        write_text_atomic(&a, "x").unwrap();
        write_text_atomic(&other, "x").unwrap();
        std::fs::hard_link(&a, &hard).unwrap();
        assert!(same_file(&a, &hard));
        assert!(same_file(&a, &dir.path().join(".").join("a.txt")));
        assert!(!same_file(&a, &other));
        // Two outputs that do not exist yet but would be one file.
        let new = dir.path().join("new.npy");
        assert!(same_file(&new, &dir.path().join(".").join("new.npy")));
        assert!(!same_file(&new, &dir.path().join("new2.npy")));
        assert!(!same_file(&new, &a));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_destination_is_written_in_place_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        write_text_atomic(&fifo, "through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), "through the pipe");
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
