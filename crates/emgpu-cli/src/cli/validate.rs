//! `emgpu validate`: the same fit on the CPU (the f64 reference) and on another backend, from the
//! same initial parameters (k-means: the same initial centers), and the largest differences of the
//! results.

use std::process::ExitCode;

use clap::Args;
use emgpu::{Backend, BackendReport, Dataset, FittedGmm, FittedKMeans, Init, KMeansInit};
use serde_json::{Value, json};

use super::init::InitArg;
use super::progress::FitProgress;
use super::{
    BackendArg, CliError, EXIT_MISMATCH, FitArgs, InputArgs, ModelArg, Ui, about_file, print_result,
};

/// `emgpu validate --input X --components K [fit options] [--backend gpu] [--rtol 2e-3] [--json]`
#[derive(Debug, Args)]
#[command(after_help = "\
Both fits start from the same explicit parameters: the model given with --init MODEL.json, or else
the parameters the seeded --init method gives (computed once, on the CPU: for kmeans, the
k-means run and the responsibilities of its labels), i.e. the start of `emgpu fit` with the same
--seed. With --model kmeans both start from the same centers (--init k-means++ or random with
--seed, or a CENTERS.npy / MODEL.json) and run once. Each number compared is
  |candidate − cpu| / max(|cpu|, 1e-3 · largest |cpu| value of that array)
(for the lower bound: |candidate − cpu| / max(|cpu|, 1); for the inertia: |candidate − cpu| / |cpu|;
for k-means labels: the fraction of samples whose labels differ, not counting near ties: samples at
squared distances within 1e-6 of each other from the two centers, where rounding decides); the
largest per array is shown.
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

/// One fit of the comparison, as the table shows it.
struct Run {
    report: BackendReport,
    seconds: f64,
    n_iter: usize,
    converged: bool,
    /// `("lower_bound", value)` or `("inertia", value)`.
    quality: (&'static str, f64),
}

/// What the two fits of a comparison gave.
struct Outcome {
    reference: Run,
    candidate: Run,
    /// `(name, largest relative difference)` per compared quantity.
    diffs: Vec<(&'static str, f64)>,
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
            weights: max_rel_diff(c.weights(), r.weights()),
            means: max_rel_diff(c.means(), r.means()),
            covariances: max_rel_diff(c.covariances(), r.covariances()),
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

/// The largest relative differences between a candidate k-means fit and the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansDifferences {
    /// Of the centers.
    pub centers: f64,
    /// Of the inertia.
    pub inertia: f64,
    /// The fraction of training samples whose labels differ, not counting near ties (see
    /// [`KMeansDifferences::between`]).
    pub labels: f64,
    /// Samples whose labels differ between two centers at nearly the same distance.
    pub near_ties: usize,
}

/// Whether `x` is at squared distances from the centers `a` and `b` within [`NEAR_TIE_RTOL`]
/// of each other.
fn is_near_tie(x: &[f64], a: &[f64], b: &[f64]) -> bool {
    let dist = |c: &[f64]| x.iter().zip(c).map(|(x, m)| (x - m) * (x - m)).sum::<f64>();
    let (da, db) = (dist(a), dist(b));
    (da - db).abs() <= NEAR_TIE_RTOL * da.max(db)
}

/// Two squared distances of a sample to two centers closer than this (relative to the larger
/// one) are a near tie: which center wins depends on rounding, and a backend that picks the
/// other one is not wrong.
pub const NEAR_TIE_RTOL: f64 = 1e-6;

impl KMeansDifferences {
    /// Compares `candidate` with `reference` (fitted from the same centers on `data`). A sample
    /// whose two labels' centers (the reference's) are at squared distances within
    /// [`NEAR_TIE_RTOL`] of each other is a near tie, counted apart and not as a difference.
    pub fn between(candidate: &FittedKMeans, reference: &FittedKMeans, data: &Dataset) -> Self {
        let flat = |m: &FittedKMeans| m.cluster_centers().iter().copied().collect::<Vec<_>>();
        let centers = reference.cluster_centers();
        let d = data.n_features();
        let mut row = vec![0.0; d];
        let mut near_tie = |i: usize, a: usize, b: usize| {
            if centers.ncols() != d || data.read_f64(i, &mut row).is_err() {
                return false;
            }
            is_near_tie(&row, &centers.row(a).to_vec(), &centers.row(b).to_vec())
        };
        let (labels, near_ties) = match (candidate.labels(), reference.labels()) {
            (Some(c), Some(r)) if c.len() == r.len() && !r.is_empty() => {
                let (mut differ, mut ties) = (0usize, 0usize);
                for (i, (a, b)) in c.iter().zip(r).enumerate() {
                    if a != b {
                        if near_tie(i, *a, *b) {
                            ties += 1;
                        } else {
                            differ += 1;
                        }
                    }
                }
                (differ as f64 / r.len() as f64, ties)
            }
            _ => (f64::INFINITY, 0),
        };
        Self {
            centers: max_rel_diff(&flat(candidate), &flat(reference)),
            inertia: rel_diff(candidate.inertia(), reference.inertia(), f64::MIN_POSITIVE),
            labels,
            near_ties,
        }
    }

    /// `(name, difference)` for each compared quantity.
    pub fn rows(&self) -> [(&'static str, f64); 3] {
        [
            ("cluster_centers", self.centers),
            ("inertia", self.inertia),
            ("labels", self.labels),
        ]
    }
}

pub fn run(cmd: ValidateCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    cmd.fit.check()?;
    if cmd.input.missing.is_some() {
        return Err(CliError::usage(
            "validate does not run with --missing em yet; compare `emgpu fit --missing em --backend gpu` with `--backend cpu` by hand",
        ));
    }
    if !(cmd.rtol.is_finite() && cmd.rtol >= 0.0) {
        return Err(CliError::usage(format!(
            "--rtol must be a finite number ≥ 0 (got {})",
            cmd.rtol
        )));
    }
    if cmd.fit.model == ModelArg::Lda {
        return Err(CliError::usage(
            "validate compares the backends on Gaussian mixtures and k-means; LDA has only a CPU engine for now",
        ));
    }
    if cmd.fit.model == ModelArg::Hmm {
        return Err(CliError::usage(
            "validate compares the backends on Gaussian mixtures and k-means; for a hidden Markov model fit with --backend cpu and --backend gpu from the same --init MODEL.json and compare the models",
        ));
    }
    cmd.input.reject_lengths("validate")?;
    let data = cmd.input.open()?;
    let (outcome, start_note) = match cmd.fit.model {
        ModelArg::Kmeans => compare_kmeans(&cmd, &data, ui)?,
        _ => compare_gmm(&cmd, &data, ui)?,
    };
    let wanted = Backend::from(cmd.backend);
    let candidate = &outcome.candidate;
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
    let agree = within(&outcome.diffs, cmd.rtol);
    if cmd.json {
        let side = |r: &Run| {
            json!({
                "backend": r.report.backend.to_string(),
                "device": r.report.device,
                "n_iter": r.n_iter,
                "converged": r.converged,
                r.quality.0: r.quality.1,
                "fit_seconds": r.seconds,
            })
        };
        let max: serde_json::Map<String, Value> = outcome
            .diffs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mut line = json!({
            "agree": agree,
            "rtol": cmd.rtol,
            "max_rel_diff": max,
            "reference": side(&outcome.reference),
            "candidate": side(&outcome.candidate),
            "n_samples": data.n_samples(),
            "n_features": data.n_features(),
            "model": match cmd.fit.model {
                ModelArg::Kmeans => "kmeans",
                _ => "gmm",
            },
            "start": start_note,
        });
        match cmd.fit.model {
            ModelArg::Kmeans => line["n_clusters"] = json!(cmd.fit.components),
            _ => {
                line["n_components"] = json!(cmd.fit.components);
                line["covariance_type"] = json!(cmd.fit.covariance_type().name());
            }
        }
        print_result(&line.to_string())?;
    } else {
        print_table(&cmd, &data, &start_note, &outcome)?;
    }
    Ok(if agree {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_MISMATCH)
    })
}

/// Whether every difference is at most `rtol` (a NaN never is).
fn within(diffs: &[(&'static str, f64)], rtol: f64) -> bool {
    diffs.iter().all(|(_, d)| *d <= rtol)
}

/// Where the common start came from, for people.
fn start_note(init: &InitArg, seed: u64, what: &str) -> String {
    match init {
        InitArg::File(path) => format!("the {what} of {}", path.display()),
        InitArg::Method(name) => format!("the {what} of the {name} initialization (seed {seed})"),
    }
}

/// What a fit reports for the comparison: its backend, iterations and convergence.
type FitFacts = (Option<BackendReport>, usize, bool);

/// Runs `fit` with a progress bar for `backend` and times it.
fn timed_fit<M>(
    ui: &Ui,
    backend: Backend,
    max_iter: usize,
    fit: impl FnOnce(&mut FitProgress) -> Result<(M, FitFacts, (&'static str, f64)), CliError>,
) -> Result<(M, Run), CliError> {
    let ((model, (report, n_iter, converged), quality), seconds) =
        FitProgress::timed(ui, backend.to_string(), max_iter, 1, fit).map_err(|e| CliError {
            message: format!("the {backend} fit failed: {}", e.message),
            ..e
        })?;
    let report = report.ok_or_else(|| CliError::error("the fit did not report its backend"))?;
    let run = Run {
        report,
        seconds,
        n_iter,
        converged,
        quality,
    };
    Ok((model, run))
}

fn compare_gmm(cmd: &ValidateCmd, data: &Dataset, ui: &Ui) -> Result<(Outcome, String), CliError> {
    let in_file = |e| about_file(e, &cmd.input.input);
    let base = cmd.fit.gmm(None, Backend::Cpu)?;
    // The start of a seeded fit (the init method's parameters), computed once on the CPU.
    let start = base.initial_params(data).map_err(in_file)?;
    let base = base.init(Init::Params(start));
    let max_iter = cmd.fit.train.max_iter.unwrap_or(100);
    let fit_on = |backend: Backend| {
        timed_fit(ui, backend, max_iter, |bar| {
            let model = base
                .clone()
                .backend(backend)
                .fit_with_progress(data, &mut |p| bar.update(p))
                .map_err(in_file)?;
            let facts = (
                model.backend_report().cloned(),
                model.n_iter(),
                model.converged(),
            );
            let quality = ("lower_bound", model.lower_bound());
            Ok((model, facts, quality))
        })
    };
    let (ref_model, reference) = fit_on(Backend::Cpu)?;
    let (cand_model, candidate) = fit_on(cmd.backend.into())?;
    let diffs = Differences::between(&cand_model, &ref_model)
        .rows()
        .to_vec();
    let note = start_note(&cmd.fit.init(), cmd.fit.train.seed, "parameters");
    Ok((
        Outcome {
            reference,
            candidate,
            diffs,
        },
        note,
    ))
}

fn compare_kmeans(
    cmd: &ValidateCmd,
    data: &Dataset,
    ui: &Ui,
) -> Result<(Outcome, String), CliError> {
    let in_file = |e| about_file(e, &cmd.input.input);
    let base = cmd.fit.kmeans(data.n_features(), None, Backend::Cpu)?;
    let centers = base.initial_centers(data).map_err(in_file)?;
    let base = base.init(KMeansInit::Centers(centers));
    let max_iter = cmd.fit.train.max_iter.unwrap_or(300);
    let fit_on = |backend: Backend| {
        timed_fit(ui, backend, max_iter, |bar| {
            let model = base
                .clone()
                .backend(backend)
                .fit_with_progress(data, &mut |p| bar.update_kmeans(p))
                .map_err(in_file)?;
            let facts = (
                model.backend_report().cloned(),
                model.n_iter(),
                model.converged(),
            );
            let quality = ("inertia", model.inertia());
            Ok((model, facts, quality))
        })
    };
    let (ref_model, reference) = fit_on(Backend::Cpu)?;
    let (cand_model, candidate) = fit_on(cmd.backend.into())?;
    let diffs = KMeansDifferences::between(&cand_model, &ref_model, data)
        .rows()
        .to_vec();
    let note = start_note(&cmd.fit.init(), cmd.fit.train.seed, "centers");
    Ok((
        Outcome {
            reference,
            candidate,
            diffs,
        },
        note,
    ))
}

fn print_table(
    cmd: &ValidateCmd,
    data: &Dataset,
    start_note: &str,
    outcome: &Outcome,
) -> Result<(), CliError> {
    let (reference, candidate) = (&outcome.reference, &outcome.candidate);
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let model = match cmd.fit.model {
        ModelArg::Kmeans => format!("k-means, {} clusters", cmd.fit.components),
        _ => format!(
            "{} {} components",
            cmd.fit.components,
            cmd.fit.covariance_type()
        ),
    };
    let mut lines = vec![
        format!(
            "validate: {} ({}) against cpu ({})",
            candidate.report.backend, candidate.report.device, reference.report.device
        ),
        format!(
            "data: {}, {} samples × {} features; {model}; start: {start_note}",
            cmd.input.input.display(),
            data.n_samples(),
            data.n_features(),
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
        reference.n_iter.to_string(),
        candidate.n_iter.to_string(),
    ));
    lines.push(row(
        "converged",
        yes_no(reference.converged).into(),
        yes_no(candidate.converged).into(),
    ));
    let quality = |r: &Run| match r.quality.0 {
        "lower_bound" => format!("{:.10}", r.quality.1),
        _ => format!("{:.6}", r.quality.1),
    };
    lines.push(row(
        &reference.quality.0.replace('_', " "),
        quality(reference),
        quality(candidate),
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
    for &(name, d) in &outcome.diffs {
        let verdict = if d <= cmd.rtol { "ok" } else { "TOO LARGE" };
        lines.push(format!("{name:<16}{:>20}  {verdict}", format!("{d:.3e}")));
    }
    lines.push(String::new());
    lines.push(if within(&outcome.diffs, cmd.rtol) {
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
    use emgpu::{CovarianceType, GmmParams};

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
        assert!(!within(&same.rows(), 1e9));
        let same = Differences {
            lower_bound: rel_diff(-4.0, -4.0, 1.0),
            ..same
        };
        assert!(within(&same.rows(), 0.0));

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
        assert!(within(&d.rows(), 5.1e-3) && !within(&d.rows(), 2e-3));

        assert_eq!(rel_diff(f64::NAN, 1.0, 1.0), f64::INFINITY);
        let inf = Differences {
            lower_bound: f64::INFINITY,
            ..same
        };
        assert!(!within(&inf.rows(), 1.0));
    }

    #[test]
    fn near_ties_are_points_nearly_equidistant_from_both_centers() {
        assert!(is_near_tie(&[1.0, 0.0], &[0.0, 0.0], &[2.0, 0.0]));
        assert!(is_near_tie(&[1.0 + 1e-9, 0.0], &[0.0, 0.0], &[2.0, 0.0]));
        assert!(!is_near_tie(&[1.01, 0.0], &[0.0, 0.0], &[2.0, 0.0]));
    }

    #[test]
    fn kmeans_differences_count_labels_and_compare_centers() {
        let x = ndarray::array![[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]];
        let fit = |c: ndarray::Array2<f64>| {
            emgpu::KMeans::params(2)
                .init(emgpu::KMeansInit::Centers(c))
                .backend(Backend::Cpu)
                .fit(&x)
                .unwrap()
        };
        let a = fit(ndarray::array![[0.0, 0.0], [5.0, 5.0]]);
        let data = emgpu::Dataset::from_array(&x);
        let same = KMeansDifferences::between(&a, &a, &data);
        assert_eq!(same.rows().map(|r| r.1), [0.0; 3]);
        // Swapped centers: every label differs, the centers by their full size.
        let b = fit(ndarray::array![[5.0, 5.0], [0.0, 0.0]]);
        let d = KMeansDifferences::between(&b, &a, &data);
        assert_eq!(d.labels, 1.0);
        assert!(d.centers > 0.9, "{d:?}");
        assert_eq!(d.inertia, 0.0);
        // A loaded model has no labels and no inertia: never within.
        let loaded = FittedKMeans::from_centers(&a.cluster_centers()).unwrap();
        let d = KMeansDifferences::between(&loaded, &a, &data);
        assert_eq!(d.labels, f64::INFINITY);
        assert!(!within(&d.rows(), 1e9));
    }
}
