//! `emgpu`: fit, score, predict, sample, select and validate Gaussian mixtures and k-means from the
//! command line.
//!
//! This file only parses the arguments and turns errors into `error: <message>` on stderr with an
//! exit code; the commands live in `src/cli/`.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// Mesa's Vulkan drivers probe the window system when wgpu creates an instance, and Wayland's
/// client library prints "error: XDG_RUNTIME_DIR is invalid or not set" (several times) when the
/// variable is missing, as it is in containers and CI. emgpu never opens a window. An absolute
/// path is all that library checks: one that does not exist makes the probe find no compositor,
/// quietly. Nothing is created, so no run leaves a directory behind.
fn quiet_window_system_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("emgpu-no-runtime-dir-{}", std::process::id()));
    if dir.is_absolute() && !dir.exists() {
        // SAFETY: called in `main` before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    quiet_window_system_probe();
    let result = cli::run(args);
    cli::finish(result)
}
