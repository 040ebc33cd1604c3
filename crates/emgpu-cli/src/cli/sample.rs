//! `emgpu sample`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use emgpu::data::{check_output_path, write_npy_atomic};
use ndarray::Array1;

use super::{AnyModel, CliError, Ui, at_least_one, check_distinct_files, load_any_model};

/// `emgpu sample --model MODEL.json --n N --output X.npy [--seed S]`
#[derive(Debug, Args)]
#[command(after_help = "\
Writes float64 samples [N, D] as .npy, grouped by component as scikit-learn's `sample` (the count
of each component is multinomial with the model's weights); --labels-output writes each sample's
component (int64 [N]). For a hidden Markov model: one sequence of N steps (hmmlearn's `sample`),
and --labels-output writes its states.")]
pub struct SampleCmd {
    /// The Gaussian mixture model (JSON written by `emgpu fit`).
    #[arg(long, short, value_name = "MODEL.json")]
    model: PathBuf,

    /// Number of samples to draw.
    #[arg(long, short, value_name = "N")]
    n: usize,

    /// The .npy file to write (atomically).
    #[arg(long, short, value_name = "X.npy")]
    output: PathBuf,

    /// Also write the component of every sample (int64 .npy).
    #[arg(long, value_name = "LABELS.npy")]
    labels_output: Option<PathBuf>,

    /// Seed of the random draws.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
}

pub fn run(cmd: SampleCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    at_least_one("--n", cmd.n)?;
    check_output_path(&cmd.output)?;
    if let Some(path) = &cmd.labels_output {
        check_output_path(path)?;
    }
    let mut outputs = vec![("--output", cmd.output.as_path())];
    if let Some(path) = &cmd.labels_output {
        outputs.push(("--labels-output", path.as_path()));
    }
    check_distinct_files(&[("--model", &cmd.model)], &outputs)?;
    let model = match load_any_model(&cmd.model)? {
        AnyModel::Gmm(m) => m,
        AnyModel::Hmm(m) => {
            return super::hmm::sample(
                &m,
                cmd.n,
                cmd.seed,
                &cmd.output,
                cmd.labels_output.as_deref(),
                ui,
            );
        }
        AnyModel::Lda(_) => {
            return Err(CliError::error(format!(
                "{}: this is an LDA model; sample draws from a Gaussian mixture or a hidden Markov model",
                cmd.model.display()
            )));
        }
        AnyModel::KMeans(_) => {
            return Err(CliError::error(format!(
                "{}: this is a k-means model; sample needs a Gaussian mixture or a hidden Markov model (k-means defines no distribution to draw from)",
                cmd.model.display()
            )));
        }
    };
    let (x, labels) = model.sample(cmd.n, cmd.seed)?;
    write_npy_atomic(&cmd.output, &x)?;
    if let Some(path) = &cmd.labels_output {
        let labels: Array1<i64> = labels.mapv(|l| l as i64);
        write_npy_atomic(path, &labels)?;
    }
    ui.note(format!(
        "sample: {} samples × {} features (float64, seed {}) → {}",
        x.nrows(),
        x.ncols(),
        cmd.seed,
        cmd.output.display()
    ));
    Ok(ExitCode::SUCCESS)
}
