"""Large memory-mapped input without a copy, and the GPU backend (a hardware GPU or lavapipe)."""

import os
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import emgpu
from conftest import initial_params


def rss_anon():
    """Anonymous resident memory of this process, bytes (a copy of the data would land here;
    the pages of a memory-mapped file are file-backed and do not)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_memmap_fit_of_a_million_rows_makes_no_copy(tmp_path):
    n, d = 1_000_000, 16
    path = tmp_path / "X.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    for s in range(0, n, 100_000):
        out[s : s + 100_000] = rng.normal(size=(100_000, d)).astype(np.float32) + (s // 100_000) % 2
    out.flush()
    del out
    x = np.load(path, mmap_mode="r")
    assert isinstance(x, np.memmap) and x.dtype == np.float32
    data_bytes = x.nbytes  # 64 MB

    w, m, p = initial_params(np.asarray(x[:10_000], dtype=np.float64), 2, "diag")
    gm = emgpu.GaussianMixture(2, covariance_type="diag", tol=0.0, max_iter=2, weights_init=w,
                               means_init=m, precisions_init=p, device="cpu")

    def peak_growth(work):
        base = rss_anon()
        peak = [base]
        stop = threading.Event()

        def sample():  # runs while the fit has released the GIL
            while not stop.is_set():
                peak[0] = max(peak[0], rss_anon())
                time.sleep(0.002)

        t = threading.Thread(target=sample)
        t.start()
        try:
            out = work()
        finally:
            stop.set()
            t.join()
        return max(peak[0], rss_anon()) - base, out

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(x)
            return gm.score(x)

    growth, _ = peak_growth(fit)
    # The measurement sees a copy: the same sampling around one.
    copied, c = peak_growth(lambda: np.array(x))
    del c
    print(f"RssAnon growth during the memmap fit: {growth / 2**20:.1f} MiB for "
          f"{data_bytes / 2**20:.0f} MiB of data (a copy of it: {copied / 2**20:.1f} MiB)")
    assert copied > 0.9 * data_bytes, copied
    assert growth < 0.5 * data_bytes, growth
    assert gm.n_iter_ == 2 and np.all(np.isfinite(gm.means_))


def gpu_or_skip():
    found, why = emgpu.gpu_adapter()
    if not found:
        if os.environ.get("EMGPU_REQUIRE_GPU") == "1":
            pytest.fail(f"EMGPU_REQUIRE_GPU=1 but no GPU adapter: {why}")
        pytest.skip(f"no GPU adapter: {why}")
    return why


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_gpu_matches_cpu(cov):
    gpu_or_skip()
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(3000, 3)), rng.normal(size=(2000, 3)) * 0.5 + 4])
    x = x.astype(np.float32)
    w, m, p = initial_params(x.astype(np.float64), 3, cov)
    kw = dict(n_components=3, covariance_type=cov, tol=0.0, max_iter=10, weights_init=w,
              means_init=m, precisions_init=p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g = emgpu.GaussianMixture(device="gpu", **kw).fit(x)
        c = emgpu.GaussianMixture(device="cpu", **kw).fit(x)
    assert "gpu" in g._fitted.backend.lower()
    np.testing.assert_allclose(g.means_, c.means_, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(g.covariances_, c.covariances_, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(g.lower_bound_, c.lower_bound_, rtol=2e-3)
    np.testing.assert_allclose(g.predict_proba(x), c.predict_proba(x), atol=2e-3)

    km_g = emgpu.KMeans(3, init=m, n_init=1, device="gpu").fit(x)
    km_c = emgpu.KMeans(3, init=m, n_init=1, device="cpu").fit(x)
    np.testing.assert_allclose(km_g.cluster_centers_, km_c.cluster_centers_, rtol=2e-3, atol=2e-3)
