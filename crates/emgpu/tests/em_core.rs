//! The EM core's contracts, model-agnostic: a data source whose reads fail stops a fit with its
//! error (no panic, no silent zeros) on every engine; the progress callback can cancel a fit; the
//! flat view of statistics is their addition; datasets carry sequence lengths and a missing-value
//! mask, and models that handle neither refuse them.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use emgpu::data::DataSource;
use emgpu::em::{Stats, StopRule, run_em};
use emgpu::models::gmm::{GmmModel, gmm_engine};
use emgpu::models::kmeans::KMeansStats;
use emgpu::synth::Workload;
use emgpu::{Backend, CovarianceType, Dataset, Error, GaussianMixture, KMeans};
use ndarray::Array2;

/// Rows of an array, but every read that reaches row `fail_from` or beyond fails with an I/O
/// error (a remote source that lost its connection), after `ok_reads` successful reads.
struct Flaky {
    x: Array2<f64>,
    fail_from: usize,
    reads: AtomicUsize,
    ok_reads: usize,
}

impl Flaky {
    fn check(&self, start: usize, len: usize) -> emgpu::Result<()> {
        let end = start + len / self.x.ncols();
        let count = self.reads.fetch_add(1, Ordering::SeqCst);
        if end > self.fail_from && count >= self.ok_reads {
            return Err(Error::io(
                "remote://table",
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
            ));
        }
        Ok(())
    }
}

impl DataSource for Flaky {
    fn n_samples(&self) -> usize {
        self.x.nrows()
    }
    fn n_features(&self) -> usize {
        self.x.ncols()
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> emgpu::Result<()> {
        self.check(start, out.len())?;
        let d = self.x.ncols();
        for (r, row) in out.chunks_exact_mut(d).enumerate() {
            for (o, v) in row.iter_mut().zip(self.x.row(start + r)) {
                *o = *v;
            }
        }
        Ok(())
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> emgpu::Result<()> {
        let mut tmp = vec![0.0; out.len()];
        self.read_f64(start, &mut tmp)?;
        for (o, v) in out.iter_mut().zip(tmp) {
            *o = v as f32;
        }
        Ok(())
    }
}

fn data(n: usize) -> Array2<f64> {
    Workload {
        n,
        d: 3,
        k: 2,
        covariance_type: CovarianceType::Diag,
        seed: 3,
        spread: 4.0,
    }
    .generate_f64()
    .unwrap()
}

fn is_io(e: &Error) -> bool {
    matches!(e, Error::Io { .. }) && e.to_string().contains("connection reset")
}

#[test]
fn a_failing_read_stops_the_fit_with_its_error_on_the_cpu() {
    let x = data(5000);
    // Validation reads everything first: a source failing from the start fails there.
    let flaky = Dataset::from_source(Flaky {
        x: x.clone(),
        fail_from: 4000,
        reads: AtomicUsize::new(0),
        ok_reads: 0,
    });
    let err = GaussianMixture::params(2)
        .backend(Backend::Cpu)
        .fit(&flaky)
        .unwrap_err();
    assert!(is_io(&err), "{err}");
    let err = KMeans::params(2)
        .backend(Backend::Cpu)
        .fit(&flaky)
        .unwrap_err();
    assert!(is_io(&err), "{err}");

    // A source that fails later, inside the EM loop (after validation and initialization read
    // the data), stops the loop with the same error: on the E-step of each CPU path.
    for path in [
        emgpu::device::CpuPath::Blocked,
        emgpu::device::CpuPath::Reference,
    ] {
        let flaky = Dataset::from_source(Flaky {
            x: x.clone(),
            fail_from: 4000,
            reads: AtomicUsize::new(0),
            ok_reads: 1000,
        });
        let options = emgpu::device::EngineOptions {
            chunk_rows: Some(256),
            cpu_path: path,
        };
        let mut engine =
            gmm_engine(Backend::Cpu, &flaky, CovarianceType::Diag, 2, options).unwrap();
        let model = GmmModel {
            covariance_type: CovarianceType::Diag,
            n_components: 2,
            n_features: 3,
            reg_covar: 1e-6,
        };
        let start = GaussianMixture::params(2)
            .covariance(CovarianceType::Diag)
            .backend(Backend::Cpu)
            .initial_params(&x)
            .unwrap();
        let rule = StopRule {
            tol: 0.0,
            max_iter: 1000,
        };
        let err = run_em(&model, engine.as_mut(), start, rule, 0, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
        assert!(is_io(&err), "{path}: {err}");
    }
}

#[test]
fn a_failing_read_stops_a_gpu_fit_with_its_error() {
    let Some(backend) = common::gpu_backend("a_failing_read_stops_a_gpu_fit_with_its_error") else {
        return;
    };
    let x = data(3000);
    let flaky = Dataset::from_source(Flaky {
        x,
        fail_from: 2000,
        reads: AtomicUsize::new(0),
        ok_reads: 0,
    });
    // Building the GPU engine uploads the data: the read error surfaces there.
    let err = gmm_engine(backend, &flaky, CovarianceType::Full, 2, Default::default())
        .err()
        .expect("the upload reads the failing rows");
    assert!(is_io(&err), "{err}");
}

#[test]
fn the_progress_callback_cancels_a_fit() {
    let x = data(2000);
    let mut seen = 0;
    let err = GaussianMixture::params(2)
        .tol(0.0)
        .max_iter(50)
        .backend(Backend::Cpu)
        .fit_with_control(&x, &mut |p| {
            seen = p.iteration;
            if p.iteration == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled { iteration: 3 }), "{err}");
    assert_eq!(seen, 3);
}

#[test]
fn the_progress_callback_cancels_a_kmeans_fit() {
    let x = data(2000);
    let mut seen = 0;
    let err = KMeans::params(3)
        .tol(0.0)
        .max_iter(50)
        .backend(Backend::Cpu)
        .fit_with_control(&x, &mut |p| {
            seen = p.iteration;
            if p.iteration == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled { iteration: 2 }), "{err}");
    assert_eq!(seen, 2);
}

#[test]
fn flat_views_add_as_the_statistics_merge() {
    let x = data(3000);
    let km = KMeans::params(3).seed(1).backend(Backend::Cpu);
    let centers = km.initial_centers(&x).unwrap();
    let c: Vec<f64> = centers.iter().copied().collect();
    let part = |a: usize, b: usize| {
        let slice = x.slice(ndarray::s![a..b, ..]).to_owned();
        let d = Dataset::from_array(&slice).to_vec_f64().unwrap();
        let mut labels = vec![u32::MAX; b - a];
        let mut dists = vec![0.0; b - a];
        emgpu::testing::assign_reference(
            &Dataset::from_slice(&d, b - a, 3).unwrap(),
            &c,
            3,
            64,
            &mut labels,
            &mut dists,
        )
        .unwrap()
    };
    let (a, b) = (part(0, 1200), part(1200, 3000));
    let mut merged: KMeansStats = a.clone();
    merged.merge(&b);
    let mut flat = a.to_flat();
    for (f, v) in flat.iter_mut().zip(b.to_flat()) {
        *f += v;
    }
    let mut from_flat = a.clone();
    from_flat.read_flat(&flat);
    assert_eq!(from_flat.to_flat(), merged.to_flat());
    assert_eq!(merged.n_samples(), 3000.0);
    assert_eq!(merged.log_likelihood(), -merged.inertia);

    // Scaling scales every additive quantity, and the lower bound stays the same.
    let mut half = merged.clone();
    half.scale(0.5);
    assert_eq!(half.n_samples(), 1500.0);
    assert!((half.lower_bound() - merged.lower_bound()).abs() < 1e-15);
}

#[test]
fn datasets_carry_sequences_and_missing_values_and_plain_models_refuse_them() {
    let mut x = data(100);
    {
        let seq = Dataset::from_array(&x)
            .with_sequence_lengths(vec![30, 70])
            .unwrap();
        assert_eq!(seq.sequence_lengths(), Some(vec![30, 70]));
        assert!(
            Dataset::from_array(&x)
                .with_sequence_lengths(vec![30, 60])
                .unwrap_err()
                .to_string()
                .contains("add up to 90 rows, but the data has 100")
        );
        assert!(
            Dataset::from_array(&x)
                .with_sequence_lengths(vec![0, 100])
                .is_err()
        );
        let err = GaussianMixture::params(2)
            .backend(Backend::Cpu)
            .fit(&seq)
            .unwrap_err();
        assert!(err.to_string().contains("independent samples"), "{err}");
    }

    x[[5, 1]] = f64::NAN;
    x[[7, 0]] = f64::NAN;
    // Without the mark, NaN is bad data.
    assert!(matches!(
        Dataset::from_array(&x).validate(),
        Err(Error::NonFinite {
            row: 5,
            column: 1,
            ..
        })
    ));
    {
        let holes = Dataset::from_array(&x).with_missing_values();
        holes.validate().unwrap();
        let mut mask = vec![false; 3 * 4];
        holes.read_missing_mask(4, &mut mask).unwrap();
        let want = [
            false, false, false, false, true, false, false, false, false, true, false, false,
        ];
        assert_eq!(mask, want);
        let err = KMeans::params(2)
            .backend(Backend::Cpu)
            .fit(&holes)
            .unwrap_err();
        assert!(err.to_string().contains("missing values"), "{err}");
    }
    // Infinity is still bad data.
    x[[9, 2]] = f64::INFINITY;
    assert!(matches!(
        Dataset::from_array(&x).with_missing_values().validate(),
        Err(Error::NonFinite {
            row: 9,
            column: 2,
            ..
        })
    ));
}

#[test]
fn a_read_outside_the_rows_is_an_error_not_a_panic() {
    let x = data(10);
    let ds = Dataset::from_array(&x);
    let mut out = vec![0.0; 6];
    assert!(ds.read_f64(9, &mut out).is_err());
    assert!(ds.read_f64(0, &mut out[..5]).is_err());
    ds.read_f64(8, &mut out).unwrap();
}
