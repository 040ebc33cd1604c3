//! The hidden Markov model in the CLI: `fit --model hmm`, and `score`, `predict`, `sample`,
//! `show` of an HMM model file; `--lengths` (sequence lengths).

use std::path::Path;
use std::process::ExitCode;

use emgpu::data::write_npy_atomic;
use emgpu::models::hmm::{FittedHmm, GaussianHmm, HmmInit};
use emgpu::{Backend, Control, Dataset};
use ndarray::Array1;
use ndarray_npy::ReadNpyExt;
use serde_json::json;

use super::init::InitArg;
use super::output::{self, write_labels, write_proba};
use super::progress::FitProgress;
use super::{AnyModel, CliError, InputArgs, Ui, about_file, load_any_model, num, print_result};

/// Reads `--lengths`: a 1-D integer `.npy` (int64, int32, uint64 or uint32), or a text file with
/// one length per line (blank lines skipped). Every length must be at least 1.
pub fn read_lengths(path: &Path) -> Result<Vec<usize>, CliError> {
    let bad = |what: String| CliError::error(format!("--lengths {}: {what}", path.display()));
    let values: Vec<i128> = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        let open = || std::fs::File::open(path).map_err(|e| bad(format!("cannot open it ({e})")));
        if let Ok(a) = Array1::<i64>::read_npy(open()?) {
            a.iter().map(|v| *v as i128).collect()
        } else if let Ok(a) = Array1::<i32>::read_npy(open()?) {
            a.iter().map(|v| *v as i128).collect()
        } else if let Ok(a) = Array1::<u64>::read_npy(open()?) {
            a.iter().map(|v| *v as i128).collect()
        } else if let Ok(a) = Array1::<u32>::read_npy(open()?) {
            a.iter().map(|v| *v as i128).collect()
        } else {
            return Err(bad(
                "not a 1-D integer .npy (int64, int32, uint64 or uint32) of sequence lengths, or a truncated one".into(),
            ));
        }
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read it as text ({e})")))?;
        let mut v = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            v.push(line.parse::<i128>().map_err(|_| {
                bad(format!(
                    "line {}: \"{line}\" is not an integer length (one length per line)",
                    i + 1
                ))
            })?);
        }
        v
    };
    if values.is_empty() {
        return Err(bad("no sequence lengths in it".into()));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v < 1 {
                Err(bad(format!(
                    "sequence {i} has length {v}; every sequence needs at least one row"
                )))
            } else {
                usize::try_from(v)
                    .map_err(|_| bad(format!("sequence {i}: length {v} is too large")))
            }
        })
        .collect()
}

/// The input of an HMM command: its rows cut by `--lengths` (one sequence without it).
pub fn open_sequences(input: &InputArgs, ui: &Ui) -> Result<Dataset<'static>, CliError> {
    let (data, _) = input.open_named(ui, None)?;
    match &input.lengths {
        None => Ok(data),
        Some(path) => {
            let lengths = read_lengths(path)?;
            data.with_sequence_lengths(lengths).map_err(|e| {
                let why = match e {
                    emgpu::Error::InvalidParameter(m) => m,
                    other => other.to_string(),
                };
                CliError::error(format!(
                    "--lengths {}: {why} ({}); give one length per sequence, in order, adding up to the number of rows",
                    path.display(),
                    input.input.display()
                ))
            })
        }
    }
}

/// The HMM's `--init`: `kmeans` (hmmlearn's default) or an HMM model file (warm start).
pub fn hmm_init(init: Option<&InitArg>) -> Result<HmmInit, CliError> {
    match init {
        None => Ok(HmmInit::Kmeans),
        Some(InitArg::Method(m)) if *m == "kmeans" => Ok(HmmInit::Kmeans),
        Some(InitArg::Method(m)) => Err(CliError::usage(format!(
            "--init {m}: a hidden Markov model starts from kmeans (hmmlearn's default) or an HMM model JSON file"
        ))),
        Some(InitArg::File(path)) => match load_any_model(path)? {
            AnyModel::Hmm(m) => Ok(HmmInit::Params(m.params().clone())),
            _ => Err(CliError::usage(format!(
                "--init {}: not a hidden Markov model (\"model\": \"hmm\"); start from kmeans or an HMM model file",
                path.display()
            ))),
        },
    }
}

/// What `fit --model hmm` needs from the fit command.
pub struct HmmFitRequest<'a> {
    pub input: &'a InputArgs,
    pub hmm: GaussianHmm,
    pub n_init: usize,
    pub max_iter: usize,
    pub output: &'a Path,
    pub labels_output: Option<&'a Path>,
    pub json: bool,
    pub json_common: &'a dyn Fn(&Dataset, Option<&emgpu::BackendReport>, f64) -> serde_json::Value,
    pub note_backend: &'a dyn Fn(Option<&emgpu::BackendReport>),
}

/// `fit --model hmm`.
pub fn fit(req: HmmFitRequest<'_>, ui: &Ui) -> Result<ExitCode, CliError> {
    let data = open_sequences(req.input, ui)?;
    let in_file = |e| about_file(e, &req.input.input);
    // Seconds of every iteration of the kept restart (E-step + M-step).
    let mut iter_seconds: Vec<Vec<f64>> = Vec::new();
    let (model, seconds) = FitProgress::timed(ui, "fit", req.max_iter, req.n_init, |bar| {
        req.hmm
            .fit_with_control(&data, &mut |p| {
                if p.iteration == 1 {
                    iter_seconds.push(Vec::new());
                }
                if let Some(v) = iter_seconds.last_mut() {
                    v.push(p.e_step_seconds + p.m_step_seconds);
                }
                bar.update(p);
                Control::Continue(())
            })
            .map_err(in_file)
    })?;
    (req.note_backend)(model.backend_report());
    if let Some(r) = model.backend_report()
        && r.reason.contains("redone by the CPU")
    {
        ui.note(super::describe_backend(r));
    }
    emgpu::data::write_text_atomic(req.output, &model.to_json())?;
    if let Some(path) = req.labels_output {
        let states = model.predict(&data).map_err(in_file)?;
        let states: Array1<i64> = states.mapv(|s| s as i64);
        write_labels(path, &states)?;
        ui.note(format!(
            "labels: {} Viterbi states (int64) → {}",
            states.len(),
            output::display(path)
        ));
    }
    let n_seq = data.sequence_lengths().map_or(1, |l| l.len());
    ui.note(format!(
        "fit: HMM, {} states ({} covariances) on {} sequences, {} samples × {} features, {}, {} iterations ({}) in {:.3} s, log-likelihood {} → {}",
        model.n_components(),
        model.covariance_type(),
        n_seq,
        data.n_samples(),
        data.n_features(),
        model.backend_report().map_or(Backend::Cpu, |r| r.backend),
        model.n_iter(),
        if model.converged() { "converged" } else { "NOT converged: raise --max-iter or --tol" },
        seconds,
        num(model.lower_bound()),
        req.output.display()
    ));
    if req.json {
        let init = model.init_lower_bounds();
        let best = init.iter().position(|v| *v == model.lower_bound());
        let iters = best
            .and_then(|b| iter_seconds.get(b))
            .cloned()
            .unwrap_or_default();
        let mut line = json!({
            "model": "hmm",
            "n_iter": model.n_iter(),
            "converged": model.converged(),
            "lower_bound": model.lower_bound(),
            "lower_bound_is": "the total log-likelihood of the data (hmmlearn's monitor_.history[-1])",
            "n_components": model.n_components(),
            "covariance_type": model.covariance_type().name(),
            "n_sequences": n_seq,
            "n_init": req.n_init,
            "init_lower_bounds": init,
            "best_init": best,
            "iter_seconds": iters,
            "seconds_per_iteration": iters.iter().sum::<f64>() / iters.len().max(1) as f64,
        });
        if let (Some(l), serde_json::Value::Object(c)) = (
            line.as_object_mut(),
            (req.json_common)(&data, model.backend_report(), seconds),
        ) {
            l.extend(c);
        }
        print_result(&line.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `score` of an HMM: the total log-likelihood (hmmlearn's `score`).
pub fn score(
    model: FittedHmm,
    input: &InputArgs,
    backend: Backend,
    json_out: bool,
    ui: &Ui,
) -> Result<ExitCode, CliError> {
    let model = model.with_backend(backend);
    let data = open_sequences(input, ui)?;
    let (score, report) = model
        .score_with_report(&data)
        .map_err(|e| about_file(e, &input.input))?;
    let n = data.n_samples();
    let (bic, aic) = emgpu::em::information_criteria(score, model.n_parameters(), n);
    let n_seq = data.sequence_lengths().map_or(1, |l| l.len());
    if json_out {
        let line = json!({
            "score": score,
            "score_is": "the total log-likelihood of the sequences (hmmlearn's score)",
            "n_samples": n,
            "n_sequences": n_seq,
            "n_features": model.n_features(),
            "n_components": model.n_components(),
            "covariance_type": model.covariance_type().name(),
            "mean_log_likelihood": score / n as f64,
            "bic": bic,
            "aic": aic,
            "model": "hmm",
            "backend": report.backend.to_string(),
            "device": report.device,
        });
        print_result(&line.to_string())?;
    } else {
        print_result(&format!("score        {score}"))?;
        print_result(&format!("n_samples    {n}"))?;
        print_result(&format!("n_sequences  {n_seq}"))?;
        print_result(&format!("bic          {bic}"))?;
        print_result(&format!("aic          {aic}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `predict` of an HMM: Viterbi states, or with `proba` the state posteriors.
pub fn predict(
    model: FittedHmm,
    input: &InputArgs,
    out: &Path,
    proba: bool,
    backend: Backend,
    ui: &Ui,
) -> Result<ExitCode, CliError> {
    let model = model.with_backend(backend);
    let data = open_sequences(input, ui)?;
    let in_file = |e| about_file(e, &input.input);
    if proba {
        let p = model.predict_proba(&data).map_err(in_file)?;
        write_proba(out, &p)?;
        ui.note(format!(
            "predict: state posteriors [{}, {}] (float64) → {}",
            p.nrows(),
            p.ncols(),
            output::display(out)
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let (log_p, states) = model.decode(&data).map_err(in_file)?;
    let mut counts = vec![0usize; model.n_components()];
    states.iter().for_each(|&s| counts[s] += 1);
    let states: Array1<i64> = states.mapv(|s| s as i64);
    write_labels(out, &states)?;
    ui.note(format!(
        "predict: {} Viterbi states (int64), rows per state {counts:?}, log-probability of the paths {} → {}",
        states.len(),
        num(log_p),
        output::display(out)
    ));
    Ok(ExitCode::SUCCESS)
}

/// `sample` of an HMM: one sequence of `n` observations and (optionally) its states.
pub fn sample(
    model: &FittedHmm,
    n: usize,
    seed: u64,
    out: &Path,
    labels: Option<&Path>,
    ui: &Ui,
) -> Result<ExitCode, CliError> {
    let (x, states) = model.sample(n, seed)?;
    write_npy_atomic(out, &x)?;
    if let Some(path) = labels {
        let states: Array1<i64> = states.mapv(|s| s as i64);
        write_npy_atomic(path, &states)?;
    }
    ui.note(format!(
        "sample: one sequence of {} steps × {} features (float64, seed {}) → {}",
        x.nrows(),
        x.ncols(),
        seed,
        out.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `show` of an HMM.
pub fn show(model: &FittedHmm, json_out: bool) -> Result<(), CliError> {
    let (k, d) = (model.n_components(), model.n_features());
    let finite = |v: f64| {
        if v.is_finite() {
            json!(v)
        } else {
            serde_json::Value::Null
        }
    };
    if json_out {
        let line = json!({
            "model": "hmm",
            "covariance_type": model.covariance_type().name(),
            "n_components": k,
            "n_features": d,
            "n_parameters": model.n_parameters(),
            "lower_bound": finite(model.lower_bound()),
            "n_iter": model.n_iter(),
            "converged": model.converged(),
            "startprob": model.startprob().to_vec(),
            "transmat": model.transmat().outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
            "means": model.means().outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        });
        return print_result(&line.to_string());
    }
    print_result(&format!(
        "hidden Markov model: {k} states, {} covariances, {d} features, {} free parameters",
        model.covariance_type(),
        model.n_parameters()
    ))?;
    if model.lower_bound().is_finite() {
        print_result(&format!(
            "fit: {} iterations ({}), total log-likelihood {}",
            model.n_iter(),
            if model.converged() {
                "converged"
            } else {
                "not converged"
            },
            num(model.lower_bound())
        ))?;
    }
    let sp = model.startprob();
    let tm = model.transmat();
    let means = model.means();
    print_result("state  start   transitions to 0..K-1                 mean")?;
    for s in 0..k {
        let row: Vec<String> = tm.row(s).iter().map(|v| format!("{v:.4}")).collect();
        let mean: Vec<String> = means.row(s).iter().map(|v| num(*v)).collect();
        print_result(&format!(
            "{s:>5}  {:.4}  [{}]  [{}]",
            sp[s],
            row.join(", "),
            mean.join(", ")
        ))?;
    }
    Ok(())
}

/// What `bench --model hmm` times.
pub struct HmmBench {
    /// Number of sequences (with `long`: multiplied by `steps` into one sequence).
    pub sequences: usize,
    /// Steps per sequence.
    pub steps: usize,
    /// One sequence of `sequences × steps` steps instead.
    pub long: bool,
    pub d: usize,
    pub k: usize,
    pub covariance: emgpu::CovarianceType,
    pub iters: usize,
    pub seed: u64,
    pub backends: Vec<Backend>,
    pub chunk: Option<usize>,
    pub json: bool,
}

/// The HMM the benchmark data are drawn from: K states on a line `spread` apart in every
/// feature, unit-scale covariances, sticky transitions (0.9 to stay).
fn bench_truth(b: &HmmBench) -> Result<emgpu::models::hmm::HmmParams, CliError> {
    let (k, d) = (b.k, b.d);
    let stay = if k == 1 { 1.0 } else { 0.9 };
    let mut transmat = vec![(1.0 - stay) / (k.max(2) - 1) as f64; k * k];
    for i in 0..k {
        transmat[i * k + i] = stay;
    }
    let means: Vec<f64> = (0..k * d)
        .map(|i| 3.0 * (i / d) as f64 * if (i % d) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let covariances = bench_covariances(b.covariance, k, d, 1.0);
    Ok(emgpu::models::hmm::HmmParams::new(
        b.covariance,
        vec![1.0 / k as f64; k],
        transmat,
        means,
        covariances,
        d,
    )?)
}

/// Covariances of `scale` on the diagonal (full and tied: with 0.3·scale between neighbours).
fn bench_covariances(cov: emgpu::CovarianceType, k: usize, d: usize, scale: f64) -> Vec<f64> {
    use emgpu::CovarianceType as C;
    let matrix = || {
        let mut m = vec![0.0; d * d];
        for i in 0..d {
            m[i * d + i] = scale;
            if i + 1 < d {
                m[i * d + i + 1] = 0.3 * scale;
                m[(i + 1) * d + i] = 0.3 * scale;
            }
        }
        m
    };
    match cov {
        C::Full => matrix().repeat(k),
        C::Tied => matrix(),
        C::Diag => vec![scale; k * d],
        C::Spherical => vec![scale; k],
    }
}

/// `emgpu bench --model hmm`: Baum-Welch iterations timed on each backend from the same start.
pub fn bench(b: &HmmBench, ui: &Ui) -> Result<ExitCode, CliError> {
    use emgpu::em::{Model, run_em};
    use emgpu::models::hmm::{HmmModel, HmmParams, hmm_engine};
    let (k, d) = (b.k, b.d);
    if k == 0 || d == 0 || b.sequences == 0 || b.steps == 0 {
        return Err(CliError::usage(
            "--k, --d, --sequences and --steps must be at least 1",
        ));
    }
    let truth = FittedHmm::from_params(bench_truth(b)?)?;
    let started = std::time::Instant::now();
    let n = b.sequences.saturating_mul(b.steps);
    let mut x: Vec<f64> = Vec::with_capacity(n.saturating_mul(d));
    for s in 0..b.sequences {
        let (xs, _) = truth.sample(b.steps, b.seed.wrapping_add(s as u64))?;
        x.extend(xs.iter());
    }
    let lengths = if b.long {
        vec![n]
    } else {
        vec![b.steps; b.sequences]
    };
    let generate_ms = started.elapsed().as_secs_f64() * 1e3;
    let data = Dataset::from_slice(&x, n, d)?.with_sequence_lengths(lengths)?;
    // The start: the true means moved by a state-dependent offset, covariances twice too wide,
    // transitions and start uniform.
    let start = {
        let t = truth.params();
        let means: Vec<f64> = t
            .means()
            .iter()
            .enumerate()
            .map(|(i, m)| m + 0.8 * (((i * 7) % 5) as f64 - 2.0) / 2.0)
            .collect();
        let uniform = vec![1.0 / k as f64; k];
        HmmParams::new(
            b.covariance,
            uniform.clone(),
            uniform.repeat(k),
            means,
            bench_covariances(b.covariance, k, d, 2.0),
            d,
        )?
    };
    let model = HmmModel {
        covariance_type: b.covariance,
        n_components: k,
        n_features: d,
        reg_covar: 1e-6,
    };
    let rule = emgpu::em::StopRule {
        tol: 0.0,
        max_iter: b.iters,
    };
    let options = emgpu::device::EngineOptions {
        chunk_rows: b.chunk,
        ..Default::default()
    };
    let mut runs = Vec::new();
    for &backend in &b.backends {
        let t0 = std::time::Instant::now();
        let mut engine = hmm_engine(backend, &data, b.covariance, k, options)?;
        let setup_ms = t0.elapsed().as_secs_f64() * 1e3;
        let (mut iter_ms, mut e_ms) = (Vec::new(), Vec::new());
        let run = run_em(&model, engine.as_mut(), start.clone(), rule, 0, &mut |p| {
            iter_ms.push((p.e_step_seconds + p.m_step_seconds) * 1e3);
            e_ms.push(p.e_step_seconds * 1e3);
            Control::Continue(())
        })?;
        let report = engine.report();
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (it, es) = (median(&mut iter_ms), median(&mut e_ms));
        runs.push(json!({
            "backend": report.backend.to_string(),
            "device": report.device,
            "setup_ms": setup_ms,
            "median_iter_ms": it,
            "median_e_step_ms": es,
            "ns_per_step": it * 1e6 / n as f64,
            "final_log_likelihood": run.lower_bound,
        }));
        let _ = model.n_parameters();
    }
    let lls: Vec<f64> = runs
        .iter()
        .filter_map(|r| r["final_log_likelihood"].as_f64())
        .collect();
    let max_rel = lls
        .iter()
        .map(|v| ((v - lls[0]) / lls[0]).abs())
        .fold(0.0, f64::max);
    if b.json {
        let doc = json!({
            "model": "hmm",
            "n_sequences": if b.long { 1 } else { b.sequences },
            "steps_per_sequence": if b.long { n } else { b.steps },
            "n": n,
            "d": d,
            "k": k,
            "covariance_type": b.covariance.name(),
            "iters": b.iters,
            "generate_ms": generate_ms,
            "runs": runs,
            "max_log_likelihood_rel_diff": max_rel,
        });
        return print_result(&doc.to_string()).map(|_| ExitCode::SUCCESS);
    }
    let shape = if b.long {
        format!("one sequence of {n} steps")
    } else {
        format!("{} sequences × {} steps", b.sequences, b.steps)
    };
    ui.note(format!("data generated in {generate_ms:.0} ms"));
    print_result(&format!(
        "emgpu bench --model hmm: {shape}, {d} features, {k} states, {} covariances, {} Baum-Welch iterations from the same start (tol 0)",
        b.covariance, b.iters
    ))?;
    print_result("")?;
    print_result(&format!(
        "{:<4} {:<44} {:>9} {:>9} {:>9} {:>9} {:>24}",
        "", "device", "setup ms", "ms/iter", "E-step", "ns/step", "final log-likelihood"
    ))?;
    for r in &runs {
        let mut device = r["device"].as_str().unwrap_or("").to_string();
        if device.chars().count() > 44 {
            device = device.chars().take(43).collect::<String>() + "…";
        }
        print_result(&format!(
            "{:<4} {:<44} {:>9.1} {:>9.2} {:>9.2} {:>9.1} {:>24.10}",
            r["backend"].as_str().unwrap_or(""),
            device,
            r["setup_ms"].as_f64().unwrap_or(f64::NAN),
            r["median_iter_ms"].as_f64().unwrap_or(f64::NAN),
            r["median_e_step_ms"].as_f64().unwrap_or(f64::NAN),
            r["ns_per_step"].as_f64().unwrap_or(f64::NAN),
            r["final_log_likelihood"].as_f64().unwrap_or(f64::NAN),
        ))?;
    }
    if runs.len() > 1 {
        print_result(&format!(
            "final log-likelihoods agree to {max_rel:.1e} relative"
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
