//! Fit a Gaussian mixture to a data file from a program: the embedded (pipeline) use of emgpu.
//!
//! ```text
//! cargo run --release --example fit_file -- X.npy 16
//! ```
//!
//! Reads a `.npy` file (memory-mapped; the CLI also reads CSV and raw float32), fits K full-covariance components on the best
//! backend (`Backend::Auto`: a hardware GPU when there is one), prints the progress and the result,
//! and saves the model next to the data as JSON.

use emgpu::data::write_text_atomic;
use emgpu::{Backend, Dataset, GaussianMixture};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(k)) = (args.next(), args.next()) else {
        eprintln!("usage: fit_file DATA.npy K");
        std::process::exit(2);
    };
    let data = Dataset::open_npy(&path)?;
    let gmm = GaussianMixture::params(k.parse()?)
        .n_init(3)
        .seed(42)
        .backend(Backend::Auto)
        .fit_with_progress(&data, &mut |p| {
            eprintln!(
                "restart {} iteration {:>3}: lower bound {:.6}",
                p.init, p.iteration, p.lower_bound
            )
        })?;
    if let Some(report) = gmm.backend_report() {
        eprintln!(
            "ran on {} ({}) {}",
            report.device, report.backend, report.reason
        );
    }
    println!(
        "converged: {} after {} iterations, lower bound {:.6}",
        gmm.converged(),
        gmm.n_iter(),
        gmm.lower_bound()
    );
    println!("weights: {:.4}", gmm.weights());
    println!("means:\n{:.4}", gmm.means());
    println!("BIC on the data: {:.2}", gmm.bic(&data)?);
    let out = std::path::Path::new(&path).with_extension("model.json");
    write_text_atomic(&out, &gmm.to_json())?;
    println!("model written to {}", out.display());
    Ok(())
}
