#!/usr/bin/env python3
"""Writes the scikit-learn reference numbers that tests/cli.rs checks the `emgpu` binary against.

For the Old Faithful data (tests/data/faithful.csv) and two covariance types, it writes a starting
model in emgpu's model format (faithful_start_<type>.json: fixed, deliberately rough parameters,
so no random initialization is involved) and fits scikit-learn's GaussianMixture from exactly those
parameters (weights_init, means_init, precisions_init) with its default tol, reg_covar and
max_iter. faithful_sklearn.json holds what scikit-learn computed: the fitted parameters, lower
bound, n_iter, converged, score, bic, aic and the label counts of predict.

Run from the repository root:  python3 tests/data/make_faithful_sklearn.py
"""
import json

import numpy as np
import sklearn
from sklearn.mixture import GaussianMixture

x = np.loadtxt("tests/data/faithful.csv", delimiter=",", skiprows=1)
assert x.shape == (272, 2)

weights = np.array([0.4, 0.6])
means = np.array([[2.5, 60.0], [4.0, 75.0]])
full = np.array([[[0.5, 2.0], [2.0, 60.0]], [[0.4, 1.0], [1.0, 50.0]]])
diag = np.array([[0.5, 60.0], [0.4, 50.0]])
starts = {"full": full, "diag": diag}

out = {"sklearn_version": sklearn.__version__, "data": "tests/data/faithful.csv", "cases": {}}
for cov_type, covs in starts.items():
    model = {
        "format": "emgpu-model",
        "version": 1,
        "model": "gmm",
        "covariance_type": cov_type,
        "n_features": 2,
        "n_components": 2,
        "weights": weights.tolist(),
        "means": means.tolist(),
        "covariances": covs.tolist(),
    }
    with open(f"tests/data/faithful_start_{cov_type}.json", "w") as f:
        json.dump(model, f, indent=1)
        f.write("\n")
    precisions = np.linalg.inv(covs) if cov_type == "full" else 1.0 / covs
    g = GaussianMixture(
        n_components=2,
        covariance_type=cov_type,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
    ).fit(x)
    out["cases"][cov_type] = {
        "start": f"tests/data/faithful_start_{cov_type}.json",
        "weights": g.weights_.tolist(),
        "means": g.means_.tolist(),
        "covariances": g.covariances_.tolist(),
        "lower_bound": g.lower_bound_,
        "n_iter": int(g.n_iter_),
        "converged": bool(g.converged_),
        "score": g.score(x),
        "bic": g.bic(x),
        "aic": g.aic(x),
        "label_counts": np.bincount(g.predict(x), minlength=2).tolist(),
    }

with open("tests/data/faithful_sklearn.json", "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
