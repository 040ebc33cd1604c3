//! `emgpu fit`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use emgpu::data::{check_output_path, write_text_atomic};
use emgpu::{Backend, CovarianceType, FittedGmm, GaussianMixture};
use serde_json::json;

use super::progress::FitProgress;
use super::{
    BackendArg, CliError, FitArgs, InputArgs, Ui, about_file, at_least_one, describe_backend, num,
    print_result,
};

/// `emgpu fit --input X --components K ... --output MODEL.json`
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  emgpu fit --input data.npy --components 8 --output model.json
  emgpu fit --input faithful.csv --columns eruptions,waiting -k 2 --covariance diag --output m.json --json
  emgpu fit --input more.npy -k 8 --init model.json --output refit.json     (warm start)")]
pub struct FitCmd {
    #[command(flatten)]
    input: InputArgs,

    #[command(flatten)]
    fit: FitArgs,

    /// Number of initializations; the fit with the highest lower bound is kept.
    #[arg(long, default_value_t = 1, value_name = "N")]
    n_init: usize,

    /// Where the E-steps run.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, value_name = "B")]
    backend: BackendArg,

    /// The model file to write (JSON; written atomically).
    #[arg(long, short, value_name = "MODEL.json")]
    output: PathBuf,

    /// Print one line of JSON about the fit on stdout (n_iter, converged, lower_bound, backend,
    /// device, fit_seconds, ...).
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: FitCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    cmd.fit.check()?;
    at_least_one("--n-init", cmd.n_init)?;
    check_output_path(&cmd.output)?;
    let data = cmd.input.open()?;
    let covariance: CovarianceType = cmd.fit.covariance.into();
    let gmm = GaussianMixture::params(cmd.fit.components)
        .covariance(covariance)
        .tol(cmd.fit.tol)
        .reg_covar(cmd.fit.reg_covar)
        .max_iter(cmd.fit.max_iter)
        .n_init(cmd.n_init)
        .seed(cmd.fit.seed)
        .backend(cmd.backend.into());
    let gmm = cmd.fit.init.apply(gmm)?;

    let mut bar = FitProgress::new(ui, "fit", cmd.fit.max_iter, cmd.n_init);
    let started = Instant::now();
    let model = gmm
        .fit_with_progress(&data, &mut |p| bar.update(p))
        .map_err(|e| about_file(e, &cmd.input.input))?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish();

    if cmd.backend == BackendArg::Auto
        && let Some(report) = model.backend_report()
    {
        ui.note(describe_backend(report));
    }
    write_text_atomic(&cmd.output, &model.to_json())?;

    let (n, d) = (data.n_samples(), data.n_features());
    ui.note(summary(&model, &cmd, n, d, seconds));
    if cmd.json {
        let report = model.backend_report();
        let line = json!({
            "n_iter": model.n_iter(),
            "converged": model.converged(),
            "lower_bound": model.lower_bound(),
            "backend": report.map(|r| r.backend.to_string()),
            "device": report.map(|r| r.device.clone()),
            "fit_seconds": seconds,
            "n_samples": n,
            "n_features": d,
            "n_components": model.n_components(),
            "covariance_type": model.covariance_type().name(),
            "init": cmd.fit.init.to_string(),
            "n_init": cmd.n_init,
            "init_lower_bounds": model.init_lower_bounds(),
            "output": cmd.output.display().to_string(),
        });
        print_result(&line.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `fit: 2 full components, 272 × 2 samples, cpu, 7 iterations (converged) in 0.004 s, lower bound -2.031 → m.json`
fn summary(model: &FittedGmm, cmd: &FitCmd, n: usize, d: usize, seconds: f64) -> String {
    let backend = model
        .backend_report()
        .map_or(Backend::from(cmd.backend), |r| r.backend);
    format!(
        "fit: {} {} components on {n} samples × {d} features, {backend}, {} iterations ({}) in {:.3} s, lower bound {} → {}",
        model.n_components(),
        model.covariance_type(),
        model.n_iter(),
        if model.converged() {
            "converged"
        } else {
            "NOT converged: raise --max-iter or --tol"
        },
        seconds,
        num(model.lower_bound()),
        cmd.output.display()
    )
}
