//! Never losing a file and never a crash (issue 15): an output that is an input is refused before
//! anything is written, whatever the spelling (hard link, symbolic link, `./`); device and FIFO
//! destinations are written in place, not replaced; read-only destinations are refused; no run
//! leaves anything in the temp directory; a stderr that cannot be written does not crash the run;
//! sizes too large for the machine are one error line, not an abort or a panic.

#[path = "common/cli.rs"]
mod cli_util;

use std::path::Path;
use std::process::{Command, Stdio};

use cli_util::{fails, ok, tmp};

/// The Old Faithful data (tests/data/README.md).
const FAITHFUL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/faithful.csv");

/// A directory with `f.csv` (Old Faithful) and `m.json` (a model fitted to it).
fn workspace() -> tempfile::TempDir {
    let dir = tmp();
    std::fs::copy(FAITHFUL, dir.path().join("f.csv")).unwrap();
    ok(
        dir.path(),
        &[
            "fit",
            "-q",
            "-i",
            "f.csv",
            "-k",
            "2",
            "--backend",
            "cpu",
            "-o",
            "m.json",
        ],
    );
    dir
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = workspace();
    let d = dir.path();
    std::fs::hard_link(d.join("f.csv"), d.join("hard.csv")).unwrap();
    std::os::unix::fs::symlink(d.join("m.json"), d.join("link.json")).unwrap();
    let data = bytes(&d.join("f.csv"));
    let model = bytes(&d.join("m.json"));
    let fit = |out: &'static str| ["fit", "-i", "f.csv", "-k", "2", "-o", out];
    fails(
        d,
        &fit("f.csv"),
        2,
        &["--output f.csv", "same file as --input f.csv"],
    );
    fails(d, &fit("./f.csv"), 2, &["same file as --input"]);
    fails(d, &fit("hard.csv"), 2, &["same file as --input"]);
    let mut warm = fit("m.json").to_vec();
    warm.extend(["--init", "link.json"]);
    fails(d, &warm, 2, &["same file as --init link.json"]);
    let predict = |out: &'static str| ["predict", "-m", "m.json", "-i", "f.csv", "-o", out];
    fails(d, &predict("f.csv"), 2, &["same file as --input"]);
    fails(
        d,
        &predict("link.json"),
        2,
        &["same file as --model m.json"],
    );
    fails(
        d,
        &["sample", "-m", "m.json", "--n", "5", "-o", "m.json"],
        2,
        &["same file as --model"],
    );
    fails(
        d,
        &[
            "sample",
            "-m",
            "m.json",
            "--n",
            "5",
            "-o",
            "x.npy",
            "--labels-output",
            "./x.npy",
        ],
        2,
        &["--labels-output ./x.npy is the same file as --output x.npy"],
    );
    fails(
        d,
        &["select", "-i", "f.csv", "-k", "1..2", "-o", "hard.csv"],
        2,
        &["same file as --input"],
    );
    assert_eq!(bytes(&d.join("f.csv")), data);
    assert_eq!(bytes(&d.join("m.json")), model);
    assert!(
        std::fs::symlink_metadata(d.join("link.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_device_destination_is_written_in_place_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let dir = workspace();
    let d = dir.path();
    let args = [
        "predict",
        "-q",
        "-m",
        "m.json",
        "-i",
        "f.csv",
        "--backend",
        "cpu",
    ];
    let mut to_null = args.to_vec();
    to_null.extend(["-o", "/dev/null"]);
    ok(d, &to_null);
    let kind = std::fs::symlink_metadata("/dev/null").unwrap().file_type();
    assert!(kind.is_char_device(), "/dev/null was replaced: {kind:?}");
    // Only the workspace's own files: no temporary was left next to the destination either.
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 2);
}

#[test]
fn a_read_only_destination_is_refused_and_stays_read_only() {
    let dir = workspace();
    let d = dir.path();
    let out = d.join("old.json");
    std::fs::write(&out, "old").unwrap();
    let mut perms = std::fs::metadata(&out).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&out, perms).unwrap();
    fails(
        d,
        &["fit", "-i", "f.csv", "-k", "2", "-o", "old.json"],
        1,
        &["old.json", "read-only"],
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
    assert!(std::fs::metadata(&out).unwrap().permissions().readonly());
}

/// Runs the binary in `cwd` with `TMPDIR=tmpdir` and no `XDG_RUNTIME_DIR`; the exit code.
fn run_with_tmpdir(cwd: &Path, tmpdir: &Path, args: &[&str], stderr: Stdio) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_emgpu"))
        .current_dir(cwd)
        .env("TMPDIR", tmpdir)
        .env_remove("XDG_RUNTIME_DIR")
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[test]
fn no_run_leaves_anything_in_the_temp_directory() {
    let dir = workspace();
    let d = dir.path();
    let temp = tmp();
    let runs: [(&[&str], i32); 4] = [
        (&["--help"], 0),
        (&["fit", "-i", "f.csv", "-k", "2", "-o", "a.json"], 0),
        (&["fit", "-i", "f.csv", "-k", "2", "-o", "f.csv"], 2),
        (&["devices"], 0),
    ];
    for (args, code) in runs {
        assert_eq!(
            run_with_tmpdir(d, temp.path(), args, Stdio::null()),
            code,
            "{args:?}"
        );
        let left: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
        assert!(left.is_empty(), "emgpu {args:?} left {left:?} in TMPDIR");
    }
}

#[test]
fn a_stderr_that_cannot_be_written_does_not_crash_the_run() {
    let dir = workspace();
    let d = dir.path();
    let full = || {
        Stdio::from(
            std::fs::File::options()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
    };
    let code = run_with_tmpdir(
        d,
        d,
        &[
            "fit",
            "-i",
            "f.csv",
            "-k",
            "2",
            "--backend",
            "cpu",
            "-o",
            "b.json",
        ],
        full(),
    );
    assert_eq!(code, 0, "a fit whose summary cannot be printed");
    assert!(d.join("b.json").is_file());
    let code = run_with_tmpdir(
        d,
        d,
        &["fit", "-i", "missing.csv", "-k", "2", "-o", "c.json"],
        full(),
    );
    assert_eq!(
        code, 1,
        "an error that cannot be printed keeps its exit code"
    );
}

#[test]
fn sizes_too_large_for_memory_are_one_error_line_not_a_crash() {
    let dir = workspace();
    let d = dir.path();
    let sample = |n: &'static str| ["sample", "-m", "m.json", "--n", n, "-o", "x.npy"];
    fails(
        d,
        &sample("9223372036854775807"),
        1,
        &[
            "not enough memory",
            "9223372036854775807 samples × 2 features",
            "draw fewer",
        ],
    );
    fails(
        d,
        &sample("100000000000000"),
        1,
        &["not enough memory", "1.6 PB"],
    );
    fails(
        d,
        &["bench", "--n", "100000000000"],
        1,
        &[
            "not enough memory",
            "100000000000 points × 16 features",
            "6.4 TB",
        ],
    );
    fails(
        d,
        &["bench", "--d", "100000"],
        1,
        &["not enough memory", "full covariances", "d = 100000"],
    );
    // 3 samples × 100 000 features: one full 100 000 × 100 000 covariance is 80 GB.
    let mut wide = (0..100_000)
        .map(|j| format!("c{j}"))
        .collect::<Vec<_>>()
        .join(",");
    for i in 0..3 {
        wide.push('\n');
        wide.push_str(
            &(0..100_000)
                .map(|j| ((i * 7 + j) % 13).to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    std::fs::write(d.join("wide.csv"), wide).unwrap();
    fails(
        d,
        &[
            "fit",
            "-i",
            "wide.csv",
            "-k",
            "1",
            "--backend",
            "cpu",
            "-o",
            "w.json",
        ],
        1,
        &[
            "wide.csv",
            "not enough memory",
            "K = 1, D = 100000",
            "use covariance diag",
        ],
    );
}
