// Second pass of the statistics reduction: sums the rows of `partials` ([n_rows][n_cols], one
// row per workgroup of a gmm_stats_* dispatch) into out[out_offset + col].
// Constants (prepended): WG = 256 invocations, seen as COLS columns × LANES lanes
// (COLS·LANES = WG; LANES a power of two); UNROLL 1 or 4.
//
// Invocation (lane, c) sums rows lane, lane + LANES, ... of column c (consecutive invocations
// read consecutive floats of one row: coalesced), then the LANES lanes are summed as a tree in
// workgroup memory. Workgroup g covers columns [COLS·g, COLS·g + COLS); g = wid.y·nwg.x + wid.x.
// With UNROLL = 4 each invocation keeps four sums (rows r, r + LANES, r + 2·LANES, r + 3·LANES)
// so that four loads are in flight instead of one chain of dependent adds.

// Mirrored by `ReduceUniform` in device/gpu/reduce.rs.
struct Reduce {
    // Rows to sum (workgroups of the statistics dispatch).
    n_rows: u32,
    // Floats per row.
    n_cols: u32,
    // Where column 0 of the sum goes in `out`.
    out_offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> red_args: Reduce;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let cl = lid % COLS;
    let lane = lid / COLS;
    let col = (wid.y * nwg.x + wid.x) * COLS + cl;
    // Each lane's rows are summed with Neumaier's compensation (c, c4): a column is the sum of
    // up to thousands of workgroup partials, and the lower bound among them drives the stopping
    // test. The lanes' sums then meet in a tree (pairwise).
    var s = 0.0;
    var c = 0.0;
    if (col < red_args.n_cols) {
        let n = red_args.n_rows;
        let nc = red_args.n_cols;
        var r = lane;
        if (UNROLL == 4u) {
            var s4 = vec4<f32>(0.0);
            var c4 = vec4<f32>(0.0);
            for (; r + 3u * LANES < n; r += 4u * LANES) {
                let v = vec4<f32>(
                    partials[r * nc + col],
                    partials[(r + LANES) * nc + col],
                    partials[(r + 2u * LANES) * nc + col],
                    partials[(r + 3u * LANES) * nc + col],
                );
                let t = s4 + v;
                c4 += select((v - t) + s4, (s4 - t) + v, abs(s4) >= abs(v));
                s4 = t;
            }
            s4 += c4;
            s = (s4.x + s4.y) + (s4.z + s4.w);
        }
        for (; r < n; r += LANES) {
            let v = partials[r * nc + col];
            let t = s + v;
            c += select((v - t) + s, (s - t) + v, abs(s) >= abs(v));
            s = t;
        }
    }
    s += c;
    sums[lid] = s;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half >>= 1u) {
        if (lane < half) {
            sums[lid] += sums[lid + half * COLS];
        }
        workgroupBarrier();
    }
    if (lane == 0u && col < red_args.n_cols) {
        out[red_args.out_offset + col] = sums[cl];
    }
}
