//! The HMM's forward-backward and Viterbi against brute force over every state path on tiny
//! models, and the scaled path against the log-space one.

use emgpu::Dataset;
use emgpu::models::gmm::CovarianceType;
use emgpu::models::hmm::forward_backward::{
    backward, forward, forward_backward_log, posteriors, relative_densities, viterbi,
};
use emgpu::models::hmm::{FittedHmm, HmmParams, HmmPrepared};

fn tiny_model(k: usize) -> HmmParams {
    let startprob: Vec<f64> = match k {
        2 => vec![0.6, 0.4],
        _ => vec![0.5, 0.3, 0.2],
    };
    let transmat: Vec<f64> = match k {
        2 => vec![0.7, 0.3, 0.2, 0.8],
        _ => vec![0.6, 0.3, 0.1, 0.2, 0.5, 0.3, 0.25, 0.25, 0.5],
    };
    let means: Vec<f64> = (0..k * 2).map(|i| i as f64 * 0.9 - 1.0).collect();
    let covs: Vec<f64> = (0..k * 2).map(|i| 0.5 + 0.3 * i as f64).collect();
    HmmParams::new(CovarianceType::Diag, startprob, transmat, means, covs, 2).unwrap()
}

fn data(t: usize) -> Vec<f64> {
    (0..t * 2)
        .map(|i| ((i * 7919) % 13) as f64 * 0.4 - 2.0)
        .collect()
}

/// Every path's joint log-probability: (paths, log p(x, path)).
fn all_paths(p: &HmmPrepared, logb: &[f64], t: usize) -> Vec<(Vec<usize>, f64)> {
    let k = p.n_components();
    let mut out = Vec::new();
    for code in 0..k.pow(t as u32) {
        let path: Vec<usize> = (0..t).map(|i| (code / k.pow(i as u32)) % k).collect();
        let mut lp = p.log_startprob[path[0]] + logb[path[0]];
        for i in 1..t {
            lp += p.log_transmat[path[i - 1] * k + path[i]] + logb[i * k + path[i]];
        }
        out.push((path, lp));
    }
    out
}

#[test]
fn posteriors_and_viterbi_equal_brute_force() {
    for k in [2, 3] {
        for t in [1, 2, 5, 7] {
            let params = tiny_model(k);
            let p = params.prepare().unwrap();
            let x = data(t);
            let mut logb = vec![0.0; t * k];
            p.emission_log_densities(&x, &mut logb);
            let paths = all_paths(&p, &logb, t);
            let log_px = paths.iter().map(|(_, l)| l.exp()).sum::<f64>().ln();
            // Brute-force marginals.
            let mut gamma = vec![0.0; t * k];
            let mut xi = vec![0.0; k * k];
            for (path, lp) in &paths {
                let w = (lp - log_px).exp();
                for i in 0..t {
                    gamma[i * k + path[i]] += w;
                    if i + 1 < t {
                        xi[path[i] * k + path[i + 1]] += w;
                    }
                }
            }
            // Scaled path.
            let mut alpha = vec![0.0; t * k];
            let mut beta = vec![0.0; t * k];
            let (mut e, mut shift) = (logb.clone(), vec![0.0; t]);
            relative_densities(&mut e, k, &mut shift);
            let lp = forward(&p.startprob, &p.transmat, &e, &shift, &mut alpha).unwrap();
            let mut norms = vec![0.0; t];
            assert!(backward(&p.transmat, &e, &mut beta, &mut norms));
            let mut xi_s = vec![0.0; k * k];
            assert!(posteriors(
                &p.transmat,
                &e,
                &beta,
                &norms,
                None,
                &mut alpha,
                &mut xi_s
            ));
            assert!(
                (lp - log_px).abs() < 1e-12 * log_px.abs().max(1.0),
                "{lp} vs {log_px}"
            );
            for (a, b) in alpha.iter().zip(&gamma).chain(xi_s.iter().zip(&xi)) {
                assert!((a - b).abs() < 1e-12, "k={k} t={t}: {a} vs {b}");
            }
            // Log-space path.
            let mut g_log = vec![0.0; t * k];
            let mut xi_l = vec![0.0; k * k];
            let lp_log = forward_backward_log(
                &p.log_startprob,
                &p.log_transmat,
                &logb,
                &mut g_log,
                &mut xi_l,
            )
            .unwrap();
            assert!((lp_log - log_px).abs() < 1e-12 * log_px.abs().max(1.0));
            for (a, b) in g_log.iter().zip(&gamma).chain(xi_l.iter().zip(&xi)) {
                assert!((a - b).abs() < 1e-12, "log k={k} t={t}: {a} vs {b}");
            }
            // Viterbi.
            let (best_path, best) =
                paths
                    .iter()
                    .fold((vec![], f64::NEG_INFINITY), |acc, (path, lp)| {
                        if *lp > acc.1 {
                            (path.clone(), *lp)
                        } else {
                            acc
                        }
                    });
            let mut states = vec![0; t];
            let v = viterbi(&p.log_startprob, &p.log_transmat, &logb, &mut states);
            assert!((v - best).abs() < 1e-12 * best.abs().max(1.0));
            assert_eq!(states, best_path);
            // Through the library, as one sequence.
            let m = FittedHmm::from_params(params.clone()).unwrap();
            let ds = Dataset::from_slice(&x, t, 2).unwrap();
            let score = m.score(&ds).unwrap();
            assert!((score - log_px).abs() < 1e-12 * log_px.abs().max(1.0));
            let (dec, st) = m.decode(&ds).unwrap();
            assert!((dec - best).abs() < 1e-12 * best.abs().max(1.0));
            assert_eq!(st.to_vec(), best_path);
            let proba = m.predict_proba(&ds).unwrap();
            for (a, b) in proba.iter().zip(&gamma) {
                assert!((a - b).abs() < 1e-12);
            }
        }
    }
}
