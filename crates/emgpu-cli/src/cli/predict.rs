//! `emgpu predict`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use emgpu::Backend;
use ndarray::Array1;

use super::output::{self, check_output, is_stdout, write_labels, write_proba};
use super::{
    AnyModel, BackendArg, CliError, InputArgs, Ui, about_file, check_distinct_files, load_any_model,
};

/// `emgpu predict --model MODEL.json --input X --output LABELS.npy [--proba]`
#[derive(Debug, Args)]
#[command(after_help = "\
Writes int64 labels [N] (the most likely component of each sample, scikit-learn's `predict`), or
with --proba float64 responsibilities [N, K] (scikit-learn's `predict_proba`), as .npy; as CSV with a
header row (`label`, or `p0,p1,...`) when the output name ends in .csv, and on stdout with `-o -`.
For a k-means model the label is the nearest center (ties: the lowest index); --proba is an error.
For a hidden Markov model (--lengths L cuts the rows into sequences) the labels are the Viterbi
states (hmmlearn's `predict`) and --proba writes the state posteriors [N, K] (`predict_proba`).")]
pub struct PredictCmd {
    /// The model (JSON written by `emgpu fit`: a Gaussian mixture or k-means).
    #[arg(long, short, value_name = "MODEL.json")]
    model: PathBuf,

    #[command(flatten)]
    input: InputArgs,

    /// The file to write (atomically): .npy, or CSV when the name ends in .csv; `-` writes CSV
    /// to stdout.
    #[arg(long, short, value_name = "OUT.npy|OUT.csv|-")]
    output: PathBuf,

    /// Write the responsibilities [N, K] (float64) instead of labels (Gaussian mixtures only).
    #[arg(long)]
    proba: bool,

    /// Where the responsibilities are computed.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, value_name = "B")]
    backend: BackendArg,
}

pub fn run(cmd: PredictCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    check_output(&cmd.output)?;
    if !is_stdout(&cmd.output) {
        check_distinct_files(
            &[("--input", &cmd.input.input), ("--model", &cmd.model)],
            &[("--output", &cmd.output)],
        )?;
    }
    let backend = Backend::from(cmd.backend);
    let model = load_any_model(&cmd.model)?;
    let model = match model {
        AnyModel::Hmm(m) => {
            return super::hmm::predict(m, &cmd.input, &cmd.output, cmd.proba, backend, ui);
        }
        AnyModel::Lda(m) => {
            return super::lda::predict(m, &cmd.input, &cmd.output, cmd.proba, cmd.backend, ui);
        }
        other => {
            cmd.input.reject_lengths(other.kind())?;
            other
        }
    };
    if cmd.proba && matches!(model, AnyModel::KMeans(_)) {
        return Err(CliError::usage(format!(
            "--proba: {} is a k-means model, which has no probabilities (each sample belongs to its nearest center); drop --proba for the labels, or fit a Gaussian mixture (--model gmm)",
            cmd.model.display()
        )));
    }
    let names = match &model {
        AnyModel::Gmm(m) => m.feature_names(),
        AnyModel::KMeans(m) => m.feature_names(),
        AnyModel::Hmm(_) | AnyModel::Lda(_) => None,
    };
    let (data, _) = cmd.input.open_named(ui, names)?;
    let in_file = |e| about_file(e, &cmd.input.input);
    let (labels, k, what) = match model {
        AnyModel::Gmm(model) => {
            let model = model.with_backend(backend);
            if cmd.proba {
                let proba = model.predict_proba(&data).map_err(in_file)?;
                write_proba(&cmd.output, &proba)?;
                ui.note(format!(
                    "predict: responsibilities [{}, {}] (float64) → {}",
                    proba.nrows(),
                    proba.ncols(),
                    output::display(&cmd.output)
                ));
                return Ok(ExitCode::SUCCESS);
            }
            let labels = model.predict(&data).map_err(in_file)?;
            (labels, model.n_components(), "component")
        }
        AnyModel::KMeans(model) => {
            let model = model.with_backend(backend);
            let labels = model.predict(&data).map_err(in_file)?;
            (labels, model.n_clusters(), "cluster")
        }
        AnyModel::Hmm(_) | AnyModel::Lda(_) => unreachable!("handled above"),
    };
    let mut counts = vec![0usize; k];
    for &l in &labels {
        counts[l] += 1;
    }
    let labels: Array1<i64> = labels.mapv(|l| l as i64);
    write_labels(&cmd.output, &labels)?;
    ui.note(format!(
        "predict: {} labels (int64), samples per {what} {counts:?} → {}",
        labels.len(),
        output::display(&cmd.output)
    ));
    Ok(ExitCode::SUCCESS)
}
