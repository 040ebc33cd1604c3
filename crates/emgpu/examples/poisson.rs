//! Fits a mixture of independent Poissons to generated counts and prints the rates.
//!
//! `cargo run --release -p emgpu --example poisson`

use emgpu::em::EmSettings;
use emgpu::models::poisson;
use emgpu::{Backend, Dataset};
use rand::SeedableRng;
use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use rand_distr::Poisson;

fn main() -> emgpu::Result<()> {
    // Three components of two count features each; 1000 points from each.
    let truth = [[2.0, 20.0], [10.0, 5.0], [30.0, 12.0]];
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut x = Vec::new();
    for rates in truth.iter().cycle().take(3000) {
        x.extend(
            rates
                .iter()
                .map(|&l| Poisson::new(l).unwrap().sample(&mut rng)),
        );
    }
    let data = Dataset::from_slice(&x, 3000, 2)?;
    let settings = EmSettings {
        n_init: 3,
        seed: 1,
        backend: Backend::Cpu,
        ..EmSettings::default()
    };
    let fit = poisson::fit(3, &settings, &data)?;
    println!(
        "converged: {} after {} iterations, lower bound {:.4}",
        fit.converged(),
        fit.n_iter(),
        fit.lower_bound()
    );
    println!("BIC {:.1}", fit.bic(&data)?);
    for (w, rates) in fit.weights().iter().zip(fit.rates().chunks(2)) {
        println!("weight {w:.3}  rates {rates:.3?}");
    }
    println!("truth: {truth:?}");
    Ok(())
}
