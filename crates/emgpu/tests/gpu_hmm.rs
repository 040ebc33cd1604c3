//! The GPU HMM engine against the f64 CPU engine (the oracle): one E-step's statistics, the
//! score, the posteriors and the Viterbi paths for every covariance type, on sequences of
//! different lengths (one of a single step), on a long sequence that takes the chunked-in-time
//! path (transfer matrices, the serial pass over chunks, the chunks rerun from their true
//! incoming vectors), and a whole fit through the library API. Relative tolerance 2e-3 with
//! absolute floors scaled to each statistic (as `gpu_vs_cpu.rs`). Runs on lavapipe in seconds.

#![cfg(feature = "gpu")]
#![allow(clippy::needless_range_loop)]

mod common;

use common::{GPU_FLOOR as FLOOR, GPU_RTOL as RTOL, assert_close, assert_gmm_stats_close};
use emgpu::device::EngineOptions;
use emgpu::em::EStep;
use emgpu::models::hmm::gpu::GpuHmmEngine;
use emgpu::models::hmm::{
    CpuHmmEngine, FittedHmm, GaussianHmm, HmmEngine, HmmInit, HmmParams, HmmPrepared,
};
use emgpu::{Backend, CovarianceType, Dataset};

/// A K-state model in D dimensions: means on a scaled simplex-like pattern `sep` apart, sticky
/// transitions, covariances of the type with some spread and (full) correlation.
fn model(k: usize, d: usize, cov: CovarianceType, sep: f64) -> HmmParams {
    let startprob: Vec<f64> = {
        let w: Vec<f64> = (0..k).map(|i| 1.0 + i as f64).collect();
        let s: f64 = w.iter().sum();
        w.iter().map(|v| v / s).collect()
    };
    let mut transmat = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            transmat[i * k + j] = if i == j {
                0.8
            } else {
                0.2 / (k - 1).max(1) as f64
            };
        }
        if k == 1 {
            transmat[0] = 1.0;
        }
    }
    let means: Vec<f64> = (0..k * d)
        .map(|e| {
            let (c, i) = (e / d, e % d);
            sep * (((c * 7 + i * 3) % 5) as f64 - 2.0) + if i == c % d { sep } else { 0.0 }
        })
        .collect();
    let var = |c: usize, i: usize| 0.6 + 0.15 * ((c + 2 * i) % 4) as f64;
    let covariances: Vec<f64> = match cov {
        CovarianceType::Full => (0..k)
            .flat_map(|c| {
                let mut m = vec![0.0; d * d];
                for i in 0..d {
                    for j in 0..d {
                        m[i * d + j] = if i == j {
                            var(c, i)
                        } else {
                            0.2 * (var(c, i) * var(c, j)).sqrt()
                        };
                    }
                }
                m
            })
            .collect(),
        CovarianceType::Tied => {
            let mut m = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    m[i * d + j] = if i == j { var(0, i) } else { -0.15 };
                }
            }
            m
        }
        CovarianceType::Diag => (0..k * d).map(|e| var(e / d, e % d)).collect(),
        CovarianceType::Spherical => (0..k).map(|c| var(c, 0)).collect(),
    };
    HmmParams::new(cov, startprob, transmat, means, covariances, d).unwrap()
}

/// A slightly different model to run the E-step with (not the one that drew the data).
fn perturbed(p: &HmmParams) -> HmmParams {
    let k = p.n_components();
    let means: Vec<f64> = p.means().iter().map(|m| m * 0.9 + 0.1).collect();
    let transmat: Vec<f64> = (0..k * k)
        .map(|e| {
            let (i, j) = (e / k, e % k);
            0.7 * p.transmat()[e]
                + 0.3
                    * if i == j {
                        0.5
                    } else {
                        0.5 / (k - 1).max(1) as f64
                    }
        })
        .map(|v| if k == 1 { 1.0 } else { v })
        .collect();
    HmmParams::new(
        p.covariance_type(),
        vec![1.0 / k as f64; k],
        transmat,
        means,
        p.covariances().iter().map(|c| c * 1.2).collect(),
        p.n_features(),
    )
    .unwrap()
}

/// `sum(lengths)` rows drawn from `p` (one sampled path cut at the lengths).
fn draw(p: &HmmParams, total: usize, seed: u64) -> Vec<f64> {
    let (x, _) = FittedHmm::from_params(p.clone())
        .unwrap()
        .sample(total, seed)
        .unwrap();
    x.iter().copied().collect()
}

fn column_sd(x: &[f64], d: usize) -> Vec<f64> {
    let n = x.len() / d;
    (0..d)
        .map(|i| {
            let m: f64 = x.iter().skip(i).step_by(d).sum::<f64>() / n as f64;
            (x.iter()
                .skip(i)
                .step_by(d)
                .map(|v| (v - m).powi(2))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        })
        .collect()
}

/// E-step statistics, score and posteriors of the GPU engine against the CPU engine's.
fn compare(
    what: &str,
    data: &Dataset,
    x: &[f64],
    p: &HmmPrepared,
    gpu: &mut GpuHmmEngine,
    viterbi: bool,
) {
    let (n, k, d) = (data.n_samples(), p.n_components(), p.n_features());
    let mut cpu = CpuHmmEngine::new(data, EngineOptions::default(), String::new());
    let (c, g) = (cpu.e_step(p).unwrap(), gpu.e_step(p).unwrap());
    assert_gmm_stats_close(what, &g.emission, &c.emission, &column_sd(x, d));
    assert_eq!(g.n_sequences, c.n_sequences, "{what}: n_sequences");
    let seqs = c.n_sequences;
    assert_close(
        &format!("{what}: start"),
        &g.start,
        &c.start,
        RTOL,
        FLOOR * seqs,
    );
    assert_close(
        &format!("{what}: trans"),
        &g.trans,
        &c.trans,
        RTOL,
        FLOOR * n as f64 / k as f64,
    );
    let (sc, sg) = (cpu.score(p).unwrap(), gpu.score(p).unwrap());
    assert_close(
        &format!("{what}: score"),
        &[sg],
        &[sc],
        RTOL,
        FLOOR * n as f64,
    );
    assert_close(
        &format!("{what}: e-step log-likelihood"),
        &[g.emission.log_likelihood],
        &[sc],
        RTOL,
        FLOOR * n as f64,
    );
    let (mut pc, mut pg) = (vec![0.0; n * k], vec![0.0; n * k]);
    let (lc, lg) = (
        cpu.posteriors(p, &mut pc).unwrap(),
        gpu.posteriors(p, &mut pg).unwrap(),
    );
    assert_close(
        &format!("{what}: posteriors' score"),
        &[lg],
        &[lc],
        RTOL,
        FLOOR * n as f64,
    );
    assert_close(&format!("{what}: posteriors"), &pg, &pc, RTOL, 2e-3);
    if viterbi {
        let (mut vc, mut vg) = (vec![0; n], vec![0; n]);
        let (lc, lg) = (
            cpu.viterbi(p, &mut vc).unwrap(),
            gpu.viterbi(p, &mut vg).unwrap(),
        );
        assert_close(
            &format!("{what}: viterbi log-probability"),
            &[lg],
            &[lc],
            RTOL,
            FLOOR * n as f64,
        );
        let differ = vc.iter().zip(&vg).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{what}: {differ} Viterbi states differ");
    }
    assert_eq!(
        gpu.cpu_fallbacks(),
        0,
        "{what}: the GPU engine fell back to the CPU"
    );
}

#[test]
fn every_covariance_type_on_sequences_of_different_lengths() {
    let Some(_) = common::gpu_backend("every_covariance_type_on_sequences_of_different_lengths")
    else {
        return;
    };
    let ctx = common::shared_context().unwrap();
    let lengths = vec![57, 1, 300, 129, 2, 211];
    let total: usize = lengths.iter().sum();
    for cov in CovarianceType::ALL {
        let (k, d) = (3, 3);
        let truth = model(k, d, cov, 2.5);
        let x = draw(&truth, total, 7);
        let data = Dataset::from_slice(&x, total, d)
            .unwrap()
            .with_sequence_lengths(lengths.clone())
            .unwrap();
        let mut gpu = GpuHmmEngine::new(ctx.clone(), &data, cov, k, String::new()).unwrap();
        assert_eq!(gpu.n_time_chunks(), 0);
        let p = perturbed(&truth).prepare().unwrap();
        compare(&format!("{cov}"), &data, &x, &p, &mut gpu, false);
        // Viterbi on the model that drew the (well-separated) data: no near-ties.
        let sep = model(k, d, cov, 6.0);
        let xs = draw(&sep, total, 8);
        let data = Dataset::from_slice(&xs, total, d)
            .unwrap()
            .with_sequence_lengths(lengths.clone())
            .unwrap();
        let mut gpu = GpuHmmEngine::new(ctx.clone(), &data, cov, k, String::new()).unwrap();
        compare(
            &format!("{cov} separated"),
            &data,
            &xs,
            &sep.prepare().unwrap(),
            &mut gpu,
            true,
        );
    }
}

#[test]
fn a_long_sequence_runs_chunked_in_time() {
    let Some(_) = common::gpu_backend("a_long_sequence_runs_chunked_in_time") else {
        return;
    };
    let ctx = common::shared_context().unwrap();
    let lengths = vec![37, 5000, 1, 700];
    let total: usize = lengths.iter().sum();
    for (cov, k, d, sep) in [
        (CovarianceType::Diag, 4, 2, 1.5),
        (CovarianceType::Full, 3, 3, 6.0),
    ] {
        let truth = model(k, d, cov, sep);
        let x = draw(&truth, total, 11);
        let data = Dataset::from_slice(&x, total, d)
            .unwrap()
            .with_sequence_lengths(lengths.clone())
            .unwrap();
        let mut gpu =
            GpuHmmEngine::with_segment_len(ctx.clone(), &data, cov, k, Some(256), String::new())
                .unwrap();
        assert_eq!(gpu.segment_len(), 256);
        // 5000 steps: 20 chunks; 700: 3.
        assert_eq!(gpu.n_time_chunks(), 23);
        let p = if sep > 3.0 {
            truth.prepare().unwrap()
        } else {
            perturbed(&truth).prepare().unwrap()
        };
        compare(
            &format!("{cov} chunked"),
            &data,
            &x,
            &p,
            &mut gpu,
            sep > 3.0,
        );
    }
}

#[test]
fn a_gpu_fit_matches_the_cpu_fit() {
    let Some(gpu) = common::gpu_backend("a_gpu_fit_matches_the_cpu_fit") else {
        return;
    };
    let lengths = vec![400, 1, 250, 3000, 90];
    let total: usize = lengths.iter().sum();
    for cov in [CovarianceType::Full, CovarianceType::Spherical] {
        let (k, d) = (3, 2);
        let truth = model(k, d, cov, 2.0);
        let x = draw(&truth, total, 3);
        let data = Dataset::from_slice(&x, total, d)
            .unwrap()
            .with_sequence_lengths(lengths.clone())
            .unwrap();
        let fit = |backend| {
            GaussianHmm::params(k)
                .covariance(cov)
                .init(HmmInit::Params(perturbed(&truth)))
                .tol(0.0)
                .max_iter(10)
                .backend(backend)
                .fit(&data)
                .unwrap()
        };
        let (c, g) = (fit(Backend::Cpu), fit(gpu));
        assert_eq!(g.backend_report().unwrap().backend, Backend::Gpu);
        assert_eq!((c.n_iter(), g.n_iter()), (10, 10));
        let flat = |a: ndarray::ArrayViewD<f64>| a.iter().copied().collect::<Vec<_>>();
        assert_close(
            "startprob",
            g.params().startprob(),
            c.params().startprob(),
            RTOL,
            1e-4,
        );
        assert_close(
            "transmat",
            g.params().transmat(),
            c.params().transmat(),
            RTOL,
            1e-4,
        );
        assert_close("means", g.params().means(), c.params().means(), RTOL, 1e-3);
        assert_close(
            "covariances",
            &flat(g.covariances().view()),
            &flat(c.covariances().view()),
            RTOL,
            1e-4,
        );
        assert_close(
            "lower bound",
            &[g.lower_bound()],
            &[c.lower_bound()],
            RTOL,
            FLOOR * total as f64,
        );
        // predict / predict_proba / score of the fitted model on the GPU.
        let (sg, sc) = (g.score(&data).unwrap(), c.score(&data).unwrap());
        assert_close("score", &[sg], &[sc], RTOL, FLOOR * total as f64);
        let (pg, pc) = (
            g.predict_proba(&data).unwrap(),
            c.predict_proba(&data).unwrap(),
        );
        assert_close(
            "predict_proba",
            pg.as_slice().unwrap(),
            pc.as_slice().unwrap(),
            RTOL,
            2e-3,
        );
        let (vg, vc) = (g.predict(&data).unwrap(), c.predict(&data).unwrap());
        let differ = vg.iter().zip(&vc).filter(|(a, b)| a != b).count();
        assert!(differ <= total / 1000, "{differ} predicted states differ");
    }
}
