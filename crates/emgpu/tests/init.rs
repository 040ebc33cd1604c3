//! Initialization methods of the Gaussian mixture (scikit-learn's `init_params`), their
//! determinism, and restarts (`n_init`).

mod common;

use common::assert_close;
use emgpu::init::kmeans_plusplus;
use emgpu::{Backend, CovarianceType, Error, FittedGmm, GaussianMixture, GmmParams, Init, KMeans};
use ndarray::Array2;

/// Gaussian blobs: `sizes[c]` points around `centers[c]`, in order, with per-blob standard
/// deviations `sds[c]`, and their true labels.
fn blobs(
    centers: &[[f64; 2]],
    sizes: &[usize],
    sds: &[f64],
    seed: u64,
) -> (Array2<f64>, Vec<usize>) {
    emgpu::synth::blobs(centers, sizes, sds, seed).unwrap()
}

const ALL_INITS: [Init; 4] = [
    Init::Kmeans,
    Init::KMeansPlusPlus,
    Init::Random,
    Init::RandomFromData,
];

/// Whether `got` equals `want` up to a renaming of the labels.
fn same_partition(got: &[usize], want: &[usize]) -> bool {
    let mut map = std::collections::HashMap::new();
    let mut back = std::collections::HashMap::new();
    got.iter()
        .zip(want)
        .all(|(g, w)| *map.entry(g).or_insert(w) == w && *back.entry(w).or_insert(g) == g)
}

#[test]
fn init_names_parse_and_unknown_names_are_refused() {
    for (name, init) in [
        ("kmeans", Init::Kmeans),
        ("k-means++", Init::KMeansPlusPlus),
        ("random", Init::Random),
        ("random_from_data", Init::RandomFromData),
    ] {
        assert_eq!(name.parse::<Init>().unwrap(), init);
        assert_eq!(init.name(), name);
    }
    let err = "kmeans++".parse::<Init>().unwrap_err();
    assert!(matches!(err, Error::InvalidParameter(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("kmeans++") && msg.contains("random_from_data"),
        "{msg}"
    );
    assert_eq!(
        GaussianMixture::params(2).init_method(),
        &Init::Kmeans,
        "scikit-learn's default"
    );
}

#[test]
fn every_init_method_gives_a_valid_model() {
    let (x, _) = blobs(
        &[[0.0, 0.0], [6.0, 1.0], [2.0, 7.0]],
        &[80, 60, 40],
        &[1.0, 0.7, 1.2],
        1,
    );
    for init in ALL_INITS {
        for cov in CovarianceType::ALL {
            let m = GaussianMixture::params(3)
                .covariance(cov)
                .init(init.clone())
                .seed(5)
                .backend(Backend::Cpu)
                .fit(&x)
                .unwrap_or_else(|e| panic!("{} {cov}: {e}", init.name()));
            let what = format!("{} {cov}", init.name());
            assert!((m.weights().sum() - 1.0).abs() < 1e-12, "{what}");
            assert!(
                m.means()
                    .iter()
                    .chain(m.covariances().iter())
                    .all(|v| v.is_finite()),
                "{what}"
            );
            assert!(m.lower_bound().is_finite() && m.converged(), "{what}");
            assert_eq!(m.init_lower_bounds().len(), 1, "{what}");
        }
    }
}

#[test]
fn kmeans_init_recovers_well_separated_clusters() {
    let sizes = [90, 50, 30, 20];
    let (x, truth) = blobs(
        &[[0.0, 0.0], [12.0, 0.0], [0.0, 12.0], [12.0, 12.0]],
        &sizes,
        &[1.0, 0.8, 1.2, 0.6],
        2,
    );
    for seed in 0..5 {
        let m = GaussianMixture::params(4)
            .init(Init::Kmeans)
            .seed(seed)
            .backend(Backend::Cpu)
            .fit(&x)
            .unwrap();
        let labels = m.predict(&x).unwrap().to_vec();
        assert!(
            same_partition(&labels, &truth),
            "seed {seed}: clusters not recovered"
        );
        // EM only polishes what k-means found: few iterations.
        assert!(m.n_iter() <= 10, "seed {seed}: {} iterations", m.n_iter());
    }
}

/// Parameters from one-hot responsibilities (`groups[c]` = rows of component c), written out as
/// scikit-learn's `_initialize` computes them: nk = |group| + 10·eps, weights nk / N, means
/// Σx / nk, full covariances Σ(x−μ)(x−μ)ᵀ / nk + reg·I.
fn params_from_groups(x: &Array2<f64>, groups: &[Vec<usize>], reg: f64) -> GmmParams {
    let (n, d, k) = (x.nrows(), x.ncols(), groups.len());
    let eps10 = 10.0 * f64::EPSILON;
    let mut weights = vec![0.0; k];
    let mut means = vec![0.0; k * d];
    let mut covs = vec![0.0; k * d * d];
    for (c, g) in groups.iter().enumerate() {
        let nk = g.len() as f64 + eps10;
        weights[c] = nk / n as f64;
        for &i in g {
            for j in 0..d {
                means[c * d + j] += x[[i, j]] / nk;
            }
        }
        for &i in g {
            for a in 0..d {
                for b in 0..d {
                    covs[c * d * d + a * d + b] +=
                        (x[[i, a]] - means[c * d + a]) * (x[[i, b]] - means[c * d + b]) / nk;
                }
            }
        }
        for a in 0..d {
            covs[c * d * d + a * d + a] += reg;
        }
    }
    // Not GmmParams::new: k-means++ starts have weights 1/N that do not sum to 1 (as sklearn).
    emgpu::testing::gmm_params_unchecked(CovarianceType::Full, weights, means, covs, d)
}

#[test]
fn initial_parameters_are_scikit_learns() {
    // The first lower bound of a fit is the mean log-likelihood under the initial parameters:
    // compare it with the parameters computed by hand from the same k-means labels / k-means++
    // seeds (drawn from the same seeded stream as the first restart).
    let (x, _) = blobs(
        &[[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]],
        &[70, 50, 30],
        &[1.0, 1.0, 1.0],
        3,
    );
    let (k, reg, seed) = (3, 1e-6, 17);
    let first_lb = |init: Init| {
        GaussianMixture::params(k)
            .init(init)
            .reg_covar(reg)
            .seed(seed)
            .max_iter(1)
            .tol(0.0)
            .backend(Backend::Cpu)
            .fit(&x)
            .unwrap()
            .lower_bound_trace()[0]
    };
    let score = |p: GmmParams| FittedGmm::from_params(p).unwrap().score(&x).unwrap();

    // kmeans: KMeans(n_clusters=K, n_init=1) with the fit's random stream, then one-hot labels.
    let km = KMeans::params(k)
        .n_init(1)
        .seed(seed)
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap();
    let labels = km.labels().unwrap();
    let groups: Vec<Vec<usize>> = (0..k)
        .map(|c| (0..x.nrows()).filter(|&i| labels[i] == c).collect())
        .collect();
    let want = score(params_from_groups(&x, &groups, reg));
    assert_close(
        "kmeans init",
        &[first_lb(Init::Kmeans)],
        &[want],
        1e-10,
        0.0,
    );

    // k-means++: one-hot at the seeds.
    let seeds = kmeans_plusplus(&x, k, seed).unwrap();
    let groups: Vec<Vec<usize>> = seeds.indices.iter().map(|&i| vec![i]).collect();
    let want = score(params_from_groups(&x, &groups, reg));
    assert_close(
        "k-means++ init",
        &[first_lb(Init::KMeansPlusPlus)],
        &[want],
        1e-10,
        0.0,
    );
}

#[test]
fn random_init_has_normalized_random_responsibilities() {
    // With uniform random responsibilities every component starts near the data mean with about
    // the data's covariance and weight near 1/K; one M-step later weights still sum to 1.
    let (x, _) = blobs(&[[0.0, 0.0], [8.0, 0.0]], &[500, 500], &[1.0, 1.0], 4);
    let m = GaussianMixture::params(3)
        .init(Init::Random)
        .max_iter(1)
        .tol(0.0)
        .seed(8)
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap();
    let w = m.weights();
    assert!((w.sum() - 1.0).abs() < 1e-12);
    for &v in w.iter() {
        assert!((v - 1.0 / 3.0).abs() < 0.05, "weights {w}");
    }
    for c in 0..3 {
        assert!((m.means()[[c, 0]] - 4.0).abs() < 0.8, "means {}", m.means());
    }
}

#[test]
fn every_init_is_deterministic() {
    // One round blob: no clustering is much better than another, so seeds lead to different
    // initializations (on well-separated data every k-means seed finds the same one).
    let (x, _) = blobs(&[[0.0, 0.0]], &[180], &[1.0], 5);
    for init in ALL_INITS {
        let gm = GaussianMixture::params(3)
            .init(init.clone())
            .n_init(2)
            .seed(21)
            .backend(Backend::Cpu);
        let a = gm.fit(&x).unwrap();
        let b = gm.clone().fit(&x).unwrap();
        assert_eq!(a.params(), b.params(), "{}", init.name());
        assert_eq!(
            a.init_lower_bounds(),
            b.init_lower_bounds(),
            "{}",
            init.name()
        );
        let others: Vec<Vec<f64>> = (0..6)
            .map(|s| {
                GaussianMixture::params(3)
                    .init(init.clone())
                    .max_iter(1)
                    .tol(0.0)
                    .seed(s)
                    .backend(Backend::Cpu)
                    .fit(&x)
                    .unwrap()
                    .lower_bound_trace()
                    .to_vec()
            })
            .collect();
        assert!(
            others.iter().any(|o| *o != others[0]),
            "{}: the seed does not change the initialization",
            init.name()
        );
    }
}

#[test]
fn restarts_escape_a_bad_local_optimum() {
    // Four blobs on a square: a start with two means in one blob ends with one component
    // covering two blobs, a clearly worse local optimum.
    let (x, _) = blobs(
        &[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]],
        &[100, 100, 100, 100],
        &[1.0, 1.0, 1.0, 1.0],
        6,
    );
    for seed in 0..4 {
        let gm = GaussianMixture::params(4)
            .init(Init::RandomFromData)
            .seed(seed)
            .backend(Backend::Cpu);
        let single = gm.clone().fit(&x).unwrap();
        let multi = gm.clone().n_init(10).fit(&x).unwrap();
        let runs = multi.init_lower_bounds();
        println!("seed {seed}: restarts {runs:?} → {}", multi.lower_bound());
        assert_eq!(runs.len(), 10);
        // The first restart is the single start of the same seed.
        assert_eq!(runs[0], single.lower_bound());
        let worst = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let best = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(multi.lower_bound(), best, "the best restart is kept");
        assert!(
            best > worst + 0.1,
            "seed {seed}: no restart fell into the bad optimum: {runs:?}"
        );
        assert!(multi.lower_bound() >= single.lower_bound());
        // The kept model is the good optimum: one component per blob.
        let w = multi.weights();
        assert!(
            w.iter().all(|&v| (v - 0.25).abs() < 0.02),
            "seed {seed}: weights {w}"
        );
    }
}

#[test]
fn bad_gmm_settings_are_clear_errors() {
    let (x, _) = blobs(&[[0.0, 0.0]], &[10], &[1.0], 7);
    let err = GaussianMixture::params(2)
        .n_init(0)
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap_err();
    assert!(
        err.to_string().contains("n_init must be at least 1"),
        "{err}"
    );
    let err = GaussianMixture::params(11)
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap_err();
    assert!(matches!(err, Error::TooManyComponents { .. }), "{err}");
}

/// A CPU GMM engine that also offers a k-means engine through the `kmeans_engine` hook (as a GPU
/// engine sharing its uploaded data will), counting the calls each gets.
struct SharingEngine<'a> {
    gmm: emgpu::models::gmm::cpu::CpuEngine<'a>,
    kmeans: Counting<emgpu::models::kmeans::cpu::CpuKMeansEngine<'a>>,
    e_steps: usize,
}

struct Counting<E> {
    inner: E,
    assignments: usize,
}

impl<E: emgpu::models::kmeans::KMeansEngine> emgpu::models::kmeans::KMeansEngine for Counting<E> {
    fn assign_and_sum(
        &mut self,
        centers: &[f64],
        n_clusters: usize,
    ) -> emgpu::Result<emgpu::models::kmeans::KMeansStats> {
        self.assignments += 1;
        self.inner.assign_and_sum(centers, n_clusters)
    }
    fn labels(&mut self, out: &mut [u32]) -> emgpu::Result<()> {
        self.inner.labels(out)
    }
    fn farthest(&mut self, n: usize) -> emgpu::Result<Vec<emgpu::models::kmeans::FarPoint>> {
        self.inner.farthest(n)
    }
    fn report(&self) -> emgpu::BackendReport {
        self.inner.report()
    }
}

impl emgpu::em::EStep<emgpu::models::gmm::GmmModel> for SharingEngine<'_> {
    fn e_step(
        &mut self,
        p: &emgpu::models::gmm::Prepared,
    ) -> emgpu::Result<emgpu::models::gmm::GmmStats> {
        self.e_steps += 1;
        self.gmm.e_step(p)
    }
    fn report(&self) -> emgpu::BackendReport {
        emgpu::em::EStep::report(&self.gmm)
    }
}

impl emgpu::models::gmm::GmmEngine for SharingEngine<'_> {
    fn log_likelihoods(
        &mut self,
        p: &emgpu::models::gmm::Prepared,
        out: &mut [f64],
    ) -> emgpu::Result<()> {
        self.gmm.log_likelihoods(p, out)
    }
    fn responsibilities(
        &mut self,
        p: &emgpu::models::gmm::Prepared,
        out: &mut [f64],
    ) -> emgpu::Result<()> {
        self.gmm.responsibilities(p, out)
    }
    fn kmeans_engine(&mut self) -> Option<&mut dyn emgpu::models::kmeans::KMeansEngine> {
        Some(&mut self.kmeans)
    }
}

#[test]
fn restarts_share_one_engine_and_its_kmeans_engine() {
    use emgpu::AsDataset;
    use emgpu::device::EngineOptions;
    let (x, _) = blobs(
        &[[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]],
        &[50, 40, 30],
        &[1.0, 1.0, 1.0],
        9,
    );
    let data = x.as_dataset();
    let mut engine = SharingEngine {
        gmm: emgpu::models::gmm::cpu::CpuEngine::new(
            &data,
            EngineOptions::default(),
            String::new(),
        ),
        kmeans: Counting {
            inner: emgpu::models::kmeans::cpu::CpuKMeansEngine::new(
                &data,
                EngineOptions::default(),
                String::new(),
            ),
            assignments: 0,
        },
        e_steps: 0,
    };
    let gm = GaussianMixture::params(3)
        .n_init(4)
        .seed(2)
        .backend(Backend::Cpu);
    let mut iterations = 0;
    let shared = gm
        .fit_engine(&data, &mut engine, &mut |_| iterations += 1)
        .unwrap();
    let plain = gm.fit(&x).unwrap();
    // The k-means of all four restarts ran on the engine's own k-means engine (at least two
    // assignments per run: one iteration, and the check of the final labels or a second one).
    assert!(
        engine.kmeans.assignments >= 4 * 2,
        "{}",
        engine.kmeans.assignments
    );
    // Every E-step of every restart ran on the one engine.
    assert_eq!(engine.e_steps, iterations);
    assert!(iterations >= 4);
    // Same data, same seed, same arithmetic: the same model as a fit that builds its engines.
    assert_eq!(shared.params(), plain.params());
    assert_eq!(shared.init_lower_bounds(), plain.init_lower_bounds());
    assert_eq!(shared.init_lower_bounds().len(), 4);
}

#[test]
fn kmeans_init_gives_scikit_learns_model_where_kmeans_is_unambiguous() {
    // scripts/make_kmeans_fixtures.py: GaussianMixture(init_params="kmeans") on well-separated
    // blobs, where every k-means seeding finds the same partition (checked there over several
    // random_state values), so the fit does not depend on the random numbers. Components are
    // matched by their means (the order of k-means clusters depends on the seeding).
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/sklearn_kmeans.json")).unwrap();
    let cases = doc["gmm_kmeans_init_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let data = &doc["datasets"][case["data"].as_str().unwrap()];
        let n = data.as_array().unwrap().len();
        let x = Array2::from_shape_vec((n, 3), common::flatten(data)).unwrap();
        let k = case["n_components"].as_u64().unwrap() as usize;
        let cov: CovarianceType = case["covariance_type"].as_str().unwrap().parse().unwrap();
        let e = &case["expected"];
        let want_means = common::flatten(&e["means"]);
        for seed in 0..3 {
            let m = GaussianMixture::params(k)
                .covariance(cov)
                .seed(seed)
                .backend(Backend::Cpu)
                .fit(&x)
                .unwrap();
            let what = |s: &str| format!("{name} seed {seed}: {s}");
            assert_eq!(
                m.n_iter() as u64,
                e["n_iter"].as_u64().unwrap(),
                "{}",
                what("n_iter")
            );
            assert_close(
                &what("lower_bound"),
                &[m.lower_bound()],
                &[e["lower_bound"].as_f64().unwrap()],
                1e-6,
                0.0,
            );
            // perm[c] = our component matching scikit-learn's component c.
            let means = m.means();
            let perm: Vec<usize> = (0..k)
                .map(|c| {
                    let w = &want_means[c * 3..(c + 1) * 3];
                    (0..k)
                        .min_by(|&a, &b| {
                            let da: f64 = (0..3).map(|j| (means[[a, j]] - w[j]).powi(2)).sum();
                            let db: f64 = (0..3).map(|j| (means[[b, j]] - w[j]).powi(2)).sum();
                            da.total_cmp(&db)
                        })
                        .unwrap()
                })
                .collect();
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..k).collect::<Vec<_>>(), "{}", what("matching"));
            let per = cov.cov_shape(k, 3).iter().skip(1).product::<usize>();
            let (w, mu, cv) = (m.weights(), m.means(), m.covariances());
            let cv = cv.as_slice().unwrap();
            let got_w: Vec<f64> = perm.iter().map(|&p| w[p]).collect();
            let got_mu: Vec<f64> = perm.iter().flat_map(|&p| mu.row(p).to_vec()).collect();
            let got_cv: Vec<f64> = if cov == CovarianceType::Tied {
                cv.to_vec()
            } else {
                perm.iter()
                    .flat_map(|&p| cv[p * per..(p + 1) * per].to_vec())
                    .collect()
            };
            assert_close(
                &what("weights"),
                &got_w,
                &common::flatten(&e["weights"]),
                1e-6,
                1e-9,
            );
            assert_close(&what("means"), &got_mu, &want_means, 1e-6, 1e-9);
            assert_close(
                &what("covariances"),
                &got_cv,
                &common::flatten(&e["covariances"]),
                1e-6,
                1e-9,
            );
        }
    }
}
