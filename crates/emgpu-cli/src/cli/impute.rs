//! `emgpu impute`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::output::{self, check_output, is_stdout, write_proba};
use super::{
    AnyModel, BackendArg, CliError, InputArgs, MissingArg, Ui, about_file, check_distinct_files,
    load_any_model,
};

/// `emgpu impute --model MODEL.json --input X --output Y.npy`
#[derive(Debug, Args)]
#[command(after_help = "\
Writes the input [N, D] as float64 with each missing entry (NaN; in CSV an empty, NA, NaN, ...
cell) replaced by its conditional mean E[x_m | x_o] under the Gaussian mixture: the components'
conditional means weighted by the responsibilities of the row's observed entries. Observed
entries are copied unchanged (bit for bit, as float64). A row with no observed entry is an error
naming it. .npy, or CSV (header: the model's feature names, else x0, x1, ...) when the name ends in .csv; `-o -` writes CSV to
stdout. With --backend gpu (or auto on a hardware GPU) the responsibilities of the complete rows
and of the large missingness-pattern groups come from the GPU, the rest and the conditional means
from the CPU; the backend line on stderr says where rows ran.")]
pub struct ImputeCmd {
    /// The Gaussian mixture model (JSON written by `emgpu fit`).
    #[arg(long, short, value_name = "MODEL.json")]
    model: PathBuf,

    #[command(flatten)]
    input: InputArgs,

    /// The file to write (atomically): .npy, or CSV when the name ends in .csv; `-` writes CSV
    /// to stdout.
    #[arg(long, short, value_name = "OUT.npy|OUT.csv|-")]
    output: PathBuf,

    /// Where the responsibilities are computed.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, value_name = "B")]
    backend: BackendArg,
}

pub fn run(mut cmd: ImputeCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    check_output(&cmd.output)?;
    if !is_stdout(&cmd.output) {
        check_distinct_files(
            &[("--input", &cmd.input.input), ("--model", &cmd.model)],
            &[("--output", &cmd.output)],
        )?;
    }
    cmd.input.reject_lengths("a Gaussian mixture")?;
    let model = match load_any_model(&cmd.model)? {
        AnyModel::Gmm(m) => m,
        other => {
            return Err(CliError::error(format!(
                "{}: this is {}; impute needs a Gaussian mixture (fit one with --missing em)",
                cmd.model.display(),
                other.kind()
            )));
        }
    };
    // Missing cells are what impute is for: read them as missing whatever the flags say.
    cmd.input.missing = Some(MissingArg::Em);
    let (data, _) = cmd.input.open_named(ui, model.feature_names())?;
    let model = model.with_backend(cmd.backend.into());
    let (filled, report) = model
        .impute_with_report(&data)
        .map_err(|e| about_file(e, &cmd.input.input))?;
    ui.note(super::describe_backend(&report));
    write_imputed(&cmd.output, &filled, model.feature_names())?;
    ui.note(format!(
        "impute: {} rows × {} features (float64) → {}",
        filled.nrows(),
        filled.ncols(),
        output::display(&cmd.output)
    ));
    Ok(ExitCode::SUCCESS)
}

/// The completed data: float64 `.npy`, or CSV with the model's feature names (else `x0, x1,
/// ...`) as header.
fn write_imputed(
    path: &std::path::Path,
    x: &ndarray::Array2<f64>,
    names: Option<&[String]>,
) -> Result<(), CliError> {
    if output::is_csv(path) {
        let header: Vec<String> = match names {
            Some(n) => n.to_vec(),
            None => (0..x.ncols()).map(|j| format!("x{j}")).collect(),
        };
        return output::write_matrix_csv(path, x, &header);
    }
    write_proba(path, x)
}
