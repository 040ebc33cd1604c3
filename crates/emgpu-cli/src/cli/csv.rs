//! CSV (and TSV) files: a header row naming the columns (or `--no-header`), every column numeric,
//! or the columns chosen with `--columns` / `--drop` (by name or 0-based position).
//!
//! Text has to be parsed anyway, so a CSV file is read once into memory as f64 rows; every cell is
//! checked while it is parsed, and an error names the line and the column. Missing cells (empty,
//! `NA`, `NaN`, `null`, ... — pandas' default `na_values`) are an error that names `--dropna`,
//! which drops the incomplete rows instead. A leading unnamed column that holds a row index
//! (pandas' `to_csv`: 0, 1, ..., N−1; R's `write.csv`: 1, ..., N or row names) is not a feature:
//! it is skipped, with a note.

use std::path::Path;

use ::csv::{ReaderBuilder, StringRecord, Trim};

use emgpu::data::{DataSource, check_range};
use emgpu::{Error, Result};

/// The cells read as missing: pandas' default `na_values` (after trimming spaces).
pub const NA_VALUES: [&str; 20] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "NAN",
];

/// Whether a (trimmed) cell marks a missing value.
pub fn is_na(cell: &str) -> bool {
    NA_VALUES.contains(&cell)
}

/// How to read a CSV file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvOptions {
    /// The columns to use, in this order, by header name or 0-based position. `None`: all.
    pub columns: Option<Vec<String>>,
    /// Columns to leave out, by name or position (with `columns` `None`).
    pub drop: Option<Vec<String>>,
    /// The field separator; `None`: `,` (tab for `.tsv` and `.tab` files).
    pub delimiter: Option<u8>,
    /// The file has no header row: columns are known by position only.
    pub no_header: bool,
    /// Drop rows with a missing cell in a used column (counted) instead of refusing them.
    pub dropna: bool,
    /// Read missing cells as NaN (`--missing em`) instead of refusing them.
    pub missing: bool,
}

impl CsvOptions {
    /// The separator for `path`: the one given, else tab for `.tsv`/`.tab`, else `,`.
    pub fn delimiter_for(&self, path: &Path) -> u8 {
        self.delimiter.unwrap_or_else(|| {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            match ext.as_deref() {
                Some("tsv" | "tab") => b'\t',
                _ => b',',
            }
        })
    }
}

/// What was skipped in front of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexColumn {
    /// pandas' index: an unnamed first column holding 0, 1, ..., N−1.
    Pandas,
    /// R's row names: an unnamed first column holding 1, ..., N or text.
    RowNames,
}

/// Rows parsed from a CSV file, held in memory (row-major f64).
#[derive(Debug, Clone)]
pub struct CsvSource {
    data: Vec<f64>,
    n: usize,
    d: usize,
    columns: Vec<String>,
    index_skipped: Option<IndexColumn>,
    rows_dropped: usize,
    has_header: bool,
}

impl CsvSource {
    /// Reads `path`; `columns` names the columns to use (in that order), `None` takes all.
    #[cfg(test)]
    pub fn open(path: &Path, columns: Option<&[String]>) -> Result<Self> {
        Self::open_with(
            path,
            &CsvOptions {
                columns: columns.map(<[String]>::to_vec),
                ..Default::default()
            },
        )
    }

    fn reader(path: &Path, options: &CsvOptions) -> Result<::csv::Reader<std::fs::File>> {
        ReaderBuilder::new()
            .has_headers(!options.no_header)
            .delimiter(options.delimiter_for(path))
            .trim(Trim::All)
            .from_path(path)
            .map_err(|e| csv_error(path, e))
    }

    /// The header's names, or `0, 1, ...` with `--no-header` (from the first row's width).
    fn names(path: &Path, options: &CsvOptions) -> Result<Vec<String>> {
        let mut reader = Self::reader(path, options)?;
        if options.no_header {
            let mut record = StringRecord::new();
            let width = match reader.read_record(&mut record) {
                Ok(true) => record.len(),
                Ok(false) => 0,
                Err(e) => return Err(csv_error(path, e)),
            };
            return Ok((0..width).map(|i| i.to_string()).collect());
        }
        let header = reader.headers().map_err(|e| csv_error(path, e))?;
        Ok(header.iter().map(str::to_string).collect())
    }

    /// Reads `path` with `options`.
    pub fn open_with(path: &Path, options: &CsvOptions) -> Result<Self> {
        let header = Self::names(path, options)?;
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(Error::bad_file(
                path,
                "the file is empty; expected a CSV file with a header row naming the columns (or --no-header)",
            ));
        }
        if !options.no_header && header.iter().all(|h| h.parse::<f64>().is_ok()) {
            return Err(Error::bad_file(
                path,
                format!(
                    "the first line ({}) looks like data, not a header; add a header row naming the columns, or read it with --no-header",
                    header.join(",")
                ),
            ));
        }
        let explicit = options.columns.is_some() || options.drop.is_some();
        let index = if options.columns.is_some()
            || options.no_header
            || !header[0].is_empty()
            || header.len() < 2
        {
            None
        } else {
            index_column(path, options)?
        };
        let skip_first = usize::from(index.is_some());
        let selected: Vec<usize> = match (&options.columns, &options.drop) {
            (Some(_), Some(_)) => {
                return Err(Error::param(
                    "--columns and --drop both choose columns; give one of them",
                ));
            }
            (Some(spec), None) => {
                if spec.is_empty() {
                    return Err(Error::param("--columns names no column"));
                }
                spec.iter()
                    .map(|c| resolve(path, &header, c, options.no_header))
                    .collect::<Result<_>>()?
            }
            (None, Some(spec)) => {
                let dropped: Vec<usize> = spec
                    .iter()
                    .map(|c| resolve(path, &header, c, options.no_header))
                    .collect::<Result<_>>()?;
                let kept: Vec<usize> = (skip_first..header.len())
                    .filter(|c| !dropped.contains(c))
                    .collect();
                if kept.is_empty() {
                    return Err(Error::param("--drop leaves no column"));
                }
                kept
            }
            (None, None) => (skip_first..header.len()).collect(),
        };
        let label = |c: usize| {
            if options.no_header {
                format!("column {c}")
            } else {
                format!("column \"{}\"", header[c])
            }
        };
        let names: Vec<String> = selected.iter().map(|&c| header[c].clone()).collect();
        let d = selected.len();
        let mut reader = Self::reader(path, options)?;
        let mut data = Vec::new();
        let mut record = StringRecord::new();
        let (mut n, mut row, mut dropped) = (0usize, 0usize, 0usize);
        let mut cells = vec![0.0; d];
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_error(path, e)),
            }
            let line = record.position().map_or(0, |p| p.line());
            let mut incomplete = false;
            for (i, &c) in selected.iter().enumerate() {
                let cell = &record[c];
                let at = format!("line {line} (data row {row}, 0-based), {}", label(c));
                if is_na(cell) && options.missing {
                    cells[i] = f64::NAN;
                    continue;
                }
                if is_na(cell) {
                    if options.dropna {
                        incomplete = true;
                        break;
                    }
                    let what = if cell.is_empty() {
                        "is empty".to_string()
                    } else {
                        format!("is missing (\"{cell}\")")
                    };
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "{at} {what}; drop the incomplete rows with --dropna, leave the column out with --columns/--drop, or (Gaussian mixtures) fit with the missing values with --missing em"
                        ),
                    ));
                }
                let v: f64 = match cell.parse() {
                    Ok(v) => v,
                    Err(_) if explicit => {
                        return Err(Error::bad_file(
                            path,
                            format!(
                                "{at}: \"{cell}\" is not a number; every used column must be numeric (choose columns with --columns or --drop)"
                            ),
                        ));
                    }
                    Err(_) => {
                        let numeric = numeric_columns(path, options, skip_first, header.len())?;
                        let name = |c: usize| {
                            if options.no_header {
                                c.to_string()
                            } else {
                                header[c].clone()
                            }
                        };
                        let pick: Vec<String> = numeric.iter().map(|&c| name(c)).collect();
                        let advice = if pick.is_empty() {
                            "no column is numeric".to_string()
                        } else {
                            format!(
                                "the numeric columns are {}: choose them with --columns {}, or leave this one out with --drop {}",
                                pick.join(", "),
                                pick.join(","),
                                name(c)
                            )
                        };
                        return Err(Error::bad_file(
                            path,
                            format!(
                                "{at}: \"{cell}\" is not a number, so the column is not numeric; {advice}"
                            ),
                        ));
                    }
                };
                if !v.is_finite() {
                    return Err(Error::bad_file(
                        path,
                        format!("{at}: {cell} is not a finite number; remove or impute it"),
                    ));
                }
                cells[i] = v;
            }
            row += 1;
            if incomplete {
                dropped += 1;
                continue;
            }
            data.extend_from_slice(&cells);
            n += 1;
        }
        if n == 0 {
            let why = if dropped > 0 {
                format!(
                    "every one of its {dropped} data rows has a missing cell (--dropna dropped them all)"
                )
            } else {
                "the file has a header but no data rows".to_string()
            };
            return Err(Error::bad_file(path, why));
        }
        Ok(Self {
            data,
            n,
            d,
            columns: names,
            index_skipped: index,
            rows_dropped: dropped,
            has_header: !options.no_header,
        })
    }

    /// Which index column was skipped, if any.
    pub fn index_skipped(&self) -> Option<IndexColumn> {
        self.index_skipped
    }

    /// Rows dropped by `--dropna`.
    pub fn rows_dropped(&self) -> usize {
        self.rows_dropped
    }

    /// The column names of `path`'s header row under `options` (positions with `--no-header`).
    pub fn header_with(path: &Path, options: &CsvOptions) -> Result<Vec<String>> {
        Self::names(path, options)
    }

    /// The names of the columns read, in order (`None` without a header row: positions are not
    /// names a model can check).
    pub fn columns(&self) -> Option<&[String]> {
        self.has_header.then_some(&self.columns[..])
    }
}

/// A column given as a header name or a 0-based position (a name wins when both match).
fn resolve(path: &Path, header: &[String], spec: &str, no_header: bool) -> Result<usize> {
    let spec = spec.trim();
    if !no_header && let Some(i) = header.iter().position(|h| h == spec) {
        return Ok(i);
    }
    match spec.parse::<usize>() {
        Ok(i) if i < header.len() => Ok(i),
        Ok(i) => Err(Error::bad_file(
            path,
            format!(
                "column position {i} is out of range: the file has {} columns (0 to {})",
                header.len(),
                header.len() - 1
            ),
        )),
        Err(_) if no_header => Err(Error::bad_file(
            path,
            format!("\"{spec}\": without a header row, columns are chosen by 0-based position"),
        )),
        Err(_) => Err(Error::bad_file(
            path,
            format!(
                "no column named \"{spec}\"; the header has {} (or give 0-based positions)",
                header
                    .iter()
                    .map(|h| format!("\"{h}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// An unnamed first column that holds a row index: 0..N−1 (pandas), 1..N or text (R's row
/// names); `None` when it holds other numbers (then it is data).
fn index_column(path: &Path, options: &CsvOptions) -> Result<Option<IndexColumn>> {
    let mut reader = CsvSource::reader(path, options)?;
    let mut record = StringRecord::new();
    let (mut zero_based, mut one_based, mut text) = (true, true, false);
    let mut i = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, e)),
        }
        let cell = record.get(0).unwrap_or("");
        match cell.parse::<f64>() {
            Ok(v) => {
                zero_based &= v == i as f64;
                one_based &= v == (i + 1) as f64;
            }
            Err(_) if is_na(cell) => return Ok(None),
            Err(_) => text = true,
        }
        i += 1;
    }
    Ok(if i == 0 {
        None
    } else if text {
        Some(IndexColumn::RowNames)
    } else if zero_based {
        Some(IndexColumn::Pandas)
    } else if one_based {
        Some(IndexColumn::RowNames)
    } else {
        None
    })
}

/// The positions of the columns in `first..width` whose every cell is a number or missing.
fn numeric_columns(
    path: &Path,
    options: &CsvOptions,
    first: usize,
    width: usize,
) -> Result<Vec<usize>> {
    let mut numeric = vec![true; width];
    let mut reader = CsvSource::reader(path, options)?;
    let mut record = StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        for (c, ok) in numeric.iter_mut().enumerate() {
            let cell = record.get(c).unwrap_or("");
            *ok &= is_na(cell) || cell.parse::<f64>().is_ok();
        }
    }
    Ok((first..width).filter(|&c| numeric[c]).collect())
}

impl DataSource for CsvSource {
    fn n_samples(&self) -> usize {
        self.n
    }
    fn n_features(&self) -> usize {
        self.d
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> Result<()> {
        check_range(self.n, self.d, start, out.len())?;
        out.copy_from_slice(&self.data[start * self.d..start * self.d + out.len()]);
        Ok(())
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let len = out.len();
        check_range(self.n, self.d, start, len)?;
        for (o, v) in out
            .iter_mut()
            .zip(&self.data[start * self.d..start * self.d + len])
        {
            *o = *v as f32;
        }
        Ok(())
    }
}

/// A csv crate error as an error about `path`.
fn csv_error(path: &Path, e: ::csv::Error) -> Error {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        ::csv::ErrorKind::Io(io) => Error::io(path, io),
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => Error::bad_file(
            path,
            format!(
                "line {} has {len} fields but the header has {expected_len}; every row needs one value per column",
                line.unwrap_or(0)
            ),
        ),
        ::csv::ErrorKind::Utf8 { err, .. } => Error::bad_file(
            path,
            format!(
                "line {} is not valid UTF-8 text ({err}); is this really a CSV file?",
                line.unwrap_or(0)
            ),
        ),
        other => Error::bad_file(path, format!("cannot read the CSV: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_chosen_by_name_in_the_order_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "id, x ,y\nfoo, 1.5, -2\nbar,3,4e1\n").unwrap();
        let cols = vec!["y".to_string(), "x".to_string()];
        let src = CsvSource::open(&path, Some(&cols)).unwrap();
        assert_eq!((src.n_samples(), src.n_features()), (2, 2));
        assert_eq!(src.columns().unwrap(), ["y", "x"]);
        let mut out = vec![0.0; 4];
        src.read_f64(0, &mut out).unwrap();
        assert_eq!(out, vec![-2.0, 1.5, 40.0, 3.0]);
        let err = CsvSource::open(&path, None).unwrap_err().to_string();
        assert!(
            err.contains("line 2 (data row 0, 0-based), column \"id\""),
            "{err}"
        );
    }

    #[test]
    fn a_pandas_index_column_is_skipped_and_other_unnamed_columns_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, ",x,y\n0,1.5,2\n1,3,4\n").unwrap();
        let src = CsvSource::open(&path, None).unwrap();
        assert_eq!(src.index_skipped(), Some(IndexColumn::Pandas));
        assert_eq!(src.columns().unwrap(), ["x", "y"]);
        let mut out = vec![0.0; 4];
        src.read_f64(0, &mut out).unwrap();
        assert_eq!(out, vec![1.5, 2.0, 3.0, 4.0]);
        std::fs::write(&path, ",x,y\n0,1.5,2\n5,3,4\n").unwrap();
        let src = CsvSource::open(&path, None).unwrap();
        assert_eq!(src.index_skipped(), None);
        assert_eq!(src.n_features(), 3);
    }
}
