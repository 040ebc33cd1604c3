// k-means assignment and per-cluster statistics, fused: every point of the chunk goes to its
// nearest center, its label and squared distance stay on the GPU, and each workgroup writes its
// partial sums of x − c_label per cluster and of the distances (the inertia). Counts and changed
// labels are integers: workgroup-memory u32 atomics, then one global u32 atomic per cluster and
// workgroup (exact; no float atomics). The second pass over the partials is reduce_partials.wgsl.
//
// Constants (prepended by models/kmeans/gpu/kernels.rs, one pipeline per value set):
//   D   features;  K  clusters;  WG  invocations per workgroup (a power of two)
//   T   points per tile (a power of two ≤ WG: invocation t < T assigns point t of a tile)
//   DW  columns summed per point: D, or D + 1 with sample weights (WEIGHTED: column D holds the
//       point's weight, so entry (k, D) sums the weight of cluster k)
//   DS  row stride of the tile: DW, or DW + 1 when DW is even (rows then start in different
//       memory banks when every invocation reads its own row)
//   NE  = K·DW  sum entries e = (k, i), k = e / DW, i = e % DW
//   EPT entries per invocation in one pass
//   P   = T + NE  floats per workgroup partial (row of `partials`)
//
// Coordinates: the data and the centers are both uploaded as f32 minus the same centre (the f64
// mean of a sample of the data, on the host), so that data far from the origin keep their digits;
// distances and x − c do not depend on that centre.
//
// Walk: workgroup (wid.x, wid.y) takes tiles wid.x, wid.x + nwg.x, ... of its chunk. Per tile:
//   1. load the tile's points into `et` (consecutive invocations read consecutive floats);
//   2. invocation t < T takes point t: its squared distance to every center (features in order,
//      fma), the nearest (strict < over increasing k: ties go to the lowest index, as the CPU's
//      argmin), then it replaces its row of `et` by x − c_label and sets lt[t] = label (K for
//      rows past the chunk's end). Pass 0 (wid.y = 0) also stores label + 1 and the distance,
//      counts the point and a changed label, and adds the distance to its inertia;
//   3. the invocation owning entry e = (k, i) (entries [wid.y·WG·EPT, (wid.y + 1)·WG·EPT) in this
//      pass, as gmm_stats_diag.wgsl splits its entries) adds et[t][i] over the tile's points
//      with lt[t] = k.
// When K·D needs more accumulators than one pass holds, several passes (dispatch y) split the
// entries and each recomputes the assignment; only pass 0 writes labels, distances, counts.
//
// Sample weights (WEIGHTED): point_weight(n) is row n's weight (1 without weights, from the
// binding prepended by kernels.rs otherwise); step 2 multiplies x − c_label and the distance
// added to the inertia by it and puts it in column D, so the sums, the inertia and the counts of
// entry (k, D) are weighted (the u32 counts still count points).
//
// Output: partials[wid.x·P + t] = inertia of invocation t's points (t < T, pass 0);
// partials[wid.x·P + T + e] = the workgroup's Σ (x − c_k)_i over cluster k (entry e = (k, i));
// counts[count_offset + k] += points of cluster k; counts[count_offset + K] += changed labels.
// Labels are stored as label + 1, so that the zero-initialized buffer means "not assigned yet"
// (every point counts as changed at the first assignment, as on the CPU).

// Mirrored by `AssignUniform` in models/kmeans/gpu/kernels.rs.
struct Assign {
    // Rows of this chunk.
    n_rows: u32,
    // ceil(n_rows / T).
    n_tiles: u32,
    // Where this chunk's K + 1 counts go in `counts`.
    count_offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> args: Assign;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> centers: array<f32>;
@group(0) @binding(3) var<storage, read_write> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> dists: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
@group(0) @binding(6) var<storage, read_write> counts: array<atomic<u32>>;

// The tile: point t's features at et[t·DS + i]; after step 2, x − c_label.
var<workgroup> et: array<f32, T * DS>;
// The label of point t of the tile (K: no point).
var<workgroup> lt: array<u32, T>;
// Points per cluster (k < K) and changed labels (K) of this workgroup.
var<workgroup> wcount: array<atomic<u32>, K + 1u>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    for (var k = lid; k <= K; k += WG) {
        atomicStore(&wcount[k], 0u);
    }
    let first = wid.y * WG * EPT;
    var acc: array<f32, EPT>;
    for (var m = 0u; m < EPT; m++) {
        acc[m] = 0.0;
    }
    var inertia = 0.0;
    var changed = 0u;

    for (var tile = wid.x; tile < args.n_tiles; tile += nwg.x) {
        // The previous tile's sums are done with et and lt.
        workgroupBarrier();
        let rows = min(T, args.n_rows - tile * T);
        let base = tile * T * D;
        for (var e = lid; e < rows * D; e += WG) {
            et[(e / D) * DS + e % D] = x[base + e];
        }
        workgroupBarrier();

        if (lid < T) {
            var label = K;
            if (lid < rows) {
                let row = lid * DS;
                var best = 0.0;
                var bk = 0u;
                for (var k = 0u; k < K; k++) {
                    var s = 0.0;
                    for (var i = 0u; i < D; i++) {
                        let t = et[row + i] - centers[k * D + i];
                        s = fma(t, t, s);
                    }
                    if (k == 0u || s < best) {
                        best = s;
                        bk = k;
                    }
                }
                for (var i = 0u; i < D; i++) {
                    et[row + i] -= centers[bk * D + i];
                }
                var w = 1.0;
                if (WEIGHTED) {
                    w = point_weight(tile * T + lid);
                    for (var i = 0u; i < D; i++) {
                        et[row + i] *= w;
                    }
                    et[row + D] = w;
                }
                label = bk;
                if (wid.y == 0u) {
                    let n = tile * T + lid;
                    // Points of weight 0 move no center: their label changes do not count.
                    if (labels[n] != bk + 1u && w != 0.0) {
                        changed += 1u;
                    }
                    labels[n] = bk + 1u;
                    dists[n] = best;
                    if (WEIGHTED) {
                        inertia += w * best;
                    } else {
                        inertia += best;
                    }
                    atomicAdd(&wcount[bk], 1u);
                }
            }
            lt[lid] = label;
        }
        workgroupBarrier();

        for (var m = 0u; m < EPT; m++) {
            let e = first + m * WG + lid;
            if (e < NE) {
                let k = e / DW;
                let i = e % DW;
                var s = acc[m];
                for (var t = 0u; t < T; t++) {
                    s += select(0.0, et[t * DS + i], lt[t] == k);
                }
                acc[m] = s;
            }
        }
    }

    let base = wid.x * P;
    for (var m = 0u; m < EPT; m++) {
        let e = first + m * WG + lid;
        if (e < NE) {
            partials[base + T + e] = acc[m];
        }
    }
    if (wid.y == 0u) {
        if (lid < T) {
            partials[base + lid] = inertia;
        }
        if (changed > 0u) {
            atomicAdd(&wcount[K], changed);
        }
        workgroupBarrier();
        for (var k = lid; k <= K; k += WG) {
            let c = atomicLoad(&wcount[k]);
            if (c > 0u) {
                atomicAdd(&counts[args.count_offset + k], c);
            }
        }
    }
}
