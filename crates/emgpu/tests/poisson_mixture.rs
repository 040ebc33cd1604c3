//! The Poisson mixture against independent references: a naive E-step, the closed-form K = 1
//! fit, EM's monotonicity, recovery of known rates, additivity of the statistics, bad input.

use emgpu::em::{EStep, EmSettings, Model, Stats};
use emgpu::models::poisson::{
    PoissonMixtureModel, PoissonParams, PoissonStats, fit, poisson_engine,
};
use emgpu::{Backend, Dataset, Error};
use rand::SeedableRng;
use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use rand_distr::Poisson;

/// `n` rows of D counts from the mixture `weights`, `rates` (`[K][D]`), row-major.
fn sample(weights: &[f64], rates: &[f64], n: usize, seed: u64) -> Vec<f64> {
    let d = rates.len() / weights.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * d);
    for i in 0..n {
        let k = i % weights.len(); // equal weights
        for &lam in &rates[k * d..(k + 1) * d] {
            out.push(Poisson::new(lam).unwrap().sample(&mut rng));
        }
    }
    out
}

fn model(k: usize, d: usize) -> PoissonMixtureModel {
    PoissonMixtureModel {
        n_components: k,
        n_features: d,
        min_rate: 1e-10,
    }
}

fn stats_of(x: &[f64], d: usize, p: &PoissonParams) -> PoissonStats {
    let data = Dataset::from_slice(x, x.len() / d, d).unwrap();
    let m = model(p.weights.len(), d);
    let mut engine = poisson_engine(Backend::Cpu, &data, m).unwrap();
    engine.e_step(&m.prepare(p).unwrap()).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

fn assert_stats_close(a: &PoissonStats, b: &PoissonStats, rel: f64) {
    for (x, y) in a.to_flat().iter().zip(b.to_flat()) {
        assert!(close(*x, y, rel), "{x} vs {y}\n{a:?}\n{b:?}");
    }
}

/// ln x! as a product of integers, and the pmf written out.
fn naive_pmf(x: f64, lam: f64) -> f64 {
    let fact: f64 = (1..=x as u64).map(|i| i as f64).product();
    lam.powi(x as i32) * (-lam).exp() / fact
}

#[test]
#[allow(clippy::needless_range_loop)] // the reference is the naive double loop on purpose
fn e_step_matches_brute_force() {
    let x = [0.0, 3.0, 1.0, 1.0, 7.0, 2.0, 4.0, 0.0, 2.0, 5.0];
    let (d, n) = (2, 5);
    let p = PoissonParams {
        weights: vec![0.3, 0.7],
        rates: vec![1.5, 0.8, 4.0, 2.5],
    };
    let mut want = PoissonStats::zeros(2, d);
    for row in x.chunks(d) {
        let joint: Vec<f64> = (0..2)
            .map(|k| {
                p.weights[k]
                    * (0..d)
                        .map(|j| naive_pmf(row[j], p.rates[k * d + j]))
                        .product::<f64>()
            })
            .collect();
        let px: f64 = joint.iter().sum();
        want.n_samples += 1.0;
        want.log_likelihood += px.ln();
        for k in 0..2 {
            want.s0[k] += joint[k] / px;
            for j in 0..d {
                want.s1[k * d + j] += joint[k] / px * row[j];
            }
        }
    }
    assert_eq!(want.n_samples, n as f64);
    assert_stats_close(&stats_of(&x, d, &p), &want, 1e-12);
}

#[test]
fn one_component_is_the_closed_form_mle() {
    let d = 3;
    let x = sample(&[1.0], &[0.7, 4.0, 12.0], 500, 7);
    let n = x.len() / d;
    let data = Dataset::from_slice(&x, n, d).unwrap();
    let settings = EmSettings {
        backend: Backend::Cpu,
        tol: 0.0,
        max_iter: 3,
        ..EmSettings::default()
    };
    let fit = fit(1, &settings, &data).unwrap();
    let means: Vec<f64> = (0..d)
        .map(|j| x.iter().skip(j).step_by(d).sum::<f64>() / n as f64)
        .collect();
    for (r, m) in fit.rates().iter().zip(&means) {
        assert!(close(*r, *m, 1e-12), "rate {r} vs column mean {m}");
    }
    assert!(close(fit.weights()[0], 1.0, 1e-12));
    let loglik: f64 = x
        .chunks(d)
        .flat_map(|row| row.iter().zip(&means).map(|(v, m)| naive_pmf(*v, *m).ln()))
        .sum();
    assert!(
        close(fit.lower_bound(), loglik / n as f64, 1e-12),
        "{} vs {}",
        fit.lower_bound(),
        loglik / n as f64
    );
    assert!(close(fit.score(&data).unwrap(), loglik / n as f64, 1e-12));
}

#[test]
fn lower_bound_never_decreases() {
    let x = sample(&[1.0; 3], &[1.0, 6.0, 3.0, 3.0, 9.0, 1.0], 600, 11);
    let data = Dataset::from_slice(&x, 600, 2).unwrap();
    let settings = EmSettings {
        backend: Backend::Cpu,
        tol: 0.0,
        max_iter: 60,
        seed: 3,
        ..EmSettings::default()
    };
    let fit = fit(3, &settings, &data).unwrap();
    let trace = fit.lower_bound_trace();
    assert_eq!(trace.len(), 60);
    for w in trace.windows(2) {
        assert!(
            w[1] >= w[0] - 1e-12 * w[0].abs(),
            "lower bound decreased: {} -> {}",
            w[0],
            w[1]
        );
    }
    assert!(trace[59] > trace[0]);
}

#[test]
fn recovers_well_separated_rates() {
    let truth = [2.0, 10.0, 30.0];
    let x = sample(&[1.0; 3], &truth, 3000, 2024);
    let data = Dataset::from_slice(&x, 3000, 1).unwrap();
    let settings = EmSettings {
        backend: Backend::Cpu,
        n_init: 3,
        seed: 5,
        ..EmSettings::default()
    };
    let fit = fit(3, &settings, &data).unwrap();
    assert!(fit.converged());
    let mut rates = fit.rates().to_vec();
    rates.sort_by(f64::total_cmp);
    for (r, t) in rates.iter().zip(truth) {
        assert!(
            (r - t).abs() <= 0.05 * t,
            "fitted {rates:?}, truth {truth:?}"
        );
    }
    for w in fit.weights() {
        assert!((w - 1.0 / 3.0).abs() < 0.05, "weights {:?}", fit.weights());
    }
    let labels = fit.predict(&data).unwrap();
    assert_eq!(labels.len(), 3000);
    let bic = fit.bic(&data).unwrap();
    let want = -2.0 * fit.score(&data).unwrap() * 3000.0 + 5.0 * 3000f64.ln();
    assert!(close(bic, want, 1e-12));
}

#[test]
fn statistics_of_a_partition_merge_to_the_whole() {
    let x = sample(&[1.0; 2], &[2.0, 5.0, 8.0, 1.0], 40, 1);
    let p = PoissonParams {
        weights: vec![0.4, 0.6],
        rates: vec![3.0, 2.0, 6.0, 1.5],
    };
    let whole = stats_of(&x, 2, &p);
    let mut parts = stats_of(&x[..34], 2, &p);
    parts.merge(&stats_of(&x[34..], 2, &p));
    assert_stats_close(&parts, &whole, 1e-12);
    // The flat view: the element-wise sum of the flats reads back as the merge.
    let (a, b) = (
        stats_of(&x[..34], 2, &p).to_flat(),
        stats_of(&x[34..], 2, &p).to_flat(),
    );
    let mut read = PoissonStats::zeros(2, 2);
    read.read_flat(&a.iter().zip(&b).map(|(u, v)| u + v).collect::<Vec<_>>());
    assert_eq!(read, parts);
}

#[test]
fn bad_input_is_an_error() {
    let on = |backend| EmSettings {
        backend,
        ..EmSettings::default()
    };
    let fit = |x: &[f64], k: usize| {
        fit(
            k,
            &on(Backend::Cpu),
            &Dataset::from_slice(x, x.len() / 2, 2).unwrap(),
        )
    };
    for (bad, what) in [(-1.0, "-1"), (1.5, "1.5")] {
        let e = fit(&[1.0, 2.0, 3.0, bad], 1).unwrap_err().to_string();
        assert!(
            e.contains("non-negative integer") && e.contains(what) && e.contains("row 1, column 1"),
            "{e}"
        );
    }
    assert!(matches!(
        fit(&[1.0, f64::NAN], 1),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        fit(&[1.0, 2.0, 3.0, 4.0], 3),
        Err(Error::TooManyComponents { .. })
    ));
    assert!(fit(&[1.0, 2.0], 0).is_err());
    let data = Dataset::from_slice(&[1.0, 2.0], 1, 2).unwrap();
    let e = emgpu::models::poisson::fit(1, &on(Backend::Gpu), &data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("runs on the CPU only"), "{e}");
    let auto = emgpu::models::poisson::fit(1, &on(Backend::Auto), &data).unwrap();
    assert_eq!(auto.report().backend, Backend::Cpu);
    assert_eq!(
        auto.report().reason,
        "the Poisson mixture has no GPU engine"
    );
}
