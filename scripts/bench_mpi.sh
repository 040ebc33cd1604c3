#!/usr/bin/env bash
# Issue 18's benchmark: time per EM iteration of `mpirun -np 2` against one process, both with
# RAYON_NUM_THREADS=1 (one core per rank), on 1M × 16 float32, K = 8, full covariances, CPU.
# Per-iteration time = (fit_seconds of 21 iterations − fit_seconds of 1) / 20, from a warm start
# (a model file) so that no initialization is timed; `EMGPU_MPI_TIMING=1` makes rank 0 report
# the seconds spent in the allreduce of the statistics (the wait for the slower rank included).
#
# Usage: scripts/bench_mpi.sh [N] (needs `cargo build --release --features mpi`, numpy, mpirun)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
B=target/release/emgpu
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
python3 - "$DIR/x.npy" "$N" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(0)
n, d, k = int(sys.argv[2]), 16, 8
means = rng.normal(0, 4, (k, d))
labels = rng.integers(0, k, n)
a = rng.normal(0, 1, (k, d, d)) * 0.3 + np.eye(d)
x = np.empty((n, d))
for c in range(k):
    i = labels == c
    x[i] = means[c] + rng.normal(size=(i.sum(), d)) @ a[c].T
np.save(sys.argv[1], x.astype(np.float32))
PY
common=(--input "$DIR/x.npy" -k 8 --covariance full --backend cpu --tol 0 --quiet --json)
# The warm start: a short fit's model.
$B fit "${common[@]}" --max-iter 2 --output "$DIR/start.json" >/dev/null
secs() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["fit_seconds"])'; }
run1() { RAYON_NUM_THREADS=1 $B fit "${common[@]}" --init "$DIR/start.json" --max-iter "$1" --output "$DIR/o.json" | secs; }
runp() {
    mpirun --allow-run-as-root --oversubscribe ${MPI_FLAGS:-} -x RAYON_NUM_THREADS=1 -x EMGPU_MPI_TIMING=1 -np "$2" \
        $B fit "${common[@]}" --init "$DIR/start.json" --max-iter "$1" --output "$DIR/o.json" \
        2>"$DIR/err" | secs
    grep '^mpi:' "$DIR/err" >&2 || true
}
one21=$(run1 21); one1=$(run1 1)
two21=$(runp 21 2); two1=$(runp 1 2)
python3 - "$one21" "$one1" "$two21" "$two1" <<'PY'
import sys
o21, o1, t21, t1 = map(float, sys.argv[1:])
one, two = (o21 - o1) / 20, (t21 - t1) / 20
print(f"one process (RAYON_NUM_THREADS=1): {one*1e3:.1f} ms per iteration")
print(f"mpirun -np 2 (RAYON_NUM_THREADS=1): {two*1e3:.1f} ms per iteration")
print(f"ratio: {two/one:.2f} (goal: at most 0.75)")
PY
