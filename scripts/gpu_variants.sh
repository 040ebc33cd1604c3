#!/usr/bin/env bash
# Times `emgpu bench` on the GPU for each kernel variant (EMGPU_GPU_VARIANT, see GpuVariant in
# crates/emgpu/src/device/gpu/options.rs and docs/gpu_tuning.md): full, tied and diag at N points, and full at 4·N,
# D = K = 16, 20 iterations; one table line per run.
#
#   scripts/gpu_variants.sh EMGPU [GPU_TIMING]
#
# EMGPU: the built emgpu binary (cargo build --release → target/release/emgpu).
# GPU_TIMING (optional): the built gpu_timing example (cargo build --release --example
#   gpu_timing); when given, the script first prints which variant each request runs as on this
#   device (a variant falls back to a plainer one where the device cannot run it).
#
# Environment (defaults for a data-centre GPU, about a minute in all):
#   GV_N         points of the N-sized runs                  (1000000)
#   GV_N4        points of the large full run                (4·GV_N)
#   GV_ITERS     EM iterations per run (median reported)     (20)
#   GV_VARIANTS  variants, space-separated (base twice: the spread of one version)
#                ("base lse sg red stage stage+sg stage+sg+p4 stage+sg+red base")
#   GV_LOG       folder for each run's JSON report           ($OUT when set, else none)
# Smoke test on a software adapter: GV_N=2000 GV_ITERS=2 GV_VARIANTS="base stage+sg+red".
#
# The data of each (covariance, N) is generated once (emgpu bench --write-data, the same seeded
# data the built-in workload uses) into a temporary folder and every variant fits the same file,
# so the runs differ only in the kernels. Columns: variant asked for, covariance, N, median ms
# per EM iteration (E-step + host M-step), median E-step ms (with statistics and readback), setup
# ms, final lower bound (must agree across variants to ~1e-7 relative: f32 sums in another order).
set -u -o pipefail

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 EMGPU [GPU_TIMING]   (EMGPU: path of the built emgpu binary)" >&2
    exit 2
fi
bin=$1
timing=${2:-}
n=${GV_N:-1000000}
n4=${GV_N4:-$((4 * n))}
iters=${GV_ITERS:-20}
variants=${GV_VARIANTS:-"base lse sg red stage stage+sg stage+sg+p4 stage+sg+red base"}
log=${GV_LOG:-${OUT:-}}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpu_variants.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One numeric field of the first run in a bench --json line.
field() {
    grep -o "\"$1\":[-0-9.eE+a-z]*" <<<"$2" | head -1 | cut -d: -f2
}

"$bin" --quiet devices 2>&1 | head -4

if [ -n "$timing" ]; then
    # gpu_timing prints one line per variant, in the order asked, with the variant that ran
    # (its tile tN and points per E-step invocation pN included).
    echo "variants as they run here (asked for -> ran), D = K = 16:"
    for cov in full tied diag; do
        VARIANTS="$variants" "$timing" 4096 16 16 "$cov" 1 2>/dev/null | grep -E "^$cov " |
            awk -v c="$cov" -v asked="$variants" \
                'BEGIN { split(asked, a, " ") } { printf "  %-5s %-16s -> %s\n", c, a[NR], $2 }'
    done
fi

# (covariance, N) workloads; data written once each.
runs="full:$n tied:$n diag:$n full:$n4"
for r in $runs; do
    cov=${r%%:*}
    m=${r##*:}
    dir="$tmp/$cov-$m"
    if [ ! -d "$dir" ]; then
        if ! "$bin" --quiet bench --n "$m" --covariance "$cov" --write-data "$dir" >/dev/null 2>"$tmp/err"; then
            echo "writing the $cov data of $m points failed: $(cat "$tmp/err")" >&2
            exit 1
        fi
    fi
done

printf "%-16s %-5s %9s %9s %9s %9s %18s\n" variant cov N "ms/iter" "E-step" "setup" "lower bound"
status=0
for v in $variants; do
    for r in $runs; do
        cov=${r%%:*}
        m=${r##*:}
        dir="$tmp/$cov-$m"
        if ! out=$(EMGPU_GPU_VARIANT="$v" "$bin" --quiet bench --input "$dir/X.npy" \
            --init "$dir/init.json" --backend gpu --iters "$iters" --json 2>"$tmp/err"); then
            printf "%-16s %-5s %9s  FAILED: %s\n" "$v" "$cov" "$m" "$(tr '\n' ' ' <"$tmp/err" | cut -c1-200)"
            status=1
            continue
        fi
        if [ -n "$log" ]; then
            mkdir -p "$log" && printf '%s\n' "$out" >"$log/bench-$v-$cov-$m.json"
        fi
        printf "%-16s %-5s %9s %9.3f %9.3f %9.1f %18.12f\n" "$v" "$cov" "$m" \
            "$(field median_iter_ms "$out")" "$(field median_e_step_ms "$out")" \
            "$(field setup_ms "$out")" "$(field final_lower_bound "$out")"
    done
done
exit $status
