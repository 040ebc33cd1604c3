//! Latent Dirichlet Allocation on the command line: `fit --model lda`, and `score`, `predict`,
//! `show` of an LDA model file. The input is a document-term count matrix: a SciPy
//! `save_npz` `.npz` (CSR, CSC or COO) or a dense 2-D `.npy`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use emgpu::data::sparse::CountMatrix;
use emgpu::data::{check_output_path, write_text_atomic};
use emgpu::models::lda::{FittedLda, LatentDirichletAllocation, LdaInit};
use emgpu::{Backend, Control, Error};
use ndarray::Array1;
use serde_json::json;

use super::init::InitArg;
use super::output::{self, write_labels, write_proba};
use super::{
    AnyModel, BackendArg, CliError, InputArgs, Ui, describe_backend, load_any_model, num,
    print_result,
};

/// What `fit --model lda` was given.
pub struct LdaFitRequest<'a> {
    /// `--input`.
    pub input: &'a InputArgs,
    /// `--components`.
    pub k: usize,
    /// `--doc-topic-prior` [default: 1/K].
    pub doc_topic_prior: Option<f64>,
    /// `--topic-word-prior` [default: 1/K].
    pub topic_word_prior: Option<f64>,
    /// `--init`: `random` [default] or an LDA model file (its `components`).
    pub init: Option<&'a InitArg>,
    /// `--max-iter` [default: 10].
    pub max_iter: Option<usize>,
    /// `--tol` [default: 0].
    pub tol: Option<f64>,
    /// `--seed`.
    pub seed: u64,
    /// `--backend`.
    pub backend: BackendArg,
    /// `--output`.
    pub output: &'a Path,
    /// `--json`.
    pub json: bool,
}

/// A prior from the command line: finite and > 0.
fn check_prior(flag: &str, v: Option<f64>) -> Result<(), CliError> {
    match v {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(CliError::usage(format!(
            "{flag} must be a finite number > 0 (a Dirichlet parameter), got {v}"
        ))),
        _ => Ok(()),
    }
}

/// Reads the count matrix of `--input`.
pub fn open_counts(input: &InputArgs) -> Result<CountMatrix, CliError> {
    input.reject_lengths("LDA")?;
    if input.columns.is_some() || input.drop.is_some() || input.dims.is_some() {
        return Err(CliError::usage(
            "LDA reads a document-term matrix (.npz from scipy.sparse.save_npz, or a dense 2-D .npy): --columns, --drop and --dims do not apply",
        ));
    }
    Ok(CountMatrix::open(&input.input)?)
}

/// The library error about `x` or the model, with the flag or file that helps.
fn lda_error(e: Error, input: &Path) -> CliError {
    match e {
        Error::DimensionMismatch { expected, got } => CliError::error(format!(
            "{}: the matrix has {got} columns (terms) but the model has {expected} (n_features): use the vocabulary the model was fitted on",
            input.display()
        )),
        other => super::about_file(other, input),
    }
}

/// `emgpu fit --model lda ...`.
pub fn fit(req: LdaFitRequest<'_>, ui: &Ui) -> Result<ExitCode, CliError> {
    check_prior("--doc-topic-prior", req.doc_topic_prior)?;
    check_prior("--topic-word-prior", req.topic_word_prior)?;
    if let Some(t) = req.tol
        && !(t.is_finite() && t >= 0.0)
    {
        return Err(CliError::usage(format!(
            "--tol must be a finite number ≥ 0 (LDA: the change of perplexity; 0 runs --max-iter iterations), got {t}"
        )));
    }
    check_output_path(req.output)?;
    let x = open_counts(req.input)?;
    let mut lda = LatentDirichletAllocation::params(req.k)
        .seed(req.seed)
        .backend(req.backend.into())
        .tol(req.tol.unwrap_or(0.0));
    if let Some(a) = req.doc_topic_prior {
        lda = lda.doc_topic_prior(a);
    }
    if let Some(b) = req.topic_word_prior {
        lda = lda.topic_word_prior(b);
    }
    if let Some(m) = req.max_iter {
        lda = lda.max_iter(m);
    }
    let init = match req.init {
        None | Some(InitArg::Method("random")) => LdaInit::Random,
        Some(InitArg::Method(other)) => {
            return Err(CliError::usage(format!(
                "--init {other}: LDA starts from `random` (scikit-learn's gamma(100, 0.01) draw) or from an LDA model JSON file (its \"components\")"
            )));
        }
        Some(InitArg::File(path)) => {
            let m = match load_any_model(path)? {
                AnyModel::Lda(m) => m,
                other => {
                    return Err(CliError::usage(format!(
                        "--init {}: this is {}; LDA starts from an LDA model file or `random`",
                        path.display(),
                        other.kind()
                    )));
                }
            };
            if m.n_components() != req.k || m.n_features() != x.n_cols() {
                return Err(CliError::error(format!(
                    "--init {}: its components are [{}][{}], but --components is {} and {} has {} terms (columns)",
                    path.display(),
                    m.n_components(),
                    m.n_features(),
                    req.k,
                    req.input.input.display(),
                    x.n_cols()
                )));
            }
            LdaInit::Components(m.components().to_vec())
        }
    };
    let lda = lda.init(init);
    let t0 = Instant::now();
    let fitted = lda
        .fit_with_progress(&x, &mut |p| {
            ui.note(format!(
                "iteration {}: perplexity {} (E-step {:.3} s)",
                p.iteration,
                num((-p.lower_bound).exp()),
                p.e_step_seconds
            ));
            Control::Continue(())
        })
        .map_err(|e| lda_error(e, &req.input.input))?;
    let seconds = t0.elapsed().as_secs_f64();
    write_text_atomic(req.output, &fitted.to_json())?;
    if req.backend == BackendArg::Auto
        && let Some(r) = fitted.report()
    {
        ui.note(describe_backend(r));
    }
    let last = fitted.bound_trace().last().copied().unwrap_or(f64::NAN);
    let perplexity = (-last / x.total()).exp();
    ui.note(format!(
        "lda: {} topics, {} documents, {} terms, {} words; {} iterations in {:.3} s; perplexity {} (under the λ of the last E-step) → {}",
        req.k,
        x.n_rows(),
        x.n_cols(),
        num(x.total()),
        fitted.n_iter(),
        seconds,
        num(perplexity),
        req.output.display()
    ));
    if req.json {
        let r = fitted.report();
        let line = json!({
            "model": "lda",
            "n_components": req.k,
            "n_features": x.n_cols(),
            "n_samples": x.n_rows(),
            "n_words": x.total(),
            "n_iter": fitted.n_iter(),
            "bound_trace": fitted.bound_trace(),
            "last_e_step_perplexity": perplexity,
            "doc_topic_prior": fitted.model().doc_topic_prior,
            "topic_word_prior": fitted.model().topic_word_prior,
            "backend": r.map(|r| r.backend.to_string()),
            "device": r.map(|r| r.device.clone()),
            "fit_seconds": seconds,
            "output": req.output.display().to_string(),
        });
        print_result(&line.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn with_backend(model: FittedLda, backend: BackendArg) -> FittedLda {
    model.with_backend(Backend::from(backend))
}

/// `emgpu score` of an LDA model.
pub fn score(
    model: FittedLda,
    input: &InputArgs,
    backend: BackendArg,
    as_json: bool,
    ui: &Ui,
) -> Result<ExitCode, CliError> {
    let x = open_counts(input)?;
    let model = with_backend(model, backend);
    let (s, report) = model.score(&x).map_err(|e| lda_error(e, &input.input))?;
    if backend == BackendArg::Auto {
        ui.note(describe_backend(&report));
    }
    if as_json {
        let line = json!({
            "score": s.score,
            "perplexity": s.perplexity,
            "n_samples": s.n_docs,
            "n_words": s.n_words,
            "n_components": model.n_components(),
            "n_features": model.n_features(),
            "model": "lda",
            "backend": report.backend.to_string(),
            "device": report.device,
        });
        print_result(&line.to_string())?;
    } else {
        print_result(&format!("score       {}", s.score))?;
        print_result(&format!("perplexity  {}", s.perplexity))?;
        print_result(&format!("n_samples   {}", s.n_docs))?;
        print_result(&format!("n_words     {}", s.n_words))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `emgpu predict` of an LDA model: the argmax topic per document (int64), or with `--proba`
/// the normalized document-topic distribution `[N, K]` (scikit-learn's `transform`).
pub fn predict(
    model: FittedLda,
    input: &InputArgs,
    out: &Path,
    proba: bool,
    backend: BackendArg,
    ui: &Ui,
) -> Result<ExitCode, CliError> {
    let x = open_counts(input)?;
    let model = with_backend(model, backend);
    let in_file = |e| lda_error(e, &input.input);
    let note_backend = |report: &emgpu::BackendReport| {
        if backend == BackendArg::Auto {
            ui.note(describe_backend(report));
        }
    };
    if proba {
        let (theta, report) = model.transform_with_report(&x).map_err(in_file)?;
        note_backend(&report);
        write_proba(out, &theta)?;
        ui.note(format!(
            "predict: document-topic distributions [{}, {}] (float64) → {}",
            theta.nrows(),
            theta.ncols(),
            output::display(out)
        ));
    } else {
        let (labels, report) = model.predict_with_report(&x).map_err(in_file)?;
        note_backend(&report);
        let mut counts = vec![0usize; model.n_components()];
        for &l in &labels {
            counts[l] += 1;
        }
        let labels: Array1<i64> = labels.iter().map(|&l| l as i64).collect();
        write_labels(out, &labels)?;
        ui.note(format!(
            "predict: {} labels (int64, the most likely topic), documents per topic {counts:?} → {}",
            labels.len(),
            output::display(out)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `emgpu show` of an LDA model: K, V, priors, iterations, and each topic's top terms (by λ),
/// named from `--vocab` (one term per line, in column order) when given.
pub fn show(
    m: &FittedLda,
    as_json: bool,
    vocab: Option<&PathBuf>,
    top: usize,
) -> Result<(), CliError> {
    let names: Option<Vec<String>> = match vocab {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::from(Error::Io {
                    path: path.clone(),
                    source: e,
                })
            })?;
            let names: Vec<String> = text.lines().map(str::to_owned).collect();
            if names.len() != m.n_features() {
                return Err(CliError::error(format!(
                    "--vocab {}: {} lines, but the model has {} terms (one term per line, in column order)",
                    path.display(),
                    names.len(),
                    m.n_features()
                )));
            }
            Some(names)
        }
    };
    let term = |i: usize| names.as_ref().map_or(i.to_string(), |n| n[i].clone());
    let v = m.n_features();
    let topics: Vec<(f64, Vec<(String, f64)>)> = (0..m.n_components())
        .map(|k| {
            let row = &m.components()[k * v..(k + 1) * v];
            let total: f64 = row.iter().sum();
            let tops = m
                .top_terms(k, top.min(v))
                .into_iter()
                .map(|i| (term(i), row[i] / total))
                .collect();
            (total, tops)
        })
        .collect();
    if as_json {
        let line = json!({
            "model": "lda",
            "n_components": m.n_components(),
            "n_features": v,
            "doc_topic_prior": m.model().doc_topic_prior,
            "topic_word_prior": m.model().topic_word_prior,
            "n_iter": m.n_iter(),
            "bound_trace": m.bound_trace(),
            "topics": topics.iter().map(|(total, tops)| json!({
                "lambda_sum": total,
                "top_terms": tops.iter().map(|t| &t.0).collect::<Vec<_>>(),
                "top_weights": tops.iter().map(|t| t.1).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        return print_result(&line.to_string());
    }
    print_result(&format!(
        "model              lda (latent Dirichlet allocation)\nn_components       {}\nn_features         {v}\ndoc_topic_prior    {}\ntopic_word_prior   {}\nn_iter             {}",
        m.n_components(),
        m.model().doc_topic_prior,
        m.model().topic_word_prior,
        m.n_iter()
    ))?;
    for (k, (total, tops)) in topics.iter().enumerate() {
        let words: Vec<String> = tops.iter().map(|(w, _)| w.clone()).collect();
        print_result(&format!(
            "topic {k:>3} ({} words): {}",
            num(*total),
            words.join(" ")
        ))?;
    }
    Ok(())
}

/// What `bench --model lda` times.
pub struct LdaBench {
    /// Documents.
    pub docs: usize,
    /// Terms.
    pub vocab: usize,
    /// Mean words per document.
    pub doc_length: f64,
    /// Topics.
    pub k: usize,
    /// EM iterations per backend.
    pub iters: usize,
    /// Seed of the corpus and of the initial λ.
    pub seed: u64,
    /// Backends to time (empty: the CPU).
    pub backends: Vec<Backend>,
    /// Write the corpus (CSR arrays) and the initial λ here and exit.
    pub write_data: Option<PathBuf>,
    /// One line of JSON.
    pub json: bool,
}

/// `emgpu bench --model lda`: a synthetic corpus drawn from an LDA (α = 0.1, η = 0.01 over
/// `k` topics), fitted from a seeded random λ for `iters` iterations per backend; the median
/// seconds per iteration (prepare + E-step with the bound + M-step).
pub fn bench(b: &LdaBench, ui: &Ui) -> Result<ExitCode, CliError> {
    use emgpu::models::lda::random_components;
    use emgpu::models::lda::synth::{CorpusSpec, corpus};
    use ndarray_npy::WriteNpyExt;
    super::at_least_one("--k", b.k)?;
    super::at_least_one("--docs", b.docs)?;
    super::at_least_one("--vocab", b.vocab)?;
    let t0 = Instant::now();
    let spec = CorpusSpec {
        n_docs: b.docs,
        n_terms: b.vocab,
        n_topics: b.k,
        mean_length: b.doc_length,
        alpha: 0.1,
        eta: 0.01,
        seed: b.seed,
    };
    let c = corpus(&spec)?;
    let x = c.x;
    let (alpha, eta) = (1.0 / b.k as f64, 1.0 / b.k as f64);
    let lda = LatentDirichletAllocation::params(b.k)
        .doc_topic_prior(alpha)
        .topic_word_prior(eta)
        .max_iter(b.iters)
        .tol(0.0);
    let model = lda.model(x.n_cols())?;
    let init = random_components(&model, b.seed);
    ui.note(format!(
        "lda bench: {} documents, {} terms, {} words ({} non-zeros), K = {}; generated in {:.1} s",
        x.n_rows(),
        x.n_cols(),
        num(x.total()),
        x.nnz(),
        b.k,
        t0.elapsed().as_secs_f64()
    ));
    if let Some(dir) = &b.write_data {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::error(format!("{}: {e}", dir.display())))?;
        let write =
            |name: &str, a: &dyn Fn(std::fs::File) -> Result<(), ndarray_npy::WriteNpyError>| {
                let p = dir.join(name);
                let f = std::fs::File::create(&p)
                    .map_err(|e| CliError::error(format!("{}: {e}", p.display())))?;
                a(f).map_err(|e| CliError::error(format!("{}: {e}", p.display())))
            };
        let indptr: Array1<i64> = x.indptr().iter().map(|&v| v as i64).collect();
        let (mut indices, mut data) = (Vec::with_capacity(x.nnz()), Vec::with_capacity(x.nnz()));
        for i in 0..x.n_rows() {
            let (idx, val) = x.row(i);
            indices.extend(idx.iter().map(|&j| j as i32));
            data.extend_from_slice(val);
        }
        write("indptr.npy", &|f| indptr.write_npy(f))?;
        write("indices.npy", &|f| {
            Array1::from(indices.clone()).write_npy(f)
        })?;
        write("data.npy", &|f| Array1::from(data.clone()).write_npy(f))?;
        write("shape.npy", &|f| {
            ndarray::arr1(&[x.n_rows() as i64, x.n_cols() as i64]).write_npy(f)
        })?;
        let m = FittedLda::from_components(b.k, x.n_cols(), alpha, eta, init)?;
        write_text_atomic(&dir.join("init.json"), &m.to_json())?;
        ui.note(format!(
            "wrote {}/{{indptr,indices,data,shape}}.npy (CSR) and init.json",
            dir.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let backends = if b.backends.is_empty() {
        vec![Backend::Cpu]
    } else {
        b.backends.clone()
    };
    let mut rows = Vec::new();
    for backend in backends {
        let mut times = Vec::new();
        let started = Instant::now();
        let mut last = Instant::now();
        let fit = lda
            .clone()
            .backend(backend)
            .init(LdaInit::Components(init.clone()))
            .fit_with_progress(&x, &mut |p| {
                let now = Instant::now();
                times.push((now - last).as_secs_f64());
                last = now;
                ui.note(format!(
                    "{backend}: iteration {} in {:.3} s (E-step {:.3} s), perplexity {}",
                    p.iteration,
                    times[times.len() - 1],
                    p.e_step_seconds,
                    num((-p.lower_bound).exp())
                ));
                Control::Continue(())
            });
        let fit = match fit {
            Ok(f) => f,
            Err(e) => {
                ui.note(format!("{backend}: not timed: {e}"));
                rows.push(json!({"backend": backend.to_string(), "error": e.to_string()}));
                continue;
            }
        };
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let perp = (-fit.bound_trace().last().copied().unwrap_or(f64::NAN) / x.total()).exp();
        let report = fit.report().cloned();
        print_result(&format!(
            "{backend}: median {median:.3} s per iteration ({} iterations, {:.1} s in all, first {:.3} s), last perplexity {}, {}",
            times.len(),
            started.elapsed().as_secs_f64(),
            times[0],
            num(perp),
            report.as_ref().map_or(String::new(), |r| r.device.clone())
        ))?;
        rows.push(json!({
            "backend": backend.to_string(),
            "device": report.map(|r| r.device),
            "seconds_per_iteration": median,
            "iteration_seconds": times,
            "perplexity_trace": fit.bound_trace().iter().map(|s| (-s / x.total()).exp()).collect::<Vec<_>>(),
        }));
    }
    if b.json {
        let line = json!({
            "model": "lda", "n_docs": x.n_rows(), "n_features": x.n_cols(), "nnz": x.nnz(),
            "n_words": x.total(), "n_components": b.k, "iters": b.iters, "results": rows,
        });
        print_result(&line.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}
