//! k-means on the CPU against scikit-learn (same data, same initial centers:
//! `KMeans(init=centers, n_init=1, algorithm="lloyd")`), empty-cluster relocation, k-means++
//! seeding, restarts, the model file and bad input.
//!
//! The scikit-learn numbers come from `scripts/make_kmeans_fixtures.py` (scikit-learn 1.9.1),
//! committed in `tests/fixtures/sklearn_kmeans.json`.

mod common;

use common::{assert_close, flatten};
use emgpu::init::kmeans_plusplus;
use emgpu::{Backend, Error, FittedKMeans, KMeans, KMeansInit};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-9;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/sklearn_kmeans.json")).unwrap()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows = v.as_array().unwrap();
    let d = rows[0].as_array().unwrap().len();
    Array2::from_shape_vec((rows.len(), d), flatten(v)).unwrap()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap() as usize)
        .collect()
}

fn fit_case(doc: &Value, case: &Value, chunk_rows: Option<usize>) -> (FittedKMeans, Array2<f64>) {
    let x = matrix(&doc["datasets"][case["data"].as_str().unwrap()]);
    let init = matrix(&case["init"]);
    let mut km = KMeans::params(init.nrows())
        .init(KMeansInit::Centers(init))
        .tol(case["tol"].as_f64().unwrap())
        .max_iter(case["max_iter"].as_u64().unwrap() as usize)
        .backend(Backend::Cpu);
    if let Some(rows) = chunk_rows {
        km = km.chunk_rows(rows);
    }
    (km.fit(&x).unwrap(), x)
}

#[test]
fn cpu_matches_scikit_learn_on_iris_and_wine() {
    let doc = fixture();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let e = &case["expected"];
        // The default chunking (one chunk) and a chunking that splits the data unevenly.
        for chunk_rows in [None, Some(37)] {
            let (m, x) = fit_case(&doc, case, chunk_rows);
            let what = |s: &str| format!("{name} (chunk_rows {chunk_rows:?}): {s}");
            assert_eq!(
                m.n_iter() as u64,
                e["n_iter"].as_u64().unwrap(),
                "{}",
                what("n_iter")
            );
            assert_eq!(
                m.labels().unwrap(),
                usizes(&e["labels"]).as_slice(),
                "{}",
                what("labels")
            );
            assert_close(
                &what("inertia"),
                &[m.inertia()],
                &[e["inertia"].as_f64().unwrap()],
                RTOL,
                0.0,
            );
            assert_close(
                &what("cluster_centers"),
                m.cluster_centers().as_slice().unwrap(),
                &flatten(&e["cluster_centers"]),
                RTOL,
                ATOL,
            );
            assert_close(
                &what("score"),
                &[m.score(&x).unwrap()],
                &[e["score"].as_f64().unwrap()],
                RTOL,
                0.0,
            );
            assert_eq!(
                m.predict(&x).unwrap().to_vec(),
                usizes(&e["predict"]),
                "{}",
                what("predict")
            );
            assert!(m.converged() || m.n_iter() == case["max_iter"].as_u64().unwrap() as usize);
        }
    }
}

#[test]
fn empty_clusters_are_relocated_as_scikit_learn_does() {
    let doc = fixture();
    let cases: Vec<&Value> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().contains("empty"))
        .collect();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (m, x) = fit_case(&doc, case, None);
        // The far center's cluster is empty at the first assignment: check it was.
        let init = matrix(&case["init"]);
        let first = FittedKMeans::from_centers(&init)
            .unwrap()
            .predict(&x)
            .unwrap();
        let used: std::collections::BTreeSet<usize> = first.iter().copied().collect();
        assert!(used.len() < init.nrows(), "{name}: no cluster starts empty");
        // After one update (max_iter = 1) the relocated centers already match scikit-learn's.
        let e = &case["expected"];
        assert_close(
            &format!("{name}: centers"),
            m.cluster_centers().as_slice().unwrap(),
            &flatten(&e["cluster_centers"]),
            RTOL,
            ATOL,
        );
        assert_eq!(
            m.labels().unwrap(),
            usizes(&e["labels"]).as_slice(),
            "{name}"
        );
        assert!(m.cluster_centers().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn clusters_that_cannot_be_relocated_stay_finite() {
    // Three distinct points repeated: five clusters cannot all hold a point at a distance > 0, so
    // nothing is relocated and the empty clusters sit on the largest cluster's center.
    let x = Array2::from_shape_fn((30, 2), |(i, j)| ((i % 3) * 4 + j) as f64);
    let centers = Array2::from_shape_vec(
        (5, 2),
        vec![0.0, 1.0, 4.0, 5.0, 8.0, 9.0, 1e3, 1e3, -1e3, 0.0],
    )
    .unwrap();
    let m = KMeans::params(5)
        .init(KMeansInit::Centers(centers))
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap();
    assert!(m.cluster_centers().iter().all(|v| v.is_finite()));
    assert_eq!(m.inertia(), 0.0);
    let c = m.cluster_centers();
    for j in 3..5 {
        assert_eq!(
            c.row(j),
            c.row(0),
            "empty cluster {j} sits on the largest (first) cluster"
        );
    }

    // A far center among well-spread data: relocated to the farthest point, every center finite
    // and every cluster non-empty at the end.
    let x = blobs(
        &[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]],
        &[50, 50, 50],
        1.0,
        3,
    );
    let centers = Array2::from_shape_vec((3, 2), vec![0.0, 0.0, 1e6, 1e6, -1e6, 1e6]).unwrap();
    let m = KMeans::params(3)
        .init(KMeansInit::Centers(centers))
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap();
    assert!(m.cluster_centers().iter().all(|v| v.is_finite()));
    let labels = m.labels().unwrap();
    for c in 0..3 {
        assert!(labels.contains(&c), "cluster {c} ended empty");
    }
}

/// Gaussian blobs: `sizes[c]` points around `centers[c]`, in order, with standard deviation `sd`.
fn blobs<const D: usize>(centers: &[[f64; D]], sizes: &[usize], sd: f64, seed: u64) -> Array2<f64> {
    emgpu::synth::blobs(centers, sizes, &vec![sd; centers.len()], seed)
        .unwrap()
        .0
}

fn truth(sizes: &[usize]) -> Vec<usize> {
    sizes
        .iter()
        .enumerate()
        .flat_map(|(c, &s)| std::iter::repeat_n(c, s))
        .collect()
}

#[test]
fn kmeans_plusplus_seeds_every_well_separated_cluster() {
    let sizes = [120, 60, 30, 15, 8];
    let x = blobs(
        &[
            [0.0, 0.0],
            [20.0, 0.0],
            [0.0, 20.0],
            [20.0, 20.0],
            [-20.0, 10.0],
        ],
        &sizes,
        1.0,
        7,
    );
    let t = truth(&sizes);
    let mut all_covered = 0;
    for seed in 0..100 {
        let s = kmeans_plusplus(&x, 5, seed).unwrap();
        assert_eq!(s.indices.len(), 5);
        for (c, &i) in s.indices.iter().enumerate() {
            assert_eq!(
                s.centers.row(c),
                x.row(i),
                "seed {seed}: center {c} is row {i}"
            );
        }
        let hit: std::collections::BTreeSet<usize> = s.indices.iter().map(|&i| t[i]).collect();
        all_covered += usize::from(hit.len() == 5);
    }
    println!("k-means++: every cluster seeded in {all_covered} of 100 seeds");
    assert!(
        all_covered >= 95,
        "only {all_covered} of 100 seeds cover every cluster"
    );

    // Plain random seeding, for contrast, covers them far less often (the smallest clusters hold
    // 23 of 233 points).
    let mut random_covered = 0;
    for seed in 0..100 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let picks = rand::seq::index::sample(&mut rng, x.nrows(), 5).into_vec();
        let hit: std::collections::BTreeSet<usize> = picks.iter().map(|&i| t[i]).collect();
        random_covered += usize::from(hit.len() == 5);
    }
    println!("random rows: every cluster seeded in {random_covered} of 100 seeds");
    assert!(random_covered < all_covered);
}

#[test]
fn seeding_and_fits_are_deterministic() {
    let x = blobs(
        &[[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0]],
        &[70, 50, 40],
        1.5,
        11,
    );
    let a = kmeans_plusplus(&x, 4, 42).unwrap();
    let b = kmeans_plusplus(&x, 4, 42).unwrap();
    assert_eq!(a, b);
    let others: Vec<Vec<usize>> = (0..10)
        .map(|s| kmeans_plusplus(&x, 4, s).unwrap().indices)
        .collect();
    assert!(
        others.iter().any(|o| *o != others[0]),
        "seeds do not change the seeding"
    );

    for init in [KMeansInit::KMeansPlusPlus, KMeansInit::Random] {
        let km = KMeans::params(4).init(init).seed(9).backend(Backend::Cpu);
        let m1 = km.fit(&x).unwrap();
        let m2 = km.clone().fit(&x).unwrap();
        // Chunking changes only the order of the additions.
        let m3 = km.clone().chunk_rows(13).fit(&x).unwrap();
        assert_eq!(m1.cluster_centers(), m2.cluster_centers());
        assert_eq!(m1.inertia(), m2.inertia());
        assert_eq!(m1.labels(), m2.labels());
        assert_eq!(m1.labels(), m3.labels());
        assert_close(
            "chunked centers",
            m3.cluster_centers().as_slice().unwrap(),
            m1.cluster_centers().as_slice().unwrap(),
            1e-12,
            1e-12,
        );
    }
}

#[test]
fn restarts_keep_the_lowest_inertia() {
    let sizes = [60, 60, 60, 60];
    let x = blobs(
        &[[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]],
        &sizes,
        1.0,
        5,
    );
    // Default n_init for random init is 10 (scikit-learn's "auto").
    let mut seen = Vec::new();
    let m = KMeans::params(4)
        .init(KMeansInit::Random)
        .seed(3)
        .backend(Backend::Cpu)
        .fit_with_progress(&x, &mut |p| seen.push(*p))
        .unwrap();
    let runs = m.init_inertias();
    assert_eq!(runs.len(), 10);
    // Progress: iterations 1, 2, ... of each run in turn; Lloyd never raises the inertia.
    for (init, &run) in runs.iter().enumerate() {
        let its: Vec<_> = seen.iter().filter(|p| p.init == init).collect();
        assert!(!its.is_empty());
        for (i, p) in its.iter().enumerate() {
            assert_eq!(p.iteration, i + 1);
            assert!(p.center_shift >= 0.0);
            if i > 0 {
                assert!(p.inertia <= its[i - 1].inertia * (1.0 + 1e-12));
            }
        }
        assert!(run <= its.last().unwrap().inertia * (1.0 + 1e-12));
    }
    let lowest = runs.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(m.inertia(), lowest);
    // The first run alone is the same as a fit with n_init = 1 and the same seed.
    let one = KMeans::params(4)
        .init(KMeansInit::Random)
        .n_init(1)
        .seed(3)
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap();
    assert_eq!(one.inertia(), runs[0]);
    // The best run recovers the four blobs.
    let labels = m.labels().unwrap();
    let t = truth(&sizes);
    for c in 0..4 {
        let mine: std::collections::BTreeSet<usize> = (0..x.nrows())
            .filter(|&i| t[i] == c)
            .map(|i| labels[i])
            .collect();
        assert_eq!(mine.len(), 1, "blob {c} is split: {mine:?}");
    }
}

#[test]
fn model_json_round_trips() {
    let x = blobs(&[[0.0, 0.0], [5.0, 5.0]], &[30, 30], 1.0, 1);
    let m = KMeans::params(2)
        .seed(4)
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap();
    let text = m.to_json();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["format"], "emgpu-model");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["model"], "kmeans");
    assert_eq!(doc["n_clusters"], 2);
    assert_eq!(doc["n_features"], 2);
    let back = FittedKMeans::from_json(&text).unwrap();
    assert_eq!(back.cluster_centers(), m.cluster_centers());
    assert_eq!(back.inertia(), m.inertia());
    assert_eq!(back.n_iter(), m.n_iter());
    assert_eq!(back.predict(&x).unwrap().to_vec(), m.labels().unwrap());
    assert_eq!(back.score(&x).unwrap(), -m.inertia());

    for (bad, says) in [
        (text.replace("\"kmeans\"", "\"gmm\""), "not a k-means model"),
        (
            text.replace("\"n_clusters\":2", "\"n_clusters\":3"),
            "cluster_centers",
        ),
        (text.replace("emgpu-model", "other"), "format"),
        ("[1, 2]".to_string(), "JSON object"),
    ] {
        assert_ne!(bad, text, "each corruption must change the file ({says})");
        match FittedKMeans::from_json(&bad) {
            Err(Error::BadModel(msg)) => assert!(msg.contains(says), "{msg}"),
            other => panic!("expected BadModel({says}), got {other:?}"),
        }
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let x = Array2::from_shape_fn((10, 2), |(i, j)| (i * 2 + j) as f64);
    let cpu = |k| KMeans::params(k).backend(Backend::Cpu);
    let msg = |r: Result<FittedKMeans, Error>| r.unwrap_err().to_string();
    assert!(msg(cpu(2).n_init(0).fit(&x)).contains("n_init"));
    assert!(msg(cpu(0).fit(&x)).contains("at least 1"));
    assert!(msg(cpu(11).fit(&x)).contains("larger than the number of samples"));
    assert!(msg(cpu(2).tol(-1.0).fit(&x)).contains("tol"));
    assert!(msg(cpu(2).max_iter(0).fit(&x)).contains("max_iter"));
    let wrong = Array2::zeros((3, 2));
    assert!(msg(cpu(2).init(KMeansInit::Centers(wrong)).fit(&x)).contains("3 rows"));
    let wrong_d = Array2::zeros((2, 5));
    assert!(matches!(
        cpu(2).init(KMeansInit::Centers(wrong_d)).fit(&x),
        Err(Error::DimensionMismatch { .. })
    ));
    let err = "kmeans||".parse::<KMeansInit>().unwrap_err().to_string();
    assert!(err.contains("k-means++"), "{err}");
    let mut nan = x.clone();
    nan[[3, 1]] = f64::NAN;
    assert!(matches!(
        cpu(2).fit(&nan),
        Err(Error::NonFinite {
            row: 3,
            column: 1,
            ..
        })
    ));
    let m = cpu(2).fit(&x).unwrap();
    assert!(matches!(
        m.predict(&Array2::<f64>::zeros((4, 3))),
        Err(Error::DimensionMismatch {
            expected: 2,
            got: 3
        })
    ));
}
