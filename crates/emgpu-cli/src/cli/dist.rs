//! `emgpu fit` and `emgpu select` across processes: what they ask of a distributed run, with or
//! without the `mpi` feature. Without it (or outside `mpirun`, or with one process) every
//! function here is the identity and the commands run as always.
//!
//! Under `mpirun -np P` (P ≥ 2, feature `mpi`): every rank opens its own `--input`
//! (memory-mapped). If every rank's file holds the same rows (same shape and the same
//! fingerprint of its first, middle and last rows: one shared file, or a copy per node), rank r
//! takes rows `[⌊r·N/P⌋, ⌊(r+1)·N/P⌋)`; otherwise (MPMD launches with a shard per rank) each
//! rank's file is its block of rows, in rank order, N the sum. With `--backend gpu|auto` each
//! rank takes hardware adapter (its rank on its node) mod (their number), unless
//! `WGPU_ADAPTER_NAME` names one (gpu_env.rs). Every step that can fail on one
//! rank only (the checks of the command line, opening the input, reading `--init`, the checks
//! of the rows) is agreed on before the next collective call, and the lowest failed rank's
//! message is the one `error:` line, printed by rank 0. Rank 0 alone prints and writes.

use emgpu::{
    CovarianceType, Criterion, Dataset, FittedGmm, FittedKMeans, GaussianMixture, KMeans, Progress,
    Selection, SelectionRow,
};

use super::CliError;
use emgpu::models::kmeans::KMeansProgress;

#[cfg(feature = "mpi")]
mod imp {
    use std::cell::RefCell;
    use std::path::Path;
    use std::process::ExitCode;

    use emgpu::data::DataSource;
    use emgpu::device::gpu::GpuContext;
    use emgpu::em::reduce::{Reducer, split_rows};
    use emgpu::{Backend, BackendReport, Dataset, Error};

    use super::super::mpi::Mpi;
    use super::CliError;

    thread_local! {
        static MPI: RefCell<Option<Mpi>> = const { RefCell::new(None) };
    }

    pub fn refuse_other_commands() -> Result<(), CliError> {
        match super::super::mpi::launched_size() {
            Some(p) if p > 1 => Err(CliError::usage(format!(
                "only `emgpu fit` and `emgpu select` run across processes (mpirun -np {p}); run this command as one process"
            ))),
            _ => Ok(()),
        }
    }

    pub fn start() -> Result<(), CliError> {
        let started = Mpi::start()?;
        MPI.with(|m| *m.borrow_mut() = started);
        same_options_everywhere()
    }

    /// The command line without the value of `--input` (the one option ranks may differ in);
    /// arguments that are not UTF-8 compared as their lossy text (clap refused them already).
    fn options_but_input() -> Vec<String> {
        let mut out = Vec::new();
        let mut args = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned());
        while let Some(a) = args.next() {
            if a == "--input" || a == "-i" {
                args.next();
            } else if !(a.starts_with("--input=") || (a.starts_with("-i") && a.len() > 2)) {
                out.push(a);
            }
        }
        out
    }

    /// An error unless every rank was started with the same options (but `--input`): ranks
    /// with another `--n-init`, `--max-iter`, `-k`, ... would run other sequences of
    /// collective calls and wait for each other forever.
    fn same_options_everywhere() -> Result<(), CliError> {
        with(|m| {
            let Some(m) = m else { return Ok(()) };
            let mut h: u32 = 0x811c_9dc5;
            for b in options_but_input().join("\0").bytes() {
                h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
            let all = m.reducer().gather(&[f64::from(h)])?;
            let differs = all.iter().position(|&x| x != all[0]);
            agree(match differs {
                None => Ok(()),
                Some(q) => Err(CliError::usage(format!(
                    "rank {q} was started with other options than rank 0; give every rank the same options (only --input may differ between ranks)"
                ))),
            })
        })
    }

    pub fn agree_outcome(result: Result<ExitCode, CliError>) -> Result<ExitCode, CliError> {
        with(|m| {
            let Some(m) = m else { return result };
            let local = result.as_ref().err().map(|e| (e.message.clone(), e.code));
            match m.agree_outcome(local) {
                None => result,
                Some((message, code)) => Err(CliError { message, code }),
            }
        })
    }

    pub fn finish() {
        MPI.with(|m| drop(m.borrow_mut().take()));
    }

    pub fn with<T>(f: impl FnOnce(Option<&Mpi>) -> T) -> T {
        MPI.with(|m| f(m.borrow().as_ref()))
    }

    pub fn is_root() -> bool {
        with(|m| match m {
            Some(m) => m.reducer().rank() == 0,
            // Not started (another command under mpirun): the launcher's rank.
            None => ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
                .iter()
                .find_map(|v| std::env::var(v).ok()?.trim().parse::<usize>().ok())
                .is_none_or(|r| r == 0),
        })
    }

    pub fn is_distributed() -> bool {
        with(|m| m.is_some())
    }

    pub fn local_rank() -> Option<usize> {
        with(|m| m.map(|m| m.local_rank().0))
    }

    pub fn gpu_binding(report: &BackendReport) -> Option<String> {
        let (local, on_node) = with(|m| m.map(Mpi::local_rank))?;
        if report.backend != Backend::Gpu {
            return None;
        }
        let size = with(|m| m.map_or(1, |m| m.reducer().size()));
        let ranks = format!("mpirun: {size} ranks ({on_node} on rank 0's node)");
        Some(match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(name) => {
                format!("{ranks}; every rank on the adapter WGPU_ADAPTER_NAME={name:?} names")
            }
            Err(_) => match GpuContext::shared().ok().and_then(|c| c.hardware_slot()) {
                Some((j, n)) => format!(
                    "{ranks}; each rank on hardware adapter (its rank on the node) mod {n}: rank {local} on adapter {j} of {n}"
                ),
                None => format!(
                    "{ranks}; no hardware GPU on rank 0's node, so its ranks share this adapter"
                ),
            },
        })
    }

    pub fn agree<T>(local: Result<T, CliError>) -> Result<T, CliError> {
        with(|m| match m {
            None => local,
            Some(m) => m.reducer().agree_cli(local),
        })
    }

    /// Rows `start..start + rows` of a dataset it owns.
    struct Shard {
        inner: Dataset<'static>,
        start: usize,
        rows: usize,
    }

    impl DataSource for Shard {
        fn n_samples(&self) -> usize {
            self.rows
        }
        fn n_features(&self) -> usize {
            self.inner.n_features()
        }
        fn read_f64(&self, start: usize, out: &mut [f64]) -> emgpu::Result<()> {
            emgpu::data::check_range(self.rows, self.n_features(), start, out.len())?;
            self.inner.read_f64(self.start + start, out)
        }
        fn read_f32(&self, start: usize, out: &mut [f32]) -> emgpu::Result<()> {
            emgpu::data::check_range(self.rows, self.n_features(), start, out.len())?;
            self.inner.read_f32(self.start + start, out)
        }
    }

    /// FNV-1a (32 bits, exact in an f64) of the first, middle and last rows.
    fn fingerprint(data: &Dataset) -> emgpu::Result<f64> {
        let (n, d) = (data.n_samples(), data.n_features());
        let mut h: u32 = 0x811c_9dc5;
        let mut row = vec![0.0; d];
        if n > 0 {
            for i in [0, n / 2, n - 1] {
                data.read_f64(i, &mut row)?;
                for b in row.iter().flat_map(|v| v.to_bits().to_le_bytes()) {
                    h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
                }
            }
        }
        Ok(f64::from(h))
    }

    pub fn shard(data: Dataset<'static>, path: &Path) -> Result<Dataset<'static>, CliError> {
        with(|m| {
            let Some(m) = m else { return Ok(data) };
            let r = m.reducer();
            let fp = agree(fingerprint(&data).map_err(|e| super::super::about_file(e, path)))?;
            let (n, d) = (data.n_samples(), data.n_features());
            let all = r.gather(&[n as f64, d as f64, fp])?;
            let ranks: Vec<&[f64]> = all.chunks_exact(3).collect();
            // Every rank finds the same errors from the same numbers; agreed on all the same,
            // so that the run ends as one agreed failure.
            if let Some(q) = ranks.iter().position(|x| x[1] != d as f64) {
                return agree(Err(CliError::error(format!(
                    "the inputs of the processes differ in their number of columns: rank 0 has {}, rank {q} has {}; every rank's --input must have the same columns",
                    ranks[0][1], ranks[q][1]
                ))));
            }
            let shared = ranks.iter().all(|x| x[0] == n as f64 && x[2] == fp);
            let (p, rank) = (r.size(), r.rank());
            let (start, rows, offset, total) = if shared {
                let range = split_rows(n, rank, p);
                (range.start, range.len(), range.start, n)
            } else {
                let before: f64 = ranks[..rank].iter().map(|x| x[0]).sum();
                let total: f64 = ranks.iter().map(|x| x[0]).sum();
                (0, n, before as usize, total as usize)
            };
            let sizes: Vec<usize> = (0..p)
                .map(|q| {
                    if shared {
                        split_rows(n, q, p).len()
                    } else {
                        ranks[q][0] as usize
                    }
                })
                .collect();
            if let Some(q) = sizes.iter().position(|&s| s == 0) {
                return agree(Err(CliError::error(format!(
                    "rank {q} of {p} has no rows ({total} rows in all): run fewer processes than rows"
                ))));
            }
            let shard = Dataset::from_source(Shard {
                inner: data,
                start,
                rows,
            });
            agree(
                shard
                    .with_global_rows(offset, total)
                    .map_err(CliError::from),
            )
        })
    }

    pub fn reduced<T>(
        path: &Path,
        f: impl FnOnce(&dyn Reducer) -> emgpu::Result<T>,
    ) -> Option<Result<T, CliError>> {
        with(|m| {
            let m = m?;
            let r = m.reducer();
            r.set_context(path);
            let start = std::time::Instant::now();
            let result = f(r);
            // `EMGPU_MPI_TIMING=1`: rank 0 says how long the sums took (scripts/bench_mpi.sh).
            if r.rank() == 0 && std::env::var_os("EMGPU_MPI_TIMING").is_some() {
                let (calls, seconds) = r.sum_time();
                eprintln!(
                    "mpi: {calls} sums in {seconds:.4} s of {:.4} s ({} ranks)",
                    start.elapsed().as_secs_f64(),
                    r.size()
                );
            }
            let result = result.map_err(|e| match e {
                Error::Remote(message) => CliError {
                    message,
                    code: r.failure_code(),
                },
                e => super::super::about_file(e, path),
            });
            Some(result)
        })
    }
}

#[cfg(not(feature = "mpi"))]
mod imp {
    use std::path::Path;
    use std::process::ExitCode;

    use emgpu::Dataset;
    use emgpu::em::reduce::Reducer;

    use super::CliError;

    pub fn start() -> Result<(), CliError> {
        Ok(())
    }
    pub fn refuse_other_commands() -> Result<(), CliError> {
        Ok(())
    }
    pub fn finish() {}
    pub fn is_root() -> bool {
        true
    }
    pub fn is_distributed() -> bool {
        false
    }
    pub fn local_rank() -> Option<usize> {
        None
    }
    pub fn gpu_binding(_report: &emgpu::BackendReport) -> Option<String> {
        None
    }
    pub fn agree<T>(local: Result<T, CliError>) -> Result<T, CliError> {
        local
    }
    pub fn agree_outcome(result: Result<ExitCode, CliError>) -> Result<ExitCode, CliError> {
        result
    }
    pub fn shard(
        data: Dataset<'static>,
        _path: &std::path::Path,
    ) -> Result<Dataset<'static>, CliError> {
        Ok(data)
    }
    pub fn reduced<T>(
        _path: &Path,
        _f: impl FnOnce(&dyn Reducer) -> emgpu::Result<T>,
    ) -> Option<Result<T, CliError>> {
        None
    }
}

pub use imp::{
    agree, agree_outcome, finish, gpu_binding, is_distributed, is_root, local_rank,
    refuse_other_commands, shard, start,
};

/// The distributed Gaussian-mixture fit when this run is distributed (`None`: run as always).
pub fn fit_gmm<'a>(
    gmm: &GaussianMixture,
    data: &'a Dataset<'a>,
    path: &std::path::Path,
    progress: &mut dyn FnMut(&Progress),
) -> Option<Result<FittedGmm, CliError>> {
    imp::reduced(path, |r| gmm.fit_distributed(data, r, progress))
}

/// The distributed k-means fit when this run is distributed (`None`: run as always).
pub fn fit_kmeans(
    km: &KMeans,
    data: &Dataset,
    path: &std::path::Path,
    progress: &mut dyn FnMut(&KMeansProgress),
) -> Option<Result<FittedKMeans, CliError>> {
    imp::reduced(path, |r| km.fit_distributed(data, r, progress))
}

/// The distributed model selection when this run is distributed (`None`: run as always).
pub fn select_gmm<'a>(
    data: &'a Dataset<'a>,
    ks: Vec<usize>,
    covariance_types: &[CovarianceType],
    criterion: Criterion,
    base: &GaussianMixture,
    path: &std::path::Path,
    on_row: &mut dyn FnMut(&SelectionRow),
) -> Option<Result<Selection, CliError>> {
    imp::reduced(path, |r| {
        emgpu::select_gmm_distributed(data, ks, covariance_types, criterion, base, r, on_row)
    })
}
