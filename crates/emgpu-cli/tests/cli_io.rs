//! Data in and out as users have it (issue 15): labels and responsibilities as CSV or on stdout,
//! fit-predict in one run, `emgpu show`, and feature names kept in the model file.

#[path = "common/cli.rs"]
mod cli_util;

use cli_util::{fails, last_json, ok, read_json, tmp};
use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;

/// The Old Faithful data (tests/data/README.md).
const FAITHFUL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/faithful.csv");

/// A CSV's header and its rows of numbers.
fn read_csv(text: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut lines = text.lines();
    let header = lines
        .next()
        .expect("a header")
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect())
        .collect();
    (header, rows)
}

/// Fits a 2-component model of Old Faithful as `m.json` in `dir`.
fn fit_faithful(dir: &std::path::Path, extra: &[&str]) -> cli_util::Run {
    let mut args = vec![
        "fit", "-i", FAITHFUL, "-k", "2", "--seed", "1", "-o", "m.json",
    ];
    args.extend_from_slice(extra);
    ok(dir, &args)
}

#[test]
fn predict_writes_labels_and_responsibilities_as_csv_and_to_stdout() {
    let dir = tmp();
    let d = dir.path();
    fit_faithful(d, &[]);
    ok(
        d,
        &["predict", "-m", "m.json", "-i", FAITHFUL, "-o", "l.npy"],
    );
    let npy: Array1<i64> = read_npy(d.join("l.npy")).unwrap();
    assert_eq!(npy.len(), 272);

    let run = ok(
        d,
        &["predict", "-m", "m.json", "-i", FAITHFUL, "-o", "l.csv"],
    );
    assert_eq!(run.stdout, "", "a file output prints nothing on stdout");
    let (header, rows) = read_csv(&std::fs::read_to_string(d.join("l.csv")).unwrap());
    assert_eq!(header, ["label"]);
    let csv: Vec<i64> = rows.iter().map(|r| r[0] as i64).collect();
    assert_eq!(csv, npy.to_vec());

    let run = ok(d, &["predict", "-m", "m.json", "-i", FAITHFUL, "-o", "-"]);
    let (header, rows) = read_csv(&run.stdout);
    assert_eq!(header, ["label"]);
    assert_eq!(
        rows.iter().map(|r| r[0] as i64).collect::<Vec<_>>(),
        npy.to_vec()
    );
    assert!(!d.join("-").exists(), "-o - writes no file named -");
    assert!(run.stderr.contains("→ stdout"), "{}", run.stderr);

    ok(
        d,
        &[
            "predict", "-m", "m.json", "-i", FAITHFUL, "-o", "p.npy", "--proba",
        ],
    );
    let proba: Array2<f64> = read_npy(d.join("p.npy")).unwrap();
    for out in ["p.csv", "-"] {
        let run = ok(
            d,
            &[
                "predict", "-m", "m.json", "-i", FAITHFUL, "-o", out, "--proba",
            ],
        );
        let text = if out == "-" {
            run.stdout
        } else {
            std::fs::read_to_string(d.join(out)).unwrap()
        };
        let (header, rows) = read_csv(&text);
        assert_eq!(header, ["p0", "p1"]);
        assert_eq!(rows.len(), 272);
        for (i, row) in rows.iter().enumerate() {
            // The text reads back as exactly the same numbers.
            assert_eq!(row.as_slice(), proba.row(i).to_vec().as_slice(), "row {i}");
        }
    }

    // The same-file check holds for CSV outputs too.
    std::fs::copy(FAITHFUL, d.join("data.csv")).unwrap();
    fails(
        d,
        &[
            "predict", "-m", "m.json", "-i", "data.csv", "-o", "data.csv",
        ],
        2,
        &["--output data.csv is the same file as --input data.csv"],
    );
}

#[test]
fn fit_labels_output_writes_the_training_labels_for_gmm_and_kmeans() {
    let dir = tmp();
    let d = dir.path();
    fit_faithful(d, &["--labels-output", "train.npy"]);
    ok(
        d,
        &["predict", "-m", "m.json", "-i", FAITHFUL, "-o", "pred.npy"],
    );
    let train: Array1<i64> = read_npy(d.join("train.npy")).unwrap();
    let pred: Array1<i64> = read_npy(d.join("pred.npy")).unwrap();
    assert_eq!(train, pred, "fit-predict gives predict's labels");

    let run = fit_faithful(d, &["--labels-output", "train.csv", "--json"]);
    let (header, rows) = read_csv(&std::fs::read_to_string(d.join("train.csv")).unwrap());
    assert_eq!(header, ["label"]);
    assert_eq!(
        rows.iter().map(|r| r[0] as i64).collect::<Vec<_>>(),
        pred.to_vec()
    );
    assert_eq!(last_json(&run)["model"], "gmm");

    ok(
        d,
        &[
            "fit",
            "-i",
            FAITHFUL,
            "-k",
            "3",
            "--model",
            "kmeans",
            "--seed",
            "2",
            "-o",
            "km.json",
            "--labels-output",
            "km.csv",
        ],
    );
    ok(
        d,
        &[
            "predict",
            "-m",
            "km.json",
            "-i",
            FAITHFUL,
            "-o",
            "kmpred.npy",
        ],
    );
    let kmpred: Array1<i64> = read_npy(d.join("kmpred.npy")).unwrap();
    let (_, rows) = read_csv(&std::fs::read_to_string(d.join("km.csv")).unwrap());
    assert_eq!(
        rows.iter().map(|r| r[0] as i64).collect::<Vec<_>>(),
        kmpred.to_vec()
    );
    assert!(kmpred.iter().all(|&l| (0..3).contains(&l)));

    // The labels never overwrite the model or the input.
    fails(
        d,
        &[
            "fit",
            "-i",
            FAITHFUL,
            "-k",
            "2",
            "-o",
            "x.json",
            "--labels-output",
            "x.json",
        ],
        2,
        &["--labels-output x.json is the same file as --output x.json"],
    );
    std::fs::copy(FAITHFUL, d.join("data.csv")).unwrap();
    fails(
        d,
        &[
            "fit",
            "-i",
            "data.csv",
            "-k",
            "2",
            "-o",
            "y.json",
            "--labels-output",
            "data.csv",
        ],
        2,
        &["--labels-output data.csv is the same file as --input data.csv"],
    );
    let _ = read_json(&d.join("m.json"));
}

#[test]
fn show_prints_a_gmm_model_as_a_table_and_as_json() {
    let dir = tmp();
    let d = dir.path();
    fit_faithful(d, &[]);
    let file = read_json(&d.join("m.json"));

    let run = ok(d, &["show", "m.json", "--json"]);
    let doc = last_json(&run);
    assert_eq!(doc["model"], "gmm");
    assert_eq!(doc["n_components"], 2);
    assert_eq!(doc["n_features"], 2);
    assert_eq!(doc["covariance_type"], "full");
    assert_eq!(doc["weights"], file["weights"]);
    assert_eq!(doc["means"], file["means"]);
    assert_eq!(doc["lower_bound"], file["lower_bound"]);
    assert_eq!(doc["n_iter"], file["n_iter"]);
    assert_eq!(doc["converged"], file["converged"]);
    assert!(
        doc.get("covariances").is_none(),
        "covariances only with --full"
    );
    for c in 0..2 {
        for i in 0..2 {
            assert_eq!(
                doc["variances"][c][i], file["covariances"][c][i][i],
                "variance {c},{i} is the covariance's diagonal"
            );
        }
    }
    let full = last_json(&ok(d, &["show", "m.json", "--json", "--full"]));
    assert_eq!(full["covariances"], file["covariances"]);

    let run = ok(d, &["show", "m.json"]);
    assert!(
        run.stdout
            .contains("2 components, 2 features, covariance full"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("component  weight"), "{}", run.stdout);
    assert!(run.stdout.contains("converged"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("covariance of component"),
        "{}",
        run.stdout
    );
    let run = ok(d, &["show", "m.json", "--full"]);
    assert!(
        run.stdout.contains("covariance of component 1:"),
        "{}",
        run.stdout
    );

    // Diagonal and spherical models: the variances are the covariances as stored.
    for (cov, spherical) in [("diag", false), ("spherical", true)] {
        ok(
            d,
            &[
                "fit",
                "-i",
                FAITHFUL,
                "-k",
                "2",
                "--covariance",
                cov,
                "-o",
                "c.json",
            ],
        );
        let file = read_json(&d.join("c.json"));
        let doc = last_json(&ok(d, &["show", "c.json", "--json"]));
        assert_eq!(doc["covariance_type"], cov);
        for c in 0..2 {
            for i in 0..2 {
                let want = if spherical {
                    &file["covariances"][c]
                } else {
                    &file["covariances"][c][i]
                };
                assert_eq!(&doc["variances"][c][i], want, "{cov} {c},{i}");
            }
        }
    }

    fails(d, &["show", "missing.json"], 1, &["missing.json"]);
    std::fs::write(d.join("bad.json"), "{\"format\": \"emgpu-model\"}").unwrap();
    fails(
        d,
        &["show", "bad.json"],
        1,
        &["bad.json", "missing field \"version\""],
    );
}

#[test]
fn show_prints_a_kmeans_model() {
    let dir = tmp();
    let d = dir.path();
    ok(
        d,
        &[
            "fit", "-i", FAITHFUL, "-k", "2", "--model", "kmeans", "-o", "km.json",
        ],
    );
    let file = read_json(&d.join("km.json"));
    let doc = last_json(&ok(d, &["show", "km.json", "--json"]));
    assert_eq!(doc["model"], "kmeans");
    assert_eq!(doc["n_clusters"], 2);
    assert_eq!(doc["n_features"], 2);
    assert_eq!(doc["cluster_centers"], file["cluster_centers"]);
    assert_eq!(doc["inertia"], file["inertia"]);
    assert_eq!(doc["converged"], file["converged"]);
    let run = ok(d, &["show", "km.json"]);
    assert!(
        run.stdout
            .contains("k-means (kmeans): 2 clusters, 2 features"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("cluster  center"), "{}", run.stdout);
}

/// Old Faithful written again: its columns in `order` (names from the header), with a pandas
/// index column first when `index`.
fn faithful_as(path: &std::path::Path, order: &[&str], index: bool) {
    let text = std::fs::read_to_string(FAITHFUL).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let pick: Vec<usize> = order
        .iter()
        .map(|n| header.iter().position(|h| h == n).unwrap())
        .collect();
    let mut out = format!("{}{}\n", if index { "," } else { "" }, order.join(","));
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let row: Vec<&str> = pick.iter().map(|&c| cells[c]).collect();
        if index {
            out.push_str(&format!("{i},"));
        }
        out.push_str(&row.join(","));
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn feature_names_are_stored_and_select_the_columns_of_a_csv_by_name() {
    let dir = tmp();
    let d = dir.path();
    let run = fit_faithful(d, &[]);
    assert!(
        run.stderr.contains("× 2 features (eruptions, waiting)"),
        "the fit summary names the columns: {}",
        run.stderr
    );
    assert_eq!(
        read_json(&d.join("m.json"))["feature_names"],
        serde_json::json!(["eruptions", "waiting"])
    );
    let shown = last_json(&ok(d, &["show", "m.json", "--json"]));
    assert_eq!(
        shown["feature_names"],
        serde_json::json!(["eruptions", "waiting"])
    );

    // A reordered CSV gives the same labels and the same score.
    faithful_as(&d.join("rev.csv"), &["waiting", "eruptions"], false);
    ok(
        d,
        &["predict", "-m", "m.json", "-i", FAITHFUL, "-o", "a.npy"],
    );
    ok(
        d,
        &["predict", "-m", "m.json", "-i", "rev.csv", "-o", "b.npy"],
    );
    let a: Array1<i64> = read_npy(d.join("a.npy")).unwrap();
    let b: Array1<i64> = read_npy(d.join("b.npy")).unwrap();
    assert_eq!(a, b);
    let s1 = last_json(&ok(d, &["score", "-m", "m.json", "-i", FAITHFUL, "--json"]));
    let s2 = last_json(&ok(
        d,
        &["score", "-m", "m.json", "-i", "rev.csv", "--json"],
    ));
    assert_eq!(s1["score"], s2["score"]);

    // A CSV lacking a column, or --columns naming others, is refused.
    std::fs::write(d.join("miss.csv"), "waiting,other\n70,1\n80,2\n").unwrap();
    fails(
        d,
        &["predict", "-m", "m.json", "-i", "miss.csv", "-o", "c.npy"],
        1,
        &["miss.csv", "no column \"eruptions\""],
    );
    fails(
        d,
        &["score", "-m", "m.json", "-i", "miss.csv"],
        1,
        &["no column \"eruptions\""],
    );
    fails(
        d,
        &[
            "predict",
            "-m",
            "m.json",
            "-i",
            "rev.csv",
            "--columns",
            "waiting,eruptions",
            "-o",
            "c.npy",
        ],
        2,
        &[
            "--columns waiting,eruptions differs",
            "\"eruptions\", \"waiting\"",
        ],
    );

    // So does the model `select` writes.
    ok(
        d,
        &[
            "select",
            "-i",
            FAITHFUL,
            "--components",
            "1,2",
            "-o",
            "sel.json",
        ],
    );
    assert_eq!(
        read_json(&d.join("sel.json"))["feature_names"],
        serde_json::json!(["eruptions", "waiting"])
    );

    // k-means models keep the names too.
    ok(
        d,
        &[
            "fit", "-i", FAITHFUL, "-k", "2", "--model", "kmeans", "-o", "km.json",
        ],
    );
    ok(
        d,
        &["predict", "-m", "km.json", "-i", FAITHFUL, "-o", "ka.npy"],
    );
    ok(
        d,
        &["predict", "-m", "km.json", "-i", "rev.csv", "-o", "kb.npy"],
    );
    let ka: Array1<i64> = read_npy(d.join("ka.npy")).unwrap();
    let kb: Array1<i64> = read_npy(d.join("kb.npy")).unwrap();
    assert_eq!(ka, kb);
    fails(
        d,
        &["predict", "-m", "km.json", "-i", "miss.csv", "-o", "c.npy"],
        1,
        &["no column \"eruptions\""],
    );

    // An older model file (no feature_names) still loads and reads the CSV as before.
    let mut old = read_json(&d.join("m.json"));
    old.as_object_mut().unwrap().remove("feature_names");
    std::fs::write(d.join("old.json"), old.to_string()).unwrap();
    ok(
        d,
        &["predict", "-m", "old.json", "-i", FAITHFUL, "-o", "o.npy"],
    );
    let o: Array1<i64> = read_npy(d.join("o.npy")).unwrap();
    assert_eq!(o, a);
    assert_eq!(
        last_json(&ok(d, &["show", "old.json", "--json"]))["feature_names"],
        serde_json::Value::Null
    );
    // A model with the wrong number of names is refused.
    let mut bad = read_json(&d.join("m.json"));
    bad["feature_names"] = serde_json::json!(["a"]);
    std::fs::write(d.join("bad.json"), bad.to_string()).unwrap();
    fails(d, &["show", "bad.json"], 1, &["bad.json", "feature_names"]);
}

#[test]
fn a_pandas_index_column_is_skipped_with_a_note() {
    let dir = tmp();
    let d = dir.path();
    faithful_as(&d.join("idx.csv"), &["eruptions", "waiting"], true);
    fit_faithful(d, &[]);
    let run = ok(
        d,
        &[
            "fit", "-i", "idx.csv", "-k", "2", "--seed", "1", "-o", "mi.json",
        ],
    );
    assert!(run.stderr.contains("pandas index"), "{}", run.stderr);
    assert!(
        run.stderr.contains("× 2 features (eruptions, waiting)"),
        "{}",
        run.stderr
    );
    let (m, mi) = (read_json(&d.join("m.json")), read_json(&d.join("mi.json")));
    assert_eq!(m["means"], mi["means"], "the index is not a feature");
    // A model with feature names takes its columns by name: the index is not one of them.
    ok(
        d,
        &["predict", "-m", "m.json", "-i", "idx.csv", "-o", "l.npy"],
    );
    ok(
        d,
        &["predict", "-m", "m.json", "-i", FAITHFUL, "-o", "f.npy"],
    );
    let l: Array1<i64> = read_npy(d.join("l.npy")).unwrap();
    let f: Array1<i64> = read_npy(d.join("f.npy")).unwrap();
    assert_eq!(l, f);
}
