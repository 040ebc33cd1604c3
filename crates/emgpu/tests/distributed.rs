//! Distributed fits in one process: P threads, each with a block of the rows, summing through a
//! reducer built on a barrier (the same double-double sum in rank order as the MPI reducer of
//! the command line's `mpi` feature). Compared with the one-process fit of all the rows: the
//! issue's tolerances (1e-9 relative for the parameters, 1e-10 for the lower bound and its
//! trace, the same n_iter and converged).

use std::sync::{Barrier, Mutex};

use emgpu::em::reduce::{Reducer, dd_add, split_rows};
use emgpu::{AsDataset, Backend, CovarianceType, Error, GaussianMixture, KMeans, KMeansInit};
use ndarray::{Array2, s};

/// The shared state of P threads' reducers.
struct Hub {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f64>>>,
    failures: Mutex<Vec<Option<String>>>,
}

struct ThreadReducer<'h> {
    hub: &'h Hub,
    rank: usize,
    size: usize,
}

impl Reducer for ThreadReducer<'_> {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn sum(&self, values: &mut [f64]) -> emgpu::Result<()> {
        self.hub.slots.lock().unwrap()[self.rank] = values.to_vec();
        self.hub.barrier.wait();
        {
            let slots = self.hub.slots.lock().unwrap();
            for (i, v) in values.iter_mut().enumerate() {
                let pair = slots
                    .iter()
                    .fold((0.0, 0.0), |acc, s| dd_add(acc, (s[i], 0.0)));
                *v = pair.0 + pair.1;
            }
        }
        self.hub.barrier.wait();
        Ok(())
    }
    fn agree(&self, local: emgpu::Result<()>) -> emgpu::Result<()> {
        self.hub.failures.lock().unwrap()[self.rank] = local.err().map(|e| e.to_string());
        self.hub.barrier.wait();
        let first = self
            .hub
            .failures
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .next()
            .cloned();
        self.hub.barrier.wait();
        match first {
            None => Ok(()),
            Some(m) => Err(Error::Remote(m)),
        }
    }
}

/// Runs `f(rows of rank r, reducer)` on `p` threads; every rank's result.
fn on_ranks<T: Send>(
    x: &Array2<f64>,
    p: usize,
    f: impl Fn(&emgpu::Dataset, &dyn Reducer) -> T + Sync,
) -> Vec<T> {
    let hub = Hub {
        barrier: Barrier::new(p),
        slots: Mutex::new(vec![Vec::new(); p]),
        failures: Mutex::new(vec![None; p]),
    };
    let n = x.nrows();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..p)
            .map(|rank| {
                let (hub, f) = (&hub, &f);
                scope.spawn(move || {
                    let rows = split_rows(n, rank, p);
                    let view = x.slice(s![rows.clone(), ..]);
                    let data = view.as_dataset().with_global_rows(rows.start, n).unwrap();
                    let reducer = ThreadReducer { hub, rank, size: p };
                    f(&data, &reducer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Four correlated blobs, rows interleaved.
fn data(n: usize) -> Array2<f64> {
    let centers = [
        [0.0, 0.0, 0.0],
        [6.0, 1.0, -2.0],
        [-5.0, 4.0, 1.0],
        [1.0, -6.0, 5.0],
    ];
    let (x, _) = emgpu::synth::blobs(&centers, &[n / 4; 4], &[1.0, 0.7, 1.3, 0.9], 3).unwrap();
    let m = x.nrows();
    Array2::from_shape_fn((m, 3), |(i, j)| {
        let r = (i * 7919) % m;
        x[[r, j]] + 0.4 * x[[r, (j + 1) % 3]]
    })
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() / x.abs() })
        .fold(0.0, f64::max)
}

#[test]
fn gmm_on_three_ranks_is_the_one_process_fit() {
    let x = data(40_000);
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let gm = GaussianMixture::params(4)
            .covariance(cov)
            .backend(Backend::Cpu)
            .n_init(2)
            .seed(3);
        let one = gm.fit(&x).unwrap();
        for p in [2, 3] {
            let fits = on_ranks(&x, p, |d, r| gm.fit_distributed(d, r, &mut |_| {}).unwrap());
            for f in &fits {
                // Restarts that reach the same optimum tie in their lower bound up to rounding,
                // and which one is kept may differ: compare components in the order of their
                // first mean coordinate.
                let sorted = |g: &emgpu::FittedGmm, a: ndarray::ArrayD<f64>| {
                    let means = g.means();
                    let mut order: Vec<usize> = (0..means.nrows()).collect();
                    order.sort_by(|&i, &j| means[[i, 0]].total_cmp(&means[[j, 0]]));
                    let per = a.len() / means.nrows();
                    let flat: Vec<f64> = a.iter().copied().collect();
                    order
                        .iter()
                        .flat_map(|&k| flat[k * per..(k + 1) * per].to_vec())
                        .collect::<Vec<_>>()
                };
                for (what, a, b) in [
                    (
                        "weights",
                        sorted(&one, one.weights().into_dyn()),
                        sorted(f, f.weights().into_dyn()),
                    ),
                    (
                        "means",
                        sorted(&one, one.means().into_dyn()),
                        sorted(f, f.means().into_dyn()),
                    ),
                    (
                        "covariances",
                        sorted(&one, one.covariances()),
                        sorted(f, f.covariances()),
                    ),
                ] {
                    let r = max_rel(&a, &b);
                    assert!(r <= 1e-9, "{cov} p {p}: {what} differ by {r:e}");
                }
                assert!(max_rel(one.lower_bound_trace(), f.lower_bound_trace()) <= 1e-10);
                assert_eq!(one.n_iter(), f.n_iter());
                assert_eq!(one.converged(), f.converged());
                assert_eq!(f.n_train_samples(), Some(40_000));
            }
            // Every rank has the same model, bit for bit.
            assert!(
                fits.windows(2)
                    .all(|w| w[0].lower_bound_trace() == w[1].lower_bound_trace())
            );
        }
    }
}

#[test]
fn kmeans_on_three_ranks_is_the_one_process_fit() {
    let x = data(30_000);
    let centers = x.slice(s![0..4, ..]).to_owned();
    for km in [
        KMeans::params(4)
            .backend(Backend::Cpu)
            .init(KMeansInit::Centers(centers)),
        KMeans::params(4).backend(Backend::Cpu).seed(9).n_init(2),
    ] {
        let one = km.fit(&x).unwrap();
        let fits = on_ranks(&x, 3, |d, r| km.fit_distributed(d, r, &mut |_| {}).unwrap());
        for f in &fits {
            let (a, b) = (one.cluster_centers(), f.cluster_centers());
            let r = max_rel(a.as_slice().unwrap(), b.as_slice().unwrap());
            assert!(r <= 1e-9, "centers {r:e}");
            assert!(max_rel(&[one.inertia()], &[f.inertia()]) <= 1e-9);
            assert_eq!(one.n_iter(), f.n_iter());
        }
    }
}

#[test]
fn a_nan_on_one_rank_fails_every_rank_with_its_global_row() {
    let mut x = data(6_000);
    x[[5_000, 1]] = f64::NAN;
    let gm = GaussianMixture::params(2).backend(Backend::Cpu);
    let errors = on_ranks(&x, 3, |d, r| {
        gm.fit_distributed(d, r, &mut |_| {})
            .unwrap_err()
            .to_string()
    });
    let one = gm.fit(&x).unwrap_err().to_string();
    assert!(one.contains("row 5000"), "{one}");
    // Rank 2 (rows 4000..6000) failed; every rank reports its message.
    assert!(errors.iter().all(|e| *e == one), "{errors:?} vs {one}");
}
