//! `emgpu fit`: a Gaussian mixture, k-means with `--model kmeans`, a hidden Markov model with
//! `--model hmm`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use emgpu::data::{check_output_path, write_text_atomic};
use emgpu::em::online::OnlineOptions;
use emgpu::models::gmm::missing::MissingLayout;
use emgpu::{Backend, BackendReport, Dataset, FittedGmm, FittedKMeans};
use serde_json::{Value, json};

use super::init::InitArg;
use super::output::{self, check_output, is_stdout, write_labels};
use super::progress::FitProgress;
use super::{
    BackendArg, CliError, FitArgs, InputArgs, ModelArg, Ui, about_file, at_least_one,
    check_distinct_files, num, print_result,
};

/// `emgpu fit --input X --components K ... --output MODEL.json`
#[derive(Debug, Args)]
#[command(after_help = "\
Defaults are scikit-learn's: GaussianMixture (full, tol 1e-3, reg_covar 1e-6, max_iter 100,
n_init 1, init kmeans) and, with --model kmeans, KMeans (init k-means++, tol 1e-4 relative to the
data's variance, max_iter 300, n_init 1 for k-means++ or given centers and 10 for random).
With --n-init N the fit keeps the restart with the highest lower bound (k-means: the lowest
inertia); each restart's result is in the summary and in --json (init_lower_bounds,
init_inertias).

Examples:
  emgpu fit --input data.npy --components 8 --output model.json
  emgpu fit --input faithful.csv --columns eruptions,waiting -k 2 --covariance diag --output m.json --json
  emgpu fit --input data.npy -k 8 --init random --n-init 10 --output best.json
  emgpu fit --input more.npy -k 8 --init model.json --output refit.json     (warm start)
  emgpu fit --input data.npy -k 5 --model kmeans --output km.json
  emgpu fit --input faithful.csv -k 2 --output m.json --labels-output labels.csv   (fit-predict)
  emgpu fit --input data.npy -k 5 --model kmeans --init centers.npy --output km.json
  emgpu fit --model hmm --input X.npy --lengths L.npy -k 4 --covariance full --output hmm.json
  emgpu fit --input data.npy -k 3 --sample-weight w.npy --output m.json   (weighted rows)

--model hmm: hmmlearn's GaussianHMM (covariance diag, tol 1e-2 on the total log-likelihood,
max_iter 10, init kmeans: k-means means, data covariance, uniform start and transitions);
lower_bound is the total log-likelihood of the last E-step.

--sample-weight W.npy (gmm, kmeans): a 1-D float64, float32, int64 or int32 .npy of one weight
per row, finite, >= 0, not all zero. Integer weights give the model of the rows repeated that
many times (from the same --init); lower_bound is the weighted mean log-likelihood
(sum w*log p / sum w), the k-means inertia is weighted as scikit-learn's KMeans(sample_weight).")]
pub struct FitCmd {
    #[command(flatten)]
    input: InputArgs,

    #[command(flatten)]
    fit: FitArgs,

    /// Number of initializations; the best fit is kept [default: 1; kmeans: 1 for k-means++ or
    /// given centers, 10 for random].
    #[arg(long, value_name = "N")]
    n_init: Option<usize>,

    /// Where the E-steps (k-means: the assignments) run.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, value_name = "B")]
    backend: BackendArg,

    /// The model file to write (JSON; written atomically).
    #[arg(long, short, value_name = "MODEL.json")]
    output: PathBuf,

    /// A weight per input row (gmm and kmeans): a 1-D float64/float32/int64/int32 .npy of N
    /// finite, non-negative weights, not all zero.
    #[arg(long, value_name = "W.npy")]
    sample_weight: Option<PathBuf>,

    /// Also write the label of every training sample under the fitted model (fit-predict):
    /// int64 .npy, or CSV with a `label` header when the name ends in .csv (`-`: CSV on stdout).
    #[arg(long, value_name = "LABELS.npy|LABELS.csv")]
    labels_output: Option<PathBuf>,

    /// gmm: fit by stepwise (online) EM (Cappé & Moulines): mini-batches of --batch-size rows
    /// in a seeded shuffled order, the statistics updated s ← (1−η)·s + η·s_batch with
    /// η_t = (t+2)^−ALPHA and an M-step after each; --passes passes, then one pass over all the
    /// data for the lower bound. --tol and --max-iter are not used.
    #[arg(long)]
    online: bool,

    /// With --online: rows per mini-batch [default: 100000].
    #[arg(long, value_name = "B")]
    batch_size: Option<usize>,

    /// With --online: the decay ALPHA of the step sizes η_t = (t+2)^−ALPHA, 0.5 < ALPHA ≤ 1
    /// [default: 0.6].
    #[arg(long, value_name = "ALPHA", allow_negative_numbers = true)]
    decay: Option<f64>,

    /// With --online: passes over the data [default: 2].
    #[arg(long, value_name = "P")]
    passes: Option<usize>,

    /// With --online: compute the full-data lower bound after every pass (one more pass over the
    /// data each), not only after the last; implied by --plot.
    #[arg(long)]
    eval_every_pass: bool,

    /// gmm: re-seed a component whose weight falls below 1e-5 at the worst-explained sample
    /// (its covariance the mean of the others'). Without it a collapsed component stays at a
    /// weight of about 1e-18, as in scikit-learn.
    #[arg(long)]
    reseed: bool,

    /// gmm with --missing em: how the rows are held. `grouped`: grouped by pattern once into an
    /// N × D float64 copy (faster with many patterns); `streamed`: read in chunks every
    /// iteration, grouped per chunk (memory independent of N; slower with many patterns). On
    /// the GPU both run the complete rows and the patterns of at least 65,536 rows on the GPU
    /// (streamed: read from the input in place), the other rows on the CPU [default: `auto`:
    /// streamed past 2^27 values (a 1 GiB copy), else grouped].
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto, value_name = "L")]
    missing_layout: LayoutArg,

    /// gmm: also draw the lower bound of the fit (per iteration; online: per pass) as an SVG
    /// (written atomically). `emgpu plot` draws several fits on the same axes.
    #[arg(long, value_name = "PLOT.svg")]
    plot: Option<PathBuf>,

    /// lda: the Dirichlet prior α of the document-topic distributions (scikit-learn's
    /// doc_topic_prior) [default: 1/K].
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    doc_topic_prior: Option<f64>,

    /// lda: the Dirichlet prior η of the topic-word distributions (scikit-learn's
    /// topic_word_prior) [default: 1/K].
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    topic_word_prior: Option<f64>,

    /// Print one line of JSON about the fit on stdout (gmm: n_iter, converged, lower_bound,
    /// init_lower_bounds, ...; kmeans: inertia, n_iter, converged, init_inertias, ...; both:
    /// backend, device, fit_seconds).
    #[arg(long)]
    json: bool,
}

/// `--missing-layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LayoutArg {
    /// Streamed past 2^27 values, else grouped.
    Auto,
    /// Grouped by pattern once (an N × D copy).
    Grouped,
    /// Read in chunks every iteration (memory independent of N).
    Streamed,
}

impl From<LayoutArg> for MissingLayout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Auto => MissingLayout::Auto,
            LayoutArg::Grouped => MissingLayout::Grouped,
            LayoutArg::Streamed => MissingLayout::Streamed,
        }
    }
}

pub fn run(cmd: FitCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    // Under `mpirun -np P` (P ≥ 2, feature `mpi`) this is one rank of a distributed fit: every
    // check below is agreed on by all ranks, and only rank 0 prints and writes (see dist.rs).
    let quiet = Ui::new(true);
    let ui = if super::dist::is_root() { ui } else { &quiet };
    super::dist::agree(check_fit(&cmd))?;
    match cmd.fit.model {
        ModelArg::Gmm => fit_gmm(&cmd, ui),
        ModelArg::Kmeans => fit_kmeans(&cmd, ui),
        ModelArg::Hmm => fit_hmm(&cmd, ui),
        ModelArg::Lda => fit_lda(&cmd, ui),
    }
}

/// The checks of the command line and of its files' names, before anything is read.
fn check_fit(cmd: &FitCmd) -> Result<(), CliError> {
    cmd.fit.check()?;
    if let Some(n) = cmd.n_init {
        at_least_one("--n-init", n)?;
    }
    cmd.check_online()?;
    check_output_path(&cmd.output)?;
    let mut inputs = vec![("--input", cmd.input.input.as_path())];
    if let Some(InitArg::File(path)) = &cmd.fit.train.init {
        inputs.push(("--init", path.as_path()));
    }
    let mut outputs = vec![("--output", cmd.output.as_path())];
    if let Some(labels) = &cmd.labels_output {
        check_output(labels)?;
        if !is_stdout(labels) {
            outputs.push(("--labels-output", labels.as_path()));
        }
    }
    if let Some(plot) = &cmd.plot {
        check_output_path(plot)?;
        outputs.push(("--plot", plot.as_path()));
    }
    if let Some(lengths) = &cmd.input.lengths {
        inputs.push(("--lengths", lengths.as_path()));
    }
    if let Some(weights) = &cmd.sample_weight {
        if cmd.fit.model == ModelArg::Hmm {
            return Err(CliError::usage(
                "--sample-weight weights the rows of a Gaussian mixture or k-means; hidden Markov models (--model hmm) take no sample weights: drop --sample-weight",
            ));
        }
        inputs.push(("--sample-weight", weights.as_path()));
    }
    check_distinct_files(&inputs, &outputs)?;
    if cmd.missing_layout != LayoutArg::Auto && cmd.input.missing.is_none() {
        return Err(CliError::usage(
            "--missing-layout applies to fits with missing values: add --missing em, or drop --missing-layout",
        ));
    }
    if cmd.fit.model != ModelArg::Lda
        && (cmd.doc_topic_prior.is_some() || cmd.topic_word_prior.is_some())
    {
        return Err(CliError::usage(
            "--doc-topic-prior and --topic-word-prior are options of LDA (--model lda)",
        ));
    }
    if super::dist::is_distributed() {
        if matches!(cmd.fit.model, ModelArg::Hmm | ModelArg::Lda) {
            return Err(CliError::usage(
                "a distributed fit (mpirun) runs Gaussian mixtures and k-means; run --model hmm and --model lda as one process",
            ));
        }
        if cmd.input.missing.is_some() {
            return Err(CliError::usage(
                "--missing em is not supported in a distributed fit (mpirun); run it as one process",
            ));
        }
        if cmd.labels_output.is_some() || cmd.plot.is_some() || cmd.sample_weight.is_some() {
            return Err(CliError::usage(
                "--labels-output, --plot and --sample-weight are not supported in a distributed fit (mpirun); run them as one process",
            ));
        }
    }
    Ok(())
}

impl FitCmd {
    /// The stepwise EM options: `None` without `--online`; their flags without it, or with
    /// another model than a Gaussian mixture, are usage errors, as a decay outside (0.5, 1].
    fn online_options(&self) -> Result<Option<OnlineOptions>, CliError> {
        if !self.online {
            return Ok(None);
        }
        let d = OnlineOptions::default();
        let options = OnlineOptions {
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            decay: self.decay.unwrap_or(d.decay),
            passes: self.passes.unwrap_or(d.passes),
            evaluate_every_pass: self.eval_every_pass || self.plot.is_some(),
            start_from_params: false,
        };
        at_least_one("--batch-size", options.batch_size)?;
        at_least_one("--passes", options.passes)?;
        if !(options.decay > 0.5 && options.decay <= 1.0) {
            return Err(CliError::usage(format!(
                "--decay must satisfy 0.5 < ALPHA ≤ 1 (step sizes (t+2)^−ALPHA), got {}",
                options.decay
            )));
        }
        Ok(Some(options))
    }

    /// Range and consistency checks of the stepwise EM, re-seeding and plot flags.
    fn check_online(&self) -> Result<(), CliError> {
        if self.fit.model != ModelArg::Gmm {
            for (given, flag) in [
                (self.online, "--online"),
                (self.reseed, "--reseed"),
                (self.plot.is_some(), "--plot"),
            ] {
                if given {
                    return Err(CliError::usage(format!(
                        "{flag} is an option of Gaussian mixtures (--model gmm)"
                    )));
                }
            }
        }
        if !self.online {
            for (given, flag) in [
                (self.batch_size.is_some(), "--batch-size"),
                (self.decay.is_some(), "--decay"),
                (self.passes.is_some(), "--passes"),
                (self.eval_every_pass, "--eval-every-pass"),
            ] {
                if given {
                    return Err(CliError::usage(format!(
                        "{flag} is an option of stepwise EM: add --online"
                    )));
                }
            }
        }
        self.online_options().map(|_| ())
    }
}

fn fit_lda(cmd: &FitCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    for (given, flag) in [
        (cmd.n_init.is_some(), "--n-init"),
        (cmd.sample_weight.is_some(), "--sample-weight"),
        (cmd.labels_output.is_some(), "--labels-output"),
    ] {
        if given {
            return Err(CliError::usage(format!(
                "{flag} is not an option of LDA (--model lda); for the topic of each document use `emgpu predict`"
            )));
        }
    }
    super::lda::fit(
        super::lda::LdaFitRequest {
            input: &cmd.input,
            k: cmd.fit.components,
            doc_topic_prior: cmd.doc_topic_prior,
            topic_word_prior: cmd.topic_word_prior,
            init: cmd.fit.train.init.as_ref(),
            max_iter: cmd.fit.train.max_iter,
            tol: cmd.fit.train.tol,
            seed: cmd.fit.train.seed,
            backend: cmd.backend,
            output: &cmd.output,
            json: cmd.json,
        },
        ui,
    )
}

fn fit_hmm(cmd: &FitCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    let hmm = cmd.fit.hmm(cmd.n_init, cmd.backend.into())?;
    let common = |data: &Dataset, report: Option<&BackendReport>, seconds: f64| {
        common_json(cmd, data, report, seconds)
    };
    let note = |report: Option<&BackendReport>| note_backend(cmd, ui, report);
    super::hmm::fit(
        super::hmm::HmmFitRequest {
            input: &cmd.input,
            hmm,
            n_init: cmd.n_init.unwrap_or(1),
            max_iter: cmd.fit.train.max_iter.unwrap_or(10),
            output: &cmd.output,
            labels_output: cmd.labels_output.as_deref(),
            json: cmd.json,
            json_common: &common,
            note_backend: &note,
        },
        ui,
    )
}

/// The first restart whose result is `best` (the fit keeps the first of equals).
fn best_init(results: &[f64], best: f64) -> Option<usize> {
    results.iter().position(|v| *v == best)
}

/// Reads `--sample-weight`: a 1-D float64, float32, int64 or int32 `.npy` of weights.
pub fn read_sample_weights(path: &Path) -> Result<Vec<f64>, CliError> {
    use ndarray::Array1;
    use ndarray_npy::ReadNpyExt;
    let bad = |what: String| CliError::error(format!("--sample-weight {}: {what}", path.display()));
    let open = || std::fs::File::open(path).map_err(|e| bad(format!("cannot open it ({e})")));
    if let Ok(a) = Array1::<f64>::read_npy(open()?) {
        Ok(a.to_vec())
    } else if let Ok(a) = Array1::<f32>::read_npy(open()?) {
        Ok(a.iter().map(|&v| v as f64).collect())
    } else if let Ok(a) = Array1::<i64>::read_npy(open()?) {
        Ok(a.iter().map(|&v| v as f64).collect())
    } else if let Ok(a) = Array1::<i32>::read_npy(open()?) {
        Ok(a.iter().map(|&v| v as f64).collect())
    } else {
        Err(bad(
            "not a 1-D .npy of float64, float32, int64 or int32 weights (one per row), or a truncated one".into(),
        ))
    }
}

/// The input with `--sample-weight`'s weights attached (checked: one per row, finite, ≥ 0, not
/// all zero), or as it is without the option.
fn with_weights(cmd: &FitCmd, data: Dataset<'static>) -> Result<Dataset<'static>, CliError> {
    let Some(path) = &cmd.sample_weight else {
        return Ok(data);
    };
    let weights = read_sample_weights(path)?;
    data.with_sample_weights(weights).map_err(|e| {
        let why = match e {
            emgpu::Error::InvalidParameter(m) => m,
            other => other.to_string(),
        };
        CliError::error(format!("--sample-weight {}: {why}", path.display()))
    })
}

/// `272 samples` or `272 samples (weighted, Σw = 1022)`.
fn samples(data: &Dataset) -> String {
    if data.is_weighted() {
        format!(
            "{} samples (weighted, Σw = {})",
            data.n_samples(),
            num(data.sum_of_weights())
        )
    } else {
        format!("{} samples", data.global_rows())
    }
}

/// `Σ w`, or the number of rows of all processes without weights.
fn total_weight(data: &Dataset) -> f64 {
    if data.is_weighted() {
        data.sum_of_weights()
    } else {
        data.global_rows() as f64
    }
}

/// What every fit's `--json` line says about the run.
fn common_json(
    cmd: &FitCmd,
    data: &Dataset,
    report: Option<&BackendReport>,
    seconds: f64,
) -> Value {
    let weights = if data.is_weighted() {
        json!({"weighted": true, "sum_of_weights": data.sum_of_weights()})
    } else {
        json!({"weighted": false})
    };
    merged(
        weights,
        json!({
            "backend": report.map(|r| r.backend.to_string()),
            "device": report.map(|r| r.device.clone()),
            "fit_seconds": seconds,
            "n_samples": data.global_rows(),
            "n_features": data.n_features(),
            "init": cmd.fit.init().to_string(),
            "seed": cmd.fit.train.seed,
            "output": cmd.output.display().to_string(),
        }),
    )
}

/// Adds the fields of `extra` to the object `base`.
fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn fit_gmm(cmd: &FitCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    let gmm = super::dist::agree(
        cmd.input
            .reject_lengths("a Gaussian mixture")
            .and_then(|()| cmd.online_options())
            .and_then(|online| {
                Ok(cmd
                    .fit
                    .gmm(cmd.n_init, cmd.backend.into())?
                    .online(online)
                    .reseed(cmd.reseed)
                    .missing_layout(cmd.missing_layout.into()))
            }),
    )?;
    let online = cmd.online_options()?;
    let (data, names) = open_input(cmd, ui)?;
    let data = super::dist::agree(with_weights(cmd, data))?;
    let n_init = cmd.n_init.unwrap_or(1);
    let max_iter = match &online {
        Some(o) => o.passes * o.n_batches(data.n_samples()),
        None => cmd.fit.train.max_iter.unwrap_or(100),
    };
    let what = if online.is_some() {
        "online fit"
    } else {
        "fit"
    };
    let (model, seconds) = FitProgress::timed(ui, what, max_iter, n_init, |bar| {
        let path = &cmd.input.input;
        match super::dist::fit_gmm(&gmm, &data, path, &mut |p| bar.update(p)) {
            Some(fitted) => fitted,
            None => gmm
                .fit_with_progress(&data, &mut |p| bar.update(p))
                .map_err(|e| about_file(e, path)),
        }
    })?;

    let model = model.with_feature_names(names.clone())?;
    note_backend(cmd, ui, model.backend_report());
    if super::dist::is_root() {
        write_text_atomic(&cmd.output, &model.to_json())?;
    }
    if let Some(path) = &cmd.plot {
        let trace = super::plot::trace_of(&model, super::plot::XAxis::Passes, None);
        super::plot::write_svg(path, &[trace], super::plot::XAxis::Passes, None)?;
        ui.note(format!("plot: lower bound → {}", path.display()));
    }
    if let Some(path) = &cmd.labels_output {
        let labels = model
            .predict(&data)
            .map_err(|e| about_file(e, &cmd.input.input))?;
        write_training_labels(ui, path, labels.iter().copied(), model.n_components())?;
    }
    ui.note(gmm_summary(&model, cmd, &data, names.as_deref(), seconds));
    if !model.reseeds().is_empty() {
        let moved: Vec<String> = model
            .reseeds()
            .iter()
            .map(|e| format!("{} at step {} to row {}", e.component, e.step, e.row))
            .collect();
        ui.note(format!("reseeded: {}", moved.join(", ")));
    }
    if model.init_lower_bounds().len() > 1 {
        ui.note(restarts_line(
            "lower bounds",
            model.init_lower_bounds(),
            model.lower_bound(),
            "the highest",
        ));
    }
    if cmd.json && super::dist::is_root() {
        let line = merged(
            json!({
                "model": "gmm",
                "n_iter": model.n_iter(),
                "converged": model.converged(),
                "lower_bound": model.lower_bound(),
                "n_components": model.n_components(),
                "covariance_type": model.covariance_type().name(),
                "n_init": n_init,
                "init_lower_bounds": model.init_lower_bounds(),
                "best_init": best_init(model.init_lower_bounds(), model.lower_bound()),
                "reseed": cmd.reseed,
                "reseeds": model.reseeds().len(),
                "online": model.online().is_some(),
            }),
            common_json(cmd, &data, model.backend_report(), seconds),
        );
        let line = match model.online() {
            // "passes" counts the stepwise passes only; the full-data evaluations are
            // "evaluation_passes".
            Some(o) => merged(
                line,
                json!({
                    "passes": o.options.passes,
                    "evaluation_passes": o.evaluation_passes,
                    "batch_size": o.options.batch_size,
                    "n_batches": o.n_batches,
                    "decay": o.options.decay,
                    "lower_bound_trace": model.lower_bound_trace(),
                    "evaluated_passes": o.evaluated_passes,
                }),
            ),
            None => line,
        };
        print_result(&line.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn fit_kmeans(cmd: &FitCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    super::dist::agree(cmd.input.reject_lengths("k-means"))?;
    let (data, names) = open_input(cmd, ui)?;
    let data = super::dist::agree(with_weights(cmd, data))?;
    let km = super::dist::agree(
        cmd.fit
            .kmeans(data.n_features(), cmd.n_init, cmd.backend.into()),
    )?;
    let n_init = km.n_init_value();
    let max_iter = cmd.fit.train.max_iter.unwrap_or(300);
    let (model, seconds) = FitProgress::timed(ui, "k-means", max_iter, n_init, |bar| {
        let path = &cmd.input.input;
        match super::dist::fit_kmeans(&km, &data, path, &mut |p| bar.update_kmeans(p)) {
            Some(fitted) => fitted,
            None => km
                .fit_with_progress(&data, &mut |p| bar.update_kmeans(p))
                .map_err(|e| about_file(e, path)),
        }
    })?;

    let model = model.with_feature_names(names.clone())?;
    note_backend(cmd, ui, model.backend_report());
    if super::dist::is_root() {
        write_text_atomic(&cmd.output, &model.to_json())?;
    }
    if let Some(path) = &cmd.labels_output {
        let labels = match model.labels() {
            Some(labels) => labels.to_vec(),
            None => model
                .predict(&data)
                .map_err(|e| about_file(e, &cmd.input.input))?
                .to_vec(),
        };
        write_training_labels(ui, path, labels, model.n_clusters())?;
    }
    ui.note(kmeans_summary(
        &model,
        cmd,
        &data,
        names.as_deref(),
        seconds,
    ));
    if model.init_inertias().len() > 1 {
        ui.note(restarts_line(
            "inertias",
            model.init_inertias(),
            model.inertia(),
            "the lowest",
        ));
    }
    if cmd.json && super::dist::is_root() {
        let line = merged(
            json!({
                "model": "kmeans",
                "inertia": model.inertia(),
                "mean_squared_distance": model.inertia() / total_weight(&data),
                "n_iter": model.n_iter(),
                "converged": model.converged(),
                "n_clusters": model.n_clusters(),
                "n_init": n_init,
                "init_inertias": model.init_inertias(),
                "best_init": best_init(model.init_inertias(), model.inertia()),
            }),
            common_json(cmd, &data, model.backend_report(), seconds),
        );
        print_result(&line.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The input, and the names of its columns (a CSV file's) to store in the model; a header that
/// names a column twice gives a model without names.
fn open_input(cmd: &FitCmd, ui: &Ui) -> Result<(Dataset<'static>, Option<Vec<String>>), CliError> {
    let (data, names) = super::dist::agree(cmd.input.open_named(ui, None))?;
    let data = super::dist::shard(data, &cmd.input.input)?;
    let names = names.filter(|names| {
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        let ok = unique.len() == names.len();
        if !ok {
            ui.note(format!(
                "note: {}: the header names a column twice; the model stores no feature names",
                cmd.input.input.display()
            ));
        }
        ok
    });
    Ok((data, names))
}

/// `2 features` or `2 features (eruptions, waiting)`.
fn features(d: usize, names: Option<&[String]>) -> String {
    match names {
        Some(names) => format!("{d} features ({})", names.join(", ")),
        None => format!("{d} features"),
    }
}

/// `--labels-output`: the training labels, with a note of the samples per component.
fn write_training_labels(
    ui: &Ui,
    path: &std::path::Path,
    labels: impl IntoIterator<Item = usize>,
    k: usize,
) -> Result<(), CliError> {
    let mut counts = vec![0usize; k];
    let labels: ndarray::Array1<i64> = labels
        .into_iter()
        .map(|l| {
            counts[l] += 1;
            l as i64
        })
        .collect();
    write_labels(path, &labels)?;
    ui.note(format!(
        "labels: {} training labels (int64), samples per component {counts:?} → {}",
        labels.len(),
        output::display(path)
    ));
    Ok(())
}

/// With `--backend auto`, which device ran and why; with `--missing em`, always (where the
/// complete and the incomplete rows ran).
fn note_backend(cmd: &FitCmd, ui: &Ui, report: Option<&BackendReport>) {
    match report {
        Some(r) if cmd.input.missing.is_some() && cmd.backend != BackendArg::Auto => {
            ui.note(super::describe_backend(r));
        }
        _ => super::note_backend(cmd.backend, ui, report),
    }
}

/// `restarts: lower bounds -4.2199, -4.2201, -4.2199; kept 1 (the highest)`
fn restarts_line(what: &str, results: &[f64], best: f64, rule: &str) -> String {
    let values: Vec<String> = results.iter().map(|v| format!("{v:.6}")).collect();
    let kept = best_init(results, best).map_or("?".to_string(), |i| (i + 1).to_string());
    format!(
        "restarts: {what} {}; kept restart {kept} ({rule})",
        values.join(", ")
    )
}

fn converged_note(converged: bool) -> &'static str {
    if converged {
        "converged"
    } else {
        "NOT converged: raise --max-iter or --tol"
    }
}

fn backend_name(report: Option<&BackendReport>, cmd: &FitCmd) -> Backend {
    report.map_or(Backend::from(cmd.backend), |r| r.backend)
}

/// `fit: 2 full components on 272 samples × 2 features (eruptions, waiting), cpu, 7 iterations (converged) in 0.004 s, lower bound -2.031 → m.json`
fn gmm_summary(
    model: &FittedGmm,
    cmd: &FitCmd,
    data: &Dataset,
    names: Option<&[String]>,
    seconds: f64,
) -> String {
    if let Some(o) = model.online() {
        return format!(
            "fit: {} {} components on {} samples × {}, {}, stepwise EM: {} passes of {} mini-batches of {} (decay {}) + {} evaluation pass(es) in {:.3} s, lower bound {} → {}",
            model.n_components(),
            model.covariance_type(),
            data.n_samples(),
            features(data.n_features(), names),
            backend_name(model.backend_report(), cmd),
            o.options.passes,
            o.n_batches,
            o.options.batch_size,
            o.options.decay,
            o.evaluation_passes,
            seconds,
            num(model.lower_bound()),
            cmd.output.display()
        );
    }
    format!(
        "fit: {} {} component{} on {} × {}, {}, {} iterations ({}) in {:.3} s, lower bound {} → {}",
        model.n_components(),
        model.covariance_type(),
        if model.n_components() == 1 { "" } else { "s" },
        samples(data),
        features(data.n_features(), names),
        backend_name(model.backend_report(), cmd),
        model.n_iter(),
        converged_note(model.converged()),
        seconds,
        num(model.lower_bound()),
        cmd.output.display()
    )
}

/// `fit: k-means, 2 clusters on 272 samples × 2 features (eruptions, waiting), cpu, 5 iterations (converged) in 0.001 s, inertia 8902 (mean squared distance 32.73) → km.json`
fn kmeans_summary(
    model: &FittedKMeans,
    cmd: &FitCmd,
    data: &Dataset,
    names: Option<&[String]>,
    seconds: f64,
) -> String {
    format!(
        "fit: k-means, {} clusters on {} × {}, {}, {} iterations ({}) in {:.3} s, inertia {} (mean squared distance {}) → {}",
        model.n_clusters(),
        samples(data),
        features(data.n_features(), names),
        backend_name(model.backend_report(), cmd),
        model.n_iter(),
        converged_note(model.converged()),
        seconds,
        num(model.inertia()),
        num(model.inertia() / total_weight(data)),
        cmd.output.display()
    )
}
