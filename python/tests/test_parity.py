"""Parity with scikit-learn from the same initial parameters (CPU backend, to 1e-6)."""

import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_iris, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import emgpu
from conftest import initial_params

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def iris():
    return load_iris().data.astype(np.float64)


def synthetic():
    x, _ = make_blobs(n_samples=3000, n_features=5, centers=4, cluster_std=1.5, random_state=3)
    return x + 100.0  # away from the origin: the shifted second moments matter


DATASETS = {"iris": (iris, 3), "synthetic": (synthetic, 4)}


def close(a, b, rtol=1e-6, atol=1e-9):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def fit_both(x, k, cov, max_iter, tol=0.0, reg_covar=1e-6):
    w, m, p = initial_params(x, k, cov)
    kw = dict(
        n_components=k,
        covariance_type=cov,
        tol=tol,
        max_iter=max_iter,
        reg_covar=reg_covar,
        weights_init=w,
        means_init=m,
        precisions_init=p,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(**kw).fit(x)
        em = emgpu.GaussianMixture(device="cpu", **kw).fit(x)
    return sk, em


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("name", DATASETS)
def test_gmm_matches_sklearn(name, cov):
    make, k = DATASETS[name]
    x = make()
    sk, em = fit_both(x, k, cov, max_iter=15)
    assert em.n_iter_ == sk.n_iter_ == 15
    assert em.converged_ == sk.converged_
    close(em.lower_bound_, sk.lower_bound_)
    close(em.lower_bounds_, sk.lower_bounds_)
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        a, b = getattr(em, attr), getattr(sk, attr)
        assert a.shape == b.shape, attr
        close(a, b, atol=1e-9 * max(1.0, np.abs(b).max()))
    close(em.score_samples(x), sk.score_samples(x))
    close(em.predict_proba(x), sk.predict_proba(x), atol=1e-7)
    np.testing.assert_array_equal(em.predict(x), sk.predict(x))
    close(em.score(x), sk.score(x))
    close(em.bic(x), sk.bic(x))
    close(em.aic(x), sk.aic(x))
    assert em.n_features_in_ == sk.n_features_in_


@pytest.mark.parametrize("name", DATASETS)
def test_gmm_stops_where_sklearn_stops(name):
    make, k = DATASETS[name]
    x = make()
    sk, em = fit_both(x, k, "full", max_iter=200, tol=1e-3)
    assert em.converged_ and sk.converged_
    assert em.n_iter_ == sk.n_iter_
    close(em.means_, sk.means_)


def test_float32_fortran_and_c_order_give_the_float64_answer():
    x = synthetic()
    x32 = x.astype(np.float32)
    w, m, p = initial_params(x32.astype(np.float64), 4, "full")
    kw = dict(n_components=4, tol=0.0, max_iter=5, weights_init=w, means_init=m, precisions_init=p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = emgpu.GaussianMixture(device="cpu", **kw).fit(x32)
        b = emgpu.GaussianMixture(device="cpu", **kw).fit(np.asfortranarray(x32))
        c = emgpu.GaussianMixture(device="cpu", **kw).fit(x32.astype(np.float64))
    for other in (b, c):
        np.testing.assert_array_equal(a.means_, other.means_)
        np.testing.assert_array_equal(a.covariances_, other.covariances_)


@pytest.mark.parametrize("name", DATASETS)
def test_kmeans_matches_sklearn(name):
    make, k = DATASETS[name]
    x = make()
    centers = x[np.random.RandomState(1).choice(len(x), k, replace=False)]
    sk = SkKMeans(n_clusters=k, init=centers, n_init=1, algorithm="lloyd").fit(x)
    em = emgpu.KMeans(n_clusters=k, init=centers, n_init=1, device="cpu").fit(x)
    close(em.cluster_centers_, sk.cluster_centers_, atol=1e-9)
    np.testing.assert_array_equal(em.labels_, sk.labels_)
    close(em.inertia_, sk.inertia_)
    assert em.n_iter_ == sk.n_iter_
    np.testing.assert_array_equal(em.predict(x), sk.predict(x))
    close(em.score(x), sk.score(x))
    close(em.transform(x), sk.transform(x))
