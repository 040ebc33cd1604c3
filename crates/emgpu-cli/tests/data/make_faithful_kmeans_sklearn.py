#!/usr/bin/env python3
"""Writes the scikit-learn k-means numbers that tests/cli_kmeans.rs checks `emgpu fit --model kmeans`,
`predict` and `score` against.

For the Old Faithful data (tests/data/faithful.csv) it fits scikit-learn's KMeans from fixed initial
centers (KMeans(init=centers, n_init=1, algorithm="lloyd"), no random seeding involved) with its
default tol (1e-4, relative to the data's variance) and max_iter (300). One case starts with a
center far from every point, so that its cluster is empty at the first assignment and scikit-learn
relocates it to the point farthest from its center. faithful_kmeans_sklearn.json holds, per case,
the initial centers and what scikit-learn computed: cluster_centers_, inertia_, n_iter_, labels_,
score(X) (= -inertia) and predict(X).

Run from the repository root:  python3 tests/data/make_faithful_kmeans_sklearn.py
"""
import json

import numpy as np
import sklearn
from sklearn.cluster import KMeans

x = np.loadtxt("tests/data/faithful.csv", delimiter=",", skiprows=1)
assert x.shape == (272, 2)

starts = {
    "k2": [[2.0, 55.0], [4.5, 80.0]],
    "k3": [[1.8, 50.0], [3.0, 70.0], [4.5, 85.0]],
    # The third center is far from every point: its cluster is empty at the first assignment.
    "k3_empty": [[2.0, 55.0], [4.5, 80.0], [100.0, 1000.0]],
    "k5": [[1.8, 50.0], [2.2, 60.0], [3.5, 70.0], [4.2, 80.0], [4.8, 90.0]],
}

out = {
    "sklearn_version": sklearn.__version__,
    "data": "tests/data/faithful.csv",
    "generator": "tests/data/make_faithful_kmeans_sklearn.py",
    "cases": {},
}
for name, centers in starts.items():
    init = np.array(centers, dtype=np.float64)
    km = KMeans(n_clusters=init.shape[0], init=init, n_init=1, algorithm="lloyd").fit(x)
    out["cases"][name] = {
        "init": init.tolist(),
        "cluster_centers": km.cluster_centers_.tolist(),
        "inertia": float(km.inertia_),
        "n_iter": int(km.n_iter_),
        "labels": km.labels_.tolist(),
        "score": float(km.score(x)),
        "predict": km.predict(x).tolist(),
    }

with open("tests/data/faithful_kmeans_sklearn.json", "w") as f:
    json.dump(out, f)
    f.write("\n")
