//! `emgpu bench --missing`: the time per EM iteration of a fit with missing values (grouped and
//! streamed layouts) against the complete-data fit of the same size, on the two workloads of
//! issue 12 ([`MissingWorkload`]: nycflights13-sized with 3 patterns, 1M × 16 with 20 % MCAR).

use std::time::Instant;

use emgpu::em::{EStep, Model};
use emgpu::models::gmm::missing::stream::stream_groups;
use emgpu::models::gmm::missing::{
    CPU_GROUP_ROWS, GPU_GROUP_ROWS, MissingEngine, MissingIndex, Scan, StreamEngine,
    engine::group_datasets,
};
use emgpu::models::gmm::{GmmModel, gmm_engine};
use emgpu::synth::{MissingData, MissingWorkload};
use emgpu::{Backend, CovarianceType, Dataset, GmmParams};
use serde::Serialize;
use serde_json::json;

use super::{CliError, Ui, print_result};

/// Components of the workloads (the K).
const K: usize = 8;

/// What `bench --missing` runs.
pub struct MissingBench {
    /// The workloads' rows are their full size times this (in (0, 1]).
    pub scale: f64,
    /// Timed iterations per variant (after one untimed).
    pub iters: usize,
    /// Backends to time.
    pub backends: Vec<Backend>,
    /// One line of JSON instead of the table.
    pub json: bool,
}

/// One timed variant (complete data, grouped, streamed) on one backend.
#[derive(Debug, Serialize)]
struct Variant {
    /// Setup (engine construction; for grouped: the grouping; for streamed: the scan).
    setup_ms: f64,
    /// Median time per iteration (prepare + E-step + M-step).
    median_iter_ms: f64,
    /// Mean log-likelihood per row (observed entries) of the last E-step.
    final_lower_bound: f64,
    /// Where the rows ran (the engine's report).
    ran_on: String,
    device: String,
    note: String,
}

/// One workload on one backend.
#[derive(Debug, Serialize)]
struct Row {
    workload: &'static str,
    backend: String,
    n: usize,
    d: usize,
    k: usize,
    patterns: usize,
    incomplete_rows_pct: f64,
    missing_entries_pct: f64,
    complete: Variant,
    grouped: Variant,
    streamed: Variant,
    grouped_ratio: f64,
    streamed_ratio: f64,
    /// |grouped − streamed| / |grouped| of the final lower bounds (the same EM: they agree).
    lower_bound_rel_diff: f64,
}

/// Times `iters` EM iterations of `engine` from `start` after one untimed one: the median ms
/// per iteration and the last E-step's mean log-likelihood.
fn time_em(
    engine: &mut dyn EStep<GmmModel>,
    model: &GmmModel,
    start: &GmmParams,
    iters: usize,
) -> Result<(f64, f64), CliError> {
    let mut params = start.clone();
    let mut times = Vec::with_capacity(iters);
    let mut lower_bound = f64::NAN;
    for i in 0..=iters {
        let t = Instant::now();
        let prepared = model.prepare(&params)?;
        let stats = engine.e_step(&prepared)?;
        lower_bound = stats.log_likelihood / stats.n_samples;
        params = model.m_step(&stats)?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], lower_bound))
}

fn variant(
    engine: &mut dyn EStep<GmmModel>,
    setup: Instant,
    model: &GmmModel,
    start: &GmmParams,
    iters: usize,
) -> Result<Variant, CliError> {
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;
    let report = engine.report();
    let (median_iter_ms, final_lower_bound) = time_em(engine, model, start, iters)?;
    Ok(Variant {
        setup_ms,
        median_iter_ms,
        final_lower_bound,
        ran_on: report.backend.to_string(),
        device: report.device,
        note: report.reason,
    })
}

/// One workload on one backend: complete data, grouped layout, streamed layout.
fn run_one(
    w: MissingWorkload,
    data: &MissingData,
    backend: Backend,
    iters: usize,
) -> Result<Row, CliError> {
    let (n, d) = (data.n, data.d);
    let model = GmmModel {
        covariance_type: CovarianceType::Full,
        n_components: K,
        n_features: d,
        reg_covar: 1e-6,
    };
    let start = &data.truth;
    let complete = {
        let full = Dataset::from_slice(&data.complete, n, d)?;
        let t = Instant::now();
        let mut e = gmm_engine(backend, &full, CovarianceType::Full, K, Default::default())?;
        variant(e.as_mut(), t, &model, start, iters)?
    };
    // The missing-data engines run where the complete-data engine did (`auto`: by its size).
    let on_gpu = complete.ran_on == Backend::Gpu.to_string();
    let holey = Dataset::from_slice(&data.holey, n, d)?.with_missing_values();
    let (grouped, patterns, incomplete, n_missing) = {
        let t = Instant::now();
        let index = MissingIndex::build(&holey)?;
        let group_rows = if on_gpu {
            GPU_GROUP_ROWS
        } else {
            CPU_GROUP_ROWS
        };
        let groups = group_datasets(&index, group_rows)?;
        let engine_backend = if on_gpu { Backend::Gpu } else { Backend::Cpu };
        let mut e = MissingEngine::new(
            &index,
            &groups,
            engine_backend,
            CovarianceType::Full,
            K,
            Default::default(),
        )?;
        let v = variant(&mut e, t, &model, start, iters)?;
        let incomplete: usize = index
            .patterns()
            .iter()
            .filter(|p| !p.missing.is_empty())
            .map(|p| p.rows.len())
            .sum();
        (v, index.patterns().len(), incomplete, index.n_missing())
    };
    let streamed = {
        let t = Instant::now();
        let scan = Scan::of(&holey)?;
        if on_gpu {
            let groups = stream_groups(&holey, &scan, GPU_GROUP_ROWS)?;
            let mut e = StreamEngine::with_engines(
                &holey,
                None,
                Some(&scan),
                &groups,
                Backend::Gpu,
                CovarianceType::Full,
                K,
                Default::default(),
            )?;
            variant(&mut e, t, &model, start, iters)?
        } else {
            let mut e = StreamEngine::new(&holey, None, Some(&scan), "");
            variant(&mut e, t, &model, start, iters)?
        }
    };
    let pct = |a: usize, b: usize| (1e4 * a as f64 / b as f64).round() / 100.0;
    Ok(Row {
        workload: w.name(),
        backend: backend.to_string(),
        n,
        d,
        k: K,
        patterns,
        incomplete_rows_pct: pct(incomplete, n),
        missing_entries_pct: pct(n_missing, n * d),
        grouped_ratio: grouped.median_iter_ms / complete.median_iter_ms,
        lower_bound_rel_diff: (grouped.final_lower_bound - streamed.final_lower_bound).abs()
            / grouped.final_lower_bound.abs(),
        streamed_ratio: streamed.median_iter_ms / complete.median_iter_ms,
        complete,
        grouped,
        streamed,
    })
}

/// Runs `emgpu bench --missing`.
pub fn bench(b: &MissingBench, ui: &Ui) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for w in MissingWorkload::ALL {
        let n = ((w.n() as f64 * b.scale).round() as usize).max(K);
        ui.note(format!(
            "bench --missing: {} ({n} × {}), generating",
            w.name(),
            w.d()
        ));
        let data = w.generate(n)?;
        for &backend in &b.backends {
            ui.note(format!("bench --missing: {} on {backend}", w.name()));
            rows.push(run_one(w, &data, backend, b.iters)?);
        }
    }
    if b.json {
        let doc = json!({
            "mode": "missing",
            "iters": b.iters,
            "scale": b.scale,
            "k": K,
            "covariance": "full",
            "rows": rows,
        });
        return print_result(&doc.to_string());
    }
    print_result(&format!(
        "emgpu bench --missing: K = {K} full covariances, median of {} iterations (prepare + E-step + M-step) from the true parameters",
        b.iters
    ))?;
    print_result("")?;
    print_result(&format!(
        "{:<8} {:<4} {:>9} {:>3} {:>8} {:>10} {:>12} {:>18} {:>18}",
        "workload",
        "",
        "N",
        "D",
        "patterns",
        "incomplete",
        "complete ms",
        "grouped ms (×)",
        "streamed ms (×)"
    ))?;
    for r in &rows {
        print_result(&format!(
            "{:<8} {:<4} {:>9} {:>3} {:>8} {:>9.2}% {:>12.1} {:>11.1} ({:>4.2}) {:>11.1} ({:>4.2})",
            r.workload,
            r.backend,
            r.n,
            r.d,
            r.patterns,
            r.incomplete_rows_pct,
            r.complete.median_iter_ms,
            r.grouped.median_iter_ms,
            r.grouped_ratio,
            r.streamed.median_iter_ms,
            r.streamed_ratio,
        ))?;
    }
    print_result("")?;
    for r in &rows {
        print_result(&format!(
            "{} on {}: grouped: {}",
            r.workload, r.backend, r.grouped.note
        ))?;
        print_result(&format!(
            "{} on {}: streamed: {}",
            r.workload, r.backend, r.streamed.note
        ))?;
        print_result(&format!(
            "{} on {}: final lower bounds of the grouped and streamed layouts agree to {:.1e} relative",
            r.workload, r.backend, r.lower_bound_rel_diff
        ))?;
    }
    Ok(())
}
