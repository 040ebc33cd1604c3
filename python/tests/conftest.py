"""Shared helpers of the Python package's tests."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def initial_params(x, k, covariance_type, seed=0):
    """Starting parameters both libraries accept: uniform weights, K distinct rows as means, the
    data's covariance (in the covariance type's shape) for every component; returned as
    (weights, means, precisions) in scikit-learn's shapes."""
    rng = np.random.RandomState(seed)
    n, d = x.shape
    means = x[rng.choice(n, k, replace=False)].astype(np.float64)
    weights = np.full(k, 1.0 / k)
    cov = np.cov(x, rowvar=False).reshape(d, d) + 1e-3 * np.eye(d)
    prec = np.linalg.inv(cov)
    if covariance_type == "full":
        p = np.repeat(prec[None], k, axis=0)
    elif covariance_type == "tied":
        p = prec
    elif covariance_type == "diag":
        p = np.repeat((1.0 / np.diag(cov))[None], k, axis=0)
    else:
        p = np.full(k, 1.0 / np.mean(np.diag(cov)))
    return weights, means, p


def emgpu_binary():
    """The CLI built by `cargo test --release` / `cargo build --release`, or None."""
    env = os.environ.get("EMGPU_BIN")
    if env:
        return env
    for p in (ROOT / "target" / "release" / "emgpu", ROOT / "target" / "debug" / "emgpu"):
        if p.exists():
            return str(p)
    return shutil.which("emgpu")


@pytest.fixture
def cli():
    b = emgpu_binary()
    if b is None:
        pytest.skip("the emgpu binary is not built (cargo build --release), and EMGPU_BIN is unset")
    return b
