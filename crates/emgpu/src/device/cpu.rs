//! The CPU side of the engines: a parallel map over chunks of rows whose results come back in
//! chunk order, so that sums merged in that order are the same bit for bit whatever the number of
//! threads.

use rayon::prelude::*;

use crate::data::Dataset;
use crate::error::Result;

/// Which E-step the CPU engine runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CpuPath {
    /// Blocked matrix products over chunks of rows (quadratic features; fast).
    #[default]
    Blocked,
    /// One point and one component at a time (the reference of the tests).
    Reference,
}

impl std::fmt::Display for CpuPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuPath::Blocked => "blocked",
            CpuPath::Reference => "reference",
        })
    }
}

/// Runs `f(start, rows_as_f64)` over chunks of `chunk_rows` rows in parallel and returns the
/// results in chunk order; the first failed read (in chunk order) is the error.
pub fn map_chunks<T: Send>(
    data: &Dataset,
    chunk_rows: usize,
    f: impl Fn(usize, &[f64]) -> T + Sync + Send,
) -> Result<Vec<T>> {
    let (n, d) = (data.n_samples(), data.n_features());
    let chunk_rows = chunk_rows.max(1);
    (0..n.div_ceil(chunk_rows))
        .into_par_iter()
        .map_init(Vec::new, |buf, c| {
            let start = c * chunk_rows;
            let rows = chunk_rows.min(n - start);
            buf.resize(rows * d, 0.0);
            data.read_f64(start, buf)?;
            Ok(f(start, buf))
        })
        .collect()
}
