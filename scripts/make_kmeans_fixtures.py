#!/usr/bin/env python3
"""Writes crates/emgpu/tests/fixtures/sklearn_kmeans.json: scikit-learn KMeans (Lloyd) results that the CPU
k-means must reproduce (tests/kmeans.rs).

Each case names a dataset (iris, wine: both ship with scikit-learn, no download), gives explicit
initial centers (so no random seeding is involved: KMeans(init=centers, n_init=1,
algorithm="lloyd")), tol and max_iter, and what scikit-learn computed: cluster_centers_, labels_,
inertia_, n_iter_, and score(X) / predict(X) under the fitted centers.

Some cases start with a center far from every point, so that its cluster is empty at the first
assignment and scikit-learn relocates it to the point farthest from its center.

Run:  pip install scikit-learn numpy && python3 scripts/make_kmeans_fixtures.py
"""
import json
import sys

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris, load_wine
from sklearn.mixture import GaussianMixture


def init_from_rows(rng, x, k, jitter):
    """Deterministic, deliberately imperfect initial centers: random rows plus noise."""
    idx = rng.choice(x.shape[0], size=k, replace=False)
    return x[idx] + jitter * rng.normal(size=(k, x.shape[1])) * x.std(axis=0)


def main():
    rng = np.random.default_rng(20240611)
    iris = load_iris().data.astype(np.float64)
    wine = load_wine().data.astype(np.float64)
    wine_std = (wine - wine.mean(axis=0)) / wine.std(axis=0)
    datasets = {"iris": iris, "wine": wine, "wine_std": wine_std}

    cases = []

    def case(name, data, init, tol=1e-4, max_iter=300):
        x = datasets[data]
        km = KMeans(
            n_clusters=init.shape[0],
            init=init,
            n_init=1,
            algorithm="lloyd",
            tol=tol,
            max_iter=max_iter,
        ).fit(x)
        cases.append(
            {
                "name": name,
                "data": data,
                "init": init.tolist(),
                "tol": tol,
                "max_iter": max_iter,
                "expected": {
                    "cluster_centers": km.cluster_centers_.tolist(),
                    "labels": km.labels_.tolist(),
                    "inertia": float(km.inertia_),
                    "n_iter": int(km.n_iter_),
                    "score": float(km.score(x)),
                    "predict": km.predict(x).tolist(),
                },
            }
        )

    case("iris_k3", "iris", init_from_rows(rng, iris, 3, 0.3))
    case("iris_k5", "iris", init_from_rows(rng, iris, 5, 0.3))
    case("iris_k8_tol0", "iris", init_from_rows(rng, iris, 8, 0.3), tol=0.0)
    case("iris_k4_max_iter2", "iris", init_from_rows(rng, iris, 4, 0.5), max_iter=2)
    case("wine_k3", "wine", init_from_rows(rng, wine, 3, 0.3))
    case("wine_k6", "wine", init_from_rows(rng, wine, 6, 0.3))
    case("wine_std_k3", "wine_std", init_from_rows(rng, wine_std, 3, 0.3))
    case("wine_std_k7_tol1e-2", "wine_std", init_from_rows(rng, wine_std, 7, 0.3), tol=1e-2)

    # Empty clusters: one center far from all the data; its cluster is empty at the first
    # assignment and is relocated to the point farthest from its center.
    far = init_from_rows(rng, iris, 3, 0.3)
    far[1] = iris.max(axis=0) + 100.0
    case("iris_k3_empty_cluster", "iris", far)
    case("iris_k3_empty_cluster_max_iter1", "iris", far, max_iter=1)
    # Two empty clusters: they take the farthest and the second farthest points, in that order.
    far = init_from_rows(rng, iris, 5, 0.3)
    far[0] = iris.max(axis=0) + 100.0
    far[3] = iris.min(axis=0) - 80.0
    case("iris_k5_two_empty_clusters", "iris", far)
    case("iris_k5_two_empty_clusters_max_iter1", "iris", far, max_iter=1)
    far = init_from_rows(rng, wine_std, 4, 0.3)
    far[3] = -50.0
    case("wine_std_k4_empty_cluster", "wine_std", far)

    # Runs that stop on the tolerance before the labels settle: the threshold is tol times the mean
    # variance of the features (about 7.6e3 on raw wine), and the final labels are reassigned to
    # the final centers.
    case("wine_k3_tol1e-2", "wine", init_from_rows(rng, wine, 3, 0.3), tol=1e-2)
    case("wine_k5_tol1e-2", "wine", init_from_rows(rng, wine, 5, 0.3), tol=1e-2)
    case("wine_k6_tol3e-3", "wine", init_from_rows(rng, wine, 6, 0.3), tol=3e-3)

    # GaussianMixture(init_params="kmeans") on well-separated blobs, where every k-means seeding
    # finds the same partition: the whole fit is then independent of the random stream, so
    # emgpu's Init::Kmeans (other random numbers) must give scikit-learn's model. Checked here
    # over several random_state values.
    gmm_cases = []
    centers = np.array([[0.0, 0.0, 0.0], [9.0, 1.0, 0.0], [1.0, 9.0, 2.0], [8.0, 8.0, 9.0]])
    sizes = [120, 80, 50, 30]
    blobs = np.vstack(
        [c + rng.normal(size=(s, 3)) * (0.6 + 0.2 * i) for i, (c, s) in enumerate(zip(centers, sizes))]
    )
    datasets["blobs3d"] = blobs
    for cov in ["full", "tied", "diag", "spherical"]:
        fits = [
            GaussianMixture(4, covariance_type=cov, init_params="kmeans", random_state=r).fit(blobs)
            for r in range(5)
        ]
        lbs = [f.lower_bound_ for f in fits]
        assert max(lbs) - min(lbs) < 1e-12, (cov, lbs)
        g = fits[0]
        gmm_cases.append(
            {
                "name": f"blobs3d_{cov}",
                "data": "blobs3d",
                "n_components": 4,
                "covariance_type": cov,
                "expected": {
                    "weights": g.weights_.tolist(),
                    "means": g.means_.tolist(),
                    "covariances": g.covariances_.tolist(),
                    "lower_bound": float(g.lower_bound_),
                    "n_iter": int(g.n_iter_),
                },
            }
        )

    doc = {
        "generator": "scripts/make_kmeans_fixtures.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "datasets": {k: v.tolist() for k, v in datasets.items()},
        "cases": cases,
        "gmm_kmeans_init_cases": gmm_cases,
    }
    out = "crates/emgpu/tests/fixtures/sklearn_kmeans.json"
    with open(out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    for c in cases:
        e = c["expected"]
        print(f"{c['name']}: n_iter={e['n_iter']} inertia={e['inertia']:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
