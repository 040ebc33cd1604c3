//! LDA on the GPU against the f64 CPU engine (the oracle) and scikit-learn's fixtures
//! (`scripts/make_fixtures_lda.py`, scikit-learn 1.9.1), with the contract's GPU tolerances:
//! 5e-3 relative on λ, 2e-3 on the bound, perplexity and θ; labels may differ on 0.5 % of the
//! documents.
//!
//! - Whole fits (10 iterations from the fixtures' init): λ against the CPU's and scikit-learn's,
//!   every iteration's bound; `score`, `transform` and `predict` of scikit-learn's model.
//! - One E-step's statistics (the expected word-topic counts, the document bound) against the
//!   CPU's, on corpora that exercise every path of the kernels: an empty document, one-word
//!   documents, a word in more than `SEG` documents (several segments), K = 1, K > 256 (one
//!   word slice per topic), many chunks, streamed chunks, and a document long enough that
//!   llvmpipe's loop budget splits its γ updates over several dispatches.
#![cfg(feature = "gpu")]

mod common;

use std::path::{Path, PathBuf};

use common::{assert_close, gpu_backend, shared_context};
use emgpu::Backend;
use emgpu::data::sparse::CountMatrix;
use emgpu::em::{EStep, Model};
use emgpu::models::lda::cpu::CpuLdaEngine;
use emgpu::models::lda::gpu::{GpuLdaEngine, GpuLdaOptions, SEG};
use emgpu::models::lda::synth::{CorpusSpec, corpus};
use emgpu::models::lda::{
    FittedLda, LatentDirichletAllocation, LdaInit, LdaModel, LdaParams, LdaStats, random_components,
};
use ndarray::{Array1, Array2};
use ndarray_npy::ReadNpyExt;
use serde_json::Value;

const LAMBDA_RTOL: f64 = 5e-3;
const RTOL: f64 = 2e-3;

fn fixture(case: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lda")
        .join(case)
        .join(file)
}

fn json(case: &str, file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(case, file)).unwrap()).unwrap()
}

fn flat(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect()
}

fn fit(case: &str, x: &CountMatrix, backend: Backend) -> FittedLda {
    let init = json(case, "init.json");
    let k = init["n_components"].as_u64().unwrap() as usize;
    LatentDirichletAllocation::params(k)
        .doc_topic_prior(init["doc_topic_prior"].as_f64().unwrap())
        .topic_word_prior(init["topic_word_prior"].as_f64().unwrap())
        .init(LdaInit::Components(flat(&init["components"])))
        .max_iter(10)
        .tol(0.0)
        .backend(backend)
        .fit(x)
        .unwrap()
}

fn check_case(case: &str) {
    let Some(gpu) = gpu_backend(&format!("gpu_lda {case}")) else {
        return;
    };
    let x = CountMatrix::open(&fixture(case, "X.npz")).unwrap();
    let expected = json(case, "expected.json");
    let g = fit(case, &x, gpu);
    let c = fit(case, &x, Backend::Cpu);
    assert_eq!(g.report().unwrap().backend, Backend::Gpu);
    assert_eq!(g.n_iter(), 10);
    assert_close(
        &format!("{case}: λ GPU vs CPU"),
        g.components(),
        c.components(),
        LAMBDA_RTOL,
        0.0,
    );
    assert_close(
        &format!("{case}: λ GPU vs scikit-learn"),
        g.components(),
        &flat(&expected["components"]),
        LAMBDA_RTOL,
        0.0,
    );
    assert_close(
        &format!("{case}: bound trace"),
        g.bound_trace(),
        c.bound_trace(),
        RTOL,
        0.0,
    );

    // score, transform and predict of scikit-learn's fitted model.
    let model =
        FittedLda::from_json(&std::fs::read_to_string(fixture(case, "expected.json")).unwrap())
            .unwrap()
            .with_backend(gpu);
    let (s, report) = model.score(&x).unwrap();
    assert_eq!(report.backend, Backend::Gpu);
    let (ws, wp) = (
        expected["score"].as_f64().unwrap(),
        expected["perplexity"].as_f64().unwrap(),
    );
    println!(
        "{case}: GPU score {} vs scikit-learn {ws}, perplexity {} vs {wp}",
        s.score, s.perplexity
    );
    assert_close(&format!("{case}: score"), &[s.score], &[ws], RTOL, 0.0);
    assert_close(
        &format!("{case}: perplexity"),
        &[s.perplexity],
        &[wp],
        RTOL,
        0.0,
    );
    let (theta, report) = model.transform_with_report(&x).unwrap();
    assert_eq!(report.backend, Backend::Gpu);
    let want =
        Array2::<f64>::read_npy(std::fs::File::open(fixture(case, "theta.npy")).unwrap()).unwrap();
    assert_close(
        &format!("{case}: θ"),
        theta.as_slice().unwrap(),
        want.as_slice().unwrap(),
        0.0,
        RTOL,
    );
    let labels =
        Array1::<i64>::read_npy(std::fs::File::open(fixture(case, "labels.npy")).unwrap()).unwrap();
    let got = model.predict(&x).unwrap();
    let differ = got
        .iter()
        .zip(&labels)
        .filter(|(a, b)| **a as i64 != **b)
        .count();
    assert!(
        differ as f64 <= 0.005 * labels.len() as f64,
        "{case}: {differ} of {} labels differ",
        labels.len()
    );
}

#[test]
fn docstring_corpus_on_the_gpu_matches_the_cpu_and_scikit_learn() {
    check_case("docstrings");
}

#[test]
fn synthetic_corpus_with_an_empty_document_on_the_gpu_matches() {
    check_case("synthetic");
}

/// One E-step's statistics on the GPU (with `options`) against the CPU's; returns the γ updates
/// the engine ran per dispatch.
fn compare_e_step(
    what: &str,
    x: &CountMatrix,
    k: usize,
    alpha: f64,
    options: GpuLdaOptions,
) -> usize {
    let model = LdaModel {
        n_components: k,
        n_features: x.n_cols(),
        doc_topic_prior: alpha,
        topic_word_prior: 0.05,
    };
    let p = model
        .prepare(&LdaParams {
            components: random_components(&model, 7),
        })
        .unwrap();
    let ctx = shared_context().unwrap();
    let mut gpu = GpuLdaEngine::with_options(ctx, x, &model, String::new(), options).unwrap();
    let g = gpu.e_step(&p).unwrap();
    let c = CpuLdaEngine::new(x, String::new()).e_step(&p).unwrap();
    check_stats(what, &g, &c);
    println!(
        "{what}: {} chunks, resident {}, {} γ updates per dispatch, doc bound GPU {} CPU {}",
        gpu.n_chunks(),
        gpu.is_resident(),
        gpu.updates_per_dispatch(),
        g.doc_bound,
        c.doc_bound
    );
    gpu.updates_per_dispatch()
}

fn check_stats(what: &str, g: &LdaStats, c: &LdaStats) {
    assert_eq!(g.n_words, c.n_words, "{what}: words");
    assert_eq!(g.n_docs, c.n_docs, "{what}: documents");
    assert_eq!(g.topic_bound, c.topic_bound, "{what}: topic bound");
    assert_close(
        &format!("{what}: doc bound"),
        &[g.doc_bound],
        &[c.doc_bound],
        RTOL,
        0.0,
    );
    // Expected counts: relative, with a floor of a millionth of all words (a count that small
    // moves no λ beyond the prior).
    assert_close(
        &format!("{what}: word-topic counts"),
        &g.word_topic,
        &c.word_topic,
        LAMBDA_RTOL,
        1e-6 * c.n_words,
    );
}

fn synthetic(n_docs: usize, n_terms: usize, k: usize, mean_length: f64, seed: u64) -> CountMatrix {
    corpus(&CorpusSpec {
        n_docs,
        n_terms,
        n_topics: k,
        mean_length,
        alpha: 0.2,
        eta: 0.05,
        seed,
    })
    .unwrap()
    .x
}

#[test]
fn e_step_matches_the_cpu_on_edge_corpora() {
    if gpu_backend("e_step_matches_the_cpu_on_edge_corpora").is_none() {
        return;
    }
    // An empty document, one-word documents, and term 0 in more than SEG documents.
    let n = SEG + 40;
    let mut indptr = vec![0usize];
    let (mut ids, mut cnts) = (Vec::new(), Vec::new());
    for d in 0..n {
        match d % 7 {
            3 => {}
            5 => {
                ids.push(((d * 13) % 30) as u32);
                cnts.push(2.0);
            }
            _ => {
                ids.extend([0u32, 1 + (d % 29) as u32]);
                cnts.extend([1.0 + (d % 3) as f64, 0.5]);
            }
        }
        indptr.push(ids.len());
    }
    let x = CountMatrix::from_csr(n, 30, indptr, ids, cnts).unwrap();
    for k in [1, 3] {
        compare_e_step(
            &format!("edges k={k}"),
            &x,
            k,
            0.3,
            GpuLdaOptions::default(),
        );
    }
    let x = synthetic(300, 120, 4, 40.0, 3);
    // K > 64 (the document kernel's workgroup): several topics per invocation.
    compare_e_step("k=300", &x, 300, 0.1, GpuLdaOptions::default());
    // Many chunks, resident and streamed.
    for resident in [true, false] {
        compare_e_step(
            &format!("chunks of 37 documents, resident {resident}"),
            &x,
            6,
            0.2,
            GpuLdaOptions {
                chunk_docs: Some(37),
                resident: Some(resident),
            },
        );
    }
}

#[test]
fn a_long_document_splits_its_updates_and_matches_the_cpu() {
    if gpu_backend("a_long_document_splits_its_updates_and_matches_the_cpu").is_none() {
        return;
    }
    // Two documents of 3000 distinct terms and K = 40: on llvmpipe (a loop budget of 60,000 per
    // invocation) fewer than 100 γ updates fit in one dispatch.
    let v = 3000;
    let ids: Vec<u32> = (0..v as u32)
        .chain((0..v as u32).rev().step_by(2))
        .collect();
    let mut sorted_second: Vec<u32> = ids[v..].to_vec();
    sorted_second.sort_unstable();
    let ids: Vec<u32> = ids[..v].iter().copied().chain(sorted_second).collect();
    let cnts: Vec<f64> = (0..ids.len()).map(|i| 1.0 + (i % 5) as f64).collect();
    let x = CountMatrix::from_csr(2, v, vec![0, v, ids.len()], ids, cnts).unwrap();
    let updates = compare_e_step("long documents", &x, 40, 0.1, GpuLdaOptions::default());
    if shared_context().unwrap().loop_budget().is_some() {
        assert!(updates < 100, "the updates were not split: {updates}");
    }
}

#[test]
fn a_fit_from_random_init_tracks_the_cpu() {
    let Some(gpu) = gpu_backend("a_fit_from_random_init_tracks_the_cpu") else {
        return;
    };
    let x = synthetic(600, 200, 5, 60.0, 5);
    let fit = |b| {
        LatentDirichletAllocation::params(5)
            .doc_topic_prior(0.2)
            .topic_word_prior(0.05)
            .max_iter(5)
            .seed(1)
            .backend(b)
            .fit(&x)
            .unwrap()
    };
    let (g, c) = (fit(gpu), fit(Backend::Cpu));
    assert_close("λ", g.components(), c.components(), LAMBDA_RTOL, 0.0);
    assert_close("bounds", g.bound_trace(), c.bound_trace(), RTOL, 0.0);
    // The bound of batch variational EM never decreases (up to f32 rounding).
    for w in g.bound_trace().windows(2) {
        assert!(w[1] >= w[0] - 1e-4 * w[0].abs(), "{:?}", g.bound_trace());
    }
}
