//! `emgpu fit --online` (stepwise EM), `--reseed`, `--plot` and `emgpu plot`: the flags, the
//! keys of the `--json` line, the lower bound equal to `emgpu score`, and every bad flag as one
//! error line that leaves no file behind.

#[path = "common/cli.rs"]
mod cli_util;

use std::path::Path;

use cli_util::{fails, last_json, ok, read_json, tmp};
use serde_json::Value;

/// Synthetic data (`emgpu bench --write-data`): X.npy and init.json in `dir`.
fn write_data(dir: &Path, n: &str) {
    ok(
        dir,
        &[
            "bench",
            "--quiet",
            "--write-data",
            ".",
            "--n",
            n,
            "--d",
            "3",
            "--k",
            "4",
        ],
    );
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn online_fit_reports_its_passes_and_the_full_data_lower_bound() {
    let dir = tmp();
    let d = dir.path();
    write_data(d, "20000");
    let args = [
        "fit",
        "--quiet",
        "--json",
        "--backend",
        "cpu",
        "-i",
        "X.npy",
        "-k",
        "4",
        "--init",
        "init.json",
        "--online",
        "--batch-size",
        "500",
        "--decay",
        "0.7",
        "--passes",
        "3",
        "-o",
        "online.json",
    ];
    let line = last_json(&ok(d, &args));
    assert_eq!(line["online"], true);
    assert_eq!(
        line["passes"], 3,
        "the stepwise passes, evaluation not counted"
    );
    assert_eq!(line["evaluation_passes"], 1);
    assert_eq!(line["batch_size"], 500);
    assert_eq!(line["n_batches"], 40);
    assert_eq!(f(&line["decay"]), 0.7);
    assert_eq!(line["reseeds"], 0);
    assert_eq!(line["n_iter"], 120);
    let lb = f(&line["lower_bound"]);
    let model = read_json(&d.join("online.json"));
    assert_eq!(f(&model["lower_bound"]), lb);
    assert_eq!(model["online"]["passes"], 3);
    let score = last_json(&ok(
        d,
        &[
            "score",
            "--quiet",
            "--json",
            "--backend",
            "cpu",
            "--model",
            "online.json",
            "-i",
            "X.npy",
        ],
    ));
    let s = f(&score["score"]);
    assert!(
        (lb - s).abs() <= 1e-6 * s.abs(),
        "lower bound {lb} vs score {s}"
    );

    // The same seed gives the same model; batch EM reaches about the same optimum.
    ok(d, &[&args[..args.len() - 1], &["again.json"]].concat());
    assert_eq!(read_json(&d.join("again.json"))["means"], model["means"]);
    let batch = last_json(&ok(
        d,
        &[
            "fit",
            "--quiet",
            "--json",
            "--backend",
            "cpu",
            "-i",
            "X.npy",
            "-k",
            "4",
            "--init",
            "init.json",
            "--tol",
            "1e-6",
            "-o",
            "batch.json",
        ],
    ));
    assert_eq!(batch["online"], false);
    assert!(batch.get("passes").is_none());
    // After as many passes over the data, online EM is ahead of batch EM (whose iteration 4
    // scores the parameters of 3 passes) and near its optimum.
    let b = f(&batch["lower_bound"]);
    let after_3 = f(&read_json(&d.join("batch.json"))["lower_bound_trace"][3]);
    assert!(
        lb > after_3,
        "online {lb} vs batch after 3 passes {after_3}"
    );
    assert!((b - lb) / b.abs() < 2e-2, "online {lb} vs batch {b}");
}

#[test]
fn plot_writes_an_svg_of_each_trace() {
    let dir = tmp();
    let d = dir.path();
    write_data(d, "5000");
    let common = [
        "fit",
        "--quiet",
        "--json",
        "--backend",
        "cpu",
        "-i",
        "X.npy",
        "-k",
        "4",
        "--init",
        "init.json",
    ];
    let line = last_json(&ok(
        d,
        &[
            &common[..],
            &[
                "--online",
                "--batch-size",
                "1000",
                "--passes",
                "2",
                "--plot",
                "o.svg",
                "-o",
                "o.json",
            ],
        ]
        .concat(),
    ));
    assert_eq!(line["evaluation_passes"], 2, "--plot evaluates every pass");
    assert_eq!(line["lower_bound_trace"].as_array().unwrap().len(), 2);
    ok(
        d,
        &[&common[..], &["--plot", "b.svg", "-o", "b.json"]].concat(),
    );
    ok(
        d,
        &[
            "plot", "--quiet", "--model", "b.json", "--model", "o.json", "--x", "seconds", "-o",
            "both.svg",
        ],
    );
    for svg in ["o.svg", "b.svg", "both.svg"] {
        let text = std::fs::read_to_string(d.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("polyline"),
            "{svg}"
        );
    }
    let both = std::fs::read_to_string(d.join("both.svg")).unwrap();
    assert!(both.contains("batch EM") && both.contains("stepwise EM"));
}

#[test]
fn reseed_is_reported_and_changes_nothing_without_a_collapse() {
    let dir = tmp();
    let d = dir.path();
    write_data(d, "3000");
    let base = [
        "fit",
        "--quiet",
        "--json",
        "--backend",
        "cpu",
        "-i",
        "X.npy",
        "-k",
        "4",
        "--init",
        "init.json",
    ];
    let plain = last_json(&ok(d, &[&base[..], &["-o", "a.json"]].concat()));
    let with = last_json(&ok(d, &[&base[..], &["--reseed", "-o", "b.json"]].concat()));
    assert_eq!(
        (plain["reseeds"].clone(), with["reseeds"].clone()),
        (0.into(), 0.into())
    );
    assert_eq!(with["reseed"], true);
    let (a, b) = (read_json(&d.join("a.json")), read_json(&d.join("b.json")));
    assert_eq!(a["means"], b["means"]);
    assert_eq!(a["lower_bound"], b["lower_bound"]);
}

#[test]
fn bad_online_flags_are_one_error_line_and_no_file() {
    let dir = tmp();
    let d = dir.path();
    write_data(d, "500");
    let base = ["fit", "-i", "X.npy", "-k", "2", "-o", "m.json"];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    for decay in ["0.5", "1.01", "0", "-1", "nan"] {
        fails(
            d,
            &with(&["--online", "--decay", decay]),
            2,
            &["--decay", "0.5 < ALPHA ≤ 1"],
        );
    }
    fails(
        d,
        &with(&["--online", "--batch-size", "0"]),
        2,
        &["--batch-size"],
    );
    fails(d, &with(&["--online", "--passes", "0"]), 2, &["--passes"]);
    for flag in [
        ["--decay", "0.7"],
        ["--batch-size", "10"],
        ["--passes", "3"],
    ] {
        fails(d, &with(&flag), 2, &[flag[0], "--online"]);
    }
    fails(
        d,
        &with(&["--model", "kmeans", "--online"]),
        2,
        &["--online", "Gaussian mixtures"],
    );
    fails(
        d,
        &with(&["--model", "kmeans", "--reseed"]),
        2,
        &["--reseed"],
    );
    fails(d, &with(&["--plot", "m.json"]), 2, &["--plot"]);
    fails(
        d,
        &["plot", "--model", "nothing.json", "-o", "p.svg"],
        1,
        &["nothing.json"],
    );
}
