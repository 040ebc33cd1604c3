#!/usr/bin/env python3
"""Writes crates/emgpu/tests/fixtures/hmmlearn_hmm.json: hmmlearn GaussianHMM (Baum-Welch) results that
emgpu's Gaussian hidden Markov models must reproduce.

Each case gives the data X (N x D, several sequences given by `lengths`, or `lengths: null` for one
sequence), explicit initial parameters (startprob, transmat, means, covariances: a warm start, so no
random initialization is involved), the fit settings, what the initial model gives (total
log-likelihood, posteriors, Viterbi path and its log-probability), and what hmmlearn computed:

    GaussianHMM(n_components=K, covariance_type=T, covars_prior=0.0, covars_weight=1,
                init_params="", params="stmc", n_iter=M, tol=TOL, implementation="log")

with the initial parameters assigned before `fit(X, lengths)`: the fitted startprob, transmat,
means, covariances, `monitor_.history`, `monitor_.iter`, `monitor_.converged`, the score, the Viterbi
path and the posteriors after the fit.  Each case also carries `expected_scaling_history`, the
history of the same fit with implementation="scaling"; the script asserts that it agrees with the
log implementation's to 1e-8 (relative).

Conventions (hmmlearn 0.3.3, checked in this script where it matters):
  - covariances are written in scikit-learn's shape: full [K][D][D], diag [K][D], spherical [K],
    tied [D][D].  This is what hmmlearn's `covars_` setter takes and what `model._covars_` holds,
    except that after a fit a spherical model's `_covars_` is [K][D] (each row constant: the M-step
    tiles the mean over features), and the `covars_` getter returns [K][D][D] for every type (except
    after a spherical fit, where, given the tiled [K][D], it returns a [K*D][D][D] array: use
    `_covars_`);
  - with covars_prior=0, covars_weight=1 (and the default means_prior=0, means_weight=0,
    startprob_prior=1, transmat_prior=1) the M-step is plain maximum likelihood: no regularization
    of the covariances, no pseudo-counts;
  - history[i] is the total log-likelihood of X under the parameters *before* the (i+1)-th M-step
    (the E-step's), so history[0] == init_score; the parameters written are those after the last
    M-step, and `score` is the log-likelihood under them (one more E-step than history has);
  - hmmlearn stops when `history[-1] - history[-2] < tol` (signed: a decrease stops it too) or when
    iter == n_iter, and `converged` is True in *both* cases (so it is True for every case here that
    ran all n_iter iterations with tol = -1e300, which "never converges early");
    `expected.converged_by_tol` says whether the tol rule itself fired;
  - tol = -inf is written as -1e300 (JSON has no infinities).

What hmmlearn does with a state that is never visited (case "unvisited_state"): if a state is
exactly unreachable (startprob 0 and a zero transmat column from every other state), or reachable
but so far from the data that its posteriors underflow to exactly 0 (e.g. unit covariance 50
standard deviations away: exp(-1250) == 0), its statistics are exactly 0 and the M-step gives
mean = 0/0 = NaN and NaN covariances (for "tied" the shared covariance is NaN for every state) with
a RuntimeWarning, a transmat row of zeros ("Some rows of transmat_ have zero sum" warning), and then
the model is unusable: `score` raises "transmat_ rows must sum to 1", a further iteration raises
"array must not contain infs or NaNs" (full).  `check_unreachable_state_gives_nan` below checks
this every time the script runs.  The fixture case therefore uses a *practically* unvisited state:
its mean 50 (data) standard deviations away from all data, but with a wide covariance (standard
deviation 25 per feature) so that its likelihood does not underflow, startprob 1e-4 and incoming
transitions 1e-4: its total occupancy (sum of posteriors) is ~1e-10 and stays tiny, and hmmlearn's
result stays finite.  Such a state is still not a fixed point: its posterior weights are
importance weights p_state(x) / p(x) dominated by a few points in the tails of the data, so EM
shrinks it onto them and after ~10-12 iterations it collapses onto one point (covariance -> 0,
occupancy -> 1) for every seed and direction tried; the case runs 8 iterations (seed and direction
chosen so that its covariance's smallest eigenvalue is still ~0.8 then) to stay clear of that.

Run:  pip install hmmlearn numpy && python3 scripts/make_fixtures_hmm.py [OUT.json]
"""
import copy
import json
import logging
import sys
import warnings

import hmmlearn
import numpy as np
from hmmlearn import hmm

NEVER = -1e300  # tol that never stops a fit early (history differences are never below it)


# ---------------------------------------------------------------------------------------------
# data


def sample_hmm(rng, startprob, transmat, means, covs, lengths):
    """Samples sequences from a Gaussian HMM (covs: one full [D][D] matrix per state)."""
    k, d = means.shape
    chol = [np.linalg.cholesky(c) for c in covs]
    xs = []
    for n in lengths:
        s = rng.choice(k, p=startprob)
        for t in range(n):
            if t > 0:
                s = rng.choice(k, p=transmat[s])
            xs.append(means[s] + chol[s] @ rng.normal(size=d))
    return np.array(xs)


def random_spd(rng, d, scale):
    a = rng.normal(size=(d, d)) * 0.5
    return scale * (np.eye(d) + a @ a.T) / (1 + 0.25 * d)


def true_model(rng, k, d, cov_type, separation=2.5):
    """A 'true' HMM: means on a random layout scaled until every pair is `separation` apart (with
    covariances ~ the identity: separated, but overlapping enough that EM takes a few dozen
    iterations to converge, so that every iteration of a fixture still moves the parameters), sticky
    transitions."""
    means = rng.normal(size=(k, d))
    # push the means apart: greedy rescale until every pair is at least `separation` apart
    while True:
        dist = min(np.linalg.norm(means[i] - means[j]) for i in range(k) for j in range(i + 1, k))
        if dist >= separation:
            break
        means *= 1.25
    if cov_type == "full":
        covs = np.array([random_spd(rng, d, rng.uniform(0.6, 1.4)) for _ in range(k)])
    elif cov_type == "tied":
        covs = np.array([random_spd(rng, d, 1.0)] * k)
    elif cov_type == "diag":
        covs = np.array([np.diag(rng.uniform(0.4, 1.6, size=d)) for _ in range(k)])
    else:
        covs = np.array([np.eye(d) * rng.uniform(0.5, 1.5) for _ in range(k)])
    startprob = rng.dirichlet(np.full(k, 2.0))
    transmat = np.empty((k, k))
    for i in range(k):
        off = rng.dirichlet(np.ones(k - 1)) * rng.uniform(0.1, 0.3)
        transmat[i] = np.insert(off, i, 1.0 - off.sum())
    return startprob, transmat, means, covs


def initial_params(rng, x, startprob, transmat, means, covs, cov_type):
    """Deterministic, deliberately imperfect starting parameters, in hmmlearn's covars_ shape."""
    k, d = means.shape
    m0 = means + 1.5 * rng.normal(size=(k, d))
    sp = 0.5 * startprob + 0.5 * rng.dirichlet(np.full(k, 3.0))
    sp /= sp.sum()
    tm = 0.6 * transmat + 0.4 * rng.dirichlet(np.full(k, 3.0), size=k)
    tm /= tm.sum(axis=1, keepdims=True)
    inflate = rng.uniform(1.5, 2.5, size=k)
    if cov_type == "full":
        c0 = np.array([inflate[i] * covs[i] + 0.3 * np.eye(d) for i in range(k)])
    elif cov_type == "tied":
        c0 = inflate.mean() * covs[0] + 0.3 * np.eye(d)
    elif cov_type == "diag":
        c0 = np.array([inflate[i] * np.diag(covs[i]) + 0.3 for i in range(k)])
    else:
        c0 = np.array([inflate[i] * np.trace(covs[i]) / d + 0.3 for i in range(k)])
    return sp, tm, m0, c0


# ---------------------------------------------------------------------------------------------
# hmmlearn


def make_model(k, cov_type, n_iter, tol, implementation, init):
    model = hmm.GaussianHMM(
        n_components=k,
        covariance_type=cov_type,
        covars_prior=0.0,
        covars_weight=1,
        init_params="",
        params="stmc",
        n_iter=n_iter,
        tol=tol,
        implementation=implementation,
    )
    model.startprob_ = np.array(init["startprob"], dtype=np.float64)
    model.transmat_ = np.array(init["transmat"], dtype=np.float64)
    model.means_ = np.array(init["means"], dtype=np.float64)
    model.covars_ = np.array(init["covariances"], dtype=np.float64)  # the setter's shape for the type
    return model


def sklearn_shape_covars(model):
    """model._covars_ in scikit-learn's shape (full [K,D,D], diag [K,D], spherical [K], tied [D,D])."""
    k, d, t = model.n_components, model.n_features, model.covariance_type
    c = np.array(model._covars_, dtype=np.float64)
    if not (t == "spherical" and c.ndim == 2):
        # the public getter gives [K, D, D]; not after a spherical fit, where it gives [K*D, D, D]
        assert np.asarray(model.covars_).shape == (k, d, d)
    if t == "spherical":
        if c.ndim == 2:  # after a fit: [K, D], each row the same value tiled
            assert c.shape == (k, d), c.shape
            assert np.array_equal(c, np.repeat(c[:, :1], d, axis=1), equal_nan=True), "spherical _covars_ rows differ"
            c = c[:, 0]
        assert c.shape == (k,), c.shape
    elif t == "tied":
        assert c.shape == (d, d), c.shape
    elif t == "diag":
        assert c.shape == (k, d), c.shape
    else:
        assert c.shape == (k, d, d), c.shape
    return c


def model_outputs(model, x, lengths):
    logprob, states = model.decode(x, lengths, algorithm="viterbi")
    return {
        "score": float(model.score(x, lengths)),
        "posteriors": model.predict_proba(x, lengths),
        "viterbi_logprob": float(logprob),
        "viterbi_states": [int(s) for s in states],
    }


def assert_viterbi_robust(model, x, lengths, states, name):
    """The Viterbi path is not a near tie: perturbing the means by 1e-9 (relative) keeps it."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        other = copy.deepcopy(model)
        other.means_ = model.means_ * (1 + 1e-9 * rng.standard_normal(model.means_.shape))
        _, s = other.decode(x, lengths, algorithm="viterbi")
        assert np.array_equal(s, states), f"{name}: the Viterbi path is a near tie"


def quiet_fit(model, x, lengths):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a NaN/overflow in a fixture is a bug here
        with np.errstate(under="ignore"):
            model.fit(x, lengths)
    return model


def run_case(name, x, lengths, cov_type, n_iter, tol, init, note=None):
    k = len(init["startprob"])
    n, d = x.shape
    assert lengths is None or sum(lengths) == n
    init = {key: np.asarray(v, dtype=np.float64) for key, v in init.items()}

    before = make_model(k, cov_type, n_iter, tol, "log", init)
    before.n_features = d
    assert np.array_equal(sklearn_shape_covars(before), init["covariances"])
    out0 = model_outputs(before, x, lengths)

    model = quiet_fit(make_model(k, cov_type, n_iter, tol, "log", init), x, lengths)
    scaled = quiet_fit(make_model(k, cov_type, n_iter, tol, "scaling", init), x, lengths)
    hist = np.array(model.monitor_.history, dtype=np.float64)
    hist_s = np.array(scaled.monitor_.history, dtype=np.float64)
    assert hist.shape == hist_s.shape, (name, hist.shape, hist_s.shape)
    rel = np.max(np.abs(hist - hist_s) / np.abs(hist))
    assert rel < 1e-8, (name, rel)
    assert np.isclose(hist[0], out0["score"], rtol=1e-12, atol=0), (name, hist[0], out0["score"])
    assert model.monitor_.iter == len(hist)
    for attr in ("startprob_", "transmat_", "means_"):
        assert np.allclose(getattr(model, attr), getattr(scaled, attr), rtol=1e-6, atol=1e-9), (name, attr)
    assert np.allclose(sklearn_shape_covars(model), sklearn_shape_covars(scaled), rtol=1e-6, atol=1e-9)

    out1 = model_outputs(model, x, lengths)
    assert_viterbi_robust(before, x, lengths, out0["viterbi_states"], name)
    assert_viterbi_robust(model, x, lengths, out1["viterbi_states"], name)
    by_tol = bool(len(hist) >= 2 and hist[-1] - hist[-2] < tol)
    case = {
        "name": name,
        "covariance_type": cov_type,
        "n_components": k,
        "n_features": d,
        "X": x.tolist(),
        "lengths": None if lengths is None else [int(v) for v in lengths],
        "n_iter": n_iter,
        "tol": float(tol),
        "init": {
            "startprob": init["startprob"].tolist(),
            "transmat": init["transmat"].tolist(),
            "means": init["means"].tolist(),
            "covariances": init["covariances"].tolist(),
        },
        "init_score": out0["score"],
        "init_posteriors": out0["posteriors"].tolist(),
        "init_viterbi_logprob": out0["viterbi_logprob"],
        "init_viterbi_states": out0["viterbi_states"],
        "expected": {
            "startprob": model.startprob_.tolist(),
            "transmat": model.transmat_.tolist(),
            "means": model.means_.tolist(),
            "covariances": sklearn_shape_covars(model).tolist(),
            "history": hist.tolist(),
            "n_iter": int(model.monitor_.iter),
            "converged": bool(model.monitor_.converged),
            "converged_by_tol": by_tol,
            "score": out1["score"],
            "viterbi_logprob": out1["viterbi_logprob"],
            "viterbi_states": out1["viterbi_states"],
            "posteriors": out1["posteriors"].tolist(),
        },
        "expected_scaling_history": hist_s.tolist(),
    }
    if note:
        case["note"] = note
    print(f"  {name:<16} {cov_type:<9} K={k} D={d} N={n:<4} sequences={1 if lengths is None else len(lengths):<2} "
          f"iter={model.monitor_.iter:<3} converged={model.monitor_.converged!s:<5} by_tol={by_tol!s:<5} "
          f"log-lik {hist[0]:.6f} -> {hist[-1]:.6f}, score {out1['score']:.6f}; scaling history rel diff {rel:.1e}")
    return case


# ---------------------------------------------------------------------------------------------
# the never-visited state


def unreachable_setup():
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + 5.0])
    startprob = np.array([0.5, 0.5, 0.0])
    transmat = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4]])
    means = np.array([[0.0, 0.0], [5.0, 5.0], [20.0, 20.0]])
    return x, startprob, transmat, means


def check_unreachable_state_gives_nan():
    """State 2 is exactly unreachable (startprob 0, transmat[:, 2] == 0 elsewhere): after one
    iteration hmmlearn's mean and covariance for it are NaN (0/0) and its transmat row is zeros,
    for every covariance type; the same happens to a reachable state whose posteriors underflow to 0
    (unit covariance, 50 standard deviations away)."""
    x, startprob, transmat, means = unreachable_setup()
    cov = {"full": np.array([np.eye(2)] * 3), "diag": np.ones((3, 2)), "spherical": np.ones(3), "tied": np.eye(2)}
    found = {}
    for cov_type, c in cov.items():
        init = {"startprob": startprob, "transmat": transmat, "means": means, "covariances": c}
        model = make_model(3, cov_type, 1, NEVER, "log", init)
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
            warnings.simplefilter("always")
            model.fit(x, [100])
        assert np.all(np.isnan(model.means_[2])), cov_type
        assert np.all(np.isnan(sklearn_shape_covars(model)[2 if cov_type != "tied" else slice(None)])), cov_type
        assert np.all(model.transmat_[2] == 0.0) and model.startprob_[2] == 0.0, cov_type
        assert any("invalid value" in str(w.message) for w in caught), cov_type
        try:
            model.score(x)
            found[cov_type] = "score works"
        except ValueError as e:
            found[cov_type] = f"score raises: {e}"
    # reachable but underflowing
    init = {"startprob": np.array([0.49, 0.49, 0.02]), "transmat": np.array([[0.89, 0.1, 0.01], [0.1, 0.89, 0.01], [0.3, 0.3, 0.4]]),
            "means": np.array([[0.0, 0.0], [5.0, 5.0], [55.0, 55.0]]), "covariances": np.array([np.eye(2)] * 3)}
    model = make_model(3, "full", 1, NEVER, "log", init)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        model.fit(x, [100])
    assert np.all(np.isnan(model.means_[2])) and np.all(model.transmat_[2] == 0.0)
    print("  exactly unreachable state: mean and covariance NaN (0/0), transmat row of zeros, after one iteration; "
          + "; ".join(f"{t}: {v}" for t, v in found.items()))
    print("  reachable state whose posteriors underflow to 0 (unit covariance 50 sd away): the same NaN")


def unvisited_case(name):
    """K = 3, D = 2: two real, well separated states and a third that is practically never visited
    (see the module docstring)."""
    rng = np.random.default_rng(2)
    sp_true = np.array([0.6, 0.4])
    tm_true = np.array([[0.85, 0.15], [0.2, 0.8]])
    mu_true = np.array([[0.0, 0.0], [5.0, 2.0]])
    cov_true = np.array([[[1.0, 0.3], [0.3, 0.8]], [[0.7, -0.2], [-0.2, 1.2]]])
    lengths = [1, 90, 120, 89]
    x = sample_hmm(rng, sp_true, tm_true, mu_true, cov_true, lengths)
    sd = float(np.sqrt(x.var(axis=0).max()))
    eps = 1e-4
    far = x.mean(axis=0) + 50.0 * sd * np.array([-1.0, 0.0])
    far_from_data = np.min(np.linalg.norm(x - far, axis=1)) / sd
    assert far_from_data > 45.0, far_from_data
    init = {
        "startprob": [0.55 - eps / 2, 0.45 - eps / 2, eps],
        "transmat": [[0.8 - eps, 0.2, eps], [0.25, 0.75 - eps, eps], [0.3, 0.3, 0.4]],
        "means": np.vstack([mu_true + np.array([[0.6, -0.5], [-0.7, 0.4]]), far]),
        "covariances": np.array([2.0 * cov_true[0], 1.8 * cov_true[1], 625.0 * np.eye(2)]),
    }
    case = run_case(name, x, lengths, "full", 8, NEVER, init,
                    note="state 2 is practically unvisited: mean 50 data standard deviations from all data, "
                         "covariance 625 I, startprob 1e-4, incoming transitions 1e-4; 8 iterations, well before EM "
                         "collapses it onto one point (an exactly unreachable state gives NaN in hmmlearn: "
                         "see scripts/make_fixtures_hmm.py)")
    occ0 = float(np.sum(np.array(case["init_posteriors"])[:, 2]))
    occ1 = float(np.sum(np.array(case["expected"]["posteriors"])[:, 2]))
    assert 0.0 < occ0 < 1e-3 and 0.0 < occ1 < 1e-3, (occ0, occ1)
    assert all(np.isfinite(np.asarray(case["expected"][key], dtype=float)).all()
               for key in ("startprob", "transmat", "means", "covariances"))
    case["unvisited_state"] = 2
    case["unvisited_occupancy"] = {"init": occ0, "expected": occ1}
    print(f"  {'':<16} state 2 occupancy (sum of posteriors): {occ0:.3e} under the init model, {occ1:.3e} after the fit")
    return case


# ---------------------------------------------------------------------------------------------


def regular_case(name, seed, k, d, cov_type, lengths, n_iter, tol=NEVER):
    rng = np.random.default_rng(seed)
    startprob, transmat, means, covs = true_model(rng, k, d, cov_type)
    x = sample_hmm(rng, startprob, transmat, means, covs, lengths if lengths is not None else [300])
    sp, tm, m0, c0 = initial_params(rng, x, startprob, transmat, means, covs, cov_type)
    init = {"startprob": sp, "transmat": tm, "means": m0, "covariances": c0}
    return run_case(name, x, lengths, cov_type, n_iter, tol, init)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "crates/emgpu/tests/fixtures/hmmlearn_hmm.json"
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    print(f"hmmlearn {hmmlearn.__version__}, numpy {np.__version__}")
    check_unreachable_state_gives_nan()
    cases = [
        regular_case("full", 101, 3, 2, "full", [1, 40, 75, 110, 124], 10),
        regular_case("diag", 102, 4, 3, "diag", [60, 1, 90, 149], 12),
        regular_case("spherical", 103, 2, 2, "spherical", [100, 1, 80, 119], 15),
        regular_case("tied", 104, 3, 3, "tied", [1, 50, 100, 149], 8),
        regular_case("single_sequence", 105, 3, 2, "full", None, 20),
        unvisited_case("unvisited_state"),
        regular_case("early_stop", 111, 3, 2, "full", [50, 1, 150, 99], 100, tol=1e-2),
    ]
    early = cases[-1]["expected"]
    assert early["converged_by_tol"] and early["n_iter"] < 100, early["n_iter"]
    # not a close call: the last step is well under tol, the one before well over it
    steps = np.diff(early["history"])
    assert steps[-1] < 0.8 * cases[-1]["tol"] and np.all(steps[:-1] > 1.2 * cases[-1]["tol"]), steps
    for c in cases[:-1]:
        assert c["expected"]["n_iter"] == c["n_iter"] and not c["expected"]["converged_by_tol"], c["name"]
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names)
    doc = {
        "generator": "scripts/make_fixtures_hmm.py",
        "hmmlearn_version": hmmlearn.__version__,
        "numpy_version": np.__version__,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out} (hmmlearn {hmmlearn.__version__}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
