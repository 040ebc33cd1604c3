#!/usr/bin/env python3
"""Writes crates/emgpu/tests/fixtures/sklearn_kmeans_weighted.json: scikit-learn KMeans (Lloyd)
with sample weights, which the weighted k-means must reproduce (tests/sample_weights.rs).

Each case holds its data X, its weights W, explicit initial centers (KMeans(init=centers,
n_init=1, algorithm="lloyd", tol=0, max_iter=M).fit(X, sample_weight=W): no random seeding), and
what scikit-learn computed: cluster_centers_, labels_, inertia_ (weighted), n_iter_.

Cases: float weights; integer weights with zeros; a start with a center far from every point, so
that its cluster is empty at the first assignment and is relocated onto the point farthest from
its center, which moves with its weight (_relocate_empty_clusters_dense).

Run:  pip install scikit-learn numpy && python3 scripts/make_weight_fixtures.py
"""
import json
import sys

import numpy as np
import sklearn
from sklearn.cluster import KMeans


def blobs(rng, centers, sizes, sd):
    parts = [c + sd * rng.normal(size=(n, len(c))) for c, n in zip(centers, sizes)]
    return np.concatenate(parts)


def main():
    rng = np.random.default_rng(20250101)
    cases = []

    def case(name, x, w, init, max_iter):
        km = KMeans(
            n_clusters=init.shape[0],
            init=init,
            n_init=1,
            algorithm="lloyd",
            tol=0.0,
            max_iter=max_iter,
        ).fit(x, sample_weight=w)
        cases.append(
            {
                "name": name,
                "x": x.tolist(),
                "weights": w.tolist(),
                "init": init.tolist(),
                "max_iter": max_iter,
                "expected": {
                    "cluster_centers": km.cluster_centers_.tolist(),
                    "labels": km.labels_.tolist(),
                    "inertia": float(km.inertia_),
                    "n_iter": int(km.n_iter_),
                },
            }
        )

    x = blobs(rng, [[0, 0, 0], [4, 1, -2], [-3, 5, 1]], [70, 55, 42], 1.0)
    w = rng.uniform(0.1, 3.0, size=x.shape[0])
    init = x[[3, 80, 150]] + 0.5 * rng.normal(size=(3, 3))
    case("float_weights", x, w, init, 10)

    x2 = blobs(rng, [[0, 0], [6, 0], [0, 6], [6, 6]], [40, 33, 29, 51], 1.3)
    w2 = rng.integers(0, 5, size=x2.shape[0]).astype(np.float64)
    init2 = x2[[1, 50, 90, 130]] + 0.8 * rng.normal(size=(4, 2))
    case("integer_weights_with_zeros", x2, w2, init2, 20)
    case("integer_weights_two_iterations", x2, w2, init2, 2)

    init3 = init.copy()
    init3[2] = [100.0, 100.0, 100.0]
    case("empty_cluster_relocated", x, w, init3, 15)

    out = {
        "generator": "scripts/make_weight_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
        },
        "cases": cases,
    }
    path = "crates/emgpu/tests/fixtures/sklearn_kmeans_weighted.json"
    with open(path, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
