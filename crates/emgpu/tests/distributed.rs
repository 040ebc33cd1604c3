//! Distributed fits in one process: P threads, each with a block of the rows, summing through a
//! reducer built on a barrier (the same double-double sum in rank order as the MPI reducer of
//! the command line's `mpi` feature). Compared with the one-process fit of all the rows: the
//! issue's tolerances (1e-9 relative for the parameters, 1e-10 for the lower bound and its
//! trace, the same n_iter and converged).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, mpsc};
use std::time::Duration;

use emgpu::data::DataSource;
use emgpu::em::reduce::{Reducer, dd_add, split_rows};
use emgpu::{
    AsDataset, Backend, CovarianceType, Criterion, Dataset, Error, GaussianMixture, KMeans,
    KMeansInit, select_gmm, select_gmm_distributed,
};
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

/// Rows whose `fail_at`-th read that touches local row 0 fails (a disk error, a NaN found
/// late: anything one process meets alone in the middle of a collective sequence).
struct FailingRows {
    rows: Array2<f64>,
    fail_at: usize,
    reads: AtomicUsize,
}

impl FailingRows {
    fn check(&self, start: usize) -> emgpu::Result<()> {
        if start == 0 && self.reads.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(Error::Numerical("injected read failure".into()));
        }
        Ok(())
    }
}

impl DataSource for FailingRows {
    fn n_samples(&self) -> usize {
        self.rows.nrows()
    }
    fn n_features(&self) -> usize {
        self.rows.ncols()
    }
    fn read_f64(&self, start: usize, out: &mut [f64]) -> emgpu::Result<()> {
        self.check(start)?;
        let flat = self.rows.as_slice().unwrap();
        let d = self.rows.ncols();
        out.copy_from_slice(&flat[start * d..start * d + out.len()]);
        Ok(())
    }
    fn read_f32(&self, start: usize, out: &mut [f32]) -> emgpu::Result<()> {
        self.check(start)?;
        let flat = self.rows.as_slice().unwrap();
        let d = self.rows.ncols();
        for (o, v) in out.iter_mut().zip(&flat[start * d..]) {
            *o = *v as f32;
        }
        Ok(())
    }
}

/// Runs `f` on `p` threads as [`on_ranks`], rank `failing` reading its rows through
/// [`FailingRows`] with `fail_at`; panics if any rank has not returned within a minute (a rank
/// left in a collective call that another has left: a hang).
fn on_ranks_or_hang<T: Send + 'static>(
    x: &Array2<f64>,
    p: usize,
    (failing, fail_at): (usize, usize),
    f: impl Fn(&Dataset, &dyn Reducer) -> T + Send + Sync + 'static,
) -> Vec<T> {
    // Leaked: a rank that hangs keeps its reference for the rest of the test process.
    let hub: &'static Hub = Box::leak(Box::new(Hub {
        barrier: Barrier::new(p),
        slots: Mutex::new(vec![Vec::new(); p]),
        failures: Mutex::new(vec![None; p]),
    }));
    let f = std::sync::Arc::new(f);
    let (tx, rx) = mpsc::channel();
    let n = x.nrows();
    for rank in 0..p {
        let rows = split_rows(n, rank, p);
        let block = x.slice(s![rows.clone(), ..]).to_owned();
        let (f, tx) = (f.clone(), tx.clone());
        std::thread::spawn(move || {
            let source = FailingRows {
                rows: block,
                fail_at: if rank == failing { fail_at } else { 0 },
                reads: AtomicUsize::new(0),
            };
            let data = Dataset::from_source(source)
                .with_global_rows(rows.start, n)
                .unwrap();
            let reducer = ThreadReducer { hub, rank, size: p };
            let _ = tx.send((rank, f(&data, &reducer)));
        });
    }
    let mut out: Vec<Option<T>> = (0..p).map(|_| None).collect();
    for _ in 0..p {
        let (rank, v) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a rank did not return within 60 s: it hangs in a collective call");
        out[rank] = Some(v);
    }
    out.into_iter().map(Option::unwrap).collect()
}

#[test]
fn a_read_failing_on_one_rank_mid_fit_fails_every_rank_and_never_hangs() {
    let x = data(2_000);
    // Row 0 of rank 1 is read once by the checks of the rows, twice by the column variances
    // (the k-means tolerance), then twice per center by k-means++ (the candidates' potentials
    // and the new distances), then by the engine: failing its 1st to 14th read puts the failure
    // in each of these steps, most of them inside k-means++ (K = 6: 11 reads), between its
    // collective calls.
    for fail_at in 1..=14 {
        let km = KMeans::params(6).backend(Backend::Cpu).seed(2);
        let errors = on_ranks_or_hang(&x, 3, (1, fail_at), move |d, r| {
            km.fit_distributed(d, r, &mut |_| {})
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        assert!(
            errors.iter().all(|e| e
                .as_ref()
                .is_err_and(|m| m.contains("injected read failure"))),
            "k-means, failing read {fail_at}: {errors:?}"
        );
        let gm = GaussianMixture::params(6).backend(Backend::Cpu).seed(2);
        let errors = on_ranks_or_hang(&x, 3, (1, fail_at), move |d, r| {
            gm.fit_distributed(d, r, &mut |_| {})
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        assert!(
            errors.iter().all(|e| e
                .as_ref()
                .is_err_and(|m| m.contains("injected read failure"))),
            "gmm, failing read {fail_at}: {errors:?}"
        );
    }
}

#[test]
fn select_on_three_ranks_is_the_one_process_selection() {
    let x = data(9_000);
    let base = GaussianMixture::params(1)
        .backend(Backend::Cpu)
        .seed(4)
        .n_init(2);
    let covs = [CovarianceType::Full, CovarianceType::Spherical];
    let one = select_gmm(&x, 1..=5, &covs, Criterion::Bic, &base).unwrap();
    let sels = on_ranks(&x, 3, |d, r| {
        select_gmm_distributed(d, 1..=5, &covs, Criterion::Bic, &base, r, &mut |_| {}).unwrap()
    });
    for sel in &sels {
        assert_eq!(sel.best, one.best);
        assert_eq!(sel.rows.len(), 10);
        for (a, b) in one.rows.iter().zip(&sel.rows) {
            assert_eq!(
                (a.n_components, a.covariance_type),
                (b.n_components, b.covariance_type)
            );
            assert_eq!((a.n_iter, a.converged), (b.n_iter, b.converged));
            let r = max_rel(
                &[a.bic, a.aic, a.lower_bound],
                &[b.bic, b.aic, b.lower_bound],
            );
            assert!(
                r <= 1e-9,
                "K = {}, {}: criteria differ by {r:e}",
                a.n_components,
                a.covariance_type
            );
        }
        assert_eq!(sel.best_model().n_train_samples(), Some(9_000));
    }
}
