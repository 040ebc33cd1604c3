//! `emgpu score`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use emgpu::{Backend, FittedGmm, FittedKMeans};
use serde_json::json;

use super::{
    AnyModel, BackendArg, CliError, InputArgs, Ui, about_file, load_any_model, print_result,
};

/// `emgpu score --model MODEL.json --input X [--backend B] [--json]`
#[derive(Debug, Args)]
#[command(after_help = "\
Gaussian mixture: prints the mean log-likelihood per sample (scikit-learn's `score`), the number
of samples, BIC and AIC. With --json, the last line of stdout is one JSON object:
  {\"score\": <float>, \"n_samples\": <int>, \"n_features\": <int>, \"n_components\": <int>, \"bic\": <float>, \"aic\": <float>, ...}
k-means: the score is minus the inertia (the sum of squared distances of the samples to their
nearest centers, scikit-learn's KMeans.score: higher is better), printed with the inertia and
the mean squared distance; --json:
  {\"score\": <float>, \"inertia\": <float>, \"mean_squared_distance\": <float>, \"n_samples\": <int>, ...}
Hidden Markov model (--lengths L cuts the rows into sequences): the total log-likelihood of the
sequences (hmmlearn's `score`); --json:
  {\"score\": <float>, \"n_samples\": <int>, \"n_sequences\": <int>, \"bic\": <float>, \"aic\": <float>, ...}")]
pub struct ScoreCmd {
    /// The model (JSON written by `emgpu fit`: a Gaussian mixture or k-means).
    #[arg(long, short, value_name = "MODEL.json")]
    model: PathBuf,

    #[command(flatten)]
    input: InputArgs,

    /// Where the log-likelihoods are computed.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, value_name = "B")]
    backend: BackendArg,

    /// Print the result as one line of JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ScoreCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    match load_any_model(&cmd.model)? {
        AnyModel::Lda(model) => super::lda::score(model, &cmd.input, cmd.backend, cmd.json, ui),
        AnyModel::Hmm(model) => {
            super::hmm::score(model, &cmd.input, Backend::from(cmd.backend), cmd.json, ui)
        }
        AnyModel::Gmm(model) => {
            cmd.input.reject_lengths("a Gaussian mixture")?;
            score_gmm(&cmd, ui, model)
        }
        AnyModel::KMeans(model) => {
            cmd.input.reject_lengths("k-means")?;
            score_kmeans(&cmd, ui, model)
        }
    }
}

fn score_gmm(cmd: &ScoreCmd, ui: &Ui, model: FittedGmm) -> Result<ExitCode, CliError> {
    let model = model.with_backend(Backend::from(cmd.backend));
    let (data, _) = cmd.input.open_named(ui, model.feature_names())?;
    let (log_px, report) = model
        .score_samples_with_report(&data)
        .map_err(|e| about_file(e, &cmd.input.input))?;
    if data.has_missing_values() {
        // Where the rows ran (missing values: GPU groups and CPU rows), on stderr.
        ui.note(super::describe_backend(&report));
    }
    let n = log_px.len();
    let score = log_px.iter().sum::<f64>() / n as f64;
    // scikit-learn's bic/aic, from the same log-likelihoods.
    let (bic, aic) = model.params().information_criteria(score * n as f64, n);
    if cmd.json {
        let line = json!({
            "score": score,
            "n_samples": n,
            "n_features": model.n_features(),
            "n_components": model.n_components(),
            "covariance_type": model.covariance_type().name(),
            "bic": bic,
            "aic": aic,
            "model": "gmm",
            "backend": report.backend.to_string(),
            "device": report.device,
        });
        print_result(&line.to_string())?;
    } else {
        print_result(&format!("score      {score}"))?;
        print_result(&format!("n_samples  {n}"))?;
        print_result(&format!("bic        {bic}"))?;
        print_result(&format!("aic        {aic}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn score_kmeans(cmd: &ScoreCmd, ui: &Ui, model: FittedKMeans) -> Result<ExitCode, CliError> {
    let model = model.with_backend(Backend::from(cmd.backend));
    let (data, _) = cmd.input.open_named(ui, model.feature_names())?;
    let n = data.n_samples();
    let (score, report) = model
        .score_with_report(&data)
        .map_err(|e| about_file(e, &cmd.input.input))?;
    let inertia = -score;
    let msd = inertia / n as f64;
    if cmd.json {
        let line = json!({
            "score": score,
            "score_is": "minus the inertia (scikit-learn's KMeans.score)",
            "inertia": inertia,
            "mean_squared_distance": msd,
            "n_samples": n,
            "n_features": model.n_features(),
            "n_clusters": model.n_clusters(),
            "model": "kmeans",
            "backend": report.backend.to_string(),
            "device": report.device,
        });
        print_result(&line.to_string())?;
    } else {
        print_result(&format!("score (-inertia)       {score}"))?;
        print_result(&format!("inertia                {inertia}"))?;
        print_result(&format!("mean_squared_distance  {msd}"))?;
        print_result(&format!("n_samples              {n}"))?;
    }
    Ok(ExitCode::SUCCESS)
}
