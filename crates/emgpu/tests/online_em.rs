//! Stepwise (online) EM: the schedule and the shuffle are fixed by the seed, mini-batch E-steps
//! add up to the full E-step on both backends, the reported lower bound is the full-data score,
//! and online EM reaches the batch optimum on a small set.

mod common;

use emgpu::em::online::{OnlineOptions, pass_orders, step_size};
use emgpu::em::{Model, Stats};
use emgpu::models::gmm::{GmmEngine, gmm_engine_batched};
use emgpu::synth::{Workload, blobs};
use emgpu::{Backend, CovarianceType, Dataset, FittedGmm, GaussianMixture, Init};

/// Three separated blobs in 2-D (N = 6000).
fn three_blobs() -> ndarray::Array2<f64> {
    blobs(
        &[[0.0, 0.0], [6.0, 1.0], [2.0, 7.0]],
        &[2500, 2000, 1500],
        &[1.0, 0.7, 1.3],
        11,
    )
    .unwrap()
    .0
}

fn online(batch_size: usize, passes: usize, every: bool) -> Option<OnlineOptions> {
    Some(OnlineOptions {
        batch_size,
        decay: 0.6,
        passes,
        evaluate_every_pass: every,
        start_from_params: false,
    })
}

#[test]
fn step_sizes_and_orders_are_fixed_by_the_seed() {
    // η_t = (t + 2)^−α, t from 0.
    for (t, a) in [(0, 0.6), (1, 0.6), (98, 1.0), (1000, 0.75)] {
        assert_eq!(step_size(t, a), ((t + 2) as f64).powf(-a));
    }
    assert_eq!(step_size(98, 1.0), 0.01);
    let a = pass_orders(100, 4, 42);
    assert_eq!(a, pass_orders(100, 4, 42), "same seed, same orders");
    assert_ne!(a, pass_orders(100, 4, 43), "another seed, other orders");
    assert!(a.windows(2).all(|w| w[0] != w[1]), "a new order every pass");
    for order in &a {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "a permutation");
    }
}

#[test]
fn the_starting_statistics_give_the_initial_parameters_back() {
    let x = three_blobs();
    for cov in CovarianceType::ALL {
        let gm = GaussianMixture::params(3)
            .covariance(cov)
            .reg_covar(1e-3)
            .backend(Backend::Cpu);
        let p = gm.clone().init(Init::Random).initial_params(&x).unwrap();
        let model = gm.model(2);
        let back = model.m_step(&model.params_as_stats(&p).unwrap()).unwrap();
        common::assert_close("weights", back.weights(), p.weights(), 1e-12, 1e-14);
        common::assert_close("means", back.means(), p.means(), 1e-12, 1e-12);
        let (b, c) = (back.covariances(), p.covariances());
        common::assert_close(&format!("{cov}"), b, c, 1e-12, 1e-12);
    }
}

#[test]
fn online_fits_are_deterministic_for_a_seed() {
    let x = three_blobs();
    let fit = |seed| {
        GaussianMixture::params(3)
            .init(Init::RandomFromData)
            .seed(seed)
            .backend(Backend::Cpu)
            .online(online(500, 2, false))
            .fit(&x)
            .unwrap()
    };
    let (a, b, c) = (fit(3), fit(3), fit(4));
    assert_eq!(a.params(), b.params());
    assert_eq!(a.lower_bound(), b.lower_bound());
    assert_ne!(a.params(), c.params());
    let o = a.online().unwrap();
    assert_eq!((o.n_batches, o.evaluation_passes), (12, 1));
    assert_eq!(a.n_iter(), 24, "n_iter counts mini-batch steps");
    assert_eq!(a.lower_bound_trace(), [a.lower_bound()]);
}

#[test]
fn the_lower_bound_is_the_full_data_score() {
    let x = three_blobs();
    for cov in CovarianceType::ALL {
        let gm = GaussianMixture::params(3)
            .covariance(cov)
            .init(Init::KMeansPlusPlus)
            .backend(Backend::Cpu)
            .online(online(700, 3, true));
        let m = gm.fit(&x).unwrap();
        let score = m.score(&x).unwrap();
        let rel = (m.lower_bound() - score).abs() / score.abs();
        assert!(
            rel < 1e-6,
            "{cov}: lower bound {} vs score {score}",
            m.lower_bound()
        );
        assert_eq!(m.lower_bound_trace().len(), 3, "{cov}: one per pass");
        assert_eq!(m.online().unwrap().evaluated_passes, [1, 2, 3]);
        assert_eq!(m.trace_seconds().len(), 3);
    }
}

#[test]
fn online_reaches_the_batch_optimum() {
    let x = three_blobs();
    // The start of `emgpu bench`: three data points as means, the data's variance as
    // covariances, equal weights. (A k-means++ start, covariances reg_covar, suits batch EM's
    // first E-step over all the data but not a first mini-batch.)
    let var = x.var_axis(ndarray::Axis(0), 0.0);
    let means: Vec<f64> = [10, 3000, 5500]
        .iter()
        .flat_map(|&r| x.row(r).to_vec())
        .collect();
    let cov = [var[0], 0.0, 0.0, var[1]].repeat(3);
    let start =
        emgpu::GmmParams::new(CovarianceType::Full, vec![1.0 / 3.0; 3], means, cov, 2).unwrap();
    let base = GaussianMixture::params(3)
        .init(Init::Params(start))
        .backend(Backend::Cpu);
    let batch = base.clone().tol(1e-8).max_iter(500).fit(&x).unwrap();
    for start_from_params in [false, true] {
        let options = OnlineOptions {
            start_from_params,
            ..online(200, 10, true).unwrap()
        };
        let stepwise = base.clone().online(Some(options)).fit(&x).unwrap();
        check_near_optimum(&x, &batch, &stepwise);
    }
}

fn check_near_optimum(x: &ndarray::Array2<f64>, batch: &FittedGmm, stepwise: &FittedGmm) {
    let (b, o) = (batch.score(x).unwrap(), stepwise.lower_bound());
    let gap = (b - o) / b.abs();
    assert!(
        gap < 5e-3,
        "online {o} vs batch {b}: {gap:e} below; trace {:?}, batch {:?}, weights {:?} vs {:?}",
        stepwise.lower_bound_trace(),
        batch.lower_bound_trace(),
        stepwise.params().weights(),
        batch.params().weights()
    );
    // The trace of the online fit rises towards the optimum overall.
    let t = stepwise.lower_bound_trace();
    assert!(t[t.len() - 1] > t[0], "{t:?}");
}

#[test]
fn mini_batch_statistics_add_up_to_the_full_e_step() {
    let w = Workload {
        n: 3000,
        d: 3,
        k: 4,
        covariance_type: CovarianceType::Full,
        seed: 9,
        spread: 5.0,
    };
    let synth = w.generate().unwrap();
    let data = synth.dataset().unwrap();
    let gm = GaussianMixture::params(4).backend(Backend::Cpu);
    let model = gm.model(3);
    let p = model.prepare(&synth.init).unwrap();
    let mut backends = vec![Backend::Cpu];
    backends.extend(common::gpu_backend(
        "mini_batch_statistics_add_up_to_the_full_e_step",
    ));
    let opts = OnlineOptions {
        batch_size: 700,
        ..OnlineOptions::default()
    };
    // On the GPU also streamed chunks of 300 rows: a mini-batch is then 3 chunks (234 rows).
    let mut cases = vec![];
    for backend in backends {
        cases.push((backend, None));
        if backend == Backend::Gpu {
            cases.push((backend, Some(300)));
        }
    }
    for (backend, chunk_rows) in cases {
        let options = emgpu::device::EngineOptions {
            chunk_rows,
            ..Default::default()
        };
        let mut engine = gmm_engine_batched(
            backend,
            &data,
            CovarianceType::Full,
            4,
            options,
            Some(opts.batch_size),
        )
        .unwrap();
        let full = engine.e_step(&p).unwrap();
        let mut sum: Option<emgpu::models::gmm::GmmStats> = None;
        for b in 0..opts.n_batches(3000) {
            let s = GmmEngine::e_step_rows(engine.as_mut(), &p, opts.batch_rows(b, 3000)).unwrap();
            match &mut sum {
                None => sum = Some(s),
                Some(acc) => acc.merge(&s),
            }
        }
        let sum = sum.unwrap();
        let (a, b) = (sum.to_flat(), full.to_flat());
        let tol = if backend == Backend::Cpu { 1e-10 } else { 1e-4 };
        common::assert_close(&format!("{backend:?}"), &a, &b, tol, tol);
        assert_eq!(sum.n_samples, 3000.0);
        // A range that is not whole chunks of a GPU engine is refused, never wrong.
        if backend == Backend::Gpu {
            assert!(GmmEngine::e_step_rows(engine.as_mut(), &p, 10..20).is_err());
        }
    }
}

#[test]
fn gpu_online_matches_cpu_online() {
    let Some(gpu) = common::gpu_backend("gpu_online_matches_cpu_online") else {
        return;
    };
    let x = three_blobs();
    let data = Dataset::from_array(&x);
    let start = GaussianMixture::params(3)
        .init(Init::KMeansPlusPlus)
        .backend(Backend::Cpu)
        .initial_params(&x)
        .unwrap();
    let fit = |backend| {
        GaussianMixture::params(3)
            .init(Init::Params(start.clone()))
            .backend(backend)
            .online(online(1000, 2, false))
            .fit(&data)
            .unwrap()
    };
    let (c, g) = (fit(Backend::Cpu), fit(gpu));
    assert_eq!(g.backend_report().unwrap().backend, Backend::Gpu);
    let rel = (c.lower_bound() - g.lower_bound()).abs() / c.lower_bound().abs();
    assert!(
        rel < 1e-4,
        "cpu {} gpu {}",
        c.lower_bound(),
        g.lower_bound()
    );
    common::assert_close("means", g.params().means(), c.params().means(), 1e-3, 1e-3);
}

#[test]
fn bad_online_options_are_refused() {
    let x = three_blobs();
    for (batch_size, decay, passes) in [(0, 0.6, 1), (10, 0.5, 1), (10, 1.5, 1), (10, 0.7, 0)] {
        let err = GaussianMixture::params(2)
            .backend(Backend::Cpu)
            .online(Some(OnlineOptions {
                batch_size,
                decay,
                passes,
                ..OnlineOptions::default()
            }))
            .fit(&x)
            .unwrap_err();
        assert!(matches!(err, emgpu::Error::InvalidParameter(_)), "{err}");
    }
}

/// Sample weights flow through stepwise EM (they live in the engines' statistics): the lower
/// bound is the full data's weighted score, a mini-batch whose weights are all zero is skipped,
/// and the fit ends near the weighted batch optimum.
#[test]
fn online_fits_take_sample_weights() {
    let x = three_blobs();
    let n = x.nrows();
    // Integer weights 0..=3, with the first 500 rows (one mini-batch) all zero.
    let w: Vec<f64> = (0..n)
        .map(|i| if i < 500 { 0.0 } else { ((i * 7) % 4) as f64 })
        .collect();
    let data = Dataset::from_array(&x)
        .with_sample_weights(w.clone())
        .unwrap();
    let gm = GaussianMixture::params(3)
        .init(Init::RandomFromData)
        .seed(3)
        .reg_covar(1e-6)
        .backend(Backend::Cpu)
        .online(online(500, 3, false));
    let m = gm.fit(&data).unwrap();
    let score = m.score(&data).unwrap();
    assert!(
        (m.lower_bound() - score).abs() <= 1e-6 * score.abs(),
        "{} vs {score}",
        m.lower_bound()
    );
    // The same model, near the weighted batch optimum.
    let batch = GaussianMixture::params(3)
        .init(Init::Params(m.params().clone()))
        .backend(Backend::Cpu)
        .fit(&data)
        .unwrap();
    let gap = (batch.score(&data).unwrap() - score) / score.abs();
    assert!(
        gap.abs() < 0.01,
        "online {score} vs batch {}",
        batch.score(&data).unwrap()
    );
}
