"""Model files shared with the CLI, errors as Python exceptions, Ctrl-C."""

import json
import os
import signal
import subprocess
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning

import emgpu


def iris():
    return load_iris().data


def test_json_round_trip():
    x = iris()
    for cov in ("full", "tied", "diag", "spherical"):
        gm = emgpu.GaussianMixture(3, covariance_type=cov, random_state=0, device="cpu").fit(x)
        text = gm.to_json()
        assert json.loads(text)["format"] == "emgpu-model"
        back = emgpu.GaussianMixture.from_json(text, device="cpu")
        assert back.covariance_type == cov and back.n_components == 3
        for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            np.testing.assert_array_equal(getattr(back, attr), getattr(gm, attr))
        assert back.score(x) == gm.score(x)
    km = emgpu.KMeans(3, random_state=0, device="cpu").fit(x)
    back = emgpu.KMeans.from_json(km.to_json())
    np.testing.assert_array_equal(back.cluster_centers_, km.cluster_centers_)
    np.testing.assert_array_equal(back.predict(x), km.predict(x))


def test_cli_reads_python_models_and_python_reads_cli_models(cli, tmp_path):
    x = iris()
    np.save(tmp_path / "X.npy", x)
    gm = emgpu.GaussianMixture(3, random_state=0, device="cpu").fit(x)
    (tmp_path / "py.json").write_text(gm.to_json())
    out = subprocess.run(
        [cli, "score", "--model", str(tmp_path / "py.json"), "--input", str(tmp_path / "X.npy"),
         "--backend", "cpu", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    score = json.loads(out.strip().splitlines()[-1])["score"]
    np.testing.assert_allclose(score, gm.score(x), rtol=1e-12)

    subprocess.run(
        [cli, "fit", "--input", str(tmp_path / "X.npy"), "--components", "3", "--backend", "cpu",
         "--seed", "0", "--output", str(tmp_path / "cli.json"), "--quiet"],
        check=True, capture_output=True,
    )
    back = emgpu.GaussianMixture.from_json((tmp_path / "cli.json").read_text(), device="cpu")
    same = emgpu.GaussianMixture(3, random_state=0, device="cpu").fit(x)
    # random_state=0 is the CLI's --seed 0: the same fit.
    np.testing.assert_allclose(back.means_, same.means_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(back.score(x), same.score(x), rtol=1e-12)

    km = emgpu.KMeans(3, random_state=0, device="cpu").fit(x)
    (tmp_path / "km.json").write_text(km.to_json())
    out = subprocess.run(
        [cli, "score", "--model", str(tmp_path / "km.json"), "--input", str(tmp_path / "X.npy"),
         "--backend", "cpu", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    np.testing.assert_allclose(json.loads(out.strip().splitlines()[-1])["score"], km.score(x),
                               rtol=1e-12)


def test_errors_are_python_exceptions_with_the_core_messages():
    x = iris()
    with pytest.raises(ValueError, match="n_components = 200"):
        emgpu.GaussianMixture(200, device="cpu").fit(x)
    with pytest.raises(ValueError, match="device"):
        emgpu.GaussianMixture(2, device="tpu").fit(x)
    with pytest.raises(ValueError, match="covariance_type"):
        emgpu.GaussianMixture(2, covariance_type="banana").fit(x)
    with pytest.raises(ValueError, match="unknown init method"):
        emgpu.GaussianMixture(2, init_params="nope", device="cpu").fit(x)
    with pytest.raises(ValueError, match="tol"):
        emgpu.GaussianMixture(2, tol=-1.0, device="cpu").fit(x)
    with pytest.raises(ValueError, match="NaN|infinity"):
        bad = x.copy()
        bad[3, 1] = np.nan
        emgpu.GaussianMixture(2, device="cpu").fit(bad)
    # A collapsed component: the core's advice comes through.
    dup = np.repeat(x[:3], 20, axis=0)
    w, m = np.full(3, 1 / 3), x[:3]
    with pytest.raises(ValueError, match="reg_covar"):
        emgpu.GaussianMixture(
            3, reg_covar=0.0, weights_init=w, means_init=m, precisions_init=np.repeat(np.eye(4)[None], 3, 0),
            device="cpu",
        ).fit(dup)
    with pytest.raises(ValueError, match="invalid model"):
        emgpu.GaussianMixture.from_json('{"format": "emgpu-model"}')
    gm = emgpu.GaussianMixture(2, random_state=0, device="cpu").fit(x)
    with pytest.raises(ValueError, match="features"):
        gm.predict(x[:, :3])


def test_gpu_device_without_adapter_is_a_runtime_error():
    found, why = emgpu.gpu_adapter()
    if found:
        pytest.skip(f"a GPU adapter is present ({why})")
    with pytest.raises(RuntimeError, match="GPU"):
        emgpu.GaussianMixture(2, device="gpu").fit(iris())


def test_ctrl_c_stops_a_long_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_000, 8))
    gm = emgpu.GaussianMixture(8, tol=0.0, max_iter=100_000, init_params="random_from_data",
                               random_state=0, device="cpu")
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            gm.fit(x)
    finally:
        timer.cancel()
    assert time.perf_counter() - t0 < 30
    assert not hasattr(gm, "means_")


def test_fit_releases_the_gil():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100_000, 8))
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    t = threading.Thread(target=tick)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t.start()
        t0 = time.perf_counter()
        emgpu.GaussianMixture(8, tol=0.0, max_iter=20, init_params="random_from_data",
                              random_state=0, device="cpu").fit(x)
        t1 = time.perf_counter()
        stop.set()
        t.join()
    during = [s for s in ticks if t0 < s < t1]
    # The other thread ran throughout the fit (it would starve if the GIL were held).
    assert len(during) > 0.3 * (t1 - t0) / 0.005, (len(during), t1 - t0)
