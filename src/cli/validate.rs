//! `emgpu validate`: the same fit on the CPU (the f64 reference) and on another backend, from the
//! same initial parameters, and the largest differences of the results.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use emgpu::{Backend, BackendReport, Dataset, FittedGmm, GaussianMixture, GmmParams, Init};
use serde_json::{Value, json};

use super::init::InitArg;
use super::progress::FitProgress;
use super::{
    BackendArg, CliError, EXIT_MISMATCH, FitArgs, InputArgs, Ui, about_file, print_result,
};

/// `emgpu validate --input X --components K [fit options] [--backend gpu] [--rtol 2e-3] [--json]`
#[derive(Debug, Args)]
#[command(after_help = "\
Both fits start from the same explicit parameters: the model given with --init MODEL.json, or else
the parameters after one CPU iteration from the seeded --init method. Each number compared is
  |candidate − cpu| / max(|cpu|, 1e-3 · largest |cpu| value of that array)
(for the lower bound: |candidate − cpu| / max(|cpu|, 1)); the largest per array is shown.
Exit code 0 when every difference is at most --rtol, 3 when one is larger, 1 on an error
(e.g. the candidate backend is not available).")]
pub struct ValidateCmd {
    #[command(flatten)]
    input: InputArgs,

    #[command(flatten)]
    fit: FitArgs,

    /// The backend checked against the CPU reference (`cpu` checks the CPU against itself).
    #[arg(long, value_enum, default_value_t = BackendArg::Gpu, value_name = "B")]
    backend: BackendArg,

    /// The largest relative difference accepted.
    #[arg(
        long,
        default_value = "2e-3",
        value_name = "R",
        allow_negative_numbers = true
    )]
    rtol: f64,

    /// Print the comparison as one line of JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// One fit of the comparison.
struct Run {
    model: FittedGmm,
    report: BackendReport,
    seconds: f64,
}

/// The largest relative differences between a candidate fit and the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Differences {
    /// Of the weights.
    pub weights: f64,
    /// Of the means.
    pub means: f64,
    /// Of the covariances.
    pub covariances: f64,
    /// Of the final lower bound.
    pub lower_bound: f64,
}

impl Differences {
    /// Compares `candidate` with `reference` (same components in the same order).
    pub fn between(candidate: &FittedGmm, reference: &FittedGmm) -> Self {
        let (c, r) = (candidate.params(), reference.params());
        Self {
            weights: max_rel_diff(&c.weights, &r.weights),
            means: max_rel_diff(&c.means, &r.means),
            covariances: max_rel_diff(&c.covariances, &r.covariances),
            lower_bound: rel_diff(candidate.lower_bound(), reference.lower_bound(), 1.0),
        }
    }

    /// `(name, difference)` for each compared quantity.
    pub fn rows(&self) -> [(&'static str, f64); 4] {
        [
            ("weights", self.weights),
            ("means", self.means),
            ("covariances", self.covariances),
            ("lower_bound", self.lower_bound),
        ]
    }

    /// Whether every difference is at most `rtol` (a NaN never is).
    pub fn within(&self, rtol: f64) -> bool {
        self.rows().iter().all(|(_, d)| *d <= rtol)
    }
}

/// `|a − b| / max(|b|, floor)`; infinite when either is NaN.
fn rel_diff(a: f64, b: f64, floor: f64) -> f64 {
    let d = (a - b).abs() / b.abs().max(floor);
    if d.is_nan() { f64::INFINITY } else { d }
}

/// The largest [`rel_diff`] of two arrays, with the floor `1e-3 · max |want|`.
fn max_rel_diff(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = (1e-3 * scale).max(f64::MIN_POSITIVE);
    got.iter()
        .zip(want)
        .map(|(g, w)| rel_diff(*g, *w, floor))
        .fold(0.0, f64::max)
}

pub fn run(cmd: ValidateCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    cmd.fit.check()?;
    if !(cmd.rtol.is_finite() && cmd.rtol >= 0.0) {
        return Err(CliError::usage(format!(
            "--rtol must be a finite number ≥ 0 (got {})",
            cmd.rtol
        )));
    }
    let data = cmd.input.open()?;
    let in_file = |e| about_file(e, &cmd.input.input);
    let (start, start_note) = starting_point(&cmd, &data, ui)?;
    let base = GaussianMixture::params(cmd.fit.components)
        .covariance(cmd.fit.covariance.into())
        .tol(cmd.fit.tol)
        .reg_covar(cmd.fit.reg_covar)
        .max_iter(cmd.fit.max_iter)
        .seed(cmd.fit.seed)
        .init(Init::Params(start));

    let fit_on = |backend: Backend| -> Result<Run, CliError> {
        let mut bar = FitProgress::new(ui, backend.to_string(), cmd.fit.max_iter, 1);
        let started = Instant::now();
        let model = base
            .clone()
            .backend(backend)
            .fit_with_progress(&data, &mut |p| bar.update(p))
            .map_err(in_file)?;
        let seconds = started.elapsed().as_secs_f64();
        bar.finish();
        let report = model
            .backend_report()
            .cloned()
            .ok_or_else(|| CliError::error("the fit did not report its backend"))?;
        Ok(Run {
            model,
            report,
            seconds,
        })
    };
    let reference = fit_on(Backend::Cpu)?;
    let wanted = Backend::from(cmd.backend);
    let candidate = fit_on(wanted)?;
    if wanted == Backend::Gpu && candidate.report.backend != Backend::Gpu {
        return Err(CliError::error(format!(
            "the gpu backend did not run (it ran on {}{}); there is nothing to compare with the CPU",
            candidate.report.device,
            if candidate.report.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", candidate.report.reason)
            }
        )));
    }

    let diffs = Differences::between(&candidate.model, &reference.model);
    let agree = diffs.within(cmd.rtol);
    if cmd.json {
        let side = |r: &Run| {
            json!({
                "backend": r.report.backend.to_string(),
                "device": r.report.device,
                "n_iter": r.model.n_iter(),
                "converged": r.model.converged(),
                "lower_bound": r.model.lower_bound(),
                "fit_seconds": r.seconds,
            })
        };
        let max: serde_json::Map<String, Value> = diffs
            .rows()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let line = json!({
            "agree": agree,
            "rtol": cmd.rtol,
            "max_rel_diff": max,
            "reference": side(&reference),
            "candidate": side(&candidate),
            "n_samples": data.n_samples(),
            "n_features": data.n_features(),
            "n_components": cmd.fit.components,
            "covariance_type": reference.model.covariance_type().name(),
            "start": start_note,
        });
        print_result(&line.to_string())?;
    } else {
        print_table(&cmd, &data, &start_note, &reference, &candidate, &diffs)?;
    }
    Ok(if agree {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_MISMATCH)
    })
}

/// The initial parameters both fits start from, and a note saying where they came from.
fn starting_point(
    cmd: &ValidateCmd,
    data: &Dataset,
    ui: &Ui,
) -> Result<(GmmParams, String), CliError> {
    match &cmd.fit.init {
        InitArg::Model(path) => {
            let init = cmd.fit.init.resolve()?;
            match init {
                Init::Params(p) => Ok((p, format!("the parameters of {}", path.display()))),
                _ => Err(CliError::error("a model file did not give parameters")),
            }
        }
        InitArg::Method(name) => {
            // The library computes an init method's parameters inside a fit; one CPU iteration
            // from it gives explicit parameters that both backends then start from.
            let mut bar = FitProgress::new(ui, "init", 1, 1);
            let first = GaussianMixture::params(cmd.fit.components)
                .covariance(cmd.fit.covariance.into())
                .tol(0.0)
                .reg_covar(cmd.fit.reg_covar)
                .max_iter(1)
                .seed(cmd.fit.seed)
                .backend(Backend::Cpu);
            let first = cmd.fit.init.apply(first)?;
            let model = first
                .fit_with_progress(data, &mut |p| bar.update(p))
                .map_err(|e| about_file(e, &cmd.input.input))?;
            Ok((
                model.params().clone(),
                format!("{name} (seed {}) and one CPU iteration", cmd.fit.seed),
            ))
        }
    }
}

fn print_table(
    cmd: &ValidateCmd,
    data: &Dataset,
    start_note: &str,
    reference: &Run,
    candidate: &Run,
    diffs: &Differences,
) -> Result<(), CliError> {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut lines = vec![
        format!(
            "validate: {} ({}) against cpu ({})",
            candidate.report.backend, candidate.report.device, reference.report.device
        ),
        format!(
            "data: {}, {} samples × {} features; {} {} components; start: {start_note}",
            cmd.input.input.display(),
            data.n_samples(),
            data.n_features(),
            cmd.fit.components,
            reference.model.covariance_type(),
        ),
        String::new(),
        format!(
            "{:<14}{:>22}{:>22}",
            "",
            "cpu",
            candidate.report.backend.to_string()
        ),
    ];
    let row = |name: &str, a: String, b: String| format!("{name:<14}{a:>22}{b:>22}");
    lines.push(row(
        "n_iter",
        reference.model.n_iter().to_string(),
        candidate.model.n_iter().to_string(),
    ));
    lines.push(row(
        "converged",
        yes_no(reference.model.converged()).into(),
        yes_no(candidate.model.converged()).into(),
    ));
    lines.push(row(
        "lower bound",
        format!("{:.10}", reference.model.lower_bound()),
        format!("{:.10}", candidate.model.lower_bound()),
    ));
    lines.push(row(
        "fit time (s)",
        format!("{:.3}", reference.seconds),
        format!("{:.3}", candidate.seconds),
    ));
    lines.push(String::new());
    lines.push(format!(
        "{:<14}{:>22}  (rtol {})",
        "", "largest rel. diff", cmd.rtol
    ));
    for (name, d) in diffs.rows() {
        let verdict = if d <= cmd.rtol { "ok" } else { "TOO LARGE" };
        lines.push(format!("{name:<14}{:>22}  {verdict}", format!("{d:.3e}")));
    }
    lines.push(String::new());
    lines.push(if diffs.within(cmd.rtol) {
        format!(
            "result: {} agrees with the CPU within rtol {}",
            candidate.report.backend, cmd.rtol
        )
    } else {
        format!(
            "result: {} DIFFERS from the CPU by more than rtol {}",
            candidate.report.backend, cmd.rtol
        )
    });
    for line in lines {
        print_result(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use emgpu::CovarianceType;

    fn model(weights: Vec<f64>, means: Vec<f64>, cov: Vec<f64>) -> FittedGmm {
        let p = GmmParams::new(CovarianceType::Diag, weights, means, cov, 2).unwrap();
        FittedGmm::from_params(p).unwrap()
    }

    #[test]
    fn differences_are_relative_with_a_floor_and_catch_nan() {
        let a = model(
            vec![0.5, 0.5],
            vec![0.0, 100.0, -1.0, 2.0],
            vec![1.0, 2.0, 3.0, 4.0],
        );
        let same = Differences::between(&a, &a);
        assert!(same.weights == 0.0 && same.means == 0.0 && same.covariances == 0.0);
        // Models made from parameters have no lower bound (NaN): never "within".
        assert_eq!(same.lower_bound, f64::INFINITY);
        assert!(!same.within(1e9));
        let same = Differences {
            lower_bound: rel_diff(-4.0, -4.0, 1.0),
            ..same
        };
        assert!(same.within(0.0));

        // A mean of 0 is compared against 1e-3 · 100 = 0.1: a shift of 1e-4 is 1e-3.
        let b = model(
            vec![0.5, 0.5],
            vec![1e-4, 100.0, -1.0, 2.0],
            vec![1.0, 2.0, 3.0, 4.0 * (1.0 + 5e-3)],
        );
        let d = Differences::between(&b, &a);
        assert!((d.means - 1e-3).abs() < 1e-12, "{d:?}");
        assert!((d.covariances - 5e-3).abs() < 1e-12, "{d:?}");
        let d = Differences {
            lower_bound: 0.0,
            ..d
        };
        assert!(d.within(5.1e-3) && !d.within(2e-3));

        assert_eq!(rel_diff(f64::NAN, 1.0, 1.0), f64::INFINITY);
        assert!(
            !Differences {
                lower_bound: f64::INFINITY,
                ..same
            }
            .within(1.0)
        );
    }
}
