//! `emgpu devices`: the adapters wgpu sees, their limits, and what `--backend auto` would run on.

use std::process::ExitCode;

use clap::Args;
use emgpu::device::gpu::{AdapterSummary, AutoChoice, adapters, auto_choice, preferred_adapter};
use serde_json::{Value, json};

use super::{CliError, Ui, print_result};

/// `emgpu devices [--json]`
#[derive(Debug, Args)]
#[command(after_help = "\
Lists every adapter wgpu finds (Vulkan, Metal, DX12, GL), with the limits that decide how emgpu
chunks data, marks the one `--backend gpu` takes (set WGPU_ADAPTER_NAME to a part of another's
name to choose it; WGPU_BACKEND=vulkan|metal|dx12|gl restricts the APIs tried), and says what
`--backend auto` runs on: a hardware GPU, else the CPU backend (a software adapter such as
llvmpipe is slower than the CPU backend). Exit code 0 even when there is no adapter.")]
pub struct DevicesCmd {
    /// Print one line of JSON: {"adapters": [...], "gpu_backend": ..., "auto": ...}.
    #[arg(long)]
    json: bool,
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn adapter_json(a: &AdapterSummary) -> Value {
    json!({
        "name": a.name,
        "backend": a.backend,
        "device_type": a.device_type,
        "driver": a.driver,
        "software": a.is_software,
        "max_storage_buffer_binding_size": a.max_storage_buffer_binding_size,
        "max_buffer_size": a.max_buffer_size,
        "max_compute_workgroup_storage_size": a.max_compute_workgroup_storage_size,
        "max_compute_invocations_per_workgroup": a.max_compute_invocations_per_workgroup,
        "max_compute_workgroups_per_dimension": a.max_compute_workgroups_per_dimension,
        "subgroup_sizes": [a.subgroup_sizes.0, a.subgroup_sizes.1],
    })
}

/// Runs `emgpu devices`.
pub fn run(cmd: DevicesCmd, _ui: &Ui) -> Result<ExitCode, CliError> {
    let all = adapters();
    let preferred = preferred_adapter();
    let auto = match auto_choice() {
        AutoChoice::Gpu(ctx) => format!("gpu: {}", ctx.device_label()),
        AutoChoice::Cpu { reason } => format!("cpu: {}", super::cli_reason(&reason)),
    };
    if cmd.json {
        let doc = json!({
            "adapters": all.iter().map(adapter_json).collect::<Vec<_>>(),
            "gpu_backend": preferred.as_ref().map(adapter_json),
            "auto": auto,
            "cpu_threads": rayon::current_num_threads(),
        });
        print_result(&doc.to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        print_result(
            "no GPU adapter found (install a Vulkan, Metal or DX12 driver; on Linux without a GPU, mesa-vulkan-drivers gives a software one)",
        )?;
    }
    for (i, a) in all.iter().enumerate() {
        let chosen = preferred
            .as_ref()
            .is_some_and(|p| p.name == a.name && p.backend == a.backend);
        let mark = if chosen { "  <- --backend gpu" } else { "" };
        print_result(&format!(
            "[{i}] {} ({}, {}){mark}",
            a.name, a.backend, a.device_type
        ))?;
        print_result(&format!(
            "    driver: {}",
            if a.driver.is_empty() { "?" } else { &a.driver }
        ))?;
        print_result(&format!(
            "    storage binding {}, buffer {}, workgroup memory {} KiB, {} invocations/workgroup, subgroups {}..{}{}",
            mib(a.max_storage_buffer_binding_size),
            mib(a.max_buffer_size),
            a.max_compute_workgroup_storage_size / 1024,
            a.max_compute_invocations_per_workgroup,
            a.subgroup_sizes.0,
            a.subgroup_sizes.1,
            if a.is_software {
                " (software: runs on the CPU)"
            } else {
                ""
            },
        ))?;
    }
    print_result(&format!("--backend auto runs on {auto}"))?;
    print_result(&format!(
        "CPU backend: {} threads",
        rayon::current_num_threads()
    ))?;
    Ok(ExitCode::SUCCESS)
}
