"""scikit-learn's estimator checks, and the estimators inside scikit-learn's tools."""

import json
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import emgpu

# Checks that must be skipped, with the reason. None today: every check of scikit-learn's
# `check_estimator` passes for both estimators (sample-weight checks do not apply: `fit` takes no
# `sample_weight`; sparse-input checks pass by raising scikit-learn's TypeError). scikit-learn
# itself skips `check_array_api_input` unless SCIPY_ARRAY_API=1 is set; with it, it passes too.
EXPECTED_FAILED_CHECKS = {}


def expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(
    [emgpu.GaussianMixture(device="cpu"), emgpu.KMeans(device="cpu")],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_get_set_params_and_clone():
    gm = emgpu.GaussianMixture(3, covariance_type="diag", device="cpu")
    assert gm.get_params()["covariance_type"] == "diag"
    assert gm.get_params()["device"] == "cpu"
    gm.set_params(n_components=2, tol=1e-4)
    c = clone(gm)
    assert c.get_params() == gm.get_params()
    assert not hasattr(c, "means_")


def _gmm(**kw):
    return emgpu.GaussianMixture(random_state=0, device="cpu", **kw)


def test_pickle_round_trip():
    x = load_iris().data
    for est in (_gmm(n_components=3), emgpu.KMeans(3, random_state=0, device="cpu")):
        est.fit(x)
        back = pickle.loads(pickle.dumps(est))
        assert back.get_params() == est.get_params()
        for attr, v in vars(est).items():
            if attr.endswith("_") and not attr.startswith("_"):
                np.testing.assert_array_equal(np.asarray(getattr(back, attr)), np.asarray(v))
        np.testing.assert_array_equal(back.predict(x), est.predict(x))
        assert back.score(x) == est.score(x)
        # The model file says which backend ran the fit, for information; a loaded model has none.
        info = ("backend", "device")
        a, b = (
            {k: v for k, v in json.loads(m.to_json()).items() if k not in info} for m in (back, est)
        )
        assert a == b


def test_pipeline_and_grid_search():
    x = load_iris().data
    pipe = make_pipeline(StandardScaler(), _gmm(n_components=2))
    pipe.fit(x)
    assert pipe.predict(x).shape == (150,)
    assert np.isfinite(pipe.score(x))
    search = GridSearchCV(
        _gmm(), {"n_components": [1, 2, 3], "covariance_type": ["full", "diag"]}, cv=3
    )
    search.fit(x)
    assert search.best_params_["n_components"] in (1, 2, 3)
    km = make_pipeline(StandardScaler(), emgpu.KMeans(3, random_state=0, device="cpu"))
    assert km.fit_predict(x).shape == (150,)


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    iris = load_iris()
    df = pd.DataFrame(iris.data, columns=iris.feature_names)
    gm = _gmm(n_components=2).fit(df)
    assert list(gm.feature_names_in_) == iris.feature_names
    assert '"feature_names"' in gm.to_json()
    back = emgpu.GaussianMixture.from_json(gm.to_json())
    assert list(back.feature_names_in_) == iris.feature_names
    np.testing.assert_array_equal(back.predict(df), gm.predict(df))
    km = emgpu.KMeans(3, random_state=0, device="cpu").fit(df)
    assert list(km.feature_names_in_) == iris.feature_names
    assert km.get_feature_names_out().tolist() == ["kmeans0", "kmeans1", "kmeans2"]


def test_sample_and_fit_predict():
    x = load_iris().data
    gm = _gmm(n_components=3)
    labels = gm.fit_predict(x)
    np.testing.assert_array_equal(labels, gm.predict(x))
    xs, ys = gm.sample(500)
    assert xs.shape == (500, 4) and ys.shape == (500,)
    assert set(np.unique(ys)) <= {0, 1, 2}
    assert np.all(np.diff(ys) >= 0)  # grouped by component, as scikit-learn


def test_warm_start_continues_the_fit():
    x = load_iris().data
    w = np.full(3, 1 / 3)
    m = x[[0, 60, 120]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        once = _gmm(n_components=3, tol=0.0, max_iter=6, weights_init=w, means_init=m).fit(x)
        warm = _gmm(n_components=3, tol=0.0, max_iter=2, weights_init=w, means_init=m)
        warm.set_params(warm_start=True)
        for _ in range(3):
            warm.fit(x)
    np.testing.assert_allclose(warm.means_, once.means_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(warm.covariances_, once.covariances_, rtol=1e-12, atol=1e-12)


def test_random_state():
    x = load_iris().data
    a = _gmm(n_components=3, init_params="random").fit(x)
    b = _gmm(n_components=3, init_params="random").fit(x)
    np.testing.assert_array_equal(a.means_, b.means_)
    rs = np.random.RandomState(0)
    c = emgpu.GaussianMixture(3, init_params="random", random_state=rs, device="cpu").fit(x)
    d = emgpu.GaussianMixture(3, init_params="random", random_state=rs, device="cpu").fit(x)
    assert not np.array_equal(c.means_, d.means_)  # the generator advanced


def test_verbose_prints_progress(capsys):
    x = load_iris().data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _gmm(n_components=2, verbose=2, tol=0.0, max_iter=20).fit(x)
    out = capsys.readouterr().out
    assert "Initialization 0" in out
    assert "Iteration 10" in out and "Iteration 20" in out
    assert "did not converge" in out
    emgpu.KMeans(2, verbose=1, random_state=0, device="cpu").fit(x)
    assert "inertia" in capsys.readouterr().out
