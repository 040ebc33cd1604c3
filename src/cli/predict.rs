//! `emgpu predict`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use emgpu::Backend;
use emgpu::data::{check_output_path, write_npy_atomic};
use ndarray::Array1;

use super::{BackendArg, CliError, InputArgs, Ui, about_file, load_model};

/// `emgpu predict --model MODEL.json --input X --output LABELS.npy [--proba]`
#[derive(Debug, Args)]
#[command(after_help = "\
Writes int64 labels [N] (the most likely component of each sample, scikit-learn's `predict`), or
with --proba float64 responsibilities [N, K] (scikit-learn's `predict_proba`), as .npy.")]
pub struct PredictCmd {
    /// The model (JSON written by `emgpu fit`).
    #[arg(long, short, value_name = "MODEL.json")]
    model: PathBuf,

    #[command(flatten)]
    input: InputArgs,

    /// The .npy file to write (atomically).
    #[arg(long, short, value_name = "OUT.npy")]
    output: PathBuf,

    /// Write the responsibilities [N, K] (float64) instead of labels.
    #[arg(long)]
    proba: bool,

    /// Where the responsibilities are computed.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, value_name = "B")]
    backend: BackendArg,
}

pub fn run(cmd: PredictCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    check_output_path(&cmd.output)?;
    let model = load_model(&cmd.model)?.with_backend(Backend::from(cmd.backend));
    let data = cmd.input.open()?;
    let in_file = |e| about_file(e, &cmd.input.input);
    if cmd.proba {
        let proba = model.predict_proba(&data).map_err(in_file)?;
        write_npy_atomic(&cmd.output, &proba)?;
        ui.note(format!(
            "predict: responsibilities [{}, {}] (float64) → {}",
            proba.nrows(),
            proba.ncols(),
            cmd.output.display()
        ));
    } else {
        let labels = model.predict(&data).map_err(in_file)?;
        let mut counts = vec![0usize; model.n_components()];
        for &l in &labels {
            counts[l] += 1;
        }
        let labels: Array1<i64> = labels.mapv(|l| l as i64);
        write_npy_atomic(&cmd.output, &labels)?;
        ui.note(format!(
            "predict: {} labels (int64), samples per component {counts:?} → {}",
            labels.len(),
            cmd.output.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
