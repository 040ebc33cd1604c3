//! Running the `emgpu` binary in tests: a command that must succeed, one that must fail with one
//! clear line and leave no file behind, and the JSON it prints.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;

/// What a run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `emgpu args...` in `dir`.
pub fn emgpu(dir: &Path, args: &[&str]) -> Run {
    let out = cargo_bin_cmd!("emgpu")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command that must succeed.
#[track_caller]
pub fn ok(dir: &Path, args: &[&str]) -> Run {
    let run = emgpu(dir, args);
    assert_eq!(
        run.code, 0,
        "emgpu {args:?} failed:\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

pub fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs a command that must fail with exit code `code` and exactly one stderr line,
/// `error: ...`, containing every one of `needles`; and must leave no new file in `dir`.
#[track_caller]
pub fn fails(dir: &Path, args: &[&str], code: i32, needles: &[&str]) -> String {
    let before = files_in(dir);
    let run = emgpu(dir, args);
    let msg = run.stderr.trim_end();
    assert_eq!(
        run.code, code,
        "emgpu {args:?}: exit code {} (want {code}); stderr: {msg}",
        run.code
    );
    assert!(
        msg.starts_with("error: ") && msg.lines().count() == 1,
        "emgpu {args:?}: want one `error:` line, got:\n{msg}"
    );
    for needle in needles {
        assert!(
            msg.contains(needle),
            "emgpu {args:?}: message does not contain {needle:?}:\n{msg}"
        );
    }
    assert!(!msg.contains("panicked"), "{msg}");
    assert_eq!(
        run.stdout, "",
        "emgpu {args:?}: a failed run printed results"
    );
    assert_eq!(
        files_in(dir),
        before,
        "emgpu {args:?}: a failed run left a file behind"
    );
    msg.to_string()
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The last stdout line as JSON.
#[track_caller]
pub fn last_json(run: &Run) -> Value {
    let line = run.stdout.lines().last().expect("no stdout");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
