//! Times EM iterations of emgpu on a synthetic mixture and prints the report as JSON (one line)
//! or as a table. `scripts/compare_sklearn.py` runs it next to scikit-learn.
//!
//! ```text
//! cargo run --release --example bench_cpu -- --n 1000000 --d 16 --k 16 --covariance full --iters 5
//! cargo run --release --example bench_cpu -- --cpu-path blocked,reference --n 100000
//! cargo run --release --example bench_cpu -- --n 200000 --write-data /tmp/w  # X.npy + init.json
//! cargo run --release --example bench_cpu -- --npy /tmp/w/X.npy --init /tmp/w/init.json  # mapped file
//! ```

use std::path::PathBuf;

use clap::Parser;
use emgpu::backend::{CpuPath, EngineOptions};
use emgpu::bench::{BenchOptions, BenchReport, Workload, bench_data};
use emgpu::{Backend, CovarianceType, Dataset, GmmParams};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    #[arg(long, default_value_t = 16)]
    d: usize,
    #[arg(long, default_value_t = 16)]
    k: usize,
    #[arg(long, default_value = "full")]
    covariance: CovarianceType,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 5.0)]
    spread: f64,
    /// Comma-separated backends.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Comma-separated CPU paths (blocked, reference): each is a separate run.
    #[arg(long, default_value = "blocked")]
    cpu_path: String,
    /// Rows per chunk.
    #[arg(long)]
    chunk: Option<usize>,
    /// Print the report as JSON on one line.
    #[arg(long)]
    json: bool,
    /// Write the data (X.npy, f32) and the initial parameters (init.json) into this folder, then exit.
    #[arg(long)]
    write_data: Option<PathBuf>,
    /// Fit a memory-mapped .npy file (f32, C order) instead of generated data (needs --init).
    #[arg(long)]
    npy: Option<PathBuf>,
    /// Initial parameters (JSON written by --write-data) for --npy.
    #[arg(long)]
    init: Option<PathBuf>,
}

fn params_json(p: &GmmParams) -> serde_json::Value {
    serde_json::json!({
        "covariance_type": p.covariance_type.name(),
        "weights": p.weights,
        "means": p.means,
        "covariances": p.covariances,
        "shape": p.covariance_type.cov_shape(p.n_components, p.n_features),
        "n_components": p.n_components,
        "n_features": p.n_features,
    })
}

fn params_from_json(v: &serde_json::Value) -> Result<GmmParams, Box<dyn std::error::Error>> {
    let f = |key: &str| -> Result<Vec<f64>, Box<dyn std::error::Error>> {
        Ok(serde_json::from_value(v[key].clone())?)
    };
    let cov: CovarianceType = v["covariance_type"]
        .as_str()
        .ok_or("covariance_type")?
        .parse()?;
    let d = v["n_features"].as_u64().ok_or("n_features")? as usize;
    Ok(GmmParams::new(
        cov,
        f("weights")?,
        f("means")?,
        f("covariances")?,
        d,
    )?)
}

/// Peak and current resident memory of this process, from /proc/self/status (Linux), in MiB.
fn memory() -> serde_json::Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    serde_json::json!({
        "peak_rss_mib": field("VmHWM:"),
        "rss_anon_mib": field("RssAnon:"),
        "rss_file_mib": field("RssFile:"),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let backends: Vec<Backend> = args
        .backend
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let paths: Vec<CpuPath> = args
        .cpu_path
        .split(',')
        .map(|s| match s {
            "blocked" => Ok(CpuPath::Blocked),
            "reference" => Ok(CpuPath::Reference),
            other => Err(format!(
                "unknown CPU path {other:?}; use blocked or reference"
            )),
        })
        .collect::<Result<_, _>>()?;
    let workload = Workload {
        n: args.n,
        d: args.d,
        k: args.k,
        covariance_type: args.covariance,
        seed: args.seed,
        spread: args.spread,
    };

    let mapped;
    let synth;
    let (data, init, generate_ms) = if let Some(path) = &args.npy {
        use ndarray_npy::ViewNpyExt;
        let file = std::fs::File::open(path)?;
        // SAFETY: the file is not modified while mapped (it is ours, written by --write-data).
        mapped = unsafe { memmap2::Mmap::map(&file)? };
        let view = ndarray::ArrayView2::<f32>::view_npy(&mapped)?;
        let init_path = args.init.as_ref().ok_or("--npy needs --init")?;
        let init: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(init_path)?)?;
        let (n, d) = view.dim();
        let slice = view.to_slice().ok_or("the .npy file must be in C order")?;
        (
            Dataset::from_slice(slice, n, d)?,
            params_from_json(&init)?,
            0.0,
        )
    } else {
        let t = std::time::Instant::now();
        synth = workload.generate()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if let Some(dir) = &args.write_data {
            std::fs::create_dir_all(dir)?;
            let x = ndarray::ArrayView2::from_shape((synth.n, synth.d), &synth.x[..])?;
            ndarray_npy::write_npy(dir.join("X.npy"), &x)?;
            let doc = serde_json::json!({
                "workload": workload,
                "init": params_json(&synth.init),
                "truth": params_json(&synth.truth),
            });
            std::fs::write(dir.join("init.json"), serde_json::to_string(&doc["init"])?)?;
            std::fs::write(dir.join("workload.json"), serde_json::to_string(&doc)?)?;
            eprintln!("wrote {}/X.npy and init.json", dir.display());
            return Ok(());
        }
        (synth.dataset()?, synth.init.clone(), ms)
    };

    let mut reports: Vec<(CpuPath, BenchReport)> = Vec::new();
    for &path in &paths {
        let opts = BenchOptions {
            iters: args.iters,
            engine: EngineOptions {
                chunk_rows: args.chunk,
                cpu_path: path,
            },
            ..Default::default()
        };
        let mut report = bench_data(&data, &init, &backends, &opts, &mut |_| {})?;
        report.generate_ms = generate_ms;
        if args.npy.is_none() {
            report.workload = workload;
        }
        reports.push((path, report));
    }
    if args.json {
        let doc = serde_json::json!({
            "reports": reports.iter().map(|(p, r)| serde_json::json!({"cpu_path": p.to_string(), "report": r})).collect::<Vec<_>>(),
            "memory": memory(),
        });
        println!("{}", serde_json::to_string(&doc)?);
    } else {
        println!(
            "{:<10} {:<10} {:>10} {:>12} {:>12} {:>12} {:>14} {:>9} {:>22}",
            "backend",
            "cpu path",
            "setup ms",
            "iter ms",
            "E-step ms",
            "M-step ms",
            "pts·it/s",
            "GFLOP/s",
            "final lower bound"
        );
        for (path, r) in &reports {
            for run in &r.runs {
                println!(
                    "{:<10} {:<10} {:>10.1} {:>12.1} {:>12.1} {:>12.2} {:>14.3e} {:>9.1} {:>22.15}",
                    run.ran_on,
                    path.to_string(),
                    run.setup_ms,
                    run.median_iter_ms,
                    run.median_e_step_ms,
                    run.median_m_step_ms,
                    run.points_iters_per_s,
                    run.e_step_gflops,
                    run.final_lower_bound
                );
            }
        }
        println!("memory: {}", memory());
    }
    Ok(())
}
