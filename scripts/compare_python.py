#!/usr/bin/env python3
"""Time emgpu's Python estimator against scikit-learn, and check it keeps the CLI's speed.

In one run, on the same data (emgpu's benchmark generator: `emgpu bench --write-data`, float32
X.npy) from the same initial parameters (its init.json), ITERS EM iterations with tol = 0 of
  - scikit-learn's GaussianMixture (float64): its per-iteration loop body, timed by
    scripts/compare_sklearn.py's worker in a subprocess whose environment has OPENBLAS_CORETYPE
    and OPENBLAS_L2_SIZE removed (so OpenBLAS picks its own kernel for this CPU; the BLAS that ran
    is printed, from threadpoolctl);
  - emgpu.GaussianMixture(device="cpu").fit on the memory-mapped X.npy (np.load(mmap_mode="r"));
  - the CLI: `emgpu bench --input X.npy --init init.json --backend cpu`;
and prints the median milliseconds per iteration of each, the ratios scikit-learn / emgpu for
the Python package and for the CLI, and whether they agree within 10 %. scikit-learn runs once;
the two emgpu fits alternate --repeat times (default 3) and their medians are over all the
iterations of all the runs, so that other load on a shared machine falls on both alike. A Python
iteration is the wall time between two iterations' progress callbacks (the first also holds the
fit's setup: validating X, building the engine); a CLI iteration is its E-step plus M-step.

    python3 scripts/compare_python.py                    # 1M x 16 x 16 full, 3 iterations
    python3 scripts/compare_python.py --n 200000 --iters 5 --repeat 5

Needs the emgpu package installed (pip install ./python), scikit-learn, threadpoolctl, and the
emgpu binary (built with cargo unless --bench-bin names one).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import compare_sklearn  # noqa: E402  (its scikit-learn worker and CLI timing, reused as they are)


def time_python(data_dir, iters):
    import emgpu
    from sklearn.exceptions import ConvergenceWarning

    init = emgpu.GaussianMixture.from_json((Path(data_dir) / "init.json").read_text())
    x = np.load(Path(data_dir) / "X.npy", mmap_mode="r")
    gm = emgpu.GaussianMixture(
        init.n_components,
        covariance_type=init.covariance_type,
        tol=0.0,
        max_iter=iters,
        weights_init=init.weights_,
        means_init=init.means_,
        precisions_init=init.precisions_,
        device="cpu",
    )
    stamps = []
    gm._iteration_hook = lambda *a: stamps.append(time.perf_counter())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        gm.fit(x)
        total = time.perf_counter() - t0
    edges = [t0] + stamps
    iter_ms = [(b - a) * 1e3 for a, b in zip(edges, edges[1:])]
    return {"iter_ms": iter_ms, "fit_ms": total * 1e3, "lower_bounds": gm.lower_bounds_,
            "backend": gm._fitted.backend}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--covariance", default="full")
    ap.add_argument("--iters", type=int, default=3, help="EM iterations per fit (default 3)")
    ap.add_argument("--repeat", type=int, default=3, help="emgpu runs of each kind, alternating (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench-bin", help="a built emgpu binary (default: target/release/emgpu, built if absent)")
    args = ap.parse_args()

    compare_sklearn.BENCH_BIN = args.bench_bin
    binary = Path(args.bench_bin or ROOT / "target" / "release" / "emgpu")
    if not binary.exists():
        compare_sklearn.run(["cargo", "build", "--quiet", "--release", "--bin", "emgpu"])
    print(f"machine: {compare_sklearn.cpu_name()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="emgpu-bench-py-") as tmp:
        data = Path(tmp) / "data"
        compare_sklearn.run(compare_sklearn.emgpu_cmd(
            ["--n", args.n, "--d", args.d, "--k", args.k, "--covariance", args.covariance,
             "--seed", args.seed, "--write-data", data]))
        print(f"{args.n} x {args.d} x {args.k} {args.covariance}, {args.iters} iterations from the same start")
        print("scikit-learn ...", end="", flush=True)
        sk = compare_sklearn.time_sklearn(str(data), args.iters)
        pys, clis = [], []
        for _ in range(args.repeat):
            print(" emgpu (Python) ...", end="", flush=True)
            pys.append(time_python(str(data), args.iters))
            print(" emgpu (CLI) ...", end="", flush=True)
            clis.append(compare_sklearn.time_emgpu(str(data), args.iters))
        print(" done\n", flush=True)
    py, cli = pys[-1], clis[-1]

    blas = ", ".join(
        "{} {} ({}, {} threads)".format(b.get("internal_api"), b.get("version"), b.get("architecture"), b.get("num_threads"))
        for b in sk["blas"]
    )
    print(f"scikit-learn {sk['sklearn']}, numpy {sk['numpy']}; BLAS that ran: {blas}")
    print(f"emgpu Python: {py['backend']}; CLI: {cli['device']}\n")
    sk_ms = statistics.median(sk["iter_ms"])
    py_ms = statistics.median([t for r in pys for t in r["iter_ms"]])
    cli_ms = statistics.median([t for r in clis for t in r["iter_ms"]])
    print("per run, median ms/iteration: Python "
          + ", ".join(f"{statistics.median(r['iter_ms']):.1f}" for r in pys)
          + "; CLI " + ", ".join(f"{statistics.median(r['iter_ms']):.1f}" for r in clis) + "\n")
    rows = [("scikit-learn", sk_ms, sk["lower_bounds"][-1]),
            ("emgpu Python", py_ms, py["lower_bounds"][-1]),
            ("emgpu CLI", cli_ms, cli["lower_bounds"][-1])]
    print(f"{'':<14} {'ms/iteration':>13} {'sklearn/this':>13} {'last lower bound':>20}")
    for name, ms, lb in rows:
        print(f"{name:<14} {ms:>13.1f} {sk_ms / ms:>12.1f}x {lb:>20.12f}")
    print(f"\nemgpu Python whole fit (last run): {py['fit_ms']:.0f} ms for {args.iters} iterations "
          f"(validation of X and the setup included)")
    agree = abs(py_ms / cli_ms - 1.0)
    verdict = "within" if agree <= 0.10 else "NOT within"
    print(f"Python ratio {sk_ms / py_ms:.1f}x vs CLI ratio {sk_ms / cli_ms:.1f}x: "
          f"{agree * 100:.1f} % apart, {verdict} 10 %")
    print(json.dumps({"sklearn_ms": sk_ms, "python_ms": py_ms, "cli_ms": cli_ms,
                      "python_ratio": sk_ms / py_ms, "cli_ratio": sk_ms / cli_ms}))
    return 0 if agree <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
