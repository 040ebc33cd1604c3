//! `emgpu bench`: EM iterations timed on each backend from the same start, on a built-in
//! synthetic mixture (or your own data), with the lower bounds side by side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::bench_run::{BenchOptions, BenchProgress, BenchReport, bench_data};
use clap::Args;
use emgpu::data::{write_npy_atomic, write_text_atomic};
use emgpu::device::gpu::{AutoChoice, auto_choice};
use emgpu::device::{CpuPath, EngineOptions};
use emgpu::synth::Workload;
use emgpu::{Backend, CovarianceType, FittedGmm};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::{AnyModel, CliError, InputArgs, Ui, about_file, load_any_model, print_result};

/// `emgpu bench [--n 1000000 --d 16 --k 16 --covariance full --iters 10 --backend cpu,gpu] [--json]`
#[derive(Debug, Args)]
#[command(after_help = "\
Generates a deterministic synthetic mixture (seeded: the same flags give the same data), then on
each backend fits it from the same initial parameters for --iters iterations with tol = 0, and
prints: setup time (engine construction: upload, pipelines), the median time per iteration
(prepare + E-step with statistics + M-step) and per E-step, points × iterations per second,
GFLOP/s of the E-step + statistics (flop model in bench_run::flops_per_e_step) and each
backend's final lower bound (they must agree). Without --backend: a hardware GPU first if there is
one, then the CPU; a software adapter (llvmpipe) is only timed when asked for (--backend gpu,cpu).

--missing: EM with missing values (the grouped and streamed layouts) against the complete-data
fit, on two generated workloads of issue 12; --scale 0.01 makes them small.

Your own data: --input X.npy --init MODEL.json times the fit of X from that model's parameters.
--write-data DIR writes the generated data (DIR/X.npy, float32) and initial parameters
(DIR/init.json, a model file) and exits: scripts/compare_sklearn.py uses it.")]
pub struct BenchCmd {
    /// The model: gmm (a Gaussian mixture), hmm (a Gaussian hidden Markov model: Baum-Welch on
    /// --sequences sequences of --steps steps) or lda (--docs documents of about --doc-length
    /// words over --vocab terms, --k topics [default 50]).
    #[arg(long, default_value = "gmm", value_name = "gmm|hmm|lda")]
    model: String,
    /// Number of points (gmm).
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    /// Number of features [default: 16; hmm: 4].
    #[arg(long)]
    d: Option<usize>,
    /// Number of components (hmm: states) [default: 16; hmm: 8].
    #[arg(long)]
    k: Option<usize>,
    /// Covariance type.
    #[arg(long, default_value = "full", value_name = "full|tied|diag|spherical")]
    covariance: CovarianceType,
    /// hmm: number of sequences.
    #[arg(long, default_value_t = 1000)]
    sequences: usize,
    /// hmm: steps per sequence.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// hmm: one sequence of sequences × steps steps instead (parallel in time).
    #[arg(long)]
    long: bool,
    /// EM iterations per backend.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Backends to time, comma-separated (cpu, gpu, auto) [default: the GPU if it is hardware, then cpu].
    #[arg(long, value_delimiter = ',', value_name = "B,B")]
    backend: Option<Vec<String>>,
    /// Rows per chunk (on the GPU a value below N streams the data in chunks).
    #[arg(long, value_name = "ROWS")]
    chunk: Option<usize>,
    /// The CPU path: blocked (GEMM-shaped, the default) or reference (point by point).
    #[arg(long, default_value = "blocked", value_name = "blocked|reference")]
    cpu_path: String,
    /// Seed of the synthetic data and of its initial parameters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Distance between the synthetic components' means, in standard deviations.
    #[arg(long, default_value_t = 5.0)]
    spread: f64,
    /// Time your data instead (with --init MODEL.json).
    #[arg(long, short, value_name = "FILE", requires = "init")]
    input: Option<PathBuf>,
    /// The initial parameters for --input (a Gaussian mixture model file).
    #[arg(long, value_name = "MODEL.json", requires = "input")]
    init: Option<PathBuf>,
    /// Write the generated data and initial parameters into this folder and exit.
    #[arg(long, value_name = "DIR", conflicts_with = "input")]
    write_data: Option<PathBuf>,
    /// lda: documents [default: 200000].
    #[arg(long, value_name = "N")]
    docs: Option<usize>,
    /// lda: vocabulary terms [default: 20000].
    #[arg(long, value_name = "V")]
    vocab: Option<usize>,
    /// lda: mean words per document [default: 100].
    #[arg(long, value_name = "L")]
    doc_length: Option<f64>,
    /// Time EM with missing values instead (issue 12's two workloads, K = 8 full covariances:
    /// 336,776 × 4 with 2.8 % of rows incomplete in 3 patterns, and 1M × 16 with 20 % of
    /// entries missing at random): the grouped and streamed layouts' time per iteration
    /// against the complete-data fit of the same data.
    #[arg(long)]
    missing: bool,
    /// bench --missing: the workloads' rows times this fraction [default: 1].
    #[arg(long, value_name = "F", requires = "missing")]
    scale: Option<f64>,
    /// Print the report as one line of JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Peak and current resident memory of this process (Linux), in MiB.
fn memory_mib() -> serde_json::Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
    };
    json!({ "peak_rss": field("VmHWM:"), "rss_anon": field("RssAnon:"), "rss_file": field("RssFile:") })
}

/// The backends of a run without --backend, and a note for the user when there is no hardware GPU.
fn default_backends() -> (Vec<Backend>, Option<String>) {
    match auto_choice() {
        AutoChoice::Gpu(_) => (vec![Backend::Gpu, Backend::Cpu], None),
        AutoChoice::Cpu { reason } => (
            vec![Backend::Cpu],
            Some(format!(
                "no hardware GPU: {}; timing the CPU backend only",
                super::cli_reason(&reason)
            )),
        ),
    }
}

/// Runs `emgpu bench`.
pub fn run(cmd: BenchCmd, ui: &Ui) -> Result<ExitCode, CliError> {
    if cmd.iters == 0 {
        return Err(CliError::usage("--iters must be at least 1"));
    }
    if cmd.chunk == Some(0) {
        return Err(CliError::usage("--chunk must be at least 1"));
    }
    let cpu_path = match cmd.cpu_path.as_str() {
        "blocked" => CpuPath::Blocked,
        "reference" => CpuPath::Reference,
        other => {
            return Err(CliError::usage(format!(
                "unknown --cpu-path {other:?}; use blocked or reference"
            )));
        }
    };
    let (backends, note) = match &cmd.backend {
        Some(list) => {
            let parsed = list
                .iter()
                .map(|s| s.trim().parse::<Backend>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::usage(e.to_string()))?;
            (parsed, None)
        }
        None if cmd.write_data.is_some() => (Vec::new(), None),
        None => default_backends(),
    };
    if cmd.missing {
        if cmd.model != "gmm"
            || cmd.input.is_some()
            || cmd.write_data.is_some()
            || cmd.d.is_some()
            || cmd.k.is_some()
            || cmd.n != 1_000_000
            || cmd.covariance != CovarianceType::Full
            || cmd.chunk.is_some()
        {
            return Err(CliError::usage(
                "bench --missing times its own two workloads (Gaussian mixtures, K = 8, full covariances); drop --model, --n, --d, --k, --covariance, --chunk, --input and --write-data (--scale makes them smaller)",
            ));
        }
        let scale = cmd.scale.unwrap_or(1.0);
        if !(scale > 0.0 && scale <= 1.0) {
            return Err(CliError::usage(format!(
                "--scale must be in (0, 1] (a fraction of the workloads' sizes), got {scale}"
            )));
        }
        if let Some(note) = &note {
            ui.note(note);
        }
        let b = super::bench_missing::MissingBench {
            scale,
            iters: cmd.iters,
            backends,
            json: cmd.json,
        };
        super::bench_missing::bench(&b, ui)?;
        return Ok(ExitCode::SUCCESS);
    }
    if cmd.model == "lda" {
        let b = super::lda::LdaBench {
            docs: cmd.docs.unwrap_or(200_000),
            vocab: cmd.vocab.unwrap_or(20_000),
            doc_length: cmd.doc_length.unwrap_or(100.0),
            k: cmd.k.unwrap_or(50),
            iters: cmd.iters,
            seed: cmd.seed,
            backends,
            write_data: cmd.write_data.clone(),
            json: cmd.json,
        };
        return super::lda::bench(&b, ui);
    }
    if cmd.model == "hmm" {
        if cmd.input.is_some() || cmd.write_data.is_some() {
            return Err(CliError::usage(
                "bench --model hmm times generated sequences; --input and --write-data are for gmm",
            ));
        }
        if let Some(note) = &note {
            ui.note(note);
        }
        let b = super::hmm::HmmBench {
            sequences: cmd.sequences,
            steps: cmd.steps,
            long: cmd.long,
            d: cmd.d.unwrap_or(4),
            k: cmd.k.unwrap_or(8),
            covariance: cmd.covariance,
            iters: cmd.iters,
            seed: cmd.seed,
            backends,
            chunk: cmd.chunk,
            json: cmd.json,
        };
        return super::hmm::bench(&b, ui);
    } else if cmd.model != "gmm" {
        return Err(CliError::usage(format!(
            "unknown --model {:?}; use gmm, hmm or lda",
            cmd.model
        )));
    }
    let workload = Workload {
        n: cmd.n,
        d: cmd.d.unwrap_or(16),
        k: cmd.k.unwrap_or(16),
        covariance_type: cmd.covariance,
        seed: cmd.seed,
        spread: cmd.spread,
    };
    if cmd.input.is_none() || cmd.init.is_none() {
        // Too large to generate: say so before anything else is printed.
        workload.check_size()?;
    }
    if let Some(note) = &note {
        ui.note(note);
    }
    let opts = BenchOptions {
        iters: cmd.iters,
        engine: EngineOptions {
            chunk_rows: cmd.chunk,
            cpu_path,
        },
        ..Default::default()
    };

    let bar = ui.progress_bars().then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template("bench {spinner} {msg}  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut progress = |p: BenchProgress| {
        if let Some(bar) = &bar {
            bar.set_message(match p {
                BenchProgress::Generating => "generating the data".to_string(),
                BenchProgress::Setup(b) => format!("{b}: building the engine (upload, pipelines)"),
                BenchProgress::Iteration {
                    backend,
                    done,
                    iters,
                } => {
                    format!("{backend}: iteration {done}/{iters}")
                }
            });
        }
    };

    let report = if let (Some(input), Some(init)) = (&cmd.input, &cmd.init) {
        let args = InputArgs::for_path(input.clone());
        let data = args.open()?;
        let init = match load_any_model(init)? {
            AnyModel::Gmm(m) => m.params().clone(),
            other => {
                return Err(CliError::usage(format!(
                    "{}: {}; bench --init needs a Gaussian mixture model",
                    init.display(),
                    other.kind()
                )));
            }
        };
        bench_data(&data, &init, &backends, &opts, &mut progress)
            .map_err(|e| about_file(e, input))?
    } else {
        if let Some(dir) = &cmd.write_data {
            progress(BenchProgress::Generating);
            let synth = workload.generate()?;
            let x = ndarray::ArrayView2::from_shape((synth.n, synth.d), &synth.x[..])
                .map_err(|e| CliError::error(format!("internal: {e}")))?;
            if !dir.is_dir() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CliError::from(emgpu::Error::Io {
                        path: dir.clone(),
                        source: e,
                    })
                })?;
            }
            write_npy_atomic(&dir.join("X.npy"), &x)?;
            let init = FittedGmm::from_params(synth.init.clone())?;
            write_text_atomic(&dir.join("init.json"), &init.to_json())?;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            ui.note(format!(
                "bench: wrote {} ({} × {} float32) and {} (initial parameters)",
                dir.join("X.npy").display(),
                synth.n,
                synth.d,
                dir.join("init.json").display()
            ));
            return Ok(ExitCode::SUCCESS);
        }
        super::bench_run::run(&workload, &backends, &opts, &mut progress)?
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if cmd.json {
        let mut doc =
            serde_json::to_value(&report).map_err(|e| CliError::error(format!("internal: {e}")))?;
        doc["memory_mib"] = memory_mib();
        doc["cpu_path"] = json!(cmd.cpu_path);
        print_result(&doc.to_string())?;
    } else {
        print_table(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(r: &BenchReport) -> Result<(), CliError> {
    let w = &r.workload;
    print_result(&format!(
        "emgpu bench: {} points × {} features, {} {} components, {} iterations from the same start (tol 0)",
        w.n, w.d, w.k, w.covariance_type, r.iters
    ))?;
    print_result(&format!(
        "flop model: {:.2} GFLOP per E-step with statistics; data generated in {:.0} ms",
        r.flops_per_e_step / 1e9,
        r.generate_ms
    ))?;
    print_result("")?;
    print_result(&format!(
        "{:<4} {:<44} {:>9} {:>9} {:>9} {:>9} {:>11} {:>8} {:>20}",
        "",
        "device",
        "setup ms",
        "ms/iter",
        "E-step",
        "M-step",
        "Mpts·it/s",
        "GFLOP/s",
        "final lower bound"
    ))?;
    for run in &r.runs {
        let mut device = run.device.clone();
        if device.chars().count() > 44 {
            device = device.chars().take(43).collect::<String>() + "…";
        }
        print_result(&format!(
            "{:<4} {:<44} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>11.1} {:>8.1} {:>20.12}",
            run.ran_on,
            device,
            run.setup_ms,
            run.median_iter_ms,
            run.median_e_step_ms,
            run.median_m_step_ms,
            run.points_iters_per_s / 1e6,
            run.e_step_gflops,
            run.final_lower_bound
        ))?;
        if !run.note.is_empty() {
            print_result(&format!("     ({})", run.note))?;
        }
    }
    if r.runs.len() > 1 {
        print_result("")?;
        let fastest = r
            .runs
            .iter()
            .map(|x| x.median_iter_ms)
            .fold(f64::INFINITY, f64::min);
        for run in &r.runs {
            print_result(&format!(
                "{}: {:.1}× the fastest's time per iteration",
                run.ran_on,
                run.median_iter_ms / fastest
            ))?;
        }
        print_result(&format!(
            "final lower bounds agree to {:.1e} relative",
            r.max_lower_bound_rel_diff
        ))?;
    }
    Ok(())
}
