//! `emgpu select`: a Gaussian mixture for each number of components (and covariance type), the
//! best by BIC or AIC.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use emgpu::data::{check_output_path, write_text_atomic};
use emgpu::{
    Backend, CovarianceType, Criterion, Error, GaussianMixture, SelectionRow,
    select_gmm_with_progress,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::init::{GMM_METHODS, InitArg};
use super::{
    BackendArg, CliError, InputArgs, TrainArgs, Ui, about_file, at_least_one, check_distinct_files,
    num, print_result,
};

/// `emgpu select --input X --components 1..12 [--covariance full,diag|all] [--criterion bic|aic]`
#[derive(Debug, Args)]
#[command(after_help = "\
Fits a Gaussian mixture for every K of --components and every type of --covariance (each fit
with the given init, restarts, tol, ...) and prints one row per fit: K, covariance type, lower
bound, BIC, AIC, iterations, whether it converged, seconds. The best fit (lowest criterion; the
first of equals) is marked and written to --output. BIC and AIC are scikit-learn's, on the
training data: −2·log L + p·ln N and −2·log L + 2p (p: free parameters).

--components: a range a..b includes both ends (1..12 is 1, 2, …, 12); a list 2,4,8; one number;
or a mix, 1..4,8,16.

With --json, stdout is one JSON line: {\"criterion\", \"best\": {row}, \"best_index\", \"rows\": [{\"n_components\",
\"covariance_type\", \"lower_bound\", \"bic\", \"aic\", \"n_iter\", \"converged\", \"fit_seconds\"}, ...], ...}.

Examples:
  emgpu select --input data.npy --components 1..12 --output best.json
  emgpu select --input faithful.csv -k 1..6 --covariance all --criterion aic --json")]
#[command(
    mut_arg("init", |a| a.help(
        "Initialization of every fit: kmeans [default], k-means++, random or random_from_data"
    ).value_name("METHOD")),
    mut_arg("max_iter", |a| a.help("Maximum EM iterations per initialization [default: 100]")),
    mut_arg("tol", |a| a.help(
        "Convergence threshold on the change of the lower bound [default: 1e-3]"
    )),
    mut_arg("reg_covar", |a| a.help(
        "Added to the diagonal of every covariance, keeping it positive definite [default: 1e-6]"
    ))
)]
pub struct SelectCmd {
    #[command(flatten)]
    input: InputArgs,

    /// The numbers of components K to try: a..b (both ends included), a,b,c, one K, or a mix.
    #[arg(long, short = 'k', value_name = "KS")]
    components: String,

    /// The covariance types to try: a comma-separated list of full, tied, diag, spherical; or all.
    #[arg(long, default_value = "full", value_name = "TYPES")]
    covariance: String,

    /// What ranks the fits (lower is better): bic or aic.
    #[arg(long, default_value = "bic", value_name = "C")]
    criterion: String,

    #[command(flatten)]
    train: TrainArgs,

    /// Initializations per fit; each fit keeps its highest lower bound [default: 1].
    #[arg(long, value_name = "N")]
    n_init: Option<usize>,

    /// Where the E-steps run.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, value_name = "B")]
    backend: BackendArg,

    /// Write the best model here (JSON; written atomically).
    #[arg(long, short, value_name = "BEST.json")]
    output: Option<PathBuf>,

    /// Print the table as one line of JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The parsed `--components`: inclusive ranges, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components(Vec<(usize, usize)>);

impl Components {
    /// Parses `a..b` (both ends included; `a..=b` too), `a,b,c`, `k`, or a comma-separated mix.
    pub fn parse(s: &str) -> Result<Self, CliError> {
        let bad = |why: String| CliError::usage(format!("--components {s}: {why}"));
        let how = "write a range a..b (both ends included), a list a,b,c or one number";
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let item = item.trim();
            let number = |t: &str| {
                t.trim()
                    .parse::<usize>()
                    .map_err(|_| bad(format!("\"{}\" is not a whole number; {how}", t.trim())))
            };
            if item.is_empty() {
                return Err(bad(format!("an empty item; {how}")));
            }
            let (a, b) = match item.split_once("..") {
                Some((a, b)) => (number(a)?, number(b.strip_prefix('=').unwrap_or(b))?),
                None => {
                    let k = number(item)?;
                    (k, k)
                }
            };
            if a > b {
                return Err(bad(format!(
                    "the range {item} is empty (ranges count up, both ends included); write {b}..{a}"
                )));
            }
            if a == 0 {
                return Err(bad(
                    "K = 0 is not a number of components; start at 1".to_string()
                ));
            }
            ranges.push((a, b));
        }
        Ok(Self(ranges))
    }

    /// The largest K.
    pub fn max(&self) -> usize {
        self.0.iter().map(|r| r.1).max().unwrap_or(0)
    }

    /// Every K once, in the order given.
    pub fn values(&self) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        self.0
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|k| seen.insert(*k))
            .collect()
    }
}

/// Parses `--covariance`: a comma-separated list, or `all`.
fn parse_covariances(s: &str) -> Result<Vec<CovarianceType>, CliError> {
    if s.trim() == "all" {
        return Ok(vec![
            CovarianceType::Full,
            CovarianceType::Tied,
            CovarianceType::Diag,
            CovarianceType::Spherical,
        ]);
    }
    let mut types = Vec::new();
    for item in s.split(',') {
        let t: CovarianceType = item.trim().parse().map_err(|e: Error| {
            CliError::usage(format!("--covariance {s}: {} (or all)", bare(e)))
        })?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    Ok(types)
}

/// The message of a parameter error without its "invalid parameter: " prefix.
fn bare(e: Error) -> String {
    match e {
        Error::InvalidParameter(m) => m,
        other => other.to_string(),
    }
}

fn row_json(r: &SelectionRow) -> Value {
    json!({
        "n_components": r.n_components,
        "covariance_type": r.covariance_type.name(),
        "lower_bound": r.lower_bound,
        "bic": r.bic,
        "aic": r.aic,
        "n_iter": r.n_iter,
        "converged": r.converged,
        "fit_seconds": r.fit_seconds,
    })
}

/// What `select` checks before it reads anything: the parsed `--components`, `--covariance`,
/// `--criterion`, and the settings of every fit.
type Checked = (Components, Vec<CovarianceType>, Criterion, GaussianMixture);

/// The checks of the command line and of its files' names, before anything is read.
fn check_select(cmd: &SelectCmd) -> Result<Checked, CliError> {
    if cmd.input.missing.is_some() {
        return Err(CliError::usage(
            "select does not run with --missing em yet; fit each K with `emgpu fit --missing em` and compare their BIC with `emgpu show`",
        ));
    }
    let components = Components::parse(&cmd.components)?;
    let covariances = parse_covariances(&cmd.covariance)?;
    let criterion: Criterion = cmd
        .criterion
        .trim()
        .parse()
        .map_err(|e: Error| CliError::usage(format!("--criterion: {}", bare(e))))?;
    cmd.train.check()?;
    if let Some(n) = cmd.n_init {
        at_least_one("--n-init", n)?;
    }
    if let Some(InitArg::File(path)) = &cmd.train.init {
        return Err(CliError::usage(format!(
            "--init {}: select fits several numbers of components, so it needs an init method ({}), not a model file (a model has one K)",
            path.display(),
            GMM_METHODS.join(", ")
        )));
    }
    if let Some(path) = &cmd.output {
        check_output_path(path)?;
        check_distinct_files(&[("--input", &cmd.input.input)], &[("--output", path)])?;
    }
    let backend: Backend = cmd.backend.into();
    let base = cmd
        .train
        .gmm(1, CovarianceType::Full, cmd.n_init, backend)?;
    Ok((components, covariances, criterion, base))
}

/// Runs `emgpu select`. Under `mpirun -np P` (P ≥ 2, feature `mpi`) every rank runs the same
/// fits over its block of the rows, every check is agreed on by all ranks, and only rank 0
/// prints and writes (see dist.rs).
pub fn run(cmd: SelectCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    let quiet = Ui::new(true);
    let ui = if super::dist::is_root() { ui } else { &quiet };
    let (components, covariances, criterion, base) = super::dist::agree(check_select(&cmd))?;
    let (data, names) = super::dist::agree(cmd.input.open_named(ui, None))?;
    let data = super::dist::shard(data, &cmd.input.input)?;
    // All the rows of every rank (this process's rows when not distributed).
    let n = data.global_rows();
    super::dist::agree(if components.max() > n {
        Err(CliError::error(format!(
            "{}: --components goes up to {} but the data has only {n} samples; use K ≤ {n} (or more data)",
            cmd.input.input.display(),
            components.max()
        )))
    } else {
        Ok(())
    })?;
    let ks = components.values();
    let bar = SelectProgress::new(ui, ks.len() * covariances.len());
    let started = Instant::now();
    let path = &cmd.input.input;
    let mut on_row = |r: &SelectionRow| bar.row(r);
    let selection = match super::dist::select_gmm(
        &data,
        ks.clone(),
        &covariances,
        criterion,
        &base,
        path,
        &mut on_row,
    ) {
        Some(selection) => selection?,
        None => select_gmm_with_progress(&data, ks, &covariances, criterion, &base, &mut on_row)
            .map_err(|e| about_file(e, path))?,
    };
    let seconds = started.elapsed().as_secs_f64();
    bar.finish();
    if !super::dist::is_root() {
        return Ok(ExitCode::SUCCESS);
    }

    let report = selection.best_model().backend_report().cloned();
    super::note_backend(cmd.backend, ui, report.as_ref());
    if let Some(path) = &cmd.output {
        let best = selection.best_model().clone();
        // A CSV's column names, unless the header repeats one (then the model has none).
        let best = best.clone().with_feature_names(names).unwrap_or(best);
        write_text_atomic(path, &best.to_json())?;
    }
    let best = selection.best_row();
    ui.note(format!(
        "select: {} fits in {seconds:.3} s; best by {criterion}: K = {}, {}{}",
        selection.rows.len(),
        best.n_components,
        best.covariance_type,
        cmd.output
            .as_ref()
            .map_or(String::new(), |p| format!(" → {}", p.display()))
    ));
    if cmd.json {
        let line = json!({
            "criterion": criterion.to_string(),
            "best": row_json(best),
            "best_index": selection.best,
            "rows": selection.rows.iter().map(row_json).collect::<Vec<_>>(),
            "n_samples": n,
            "n_features": data.n_features(),
            "init": cmd.train.gmm_init().to_string(),
            "n_init": cmd.n_init.unwrap_or(1),
            "seed": cmd.train.seed,
            "backend": report.as_ref().map(|r| r.backend.to_string()),
            "device": report.as_ref().map(|r| r.device.clone()),
            "select_seconds": seconds,
            "output": cmd.output.as_ref().map(|p| p.display().to_string()),
        });
        print_result(&line.to_string())?;
    } else {
        print_result(&format!(
            "{:>4}  {:<10} {:>13} {:>13} {:>13} {:>7}  {:<9} {:>9}",
            "K", "covariance", "lower bound", "BIC", "AIC", "n_iter", "converged", "time (s)"
        ))?;
        for (i, r) in selection.rows.iter().enumerate() {
            let mark = if i == selection.best {
                format!("  <- best ({criterion})")
            } else {
                String::new()
            };
            print_result(&format!(
                "{:>4}  {:<10} {:>13.6} {:>13.3} {:>13.3} {:>7}  {:<9} {:>9.3}{mark}",
                r.n_components,
                r.covariance_type.name(),
                r.lower_bound,
                r.bic,
                r.aic,
                r.n_iter,
                if r.converged { "yes" } else { "no" },
                r.fit_seconds,
            ))?;
        }
        print_result(&format!(
            "best: K = {}, {} covariance ({criterion} {:.3})",
            best.n_components,
            best.covariance_type,
            best.criterion(criterion)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A bar over the fits of a selection (terminal only).
struct SelectProgress {
    bar: Option<ProgressBar>,
}

impl SelectProgress {
    fn new(ui: &Ui, fits: usize) -> Self {
        let bar = ui.progress_bars().then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(fits as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "select [{bar:24}] {pos:>3}/{len} fits  {msg}  {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message("fitting");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar }
    }

    fn row(&self, r: &SelectionRow) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!(
                "last: K = {} {}, bic {}",
                r.n_components,
                r.covariance_type,
                num(r.bic)
            ));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_ranges_lists_and_mixes() {
        let v = |s: &str| Components::parse(s).unwrap().values();
        assert_eq!(v("1..4"), [1, 2, 3, 4]);
        assert_eq!(v("1..=3"), [1, 2, 3]);
        assert_eq!(v("2,4,8"), [2, 4, 8]);
        assert_eq!(v("5"), [5]);
        assert_eq!(v("3..3"), [3]);
        assert_eq!(v(" 1..3, 8 ,2"), [1, 2, 3, 8]);
        assert_eq!(Components::parse("1..4,9").unwrap().max(), 9);
        // Huge ranges are not expanded before K ≤ N is checked.
        assert_eq!(
            Components::parse("1..1000000000000").unwrap().max(),
            1_000_000_000_000
        );
        for (s, needle) in [
            ("5..3", "the range 5..3 is empty"),
            ("0..3", "K = 0"),
            ("0", "K = 0"),
            ("1..", "\"\" is not a whole number"),
            ("x", "\"x\" is not a whole number"),
            ("1,,2", "an empty item"),
            ("-1..3", "\"-1\" is not a whole number"),
        ] {
            let e = Components::parse(s).unwrap_err();
            assert!(e.message.contains(needle), "{s}: {}", e.message);
            assert_eq!(e.code, super::super::EXIT_USAGE);
        }
    }

    #[test]
    fn covariance_lists() {
        assert_eq!(parse_covariances("all").unwrap().len(), 4);
        assert_eq!(
            parse_covariances("diag, full,diag").unwrap(),
            [CovarianceType::Diag, CovarianceType::Full]
        );
        let e = parse_covariances("full,dag").unwrap_err();
        assert!(
            e.message.contains("unknown covariance type \"dag\""),
            "{}",
            e.message
        );
    }
}
