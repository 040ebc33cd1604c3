//! `emgpu fit` and `emgpu select` under `mpirun` (feature `mpi`): the same fits as one process,
//! rank 0 alone prints and writes, a failure on any rank is one `error:` line and a nonzero exit
//! within seconds.
//!
//! Run with `cargo test --release -p emgpu-cli --features mpi --test cli_mpi` (needs Open MPI's
//! `mpirun`). The comparisons are against the same binary run as one process, without mpirun.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ndarray::Array2;
use ndarray_npy::write_npy;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_emgpu");

/// `mpirun` with the flags a container needs (root, more ranks than cores).
fn mpirun() -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe"]);
    c
}

/// Runs `cmd`, failing the test if it takes more than `limit` (a hang).
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let start = Instant::now();
    let out = cmd.output().expect("mpirun runs (is Open MPI installed?)");
    assert!(
        start.elapsed() < limit,
        "took {:?} (limit {limit:?})",
        start.elapsed()
    );
    out
}

/// A shuffled mixture of 4 blobs in 5 dimensions with correlated features, float32.
fn data(n: usize) -> Array2<f32> {
    let centers = [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [6.0, 1.0, -2.0, 0.5, 3.0],
        [-5.0, 4.0, 1.0, -3.0, 0.0],
        [1.0, -6.0, 5.0, 2.0, -4.0],
    ];
    let sizes = [n / 4, n / 4, n / 4, n - 3 * (n / 4)];
    let (x, _) = emgpu::synth::blobs(&centers, &sizes, &[1.0, 0.7, 1.3, 0.9], 11).unwrap();
    // Rows shuffled (a stride coprime with n) and features mixed, so that the covariances have
    // off-diagonal terms, some near zero.
    let step = (1..n)
        .rev()
        .find(|s| gcd(*s, n) == 1 && *s < n / 2 + 1)
        .unwrap_or(1);
    Array2::from_shape_fn((n, 5), |(i, j)| {
        let r = (i * step) % n;
        let v = x[[r, j]] + 0.3 * x[[r, (j + 1) % 5]];
        v as f32
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(x) => vec![x.as_f64().unwrap()],
        other => panic!("not numbers: {other}"),
    }
}

/// The largest element-wise relative difference.
fn max_rel(a: &Value, b: &Value) -> f64 {
    let (a, b) = (flat(a), flat(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| {
            if x == y {
                0.0
            } else {
                (x - y).abs() / x.abs().max(1e-300)
            }
        })
        .fold(0.0, f64::max)
}

/// `v`'s components (its first axis) in the order of the first coordinate of `model`'s means:
/// restarts that reach the same optimum tie in their lower bound up to rounding, and which one
/// is kept may differ.
fn by_first_mean(model: &Value, v: &Value) -> Value {
    let means = model["means"].as_array().unwrap();
    let mut order: Vec<usize> = (0..means.len()).collect();
    let first = |i: usize| means[i][0].as_f64().unwrap();
    order.sort_by(|&i, &j| first(i).total_cmp(&first(j)));
    Value::Array(order.iter().map(|&k| v[k].clone()).collect())
}

/// Checks a distributed model file against the one-process one: the contract's tolerances.
fn assert_same_gmm(one: &Value, many: &Value, what: &str) {
    for key in ["weights", "means", "covariances"] {
        let r = max_rel(
            &by_first_mean(one, &one[key]),
            &by_first_mean(many, &many[key]),
        );
        assert!(r <= 1e-9, "{what}: {key} differ by {r:e} relative");
    }
    for key in ["lower_bound", "lower_bound_trace"] {
        let r = max_rel(&one[key], &many[key]);
        assert!(r <= 1e-10, "{what}: {key} differ by {r:e} relative");
    }
    assert_eq!(one["n_iter"], many["n_iter"], "{what}: n_iter");
    assert_eq!(one["converged"], many["converged"], "{what}: converged");
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let x = data(n);
        write_npy(dir.join("x.npy"), &x).unwrap();
        // MPMD shards: 40 % and 60 % of the rows.
        let cut = n * 2 / 5;
        write_npy(
            dir.join("a.npy"),
            &x.slice(ndarray::s![..cut, ..]).to_owned(),
        )
        .unwrap();
        write_npy(
            dir.join("b.npy"),
            &x.slice(ndarray::s![cut.., ..]).to_owned(),
        )
        .unwrap();
        Self { _dir: d, dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
    /// One process, without mpirun.
    fn one(&self, args: &[&str], out: &str) -> Value {
        let o = Command::new(BIN)
            .args(["fit", "--input", &self.p("x.npy"), "--output", &self.p(out)])
            .args(args)
            .arg("--quiet")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read_json(&self.path(out))
    }
    /// `mpirun -np np` on the shared input.
    fn many(&self, np: usize, args: &[&str], out: &str) -> Output {
        let mut c = mpirun();
        c.args([
            "-np",
            &np.to_string(),
            BIN,
            "fit",
            "--input",
            &self.p("x.npy"),
        ])
        .args(["--output", &self.p(out)])
        .args(args);
        run_within(c, Duration::from_secs(120))
    }
}

fn stderr_lines(o: &Output, prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn gmm_full_and_diag_on_two_and_three_ranks_equal_one_process() {
    let f = Fixture::new(30_011);
    for cov in ["full", "diag"] {
        let args = [
            "-k",
            "4",
            "--covariance",
            cov,
            "--backend",
            "cpu",
            "--tol",
            "1e-3",
        ];
        let one = f.one(&args, "one.json");
        for np in [2, 3] {
            let mut a = args.to_vec();
            a.push("--json");
            let o = f.many(np, &a, "many.json");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            // Rank 0 alone prints: one JSON line, one summary line.
            let stdout = String::from_utf8_lossy(&o.stdout);
            let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "stdout: {stdout}");
            let json: Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(json["n_samples"], 30_011);
            assert_eq!(stderr_lines(&o, "fit:").len(), 1);
            assert_same_gmm(
                &one,
                &read_json(&f.path("many.json")),
                &format!("{cov} np {np}"),
            );
        }
    }
}

#[test]
fn gmm_under_mpmd_shards_and_restarts_equal_one_process() {
    let f = Fixture::new(20_003);
    let args = [
        "-k",
        "4",
        "--backend",
        "cpu",
        "--n-init",
        "3",
        "--seed",
        "5",
    ];
    let one = f.one(&args, "one.json");
    let mut c = mpirun();
    c.args([
        "-np",
        "1",
        BIN,
        "fit",
        "--input",
        &f.p("a.npy"),
        "--output",
        &f.p("m.json"),
    ])
    .args(args)
    .args([":", "-np", "1", BIN, "fit", "--input", &f.p("b.npy")])
    .args(["--output", &f.p("m.json")])
    .args(args);
    let o = run_within(c, Duration::from_secs(120));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let many = read_json(&f.path("m.json"));
    assert_same_gmm(&one, &many, "MPMD n_init 3");
    let r = max_rel(&one["n_samples"], &many["n_samples"]);
    assert_eq!(r, 0.0);
}

#[test]
fn kmeans_from_centers_and_kmeans_plus_plus_equal_one_process() {
    let f = Fixture::new(25_000);
    let x = data(25_000);
    let c = Array2::from_shape_fn((4, 5), |(i, j)| f64::from(x[[i * 97, j]]));
    write_npy(f.path("c.npy"), &c).unwrap();
    let cp = f.p("c.npy");
    // Given centers; k-means++; three k-means++ restarts (the same sequence of draws on every
    // rank, the same restart kept).
    for init in [
        vec!["--init", cp.as_str()],
        vec![],
        vec!["--n-init", "3", "--seed", "4"],
    ] {
        let mut args = vec!["-k", "4", "--model", "kmeans", "--backend", "cpu"];
        args.extend(init.iter().copied());
        let one = f.one(&args, "k1.json");
        let o = f.many(3, &args, "k3.json");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let many = read_json(&f.path("k3.json"));
        for key in ["cluster_centers", "inertia"] {
            let r = max_rel(&one[key], &many[key]);
            assert!(r <= 1e-9, "{key} differ by {r:e} ({init:?})");
        }
        assert_eq!(one["n_iter"], many["n_iter"]);
    }
}

#[test]
fn a_nan_in_rank_1s_rows_is_one_error_with_its_global_row() {
    let f = Fixture::new(3_000);
    let mut x = data(3_000);
    x[[2_500, 3]] = f32::NAN;
    write_npy(f.path("x.npy"), &x).unwrap();
    let o = f.many(2, &["-k", "2", "--backend", "cpu"], "out.json");
    assert!(!o.status.success());
    let errors = stderr_lines(&o, "error:");
    assert_eq!(errors.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(errors[0].contains("row 2500"), "{}", errors[0]);
    // Today's text: the one-process run prints the same line.
    let one = Command::new(BIN)
        .args([
            "fit",
            "--input",
            &f.p("x.npy"),
            "-k",
            "2",
            "--backend",
            "cpu",
        ])
        .args(["--output", &f.p("one.json")])
        .output()
        .unwrap();
    assert_eq!(stderr_lines(&one, "error:"), errors);
    assert!(!f.path("out.json").exists());
}

#[test]
fn a_missing_input_on_one_rank_and_a_bad_init_file_fail_on_every_rank() {
    let f = Fixture::new(2_000);
    let mut c = mpirun();
    c.args(["-np", "1", BIN, "fit", "--input", &f.p("a.npy"), "-k", "2"])
        .args(["--output", &f.p("out.json")])
        .args([
            ":",
            "-np",
            "1",
            BIN,
            "fit",
            "--input",
            &f.p("missing.npy"),
            "-k",
            "2",
        ])
        .args(["--output", &f.p("out.json")]);
    let o = run_within(c, Duration::from_secs(60));
    assert!(!o.status.success());
    let errors = stderr_lines(&o, "error:");
    assert_eq!(errors.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(errors[0].contains("missing.npy"), "{}", errors[0]);
    assert!(!f.path("out.json").exists());

    std::fs::write(f.path("bad.json"), "{ not a model").unwrap();
    let o = f.many(
        3,
        &["-k", "2", "--init", &f.p("bad.json"), "--backend", "cpu"],
        "out.json",
    );
    assert!(!o.status.success());
    let errors = stderr_lines(&o, "error:");
    assert_eq!(errors.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(errors[0].contains("bad.json"), "{}", errors[0]);
    assert!(!f.path("out.json").exists());
}

/// The rows of `select --json` by (covariance type, K).
fn select_rows(json: &Value) -> Vec<&Value> {
    json["rows"].as_array().unwrap().iter().collect()
}

#[test]
fn select_on_two_and_three_ranks_equals_one_process() {
    let f = Fixture::new(12_001);
    let x = f.p("x.npy");
    let args = [
        "select",
        "--input",
        x.as_str(),
        "-k",
        "1..5",
        "--covariance",
        "full,diag",
        "--backend",
        "cpu",
        "--n-init",
        "2",
    ];
    let o = Command::new(BIN)
        .args(args)
        .args(["--json", "--quiet", "--output", &f.p("one.json")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one: Value = serde_json::from_slice(&o.stdout).unwrap();
    for np in ["2", "3"] {
        let mut c = mpirun();
        c.args(["-np", np, BIN])
            .args(args)
            .args(["--json", "--output", &f.p("many.json")]);
        let o = run_within(c, Duration::from_secs(120));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // Rank 0 alone prints: one JSON line, one summary line.
        let stdout = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "stdout: {stdout}");
        assert_eq!(stderr_lines(&o, "select:").len(), 1);
        let many: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(many["n_samples"], 12_001);
        assert_eq!(
            one["best_index"], many["best_index"],
            "np {np}: the chosen model"
        );
        let (a, b) = (select_rows(&one), select_rows(&many));
        assert_eq!(a.len(), 10);
        assert_eq!(a.len(), b.len());
        for (ra, rb) in a.iter().zip(&b) {
            let what = format!(
                "np {np}, K = {}, {}",
                ra["n_components"], ra["covariance_type"]
            );
            for key in ["n_components", "covariance_type", "n_iter", "converged"] {
                assert_eq!(ra[key], rb[key], "{what}: {key}");
            }
            for key in ["bic", "aic", "lower_bound"] {
                let r = max_rel(&ra[key], &rb[key]);
                assert!(r <= 1e-9, "{what}: {key} differ by {r:e} relative");
            }
        }
        // The written best model is the one-process one.
        assert_same_gmm(
            &read_json(&f.path("one.json")),
            &read_json(&f.path("many.json")),
            &format!("select np {np}"),
        );
    }
    // The table (without --json) is printed once, by rank 0.
    let mut c = mpirun();
    c.args(["-np", "2", BIN]).args(args);
    let o = run_within(c, Duration::from_secs(120));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("best:")).count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains("<- best")).count(),
        1,
        "{stdout}"
    );
}

#[test]
fn commands_other_than_fit_and_select_are_refused_under_mpirun() {
    let f = Fixture::new(500);
    let mut c = mpirun();
    c.args([
        "-np",
        "2",
        BIN,
        "sample",
        "--model",
        &f.p("x.npy"),
        "-n",
        "3",
    ])
    .args(["--output", &f.p("s.npy")]);
    let o = run_within(c, Duration::from_secs(60));
    assert!(!o.status.success());
    let errors = stderr_lines(&o, "error:");
    assert_eq!(errors.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        errors[0].contains("only `emgpu fit` and `emgpu select` run across processes"),
        "{}",
        errors[0]
    );
}

/// The largest difference relative to the largest magnitude of the array (so that near-zero
/// covariance entries are compared at the array's scale).
fn max_rel_scaled(a: &Value, b: &Value) -> f64 {
    let (a, b) = (flat(a), flat(b));
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn gpu_backend_on_two_ranks_binds_an_adapter_per_rank_and_matches_the_cpu() {
    let f = Fixture::new(4_001);
    let args = ["-k", "3", "--max-iter", "8", "--tol", "0"];
    let gpu_one = Command::new(BIN)
        .args([
            "fit",
            "--input",
            &f.p("x.npy"),
            "--backend",
            "gpu",
            "--quiet",
        ])
        .args(["--output", &f.p("g1.json")])
        .args(args)
        .output()
        .unwrap();
    if !gpu_one.status.success() {
        let e = String::from_utf8_lossy(&gpu_one.stderr);
        assert!(
            std::env::var("EMGPU_REQUIRE_GPU").is_err(),
            "EMGPU_REQUIRE_GPU is set but the GPU fit failed: {e}"
        );
        eprintln!("skipped: no GPU adapter ({e})");
        return;
    }
    let mut cpu_args = args.to_vec();
    cpu_args.extend(["--backend", "cpu"]);
    let cpu = f.one(&cpu_args, "cpu.json");
    let mut gpu_args = args.to_vec();
    gpu_args.extend(["--backend", "gpu"]);
    let o = f.many(2, &gpu_args, "g2.json");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Rank 0 says where the ranks run: llvmpipe is no hardware adapter, so both share it; on a
    // machine with GPUs each rank takes (its rank on the node) mod their number.
    let lines = stderr_lines(&o, "backend: gpu on ");
    assert_eq!(lines.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(lines[0].contains("2 ranks"), "{}", lines[0]);
    assert!(
        lines[0].contains("no hardware GPU on rank 0's node")
            || lines[0].contains("rank 0 on adapter 0 of"),
        "{}",
        lines[0]
    );
    // f32 on the GPU against f64 on the CPU: 1e-4 of each array's scale.
    let gpu = read_json(&f.path("g2.json"));
    for key in ["weights", "means", "covariances"] {
        let r = max_rel_scaled(
            &by_first_mean(&cpu, &cpu[key]),
            &by_first_mean(&gpu, &gpu[key]),
        );
        assert!(r <= 1e-4, "{key} differ by {r:e} of their scale");
    }
    let r = max_rel(&cpu["lower_bound"], &gpu["lower_bound"]);
    assert!(r <= 1e-4, "lower bound differs by {r:e}");
    assert_eq!(gpu["n_iter"], 8);
}

#[test]
fn ranks_started_with_other_options_fail_at_once_instead_of_hanging() {
    // Rank 1 would run a second k-means++ restart (a collective sequence) that rank 0 never
    // joins: before the check of the options, rank 0 finished and rank 1 waited forever.
    // `timeout 60` ends the test's mpirun if it hangs all the same.
    let f = Fixture::new(3_000);
    let mut c = Command::new("timeout");
    c.args(["60", "mpirun", "--allow-run-as-root", "--oversubscribe"]);
    let rank = |n_init: &'static str| {
        [
            "-np",
            "1",
            BIN,
            "fit",
            "--model",
            "kmeans",
            "-k",
            "3",
            "--backend",
            "cpu",
            "--n-init",
            n_init,
        ]
    };
    c.args(rank("1"))
        .args(["--input", &f.p("a.npy"), "--output", &f.p("out.json"), ":"])
        .args(rank("2"))
        .args(["--input", &f.p("b.npy"), "--output", &f.p("out.json")]);
    let o = run_within(c, Duration::from_secs(70));
    assert_ne!(o.status.code(), Some(124), "mpirun hung (ended by timeout)");
    assert!(!o.status.success());
    let errors = stderr_lines(&o, "error:");
    assert_eq!(errors.len(), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        errors[0].contains("rank 1 was started with other options than rank 0"),
        "{}",
        errors[0]
    );
    assert!(!f.path("out.json").exists());
}
