#!/usr/bin/env python3
"""Time hmmlearn's GaussianHMM (Baum-Welch) and emgpu per EM iteration on the same sequences, from the
same initial parameters, in the same run, and print the ratios.  A side-by-side benchmark, not a test.

The issue's benchmark: 1,000 sequences x 1,000 steps, K = 8 states, D = 4 features, full covariances.
The script
  - draws the sequences from a known HMM with numpy (seeded: the same flags give the same data) and
    writes X.npy (float64 [N, D]), lengths.npy (int64) and init.json (deliberately imperfect initial
    parameters, an emgpu model file: {"model": "hmm", "covariance_type", "n_features",
    "n_components", "startprob", "transmat", "means", "covariances" (scikit-learn's shape)}) into a
    temporary directory;
  - times hmmlearn, implementation="scaling" and implementation="log", from those parameters
    (init_params="", params="stmc", covars_prior=0, covars_weight=1, tol=-1e300 so that it never
    stops early) for ITERS iterations, each timed (from hmmlearn's convergence monitor; the setup
    before the loop is not counted);
  - runs `emgpu fit --model hmm --input X.npy --lengths lengths.npy --components 8 --covariance full
    --init init.json --max-iter ITERS --tol 0 --reg-covar 0 --backend cpu --json --output out.json`
    (and --backend gpu with --gpu), and takes its time per iteration from the --json line: per-
    iteration timings if the line has them, else fit_seconds / n_iter, else wall time / ITERS (the
    table says which);
and prints a table: implementation, s/iteration, hmmlearn / emgpu ratio, final total log-likelihood
and its relative difference from hmmlearn's "log" implementation (they should agree to ~1e-6).  The
final log-likelihood is that of the last E-step, i.e. of the parameters before the last M-step
(hmmlearn's monitor_.history[-1]; emgpu's lower_bound / log_likelihood, the GMM convention).

`--long` fits one sequence of SEQUENCES x STEPS steps instead (to show that a single long sequence
is not slower per step; hmmlearn is timed on it too).

hmmlearn runs in a subprocess whose environment has OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed
(so that OpenBLAS picks its own kernel for this CPU); the BLAS it used (threadpoolctl), the numpy and
hmmlearn versions and os.cpu_count() are printed.  To run the whole script that way:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 scripts/compare_hmmlearn.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 scripts/compare_hmmlearn.py --sequences 100 --steps 1000
    python3 scripts/compare_hmmlearn.py --long --gpu --emgpu target/release/emgpu --json out.json

Needs numpy, hmmlearn (pip install hmmlearn) and threadpoolctl, and a built emgpu (cargo build
--release; --emgpu to use another binary).  `--implementations none` times emgpu only,
`--no-emgpu` hmmlearn only.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# data


def true_hmm(rng, k, d):
    """A sticky HMM with full covariances; means a few standard deviations apart."""
    means = rng.normal(size=(k, d)) * 3.0
    covs = []
    for _ in range(k):
        a = rng.normal(size=(d, d)) * 0.4
        covs.append(np.eye(d) * rng.uniform(0.5, 1.5) + a @ a.T)
    startprob = rng.dirichlet(np.full(k, 2.0))
    transmat = np.empty((k, k))
    for i in range(k):
        off = rng.dirichlet(np.ones(k - 1)) * rng.uniform(0.05, 0.3)
        transmat[i] = np.insert(off, i, 1.0 - off.sum())
    return startprob, transmat, means, np.array(covs)


def sample_states(rng, startprob, transmat, n_seq, steps):
    """[n_seq, steps] state paths, all sequences stepped together."""
    cum = np.cumsum(transmat, axis=1)
    cum[:, -1] = 1.0
    states = np.empty((n_seq, steps), dtype=np.int64)
    s = np.minimum(np.searchsorted(np.cumsum(startprob), rng.random(n_seq), side="right"), len(startprob) - 1)
    states[:, 0] = s
    if n_seq == 1:  # one long sequence: a plain loop over precomputed uniforms (~1 s per 1M steps)
        rows = cum.tolist()
        u = rng.random(steps).tolist()
        path = states[0]
        cur = int(s[0])
        import bisect
        for t in range(1, steps):
            cur = min(bisect.bisect_right(rows[cur], u[t]), len(rows) - 1)
            path[t] = cur
        return states
    for t in range(1, steps):
        u = rng.random(n_seq)
        s = (cum[s] <= u[:, None]).sum(axis=1)
        s = np.minimum(s, len(startprob) - 1)
        states[:, t] = s
    return states


def make_data(args, out_dir):
    rng = np.random.default_rng(args.seed)
    k, d = args.components, args.features
    startprob, transmat, means, covs = true_hmm(rng, k, d)
    if args.long:
        n_seq, steps = 1, args.sequences * args.steps
    else:
        n_seq, steps = args.sequences, args.steps
    states = sample_states(rng, startprob, transmat, n_seq, steps).reshape(-1)
    z = rng.standard_normal((states.size, d))
    chol = np.linalg.cholesky(covs)
    x = means[states] + np.einsum("nij,nj->ni", chol[states], z)
    lengths = np.full(n_seq, steps, dtype=np.int64)
    np.save(out_dir / "X.npy", np.ascontiguousarray(x, dtype=np.float64))
    np.save(out_dir / "lengths.npy", lengths)

    # deliberately imperfect start: perturbed means, inflated covariances, mixed probabilities
    init_means = means + 1.0 * rng.normal(size=means.shape)
    init_covs = covs * rng.uniform(1.5, 2.5, size=(k, 1, 1)) + 0.2 * np.eye(d)
    init_start = 0.5 * startprob + 0.5 * rng.dirichlet(np.full(k, 3.0))
    init_start /= init_start.sum()
    init_trans = 0.6 * transmat + 0.4 * rng.dirichlet(np.full(k, 3.0), size=k)
    init_trans /= init_trans.sum(axis=1, keepdims=True)
    init = {
        "model": "hmm",
        "covariance_type": "full",
        "n_features": d,
        "n_components": k,
        "startprob": init_start.tolist(),
        "transmat": init_trans.tolist(),
        "means": init_means.tolist(),
        "covariances": init_covs.tolist(),
    }
    (out_dir / "init.json").write_text(json.dumps(init))
    return x.shape[0], n_seq, steps


# ---------------------------------------------------------------------------------------------
# hmmlearn (in a subprocess)


def hmmlearn_worker(args):
    """Runs in the subprocess: times one hmmlearn implementation, prints one JSON line."""
    import logging

    import hmmlearn
    from hmmlearn import hmm
    from hmmlearn.base import ConvergenceMonitor
    from threadpoolctl import threadpool_info

    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    data = Path(args.data)
    x = np.load(data / "X.npy")
    lengths = np.load(data / "lengths.npy")
    init = json.loads((data / "init.json").read_text())

    class TimedMonitor(ConvergenceMonitor):
        """hmmlearn's monitor, with a clock: reset right before the EM loop, report after each M-step."""

        def _reset(self):
            super()._reset()
            self.stamps = [time.perf_counter()]

        def report(self, log_prob):
            self.stamps.append(time.perf_counter())
            super().report(log_prob)

    model = hmm.GaussianHMM(
        n_components=init["n_components"],
        covariance_type=init["covariance_type"],
        covars_prior=0.0,
        covars_weight=1,
        init_params="",
        params="stmc",
        n_iter=args.iters,
        tol=-1e300,
        implementation=args.implementation,
    )
    model.monitor_ = TimedMonitor(model.tol, model.n_iter, model.verbose)
    model.startprob_ = np.array(init["startprob"])
    model.transmat_ = np.array(init["transmat"])
    model.means_ = np.array(init["means"])
    model.covars_ = np.array(init["covariances"])
    t = time.perf_counter()
    model.fit(x, lengths)
    total = time.perf_counter() - t
    stamps = model.monitor_.stamps
    iter_s = [b - a for a, b in zip(stamps, stamps[1:])]
    np.savez(data / f"hmmlearn_{args.implementation}.npz", startprob=model.startprob_, transmat=model.transmat_,
             means=model.means_, covariances=model._covars_)
    blas = [
        {k: v for k, v in info.items() if k in ("internal_api", "architecture", "num_threads", "version", "threading_layer")}
        for info in threadpool_info()
    ]
    print(json.dumps({
        "implementation": args.implementation,
        "iter_s": iter_s,
        "fit_s": total,
        "history": [float(v) for v in model.monitor_.history],
        "n_iter": int(model.monitor_.iter),
        "hmmlearn": hmmlearn.__version__,
        "numpy": np.__version__,
        "blas": blas,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }))


def time_hmmlearn(data_dir, iters, implementation):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    cmd = [sys.executable, __file__, "--hmmlearn-worker", "--data", str(data_dir), "--iters", str(iters),
           "--implementation", implementation]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"hmmlearn ({implementation}) failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# emgpu


class EmgpuFailed(Exception):
    pass


def time_emgpu(binary, data_dir, args, backend):
    out_json = Path(data_dir) / f"emgpu_{backend}.json"
    cmd = [str(binary), "fit", "--model", "hmm", "--input", str(Path(data_dir) / "X.npy"),
           "--lengths", str(Path(data_dir) / "lengths.npy"), "--components", str(args.components),
           "--covariance", "full", "--init", str(Path(data_dir) / "init.json"), "--max-iter", str(args.iters),
           "--tol", "0", "--reg-covar", "0", "--backend", backend, "--json", "--output", str(out_json)]
    if not Path(binary).exists():
        raise EmgpuFailed(f"no emgpu binary at {binary}: build it (cargo build --release) or pass --emgpu PATH")
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise EmgpuFailed(
            f"emgpu rejected the HMM fit (exit status {proc.returncode}):\n    {' '.join(cmd)}\n"
            + "\n".join("    | " + line for line in tail.splitlines())
            + "\n  This binary has no `fit --model hmm` (with --lengths) yet, or rejects one of the flags above: "
              "build emgpu with Gaussian HMMs (cargo build --release) or pass --emgpu PATH to one that has them.")
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise EmgpuFailed(f"emgpu printed no --json line:\n{proc.stdout}{proc.stderr}")
    doc = json.loads(lines[-1])
    n_iter = doc.get("n_iter") or args.iters
    # time per iteration: per-iteration timings if the line has them, else fit_seconds / n_iter, else wall / iters
    if isinstance(doc.get("iter_ms"), list) and doc["iter_ms"]:
        per_iter, source = statistics.median(doc["iter_ms"]) / 1e3, "median of iter_ms"
    elif isinstance(doc.get("iter_seconds"), list) and doc["iter_seconds"]:
        per_iter, source = statistics.median(doc["iter_seconds"]), "median of iter_seconds"
    elif isinstance(doc.get("fit_seconds"), (int, float)):
        per_iter, source = doc["fit_seconds"] / n_iter, "fit_seconds / n_iter (includes setup)"
    else:
        per_iter, source = wall / args.iters, "process wall time / iterations (includes start-up and loading)"
    loglik, key = None, None
    for key in ("log_likelihood", "lower_bound", "score"):
        if isinstance(doc.get(key), (int, float)):
            loglik = float(doc[key])
            break
    else:
        key = None
    model = None
    try:
        model = json.loads(out_json.read_text())
    except (OSError, ValueError):
        pass
    return {"backend": backend, "device": doc.get("device"), "per_iter_s": per_iter, "timing_source": source,
            "wall_s": wall, "n_iter": n_iter, "loglik": loglik, "loglik_key": key, "line": doc, "model": model}


def param_diff(model, ref):
    """Largest absolute differences between emgpu's fitted model file and hmmlearn's parameters."""
    if not model:
        return None
    out = {}
    for name in ("startprob", "transmat", "means", "covariances"):
        if name in model:
            a = np.asarray(model[name], dtype=np.float64)
            b = np.asarray(ref[name], dtype=np.float64)
            if a.shape == b.shape:
                out[name] = float(np.max(np.abs(a - b)))
    return out or None


# ---------------------------------------------------------------------------------------------


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=1000, help="number of sequences (default 1000)")
    ap.add_argument("--steps", type=int, default=1000, help="steps per sequence (default 1000)")
    ap.add_argument("--long", action="store_true", help="one sequence of SEQUENCES x STEPS steps instead")
    ap.add_argument("--iters", type=int, default=5, help="EM iterations per fit (default 5)")
    ap.add_argument("--components", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--features", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--emgpu", default=str(ROOT / "target" / "release" / "emgpu"), help="emgpu binary (default target/release/emgpu)")
    ap.add_argument("--gpu", action="store_true", help="also time emgpu --backend gpu")
    ap.add_argument("--no-emgpu", action="store_true", help="time hmmlearn only")
    ap.add_argument("--implementations", default="scaling,log", help="hmmlearn implementations to time (default scaling,log; 'none')")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--hmmlearn-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--implementation", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hmmlearn_worker:
        return hmmlearn_worker(args)

    impls = [] if args.implementations == "none" else args.implementations.split(",")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cpu_name()}, os.cpu_count() = {os.cpu_count()} ({cpus} usable), {platform.system()} {platform.release()}")
    results, failure = [], None
    with tempfile.TemporaryDirectory(prefix="emgpu-hmm-compare-") as tmp:
        data_dir = Path(tmp)
        t = time.perf_counter()
        n, n_seq, steps = make_data(args, data_dir)
        print(f"data: {n_seq} sequence(s) x {steps} steps = {n} rows, D = {args.features}, K = {args.components}, "
              f"full covariances, seed {args.seed} (generated in {time.perf_counter() - t:.1f} s); "
              f"{args.iters} EM iterations from the same start, no early stop", flush=True)
        for impl in impls:
            print(f"hmmlearn implementation={impl!r} ...", end="", flush=True)
            r = time_hmmlearn(data_dir, args.iters, impl)
            print(f" {statistics.median(r['iter_s']):.2f} s/iteration", flush=True)
            ref = dict(np.load(data_dir / f"hmmlearn_{impl}.npz"))
            results.append({"name": f"hmmlearn {impl}", "per_iter_s": statistics.median(r["iter_s"]),
                            "timing_source": "median of the iterations (hmmlearn's monitor)",
                            "loglik": r["history"][-1], "raw": r, "params": ref})
        if not args.no_emgpu:
            for backend in ["cpu"] + (["gpu"] if args.gpu else []):
                print(f"emgpu --backend {backend} ...", end="", flush=True)
                try:
                    e = time_emgpu(args.emgpu, data_dir, args, backend)
                except EmgpuFailed as err:
                    print(" failed", flush=True)
                    failure = str(err)
                    break
                print(f" {e['per_iter_s']:.4f} s/iteration", flush=True)
                results.append({"name": f"emgpu {backend}", "per_iter_s": e["per_iter_s"], "timing_source": e["timing_source"],
                                "loglik": e["loglik"], "raw": e})

    hm = [r for r in results if r["name"].startswith("hmmlearn")]
    em = [r for r in results if r["name"].startswith("emgpu")]
    print()
    if hm:
        r0 = hm[0]["raw"]
        blas = ", ".join("{} {} ({}, {} threads)".format(b.get("internal_api"), b.get("version"), b.get("architecture"), b.get("num_threads"))
                         for b in r0["blas"])
        print(f"hmmlearn {r0['hmmlearn']}, numpy {r0['numpy']}; BLAS that ran: {blas}; os.cpu_count() = {os.cpu_count()}")
    for e in em:
        print(f"{e['name']}: {e['raw']['device']}")
    ref = next((r for r in hm if r["name"] == "hmmlearn log"), hm[0] if hm else None)
    emgpu_cpu = em[0]["per_iter_s"] if em else None
    print()
    header = f"{'implementation':<18} {'s/iteration':>12} {'vs emgpu cpu':>13} {'final log-likelihood':>24} {'rel. diff':>10}  timing"
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = f"{r['per_iter_s'] / emgpu_cpu:>12.1f}x" if emgpu_cpu else f"{'-':>13}"
        ll = f"{r['loglik']:>24.10f}" if r["loglik"] is not None else f"{'-':>24}"
        rel = (f"{abs(r['loglik'] - ref['loglik']) / abs(ref['loglik']):>10.1e}"
               if ref is not None and r["loglik"] is not None else f"{'-':>10}")
        print(f"{r['name']:<18} {r['per_iter_s']:>12.4f} {ratio} {ll} {rel}  {r['timing_source']}")
    print()
    if ref is not None:
        if emgpu_cpu:
            print("vs emgpu cpu: the row's s/iteration over emgpu cpu's (for hmmlearn: how many times slower it is)")
        print(f"rel. diff: |log-likelihood - {ref['name']}'s| / |{ref['name']}'s|; the log-likelihood is the last "
              f"E-step's (before the last M-step: hmmlearn's monitor_.history[-1]"
              + (f", emgpu's '{em[0]['raw']['loglik_key']}'" if em and em[0]["raw"]["loglik_key"] else "") + ")")
        for e in em:
            d = param_diff(e["raw"]["model"], ref["params"])
            if d:
                print(f"{e['name']} vs {ref['name']}, largest absolute parameter differences: "
                      + ", ".join(f"{k} {v:.1e}" for k, v in d.items()))
    if args.json:
        def clean(r):
            r = {k: v for k, v in r.items() if k != "params"}
            if "raw" in r and isinstance(r["raw"], dict):
                r["raw"] = {k: v for k, v in r["raw"].items() if k != "model"}
            return r
        Path(args.json).write_text(json.dumps({"machine": cpu_name(), "cpu_count": os.cpu_count(), "args": vars(args),
                                               "results": [clean(r) for r in results], "emgpu_failure": failure}, indent=1))
    if failure:
        print()
        print(failure, file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
