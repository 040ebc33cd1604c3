//! `--missing em` (issue 12): CSV empty/NA cells and NaN in .npy read as missing values; fit,
//! score and predict through the library's EM with missing entries (the CLI gives the library's
//! numbers); `emgpu impute`; without the flag NaN is an error naming it.

#[path = "common/cli.rs"]
mod cli_util;
#[path = "../../emgpu/tests/common/mod.rs"]
mod common;

use cli_util::{fails, last_json, ok, read_json, tmp};
use emgpu::{Backend, Dataset, FittedGmm, GaussianMixture};
use ndarray::Array2;
use ndarray_npy::{read_npy, write_npy};

/// 200 rows of two clusters in 3-D with holes: every fifth row misses column 1, every seventh
/// column 2 (row 35 misses both), and row 3 misses column 0.
fn holey() -> Array2<f64> {
    Array2::from_shape_fn((200, 3), |(i, j)| {
        let c = if i % 2 == 0 { 0.0 } else { 6.0 };
        let v = c + ((i * 7 + j * 13) % 17) as f64 / 8.0 - 1.0 + 0.3 * j as f64;
        let hole = (j == 1 && i % 5 == 0) || (j == 2 && i % 7 == 0) || (j == 0 && i == 3);
        if hole { f64::NAN } else { v }
    })
}

fn write_csv(path: &std::path::Path, x: &Array2<f64>) {
    let mut s = String::from("a,b,c\n");
    for (i, row) in x.rows().into_iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .map(|v| match (v.is_nan(), i % 2) {
                (true, 0) => String::new(),
                (true, _) => "NA".to_string(),
                (false, _) => format!("{v:?}"),
            })
            .collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

fn flat(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(flat).collect(),
        v => vec![v.as_f64().unwrap()],
    }
}

fn near(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{a:?} vs {b:?}");
    }
}

#[test]
fn fit_score_predict_impute_with_missing_values_give_the_library_numbers() {
    let dir = tmp();
    let p = dir.path();
    let x = holey();
    write_csv(&p.join("x.csv"), &x);
    write_npy(p.join("x.npy"), &x).unwrap();
    let data = Dataset::from_array(&x).with_missing_values();
    let lib = GaussianMixture::params(2)
        .backend(Backend::Cpu)
        .fit(&data)
        .unwrap();
    for input in ["x.csv", "x.npy"] {
        ok(
            p,
            &[
                "fit",
                "-i",
                input,
                "-k",
                "2",
                "-o",
                "m.json",
                "--missing",
                "em",
                "--backend",
                "cpu",
            ],
        );
        let m = read_json(&p.join("m.json"));
        near(&flat(&m["means"]), lib.params().means());
        near(&flat(&m["covariances"]), lib.params().covariances());
        let run = ok(
            p,
            &[
                "score",
                "-m",
                "m.json",
                "-i",
                input,
                "--missing",
                "em",
                "--json",
            ],
        );
        let score = last_json(&run)["score"].as_f64().unwrap();
        near(&[score], &[lib.score(&data).unwrap()]);
    }
    let model = FittedGmm::from_json(&std::fs::read_to_string(p.join("m.json")).unwrap()).unwrap();
    ok(
        p,
        &[
            "predict",
            "-m",
            "m.json",
            "-i",
            "x.csv",
            "--missing",
            "em",
            "-o",
            "p.npy",
            "--proba",
        ],
    );
    let proba: Array2<f64> = read_npy(p.join("p.npy")).unwrap();
    near(
        proba.as_slice().unwrap(),
        model.predict_proba(&data).unwrap().as_slice().unwrap(),
    );
    // impute reads the CSV's empty and NA cells as missing without the flag.
    ok(p, &["impute", "-m", "m.json", "-i", "x.csv", "-o", "y.npy"]);
    let y: Array2<f64> = read_npy(p.join("y.npy")).unwrap();
    let want = model.impute(&x).unwrap();
    for ((a, b), orig) in y.iter().zip(&want).zip(&x) {
        assert!(a.is_finite());
        if orig.is_nan() {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
        } else {
            assert_eq!(a.to_bits(), orig.to_bits(), "observed entries unchanged");
        }
    }
}

#[test]
fn without_the_flag_nan_and_na_are_errors_that_name_it() {
    let dir = tmp();
    let p = dir.path();
    let x = holey();
    write_csv(&p.join("x.csv"), &x);
    write_npy(p.join("x.npy"), &x).unwrap();
    fails(
        p,
        &["fit", "-i", "x.csv", "-k", "2", "-o", "m.json"],
        1,
        &["column \"b\" is empty", "--missing em", "--dropna"],
    );
    fails(
        p,
        &["fit", "-i", "x.npy", "-k", "2", "-o", "m.json"],
        1,
        &["non-finite value (NaN) at row 0, column 1", "--missing em"],
    );
    ok(
        p,
        &[
            "fit",
            "-i",
            "x.npy",
            "-k",
            "2",
            "-o",
            "m.json",
            "--missing",
            "em",
        ],
    );
    for args in [
        &["score", "-m", "m.json", "-i", "x.npy"][..],
        &["predict", "-m", "m.json", "-i", "x.npy", "-o", "l.npy"][..],
    ] {
        fails(p, args, 1, &["(NaN) at row 0, column 1", "--missing em"]);
    }
    // A row with nothing observed, and k-means, which has no missing-value EM.
    let mut empty = x.clone();
    empty.row_mut(9).fill(f64::NAN);
    write_npy(p.join("e.npy"), &empty).unwrap();
    fails(
        p,
        &[
            "fit",
            "-i",
            "e.npy",
            "-k",
            "2",
            "-o",
            "n.json",
            "--missing",
            "em",
        ],
        1,
        &["row 9 (0-based) has no observed value"],
    );
    fails(
        p,
        &["impute", "-m", "m.json", "-i", "e.npy", "-o", "y.npy"],
        1,
        &["row 9 (0-based) has no observed value"],
    );
    fails(
        p,
        &[
            "fit",
            "-i",
            "x.npy",
            "-k",
            "2",
            "-o",
            "k.json",
            "--missing",
            "em",
            "--model",
            "kmeans",
        ],
        2,
        &["k-means does not handle missing values"],
    );
    // select and validate do not run with missing values yet: a usage error that says so.
    fails(
        p,
        &[
            "select",
            "-i",
            "x.npy",
            "--components",
            "1..2",
            "--missing",
            "em",
        ],
        2,
        &["select does not run with --missing em yet"],
    );
    fails(
        p,
        &["validate", "-i", "x.npy", "-k", "2", "--missing", "em"],
        2,
        &["validate does not run with --missing em yet"],
    );
}

#[test]
fn missing_layout_streamed_gives_the_grouped_fit_and_bad_combinations_say_what_to_do() {
    let dir = tmp();
    let p = dir.path();
    let x = holey();
    write_npy(p.join("x.npy"), &x).unwrap();
    let mut means = Vec::new();
    for layout in ["grouped", "streamed"] {
        let out = format!("{layout}.json");
        let run = ok(
            p,
            &[
                "fit",
                "-i",
                "x.npy",
                "-k",
                "2",
                "-o",
                &out,
                "--missing",
                "em",
                "--missing-layout",
                layout,
                "--backend",
                "cpu",
                "--json",
            ],
        );
        let lb = last_json(&run)["lower_bound"].as_f64().unwrap();
        let m = read_json(&p.join(&out));
        means.push((lb, flat(&m["means"]), flat(&m["covariances"])));
    }
    // The same fit: the sums are only reordered.
    near(&[means[1].0], &[means[0].0]);
    near(&means[1].1, &means[0].1);
    near(&means[1].2, &means[0].2);
    fails(
        p,
        &[
            "fit",
            "-i",
            "x.npy",
            "-k",
            "2",
            "-o",
            "m.json",
            "--missing-layout",
            "grouped",
        ],
        2,
        &["--missing-layout", "--missing em"],
    );
}

#[test]
fn missing_layout_streamed_on_the_gpu_gives_the_cpu_fit_and_says_where_rows_ran() {
    // Once a usage error ("streamed runs on the CPU"): now the complete rows run on the GPU,
    // read from the input in place, and the incomplete rows stream on the CPU.
    let Some(_) = common::gpu_backend(
        "missing_layout_streamed_on_the_gpu_gives_the_cpu_fit_and_says_where_rows_ran",
    ) else {
        return;
    };
    let dir = tmp();
    let p = dir.path();
    let x = holey();
    write_npy(p.join("x.npy"), &x).unwrap();
    let mut fits = Vec::new();
    for backend in ["gpu", "cpu"] {
        let out = format!("{backend}.json");
        let run = ok(
            p,
            &[
                "fit",
                "-i",
                "x.npy",
                "-k",
                "2",
                "-o",
                &out,
                "--missing",
                "em",
                "--missing-layout",
                "streamed",
                "--backend",
                backend,
                "--max-iter",
                "20",
                "--tol",
                "0",
                "--json",
            ],
        );
        let doc = last_json(&run);
        assert_eq!(doc["backend"], backend, "{doc}");
        let m = read_json(&p.join(&out));
        fits.push((
            doc["lower_bound"].as_f64().unwrap(),
            flat(&m["means"]),
            run.stderr,
        ));
    }
    let (gpu, cpu) = (&fits[0], &fits[1]);
    assert!(
        gpu.2
            .contains("on the gpu engine (read from the data in place)")
            && gpu.2.contains("streamed in chunks"),
        "{}",
        gpu.2
    );
    assert!(
        (gpu.0 - cpu.0).abs() <= 2e-3 * cpu.0.abs(),
        "{} vs {}",
        gpu.0,
        cpu.0
    );
    for (g, c) in gpu.1.iter().zip(&cpu.1) {
        assert!((g - c).abs() <= 2e-3 * c.abs().max(1.0), "{g} vs {c}");
    }
}

#[test]
fn impute_on_the_gpu_gives_the_cpu_means_and_keeps_observed_entries() {
    let Some(_) =
        common::gpu_backend("impute_on_the_gpu_gives_the_cpu_means_and_keeps_observed_entries")
    else {
        return;
    };
    let dir = tmp();
    let p = dir.path();
    let x = holey();
    write_npy(p.join("x.npy"), &x).unwrap();
    ok(
        p,
        &[
            "fit",
            "-i",
            "x.npy",
            "-k",
            "2",
            "-o",
            "m.json",
            "--missing",
            "em",
            "--backend",
            "cpu",
        ],
    );
    ok(
        p,
        &[
            "impute",
            "-m",
            "m.json",
            "-i",
            "x.npy",
            "-o",
            "cpu.npy",
            "--backend",
            "cpu",
        ],
    );
    let run = ok(
        p,
        &[
            "impute",
            "-m",
            "m.json",
            "-i",
            "x.npy",
            "-o",
            "gpu.npy",
            "--backend",
            "gpu",
        ],
    );
    // The complete rows' responsibilities came from the GPU; the backend line says so.
    assert!(run.stderr.contains("backend: gpu"), "{}", run.stderr);
    let cpu: Array2<f64> = read_npy(p.join("cpu.npy")).unwrap();
    let gpu: Array2<f64> = read_npy(p.join("gpu.npy")).unwrap();
    for ((g, c), orig) in gpu.iter().zip(&cpu).zip(&x) {
        if orig.is_nan() {
            assert!((g - c).abs() <= 2e-3 * c.abs().max(1.0), "{g} vs {c}");
        } else {
            assert_eq!(g.to_bits(), orig.to_bits(), "observed entries unchanged");
        }
    }
}
