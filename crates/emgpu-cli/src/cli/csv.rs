//! CSV files with a header row: every column numeric, or the columns named with `--columns`.
//!
//! Text has to be parsed anyway, so a CSV file is read once into memory as f64 rows; every cell is
//! checked while it is parsed, and an error names the line and the column.

use std::path::Path;

use ::csv::{ReaderBuilder, StringRecord, Trim};

use emgpu::data::{DataSource, check_range};
use emgpu::{Error, Result};

/// Rows parsed from a CSV file, held in memory (row-major f64).
#[derive(Debug, Clone)]
pub struct CsvSource {
    data: Vec<f64>,
    n: usize,
    d: usize,
    columns: Vec<String>,
    index_skipped: bool,
}

impl CsvSource {
    /// Reads `path`; `columns` names the columns to use (in that order), `None` takes all.
    pub fn open(path: &Path, columns: Option<&[String]>) -> Result<Self> {
        let mut reader = ReaderBuilder::new()
            .has_headers(true)
            .trim(Trim::All)
            .from_path(path)
            .map_err(|e| csv_error(path, e))?;
        let header = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(Error::bad_file(
                path,
                "the file is empty; expected a CSV file with a header row naming the columns",
            ));
        }
        if header.iter().all(|h| h.parse::<f64>().is_ok()) {
            return Err(Error::bad_file(
                path,
                format!(
                    "the first line ({}) looks like data, not a header; add a header row naming the columns",
                    header.iter().collect::<Vec<_>>().join(",")
                ),
            ));
        }
        let selected: Vec<usize> = match columns {
            None => (0..header.len()).collect(),
            Some(names) => {
                if names.is_empty() {
                    return Err(Error::param("--columns names no column"));
                }
                names
                    .iter()
                    .map(|name| {
                        header.iter().position(|h| h == name).ok_or_else(|| {
                            Error::bad_file(
                                path,
                                format!(
                                    "no column named \"{name}\"; the header has {}",
                                    quoted(&header)
                                ),
                            )
                        })
                    })
                    .collect::<Result<_>>()?
            }
        };
        let names: Vec<String> = selected.iter().map(|&c| header[c].to_string()).collect();
        let d = selected.len();
        let mut data = Vec::new();
        let mut record = StringRecord::new();
        let mut n = 0usize;
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_error(path, e)),
            }
            let line = record.position().map_or(0, |p| p.line());
            for (&c, name) in selected.iter().zip(&names) {
                let cell = &record[c];
                let at = format!("line {line} (data row {n}, 0-based), column \"{name}\"");
                if cell.is_empty() {
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "{at} is empty; fill in or remove the row (or leave the column out with --columns)"
                        ),
                    ));
                }
                let v: f64 = cell.parse().map_err(|_| {
                    Error::bad_file(
                        path,
                        format!(
                            "{at}: \"{cell}\" is not a number; every used column must be numeric (choose columns with --columns)"
                        ),
                    )
                })?;
                if !v.is_finite() {
                    return Err(Error::bad_file(
                        path,
                        format!("{at}: {cell} is not a finite number; remove or impute it"),
                    ));
                }
                data.push(v);
            }
            n += 1;
        }
        if n == 0 {
            return Err(Error::bad_file(
                path,
                "the file has a header but no data rows",
            ));
        }
        let mut source = Self {
            data,
            n,
            d,
            columns: names,
            index_skipped: false,
        };
        if columns.is_none() {
            source.skip_index_column();
        }
        Ok(source)
    }

    /// Drops a leading column with an empty name that holds 0, 1, ..., N−1: the index pandas'
    /// `to_csv` writes, which is not a feature.
    fn skip_index_column(&mut self) {
        let (n, d) = (self.n, self.d);
        if d < 2 || !self.columns[0].is_empty() {
            return;
        }
        if !(0..n).all(|i| self.data[i * d] == i as f64) {
            return;
        }
        self.data = (0..n)
            .flat_map(|i| self.data[i * d + 1..(i + 1) * d].iter().copied())
            .collect();
        self.columns.remove(0);
        self.d = d - 1;
        self.index_skipped = true;
    }

    /// Whether a pandas index column (no name, 0..N−1) was skipped.
    pub fn index_skipped(&self) -> bool {
        self.index_skipped
    }

    /// The column names of `path`'s header row (as read, spaces trimmed).
    pub fn header(path: &Path) -> Result<Vec<String>> {
        let mut reader = ReaderBuilder::new()
            .has_headers(true)
            .trim(Trim::All)
            .from_path(path)
            .map_err(|e| csv_error(path, e))?;
        let header = reader.headers().map_err(|e| csv_error(path, e))?;
        Ok(header.iter().map(str::to_string).collect())
    }

    /// The names of the columns read, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
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

/// `"a", "b", "c"`.
fn quoted(header: &StringRecord) -> String {
    header
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ")
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
        assert_eq!(src.columns(), ["y", "x"]);
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
        assert!(src.index_skipped());
        assert_eq!(src.columns(), ["x", "y"]);
        let mut out = vec![0.0; 4];
        src.read_f64(0, &mut out).unwrap();
        assert_eq!(out, vec![1.5, 2.0, 3.0, 4.0]);
        std::fs::write(&path, ",x,y\n0,1.5,2\n5,3,4\n").unwrap();
        let src = CsvSource::open(&path, None).unwrap();
        assert!(!src.index_skipped());
        assert_eq!(src.n_features(), 3);
    }
}
