#!/usr/bin/env python3
"""Writes crates/emgpu/tests/fixtures/sklearn_gmm.json: scikit-learn GaussianMixture results that the CPU
backend must reproduce (tests/sklearn_parity.rs).

Each case gives the data, explicit initial parameters (weights_init, means_init and
precisions_init, i.e. a warm start, so no random initialization is involved), the fit settings,
and what scikit-learn computed: the fitted weights, means, covariances, lower bound, n_iter,
converged, and score_samples / predict_proba on the first rows, score, bic and aic.

Run:  pip install scikit-learn numpy && python3 scripts/make_fixtures.py
"""
import json
import sys
import warnings

import numpy as np
import sklearn
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture


def blobs(rng, n, centers, scales):
    k = len(centers)
    labels = rng.integers(0, k, size=n)
    d = len(centers[0])
    x = np.empty((n, d))
    for i in range(n):
        c = labels[i]
        x[i] = np.asarray(centers[c]) + rng.normal(size=d) * np.asarray(scales[c])
    return x


def initial_params(rng, x, k, cov_type, jitter=0.5):
    """Deterministic, deliberately imperfect starting parameters."""
    n, d = x.shape
    idx = rng.choice(n, size=k, replace=False)
    means = x[idx] + jitter * rng.normal(size=(k, d)) * x.std(axis=0)
    weights = rng.uniform(0.5, 1.5, size=k)
    weights /= weights.sum()
    var = x.var(axis=0)
    if cov_type == "full":
        covs = []
        for _ in range(k):
            a = rng.normal(size=(d, d)) * 0.3
            covs.append(np.diag(var) + a @ a.T * var.mean())
        covs = np.array(covs)
        precisions = np.array([np.linalg.inv(c) for c in covs])
    elif cov_type == "tied":
        a = rng.normal(size=(d, d)) * 0.3
        covs = np.diag(var) + a @ a.T * var.mean()
        precisions = np.linalg.inv(covs)
    elif cov_type == "diag":
        covs = var[None, :] * rng.uniform(0.5, 2.0, size=(k, d))
        precisions = 1.0 / covs
    else:
        covs = var.mean() * rng.uniform(0.5, 2.0, size=k)
        precisions = 1.0 / covs
    return weights, means, covs, precisions


def run_case(name, x, k, cov_type, max_iter, tol, reg_covar, seed):
    rng = np.random.default_rng(seed)
    weights, means, covs, precisions = initial_params(rng, x, k, cov_type)
    gm = GaussianMixture(
        n_components=k,
        covariance_type=cov_type,
        tol=tol,
        reg_covar=reg_covar,
        max_iter=max_iter,
        n_init=1,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(x)
    head = min(10, x.shape[0])
    case = {
        "name": name,
        "covariance_type": cov_type,
        "n_components": k,
        "max_iter": max_iter,
        "tol": tol,
        "reg_covar": reg_covar,
        "x": x.tolist(),
        "weights_init": weights.tolist(),
        "means_init": means.tolist(),
        "covariances_init": np.asarray(covs).tolist(),
        "expected": {
            "weights": gm.weights_.tolist(),
            "means": gm.means_.tolist(),
            "covariances": np.asarray(gm.covariances_).tolist(),
            "lower_bound": float(gm.lower_bound_),
            "n_iter": int(gm.n_iter_),
            "converged": bool(gm.converged_),
            "score": float(gm.score(x)),
            "bic": float(gm.bic(x)),
            "aic": float(gm.aic(x)),
            "score_samples_head": gm.score_samples(x[:head]).tolist(),
            "predict_proba_head": gm.predict_proba(x[:head]).tolist(),
        },
    }
    if hasattr(gm, "lower_bounds_"):
        case["expected"]["lower_bounds"] = [float(v) for v in gm.lower_bounds_]
    return case


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "crates/emgpu/tests/fixtures/sklearn_gmm.json"
    rng = np.random.default_rng(20261125)
    cases = []
    x2 = blobs(rng, 300, [[0, 0], [4, 1], [1, 5]], [[1.0, 0.5], [0.7, 1.2], [0.9, 0.9]])
    x3 = blobs(rng, 257, [[0, 0, 0], [3, 3, 0], [0, 3, 3], [3, 0, 3]], [[1, 1, 1]] * 4)
    x4 = blobs(rng, 400, [[0, 0, 0, 0], [5, 0, 2, 1], [2, 4, -3, 0]], [[1, 2, 0.5, 1], [0.5, 0.5, 0.5, 0.5], [2, 1, 1, 0.3]])
    x1 = blobs(rng, 150, [[-2.0], [3.0]], [[1.0], [0.5]])
    iris = load_iris().data.astype(np.float64)
    for cov in ["full", "tied", "diag", "spherical"]:
        cases.append(run_case(f"blobs2d_k3_{cov}", x2, 3, cov, 10, 0.0, 1e-6, 1))
        cases.append(run_case(f"blobs3d_k4_{cov}", x3, 4, cov, 15, 0.0, 1e-6, 2))
        cases.append(run_case(f"iris_k3_{cov}_converge", iris, 3, cov, 200, 1e-3, 1e-6, 3))
    cases.append(run_case("blobs4d_k3_full_reg1e-2", x4, 3, "full", 20, 0.0, 1e-2, 4))
    cases.append(run_case("blobs1d_k2_full", x1, 2, "full", 10, 0.0, 1e-6, 5))
    cases.append(run_case("blobs1d_k2_spherical", x1, 2, "spherical", 10, 0.0, 1e-6, 6))
    cases.append(run_case("blobs3d_k1_full", x3, 1, "full", 3, 0.0, 1e-6, 7))
    cases.append(run_case("blobs2d_offset1e3_k3_full", x2 + 1e3, 3, "full", 10, 0.0, 1e-6, 8))
    doc = {
        "source": "scripts/make_fixtures.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out} (scikit-learn {sklearn.__version__}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
