//! The CPU HMM engine's paths agree: a long sequence split in time equals the same sequence run
//! serially; the log-space fallback takes over where the scaled recursion underflows; EM never
//! lowers the log-likelihood.

use emgpu::device::EngineOptions;
use emgpu::em::{EStep, Stats};
use emgpu::models::hmm::forward_backward::forward_backward_log;
use emgpu::models::hmm::{CpuHmmEngine, GaussianHmm, HmmEngine, HmmParams};
use emgpu::{Backend, CovarianceType, Dataset};

/// A sticky 3-state model in 2-D.
fn model(cov: CovarianceType) -> HmmParams {
    let covs = match cov {
        CovarianceType::Full => vec![1.0, 0.3, 0.3, 1.0, 0.5, 0.0, 0.0, 0.5, 2.0, -0.4, -0.4, 1.0],
        CovarianceType::Tied => vec![1.0, 0.3, 0.3, 1.0],
        CovarianceType::Diag => vec![1.0, 0.5, 0.5, 0.8, 2.0, 1.0],
        CovarianceType::Spherical => vec![1.0, 0.5, 2.0],
    };
    HmmParams::new(
        cov,
        vec![0.5, 0.3, 0.2],
        vec![0.9, 0.05, 0.05, 0.1, 0.8, 0.1, 0.05, 0.15, 0.8],
        vec![0.0, 0.0, 3.0, 1.0, -2.0, 4.0],
        covs,
        2,
    )
    .unwrap()
}

/// Deterministic data around the three means.
fn data(n: usize) -> Vec<f64> {
    let mut x = Vec::with_capacity(2 * n);
    let mut state = 0usize;
    let mut u = 12345u64;
    let mut next = || {
        u = u
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (u >> 11) as f64 / (1u64 << 53) as f64
    };
    let means = [[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]];
    for _ in 0..n {
        if next() < 0.1 {
            state = (state + 1 + (next() * 2.0) as usize) % 3;
        }
        x.push(means[state][0] + 2.0 * next() - 1.0);
        x.push(means[state][1] + 2.0 * next() - 1.0);
    }
    x
}

fn close(what: &str, a: &[f64], b: &[f64], rtol: f64) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= rtol * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn a_long_sequence_split_in_time_equals_the_serial_run() {
    // Two threads run the fused schedule, four the phased one (FUSED_MAX_THREADS = 3).
    for threads in [1, 2, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(split_equals_serial);
    }
}

fn split_equals_serial() {
    let n = 40_000;
    let x = data(n);
    // A sequence of 30 000 steps: 4 blocks of 8 192 (uneven halves); one of 9 000: 2 blocks.
    let lengths = vec![3, 30_000, 1, 996, 9_000];
    let ds = Dataset::from_slice(&x, n, 2)
        .unwrap()
        .with_sequence_lengths(lengths)
        .unwrap();
    for cov in CovarianceType::ALL {
        let p = model(cov).prepare().unwrap();
        // chunk_rows: sequences of 1 000 steps or more run parallel in time (blocks of 8 192).
        let split = EngineOptions {
            chunk_rows: Some(1_000),
            ..Default::default()
        };
        let mut long = CpuHmmEngine::new(&ds, split, String::new());
        let mut serial = CpuHmmEngine::new(&ds, EngineOptions::default(), String::new());
        let (a, b) = (long.e_step(&p).unwrap(), serial.e_step(&p).unwrap());
        close(&format!("{cov}: stats"), &a.to_flat(), &b.to_flat(), 1e-10);
        let (mut pa, mut pb) = (vec![0.0; n * 3], vec![0.0; n * 3]);
        let la = long.posteriors(&p, &mut pa).unwrap();
        let lb = serial.posteriors(&p, &mut pb).unwrap();
        close(&format!("{cov}: posteriors"), &pa, &pb, 1e-10);
        close(&format!("{cov}: log-likelihood"), &[la], &[lb], 1e-12);
        let (sa, sb) = (long.score(&p).unwrap(), serial.score(&p).unwrap());
        close(&format!("{cov}: score"), &[sa], &[lb], 1e-12);
        close(&format!("{cov}: score"), &[sb], &[lb], 1e-12);
        assert_eq!(a.n_samples(), n as f64);
        assert_eq!(a.n_sequences, 5.0);
    }
}

#[test]
fn the_log_space_fallback_takes_over_where_the_scaled_recursion_underflows() {
    // State 2 cannot be reached (startprob 0, no transition into it) and sits on x = (40, 40):
    // at that point the reachable states' densities are ~e^-800 of state 2's, so the scaled
    // recursion's normalizer vanishes and the engine must redo the sequence in log space.
    let params = HmmParams::new(
        CovarianceType::Spherical,
        vec![0.6, 0.4, 0.0],
        vec![0.8, 0.2, 0.0, 0.3, 0.7, 0.0, 0.5, 0.5, 0.0],
        vec![0.0, 0.0, 2.0, 2.0, 40.0, 40.0],
        vec![1.0, 1.0, 0.01],
        2,
    )
    .unwrap();
    let x = vec![0.1, 0.0, 1.9, 2.1, 40.0, 40.0, 0.2, -0.1, 2.0, 2.0];
    let ds = Dataset::from_slice(&x, 5, 2).unwrap();
    let p = params.prepare().unwrap();
    let mut logb = vec![0.0; 15];
    p.emission_log_densities(&x, &mut logb);
    let (mut gamma, mut xi) = (vec![0.0; 15], vec![0.0; 9]);
    let want = forward_backward_log(
        &p.log_startprob,
        &p.log_transmat,
        &logb,
        &mut gamma,
        &mut xi,
    )
    .unwrap();
    let mut engine = CpuHmmEngine::new(&ds, EngineOptions::default(), String::new());
    let stats = engine.e_step(&p).unwrap();
    assert!(want.is_finite() && want < -700.0, "{want}");
    close("log-likelihood", &[stats.log_likelihood()], &[want], 1e-12);
    close("transitions", &stats.trans, &xi, 1e-12);
    let mut post = vec![0.0; 15];
    engine.posteriors(&p, &mut post).unwrap();
    close("posteriors", &post, &gamma, 1e-12);
    assert_eq!(post[2], 0.0, "the unreachable state has no posterior");
    close("score", &[engine.score(&p).unwrap()], &[want], 1e-12);
}

#[test]
fn em_never_lowers_the_log_likelihood() {
    let n = 3_000;
    let x = data(n);
    let ds = Dataset::from_slice(&x, n, 2)
        .unwrap()
        .with_sequence_lengths(vec![1_000, 1, 1_999])
        .unwrap();
    for cov in CovarianceType::ALL {
        let fitted = GaussianHmm::params(3)
            .covariance(cov)
            .max_iter(40)
            .tol(0.0)
            .seed(7)
            .backend(Backend::Cpu)
            .fit(&ds)
            .unwrap();
        let trace = fitted.lower_bound_trace();
        assert_eq!(trace.len(), 40);
        for w in trace.windows(2) {
            assert!(w[1] >= w[0] - 1e-9 * w[0].abs(), "{cov}: {w:?}");
        }
        assert!(
            trace[39] > trace[0] + 1.0,
            "{cov}: EM made no progress: {trace:?}"
        );
    }
}
