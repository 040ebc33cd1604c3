#!/usr/bin/env python3
"""Time scikit-learn's Lloyd k-means and emgpu's CPU k-means per iteration on the same data, from the
same centers, in the same run, and print the ratios.

emgpu's `kmeans_timing` example generates the data and start centers (and writes them with
`DUMP=dir`) and times its CPU engines (blocked and reference assignment) and a whole fit; then
scikit-learn (float64, `KMeans(n_clusters=K, init=centers, n_init=1, max_iter=M, tol=0,
algorithm="lloyd")`) is timed as (t(1 + M) − t(1)) / M in a subprocess whose environment has
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed; the BLAS it used (threadpoolctl) is printed.

    python3 scripts/compare_sklearn_kmeans.py --n 1000000 --d 16 --k 16 --iters 10
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sklearn_worker(args):
    import numpy as np
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_info

    x = np.fromfile(Path(args.data) / "X.f32", dtype="<f4").reshape(args.n, args.d).astype(np.float64)
    c = np.fromfile(Path(args.data) / "C.f64", dtype="<f8").reshape(args.k, args.d)

    def fit(m):
        km = KMeans(n_clusters=args.k, init=c, n_init=1, max_iter=m, tol=0, algorithm="lloyd")
        t = time.perf_counter()
        km.fit(x)
        return time.perf_counter() - t, km

    fit(1)  # warm-up
    t1, _ = fit(1)
    tm, km = fit(1 + args.iters)
    per = (tm - t1) / max(km.n_iter_ - 1, 1)
    print(f"blas: {[(i.get('internal_api'), i.get('architecture'), i.get('num_threads')) for i in threadpool_info()]}")
    print(f"sklearn fit: {km.n_iter_} iterations, {1e3 * per:.2f} ms per iteration, inertia {km.inertia_:.15e}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--worker", action="store_true")
    p.add_argument("--data")
    args = p.parse_args()
    if args.worker:
        return sklearn_worker(args)
    exe = ROOT / "target/release/examples/kmeans_timing"
    subprocess.run(["cargo", "build", "--release", "--example", "kmeans_timing"],
                   cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DUMP=tmp, NO_GPU="1")
        out = subprocess.run([str(exe), str(args.n), str(args.d), str(args.k), str(args.iters)],
                             env=env, check=True, capture_output=True, text=True).stdout
        print(out, end="")
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        sk = subprocess.run([sys.executable, __file__, "--worker", "--data", tmp, "--n", str(args.n),
                             "--d", str(args.d), "--k", str(args.k), "--iters", str(args.iters)],
                            env=env, check=True, capture_output=True, text=True).stdout
        print(sk, end="")
    ms = lambda pat, s: float(re.search(pat + r".*?([0-9.]+) ms per iteration", s).group(1))
    skl = ms("sklearn fit", sk)
    for name in ("cpu blocked", "cpu reference", "cpu fit"):
        t = ms(name, out)
        print(f"ratio scikit-learn / emgpu {name}: {skl / t:.2f}x")


if __name__ == "__main__":
    main()
