//! The `emgpu` binary, run as a user runs it: end to end on real data (Old Faithful), against
//! scikit-learn's numbers (tests/data/make_faithful_sklearn.py wrote them), and every bad input of
//! issue 4 — each must fail with one clear line naming the file and the problem, a non-zero exit
//! code, and no output file.

#[path = "common/cli.rs"]
mod cli_util;
#[path = "../../emgpu/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;

use cli_util::{emgpu, fails, files_in, last_json, ok, read_json, tmp};
use common::{assert_close, flatten};
use ndarray::{Array1, Array2, Array3, ShapeBuilder, array};
use ndarray_npy::{read_npy, write_npy};
use serde_json::Value;

fn data_path(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The Old Faithful data (tests/data/README.md).
const FAITHFUL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/faithful.csv");
/// A starting model for it (written by tests/data/make_faithful_sklearn.py).
const START_FULL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/faithful_start_full.json"
);

/// The Old Faithful rows, parsed here (independently of the binary's reader).
fn faithful_rows() -> Vec<[f64; 2]> {
    std::fs::read_to_string(FAITHFUL)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut it = l.split(',').map(|v| v.parse::<f64>().unwrap());
            [it.next().unwrap(), it.next().unwrap()]
        })
        .collect()
}

fn sklearn_case(cov: &str) -> Value {
    let text = std::fs::read_to_string(data_path("faithful_sklearn.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"][cov].clone()
}

/// A `.npy` v1.0 file with any header and payload (for dtypes ndarray-npy does not write, and
/// for corrupt files).
fn npy_bytes(descr: &str, fortran: bool, shape: &str, payload: &[u8]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(payload);
    out
}

// ---------------------------------------------------------------------------------------------
// End to end on real data, against scikit-learn.

#[test]
fn fit_score_predict_sample_on_old_faithful_match_scikit_learn() {
    for cov in ["full", "diag"] {
        let want = sklearn_case(cov);
        let start = data_path(&format!("faithful_start_{cov}.json"));
        let dir = tmp();
        let d = dir.path();
        let fit = ok(
            d,
            &[
                "fit",
                "--input",
                FAITHFUL,
                "--components",
                "2",
                "--covariance",
                cov,
                "--init",
                &start,
                "--backend",
                "cpu",
                "--output",
                "model.json",
                "--json",
            ],
        );
        assert_eq!(fit.stdout.lines().count(), 1, "fit --json: one line");
        let info = last_json(&fit);
        assert_eq!(info["n_iter"], want["n_iter"], "{cov}");
        assert_eq!(info["converged"], want["converged"]);
        assert_eq!(info["n_samples"], 272);
        assert_eq!(info["n_features"], 2);
        assert_eq!(info["n_components"], 2);
        assert_eq!(info["covariance_type"], cov);
        assert_eq!(info["backend"], "cpu");
        assert!(info["fit_seconds"].as_f64().unwrap() >= 0.0);
        let lb = info["lower_bound"].as_f64().unwrap();
        assert_close(
            "lower_bound",
            &[lb],
            &[want["lower_bound"].as_f64().unwrap()],
            1e-6,
            0.0,
        );

        let model = read_json(&d.join("model.json"));
        assert_eq!(model["format"], "emgpu-model");
        assert_eq!(model["covariance_type"], cov);
        for key in ["weights", "means", "covariances"] {
            assert_close(key, &flatten(&model[key]), &flatten(&want[key]), 1e-6, 1e-9);
        }

        let score = ok(
            d,
            &[
                "score",
                "--model",
                "model.json",
                "--input",
                FAITHFUL,
                "--backend",
                "cpu",
                "--json",
            ],
        );
        let s = last_json(&score);
        assert_eq!(s["n_samples"], 272);
        for key in ["score", "bic", "aic"] {
            let got = s[key].as_f64().unwrap();
            assert_close(key, &[got], &[want[key].as_f64().unwrap()], 1e-6, 0.0);
        }

        let predict = ok(
            d,
            &[
                "predict",
                "-m",
                "model.json",
                "-i",
                FAITHFUL,
                "--backend",
                "cpu",
                "-o",
                "labels.npy",
            ],
        );
        assert_eq!(
            predict.stdout, "",
            "predict writes its results to the file only"
        );
        let labels: Array1<i64> = read_npy(d.join("labels.npy")).unwrap();
        let mut counts = vec![0i64; 2];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        let want_counts: Vec<i64> = want["label_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(counts, want_counts, "{cov}: label counts");

        ok(
            d,
            &[
                "predict",
                "-m",
                "model.json",
                "-i",
                FAITHFUL,
                "-o",
                "proba.npy",
                "--proba",
            ],
        );
        let proba: Array2<f64> = read_npy(d.join("proba.npy")).unwrap();
        assert_eq!(proba.dim(), (272, 2));
        for (row, &l) in proba.rows().into_iter().zip(&labels) {
            assert!((row.sum() - 1.0).abs() < 1e-9);
            assert!(row[l as usize] >= row[1 - l as usize]);
        }

        let sample = ok(
            d,
            &[
                "sample",
                "-m",
                "model.json",
                "--n",
                "4000",
                "--seed",
                "7",
                "-o",
                "x.npy",
                "--labels-output",
                "z.npy",
            ],
        );
        assert_eq!(sample.stdout, "");
        let x: Array2<f64> = read_npy(d.join("x.npy")).unwrap();
        let z: Array1<i64> = read_npy(d.join("z.npy")).unwrap();
        assert_eq!((x.dim(), z.len()), ((4000, 2), 4000));
        // The sample mean is the mixture mean within 5 standard errors.
        let w = flatten(&model["weights"]);
        let mu = flatten(&model["means"]);
        let cov_flat = flatten(&model["covariances"]);
        for j in 0..2 {
            let mean: f64 = (0..2).map(|c| w[c] * mu[c * 2 + j]).sum();
            let var: f64 = (0..2)
                .map(|c| {
                    let v = if cov == "full" {
                        cov_flat[c * 4 + j * 3]
                    } else {
                        cov_flat[c * 2 + j]
                    };
                    w[c] * (v + mu[c * 2 + j].powi(2))
                })
                .sum::<f64>()
                - mean * mean;
            let got = x.column(j).mean().unwrap();
            let se = (var / 4000.0).sqrt();
            assert!(
                (got - mean).abs() < 5.0 * se,
                "{cov}: feature {j}: sample mean {got}, mixture mean {mean} (se {se})"
            );
        }
        // Seeded: the same seed draws the same samples.
        ok(
            d,
            &[
                "sample",
                "-m",
                "model.json",
                "--n",
                "4000",
                "--seed",
                "7",
                "-o",
                "x2.npy",
            ],
        );
        let x2: Array2<f64> = read_npy(d.join("x2.npy")).unwrap();
        assert_eq!(x, x2);
    }
}

#[test]
fn warm_start_from_a_model_file_starts_exactly_there() {
    // The first lower bound of a warm-started fit is the start model's score on the data.
    let dir = tmp();
    let d = dir.path();
    let start = START_FULL;
    // Both on the f64 CPU backend: `auto` would take a hardware GPU (f32) where there is one.
    let s = last_json(&ok(
        d,
        &[
            "score",
            "-m",
            start,
            "-i",
            FAITHFUL,
            "--backend",
            "cpu",
            "--json",
        ],
    ));
    ok(
        d,
        &[
            "fit",
            "-i",
            FAITHFUL,
            "-k",
            "2",
            "--init",
            start,
            "--max-iter",
            "3",
            "--tol",
            "0",
            "--backend",
            "cpu",
            "-o",
            "m.json",
        ],
    );
    let m = read_json(&d.join("m.json"));
    let trace = flatten(&m["lower_bound_trace"]);
    assert_eq!((trace.len(), m["n_iter"].as_u64()), (3, Some(3)));
    assert_close(
        "first lower bound",
        &trace[..1],
        &[s["score"].as_f64().unwrap()],
        1e-12,
        0.0,
    );
}

#[test]
fn default_fit_reports_on_stderr_and_only_results_on_stdout() {
    let dir = tmp();
    let d = dir.path();
    let run = ok(d, &["fit", "-i", FAITHFUL, "-k", "2", "-o", "m.json"]);
    assert_eq!(
        run.stdout, "",
        "without --json, fit prints nothing on stdout"
    );
    // `auto` on 272 × 2 values takes the CPU without probing a GPU, and says why.
    assert!(
        run.stderr.contains("backend: cpu") && run.stderr.contains("too small for a GPU to matter"),
        "auto says what it chose: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("fit: 2 full components on 272 samples × 2 features"),
        "{}",
        run.stderr
    );
    assert!(d.join("m.json").is_file());
    let quiet = ok(
        d,
        &[
            "fit", "-q", "-i", FAITHFUL, "-k", "2", "-o", "m2.json", "--json",
        ],
    );
    assert_eq!(quiet.stderr, "", "--quiet prints nothing on stderr");
    let info = last_json(&quiet);
    for key in [
        "n_iter",
        "converged",
        "lower_bound",
        "backend",
        "device",
        "fit_seconds",
        "n_samples",
        "n_features",
        "n_components",
        "covariance_type",
        "init_lower_bounds",
    ] {
        assert!(!info[key].is_null(), "fit --json lacks {key}: {info}");
    }
    // Same seed, same model.
    assert_eq!(
        read_json(&d.join("m.json"))["means"],
        read_json(&d.join("m2.json"))["means"]
    );
    // No temporary files are left next to the outputs.
    assert_eq!(
        files_in(d),
        BTreeSet::from(["m.json".to_string(), "m2.json".to_string()])
    );
    // A plain score prints readable lines.
    let score = ok(d, &["score", "-m", "m.json", "-i", FAITHFUL]);
    assert!(score.stdout.starts_with("score "), "{}", score.stdout);
    assert!(score.stdout.contains("n_samples  272"), "{}", score.stdout);
}

#[test]
fn npy_csv_and_raw_inputs_give_the_same_fits() {
    let dir = tmp();
    let d = dir.path();
    let rows = faithful_rows();
    let x64 = Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j]);
    let x32 = x64.mapv(|v| v as f32);
    write_npy(d.join("f64.npy"), &x64).unwrap();
    write_npy(d.join("f32.npy"), &x32).unwrap();
    let raw: Vec<u8> = x32.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(d.join("f32.bin"), raw).unwrap();
    write_npy(d.join("waiting.npy"), &x64.column(1).to_owned()).unwrap();

    let fit = |input: &str, extra: &[&str]| -> Value {
        let mut args = vec![
            "fit",
            "-q",
            "-i",
            input,
            "-k",
            "2",
            "--backend",
            "cpu",
            "-o",
            "m.json",
            "--json",
        ];
        args.extend_from_slice(extra);
        last_json(&ok(d, &args))
    };
    let csv = fit(FAITHFUL, &[]);
    let npy64 = fit("f64.npy", &[]);
    assert_eq!(
        csv["lower_bound"], npy64["lower_bound"],
        "same f64 values, same fit"
    );
    let npy32 = fit("f32.npy", &[]);
    let raw32 = fit("f32.bin", &["--dims", "2"]);
    let raw32_explicit = fit("f32.bin", &["--format", "raw", "--dims", "2"]);
    assert_eq!(
        npy32["lower_bound"], raw32["lower_bound"],
        "same f32 values, same fit"
    );
    assert_eq!(raw32["lower_bound"], raw32_explicit["lower_bound"]);
    assert_close(
        "f32 vs f64 data",
        &[npy32["lower_bound"].as_f64().unwrap()],
        &[csv["lower_bound"].as_f64().unwrap()],
        1e-5,
        0.0,
    );
    // 1-D arrays are one feature; CSV --columns picks columns by name.
    let one_d = fit("waiting.npy", &["--tol", "0", "--max-iter", "5"]);
    let column = fit(
        FAITHFUL,
        &["--columns", "waiting", "--tol", "0", "--max-iter", "5"],
    );
    assert_eq!(one_d["n_features"], 1);
    assert_eq!(one_d["lower_bound"], column["lower_bound"]);
    // An uppercase extension and an explicit --format work too.
    std::fs::copy(d.join("f64.npy"), d.join("F64.NPY")).unwrap();
    std::fs::copy(d.join("f64.npy"), d.join("f64.data")).unwrap();
    assert_eq!(fit("F64.NPY", &[])["lower_bound"], npy64["lower_bound"]);
    assert_eq!(
        fit("f64.data", &["--format", "npy"])["lower_bound"],
        npy64["lower_bound"]
    );
}

/// `numpy.save(p, df.to_numpy())` writes Fortran (column-major) order: it is read in place and
/// fits exactly as the C-order file of the same values.
#[test]
fn fortran_order_npy_fits_like_c_order() {
    let dir = tmp();
    let d = dir.path();
    let rows = faithful_rows();
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let c = Array2::from_shape_vec((rows.len(), 2), flat.clone()).unwrap();
    let mut f = Array2::<f64>::zeros((rows.len(), 2).f());
    f.assign(&c);
    assert!(!f.is_standard_layout());
    write_npy(d.join("c.npy"), &c).unwrap();
    write_npy(d.join("f.npy"), &f).unwrap();
    let fit = |input: &str, out: &str| {
        ok(
            d,
            &[
                "fit",
                "-q",
                "-i",
                input,
                "-k",
                "2",
                "--backend",
                "cpu",
                "-o",
                out,
            ],
        );
        read_json(&d.join(out))
    };
    let (from_c, from_f) = (fit("c.npy", "c.json"), fit("f.npy", "f.json"));
    for key in ["weights", "means", "covariances", "lower_bound", "n_iter"] {
        assert_eq!(from_f[key], from_c[key], "{key}");
    }
    let score = |input: &str| last_json(&ok(d, &["score", "-m", "c.json", "-i", input, "--json"]));
    assert_eq!(score("f.npy")["score"], score("c.npy")["score"]);
}

#[test]
fn outputs_replace_old_files_atomically_and_failures_keep_them() {
    let dir = tmp();
    let d = dir.path();
    std::fs::write(d.join("m.json"), "old").unwrap();
    std::fs::write(d.join("bad.csv"), "a,b\n1,2\n3,x\n").unwrap();
    fails(
        d,
        &["fit", "-i", "bad.csv", "-k", "1", "-o", "m.json"],
        1,
        &["bad.csv"],
    );
    assert_eq!(std::fs::read_to_string(d.join("m.json")).unwrap(), "old");
    ok(d, &["fit", "-q", "-i", FAITHFUL, "-k", "1", "-o", "m.json"]);
    assert_eq!(read_json(&d.join("m.json"))["n_components"], 1);
}

// ---------------------------------------------------------------------------------------------
// validate, and the GPU.

#[test]
fn validate_cpu_against_itself_agrees_exactly() {
    let dir = tmp();
    let d = dir.path();
    let run = ok(
        d,
        &["validate", "-i", FAITHFUL, "-k", "2", "--backend", "cpu"],
    );
    assert!(
        run.stdout
            .contains("result: cpu agrees with the CPU within rtol"),
        "{}",
        run.stdout
    );
    for name in ["weights", "means", "covariances", "lower_bound"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("0.000e0") && l.ends_with("ok")),
            "{name} row:\n{}",
            run.stdout
        );
    }
    let json = last_json(&ok(
        d,
        &[
            "validate",
            "-i",
            FAITHFUL,
            "-k",
            "2",
            "--covariance",
            "tied",
            "--backend",
            "cpu",
            "--json",
        ],
    ));
    assert_eq!(json["agree"], true);
    assert_eq!(json["max_rel_diff"]["means"], 0.0);
    assert_eq!(json["covariance_type"], "tied");
    assert_eq!(json["reference"]["n_iter"], json["candidate"]["n_iter"]);
    assert_eq!(files_in(d), BTreeSet::new(), "validate writes no file");
}

#[test]
fn validate_without_a_gpu_says_so() {
    if common::gpu_backend("validate_without_a_gpu_says_so (needs NO adapter)").is_some() {
        return;
    }
    let dir = tmp();
    let run = emgpu(dir.path(), &["validate", "-i", FAITHFUL, "-k", "2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("gpu backend did not run") || run.stderr.contains("no GPU adapter"),
        "{}",
        run.stderr
    );
}

#[test]
fn validate_gpu_against_cpu() {
    let Some(_) = common::gpu_backend("validate_gpu_against_cpu") else {
        return;
    };
    let dir = tmp();
    for cov in ["full", "diag", "spherical", "tied"] {
        let run = emgpu(
            dir.path(),
            &[
                "validate",
                "-i",
                FAITHFUL,
                "-k",
                "2",
                "--covariance",
                cov,
                // A fixed number of iterations: no borderline convergence test between f32 and f64.
                "--tol",
                "0",
                "--max-iter",
                "20",
                "--json",
            ],
        );
        assert_eq!(run.code, 0, "{cov}: {}\n{}", run.stdout, run.stderr);
        let json = last_json(&run);
        assert_eq!(json["candidate"]["backend"], "gpu");
        assert_eq!(json["agree"], true, "{json}");
    }
}

#[test]
fn a_gpu_fitted_model_scores_like_the_cpu_one() {
    let Some(_) = common::gpu_backend("a_gpu_fitted_model_scores_like_the_cpu_one") else {
        return;
    };
    let dir = tmp();
    let d = dir.path();
    let start = START_FULL;
    let mut scores = Vec::new();
    for backend in ["gpu", "cpu"] {
        let out = format!("{backend}.json");
        let fit = last_json(&ok(
            d,
            &[
                "fit",
                "-q",
                "-i",
                FAITHFUL,
                "-k",
                "2",
                "--init",
                start,
                "--backend",
                backend,
                "-o",
                &out,
                "--json",
            ],
        ));
        assert_eq!(fit["backend"], backend);
        let s = last_json(&ok(
            d,
            &[
                "score",
                "-m",
                &out,
                "-i",
                FAITHFUL,
                "--backend",
                "cpu",
                "--json",
            ],
        ));
        scores.push(s["score"].as_f64().unwrap());
    }
    assert_close(
        "score of the GPU model",
        &scores[..1],
        &scores[1..],
        1e-3,
        0.0,
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: one clear line, non-zero exit, no output file.

fn fit_args<'a>(input: &'a str, k: &'a str) -> Vec<&'a str> {
    vec!["fit", "-i", input, "-k", k, "-o", "out.json"]
}

#[test]
fn nan_or_inf_in_the_data_names_the_row() {
    let dir = tmp();
    let d = dir.path();
    let mut x = Array2::<f64>::zeros((6, 2));
    x[[3, 1]] = f64::NAN;
    write_npy(d.join("nan.npy"), &x).unwrap();
    fails(
        d,
        &fit_args("nan.npy", "1"),
        1,
        &["nan.npy", "non-finite", "NaN", "row 3, column 1"],
    );
    // score and predict check too.
    let model = START_FULL;
    fails(
        d,
        &["score", "-m", model, "-i", "nan.npy"],
        1,
        &["nan.npy", "row 3"],
    );
    fails(
        d,
        &["predict", "-m", model, "-i", "nan.npy", "-o", "l.npy"],
        1,
        &["nan.npy", "row 3"],
    );
    std::fs::write(d.join("inf.csv"), "a,b\n1,2\n3,4\n5,inf\n").unwrap();
    fails(
        d,
        &fit_args("inf.csv", "1"),
        1,
        &[
            "inf.csv",
            "line 4 (data row 2, 0-based), column \"b\"",
            "not a finite number",
        ],
    );
    x[[3, 1]] = f64::NEG_INFINITY;
    let raw: Vec<u8> = x.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
    std::fs::write(d.join("inf.f32"), raw).unwrap();
    let mut args = fit_args("inf.f32", "1");
    args.extend(["--dims", "2"]);
    fails(d, &args, 1, &["inf.f32", "-inf", "row 3, column 1"]);
}

#[test]
fn empty_files_are_named_as_empty() {
    let dir = tmp();
    let d = dir.path();
    for name in ["empty.npy", "empty.csv", "empty.f32"] {
        std::fs::write(d.join(name), "").unwrap();
    }
    fails(
        d,
        &fit_args("empty.npy", "1"),
        1,
        &["empty.npy", "the file is empty"],
    );
    fails(
        d,
        &fit_args("empty.csv", "1"),
        1,
        &["empty.csv", "the file is empty"],
    );
    let mut args = fit_args("empty.f32", "1");
    args.extend(["--dims", "2"]);
    fails(d, &args, 1, &["empty.f32", "the file is empty"]);
    // A header and no rows, and an array with no rows.
    std::fs::write(d.join("header.csv"), "a,b\n").unwrap();
    fails(
        d,
        &fit_args("header.csv", "1"),
        1,
        &["header.csv", "no data rows"],
    );
    write_npy(d.join("zero.npy"), &Array2::<f64>::zeros((0, 3))).unwrap();
    fails(
        d,
        &fit_args("zero.npy", "1"),
        1,
        &["zero.npy", "empty", "0 rows"],
    );
}

#[test]
fn truncated_and_corrupt_npy_files() {
    let dir = tmp();
    let d = dir.path();
    write_npy(d.join("good.npy"), &Array2::<f64>::ones((10, 2))).unwrap();
    let bytes = std::fs::read(d.join("good.npy")).unwrap();
    std::fs::write(d.join("cut.npy"), &bytes[..bytes.len() - 12]).unwrap();
    fails(
        d,
        &fit_args("cut.npy", "1"),
        1,
        &["cut.npy", "truncated", "12 bytes"],
    );
    std::fs::write(d.join("cut_header.npy"), &bytes[..30]).unwrap();
    fails(
        d,
        &fit_args("cut_header.npy", "1"),
        1,
        &["cut_header.npy", "truncated"],
    );
    std::fs::write(
        d.join("junk.npy"),
        b"this is not a numpy file at all, just text\n",
    )
    .unwrap();
    fails(
        d,
        &fit_args("junk.npy", "1"),
        1,
        &["junk.npy", "not a valid .npy file"],
    );
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 8]);
    std::fs::write(d.join("long.npy"), long).unwrap();
    fails(
        d,
        &fit_args("long.npy", "1"),
        1,
        &["long.npy", "8 bytes after the data"],
    );
}

#[test]
fn unsupported_dtypes_and_layouts() {
    let dir = tmp();
    let d = dir.path();
    write_npy(d.join("int.npy"), &Array2::<i64>::ones((5, 2))).unwrap();
    fails(
        d,
        &fit_args("int.npy", "1"),
        1,
        &["int.npy", "unsupported dtype", "<i8", "astype"],
    );
    std::fs::write(
        d.join("complex.npy"),
        npy_bytes("<c16", false, "(2, 2)", &[0; 64]),
    )
    .unwrap();
    fails(
        d,
        &fit_args("complex.npy", "1"),
        1,
        &["complex.npy", "unsupported dtype", "<c16"],
    );
    std::fs::write(
        d.join("big.npy"),
        npy_bytes(">f8", false, "(2, 2)", &[0; 32]),
    )
    .unwrap();
    fails(d, &fit_args("big.npy", "1"), 1, &["big.npy", "big-endian"]);
}

#[test]
fn three_dimensional_arrays_are_refused() {
    let dir = tmp();
    let d = dir.path();
    write_npy(d.join("cube.npy"), &Array3::<f32>::ones((4, 3, 2))).unwrap();
    fails(
        d,
        &fit_args("cube.npy", "1"),
        1,
        &["cube.npy", "3-D", "[4, 3, 2]", "2-D"],
    );
}

#[test]
fn csv_cells_that_are_not_numbers_name_line_and_column() {
    let dir = tmp();
    let d = dir.path();
    std::fs::write(d.join("bad.csv"), "eruptions,waiting\n3.6,79\n1.8,abc\n").unwrap();
    fails(
        d,
        &fit_args("bad.csv", "1"),
        1,
        &[
            "bad.csv",
            "line 3 (data row 1, 0-based), column \"waiting\"",
            "\"abc\" is not a number",
        ],
    );
    std::fs::write(d.join("gap.csv"), "a,b\n1,2\n3,\n").unwrap();
    fails(
        d,
        &fit_args("gap.csv", "1"),
        1,
        &["gap.csv", "line 3", "column \"b\" is empty"],
    );
    std::fs::write(d.join("ragged.csv"), "a,b\n1,2\n3,4,5\n").unwrap();
    fails(
        d,
        &fit_args("ragged.csv", "1"),
        1,
        &["ragged.csv", "line 3 has 3 fields but the header has 2"],
    );
    std::fs::write(d.join("noheader.csv"), "1,2\n3,4\n").unwrap();
    fails(
        d,
        &fit_args("noheader.csv", "1"),
        1,
        &["noheader.csv", "looks like data, not a header"],
    );
    // A text column is fine when --columns leaves it out, and named when it does not.
    std::fs::write(d.join("mixed.csv"), "name,x\nfoo,1\nbar,2\nbaz,3\n").unwrap();
    fails(
        d,
        &fit_args("mixed.csv", "1"),
        1,
        &["mixed.csv", "column \"name\"", "\"foo\" is not a number"],
    );
    let mut args = fit_args("mixed.csv", "1");
    args.extend(["--columns", "x"]);
    ok(d, &args);
    std::fs::remove_file(d.join("out.json")).unwrap();
    let mut args = fit_args("mixed.csv", "1");
    args.extend(["--columns", "y"]);
    fails(
        d,
        &args,
        1,
        &["mixed.csv", "no column named \"y\"", "\"name\", \"x\""],
    );
}

#[test]
fn component_counts_out_of_range() {
    let dir = tmp();
    let d = dir.path();
    fails(
        d,
        &fit_args(FAITHFUL, "0"),
        2,
        &["--components must be at least 1"],
    );
    std::fs::write(d.join("three.csv"), "a\n1\n2\n3\n").unwrap();
    fails(
        d,
        &fit_args("three.csv", "4"),
        1,
        &[
            "three.csv",
            "n_components=4 is larger than the number of samples (3)",
        ],
    );
    let mut args = fit_args(FAITHFUL, "2");
    args.extend(["--n-init", "0"]);
    fails(d, &args, 2, &["--n-init must be at least 1"]);
}

#[test]
fn raw_files_whose_size_does_not_divide_by_dims() {
    let dir = tmp();
    let d = dir.path();
    std::fs::write(d.join("x.f32"), [0u8; 4 * 10]).unwrap();
    let mut args = fit_args("x.f32", "1");
    args.extend(["--dims", "3"]);
    fails(
        d,
        &args,
        1,
        &[
            "x.f32",
            "10 float32 values",
            "do not divide into rows of --dims 3",
        ],
    );
    std::fs::write(d.join("odd.f32"), [0u8; 10]).unwrap();
    let mut args = fit_args("odd.f32", "1");
    args.extend(["--dims", "1"]);
    fails(
        d,
        &args,
        1,
        &[
            "odd.f32",
            "10 bytes",
            "not a whole number of float32 values",
        ],
    );
    // Without --dims an unknown extension cannot be read.
    fails(
        d,
        &fit_args("x.f32", "1"),
        1,
        &["x.f32", "cannot tell the format", "--dims"],
    );
    // --dims on an .npy file is a mistake, said so.
    let mut args = fit_args(FAITHFUL, "1");
    args.extend(["--dims", "2"]);
    fails(d, &args, 2, &["--dims applies to raw float32 files only"]);
}

#[test]
fn bad_model_files() {
    let dir = tmp();
    let d = dir.path();
    let run = |model: &str, needles: &[&str]| {
        let mut all = vec![model];
        all.extend_from_slice(needles);
        fails(d, &["score", "-m", model, "-i", FAITHFUL], 1, &all);
        fails(
            d,
            &["predict", "-m", model, "-i", FAITHFUL, "-o", "l.npy"],
            1,
            &all,
        );
        fails(
            d,
            &["sample", "-m", model, "--n", "5", "-o", "x.npy"],
            1,
            &all,
        );
    };
    std::fs::write(d.join("text.json"), "weights: 0.5, 0.5\n").unwrap();
    run("text.json", &["not valid JSON"]);
    std::fs::write(d.join("binary.json"), [0xff, 0xfe, 0x00, 0x81]).unwrap();
    run("binary.json", &["not text"]);
    std::fs::write(
        d.join("other.json"),
        r#"{"format": "something-else", "version": 1}"#,
    )
    .unwrap();
    run("other.json", &["\"format\" must be \"emgpu-model\""]);
    let good = std::fs::read_to_string(START_FULL).unwrap();
    let mut doc: Value = serde_json::from_str(&good).unwrap();
    doc.as_object_mut().unwrap().remove("weights");
    std::fs::write(d.join("noweights.json"), doc.to_string()).unwrap();
    run("noweights.json", &["missing field \"weights\""]);
    let mut doc: Value = serde_json::from_str(&good).unwrap();
    doc["means"] = serde_json::json!([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    std::fs::write(d.join("shape.json"), doc.to_string()).unwrap();
    run(
        "shape.json",
        &["\"means\" does not have the shape", "[2, 2]"],
    );
    let mut doc: Value = serde_json::from_str(&good).unwrap();
    doc["weights"] = serde_json::json!([0.7, 0.7]);
    std::fs::write(d.join("sum.json"), doc.to_string()).unwrap();
    run("sum.json", &["weights must sum to 1"]);
    let mut doc: Value = serde_json::from_str(&good).unwrap();
    doc["covariances"][1] = serde_json::json!([[1.0, 2.0], [2.0, 1.0]]);
    std::fs::write(d.join("indefinite.json"), doc.to_string()).unwrap();
    run("indefinite.json", &["component 1 is not positive definite"]);
    run("missing.json", &["No such file"]);
    // As a warm start, too.
    let mut args = fit_args(FAITHFUL, "2");
    args.extend(["--init", "shape.json"]);
    fails(
        d,
        &args,
        1,
        &["shape.json", "\"means\" does not have the shape"],
    );
}

#[test]
fn data_whose_dimension_differs_from_the_model() {
    let dir = tmp();
    let d = dir.path();
    write_npy(
        d.join("three.npy"),
        &array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
    )
    .unwrap();
    let model = START_FULL;
    let needles = ["three.npy", "3 features", "fitted on 2"];
    fails(d, &["score", "-m", model, "-i", "three.npy"], 1, &needles);
    fails(
        d,
        &["predict", "-m", model, "-i", "three.npy", "-o", "l.npy"],
        1,
        &needles,
    );
    let mut args = fit_args("three.npy", "2");
    args.extend(["--init", model]);
    fails(d, &args, 1, &needles);
}

#[test]
fn outputs_in_a_directory_that_does_not_exist() {
    let dir = tmp();
    let d = dir.path();
    let model = START_FULL;
    let out = "no/such/dir/out.npy";
    let needles = [out, "the directory no/such/dir does not exist"];
    fails(
        d,
        &[
            "fit",
            "-i",
            FAITHFUL,
            "-k",
            "2",
            "-o",
            "no/such/dir/out.npy",
        ],
        1,
        &needles,
    );
    fails(
        d,
        &["predict", "-m", model, "-i", FAITHFUL, "-o", out],
        1,
        &needles,
    );
    fails(
        d,
        &["sample", "-m", model, "--n", "3", "-o", out],
        1,
        &needles,
    );
    fails(
        d,
        &[
            "sample",
            "-m",
            model,
            "--n",
            "3",
            "-o",
            "x.npy",
            "--labels-output",
            out,
        ],
        1,
        &needles,
    );
}

#[test]
fn a_singular_covariance_that_reg_covar_cannot_fix() {
    // Column b is constant: its variance is exactly 0, and reg_covar = 0 adds nothing.
    let dir = tmp();
    let d = dir.path();
    std::fs::write(d.join("same.csv"), "a,b\n1,0\n2,0\n3,0\n4,0\n5,0\n").unwrap();
    let mut args = fit_args("same.csv", "1");
    args.extend(["--reg-covar", "0"]);
    fails(
        d,
        &args,
        1,
        &[
            "same.csv",
            "component 0 has an ill-defined covariance",
            "increase reg_covar (now 0e0)",
        ],
    );
    // With the default reg_covar the same data fits.
    ok(d, &fit_args("same.csv", "1"));
}

#[test]
fn bad_command_lines() {
    let dir = tmp();
    let d = dir.path();
    let mut args = fit_args(FAITHFUL, "2");
    args.extend(["--init", "kmean"]);
    let run = emgpu(d, &args);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown init method \"kmean\""),
        "{}",
        run.stderr
    );
    let run = emgpu(d, &["fit", "-i", FAITHFUL, "-o", "m.json"]);
    assert_eq!(run.code, 2, "missing --components");
    assert!(run.stderr.contains("--components"), "{}", run.stderr);
    fails(
        d,
        &fit_args("missing.csv", "2"),
        1,
        &["missing.csv", "No such file"],
    );
    let mut args = fit_args(FAITHFUL, "2");
    args.extend(["--tol", "-1"]);
    fails(d, &args, 2, &["tol must be a finite number"]);
    fails(
        d,
        &["validate", "-i", FAITHFUL, "-k", "2", "--rtol", "-1"],
        2,
        &["--rtol"],
    );
    fails(
        d,
        &["sample", "-m", START_FULL, "--n", "0", "-o", "x.npy"],
        2,
        &["--n must be at least 1"],
    );
}
