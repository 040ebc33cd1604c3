//! The command line: argument types (clap derive), the commands, and how errors become messages
//! and exit codes.
//!
//! Exit codes: 0 success; 1 an error (bad data or model file, numerical failure, I/O, device);
//! 2 a bad command line (clap's own errors, and option values out of range); 3 `validate` found
//! the backends differ by more than `--rtol`.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use emgpu::data::same_file;
use emgpu::{Backend, BackendReport, CovarianceType, Dataset, Error, FittedGmm, FittedKMeans};

mod bench;
mod bench_missing;
mod bench_run;
mod csv;
mod devices;
mod dist;
mod file;
mod fit;
mod gpu_env;
mod hmm;
mod impute;
mod init;
mod lda;
#[cfg(feature = "mpi")]
mod mpi;
mod options;
mod output;
mod plot;
mod predict;
mod progress;
mod sample;
mod score;
mod select;
mod show;
mod validate;

use csv::CsvSource;
use file::{FileFormat, ReadOptions, open_dataset, open_named};

pub use options::{FitArgs, ModelArg, TrainArgs};

/// Exit code of a run that failed with an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of a bad command line.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `validate` when the backends disagree beyond `--rtol`.
pub const EXIT_MISMATCH: u8 = 3;

/// GPU-accelerated Expectation–Maximization for Gaussian mixtures and k-means, with
/// scikit-learn's answers.
///
/// Data files: .npy (float32/float64, C or Fortran order, [N, D] or [N]; memory-mapped), CSV with a header
/// row, raw little-endian float32 with --dims D. Models: JSON ("emgpu-model"), parameters in
/// scikit-learn's shapes. Results go to stdout or files; progress and summaries go to stderr.
///
/// Exit codes: 0 success, 1 error, 2 bad command line, 3 validate found a difference above --rtol.
/// CPU threads: --threads N (or the RAYON_NUM_THREADS environment variable).
// These doc comments are clap's --help text, where brackets are literal ("[N]", "[default]").
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Parser)]
#[command(name = "emgpu", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// No progress bar, no summary on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// CPU threads of the CPU backend and of data preparation [default: the RAYON_NUM_THREADS
    /// environment variable if set, else one per logical CPU].
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit a Gaussian mixture (or k-means, --model kmeans) to data and write the model (JSON).
    Fit(fit::FitCmd),
    /// Mean log-likelihood per sample of data under a model, BIC and AIC (k-means: −inertia).
    Score(score::ScoreCmd),
    /// Most likely component (nearest center) of every sample as int64 .npy or CSV, or the
    /// responsibilities with --proba.
    Predict(predict::PredictCmd),
    /// Draw samples from a Gaussian mixture model (float64 .npy).
    Sample(sample::SampleCmd),
    /// Replace each missing entry (NaN, or an empty/NA CSV cell) by its conditional mean under a
    /// Gaussian mixture model (float64 .npy or CSV).
    Impute(impute::ImputeCmd),
    /// What a model file holds: kind, K, D, weights, means, variances, lower bound (or --json).
    Show(show::ShowCmd),
    /// Fit on the CPU and on another backend (the GPU) from the same start and compare the results.
    Validate(validate::ValidateCmd),
    /// Fit a Gaussian mixture for each number of components (and covariance type); keep the best
    /// by BIC or AIC.
    Select(select::SelectCmd),
    /// The GPU adapters wgpu sees, with their limits, and what `--backend auto` runs on.
    Devices(devices::DevicesCmd),
    /// Time EM iterations per backend on built-in synthetic data (or yours), GPU and CPU side by side.
    Bench(bench::BenchCmd),
    /// Draw the lower-bound traces of fitted Gaussian mixtures (batch and online) as one SVG.
    Plot(plot::PlotCmd),
}

/// Ends the run with `result`: prints its error as `error: <message>` and returns the exit
/// code. In a distributed run the ranks first agree on the outcome (the lowest failed rank's
/// error on every rank; rank 0 alone prints it, before MPI_Finalize, so that the line is out
/// before any rank exits and mpirun reports it), then finish MPI.
pub fn finish(result: Result<ExitCode, CliError>) -> ExitCode {
    let code = match dist::agree_outcome(result) {
        Ok(code) => code,
        Err(e) => {
            if dist::is_root() {
                print_error(&e.message);
            }
            ExitCode::from(e.code)
        }
    };
    dist::finish();
    code
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let ui = Ui::new(cli.quiet);
    if let Some(n) = cli.threads {
        at_least_one("--threads", n)?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::error(format!("--threads {n}: {e}")))?;
    }
    // Under `mpirun -np P` (P ≥ 2, feature `mpi`) `fit` and `select` run as one rank of a
    // distributed run (see dist.rs); MPI starts before the GPU context is configured.
    if matches!(cli.command, Command::Fit(_) | Command::Select(_)) {
        dist::start()?;
    } else {
        dist::refuse_other_commands()?;
    }
    // `devices` only lists adapters and `show` reads a file: a bad tuning variable is no reason
    // for them to fail. (Agreed on in a distributed run: a bad variable on one rank fails all.)
    if !matches!(
        cli.command,
        Command::Devices(_) | Command::Show(_) | Command::Plot(_)
    ) {
        dist::agree(gpu_env::configure())?;
    }
    match cli.command {
        Command::Fit(cmd) => fit::run(cmd, &ui),
        Command::Score(cmd) => score::run(cmd, &ui),
        Command::Predict(cmd) => predict::run(cmd, &ui),
        Command::Sample(cmd) => sample::run(cmd, &ui),
        Command::Impute(cmd) => impute::run(cmd, &ui),
        Command::Show(cmd) => show::run(cmd, &ui),
        Command::Validate(cmd) => validate::run(cmd, &ui),
        Command::Select(cmd) => select::run(cmd, &ui),
        Command::Devices(cmd) => devices::run(cmd, &ui),
        Command::Bench(cmd) => bench::run(cmd, &ui),
        Command::Plot(cmd) => plot::run(cmd, &ui),
    }
}

/// An error the binary prints as `error: <message>` before exiting with `code`.
#[derive(Debug)]
pub struct CliError {
    /// One line saying what is wrong and, where possible, what to do.
    pub message: String,
    /// The process exit code.
    pub code: u8,
}

impl CliError {
    /// A runtime error (exit code 1).
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_ERROR,
        }
    }

    /// A bad command line (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidParameter(m) => CliError::usage(m),
            // A wgpu variable that selects adapters can be why none was found: say so, not
            // "install a driver".
            Error::NoAdapter if wgpu_selection().is_some() => CliError::error(format!(
                "{e} (`--backend cpu`); note that {} is set, which limits the adapters wgpu may use: unset it, or see `emgpu devices`",
                wgpu_selection().unwrap_or_default()
            )),
            // The library names no flag; the command line adds the one that helps.
            Error::NoAdapter | Error::NoGpuSupport | Error::Gpu(_) => {
                CliError::error(format!("{e} (`--backend cpu`)"))
            }
            other => CliError::error(other.to_string()),
        }
    }
}

/// The wgpu environment variables that narrow the adapters (`WGPU_ADAPTER_NAME`,
/// `WGPU_BACKEND`), as `NAME="value"`, when set.
fn wgpu_selection() -> Option<String> {
    let set: Vec<String> = ["WGPU_ADAPTER_NAME", "WGPU_BACKEND"]
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| format!("{name}={v:?}")))
        .collect();
    (!set.is_empty()).then(|| set.join(" and "))
}

/// Library errors about the contents of a file, named after that file.
///
/// Errors that already name their file (I/O, bad file), that are about the command line, or that
/// are about the device, are passed through as they are.
pub fn about_file(e: Error, path: &Path) -> CliError {
    match e {
        Error::InvalidParameter(_)
        | Error::Io { .. }
        | Error::BadFile { .. }
        | Error::NoAdapter
        | Error::NoGpuSupport
        | Error::Gpu(_)
        | Error::DeviceLimits(_)
        | Error::Remote(_) => e.into(),
        Error::NonFinite { ref value, .. } if value == "NaN" => CliError::error(format!(
            "{}: {e}; or, for a Gaussian mixture, treat NaN as missing values with --missing em",
            path.display()
        )),
        other => CliError::error(format!("{}: {other}", path.display())),
    }
}

/// Where output for a person goes: stderr, unless `--quiet`.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    quiet: bool,
    terminal: bool,
}

impl Ui {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            terminal: io::stderr().is_terminal(),
        }
    }

    /// Whether to draw progress bars (stderr is a terminal and not `--quiet`).
    pub fn progress_bars(&self) -> bool {
        self.terminal && !self.quiet
    }

    /// A line for the person at the terminal (stderr), unless `--quiet`.
    pub fn note(&self, line: impl AsRef<str>) {
        if !self.quiet {
            // A stderr that cannot be written (`2>/dev/full`, a closed pipe) loses the note, not
            // the run.
            let _ = writeln!(io::stderr().lock(), "{}", line.as_ref());
        }
    }
}

/// Prints `error: <message>` on stderr; a stderr that cannot be written is ignored (the exit
/// code still tells).
pub fn print_error(message: &str) {
    // One write of the whole line: under mpirun, output forwarded in pieces could interleave
    // with the launcher's own messages.
    let line = format!("error: {message}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// Refuses a command line whose outputs would overwrite one of its inputs, or each other: each
/// pair is compared as files (device and inode), not as names. `inputs` and `outputs` are
/// (flag, path) pairs.
pub fn check_distinct_files(
    inputs: &[(&str, &Path)],
    outputs: &[(&str, &Path)],
) -> Result<(), CliError> {
    for (i, (out_flag, out)) in outputs.iter().enumerate() {
        for (in_flag, input) in inputs {
            if same_file(out, input) {
                return Err(CliError::usage(format!(
                    "{out_flag} {} is the same file as {in_flag} {}: writing it would destroy that input; choose another output name",
                    out.display(),
                    input.display()
                )));
            }
        }
        for (other_flag, other) in &outputs[..i] {
            if same_file(out, other) {
                return Err(CliError::usage(format!(
                    "{out_flag} {} is the same file as {other_flag} {}: one would overwrite the other; give them different names",
                    out.display(),
                    other.display()
                )));
            }
        }
    }
    Ok(())
}

/// Writes a line of results to stdout; a closed pipe (`| head`) ends quietly.
pub fn print_result(line: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::error(format!("cannot write to stdout: {e}"))),
    }
}

/// The data file options every command that reads data takes.
// These doc comments are clap's --help text, where brackets are literal ("[N]", "[default]").
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Data file: .npy (float32/float64, C or Fortran order, [N, D] or [N]), .csv with a header row, or raw
    /// little-endian float32 (with --dims).
    #[arg(long, short, value_name = "FILE")]
    pub input: PathBuf,

    /// Read the input as this format instead of going by its extension.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,

    /// CSV: the columns to use, in this order, by header name or 0-based position (spaces after
    /// commas are ignored) [default: all columns, which must all be numeric].
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    pub columns: Option<Vec<String>>,

    /// CSV: use every column but these (names or 0-based positions).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "A,B,...",
        conflicts_with = "columns"
    )]
    pub drop: Option<Vec<String>>,

    /// CSV: the field separator: one character, or `tab` [default: `,`; tab for .tsv/.tab files].
    #[arg(long, value_name = "C")]
    pub delimiter: Option<String>,

    /// CSV: the file has no header row (columns are chosen by 0-based position).
    #[arg(long)]
    pub no_header: bool,

    /// CSV: drop the rows with a missing cell (empty, NA, NaN, null, ...) in a used column, and
    /// say how many [default: such a row is an error].
    #[arg(long)]
    pub dropna: bool,

    /// Raw float32 input: values per row (implies --format raw for files not named .npy/.csv).
    #[arg(long, value_name = "D")]
    pub dims: Option<usize>,

    /// Gaussian mixtures: NaN entries (CSV: empty, NA, NaN, ... cells) are missing at random;
    /// `em` fits by EM with the missing values as latent variables, and score/predict use the
    /// marginal likelihood of each row's observed entries [default: NaN is an error].
    #[arg(long, value_enum, value_name = "em", conflicts_with = "dropna")]
    pub missing: Option<MissingArg>,

    /// Hidden Markov models only: the lengths of the sequences the rows form, in order (they
    /// must add up to the number of rows): a 1-D integer .npy, or a text file with one length
    /// per line [default: one sequence].
    #[arg(long, value_name = "L.npy|L.txt")]
    pub lengths: Option<std::path::PathBuf>,
}

impl InputArgs {
    /// The options of a plain `--input PATH` (format by extension).
    pub fn for_path(input: PathBuf) -> Self {
        Self {
            input,
            format: None,
            columns: None,
            drop: None,
            delimiter: None,
            no_header: false,
            dropna: false,
            dims: None,
            missing: None,
            lengths: None,
        }
    }

    /// `--lengths` is for hidden Markov models: a usage error with another model (`model` names
    /// it).
    pub fn reject_lengths(&self, model: &str) -> Result<(), CliError> {
        if self.lengths.is_some() {
            return Err(CliError::usage(format!(
                "--lengths cuts the rows into sequences for a hidden Markov model (--model hmm); {model} treats rows as independent samples: drop --lengths"
            )));
        }
        Ok(())
    }

    fn options(&self) -> Result<ReadOptions, CliError> {
        if self.dims == Some(0) {
            return Err(CliError::usage("--dims must be at least 1"));
        }
        let trimmed = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map(|v| v.iter().map(|c| c.trim().to_string()).collect::<Vec<_>>())
        };
        let delimiter = match self.delimiter.as_deref() {
            None => None,
            Some("tab" | "\\t" | "\t") => Some(b'\t'),
            Some(c) if c.len() == 1 && c.is_ascii() => Some(c.as_bytes()[0]),
            Some(other) => {
                return Err(CliError::usage(format!(
                    "--delimiter {other:?}: give one ASCII character (e.g. ';' or '|'), or tab"
                )));
            }
        };
        Ok(ReadOptions {
            format: self.format.map(FormatArg::into_format),
            columns: trimmed(&self.columns),
            csv: csv::CsvOptions {
                columns: None,
                drop: trimmed(&self.drop),
                delimiter,
                no_header: self.no_header,
                dropna: self.dropna,
                missing: self.missing.is_some(),
            },
            dims: self.dims,
        })
    }

    /// Opens the input file.
    pub fn open(&self) -> Result<Dataset<'static>, CliError> {
        let data = open_dataset(&self.input, &self.options()?)?;
        Ok(self.mark_missing(data))
    }

    /// The data marked with missing values under `--missing em`.
    fn mark_missing(&self, data: Dataset<'static>) -> Dataset<'static> {
        match self.missing {
            Some(MissingArg::Em) => data.with_missing_values(),
            None => data,
        }
    }

    /// Opens the input file and, for a CSV file, returns the names of the columns used.
    ///
    /// With `model_names` (the feature names stored in a model), a CSV file's columns are chosen
    /// by those names, whatever their order in the file; a file lacking one of them, or
    /// `--columns` naming others, is an error. A skipped pandas index column is noted on stderr.
    pub fn open_named(
        &self,
        ui: &Ui,
        model_names: Option<&[String]>,
    ) -> Result<(Dataset<'static>, Option<Vec<String>>), CliError> {
        let mut options = self.options()?;
        let is_csv = options.format_for(&self.input)? == FileFormat::Csv;
        // `--columns` with another number of columns than the model's: the dimension check
        // (in predict, score) says so.
        let other_count = match (&self.columns, model_names) {
            (Some(given), Some(names)) => given.len() != names.len(),
            _ => false,
        };
        if let (true, false, Some(names)) = (is_csv, other_count, model_names) {
            let list = |names: &[String]| {
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if let Some(given) = &self.columns
                && given.as_slice() != names
            {
                return Err(CliError::usage(format!(
                    "--columns {} differs from the columns the model was fitted on ({}, in that order); leave out --columns to select them by name",
                    given.join(","),
                    list(names)
                )));
            }
            let header = CsvSource::header_with(&self.input, &options.csv)?;
            let missing: Vec<String> = names
                .iter()
                .filter(|n| !header.contains(n))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(CliError::error(format!(
                    "{}: the model was fitted on the columns {}, but this file has no column {}; its header has {}",
                    self.input.display(),
                    list(names),
                    list(&missing),
                    list(&header)
                )));
            }
            options.columns = Some(names.to_vec());
        }
        let opened = open_named(&self.input, &options)?;
        match opened.index_skipped {
            Some(csv::IndexColumn::Pandas) => ui.note(format!(
                "note: {}: the first column has no name and holds 0, 1, ..., N−1 (a pandas index, `to_csv` without `index=False`); skipped",
                self.input.display()
            )),
            Some(csv::IndexColumn::RowNames) => ui.note(format!(
                "note: {}: the first column has no name and holds row names (R's `write.csv` without `row.names = FALSE`); skipped",
                self.input.display()
            )),
            None => {}
        }
        if opened.rows_dropped > 0 {
            ui.note(format!(
                "note: {}: --dropna dropped {} of {} rows (a missing cell in a used column)",
                self.input.display(),
                opened.rows_dropped,
                opened.rows_dropped + opened.data.n_samples()
            ));
        }
        Ok((self.mark_missing(opened.data), opened.columns))
    }
}

/// `--missing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MissingArg {
    /// EM with the missing values as latent variables (Gaussian mixtures).
    Em,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// NumPy .npy.
    Npy,
    /// CSV with a header row.
    Csv,
    /// Raw little-endian float32 (needs --dims).
    Raw,
}

impl FormatArg {
    fn into_format(self) -> FileFormat {
        match self {
            FormatArg::Npy => FileFormat::Npy,
            FormatArg::Csv => FileFormat::Csv,
            FormatArg::Raw => FileFormat::RawF32,
        }
    }
}

/// `--covariance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CovarianceArg {
    /// One general covariance matrix per component.
    Full,
    /// One general covariance matrix shared by all components.
    Tied,
    /// One diagonal covariance per component.
    Diag,
    /// One variance per component.
    Spherical,
}

impl From<CovarianceArg> for CovarianceType {
    fn from(c: CovarianceArg) -> Self {
        match c {
            CovarianceArg::Full => CovarianceType::Full,
            CovarianceArg::Tied => CovarianceType::Tied,
            CovarianceArg::Diag => CovarianceType::Diag,
            CovarianceArg::Spherical => CovarianceType::Spherical,
        }
    }
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A GPU when one is found, else the CPU (says which on stderr).
    Auto,
    /// The f64 CPU backend (all cores).
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12); an error if there is none.
    Gpu,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Gpu => Backend::Gpu,
        }
    }
}

/// `Err` unless `value ≥ 1`.
pub fn at_least_one(flag: &str, value: usize) -> Result<(), CliError> {
    if value == 0 {
        return Err(CliError::usage(format!(
            "{flag} must be at least 1 (got 0)"
        )));
    }
    Ok(())
}

/// A model file of either kind.
#[derive(Debug)]
pub enum AnyModel {
    /// `"model": "gmm"`.
    Gmm(FittedGmm),
    /// `"model": "kmeans"`.
    KMeans(FittedKMeans),
    /// `"model": "hmm"`.
    Hmm(emgpu::models::hmm::FittedHmm),
    /// `"model": "lda"`.
    Lda(emgpu::models::lda::FittedLda),
}

impl AnyModel {
    /// The model's name in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyModel::Gmm(_) => "a Gaussian mixture",
            AnyModel::KMeans(_) => "a k-means model",
            AnyModel::Hmm(_) => "a hidden Markov model",
            AnyModel::Lda(_) => "an LDA model",
        }
    }
}

/// Reads and checks a model file of any kind (by its `model` field).
pub fn load_any_model(path: &Path) -> Result<AnyModel, CliError> {
    let bytes = std::fs::read(path).map_err(|e| {
        CliError::from(Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::error(format!(
            "{}: not a model file: it is not text (a model is JSON written by `emgpu fit`)",
            path.display()
        ))
    })?;
    let kind = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_owned));
    // Anything but a k-means model is read as a Gaussian mixture, whose reader says what is wrong.
    if kind.as_deref() == Some("lda") {
        emgpu::models::lda::FittedLda::from_json(&text)
            .map(AnyModel::Lda)
            .map_err(|e| about_file(e, path))
    } else if kind.as_deref() == Some("hmm") {
        emgpu::models::hmm::FittedHmm::from_json(&text)
            .map(AnyModel::Hmm)
            .map_err(|e| about_file(e, path))
    } else if kind.as_deref() == Some("kmeans") {
        FittedKMeans::from_json(&text)
            .map(AnyModel::KMeans)
            .map_err(|e| about_file(e, path))
    } else {
        FittedGmm::from_json(&text)
            .map(AnyModel::Gmm)
            .map_err(|e| about_file(e, path))
    }
}

/// A reason from the library, which names its API (`Backend::Gpu`), in the command line's terms
/// (`--backend gpu`).
pub fn cli_reason(reason: &str) -> String {
    reason
        .replace("Backend::Gpu", "--backend gpu")
        .replace("Backend::Cpu", "--backend cpu")
}

/// One line about which backend and device ran, and why (for `--backend auto`).
/// The `backend:` line after a fit: with `--backend auto` (what ran, and why), and in a
/// distributed run on the GPU (how the ranks were bound to adapters; rank 0 prints it).
pub fn note_backend(arg: BackendArg, ui: &Ui, report: Option<&BackendReport>) {
    let Some(report) = report else { return };
    let binding = dist::gpu_binding(report);
    if arg == BackendArg::Auto || binding.is_some() {
        let mut line = describe_backend(report);
        if let Some(binding) = binding {
            line.push_str(&format!("; {binding}"));
        }
        ui.note(line);
    }
}

pub fn describe_backend(report: &BackendReport) -> String {
    let mut line = format!("backend: {} on {}", report.backend, report.device);
    if !report.reason.is_empty() {
        line.push_str(&format!(" ({})", cli_reason(&report.reason)));
    }
    line
}

/// A number for people: 4 significant digits, scientific when very large or small.
pub fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-3..1e6).contains(&v.abs()) {
        let digits = if v == 0.0 || !v.is_finite() {
            0
        } else {
            (3 - v.abs().log10().floor() as i32).max(0) as usize
        };
        format!("{v:.digits$}")
    } else {
        format!("{v:.3e}")
    }
}
