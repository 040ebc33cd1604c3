#!/usr/bin/env bash
# One run on a GPU machine for the figures the open issues still lack (a GPU was not at hand when
# they were built): the GPU tests, then `emgpu bench` GPU against CPU for every model, k-means on
# both engines, and the large shapes of issue 16. Run from the repository root:
#
#   scripts/device_checks.sh            # on a GPU machine (about 5 minutes after the build)
#   DC_SMALL=1 scripts/device_checks.sh # smoke test on a software adapter (llvmpipe): tiny sizes
#
# Every step's output goes to $OUT (the device tool's folder) or docs/device/latest/, one file per
# step, and a summary line per step to stdout; a failed step is reported and the rest still run.
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/device/latest}
mkdir -p "$out"
small=${DC_SMALL:-0}
status=0

step() {
    local name=$1
    shift
    local t0=$SECONDS
    if "$@" >"$out/$name.txt" 2>&1; then
        echo "ok     $name ($((SECONDS - t0)) s)"
    else
        echo "FAILED $name ($((SECONDS - t0)) s): $(tail -3 "$out/$name.txt" | tr '\n' ' ' | cut -c1-300)"
        status=1
    fi
}

cargo build --release --bins --examples -q || exit 1
E=target/release/emgpu
step devices "$E" devices
if [ "$small" = 1 ]; then
    N=20000 NB=20000 NL=2000 DOCS=500 LONG_SEQ=20 ITERS=2 KN=20000
else
    N=1000000 NB=1000000 NL=1000000 DOCS=200000 LONG_SEQ=1000 ITERS=10 KN=1000000
fi
# The GPU tests (fail, not skip, without an adapter).
step gpu_tests env EMGPU_REQUIRE_GPU=1 cargo test --release -q --test gpu_vs_cpu --test gpu_kmeans \
    --test gpu_hmm --test gpu_lda --test gpu_shapes
# Gaussian mixtures: issue 16's shapes, GPU then CPU where the CPU finishes in minutes.
step gmm_full_16 "$E" bench --n "$N" --d 16 --k 16 --covariance full --iters "$ITERS" --backend gpu,cpu
step gmm_diag_64 "$E" bench --n "$N" --d 64 --k 64 --covariance diag --iters "$ITERS" --backend gpu,cpu
step gmm_full_64 "$E" bench --n "$NB" --d 64 --k 64 --covariance full --iters 3 --backend gpu
step gmm_spherical_128_1024 "$E" bench --n "$NL" --d 128 --k 1024 --covariance spherical --iters 3 --backend gpu
step gmm_diag_128_1024 "$E" bench --n "$NL" --d 128 --k 1024 --covariance diag --iters 3 --backend gpu
# k-means (issue 19): the GPU engine against the CPU's blocked assignment, 1M × 16 × 16.
step kmeans_16 target/release/examples/kmeans_timing "$KN" 16 16 "$ITERS"
# HMM (issue 11): 1,000 sequences × 1,000 steps, K = 8, D = 4, full; and one long sequence.
step hmm_batch "$E" bench --model hmm --sequences 1000 --steps "$LONG_SEQ" --iters 5 --backend gpu,cpu
step hmm_long "$E" bench --model hmm --sequences 1000 --steps "$LONG_SEQ" --long --iters 5 --backend gpu,cpu
# LDA (issue 14): the issue's corpus on the GPU; GPU and CPU side by side on a tenth of it.
step lda_gpu "$E" bench --model lda --docs "$DOCS" --iters 3 --backend gpu
step lda_tenth "$E" bench --model lda --docs $((DOCS / 10)) --iters 3 --backend gpu,cpu
exit $status
