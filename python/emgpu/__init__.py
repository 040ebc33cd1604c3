"""emgpu: Expectation-Maximization on the GPU (or a fast f64 CPU backend) with scikit-learn's answers.

Two scikit-learn-compatible estimators on numpy arrays:

- :class:`GaussianMixture`: ``sklearn.mixture.GaussianMixture``'s signature plus ``device``;
- :class:`KMeans`: ``sklearn.cluster.KMeans``'s signature plus ``device``.

``device`` is ``"auto"`` (a hardware GPU when there is one, else the CPU), ``"cpu"`` (f64, all
cores; the same numbers as scikit-learn to ~1e-6) or ``"gpu"`` (wgpu: Vulkan, Metal, DX12; f32,
an error when no adapter is found).

The data are read where they lie: float32 and float64 arrays, C or Fortran order, and memory maps
(``np.load(path, mmap_mode="r")``) are not copied; the GIL is released while the Rust core works,
and Ctrl-C stops a long fit (``KeyboardInterrupt``). ``random_state``: an int is the core's seed
(``random_state=7`` is the CLI's ``--seed 7``); ``None`` or a ``numpy.random.RandomState`` draws
the seed from that generator (so a ``RandomState`` advances once per fit, as in scikit-learn). The
random streams are emgpu's own (ChaCha8), so the same seed does not give scikit-learn's
initialization; to compare fits, start both from the same parameters (``weights_init``,
``means_init``, ``precisions_init`` / ``init=centers``).
"""

import numbers
import time
import warnings

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    DensityMixin,
    TransformerMixin,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _emgpu

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data

    def _validate(est, X, **kw):
        return _sk_validate_data(est, X, **kw)

except ImportError:  # pragma: no cover - older scikit-learn

    def _validate(est, X, **kw):
        return est._validate_data(X, **kw)


__version__ = _emgpu.__version__
__all__ = ["GaussianMixture", "KMeans", "gpu_adapter"]

_DEVICES = ("auto", "cpu", "gpu")
_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def gpu_adapter():
    """``(found, description)``: whether the GPU backend has an adapter (hardware or software)."""
    return _emgpu.gpu_adapter()


def _seed(random_state):
    """The core's u64 seed: an int as it is; otherwise one draw from the generator."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    rs = check_random_state(random_state)
    return int(rs.randint(np.iinfo(np.int64).max, dtype=np.int64))


def _check_device(device):
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {', '.join(_DEVICES)}; got {device!r}")


def _data(est, X, reset, **kw):
    """X as a float32/float64 numpy array (no copy when it already is one, any order)."""
    return _validate(est, X, dtype=[np.float64, np.float32], order=None, reset=reset, **kw)


def _feature_names(est):
    names = getattr(est, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM: ``sklearn.mixture.GaussianMixture`` on emgpu's engines.

    Parameters are scikit-learn's, with the same defaults and meaning, plus ``device``
    (``"auto"``, ``"cpu"``, ``"gpu"``). Differences: ``max_iter`` must be at least 1; when only
    some of ``weights_init``, ``means_init``, ``precisions_init`` are given, the others come from
    the first ``init_params`` initialization and every restart starts from that one point; with
    ``warm_start`` the next fit starts from the fitted parameters with a lower bound of -inf
    (scikit-learn carries the previous lower bound into the first convergence test).
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        device="auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device

    # -- fitting -------------------------------------------------------------------------------

    def _initial(self, X, seed):
        """(weights, means, covariances) to start from, or None for the core's init method."""
        if self.warm_start and hasattr(self, "_fitted"):
            f = self._fitted
            return f.weights(), f.means(), f.covariances()
        given = (self.weights_init, self.means_init, self.precisions_init)
        if all(v is None for v in given):
            return None
        k, d = self.n_components, X.shape[1]
        if any(v is None for v in given):
            w, m, c = _emgpu.gmm_initial_params(
                X, k, self.covariance_type, float(self.reg_covar), self.init_params, seed, self.device
            )
        else:
            w = m = c = None
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=np.float64)
            if w.shape != (k,):
                raise ValueError(
                    f"The parameter 'weights' should have the shape of ({k},), but got {w.shape}"
                )
        if self.means_init is not None:
            m = np.asarray(self.means_init, dtype=np.float64)
            if m.shape != (k, d):
                raise ValueError(
                    f"The parameter 'means' should have the shape of ({k}, {d}), but got {m.shape}"
                )
        if self.precisions_init is not None:
            c = _precisions_to_covariances(
                np.asarray(self.precisions_init, dtype=np.float64), self.covariance_type
            )
        return w, m, c

    def fit(self, X, y=None):
        """Fits the mixture to ``X`` (rows are samples) and returns ``self``."""
        self._fit(X)
        return self

    def fit_predict(self, X, y=None):
        """Fits, then returns the most likely component of every row of ``X``."""
        X = self._fit(X)
        return self._fitted.predict(X, self.device)

    def _fit(self, X):
        _check_device(self.device)
        if self.covariance_type not in _COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {', '.join(_COVARIANCE_TYPES)}; "
                f"got {self.covariance_type!r}"
            )
        X = _data(self, X, reset=True, ensure_min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {X.shape[0]}"
            )
        seed = _seed(self.random_state)
        initial = self._initial(X, seed)
        warm = self.warm_start and hasattr(self, "_fitted")
        printer = _GmmPrinter(self.verbose) if self.verbose else None
        hook = getattr(self, "_iteration_hook", None)  # benchmarks time iterations with it
        if hook is not None and printer is not None:

            def callback(*a):
                printer(*a)
                hook(*a)

        else:
            callback = hook or printer
        fitted = _emgpu.fit_gmm(
            X,
            int(self.n_components),
            self.covariance_type,
            float(self.tol),
            float(self.reg_covar),
            int(self.max_iter),
            1 if warm else int(self.n_init),
            self.init_params,
            initial,
            seed,
            self.device,
            callback,
        )
        if printer is not None:
            printer.end(fitted)
        self._set_fitted(fitted)
        if not self.converged_:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
            )
        return X

    def _set_fitted(self, fitted):
        self._fitted = fitted
        self.weights_ = fitted.weights()
        self.means_ = fitted.means()
        self.covariances_ = fitted.covariances()
        self.precisions_cholesky_ = fitted.precisions_cholesky()
        pc = self.precisions_cholesky_
        if fitted.covariance_type == "full":
            self.precisions_ = np.einsum("kij,klj->kil", pc, pc)
        elif fitted.covariance_type == "tied":
            self.precisions_ = pc @ pc.T
        else:
            self.precisions_ = pc**2
        self.converged_ = bool(fitted.converged)
        self.n_iter_ = int(fitted.n_iter)
        self.lower_bound_ = float(fitted.lower_bound)
        self.lower_bounds_ = list(fitted.lower_bound_trace)

    # -- using a fitted model --------------------------------------------------------------

    def _x(self, X):
        check_is_fitted(self)
        return _data(self, X, reset=False)

    def predict(self, X):
        """The most likely component of every row of ``X`` (int64)."""
        X = self._x(X)
        return self._fitted.predict(X, self.device)

    def predict_proba(self, X):
        """Responsibilities ``[n_samples, n_components]``."""
        X = self._x(X)
        return self._fitted.predict_proba(X, self.device)

    def score_samples(self, X):
        """``log p(x)`` of every row of ``X``."""
        X = self._x(X)
        return self._fitted.score_samples(X, self.device)

    def score(self, X, y=None):
        """Mean log-likelihood per row of ``X``."""
        X = self._x(X)
        return self._fitted.score(X, self.device)

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        X = self._x(X)
        return self._fitted.bic(X, self.device)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        X = self._x(X)
        return self._fitted.aic(X, self.device)

    def sample(self, n_samples=1):
        """``(X, y)``: ``n_samples`` draws and their components, grouped by component."""
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at least "
                "one sample."
            )
        return self._fitted.sample(int(n_samples), _seed(self.random_state))

    # -- model files -----------------------------------------------------------------------

    def to_json(self):
        """The fitted model as emgpu's model file (the CLI's ``fit --output``, ``score --model``)."""
        check_is_fitted(self)
        return self._fitted.with_feature_names(_feature_names(self)).to_json()

    @classmethod
    def from_json(cls, text, **params):
        """An estimator fitted as the model file says (written by ``to_json`` or the CLI's ``fit``).

        ``params`` set other parameters (e.g. ``device``); ``n_components`` and ``covariance_type``
        come from the file.
        """
        fitted = _emgpu.gmm_from_json(text)
        est = cls(
            n_components=fitted.n_components, covariance_type=fitted.covariance_type, **params
        )
        est._set_fitted(fitted)
        est.n_features_in_ = fitted.n_features
        if fitted.feature_names is not None:
            est.feature_names_in_ = np.asarray(fitted.feature_names, dtype=object)
        return est


def _precisions_to_covariances(p, covariance_type):
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(p)
    return 1.0 / p


class _GmmPrinter:
    """scikit-learn's verbose output of a mixture fit (every 10 iterations; timings at 2)."""

    def __init__(self, verbose):
        self.verbose = verbose
        self.t_init = self.t_iter = time.time()

    def __call__(self, init, iteration, lower_bound, change):
        if iteration == 1:
            print(f"Initialization {init}")
            self.t_init = self.t_iter = time.time()
        if iteration % 10 == 0:
            if self.verbose == 1:
                print(f"  Iteration {iteration}")
            else:
                now = time.time()
                print(
                    "  Iteration %d\t time lapse %.5fs\t ll change %.5f"
                    % (iteration, now - self.t_iter, change)
                )
                self.t_iter = now

    def end(self, fitted):
        msg = "converged" if fitted.converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {msg}.")
        else:
            print(f"Initialization {msg}. lower bound {fitted.lower_bound:.5f}.")


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """k-means (Lloyd) on emgpu's engines: ``sklearn.cluster.KMeans`` plus ``device``.

    Parameters are scikit-learn's, with the same defaults and meaning. Differences: no
    ``sample_weight`` and no sparse input; ``algorithm="elkan"`` runs Lloyd's algorithm (same
    result); ``copy_x`` is accepted and has no effect (the data are never modified).
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        copy_x=True,
        algorithm="lloyd",
        device="auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.device = device

    def fit(self, X, y=None):
        """Fits k-means to ``X`` and returns ``self``."""
        _check_device(self.device)
        if self.algorithm not in ("lloyd", "elkan"):
            raise ValueError(f"algorithm must be 'lloyd' or 'elkan'; got {self.algorithm!r}")
        X = _data(self, X, reset=True)
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        centers = None
        init = self.init
        if not isinstance(init, str):
            if callable(init):
                raise ValueError("a callable init is not supported; give an array of centers")
            centers = np.asarray(init, dtype=np.float64)
            init = "k-means++"
        if self.n_init == "auto":
            n_init = None
        elif isinstance(self.n_init, numbers.Integral) and self.n_init >= 1:
            n_init = int(self.n_init)
        else:
            raise ValueError(f"n_init must be 'auto' or an int >= 1; got {self.n_init!r}")
        fitted = _emgpu.fit_kmeans(
            X,
            int(self.n_clusters),
            float(self.tol),
            int(self.max_iter),
            n_init,
            init,
            centers,
            _seed(self.random_state),
            self.device,
            _KMeansPrinter() if self.verbose else None,
        )
        self._set_fitted(fitted)
        return self

    def _set_fitted(self, fitted):
        self._fitted = fitted
        self.cluster_centers_ = fitted.cluster_centers()
        labels = fitted.labels()
        if labels is not None:
            self.labels_ = labels
        self.inertia_ = float(fitted.inertia)
        self.n_iter_ = int(fitted.n_iter)
        self._n_features_out = self.cluster_centers_.shape[0]

    def _x(self, X):
        check_is_fitted(self)
        return _data(self, X, reset=False)

    def fit_predict(self, X, y=None):
        """Fits, then returns ``labels_``."""
        return self.fit(X).labels_

    def predict(self, X):
        """The nearest center of every row of ``X`` (int32)."""
        X = self._x(X)
        return self._fitted.predict(X, self.device)

    def transform(self, X):
        """Distances of every row of ``X`` to every center ``[n_samples, n_clusters]``."""
        return euclidean_distances(self._x(X), self.cluster_centers_)

    def fit_transform(self, X, y=None):
        """Fits, then returns ``transform(X)``."""
        return self.fit(X).transform(X)

    def score(self, X, y=None):
        """Minus the inertia of ``X`` under the centers (higher is better)."""
        X = self._x(X)
        return self._fitted.score(X, self.device)

    def to_json(self):
        """The fitted model as emgpu's model file (the CLI's ``fit --model kmeans`` output)."""
        check_is_fitted(self)
        return self._fitted.with_feature_names(_feature_names(self)).to_json()

    @classmethod
    def from_json(cls, text, **params):
        """An estimator fitted as the model file says; ``params`` set other parameters."""
        fitted = _emgpu.kmeans_from_json(text)
        est = cls(n_clusters=fitted.n_clusters, **params)
        est._set_fitted(fitted)
        est.n_features_in_ = fitted.n_features
        if fitted.feature_names is not None:
            est.feature_names_in_ = np.asarray(fitted.feature_names, dtype=object)
        return est


class _KMeansPrinter:
    """scikit-learn's verbose output of a k-means run."""

    def __call__(self, init, iteration, inertia, center_shift):
        if iteration == 1:
            print("Initialization complete")
        print(f"Iteration {iteration - 1}, inertia {inertia}.")
