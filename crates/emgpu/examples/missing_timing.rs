//! Time per EM iteration (E-step + M-step) with missing entries against the complete-data
//! iteration of the same size (issue 12's benchmark).
//!
//! `missing_timing [ITERS]` (default 3) runs the two workloads of
//! [`emgpu::synth::MissingWorkload`], full covariances, K = 8:
//! - `flights`: 336,776 × 4 (nycflights13's size), about 3 % of rows incomplete in 2 patterns
//!   (2.45 % miss columns 2 and 3, 0.35 % miss column 3, as `dep_delay`/`arr_delay` do);
//! - `mcar`: 1,000,000 × 16 with 20 % of entries missing completely at random (tens of
//!   thousands of patterns; 2.8 % of rows complete).
//!
//! `emgpu bench --missing` times the same workloads from the command line.
//!
//! For each: the complete-data engine on the data before the holes were punched, and the
//! missing-data engine with the default grouping (patterns of ≥ `group_rows` rows through the
//! complete-data engine on their observed columns) and with every incomplete pattern on the
//! direct per-row path, and the streamed layout (memory independent of N; `CHUNK=` and
//! `BLOCKED=` lists compare its chunk sizes and thresholds; `ONLY=streamed` skips the grouped
//! runs). `BACKEND=gpu` runs the engines on
//! the GPU (the rare patterns stay on the CPU); `SMALL=1` divides N by 10.
use std::time::Instant;

use emgpu::em::{EStep, Model};
use emgpu::models::gmm::missing::{
    MissingEngine, MissingIndex, StreamEngine, engine::group_datasets,
};
use emgpu::models::gmm::{GmmEngine, GmmModel, gmm_engine};
use emgpu::synth::{MissingData, MissingWorkload};
use emgpu::{Backend, CovarianceType, Dataset};

/// Seconds per iteration (E-step + M-step) of `engine`, after one warm-up.
fn per_iter(
    engine: &mut dyn EStep<GmmModel>,
    model: &GmmModel,
    params: &emgpu::GmmParams,
    iters: usize,
) -> f64 {
    let prepared = model.prepare(params).expect("prepare");
    let mut step = || {
        let s = engine.e_step(&prepared).expect("e-step");
        let _ = model.m_step(&s).expect("m-step");
    };
    step();
    let t = Instant::now();
    for _ in 0..iters {
        step();
    }
    t.elapsed().as_secs_f64() / iters as f64
}

fn run(workload: MissingWorkload, n: usize, iters: usize) {
    let backend = match std::env::var("BACKEND").as_deref() {
        Ok("gpu") => Backend::Gpu,
        _ => Backend::Cpu,
    };
    let (name, d, k) = (workload.name(), workload.d(), 8);
    let MissingData {
        complete,
        holey,
        truth,
        ..
    } = workload.generate(n).expect("synthetic data");
    let model = GmmModel {
        covariance_type: CovarianceType::Full,
        n_components: k,
        n_features: d,
        reg_covar: 1e-6,
    };
    let full = Dataset::from_slice(&complete, n, d).expect("data");
    let mut engine: Box<dyn GmmEngine> =
        gmm_engine(backend, &full, CovarianceType::Full, k, Default::default()).expect("engine");
    let t_complete = per_iter(engine.as_mut(), &model, &truth, iters);
    drop(engine);

    let data = Dataset::from_slice(&holey, n, d)
        .expect("data")
        .with_missing_values();
    let t = Instant::now();
    let index = MissingIndex::build(&data).expect("index");
    let t_index = t.elapsed().as_secs_f64();
    let incomplete: usize = index
        .patterns()
        .iter()
        .filter(|p| !p.missing.is_empty())
        .map(|p| p.rows.len())
        .sum();
    println!(
        "{name}: N = {n}, D = {d}, K = {k}, full, {backend}: {} patterns, {:.2} % rows incomplete, {:.2} % entries missing; grouping {:.3} s (once)",
        index.patterns().len(),
        100.0 * incomplete as f64 / n as f64,
        100.0 * index.n_missing() as f64 / (n * d) as f64,
        t_index
    );
    println!(
        "  complete data                      {:8.1} ms/iter",
        t_complete * 1e3
    );
    let default_rows = match backend {
        Backend::Gpu => emgpu::models::gmm::missing::GPU_GROUP_ROWS,
        _ => emgpu::models::gmm::missing::CPU_GROUP_ROWS,
    };
    // `GROUP_ROWS=a,b,...` adds thresholds to compare.
    let extra: Vec<usize> = std::env::var("GROUP_ROWS")
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_default();
    let mut runs = vec![(format!("grouped (group_rows {default_rows})"), default_rows)];
    runs.extend(
        extra
            .iter()
            .map(|&r| (format!("grouped (group_rows {r})"), r)),
    );
    runs.push(("every incomplete row direct".to_string(), usize::MAX));
    // The streamed layout (the CPU's default): chunks of `CHUNK=a,b,...` rows (default
    // `stream_chunk_rows(D)`).
    let chunks: Vec<Option<usize>> = match std::env::var("CHUNK") {
        Ok(v) => v.split(',').map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![None],
    };
    // `BLOCKED=a,b,...`: rows of a pattern in a chunk from which the blocked kernel takes them.
    let blocked: Vec<Option<usize>> = match std::env::var("BLOCKED") {
        Ok(v) => v.split(',').map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![None],
    };
    for chunk in chunks {
        for &b in &blocked {
            let mut engine = StreamEngine::new(&data, chunk, None, "");
            if let Some(b) = b {
                engine = engine.with_blocked_rows(b);
            }
            let rows = engine.chunk_rows();
            let t_missing = per_iter(&mut engine, &model, &truth, iters);
            let label = format!(
                "streamed ({rows} rows/chunk, blocked ≥ {})",
                engine.blocked_rows()
            );
            println!(
                "  missing, {label:<27} {:8.1} ms/iter  ({:.2}× complete)",
                t_missing * 1e3,
                t_missing / t_complete,
            );
        }
    }
    // `ONLY=streamed` skips the grouped runs (for A/B timing of the streamed layout).
    if std::env::var("ONLY").is_ok_and(|v| v == "streamed") {
        return;
    }
    for (label, rows) in runs {
        let groups = group_datasets(&index, rows).expect("groups");
        let mut engine = MissingEngine::new(
            &index,
            &groups,
            backend,
            CovarianceType::Full,
            k,
            Default::default(),
        )
        .expect("engine");
        let t_missing = per_iter(&mut engine, &model, &truth, iters);
        println!(
            "  missing, {label:<27} {:8.1} ms/iter  ({:.2}× complete; {} engine groups)",
            t_missing * 1e3,
            t_missing / t_complete,
            groups.len()
        );
    }
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ITERS is a number"))
        .unwrap_or(3);
    let scale = if std::env::var("SMALL").is_ok_and(|v| v == "1") {
        10
    } else {
        1
    };
    for w in MissingWorkload::ALL {
        run(w, w.n() / scale, iters);
    }
}
