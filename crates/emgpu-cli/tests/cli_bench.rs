//! `emgpu bench` through the binary: small workloads, the report's fields, GPU and CPU agreeing,
//! the data it writes for scripts/compare_sklearn.py, and its usage errors.

#[path = "../../emgpu/tests/common/mod.rs"]
mod common;

#[path = "common/cli.rs"]
mod cli_util;

use cli_util::{fails, ok};
use serde_json::Value;

fn json_line(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

#[test]
fn bench_reports_every_iteration_and_backend() {
    let dir = tempfile::tempdir().unwrap();
    let mut backends = vec!["cpu"];
    if common::gpu_backend("bench_reports_every_iteration_and_backend").is_some() {
        backends.insert(0, "gpu");
    }
    let list = backends.join(",");
    let args = [
        "bench",
        "--n",
        "3001",
        "--d",
        "3",
        "--k",
        "4",
        "--iters",
        "4",
        "--backend",
        &list,
        "--json",
    ];
    let doc = json_line(&ok(dir.path(), &args).stdout);
    assert_eq!(doc["workload"]["n"], 3001);
    assert_eq!(doc["iters"], 4);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), backends.len());
    for (run, want) in runs.iter().zip(&backends) {
        assert_eq!(run["ran_on"], *want);
        assert_eq!(run["iter_ms"].as_array().unwrap().len(), 4);
        let lbs: Vec<f64> = run["lower_bounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            lbs.windows(2).all(|w| w[1] >= w[0] - 1e-5 * w[0].abs()),
            "{lbs:?}"
        );
        assert!(run["median_iter_ms"].as_f64().unwrap() > 0.0);
    }
    // The same start on every backend: the same final lower bound (f32 on the GPU).
    assert!(
        doc["max_lower_bound_rel_diff"].as_f64().unwrap() < 1e-4,
        "{doc}"
    );
    // The same flags give the same data: the CPU's lower bounds repeat exactly.
    let again = json_line(
        &ok(
            dir.path(),
            &[
                "bench",
                "--n",
                "3001",
                "--d",
                "3",
                "--k",
                "4",
                "--iters",
                "4",
                "--backend",
                "cpu",
                "--json",
            ],
        )
        .stdout,
    );
    assert_eq!(
        again["runs"][0]["lower_bounds"],
        runs.last().unwrap()["lower_bounds"]
    );
}

#[test]
fn bench_writes_data_and_times_it_back() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "bench",
            "--n",
            "500",
            "--d",
            "2",
            "--k",
            "3",
            "--covariance",
            "diag",
            "--write-data",
            "w",
        ],
    );
    let w = dir.path().join("w");
    assert!(w.join("X.npy").exists() && w.join("init.json").exists());
    // init.json is a model file: the CLI reads it like any other.
    ok(
        dir.path(),
        &["score", "--model", "w/init.json", "--input", "w/X.npy"],
    );
    let doc = json_line(
        &ok(
            dir.path(),
            &[
                "bench",
                "--input",
                "w/X.npy",
                "--init",
                "w/init.json",
                "--iters",
                "3",
                "--backend",
                "cpu",
                "--json",
            ],
        )
        .stdout,
    );
    assert_eq!(doc["workload"]["n"], 500);
    assert_eq!(doc["workload"]["covariance_type"], "diag");
    // Timing the written data from the written start is the generated run, to the last digit.
    let generated = json_line(
        &ok(
            dir.path(),
            &[
                "bench",
                "--n",
                "500",
                "--d",
                "2",
                "--k",
                "3",
                "--covariance",
                "diag",
                "--iters",
                "3",
                "--backend",
                "cpu",
                "--json",
            ],
        )
        .stdout,
    );
    let a = doc["runs"][0]["final_lower_bound"].as_f64().unwrap();
    let b = generated["runs"][0]["final_lower_bound"].as_f64().unwrap();
    assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} vs {b}");
}

#[test]
fn bench_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    fails(
        dir.path(),
        &["bench", "--iters", "0"],
        2,
        &["--iters must be at least 1"],
    );
    fails(
        dir.path(),
        &["bench", "--n", "100", "--backend", "tpu"],
        2,
        &["unknown backend", "auto, cpu or gpu"],
    );
    fails(
        dir.path(),
        &["bench", "--n", "100", "--cpu-path", "fast"],
        2,
        &["unknown --cpu-path"],
    );
    fails(
        dir.path(),
        &["bench", "--n", "10", "--k", "20", "--backend", "cpu"],
        2,
        &["at least as many points as components"],
    );
}

#[test]
fn bench_missing_reports_both_workloads_and_layouts() {
    // Tiny (--scale 0.002: 674 × 4 and 2000 × 16): the report's shape and keys, and the
    // grouped and streamed layouts running the same EM (their lower bounds agree), not speed.
    let dir = tempfile::tempdir().unwrap();
    let mut backends = vec!["cpu"];
    if common::gpu_backend("bench_missing_reports_both_workloads_and_layouts").is_some() {
        backends.push("gpu");
    }
    let list = backends.join(",");
    let args = [
        "bench",
        "--missing",
        "--scale",
        "0.002",
        "--iters",
        "2",
        "--backend",
        &list,
        "--json",
    ];
    let doc = json_line(&ok(dir.path(), &args).stdout);
    assert_eq!(doc["mode"], "missing");
    assert_eq!(doc["iters"], 2);
    assert_eq!(doc["k"], 8);
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * backends.len());
    let want = [("flights", 674, 4), ("mcar", 2000, 16)];
    for (i, row) in rows.iter().enumerate() {
        let (name, n, d) = want[i / backends.len()];
        let backend = backends[i % backends.len()];
        assert_eq!(row["workload"], name, "{row}");
        assert_eq!(row["backend"], backend, "{row}");
        assert_eq!(row["n"], n, "{row}");
        assert_eq!(row["d"], d, "{row}");
        assert!(row["patterns"].as_u64().unwrap() >= 2, "{row}");
        let incomplete = row["incomplete_rows_pct"].as_f64().unwrap();
        assert!(incomplete > 0.0 && incomplete < 100.0, "{row}");
        for v in ["complete", "grouped", "streamed"] {
            assert_eq!(row[v]["ran_on"], backend, "{v}: {row}");
            assert!(
                row[v]["median_iter_ms"].as_f64().unwrap() > 0.0,
                "{v}: {row}"
            );
            assert!(row[v]["final_lower_bound"].as_f64().unwrap().is_finite());
        }
        for r in ["grouped_ratio", "streamed_ratio"] {
            assert!(row[r].as_f64().unwrap() > 0.0, "{r}: {row}");
        }
        let tol = if backend == "cpu" { 1e-10 } else { 2e-3 };
        assert!(
            row["lower_bound_rel_diff"].as_f64().unwrap() <= tol,
            "grouped and streamed fit differently: {row}"
        );
        let streamed = row["streamed"]["note"].as_str().unwrap();
        assert!(streamed.contains("streamed in chunks"), "{streamed}");
    }
    // The table names both workloads.
    let text = ok(
        dir.path(),
        &[
            "bench",
            "--missing",
            "--scale",
            "0.002",
            "--iters",
            "1",
            "--backend",
            "cpu",
        ],
    )
    .stdout;
    assert!(text.contains("flights") && text.contains("mcar"), "{text}");
    assert!(text.contains("streamed ms"), "{text}");
    // Usage errors.
    fails(
        dir.path(),
        &["bench", "--missing", "--d", "3"],
        2,
        &["bench --missing", "--d"],
    );
    fails(
        dir.path(),
        &["bench", "--missing", "--scale", "0"],
        2,
        &["--scale", "(0, 1]"],
    );
}
