//! The `emgpu` binary for k-means (`fit --model kmeans`, `predict`, `score`, `validate`), the
//! initialization methods and restarts of both models, and `select`: end to end on Old Faithful
//! against scikit-learn's numbers from the same initial centers
//! (`tests/data/make_faithful_kmeans_sklearn.py` wrote `tests/data/faithful_kmeans_sklearn.json`),
//! model selection on a synthetic mixture with a known K, and every bad input with its message.

#[path = "common/cli.rs"]
mod cli_util;
#[path = "../../emgpu/tests/common/mod.rs"]
mod common;

use std::path::Path;

use cli_util::{emgpu, fails, last_json, ok, read_json, tmp};
use common::{assert_close, flatten};
use ndarray::{Array1, Array2};
use ndarray_npy::{read_npy, write_npy};
use serde_json::{Value, json};

/// The Old Faithful data (tests/data/README.md): 272 rows, 2 columns.
const FAITHFUL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/faithful.csv");

fn sklearn_kmeans() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/faithful_kmeans_sklearn.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows = v.as_array().unwrap().len();
    let values = flatten(v);
    Array2::from_shape_vec((rows, values.len() / rows), values).unwrap()
}

fn labels(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_i64().unwrap())
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `emgpu fit ... --json --quiet` (must succeed), its JSON line.
#[track_caller]
fn fit_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["fit", "--quiet", "--json", "--backend", "cpu"];
    all.extend_from_slice(args);
    last_json(&ok(dir, &all))
}

/// An emgpu k-means model file with these centers (as another tool would write one).
fn kmeans_model_json(centers: &Array2<f64>) -> String {
    let rows: Vec<Vec<f64>> = centers.rows().into_iter().map(|r| r.to_vec()).collect();
    json!({
        "format": "emgpu-model",
        "version": 1,
        "model": "kmeans",
        "n_features": centers.ncols(),
        "n_clusters": centers.nrows(),
        "cluster_centers": rows,
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// k-means end to end against scikit-learn.

#[test]
fn kmeans_fit_predict_score_on_old_faithful_match_scikit_learn() {
    let doc = sklearn_kmeans();
    let cases = doc["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 4);
    let dir = tmp();
    let d = dir.path();
    for (name, case) in cases {
        let init = matrix(&case["init"]);
        let k = init.nrows().to_string();
        write_npy(d.join("init.npy"), &init).unwrap();
        let fitted = fit_json(
            d,
            &[
                "-i", FAITHFUL, "-k", &k, "--model", "kmeans", "--init", "init.npy", "-o",
                "km.json",
            ],
        );
        let what = |s: &str| format!("{name}: {s}");
        assert_eq!(fitted["model"], "kmeans", "{}", what("model"));
        assert_eq!(fitted["n_iter"], case["n_iter"], "{}", what("n_iter"));
        assert_eq!(fitted["converged"], true, "{}", what("converged"));
        assert_eq!(fitted["n_init"], 1, "{}", what("given centers: one run"));
        assert_eq!(fitted["init"], "init.npy");
        let inertia = f(&case["inertia"]);
        assert_close(
            &what("inertia"),
            &[f(&fitted["inertia"])],
            &[inertia],
            1e-9,
            0.0,
        );
        assert_eq!(fitted["init_inertias"], json!([fitted["inertia"]]));
        assert_close(
            &what("mean squared distance"),
            &[f(&fitted["mean_squared_distance"])],
            &[inertia / 272.0],
            1e-9,
            0.0,
        );
        // The model file.
        let model = read_json(&d.join("km.json"));
        assert_eq!(model["model"], "kmeans");
        assert_eq!(model["n_clusters"], init.nrows());
        assert_close(
            &what("cluster centers"),
            &flatten(&model["cluster_centers"]),
            &flatten(&case["cluster_centers"]),
            1e-9,
            1e-12,
        );
        // predict: the nearest center of every sample, as scikit-learn's predict.
        ok(
            d,
            &[
                "predict",
                "-q",
                "-m",
                "km.json",
                "-i",
                FAITHFUL,
                "-o",
                "labels.npy",
            ],
        );
        let got: Array1<i64> = read_npy(d.join("labels.npy")).unwrap();
        assert_eq!(
            got.to_vec(),
            labels(&case["predict"]),
            "{}",
            what("predict")
        );
        assert_eq!(labels(&case["predict"]), labels(&case["labels"]));
        // score: minus the inertia, as scikit-learn's KMeans.score.
        let run = ok(
            d,
            &[
                "score",
                "-m",
                "km.json",
                "-i",
                FAITHFUL,
                "--backend",
                "cpu",
                "--json",
            ],
        );
        let s = last_json(&run);
        assert_close(
            &what("score"),
            &[f(&s["score"])],
            &[f(&case["score"])],
            1e-9,
            0.0,
        );
        assert_eq!(f(&s["inertia"]), -f(&s["score"]));
        assert_eq!(s["model"], "kmeans");
        assert_eq!(s["n_samples"], 272);
        assert_close(
            &what("score mean squared distance"),
            &[f(&s["mean_squared_distance"])],
            &[inertia / 272.0],
            1e-9,
            0.0,
        );
    }

    // The text output names the score for what it is.
    let run = ok(d, &["score", "-m", "km.json", "-i", FAITHFUL]);
    let first = run.stdout.lines().next().unwrap();
    assert!(first.starts_with("score (-inertia)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("mean_squared_distance"),
        "{}",
        run.stdout
    );

    // The same start given as a k-means model file, and as float32 centers.
    let case = &cases["k3_empty"];
    let init = matrix(&case["init"]);
    std::fs::write(d.join("start.json"), kmeans_model_json(&init)).unwrap();
    write_npy(d.join("init32.npy"), &init.mapv(|v| v as f32)).unwrap();
    for start in ["start.json", "init32.npy"] {
        let fitted = fit_json(
            d,
            &[
                "-i", FAITHFUL, "-k", "3", "--model", "kmeans", "--init", start, "-o", "km.json",
            ],
        );
        assert_eq!(fitted["n_iter"], case["n_iter"], "{start}");
        assert_close(
            start,
            &flatten(&read_json(&d.join("km.json"))["cluster_centers"]),
            &flatten(&case["cluster_centers"]),
            1e-9,
            1e-12,
        );
    }
}

#[test]
fn kmeans_defaults_restarts_and_the_summary() {
    let dir = tmp();
    let d = dir.path();
    let base = [
        "-i", FAITHFUL, "-k", "3", "--model", "kmeans", "-o", "km.json",
    ];
    // Defaults are scikit-learn's: k-means++ with one run ("auto").
    let pp = fit_json(d, &base);
    assert_eq!(pp["init"], "k-means++");
    assert_eq!(pp["n_init"], 1);
    assert_eq!(pp["init_inertias"].as_array().unwrap().len(), 1);
    // random: ten runs ("auto"), the lowest inertia kept.
    let mut args = base.to_vec();
    args.extend(["--init", "random"]);
    let random = fit_json(d, &args);
    assert_eq!(random["n_init"], 10);
    let inertias: Vec<f64> = random["init_inertias"]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .collect();
    assert_eq!(inertias.len(), 10);
    let best = random["best_init"].as_u64().unwrap() as usize;
    assert_eq!(inertias[best], f(&random["inertia"]));
    let lowest = inertias.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(f(&random["inertia"]) <= lowest * (1.0 + 1e-12), "{random}");
    // Restarts do not all end in the same place here (else this test shows nothing).
    assert!(inertias.iter().any(|v| *v > lowest * 1.01), "{inertias:?}");
    // --n-init overrides "auto"; the first run of several is the run of one (same seed).
    args.extend(["--n-init", "3"]);
    let three = fit_json(d, &args);
    assert_eq!(three["init_inertias"].as_array().unwrap().len(), 3);
    assert_eq!(three["init_inertias"][0], random["init_inertias"][0]);
    // Same seed, same model; the seed is in the JSON.
    assert_eq!(fit_json(d, &args)["init_inertias"], three["init_inertias"]);
    assert_eq!(three["seed"], 0);

    // Without --quiet: the summary and each restart's inertia on stderr, nothing but JSON on stdout.
    let run = ok(
        d,
        &[
            "fit",
            "-i",
            FAITHFUL,
            "-k",
            "3",
            "--model",
            "kmeans",
            "--init",
            "random",
            "--n-init",
            "3",
            "--backend",
            "cpu",
            "-o",
            "km.json",
        ],
    );
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .contains("fit: k-means, 3 clusters on 272 samples × 2 features")
            && run.stderr.contains("mean squared distance"),
        "{}",
        run.stderr
    );
    let restarts = run
        .stderr
        .lines()
        .find(|l| l.starts_with("restarts: inertias "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert_eq!(restarts.matches(", ").count(), 2, "{restarts}");
    assert!(restarts.contains("(the lowest)"), "{restarts}");
}

// ---------------------------------------------------------------------------------------------
// Initialization methods and restarts of Gaussian mixtures.

#[test]
fn every_init_name_works_for_its_model() {
    let dir = tmp();
    let d = dir.path();
    for name in ["kmeans", "k-means++", "random", "random_from_data"] {
        let json = fit_json(
            d,
            &["-i", FAITHFUL, "-k", "2", "--init", name, "-o", "m.json"],
        );
        assert_eq!(json["init"], name);
        assert_eq!(json["model"], "gmm");
        let model = read_json(&d.join("m.json"));
        assert_eq!(model["n_components"], 2, "{name}");
        // Seeded: the same seed gives the same fit.
        let again = fit_json(
            d,
            &["-i", FAITHFUL, "-k", "2", "--init", name, "-o", "m.json"],
        );
        assert_eq!(again["lower_bound"], json["lower_bound"], "{name}");
    }
    // The default is scikit-learn's: kmeans.
    assert_eq!(
        fit_json(d, &["-i", FAITHFUL, "-k", "2", "-o", "m.json"])["init"],
        "kmeans"
    );
    for name in ["k-means++", "random"] {
        let json = fit_json(
            d,
            &[
                "-i", FAITHFUL, "-k", "2", "--model", "kmeans", "--init", name, "-o", "km.json",
            ],
        );
        assert_eq!(json["init"], name);
        assert_eq!(read_json(&d.join("km.json"))["model"], "kmeans");
    }
    // k-means can start from a Gaussian mixture's means (one run: the centers are given).
    fit_json(d, &["-i", FAITHFUL, "-k", "2", "-o", "m.json"]);
    let means = matrix(&read_json(&d.join("m.json"))["means"]);
    let from_gmm = fit_json(
        d,
        &[
            "-i", FAITHFUL, "-k", "2", "--model", "kmeans", "--init", "m.json", "-o", "km.json",
        ],
    );
    assert_eq!(from_gmm["init"], "m.json");
    assert_eq!(from_gmm["n_init"], 1);
    write_npy(d.join("means.npy"), &means).unwrap();
    let from_npy = fit_json(
        d,
        &[
            "-i",
            FAITHFUL,
            "-k",
            "2",
            "--model",
            "kmeans",
            "--init",
            "means.npy",
            "-o",
            "km.json",
        ],
    );
    assert_eq!(from_gmm["inertia"], from_npy["inertia"]);
    assert_eq!(from_gmm["n_iter"], from_npy["n_iter"]);
    // A typo is refused with the names.
    let run = emgpu(
        d,
        &[
            "fit", "-i", FAITHFUL, "-k", "2", "--init", "kmean", "-o", "m.json",
        ],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown init method \"kmean\"")
            && run.stderr.contains("random_from_data"),
        "{}",
        run.stderr
    );
}

#[test]
fn restarts_report_every_lower_bound_and_keep_the_highest() {
    let dir = tmp();
    let d = dir.path();
    let args = [
        "-i", FAITHFUL, "-k", "3", "--init", "random", "--tol", "1e-6", "-o", "m.json",
    ];
    let one = fit_json(d, &args);
    let mut more = args.to_vec();
    more.extend(["--n-init", "4"]);
    let four = fit_json(d, &more);
    assert_eq!(four["n_init"], 4);
    let bounds: Vec<f64> = four["init_lower_bounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .collect();
    assert_eq!(bounds.len(), 4);
    let highest = bounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(f(&four["lower_bound"]), highest);
    let best = four["best_init"].as_u64().unwrap() as usize;
    assert_eq!(bounds[best], highest);
    assert_eq!(bounds.iter().position(|b| *b == highest), Some(best));
    // The first restart is the single fit with the same seed.
    assert_eq!(four["init_lower_bounds"][0], one["lower_bound"]);
    assert_eq!(one["init_lower_bounds"], json!([one["lower_bound"]]));
    // The model file holds the kept restart.
    assert_eq!(
        f(&read_json(&d.join("m.json"))["lower_bound"]),
        f(&four["lower_bound"])
    );
    // And the summary on stderr lists them.
    let mut text = vec!["fit", "--backend", "cpu"];
    text.extend_from_slice(&more);
    let run = ok(d, &text);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("restarts: lower bounds "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert_eq!(line.matches(", ").count(), 3, "{line}");
    assert!(
        line.contains(&format!("kept restart {} (the highest)", best + 1)),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// validate: both backends from the init method's parameters (k-means: centers).

#[test]
fn validate_starts_from_the_seeded_fits_start() {
    let dir = tmp();
    let d = dir.path();
    for (model, extra) in [("gmm", vec!["--covariance", "diag"]), ("kmeans", vec![])] {
        for init in [
            if model == "gmm" {
                "kmeans"
            } else {
                "k-means++"
            },
            "random",
        ] {
            let mut common = vec![
                "-i", FAITHFUL, "-k", "3", "--model", model, "--init", init, "--seed", "5",
            ];
            common.extend(&extra);
            let mut v = vec!["validate", "--backend", "cpu", "--json"];
            v.extend(&common);
            let val = last_json(&ok(d, &v));
            assert_eq!(val["agree"], true, "{val}");
            assert_eq!(val["model"], model);
            let mut fa = vec!["-o", "m.json", "--n-init", "1"];
            fa.extend(&common);
            let fitted = fit_json(d, &fa);
            // The CPU side of validate is the seeded fit itself.
            let key = if model == "gmm" {
                "lower_bound"
            } else {
                "inertia"
            };
            assert_eq!(val["reference"][key], fitted[key], "{model} {init}: {val}");
            assert_eq!(
                val["reference"]["n_iter"], fitted["n_iter"],
                "{model} {init}"
            );
            assert!(
                val["start"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("the {init} initialization (seed 5)")),
                "{val}"
            );
            for (_, diff) in val["max_rel_diff"].as_object().unwrap() {
                assert_eq!(diff, 0.0, "{model} {init}: {val}");
            }
        }
    }
    // The table for k-means compares centers, inertia and labels.
    let run = ok(
        d,
        &[
            "validate",
            "-i",
            FAITHFUL,
            "-k",
            "2",
            "--model",
            "kmeans",
            "--backend",
            "cpu",
        ],
    );
    for name in ["cluster_centers", "inertia", "labels"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("0.000e0") && l.ends_with("ok")),
            "{name}:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("k-means, 2 clusters"), "{}", run.stdout);
}

#[test]
fn validate_kmeans_gpu_against_cpu() {
    let Some(_) = common::gpu_backend("validate_kmeans_gpu_against_cpu") else {
        return;
    };
    let dir = tmp();
    let doc = sklearn_kmeans();
    // Fixed centers far from ties (scikit-learn's fixture starts).
    write_npy(
        dir.path().join("init.npy"),
        &matrix(&doc["cases"]["k3"]["init"]),
    )
    .unwrap();
    let run = emgpu(
        dir.path(),
        &[
            "validate", "-i", FAITHFUL, "-k", "3", "--model", "kmeans", "--init", "init.npy",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let json = last_json(&run);
    assert_eq!(json["candidate"]["backend"], "gpu");
    assert_eq!(json["agree"], true, "{json}");
}

// ---------------------------------------------------------------------------------------------
// select.

/// Three well-separated round groups in 2-D, 100 points each, as an .npy file.
fn write_three_groups(path: &Path) {
    let centers = [[0.0, 0.0], [12.0, 0.0], [0.0, 12.0]];
    let (x, _) = emgpu::synth::blobs(&centers, &[100; 3], &[1.0; 3], 42).unwrap();
    write_npy(path, &x).unwrap();
}

#[test]
fn select_picks_the_known_number_of_components() {
    let dir = tmp();
    let d = dir.path();
    write_three_groups(&d.join("x.npy"));
    let run = ok(
        d,
        &[
            "select",
            "-q",
            "-i",
            "x.npy",
            "-k",
            "1..6",
            "--backend",
            "cpu",
            "--json",
            "-o",
            "best.json",
        ],
    );
    let json = last_json(&run);
    assert_eq!(run.stdout.lines().count(), 1);
    assert_eq!(json["criterion"], "bic");
    assert_eq!(json["best"]["n_components"], 3, "{json}");
    let rows = json["rows"].as_array().unwrap();
    let ks: Vec<u64> = rows
        .iter()
        .map(|r| r["n_components"].as_u64().unwrap())
        .collect();
    assert_eq!(ks, [1, 2, 3, 4, 5, 6], "a..b includes both ends");
    let best = json["best_index"].as_u64().unwrap() as usize;
    assert_eq!(rows[best], json["best"]);
    let bics: Vec<f64> = rows.iter().map(|r| f(&r["bic"])).collect();
    assert!(bics.iter().all(|b| *b >= bics[best]), "{bics:?}");
    // The best model was written, and scores to the BIC in the table.
    let model = read_json(&d.join("best.json"));
    assert_eq!(model["n_components"], 3);
    assert_eq!(model["covariance_type"], "full");
    let s = last_json(&ok(
        d,
        &[
            "score",
            "-m",
            "best.json",
            "-i",
            "x.npy",
            "--backend",
            "cpu",
            "--json",
        ],
    ));
    assert_close("bic", &[f(&s["bic"])], &[bics[best]], 1e-9, 0.0);

    // The table: a header, one row per fit, the best marked, and a last line naming it.
    let run = ok(
        d,
        &[
            "select",
            "-i",
            "x.npy",
            "-k",
            "2,3,5",
            "--covariance",
            "diag,spherical",
            "--backend",
            "cpu",
        ],
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 6 + 1, "{}", run.stdout);
    assert!(lines[0].contains("BIC") && lines[0].contains("AIC") && lines[0].contains("n_iter"));
    let marked: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("<- best (bic)"))
        .collect();
    assert_eq!(marked.len(), 1, "{}", run.stdout);
    assert!(marked[0].trim_start().starts_with("3  "), "{}", marked[0]);
    assert!(lines[7].starts_with("best: K = 3"), "{}", run.stdout);
    assert!(run.stderr.contains("select: 6 fits"), "{}", run.stderr);

    // AIC and every covariance type; one K.
    let json = last_json(&ok(
        d,
        &[
            "select",
            "-q",
            "-i",
            "x.npy",
            "-k",
            "3",
            "--covariance",
            "all",
            "--criterion",
            "aic",
            "--backend",
            "cpu",
            "--json",
            "--init",
            "k-means++",
            "--n-init",
            "2",
        ],
    ));
    assert_eq!(json["criterion"], "aic");
    assert_eq!(json["rows"].as_array().unwrap().len(), 4);
    assert_eq!(json["n_init"], 2);
    assert_eq!(json["init"], "k-means++");
}

#[test]
fn select_bad_input() {
    let dir = tmp();
    let d = dir.path();
    write_three_groups(&d.join("x.npy"));
    let sel = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut a = vec![
            "select",
            "-i",
            "x.npy",
            "--backend",
            "cpu",
            "-o",
            "best.json",
        ];
        a.extend_from_slice(extra);
        a
    };
    fails(
        d,
        &sel(&["-k", "5..3"]),
        2,
        &["--components 5..3", "empty", "both ends included", "3..5"],
    );
    fails(d, &sel(&["-k", "0..3"]), 2, &["K = 0", "start at 1"]);
    fails(d, &sel(&["-k", "0"]), 2, &["K = 0"]);
    fails(
        d,
        &sel(&["-k", "two"]),
        2,
        &["\"two\" is not a whole number"],
    );
    fails(
        d,
        &sel(&["-k", "1..301"]),
        1,
        &["x.npy", "goes up to 301", "only 300 samples"],
    );
    fails(
        d,
        &sel(&["-k", "1..3", "--criterion", "bix"]),
        2,
        &["--criterion", "unknown criterion \"bix\"", "bic or aic"],
    );
    fails(
        d,
        &sel(&["-k", "1..3", "--n-init", "0"]),
        2,
        &["--n-init must be at least 1"],
    );
    fails(
        d,
        &sel(&["-k", "1..3", "--covariance", "full,diagonal"]),
        2,
        &["unknown covariance type \"diagonal\""],
    );
    fails(
        d,
        &sel(&["-k", "1..3", "--max-iter", "0"]),
        2,
        &["--max-iter must be at least 1"],
    );
    std::fs::write(d.join("m.json"), "{}").unwrap();
    fails(
        d,
        &sel(&["-k", "1..3", "--init", "m.json"]),
        2,
        &["--init m.json", "needs an init method"],
    );
    fails(
        d,
        &["select", "-i", "x.npy", "-k", "1..3", "-o", "no/best.json"],
        1,
        &["no/best.json", "does not exist"],
    );
}

// ---------------------------------------------------------------------------------------------
// Options and models that do not go together.

#[test]
fn kmeans_bad_input() {
    let dir = tmp();
    let d = dir.path();
    let km = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut a = vec![
            "fit", "-i", FAITHFUL, "-k", "2", "--model", "kmeans", "-o", "km.json",
        ];
        a.extend_from_slice(extra);
        a
    };
    fails(
        d,
        &km(&["--covariance", "diag"]),
        2,
        &[
            "--covariance is an option of Gaussian mixtures",
            "--model kmeans",
        ],
    );
    fails(
        d,
        &km(&["--reg-covar", "1e-3"]),
        2,
        &["--reg-covar is an option of Gaussian mixtures"],
    );
    for name in ["kmeans", "random_from_data"] {
        let mut args = km(&["--init"]);
        args.push(name);
        fails(
            d,
            &args,
            2,
            &[
                &format!("--init {name} initializes a Gaussian mixture"),
                "k-means++ or random",
            ],
        );
    }
    fails(
        d,
        &km(&["--n-init", "0"]),
        2,
        &["--n-init must be at least 1"],
    );
    fails(
        d,
        &[
            "fit", "-i", FAITHFUL, "-k", "2", "--n-init", "0", "-o", "m.json",
        ],
        2,
        &["--n-init must be at least 1"],
    );
    fails(
        d,
        &km(&["--max-iter", "0"]),
        2,
        &["--max-iter must be at least 1"],
    );
    fails(
        d,
        &km(&["--tol", "-1"]),
        2,
        &["tol must be a finite number"],
    );

    // Initial centers of the wrong shape, or centers for a Gaussian mixture.
    write_npy(d.join("c3.npy"), &Array2::<f64>::zeros((3, 2))).unwrap();
    write_npy(d.join("c2x3.npy"), &Array2::<f64>::zeros((2, 3))).unwrap();
    let mut nan = Array2::<f64>::zeros((2, 2));
    nan[[1, 0]] = f64::NAN;
    write_npy(d.join("nan.npy"), &nan).unwrap();
    fails(
        d,
        &km(&["--init", "c3.npy"]),
        2,
        &["c3.npy", "3 initial centers", "--components is 2"],
    );
    fails(
        d,
        &km(&["--init", "c2x3.npy"]),
        1,
        &["c2x3.npy", "3 features", "the data has 2"],
    );
    fails(
        d,
        &km(&["--init", "nan.npy"]),
        1,
        &["nan.npy", "NaN", "row 1"],
    );
    fails(
        d,
        &[
            "fit", "-i", FAITHFUL, "-k", "3", "--init", "c3.npy", "-o", "m.json",
        ],
        2,
        &["--init c3.npy", "--model kmeans"],
    );

    // A k-means model where a Gaussian mixture is needed, and --proba.
    ok(d, &km(&["-q"]));
    fails(
        d,
        &[
            "fit", "-i", FAITHFUL, "-k", "2", "--init", "km.json", "-o", "m.json",
        ],
        2,
        &["--init km.json", "this is a k-means model"],
    );
    fails(
        d,
        &[
            "predict", "-m", "km.json", "-i", FAITHFUL, "-o", "p.npy", "--proba",
        ],
        2,
        &["--proba", "km.json is a k-means model", "no probabilities"],
    );
    fails(
        d,
        &["sample", "-m", "km.json", "--n", "5", "-o", "x.npy"],
        1,
        &[
            "km.json",
            "k-means model",
            "sample needs a Gaussian mixture",
        ],
    );
    fails(
        d,
        &[
            "validate",
            "-i",
            FAITHFUL,
            "-k",
            "2",
            "--model",
            "kmeans",
            "--covariance",
            "full",
        ],
        2,
        &["--covariance is an option of Gaussian mixtures"],
    );
    // A damaged k-means model is named and explained.
    std::fs::write(
        d.join("bad.json"),
        r#"{"format": "emgpu-model", "version": 1, "model": "kmeans", "n_features": 2, "n_clusters": 2, "cluster_centers": [[1, 2]]}"#,
    )
    .unwrap();
    fails(
        d,
        &["score", "-m", "bad.json", "-i", FAITHFUL],
        1,
        &["bad.json", "cluster_centers", "2 arrays of 2 numbers"],
    );
    // Data whose dimension differs from the k-means model's.
    fails(
        d,
        &[
            "predict",
            "-m",
            "km.json",
            "-i",
            FAITHFUL,
            "--columns",
            "waiting",
            "-o",
            "l.npy",
        ],
        1,
        &["faithful.csv", "1 features", "fitted on 2"],
    );
}
