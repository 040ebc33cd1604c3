//! `emgpu devices`, and `--backend gpu` / `auto` when no adapter exists, through the binary.
//! `WGPU_BACKEND=dx12` on Linux (or `gl` elsewhere) hides every adapter: the no-GPU machine.

#[path = "../../emgpu/tests/common/mod.rs"]
mod common;

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;

/// The API that has no adapter on this platform.
const NO_API: &str = if cfg!(windows) { "metal" } else { "dx12" };

fn emgpu(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = cargo_bin_cmd!("emgpu");
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn devices_lists_adapters_and_the_auto_choice() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = emgpu(dir.path(), &[], &["devices", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(stdout.trim()).unwrap();
    let adapters = doc["adapters"].as_array().unwrap();
    assert_eq!(adapters.len(), emgpu::device::gpu::adapters().len());
    let auto = doc["auto"].as_str().unwrap();
    match emgpu::device::gpu::preferred_adapter() {
        Some(p) => {
            assert_eq!(doc["gpu_backend"]["name"], p.name.as_str());
            assert!(
                doc["gpu_backend"]["max_storage_buffer_binding_size"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
            // Auto takes a hardware GPU only.
            assert_eq!(auto.starts_with("gpu:"), !p.is_software, "{auto}");
        }
        None => {
            common::gpu_backend("devices_lists_adapters_and_the_auto_choice");
            assert!(doc["gpu_backend"].is_null());
        }
    }
    let (code, text, _) = emgpu(dir.path(), &[], &["devices"]);
    assert_eq!(code, 0);
    assert!(text.contains("--backend auto runs on"), "{text}");
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR"),
        "Mesa's window-system warning leaked: {stderr}"
    );
}

#[test]
fn no_adapter_gpu_fails_with_the_fix_and_auto_says_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/faithful.csv");
    let env = [("WGPU_BACKEND", NO_API)];
    let (code, text, _) = emgpu(dir.path(), &env, &["devices"]);
    assert_eq!(code, 0);
    assert!(text.contains("no GPU adapter found"), "{text}");
    let (code, _, stderr) = emgpu(
        dir.path(),
        &env,
        &[
            "fit",
            "-i",
            csv,
            "-k",
            "2",
            "-o",
            "m.json",
            "--backend",
            "gpu",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no GPU adapter found") && stderr.contains("--backend cpu"),
        "{stderr}"
    );
    assert!(stderr.contains("mesa-vulkan-drivers"), "{stderr}");
    assert!(!dir.path().join("m.json").exists());
    let (code, _, stderr) = emgpu(
        dir.path(),
        &env,
        &[
            "fit",
            "-i",
            csv,
            "-k",
            "2",
            "-o",
            "m.json",
            "--backend",
            "auto",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // 272 × 2 values: too few for a GPU to matter, decided without looking for an adapter.
    assert!(
        stderr.contains("backend: cpu")
            && stderr.contains("too small for a GPU to matter")
            && stderr.contains("no GPU adapter was probed"),
        "{stderr}"
    );
    assert!(dir.path().join("m.json").exists());
    // Data large enough for the probe (2 × 40 000 values): it finds no adapter and says so.
    let big = dir.path().join("big.csv");
    let mut text = String::from("a,b\n");
    for i in 0..40_000 {
        text.push_str(&format!("{},{}\n", (i % 97) as f64 * 0.1, (i % 13) as f64));
    }
    std::fs::write(&big, text).unwrap();
    let (code, _, stderr) = emgpu(
        dir.path(),
        &env,
        &[
            "fit",
            "-i",
            big.to_str().unwrap(),
            "-k",
            "2",
            "--max-iter",
            "2",
            "-o",
            "big.json",
            "--backend",
            "auto",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("no GPU adapter was found; using the CPU backend"),
        "{stderr}"
    );
}
