//! `emgpu`: fit, score, predict, sample, select and validate Gaussian mixtures and k-means from the
//! command line.
//!
//! This file only parses the arguments and turns errors into `error: <message>` on stderr with an
//! exit code; the commands live in `src/cli/`.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
