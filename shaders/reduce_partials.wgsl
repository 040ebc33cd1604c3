// Second pass of the statistics reduction: sums the rows of `partials` ([n_rows][n_cols], one
// row per workgroup of a gmm_stats_* dispatch) into out[out_offset + col].
// Constant (prepended): WG = 256 invocations, seen as 32 columns × 8 lanes.
//
// Invocation (lane, c) sums rows lane, lane + 8, ... of column c (consecutive invocations read
// consecutive floats of one row: coalesced), then the 8 lanes are summed as a tree in workgroup
// memory. Workgroup g covers columns [32·g, 32·g + 32); g = wid.y·nwg.x + wid.x.

// Mirrored by `ReduceUniform` in src/gpu/kernels.rs.
struct Reduce {
    // Rows to sum (workgroups of the statistics dispatch).
    n_rows: u32,
    // Floats per row.
    n_cols: u32,
    // Where column 0 of the sum goes in `out`.
    out_offset: u32,
    _pad: u32,
}

const COLS: u32 = 32u;
const LANES: u32 = 8u;

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
    let c = lid % COLS;
    let lane = lid / COLS;
    let col = (wid.y * nwg.x + wid.x) * COLS + c;
    var s = 0.0;
    if (col < red_args.n_cols) {
        for (var r = lane; r < red_args.n_rows; r += LANES) {
            s += partials[r * red_args.n_cols + col];
        }
    }
    sums[lid] = s;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half >>= 1u) {
        if (lane < half) {
            sums[lid] += sums[lid + half * COLS];
        }
        workgroupBarrier();
    }
    if (lane == 0u && col < red_args.n_cols) {
        out[red_args.out_offset + col] = sums[c];
    }
}
