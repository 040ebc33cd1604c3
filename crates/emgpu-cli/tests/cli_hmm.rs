//! `emgpu fit --model hmm` and the HMM model file through `score`, `predict`, `sample` and `show`,
//! as the interface says, checked against hmmlearn's numbers (the committed fixture
//! `crates/emgpu/tests/fixtures/hmmlearn_hmm.json`, from `scripts/make_fixtures_hmm.py`); and
//! the bad input the issue lists: one error line, no output file.

#[path = "common/cli.rs"]
mod cli_util;

use std::path::Path;

use cli_util::{fails, last_json, ok, read_json, tmp};
use ndarray::{Array1, Array2};
use ndarray_npy::{read_npy, write_npy};
use serde_json::{Value, json};

fn fixture_case(name: &str) -> Value {
    let doc: Value =
        serde_json::from_str(include_str!("../../emgpu/tests/fixtures/hmmlearn_hmm.json")).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone()
}

fn flatten(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flatten).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

fn close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// Writes the case's X.npy, L.npy, L.txt and init.json (an HMM file as another tool would write
/// it: no `format` or `version`) into `dir`.
fn write_case(dir: &Path, case: &Value) {
    let d = case["n_features"].as_u64().unwrap() as usize;
    let x = flatten(&case["X"]);
    let n = x.len() / d;
    write_npy(
        dir.join("X.npy"),
        &Array2::from_shape_vec((n, d), x).unwrap(),
    )
    .unwrap();
    let lengths: Vec<i64> = case["lengths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    write_npy(dir.join("L.npy"), &Array1::from(lengths.clone())).unwrap();
    let text: String = lengths.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("L.txt"), text).unwrap();
    let init = &case["init"];
    let doc = json!({
        "model": "hmm",
        "covariance_type": case["covariance_type"],
        "n_features": d,
        "n_components": case["n_components"],
        "startprob": init["startprob"],
        "transmat": init["transmat"],
        "means": init["means"],
        "covariances": init["covariances"],
    });
    std::fs::write(dir.join("init.json"), doc.to_string()).unwrap();
}

/// The fit of the interface, with `overrides` (flag, value) replacing those flags'
/// values (a flag alone, as `--json`, is added).
fn fit_args<'a>(overrides: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "fit",
        "--model",
        "hmm",
        "--input",
        "X.npy",
        "--lengths",
        "L.npy",
        "--components",
        "3",
        "--covariance",
        "full",
        "--init",
        "init.json",
        "--max-iter",
        "10",
        "--tol",
        "0",
        "--reg-covar",
        "0",
        "--seed",
        "0",
        "--backend",
        "cpu",
        "--output",
        "m.json",
    ];
    for pair in overrides.chunks(2) {
        match (args.iter().position(|a| *a == pair[0]), pair.get(1)) {
            (Some(i), Some(v)) => args[i + 1] = v,
            _ => args.extend_from_slice(pair),
        }
    }
    args
}

#[test]
fn fit_score_predict_sample_match_hmmlearn() {
    let case = fixture_case("full");
    let exp = &case["expected"];
    let dir = tmp();
    write_case(dir.path(), &case);
    let run = ok(dir.path(), &fit_args(&["--json"]));
    let line = last_json(&run);
    assert_eq!(line["model"], "hmm");
    assert_eq!(line["n_iter"], 10);
    let history = flatten(&exp["history"]);
    close(
        "json lower_bound",
        &[line["lower_bound"].as_f64().unwrap()],
        &[*history.last().unwrap()],
        1e-9,
        0.0,
    );

    // The model file: the contract's keys, hmmlearn's parameters.
    let m = read_json(&dir.path().join("m.json"));
    assert_eq!(m["model"], "hmm");
    assert_eq!(m["covariance_type"], "full");
    assert_eq!(m["n_features"], 2);
    assert_eq!(m["n_components"], 3);
    assert_eq!(m["n_iter"], 10);
    assert_eq!(m["converged"], false);
    for key in ["startprob", "transmat", "means", "covariances"] {
        close(key, &flatten(&m[key]), &flatten(&exp[key]), 1e-6, 1e-9);
    }
    assert_eq!(m["transmat"].as_array().unwrap().len(), 3);
    assert_eq!(m["covariances"][0][0].as_array().unwrap().len(), 2);
    close(
        "lower_bound",
        &[m["lower_bound"].as_f64().unwrap()],
        &[*history.last().unwrap()],
        1e-9,
        0.0,
    );
    close(
        "trace",
        &flatten(&m["lower_bound_trace"]),
        &history,
        1e-9,
        0.0,
    );

    // score: the total log-likelihood, last line of stdout.
    let run = ok(
        dir.path(),
        &[
            "score",
            "--model",
            "m.json",
            "--input",
            "X.npy",
            "--lengths",
            "L.npy",
            "--json",
        ],
    );
    let s = last_json(&run);
    close(
        "score",
        &[s["score"].as_f64().unwrap()],
        &[exp["score"].as_f64().unwrap()],
        1e-9,
        0.0,
    );
    assert_eq!(s["n_samples"], 350);

    // predict: Viterbi states (int64 [N]); --proba: posteriors (float64 [N, K]).
    ok(
        dir.path(),
        &[
            "predict",
            "--model",
            "m.json",
            "--input",
            "X.npy",
            "--lengths",
            "L.npy",
            "--output",
            "S.npy",
        ],
    );
    let states: Array1<i64> = read_npy(dir.path().join("S.npy")).unwrap();
    let want: Vec<i64> = exp["viterbi_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(states.to_vec(), want);
    ok(
        dir.path(),
        &[
            "predict",
            "--model",
            "m.json",
            "--input",
            "X.npy",
            "--lengths",
            "L.npy",
            "--proba",
            "--output",
            "P.npy",
        ],
    );
    let proba: Array2<f64> = read_npy(dir.path().join("P.npy")).unwrap();
    assert_eq!(proba.dim(), (350, 3));
    close(
        "posteriors",
        &proba.iter().copied().collect::<Vec<_>>(),
        &flatten(&exp["posteriors"]),
        1e-6,
        1e-9,
    );

    // The same lengths as a text file, one per line.
    let run = ok(
        dir.path(),
        &[
            "score",
            "--model",
            "m.json",
            "--input",
            "X.npy",
            "--lengths",
            "L.txt",
            "--json",
        ],
    );
    assert_eq!(last_json(&run)["score"], s["score"]);

    // sample: observations [N, D] and states [N], deterministic for a seed.
    for out in ["A", "B"] {
        ok(
            dir.path(),
            &[
                "sample",
                "--model",
                "m.json",
                "--n",
                "500",
                "--seed",
                "3",
                "--output",
                &format!("{out}.npy"),
                "--labels-output",
                &format!("{out}_states.npy"),
            ],
        );
    }
    let a: Array2<f64> = read_npy(dir.path().join("A.npy")).unwrap();
    let b: Array2<f64> = read_npy(dir.path().join("B.npy")).unwrap();
    let sa: Array1<i64> = read_npy(dir.path().join("A_states.npy")).unwrap();
    assert_eq!(a.dim(), (500, 2));
    assert_eq!(a, b);
    assert!(sa.iter().all(|s| (0..3).contains(s)));

    // show: the states, start and transitions.
    let run = ok(dir.path(), &["show", "m.json", "--json"]);
    assert_eq!(last_json(&run)["n_components"], 3);
}

#[test]
fn fit_without_lengths_is_one_sequence_and_default_init_runs() {
    let case = fixture_case("single_sequence");
    let dir = tmp();
    let d = 2;
    let x = flatten(&case["X"]);
    let n = x.len() / d;
    write_npy(
        dir.path().join("X.npy"),
        &Array2::from_shape_vec((n, d), x).unwrap(),
    )
    .unwrap();
    let run = ok(
        dir.path(),
        &[
            "fit",
            "--model",
            "hmm",
            "--input",
            "X.npy",
            "-k",
            "3",
            "--n-init",
            "2",
            "--max-iter",
            "30",
            "--output",
            "m.json",
            "--json",
        ],
    );
    let line = last_json(&run);
    assert_eq!(line["n_sequences"], 1);
    assert_eq!(
        line["covariance_type"], "diag",
        "hmmlearn's default covariance type"
    );
    assert_eq!(line["init_lower_bounds"].as_array().unwrap().len(), 2);
    let m = read_json(&dir.path().join("m.json"));
    let sp = flatten(&m["startprob"]);
    assert!((sp.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

#[test]
fn bad_input_gives_one_error_line_and_no_output() {
    let case = fixture_case("full");
    let dir = tmp();
    let p = dir.path();
    write_case(p, &case);
    let write_lengths = |name: &str, v: &[i64]| {
        write_npy(p.join(name), &Array1::from(v.to_vec())).unwrap();
    };
    write_lengths("short.npy", &[1, 40, 75, 110, 100]);
    fails(
        p,
        &fit_args(&["--lengths", "short.npy"]),
        1,
        &["add up to 326 rows", "has 350"],
    );
    write_lengths("zero.npy", &[0, 41, 75, 110, 124]);
    fails(p, &fit_args(&["--lengths", "zero.npy"]), 1, &["length 0"]);
    write_lengths("negative.npy", &[-1, 42, 75, 110, 124]);
    fails(
        p,
        &fit_args(&["--lengths", "negative.npy"]),
        1,
        &["length -1"],
    );
    std::fs::write(p.join("bad.txt"), "10\nten\n").unwrap();
    fails(
        p,
        &fit_args(&["--lengths", "bad.txt"]),
        1,
        &["line 2", "\"ten\""],
    );

    let init = read_json(&p.join("init.json"));
    let mut bad = init.clone();
    bad["startprob"] = json!([0.5, 0.3, 0.1]);
    std::fs::write(p.join("badstart.json"), bad.to_string()).unwrap();
    fails(
        p,
        &fit_args(&["--init", "badstart.json"]),
        1,
        &["startprob must sum to 1"],
    );
    let mut bad = init.clone();
    bad["transmat"][1] = json!([1.2, -0.1, -0.1]);
    std::fs::write(p.join("badtrans.json"), bad.to_string()).unwrap();
    fails(
        p,
        &fit_args(&["--init", "badtrans.json"]),
        1,
        &["row 1 of transmat", "non-negative"],
    );
    let mut bad = init.clone();
    bad["transmat"][2] = json!([0.2, 0.2, 0.2]);
    std::fs::write(p.join("badrow.json"), bad.to_string()).unwrap();
    fails(
        p,
        &fit_args(&["--init", "badrow.json"]),
        1,
        &["row 2 of transmat must sum to 1"],
    );

    // K larger than the number of points.
    write_npy(
        p.join("tiny.npy"),
        &Array2::from_shape_vec((2, 2), vec![0.0, 1.0, 2.0, 3.0]).unwrap(),
    )
    .unwrap();
    fails(
        p,
        &[
            "fit", "--model", "hmm", "--input", "tiny.npy", "-k", "3", "--output", "t.json",
        ],
        1,
        &["n_components=3", "number of samples (2)"],
    );

    // NaN in the data.
    let mut x: Array2<f64> = read_npy(p.join("X.npy")).unwrap();
    x[[7, 1]] = f64::NAN;
    write_npy(p.join("nan.npy"), &x).unwrap();
    fails(p, &fit_args(&["--input", "nan.npy"]), 1, &["NaN"]);

    // --lengths belongs to the HMM.
    fails(
        p,
        &[
            "fit",
            "--input",
            "X.npy",
            "--lengths",
            "L.npy",
            "-k",
            "2",
            "--output",
            "g.json",
        ],
        2,
        &["--lengths", "--model hmm"],
    );

    // A model file whose transmat row does not sum to 1, used by score.
    let mut bad = init.clone();
    bad["transmat"][0] = json!([0.5, 0.5, 0.5]);
    std::fs::write(p.join("badmodel.json"), bad.to_string()).unwrap();
    fails(
        p,
        &[
            "score",
            "--model",
            "badmodel.json",
            "--input",
            "X.npy",
            "--lengths",
            "L.npy",
        ],
        1,
        &["row 0 of transmat must sum to 1"],
    );
}
