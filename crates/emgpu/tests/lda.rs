//! LDA against scikit-learn (fixtures from scripts/make_fixtures_lda.py: scikit-learn 1.9.1),
//! dense ≡ sparse, recovery of known topics, bad input.

use std::path::{Path, PathBuf};

use emgpu::Backend;
use emgpu::data::sparse::CountMatrix;
use emgpu::models::lda::synth::{CorpusSpec, corpus};
use emgpu::models::lda::{FittedLda, LatentDirichletAllocation, LdaInit};
use ndarray::{Array1, Array2};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde_json::Value;

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

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// 10 iterations from the fixture's init on the CPU, as the contract's `fit`.
fn fit_case(case: &str, x: &CountMatrix) -> FittedLda {
    let init = json(case, "init.json");
    let k = init["n_components"].as_u64().unwrap() as usize;
    LatentDirichletAllocation::params(k)
        .doc_topic_prior(init["doc_topic_prior"].as_f64().unwrap())
        .topic_word_prior(init["topic_word_prior"].as_f64().unwrap())
        .init(LdaInit::Components(flat(&init["components"])))
        .max_iter(10)
        .tol(0.0)
        .backend(Backend::Cpu)
        .fit(x)
        .unwrap()
}

fn check_case(case: &str) {
    let x = CountMatrix::open(&fixture(case, "X.npz")).unwrap();
    let expected = json(case, "expected.json");
    assert_eq!(x.n_rows() as u64, expected["n_docs"].as_u64().unwrap());
    assert_eq!(x.total(), expected["n_words"].as_f64().unwrap());

    // λ after 10 EM iterations.
    let fitted = fit_case(case, &x);
    assert_eq!(fitted.n_iter(), 10);
    let want = flat(&expected["components"]);
    let worst = fitted
        .components()
        .iter()
        .zip(&want)
        .map(|(a, b)| rel(*a, *b))
        .fold(0.0, f64::max);
    println!("{case}: λ after 10 iterations, max relative difference {worst:.2e}");
    assert!(
        worst < 1e-6,
        "{case}: λ differs from scikit-learn by {worst:e}"
    );

    // The initial model's score is the first entry of the bound trace.
    let init_score = expected["init_score"].as_f64().unwrap();
    let r = rel(fitted.bound_trace()[0], init_score);
    assert!(
        r < 1e-6,
        "{case}: bound of the init {} vs {init_score}",
        fitted.bound_trace()[0]
    );

    // score, perplexity, transform, predict of scikit-learn's fitted model.
    let model =
        FittedLda::from_json(&std::fs::read_to_string(fixture(case, "expected.json")).unwrap())
            .unwrap()
            .with_backend(Backend::Cpu);
    let (s, _) = model.score(&x).unwrap();
    let (ws, wp) = (
        expected["score"].as_f64().unwrap(),
        expected["perplexity"].as_f64().unwrap(),
    );
    println!(
        "{case}: score {} vs {ws} ({:.1e}), perplexity {} vs {wp} ({:.1e})",
        s.score,
        rel(s.score, ws),
        s.perplexity,
        rel(s.perplexity, wp)
    );
    assert!(rel(s.score, ws) < 1e-6);
    assert!(rel(s.perplexity, wp) < 1e-6);
    let theta = model.transform(&x).unwrap();
    let want =
        Array2::<f64>::read_npy(std::fs::File::open(fixture(case, "theta.npy")).unwrap()).unwrap();
    let worst = (&theta - &want).iter().fold(0.0f64, |m, d| m.max(d.abs()));
    assert!(worst < 1e-6, "{case}: transform differs by {worst:e}");
    let labels =
        Array1::<i64>::read_npy(std::fs::File::open(fixture(case, "labels.npy")).unwrap()).unwrap();
    let got = model.predict(&x).unwrap();
    assert!(got.iter().zip(&labels).all(|(a, b)| *a as i64 == *b));
}

#[test]
fn docstring_corpus_matches_scikit_learn() {
    check_case("docstrings");
}

#[test]
fn synthetic_corpus_with_an_empty_document_matches_scikit_learn() {
    check_case("synthetic");
    let x = CountMatrix::open(&fixture("synthetic", "X.npz")).unwrap();
    assert!(x.row(5).0.is_empty(), "document 5 has no words");
}

#[test]
fn dense_npy_of_any_dtype_reads_as_the_sparse_file() {
    let x = CountMatrix::open(&fixture("synthetic", "X.npz")).unwrap();
    let dense = x.to_dense();
    let dir = tempfile::tempdir().unwrap();
    let p64 = dir.path().join("x64.npy");
    dense
        .write_npy(std::fs::File::create(&p64).unwrap())
        .unwrap();
    let p32 = dir.path().join("x32.npy");
    dense
        .mapv(|v| v as i32)
        .write_npy(std::fs::File::create(&p32).unwrap())
        .unwrap();
    for p in [p64, p32] {
        let d = CountMatrix::open(&p).unwrap();
        assert_eq!(d, x, "{}", p.display());
    }
    let a = fit_case("synthetic", &x);
    let b = fit_case("synthetic", &CountMatrix::from_dense(dense.view()).unwrap());
    assert_eq!(a.components(), b.components());
}

#[test]
fn fit_recovers_the_topics_of_a_synthetic_corpus() {
    let spec = CorpusSpec {
        n_docs: 3000,
        n_terms: 400,
        n_topics: 5,
        mean_length: 80.0,
        alpha: 0.2,
        eta: 0.05,
        seed: 11,
    };
    let c = corpus(&spec).unwrap();
    let fitted = LatentDirichletAllocation::params(5)
        .doc_topic_prior(0.2)
        .topic_word_prior(0.05)
        .max_iter(60)
        .seed(3)
        .backend(Backend::Cpu)
        .fit(&c.x)
        .unwrap();
    let v = spec.n_terms;
    let lam = fitted.components();
    // Each true topic's nearest fitted topic (normalized λ), by total variation.
    let mut used = [false; 5];
    for t in 0..5 {
        let truth = &c.topics[t * v..(t + 1) * v];
        let (best, tv) = (0..5)
            .filter(|f| !used[*f])
            .map(|f| {
                let row = &lam[f * v..(f + 1) * v];
                let s: f64 = row.iter().sum();
                let tv: f64 = row
                    .iter()
                    .zip(truth)
                    .map(|(a, b)| (a / s - b).abs())
                    .sum::<f64>()
                    / 2.0;
                (f, tv)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        used[best] = true;
        println!("true topic {t} ↔ fitted {best}: total variation {tv:.3}");
        assert!(tv < 0.1, "topic {t} not recovered (total variation {tv})");
    }
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let x = CountMatrix::open(&fixture("synthetic", "X.npz")).unwrap();
    // K = 0, priors ≤ 0.
    let e = LatentDirichletAllocation::params(0).fit(&x).unwrap_err();
    assert!(e.to_string().contains("at least one topic"), "{e}");
    for bad in [0.0, -1.0, f64::NAN] {
        let e = LatentDirichletAllocation::params(3)
            .doc_topic_prior(bad)
            .fit(&x)
            .unwrap_err();
        assert!(e.to_string().contains("doc_topic_prior must be"), "{e}");
        let e = LatentDirichletAllocation::params(3)
            .topic_word_prior(bad)
            .fit(&x)
            .unwrap_err();
        assert!(e.to_string().contains("topic_word_prior must be"), "{e}");
    }
    // An init of another shape; a model of another vocabulary.
    let e = LatentDirichletAllocation::params(3)
        .init(LdaInit::Components(vec![1.0; 10]))
        .fit(&x)
        .unwrap_err();
    assert!(e.to_string().contains("must be [3][150]"), "{e}");
    let m = FittedLda::from_components(2, 7, 0.5, 0.5, vec![1.0; 14]).unwrap();
    assert!(m.score(&x).is_err());
    assert!(m.transform(&x).is_err());
    // Negative counts in a file; empty and truncated files.
    let dir = tempfile::tempdir().unwrap();
    let neg = dir.path().join("neg.npy");
    ndarray::array![[1.0, 2.0], [0.0, -1.0]]
        .write_npy(std::fs::File::create(&neg).unwrap())
        .unwrap();
    let e = CountMatrix::open(&neg).unwrap_err();
    assert!(
        e.to_string()
            .contains("negative count -1 at row 1, column 1"),
        "{e}"
    );
    let empty = dir.path().join("empty.npz");
    std::fs::write(&empty, b"").unwrap();
    assert!(
        CountMatrix::open(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty")
    );
    let bytes = std::fs::read(fixture("docstrings", "X.npz")).unwrap();
    let cut = dir.path().join("cut.npz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = CountMatrix::open(&cut).unwrap_err();
    assert!(e.to_string().contains("cut.npz"), "{e}");
    // Non-integer counts are accepted.
    let half = CountMatrix::from_csr(1, 2, vec![0, 2], vec![0, 1], vec![0.5, 1.5]).unwrap();
    let m = FittedLda::from_components(2, 2, 0.5, 0.5, vec![1.0, 2.0, 3.0, 1.0]).unwrap();
    assert!(m.score(&half).unwrap().0.perplexity.is_finite());
}

#[test]
fn model_file_round_trips() {
    let x = CountMatrix::open(&fixture("synthetic", "X.npz")).unwrap();
    let fitted = fit_case("synthetic", &x);
    let back = FittedLda::from_json(&fitted.to_json()).unwrap();
    assert_eq!(back.components(), fitted.components());
    assert_eq!(back.bound_trace(), fitted.bound_trace());
    assert_eq!(back.n_iter(), 10);
}
