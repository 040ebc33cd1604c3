//! Opening a data file as a [`Dataset`]: `.npy` (memory-mapped), CSV with a header, raw float32.

use std::path::Path;

use emgpu::data::npy::NpySource;
use emgpu::data::raw::RawF32Source;
use emgpu::{Dataset, Error, Result};

use super::csv::{CsvOptions, CsvSource, IndexColumn};

/// The formats [`open_dataset`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// NumPy `.npy`: float32 or float64, C or Fortran order, 2-D `[N, D]` or 1-D (D = 1). Memory-mapped.
    Npy,
    /// CSV with a header row; all columns numeric, or the ones chosen with
    /// [`ReadOptions::columns`].
    Csv,
    /// Raw little-endian float32 values, row after row; needs [`ReadOptions::dims`]. Memory-mapped.
    RawF32,
}

impl FileFormat {
    /// The format a file name's extension implies (`.npy`, `.csv`, any case), if any.
    pub fn from_extension(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "npy" => Some(FileFormat::Npy),
            "csv" | "tsv" | "tab" => Some(FileFormat::Csv),
            _ => None,
        }
    }

    /// The name used on the command line (`npy`, `csv`, `raw`).
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Npy => "npy",
            FileFormat::Csv => "csv",
            FileFormat::RawF32 => "raw",
        }
    }
}

/// How to read a data file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The format; `None` picks it from the extension (`.npy`, `.csv`), or raw float32 when
    /// `dims` is given.
    pub format: Option<FileFormat>,
    /// CSV only: the columns to read, by header name or 0-based position, in this order.
    /// `None`: all columns.
    pub columns: Option<Vec<String>>,
    /// CSV only: how else to read it (`--drop`, `--delimiter`, `--no-header`, `--dropna`).
    pub csv: CsvOptions,
    /// Raw float32 only: values per row.
    pub dims: Option<usize>,
}

impl ReadOptions {
    /// The format `path` is read as under these options.
    pub fn format_for(&self, path: &Path) -> Result<FileFormat> {
        let format = match (self.format, FileFormat::from_extension(path), self.dims) {
            (Some(f), _, _) => f,
            (None, Some(f), _) => f,
            (None, None, Some(_)) => FileFormat::RawF32,
            (None, None, None) => {
                return Err(Error::bad_file(
                    path,
                    "cannot tell the format from the file name; name it .npy or .csv, or give --format npy|csv|raw (raw float32 needs --dims D)",
                ));
            }
        };
        let csv_flag = if self.columns.is_some() {
            Some("--columns")
        } else if self.csv.drop.is_some() {
            Some("--drop")
        } else if self.csv.delimiter.is_some() {
            Some("--delimiter")
        } else if self.csv.no_header {
            Some("--no-header")
        } else if self.csv.dropna {
            Some("--dropna")
        } else {
            None
        };
        if let (Some(flag), false) = (csv_flag, format == FileFormat::Csv) {
            return Err(Error::param(format!(
                "{flag} applies to CSV files only, but {} is read as {}",
                path.display(),
                format.name()
            )));
        }
        match (format, self.dims) {
            (FileFormat::RawF32, None) => Err(Error::param(format!(
                "{} is read as raw float32: give the number of values per row with --dims D",
                path.display()
            ))),
            (FileFormat::Npy | FileFormat::Csv, Some(_)) => Err(Error::param(format!(
                "--dims applies to raw float32 files only; {} is a {} file, which has its own shape",
                path.display(),
                format.name()
            ))),
            _ => Ok(format),
        }
    }
}

/// A data file opened by [`open_named`]: the data, and for a CSV file the names of its columns
/// and whether a pandas index column was skipped.
pub struct Opened {
    /// The samples.
    pub data: Dataset<'static>,
    /// CSV: the columns read, in order.
    pub columns: Option<Vec<String>>,
    /// CSV: a leading unnamed index column that was skipped.
    pub index_skipped: Option<IndexColumn>,
    /// CSV: rows dropped by `--dropna`.
    pub rows_dropped: usize,
}

/// An error unless `path` is a regular file (or does not exist yet: opening says so).
fn check_regular(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let kind = if meta.is_dir() {
        "a directory"
    } else if meta.is_file() {
        return Ok(());
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            if t.is_fifo() {
                "a FIFO (named pipe)"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else if t.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        }
        #[cfg(not(unix))]
        {
            "not a regular file"
        }
    };
    Err(Error::bad_file(
        path,
        format!(
            "this is {kind}; give a data file (.npy and raw files are memory-mapped, CSV files read whole): save the data to a file first"
        ),
    ))
}

impl ReadOptions {
    /// The CSV options with the columns.
    fn csv_options(&self) -> CsvOptions {
        CsvOptions {
            columns: self.columns.clone(),
            ..self.csv.clone()
        }
    }
}

/// [`open_dataset`], with the CSV column names.
pub fn open_named(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Opened> {
    let path = path.as_ref();
    check_regular(path)?;
    if options.format_for(path)? == FileFormat::Csv {
        let source = CsvSource::open_with(path, &options.csv_options())?;
        return Ok(Opened {
            columns: source.columns().map(<[String]>::to_vec),
            index_skipped: source.index_skipped(),
            rows_dropped: source.rows_dropped(),
            data: Dataset::from_source(source),
        });
    }
    Ok(Opened {
        data: open_dataset(path, options)?,
        columns: None,
        index_skipped: None,
        rows_dropped: 0,
    })
}

/// Opens a data file: `.npy` and raw files are memory-mapped (rows are read in chunks, never
/// copied whole), CSV files are parsed into memory. Shapes, dtypes and CSV cells are checked
/// here; non-finite values in binary files are found by [`Dataset::validate`] (which every
/// fit runs).
pub fn open_dataset(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Dataset<'static>> {
    let path = path.as_ref();
    check_regular(path)?;
    Ok(match options.format_for(path)? {
        FileFormat::Npy => Dataset::from_source(NpySource::open(path)?),
        FileFormat::Csv => {
            Dataset::from_source(CsvSource::open_with(path, &options.csv_options())?)
        }
        FileFormat::RawF32 => {
            let d = options.dims.unwrap_or(0);
            // The library names no flag; say which one sets the row length.
            let source = RawF32Source::open(path, d).map_err(|e| match e {
                Error::BadFile { path, message } => Error::BadFile {
                    message: message.replace(
                        &format!("rows of {d} values; check the number of values per row"),
                        &format!("rows of --dims {d}; check --dims"),
                    ),
                    path,
                },
                other => other,
            })?;
            Dataset::from_source(source)
        }
    })
}
