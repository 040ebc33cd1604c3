//! `emgpu fit --model lda`, `score`, `predict` and `show` of LDA models with the exact command
//! lines of issue 14's interface, against scikit-learn's numbers (the committed fixtures
//! `crates/emgpu/tests/fixtures/lda/`, from `scripts/make_fixtures_lda.py`); and the bad input the
//! issue lists: one error line, non-zero exit, no output file.

#[path = "common/cli.rs"]
mod cli_util;
#[path = "../../emgpu/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use cli_util::{fails, last_json, ok, read_json, tmp};
use ndarray::{Array1, Array2};
use ndarray_npy::{read_npy, write_npy};
use serde_json::Value;

fn fixture(case: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../emgpu/tests/fixtures/lda")
        .join(case)
        .join(file)
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// Copies the case's files into `dir`.
fn setup(case: &str, dir: &Path) {
    for f in ["X.npz", "init.json", "expected.json"] {
        std::fs::copy(fixture(case, f), dir.join(f)).unwrap();
    }
}

/// The contract's tolerances: CPU 1e-6 relative (λ, score, perplexity) and 1e-6 absolute (θ),
/// labels equal; GPU 5e-3 on λ, 2e-3 elsewhere, labels may differ on up to 0.5 % of documents.
struct Tolerances {
    lambda: f64,
    other: f64,
    labels: f64,
}

const CPU: Tolerances = Tolerances {
    lambda: 1e-6,
    other: 1e-6,
    labels: 0.0,
};
const GPU: Tolerances = Tolerances {
    lambda: 5e-3,
    other: 2e-3,
    labels: 0.005,
};

fn contract_fit(case: &str) {
    contract_fit_on(case, "cpu", &CPU);
}

fn contract_fit_on(case: &str, backend: &str, tol: &Tolerances) {
    let d = tmp();
    let dir = d.path();
    setup(case, dir);
    let expected = read_json(&dir.join("expected.json"));
    let (k, a, b) = (
        expected["n_components"].to_string(),
        expected["doc_topic_prior"].to_string(),
        expected["topic_word_prior"].to_string(),
    );
    ok(
        dir,
        &[
            "fit",
            "--model",
            "lda",
            "--input",
            "X.npz",
            "--components",
            &k,
            "--doc-topic-prior",
            &a,
            "--topic-word-prior",
            &b,
            "--init",
            "init.json",
            "--max-iter",
            "10",
            "--tol",
            "0",
            "--backend",
            backend,
            "--output",
            "MODEL.json",
            "--quiet",
        ],
    );
    let model = read_json(&dir.join("MODEL.json"));
    for key in [
        "format",
        "version",
        "model",
        "n_components",
        "n_features",
        "doc_topic_prior",
        "topic_word_prior",
    ] {
        assert_eq!(model[key], expected[key], "{key}");
    }
    let got = flat(&model["components"]);
    let want = flat(&expected["components"]);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| rel(*g, *w))
        .fold(0.0, f64::max);
    assert!(worst < tol.lambda, "{case}: λ differs by {worst:e}");

    // score / predict of scikit-learn's fitted model (expected.json is a model file).
    let run = ok(
        dir,
        &[
            "score",
            "--model",
            "expected.json",
            "--input",
            "X.npz",
            "--json",
            "--backend",
            backend,
        ],
    );
    let s = last_json(&run);
    assert_eq!(s["backend"], backend);
    assert!(
        rel(
            s["score"].as_f64().unwrap(),
            expected["score"].as_f64().unwrap()
        ) < tol.other
    );
    assert!(
        rel(
            s["perplexity"].as_f64().unwrap(),
            expected["perplexity"].as_f64().unwrap()
        ) < tol.other
    );
    ok(
        dir,
        &[
            "predict",
            "--model",
            "expected.json",
            "--input",
            "X.npz",
            "--proba",
            "--output",
            "THETA.npy",
            "--backend",
            backend,
        ],
    );
    let theta: Array2<f64> = read_npy(dir.join("THETA.npy")).unwrap();
    let want: Array2<f64> = read_npy(fixture(case, "theta.npy")).unwrap();
    let worst = (&theta - &want).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(worst < tol.other, "{case}: θ differs by {worst:e}");
    ok(
        dir,
        &[
            "predict",
            "--model",
            "expected.json",
            "--input",
            "X.npz",
            "--output",
            "L.npy",
            "--backend",
            backend,
        ],
    );
    let labels: Array1<i64> = read_npy(dir.join("L.npy")).unwrap();
    let want: Array1<i64> = read_npy(fixture(case, "labels.npy")).unwrap();
    let differ = labels.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert!(
        differ as f64 <= tol.labels * want.len() as f64,
        "{case}: {differ} of {} labels differ",
        want.len()
    );
}

#[test]
fn contract_commands_on_the_gpu_match_scikit_learn() {
    if common::gpu_backend("contract_commands_on_the_gpu_match_scikit_learn").is_none() {
        return;
    }
    contract_fit_on("docstrings", "gpu", &GPU);
    contract_fit_on("synthetic", "gpu", &GPU);
}

#[test]
fn contract_commands_match_scikit_learn_on_the_docstring_corpus() {
    contract_fit("docstrings");
}

#[test]
fn contract_commands_match_scikit_learn_on_the_synthetic_corpus() {
    contract_fit("synthetic");
}

#[test]
fn dense_npy_input_gives_the_sparse_results() {
    let d = tmp();
    let dir = d.path();
    setup("synthetic", dir);
    let x = emgpu::data::sparse::CountMatrix::open(&dir.join("X.npz")).unwrap();
    write_npy(dir.join("X.npy"), &x.to_dense().mapv(|v| v as i64)).unwrap();
    let run = |input: &str, out: &str| {
        ok(
            dir,
            &[
                "fit",
                "--model",
                "lda",
                "--input",
                input,
                "-k",
                "4",
                "--doc-topic-prior",
                "0.3",
                "--topic-word-prior",
                "0.05",
                "--init",
                "init.json",
                "--max-iter",
                "3",
                "--tol",
                "0",
                "--backend",
                "cpu",
                "--output",
                out,
                "--quiet",
            ],
        );
        flat(&read_json(&dir.join(out))["components"])
    };
    assert_eq!(run("X.npz", "a.json"), run("X.npy", "b.json"));
}

#[test]
fn show_lists_the_top_terms_of_each_topic() {
    let d = tmp();
    let dir = d.path();
    setup("docstrings", dir);
    std::fs::copy(fixture("docstrings", "vocab.txt"), dir.join("vocab.txt")).unwrap();
    let run = ok(
        dir,
        &[
            "show",
            "expected.json",
            "--vocab",
            "vocab.txt",
            "--top",
            "10",
        ],
    );
    let topic_lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("topic "))
        .collect();
    assert_eq!(topic_lines.len(), 5, "{}", run.stdout);
    // Topic 0's top term is the term of its largest λ.
    let expected = read_json(&dir.join("expected.json"));
    let row = flat(&expected["components"][0]);
    let best = (0..row.len())
        .max_by(|a, b| row[*a].total_cmp(&row[*b]))
        .unwrap();
    let vocab = std::fs::read_to_string(dir.join("vocab.txt")).unwrap();
    let term = vocab.lines().nth(best).unwrap();
    let first = topic_lines[0]
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(first, term);
    let js = last_json(&ok(dir, &["show", "expected.json", "--json", "--top", "3"]));
    assert_eq!(js["topics"][0]["top_terms"].as_array().unwrap().len(), 3);
    fails(
        dir,
        &["show", "expected.json", "--vocab", "init.json"],
        1,
        &["lines"],
    );
}

#[test]
fn bad_input_fails_with_one_message_and_no_output() {
    let d = tmp();
    let dir = d.path();
    setup("synthetic", dir);
    let fit = |extra: &[&str]| {
        let mut args = vec![
            "fit",
            "--model",
            "lda",
            "--input",
            "X.npz",
            "--output",
            "M.json",
            "--backend",
            "cpu",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let check = |extra: &[&str], code: i32, needles: &[&str]| {
        let args = fit(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(dir, &args, code, needles);
    };
    check(&["-k", "0"], 2, &["--components"]);
    check(
        &["-k", "4", "--doc-topic-prior", "0"],
        2,
        &["--doc-topic-prior"],
    );
    check(
        &["-k", "4", "--topic-word-prior", "-1"],
        2,
        &["--topic-word-prior"],
    );
    check(
        &["-k", "3", "--init", "init.json"],
        1,
        &["init.json", "[4][150]"],
    );
    // Negative counts.
    write_npy(
        dir.join("neg.npy"),
        &ndarray::array![[1.0, 2.0], [3.0, -1.0]],
    )
    .unwrap();
    fails(
        dir,
        &[
            "fit", "--model", "lda", "--input", "neg.npy", "-k", "2", "--output", "M.json",
        ],
        1,
        &["negative count"],
    );
    // Empty and truncated files.
    std::fs::write(dir.join("empty.npz"), b"").unwrap();
    fails(
        dir,
        &[
            "fit",
            "--model",
            "lda",
            "--input",
            "empty.npz",
            "-k",
            "2",
            "--output",
            "M.json",
        ],
        1,
        &["empty"],
    );
    let bytes = std::fs::read(dir.join("X.npz")).unwrap();
    std::fs::write(dir.join("cut.npz"), &bytes[..bytes.len() / 2]).unwrap();
    fails(
        dir,
        &[
            "fit", "--model", "lda", "--input", "cut.npz", "-k", "2", "--output", "M.json",
        ],
        1,
        &["cut.npz"],
    );
    // A model whose vocabulary is not the data's.
    let docstrings = fixture("docstrings", "expected.json");
    let model = docstrings.to_str().unwrap();
    fails(
        dir,
        &["score", "--model", model, "--input", "X.npz", "--json"],
        1,
        &["150 columns", "800"],
    );
    fails(
        dir,
        &[
            "predict", "--model", model, "--input", "X.npz", "--output", "P.npy",
        ],
        1,
        &["150 columns"],
    );
    // Non-integer counts are accepted.
    write_npy(
        dir.join("half.npy"),
        &ndarray::array![[0.5, 1.5], [2.0, 0.25]],
    )
    .unwrap();
    ok(
        dir,
        &[
            "fit", "--model", "lda", "--input", "half.npy", "-k", "2", "--output", "H.json",
            "--quiet",
        ],
    );
}
