//! Tables as users export them (issue 15, "Data in"): R's row names and pandas' index skipped,
//! `--drop`, `--columns` by position with spaces, TSV and `--delimiter`, header-less files,
//! missing cells (`NA`) refused with the advice of `--dropna`, which drops and counts them,
//! non-numeric columns refused with the list of numeric ones, and inputs that are not files.

#[path = "common/cli.rs"]
mod cli_util;

use cli_util::{fails, ok, read_json, tmp};

/// An R `write.csv` export: a quoted empty first header, row names, a factor column, one NA.
const R_CSV: &str = "\"\",\"a\",\"b\",\"species\"\n\"1\",1.0,2.0,\"x\"\n\"2\",1.5,2.5,\"y\"\n\"3\",NA,3.0,\"x\"\n\"4\",4.0,5.0,\"y\"\n\"5\",4.5,5.5,\"x\"\n";

/// Asserts `got` equals `want` to 1e-12 (the fit's rounding).
fn near(got: Vec<f64>, want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() < 1e-12 * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
}

fn means(dir: &std::path::Path, model: &str) -> Vec<f64> {
    let m = read_json(&dir.join(model));
    m["means"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn r_exports_need_drop_and_dropna_and_say_so() {
    let dir = tmp();
    let p = dir.path();
    std::fs::write(p.join("r.csv"), R_CSV).unwrap();
    // The factor column: refused, with the numeric columns to pick from.
    fails(
        p,
        &["fit", "-i", "r.csv", "-k", "1", "-o", "m.json"],
        1,
        &[
            "\"x\" is not a number",
            "the numeric columns are a, b",
            "--columns a,b",
            "--drop species",
        ],
    );
    // Dropping it leaves the NA: refused, naming --dropna.
    fails(
        p,
        &[
            "fit", "-i", "r.csv", "-k", "1", "-o", "m.json", "--drop", "species",
        ],
        1,
        &[
            "line 4 (data row 2, 0-based), column \"a\" is missing (\"NA\")",
            "--dropna",
        ],
    );
    // With --dropna: the row names are skipped (noted), one row dropped (counted).
    let run = ok(
        p,
        &[
            "fit", "-i", "r.csv", "-k", "1", "-o", "m.json", "--drop", "species", "--dropna",
        ],
    );
    assert!(
        run.stderr.contains("holds row names (R's `write.csv`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--dropna dropped 1 of 5 rows"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("1 full component on 4 samples × 2 features (a, b)"),
        "{}",
        run.stderr
    );
    let m = read_json(&p.join("m.json"));
    assert_eq!(m["feature_names"], serde_json::json!(["a", "b"]));
    let mu = means(p, "m.json");
    assert!(
        (mu[0] - 2.75).abs() < 1e-12 && (mu[1] - 3.75).abs() < 1e-12,
        "{mu:?}"
    );
    // The same columns by 0-based position, with spaces after the comma.
    ok(
        p,
        &[
            "fit",
            "-i",
            "r.csv",
            "-k",
            "1",
            "-o",
            "n.json",
            "--columns",
            "1, 2",
            "--dropna",
        ],
    );
    near(means(p, "n.json"), &mu);
}

#[test]
fn tsv_delimiters_and_headerless_files() {
    let dir = tmp();
    let p = dir.path();
    std::fs::write(p.join("t.tsv"), "x\ty\n1\t2\n3\t4\n5\t9\n").unwrap();
    ok(p, &["fit", "-i", "t.tsv", "-k", "1", "-o", "t.json"]);
    near(means(p, "t.json"), &[3.0, 5.0]);
    std::fs::write(p.join("s.csv"), "x;y\n1;2\n3;4\n5;9\n").unwrap();
    ok(
        p,
        &[
            "fit",
            "-i",
            "s.csv",
            "-k",
            "1",
            "-o",
            "s.json",
            "--delimiter",
            ";",
        ],
    );
    near(means(p, "s.json"), &[3.0, 5.0]);
    std::fs::write(p.join("h.csv"), "1,2,7\n3,4,7\n5,9,7\n").unwrap();
    fails(
        p,
        &["fit", "-i", "h.csv", "-k", "1", "-o", "h.json"],
        1,
        &["looks like data", "--no-header"],
    );
    ok(
        p,
        &[
            "fit",
            "-i",
            "h.csv",
            "-k",
            "1",
            "-o",
            "h.json",
            "--no-header",
            "--columns",
            "0,1",
        ],
    );
    near(means(p, "h.json"), &[3.0, 5.0]);
    let m = read_json(&p.join("h.json"));
    assert!(
        m.get("feature_names").is_none(),
        "positions are not names: {m}"
    );
    fails(
        p,
        &[
            "fit",
            "-i",
            "h.csv",
            "-k",
            "1",
            "-o",
            "h2.json",
            "--no-header",
            "--columns",
            "0,5",
        ],
        1,
        &["position 5 is out of range", "3 columns"],
    );
    fails(
        p,
        &[
            "fit",
            "-i",
            "s.csv",
            "-k",
            "1",
            "-o",
            "x.json",
            "--delimiter",
            "ab",
        ],
        2,
        &["--delimiter", "one ASCII character"],
    );
}

#[test]
fn inputs_that_are_not_files_are_named() {
    let dir = tmp();
    let p = dir.path();
    std::fs::create_dir(p.join("d.npy")).unwrap();
    fails(
        p,
        &["fit", "-i", "d.npy", "-k", "1", "-o", "m.json"],
        1,
        &["this is a directory"],
    );
    #[cfg(unix)]
    {
        let fifo = p.join("f.npy");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if status.is_ok_and(|s| s.success()) {
            fails(
                p,
                &["fit", "-i", "f.npy", "-k", "1", "-o", "m.json"],
                1,
                &["this is a FIFO"],
            );
        }
        fails(
            p,
            &[
                "fit",
                "-i",
                "/dev/zero",
                "--format",
                "npy",
                "-k",
                "1",
                "-o",
                "m.json",
            ],
            1,
            &["this is a device"],
        );
    }
}

/// `--threads N` sets the CPU backend's threads (the JSON line's device says how many).
#[test]
fn threads_flag_sets_the_cpu_threads() {
    let dir = tmp();
    let p = dir.path();
    std::fs::write(p.join("t.csv"), "x,y\n1,2\n3,4\n5,9\n2,2\n").unwrap();
    let run = ok(
        p,
        &[
            "--threads",
            "1",
            "fit",
            "-i",
            "t.csv",
            "-k",
            "1",
            "-o",
            "t.json",
            "--backend",
            "cpu",
            "--json",
        ],
    );
    let line: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(line["device"], "CPU (1 threads)");
    fails(
        p,
        &[
            "fit",
            "-i",
            "t.csv",
            "-k",
            "1",
            "-o",
            "u.json",
            "--threads",
            "0",
        ],
        2,
        &["--threads must be at least 1"],
    );
}

/// Messages of issue 15: a bad tuning variable is an error, not ignored; `bench --input` with
/// NaN names the non-finite value.
#[test]
fn bad_tuning_variables_and_nan_bench_input_are_named() {
    let dir = tmp();
    let p = dir.path();
    std::fs::write(p.join("t.csv"), "x,y\n1,2\n3,4\n5,9\n2,2\n").unwrap();
    let run = assert_cmd::cargo::cargo_bin_cmd!("emgpu")
        .current_dir(p)
        .env("EMGPU_GPU_RESIDENT_BYTES", "abc")
        .args(["fit", "-i", "t.csv", "-k", "1", "-o", "t.json"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("EMGPU_GPU_RESIDENT_BYTES=\"abc\" is not a whole number"),
        "{err}"
    );
    assert!(!p.join("t.json").exists());
    ok(p, &["fit", "-i", "t.csv", "-k", "1", "-o", "m.json"]);
    let x =
        ndarray::Array2::from_shape_vec((3, 2), vec![1.0, 2.0, f64::NAN, 4.0, 5.0, 9.0]).unwrap();
    ndarray_npy::write_npy(p.join("nan.npy"), &x).unwrap();
    fails(
        p,
        &[
            "bench",
            "--input",
            "nan.npy",
            "--init",
            "m.json",
            "--backend",
            "cpu",
            "--iters",
            "1",
        ],
        1,
        &["non-finite value (NaN) at row 1, column 0"],
    );
}

/// `validate` says which backend's fit failed.
#[test]
fn validate_names_the_backend_that_failed() {
    let dir = tmp();
    let p = dir.path();
    // Two identical columns: singular covariances without regularization.
    let x: Vec<f64> = (0..40).flat_map(|i| [i as f64, 2.0 * i as f64]).collect();
    let x = ndarray::Array2::from_shape_vec((40, 2), x).unwrap();
    ndarray_npy::write_npy(p.join("sing.npy"), &x).unwrap();
    fails(
        p,
        &[
            "validate",
            "-i",
            "sing.npy",
            "-k",
            "2",
            "--reg-covar",
            "0",
            "--backend",
            "cpu",
        ],
        1,
        &["the cpu fit failed: sing.npy:", "ill-defined covariance"],
    );
}

/// `show` gives BIC and AIC when the model file stores the training size (every fit writes it).
#[test]
fn show_gives_bic_and_aic_of_the_training_data() {
    let dir = tmp();
    let p = dir.path();
    let faithful = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/faithful.csv");
    ok(p, &["fit", "-i", faithful, "-k", "2", "-o", "f.json"]);
    let m = read_json(&p.join("f.json"));
    assert_eq!(m["n_samples"], 272);
    let run = ok(p, &["show", "f.json", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    let run = ok(p, &["score", "-m", "f.json", "-i", faithful, "--json"]);
    let score: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    // The fit converged: the last lower bound is the final model's score to the fit's tolerance.
    for key in ["bic", "aic"] {
        let (a, b) = (doc[key].as_f64().unwrap(), score[key].as_f64().unwrap());
        assert!((a - b).abs() < 1.0, "{key}: show {a} vs score {b}");
    }
    assert!(
        ok(p, &["show", "f.json"])
            .stdout
            .contains("272 training samples")
    );
}

/// A wgpu variable that selects no adapter is named, not answered with "install a driver".
#[test]
fn an_adapter_selection_that_matches_nothing_is_named() {
    let dir = tmp();
    let p = dir.path();
    std::fs::write(p.join("t.csv"), "x,y\n1,2\n3,4\n5,9\n2,2\n").unwrap();
    let run = assert_cmd::cargo::cargo_bin_cmd!("emgpu")
        .current_dir(p)
        .env("WGPU_ADAPTER_NAME", "no such adapter")
        .args([
            "fit",
            "-i",
            "t.csv",
            "-k",
            "1",
            "-o",
            "t.json",
            "--backend",
            "gpu",
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("WGPU_ADAPTER_NAME=\"no such adapter\" is set, which limits the adapters"),
        "{err}"
    );
    assert!(!p.join("t.json").exists());
}
