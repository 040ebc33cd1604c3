//! `emgpu`: fit, score, predict, sample, select and validate Gaussian mixtures and k-means from the
//! command line.
//!
//! This file only parses the arguments and turns errors into `error: <message>` on stderr with an
//! exit code; the commands live in `src/cli/`.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// Mesa's Vulkan drivers probe the window system when wgpu creates an instance and print
/// "error: XDG_RUNTIME_DIR is invalid or not set" (several times) when the variable is missing, as
/// it is in containers and CI. emgpu never opens a window; give the probe a private, empty runtime
/// directory so that the only `error:` lines users see are emgpu's own.
fn quiet_window_system_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("emgpu-xdg-{}", std::process::id()));
    #[cfg(unix)]
    let made = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).is_ok()
    };
    #[cfg(not(unix))]
    let made = false;
    if made {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

fn main() -> ExitCode {
    quiet_window_system_probe();
    let args = cli::Cli::parse();
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    };
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        let dir = std::path::PathBuf::from(dir);
        if dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == format!("emgpu-xdg-{}", std::process::id()))
        {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    code
}
