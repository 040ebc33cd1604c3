#!/usr/bin/env python3
"""Time scikit-learn's GaussianMixture and emgpu per EM iteration on the same data, from the same
initial parameters, in the same run, and print the ratios.

For each case, emgpu's benchmark generator writes the data (X.npy, float32) and the initial
parameters (init.json); then
  - scikit-learn (float64, tol = 0) starts from those parameters (weights_init, means_init,
    precisions_init) and runs ITERS iterations of exactly what `GaussianMixture.fit` runs per
    iteration (`_e_step`, `_m_step`, `_compute_lower_bound`), each timed;
  - emgpu fits the memory-mapped X.npy from init.json, ITERS iterations, tol = 0, each timed
    (`emgpu bench --input X.npy --init init.json --backend cpu --json`);
and the table gives the median time per iteration of each, their ratio and both final lower bounds.

scikit-learn runs in a subprocess whose environment has OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
removed (so OpenBLAS picks its own kernel for this CPU); the BLAS it used (threadpoolctl) is printed.

    python3 scripts/compare_sklearn.py                 # the three cases of the README
    python3 scripts/compare_sklearn.py --cases 1m-diag --iters 5 --repeat 2
    python3 scripts/compare_sklearn.py --cases issue19       # every GMM row of issue 19's table
    python3 scripts/compare_sklearn.py --json out.json

Needs numpy, scikit-learn and threadpoolctl; builds emgpu with cargo (`--bench-bin` or `--backend`
to change what is timed: `--backend gpu` times emgpu's GPU backend instead of the CPU's).
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

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "1m-full": dict(n=1_000_000, d=16, k=16, covariance="full"),
    "1m-diag": dict(n=1_000_000, d=16, k=16, covariance="diag"),
    "200k-2d-full": dict(n=200_000, d=2, k=8, covariance="full"),
    # The other rows of issue 19's table, and its D = 128 shapes (report only).
    "1m-tied": dict(n=1_000_000, d=16, k=16, covariance="tied"),
    "1m-spherical": dict(n=1_000_000, d=16, k=16, covariance="spherical"),
    "200k-64-diag": dict(n=200_000, d=64, k=64, covariance="diag"),
    "100k-64-full": dict(n=100_000, d=64, k=16, covariance="full"),
    "100k-128-diag": dict(n=100_000, d=128, k=64, covariance="diag"),
    "100k-128-full": dict(n=100_000, d=128, k=64, covariance="full"),
}
# The README's three cases run by default; `--cases issue19` runs the rows of issue 19's table.
DEFAULT_CASES = "1m-full,1m-diag,200k-2d-full"
CASE_GROUPS = {"issue19": "1m-full,1m-tied,1m-diag,1m-spherical,200k-64-diag,100k-64-full,100k-128-diag,100k-128-full"}

# scikit-learn 1.9.1 on a 2-core machine of the kind emgpu is developed on (issue 5), ms/iteration.
ISSUE_SKLEARN_MS = {"1m-full": 3288.0, "1m-diag": 677.0, "200k-2d-full": 147.0}
# Issue 19's table (scikit-learn 1.9.1, 2 cores), ms/iteration; no figure for the D = 128 cases.
ISSUE_SKLEARN_MS.update({"1m-tied": 3020.0, "1m-spherical": 855.0, "200k-64-diag": 804.0, "100k-64-full": 2064.0})


def sklearn_worker(args):
    """Runs in the subprocess: times scikit-learn, prints one JSON line."""
    import numpy as np
    from sklearn.mixture import GaussianMixture
    import sklearn
    from threadpoolctl import threadpool_info

    x = np.load(Path(args.data) / "X.npy").astype(np.float64)
    init = json.loads((Path(args.data) / "init.json").read_text())
    k, d = init["n_components"], init["n_features"]
    cov_type = init["covariance_type"]
    cov = np.array(init["covariances"], dtype=np.float64)  # scikit-learn's shape (an emgpu model file)
    if cov_type == "full":
        precisions = np.linalg.inv(cov)
    elif cov_type == "tied":
        precisions = np.linalg.inv(cov)
    else:
        precisions = 1.0 / cov
    gm = GaussianMixture(
        n_components=k,
        covariance_type=cov_type,
        tol=0.0,
        max_iter=args.iters,
        reg_covar=1e-6,
        weights_init=np.array(init["weights"]),
        means_init=np.array(init["means"]).reshape(k, d),
        precisions_init=precisions,
        init_params="random_from_data",
    )
    # What GaussianMixture.fit does before its loop (no k-means: the initial parameters are given),
    # then its loop body, timed per iteration.
    from sklearn.utils._array_api import get_namespace

    xp, _ = get_namespace(x)
    gm._check_parameters(x, xp=xp)
    gm._initialize(x, None, xp=xp)
    times, bounds = [], []
    for _ in range(args.iters):
        t = time.perf_counter()
        log_prob_norm, log_resp = gm._e_step(x, xp=xp)
        gm._m_step(x, log_resp, xp=xp)
        lb = gm._compute_lower_bound(log_resp, log_prob_norm)
        times.append((time.perf_counter() - t) * 1e3)
        bounds.append(float(lb))
    blas = [
        {k2: v for k2, v in info.items() if k2 in ("internal_api", "architecture", "num_threads", "version", "threading_layer")}
        for info in threadpool_info()
    ]
    print(json.dumps({
        "iter_ms": times,
        "lower_bounds": bounds,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "blas": blas,
        "env": {k2: os.environ.get(k2) for k2 in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }))


def run(cmd, env=None):
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"command failed: {' '.join(map(str, cmd))}")
    return out.stdout


BENCH_BIN = None  # --bench-bin: a built emgpu binary instead of target/release/emgpu
EMGPU_BACKEND = "cpu"


def emgpu_cmd(extra):
    head = [BENCH_BIN or str(ROOT / "target" / "release" / "emgpu"), "bench", "--quiet"]
    return head + [str(a) for a in extra]


def time_sklearn(data_dir, iters):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    out = run([sys.executable, __file__, "--sklearn-worker", "--data", data_dir, "--iters", str(iters)], env=env)
    return json.loads(out.strip().splitlines()[-1])


def time_emgpu(data_dir, iters):
    out = run(emgpu_cmd(["--input", Path(data_dir) / "X.npy", "--init", Path(data_dir) / "init.json", "--iters", iters,
                         "--backend", EMGPU_BACKEND, "--json"]))
    doc = json.loads(out.strip().splitlines()[-1])
    r = doc["runs"][0]
    return {"iter_ms": r["iter_ms"], "lower_bounds": r["lower_bounds"], "device": r["device"], "memory": doc["memory_mib"]}


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
    ap.add_argument("--cases", default=DEFAULT_CASES,
                    help=f"comma-separated, from {', '.join(CASES)}; or a group: {', '.join(CASE_GROUPS)}")
    ap.add_argument("--iters", type=int, default=5, help="EM iterations per fit (default 5)")
    ap.add_argument("--repeat", type=int, default=1, help="run each case this many times (alternating)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--bench-bin", help="a built emgpu binary (default: cargo build --release, then target/release/emgpu)")
    ap.add_argument("--backend", default="cpu", help="emgpu backend to time: cpu (default) or gpu")
    ap.add_argument("--sklearn-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sklearn_worker:
        return sklearn_worker(args)
    args.cases = CASE_GROUPS.get(args.cases, args.cases)

    global BENCH_BIN, EMGPU_BACKEND
    BENCH_BIN = args.bench_bin
    EMGPU_BACKEND = args.backend
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cpu_name()}, {cpus} CPUs usable of {os.cpu_count()}, {platform.system()} {platform.release()}", flush=True)
    if not BENCH_BIN:
        run(["cargo", "build", "--quiet", "--release", "--bin", "emgpu"])
    results = []
    with tempfile.TemporaryDirectory(prefix="emgpu-compare-") as tmp:
        for name in args.cases.split(","):
            case = CASES[name]
            data_dir = Path(tmp) / name
            run(emgpu_cmd(["--n", case["n"], "--d", case["d"], "--k", case["k"], "--covariance", case["covariance"],
                           "--seed", args.seed, "--write-data", data_dir]))
            for rep in range(args.repeat):
                print(f"{name} (run {rep + 1}/{args.repeat}): scikit-learn ...", end="", flush=True)
                sk = time_sklearn(str(data_dir), args.iters)
                print(" emgpu ...", end="", flush=True)
                em = time_emgpu(str(data_dir), args.iters)
                print(" done", flush=True)
                results.append({"case": name, **case, "iters": args.iters, "run": rep + 1, "sklearn": sk, "emgpu": em})
            (data_dir / "X.npy").unlink()

    blas = results[0]["sklearn"]["blas"] if results else []
    print()
    blas_text = ", ".join(
        "{} {} ({}, {} threads)".format(b.get("internal_api"), b.get("version"), b.get("architecture"), b.get("num_threads"))
        for b in blas
    )
    print(f"scikit-learn {results[0]['sklearn']['sklearn']}, numpy {results[0]['sklearn']['numpy']}; BLAS that ran: {blas_text}")
    print(f"emgpu: {results[0]['emgpu']['device']}" if results else "")
    print()
    header = (f"{'case':<14} {'N':>9} {'D':>3} {'K':>3} {'cov':<5} {'sklearn ms/it':>14} {'emgpu ms/it':>12} {'ratio':>7} "
              f"{'best-of ratio':>14} {'vs issue':>9} {'lower bound sklearn':>21} {'lower bound emgpu':>21}")
    print(header)
    print("-" * len(header))
    for r in results:
        sk_ms = statistics.median(r["sklearn"]["iter_ms"])
        em_ms = statistics.median(r["emgpu"]["iter_ms"])
        r["sklearn_median_ms"], r["emgpu_median_ms"], r["ratio"] = sk_ms, em_ms, sk_ms / em_ms
        r["ratio_vs_issue_sklearn"] = ISSUE_SKLEARN_MS.get(r["case"], float("nan")) / em_ms
        r["best_ratio"] = min(r["sklearn"]["iter_ms"]) / min(r["emgpu"]["iter_ms"])
        print(f"{r['case']:<14} {r['n']:>9} {r['d']:>3} {r['k']:>3} {r['covariance']:<5} {sk_ms:>14.1f} {em_ms:>12.1f} "
              f"{r['ratio']:>6.1f}x {r['best_ratio']:>13.1f}x {r['ratio_vs_issue_sklearn']:>8.1f}x "
              f"{r['sklearn']['lower_bounds'][-1]:>21.12f} {r['emgpu']['lower_bounds'][-1]:>21.12f}")
    print()
    print("ratio: scikit-learn / emgpu, medians of the iterations of this run; best-of ratio: the fastest "
          "iteration of each (less sensitive to other load on a shared machine); 'vs issue': the scikit-learn "
          "time the issue that filed the case measured, over this run's emgpu median (nan: none).")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": cpu_name(), "cpus": cpus, "results": results}, indent=1))


if __name__ == "__main__":
    main()
