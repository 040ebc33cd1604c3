//! Writing labels and responsibilities: `.npy` (int64 / float64), CSV with a header row when the
//! name ends in `.csv`, or CSV on stdout for `-`. Files are written atomically.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use emgpu::data::{check_output_path, write_atomic, write_npy_atomic};
use ndarray::{Array1, Array2};

use super::CliError;

/// Whether `path` means stdout (`-`).
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Whether `path` is written as CSV: `-` (stdout) or a name ending in `.csv` (any case).
pub fn is_csv(path: &Path) -> bool {
    is_stdout(path)
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Checks an output path before the computation (stdout needs no check).
pub fn check_output(path: &Path) -> Result<(), CliError> {
    if !is_stdout(path) {
        check_output_path(path)?;
    }
    Ok(())
}

/// Labels: one `label` column in CSV, else int64 `.npy`.
pub fn write_labels(path: &Path, labels: &Array1<i64>) -> Result<(), CliError> {
    if !is_csv(path) {
        return Ok(write_npy_atomic(path, labels)?);
    }
    write_csv(path, |w| {
        writeln!(w, "label")?;
        for l in labels {
            writeln!(w, "{l}")?;
        }
        Ok(())
    })
}

/// Responsibilities `[N, K]`: columns `p0, p1, ...` in CSV, else float64 `.npy`.
pub fn write_proba(path: &Path, proba: &Array2<f64>) -> Result<(), CliError> {
    if !is_csv(path) {
        return Ok(write_npy_atomic(path, proba)?);
    }
    let header: Vec<String> = (0..proba.ncols()).map(|k| format!("p{k}")).collect();
    write_matrix_csv(path, proba, &header)
}

/// A float64 matrix as CSV under a header row (one name per column).
pub fn write_matrix_csv(
    path: &Path,
    proba: &Array2<f64>,
    header: &[String],
) -> Result<(), CliError> {
    write_csv(path, |w| {
        writeln!(w, "{}", header.join(","))?;
        for row in proba.rows() {
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    w.write_all(b",")?;
                }
                write_number(w, *v)?;
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Writes CSV text to `path` atomically, or to stdout for `-` (a closed pipe ends quietly).
fn write_csv(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), CliError> {
    if !is_stdout(path) {
        return Ok(write_atomic(path, write)?);
    }
    let stdout = io::stdout().lock();
    let mut out = BufWriter::new(stdout);
    match write(&mut out).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::error(format!("cannot write to stdout: {e}"))),
    }
}

/// How the output is named in a summary line.
pub fn display(path: &Path) -> String {
    if is_stdout(path) {
        "stdout".to_string()
    } else {
        path.display().to_string()
    }
}

/// The shortest text that reads back as the same f64; scientific when tiny or huge (so 1e-300 is
/// not 300 zeros).
fn write_number(w: &mut dyn Write, v: f64) -> io::Result<()> {
    if v != 0.0 && v.is_finite() && !(1e-4..1e16).contains(&v.abs()) {
        write!(w, "{v:e}")
    } else {
        write!(w, "{v}")
    }
}
