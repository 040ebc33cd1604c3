//! `emgpu fit --sample-weight W.npy` through the binary: integer weights give the model of the
//! repeated rows from the same `--init MODEL.json` with `--tol 0` (Gaussian mixtures of every
//! covariance type, within 1e-9 relative on the CPU, 2e-3 on the GPU), weighted k-means is
//! scikit-learn's `KMeans.fit(X, sample_weight=W)` from the same `--init CENTERS.npy`
//! (`emgpu/tests/fixtures/sklearn_kmeans_weighted.json`), and every bad weight file is one error
//! line, a nonzero exit and no output file.

#[path = "common/cli.rs"]
mod cli_util;
#[path = "../../emgpu/tests/common/mod.rs"]
mod common;

use std::path::Path;

use cli_util::{fails, last_json, ok, read_json, tmp};
use common::{GPU_FLOOR, GPU_RTOL, assert_close, flatten, gpu_backend};
use ndarray::{Array1, Array2, Axis};
use ndarray_npy::write_npy;
use serde_json::Value;

/// Three blobs in 3-D with integer weights 0..=4, and the rows repeated that many times.
fn data(dir: &Path) -> (Array2<f64>, Vec<i64>) {
    let centers = [[0.0, 0.0, 0.0], [5.0, -2.0, 1.0], [-3.0, 4.0, 2.0]];
    let (x, _) = emgpu::synth::blobs(&centers, &[90, 70, 60], &[1.0, 0.8, 1.2], 17).unwrap();
    let w: Vec<i64> = (0..x.nrows() as i64).map(|i| (i * 7 + 3) % 5).collect();
    let idx: Vec<usize> = w
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| std::iter::repeat_n(i, c as usize))
        .collect();
    write_npy(dir.join("x.npy"), &x).unwrap();
    write_npy(dir.join("w.npy"), &Array1::from(w.clone())).unwrap();
    write_npy(dir.join("rep.npy"), &x.select(Axis(0), &idx)).unwrap();
    (x, w)
}

fn model_params(v: &Value) -> Vec<f64> {
    ["weights", "means", "covariances"]
        .iter()
        .flat_map(|k| flatten(&v[*k]))
        .collect()
}

/// Fits the weighted and the repeated data from the same initial model on `backend`.
fn weighted_and_repeated(dir: &Path, cov: &str, backend: &str) -> (Value, Value, Value, Value) {
    let p = |s: &str| dir.join(s).display().to_string();
    ok(
        dir,
        &[
            "fit",
            "-i",
            &p("rep.npy"),
            "-k",
            "3",
            "--covariance",
            cov,
            "--max-iter",
            "1",
            "--backend",
            "cpu",
            "-o",
            &p("init.json"),
            "-q",
        ],
    );
    let common = [
        "--covariance",
        cov,
        "-k",
        "3",
        "--init",
        "init.json",
        "--tol",
        "0",
        "--max-iter",
        "12",
        "--backend",
        backend,
        "--json",
        "-q",
    ];
    let run = |input: &str, weights: Option<&str>, out: &str| {
        let mut args = vec!["fit", "-i", input, "-o", out];
        if let Some(w) = weights {
            args.extend(["--sample-weight", w]);
        }
        args.extend(common);
        let j = last_json(&ok(dir, &args));
        (j, read_json(&dir.join(out)))
    };
    let (wj, wm) = run("x.npy", Some("w.npy"), "weighted.json");
    let (rj, rm) = run("rep.npy", None, "repeated.json");
    (wj, wm, rj, rm)
}

#[test]
fn integer_weights_give_the_repeated_rows_model_for_every_covariance_type() {
    let dir = tmp();
    let (_, w) = data(dir.path());
    for cov in ["full", "tied", "diag", "spherical"] {
        let (wj, wm, rj, rm) = weighted_and_repeated(dir.path(), cov, "cpu");
        assert_eq!(wj["weighted"], true);
        assert_eq!(wj["sum_of_weights"], w.iter().sum::<i64>() as f64);
        assert_eq!(rj["weighted"], false);
        assert_eq!(wm["n_iter"], 12);
        assert_close(cov, &model_params(&wm), &model_params(&rm), 1e-9, 1e-12);
        assert_close(
            &format!("{cov} lower_bound"),
            &[wm["lower_bound"].as_f64().unwrap()],
            &[rm["lower_bound"].as_f64().unwrap()],
            1e-9,
            0.0,
        );
        assert_close(
            &format!("{cov} lower_bound (--json)"),
            &[wj["lower_bound"].as_f64().unwrap()],
            &[rj["lower_bound"].as_f64().unwrap()],
            1e-9,
            0.0,
        );
    }
}

#[test]
fn weighted_fits_on_the_gpu_match_the_repeated_rows_on_the_cpu() {
    if gpu_backend("weighted_fits_on_the_gpu_match_the_repeated_rows_on_the_cpu").is_none() {
        return;
    }
    let dir = tmp();
    data(dir.path());
    for cov in ["full", "diag"] {
        let (_, gpu, _, _) = weighted_and_repeated(dir.path(), cov, "gpu");
        let (_, _, _, cpu) = weighted_and_repeated(dir.path(), cov, "cpu");
        assert_eq!(gpu["backend"], "gpu");
        assert_close(
            cov,
            &model_params(&gpu),
            &model_params(&cpu),
            GPU_RTOL,
            GPU_FLOOR,
        );
        assert_close(
            &format!("{cov} lower_bound"),
            &[gpu["lower_bound"].as_f64().unwrap()],
            &[cpu["lower_bound"].as_f64().unwrap()],
            GPU_RTOL,
            0.0,
        );
    }
}

/// scikit-learn's weighted `KMeans` from the same centers (the library's fixture).
fn kmeans_against_sklearn(backend: &str, rtol: f64, floor: f64) {
    let text = include_str!("../../emgpu/tests/fixtures/sklearn_kmeans_weighted.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    let dir = tmp();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let n = case["x"].as_array().unwrap().len();
        let xs = flatten(&case["x"]);
        let d = xs.len() / n;
        let init = flatten(&case["init"]);
        let k = init.len() / d;
        write_npy(
            dir.path().join("x.npy"),
            &Array2::from_shape_vec((n, d), xs).unwrap(),
        )
        .unwrap();
        // Integer-valued weights as int64, the others as float64 (both are accepted).
        let w = flatten(&case["weights"]);
        if w.iter().all(|v| v.fract() == 0.0) {
            let wi: Array1<i64> = w.iter().map(|&v| v as i64).collect();
            write_npy(dir.path().join("w.npy"), &wi).unwrap();
        } else {
            write_npy(dir.path().join("w.npy"), &Array1::from(w)).unwrap();
        }
        write_npy(
            dir.path().join("c.npy"),
            &Array2::from_shape_vec((k, d), init).unwrap(),
        )
        .unwrap();
        let max_iter = case["max_iter"].to_string();
        let run = ok(
            dir.path(),
            &[
                "fit",
                "--model",
                "kmeans",
                "-i",
                "x.npy",
                "-k",
                &k.to_string(),
                "--init",
                "c.npy",
                "--tol",
                "0",
                "--max-iter",
                &max_iter,
                "--sample-weight",
                "w.npy",
                "--backend",
                backend,
                "-o",
                "km.json",
                "--json",
                "-q",
            ],
        );
        let j = last_json(&run);
        let model = read_json(&dir.path().join("km.json"));
        let e = &case["expected"];
        let what = format!("{name} ({backend})");
        assert_close(
            &format!("{what} centers"),
            &flatten(&model["cluster_centers"]),
            &flatten(&e["cluster_centers"]),
            rtol,
            floor,
        );
        assert_close(
            &format!("{what} inertia"),
            &[j["inertia"].as_f64().unwrap()],
            &[e["inertia"].as_f64().unwrap()],
            rtol,
            0.0,
        );
        assert_eq!(j["n_iter"], e["n_iter"], "{what}");
    }
}

#[test]
fn weighted_kmeans_matches_scikit_learn() {
    kmeans_against_sklearn("cpu", 1e-9, 0.0);
    if gpu_backend("weighted_kmeans_matches_scikit_learn (gpu)").is_some() {
        kmeans_against_sklearn("gpu", GPU_RTOL, GPU_FLOOR);
    }
}

#[test]
fn bad_weights_are_one_error_line_and_no_file() {
    let dir = tmp();
    let d = dir.path();
    data(d);
    let n = 220;
    let put = |name: &str, w: Vec<f64>| write_npy(d.join(name), &Array1::from(w)).unwrap();
    let mut neg = vec![1.0; n];
    neg[5] = -0.5;
    put("neg.npy", neg);
    let mut nan = vec![1.0; n];
    nan[7] = f64::NAN;
    put("nan.npy", nan);
    put("zero.npy", vec![0.0; n]);
    put("short.npy", vec![1.0; n - 1]);
    write_npy(d.join("two_d.npy"), &Array2::<f64>::ones((n, 1))).unwrap();
    std::fs::write(d.join("text.npy"), "not a npy file").unwrap();
    for model in ["gmm", "kmeans"] {
        for (file, needle) in [
            ("neg.npy", "sample weight 5 is -0.5; weights must be ≥ 0"),
            ("nan.npy", "sample weight 7 is NaN; weights must be finite"),
            ("zero.npy", "all zero"),
            ("short.npy", "219 values but the data has 220 rows"),
            ("two_d.npy", "not a 1-D .npy"),
            ("text.npy", "not a 1-D .npy"),
            ("missing.npy", "cannot open it"),
        ] {
            fails(
                d,
                &[
                    "fit",
                    "--model",
                    model,
                    "-i",
                    "x.npy",
                    "-k",
                    "2",
                    "--sample-weight",
                    file,
                    "-o",
                    "out.json",
                ],
                1,
                &["--sample-weight", file, needle],
            );
        }
    }
    fails(
        d,
        &[
            "fit",
            "--model",
            "hmm",
            "-i",
            "x.npy",
            "-k",
            "2",
            "--sample-weight",
            "w.npy",
            "-o",
            "out.json",
        ],
        2,
        &["--sample-weight", "--model hmm"],
    );
}
