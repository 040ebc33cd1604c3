// E-step and sufficient statistics, fused, for the full and tied covariance types.
// Needs gmm_common.wgsl (prepended) and the constants it lists, plus
//   NBT   = NB·(NB+1)/2   4×4 blocks in the upper block triangle of one component's matrix
//   NBLK  = K·NBT         blocks over all components
//   BPT                   blocks per invocation in one pass (accumulators: 16·BPT floats)
//   P     = T + 16·NBLK   floats per workgroup partial (row of `partials`)
//
// Each workgroup walks tiles wid.x, wid.x + G, ... of its chunk. Per tile: load the points,
// compute log p(x, k) for every point and component, turn them into responsibilities r in
// workgroup memory, then every invocation adds the tile into its own 4×4 blocks of
//     M_k = Σ_t r_tk · (x̃_t − s̃_k)·(x̃_t − s̃_k)ᵀ
// where x̃ is the point augmented with a constant 1 (and zero padding) and s̃_k the shift
// (component k's mean, augmented with 0): M_k's leading D×D block is Σ r (x − s)(x − s)ᵀ, its
// column D is Σ r (x − s), its corner Σ r. Blocks (ib, jb) with ib ≤ jb cover the upper triangle;
// the host fills the lower one. The N×K responsibilities never leave workgroup memory.
//
// Workgroup (wid.x, wid.y) handles blocks [wid.y·WG·BPT, (wid.y + 1)·WG·BPT): when the blocks of
// all components need more registers than one pass holds, several passes (dispatch y) split them
// and each recomputes the responsibilities. Output: partials[wid.x·P + T + 16·b + 4·row + col],
// and (pass 0) invocation t's Σ log p(x) at partials[wid.x·P + t], t < T (no tree, no barrier:
// the reduction pass sums the rows and the host the T columns). Accumulation is in f32 per
// invocation over the workgroup's tiles (a bounded number), then summed across workgroups by
// reduce_partials.wgsl and across chunks in f64 on the host.

@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

// Block b of a component's upper block triangle → (ib, jb), row by row.
fn block_coords(local: u32) -> vec2<u32> {
    var ib = 0u;
    var rem = local;
    while (rem >= NB - ib) {
        rem -= NB - ib;
        ib += 1u;
    }
    return vec2<u32>(ib, ib + rem);
}

fn shift4(k: u32, q: u32) -> vec4<f32> {
    let o = k * DP + 4u * q;
    return vec4<f32>(params[o], params[o + 1u], params[o + 2u], params[o + 3u]);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    tile_init(lid);
    let first_block = wid.y * WG * BPT;

    var acc: array<vec4<f32>, 4 * BPT>;
    for (var m = 0u; m < 4u * BPT; m++) {
        acc[m] = vec4<f32>(0.0);
    }
    var ll = 0.0;

    fetch_tile(lid, wid.x);
    for (var tile = wid.x; tile < chunk.n_tiles; tile += nwg.x) {
        // The previous tile's statistics are done with xt and lj.
        workgroupBarrier();
        store_tile(lid);
        workgroupBarrier();
        fetch_tile(lid, tile + nwg.x);
        log_joint_tile(lid);
        workgroupBarrier();
        ll += lse_tile(lid, tile_rows(tile));
        workgroupBarrier();

        for (var m = 0u; m < BPT; m++) {
            let b = first_block + m * WG + lid;
            if (b < NBLK) {
                let k = b / NBT;
                let c = block_coords(b % NBT);
                let sa = shift4(k, c.x);
                let sb = shift4(k, c.y);
                var a0 = acc[4u * m];
                var a1 = acc[4u * m + 1u];
                var a2 = acc[4u * m + 2u];
                var a3 = acc[4u * m + 3u];
                for (var t = 0u; t < T; t++) {
                    let r = lj[t * K + k];
                    let ea = r * (xt[t * NB + c.x] - sa);
                    let eb = xt[t * NB + c.y] - sb;
                    a0 = fma(vec4<f32>(ea.x), eb, a0);
                    a1 = fma(vec4<f32>(ea.y), eb, a1);
                    a2 = fma(vec4<f32>(ea.z), eb, a2);
                    a3 = fma(vec4<f32>(ea.w), eb, a3);
                }
                acc[4u * m] = a0;
                acc[4u * m + 1u] = a1;
                acc[4u * m + 2u] = a2;
                acc[4u * m + 3u] = a3;
            }
        }
    }

    let base = wid.x * P;
    for (var m = 0u; m < BPT; m++) {
        let b = first_block + m * WG + lid;
        if (b < NBLK) {
            for (var q = 0u; q < 4u; q++) {
                let v = acc[4u * m + q];
                let o = base + T + 16u * b + 4u * q;
                partials[o] = v.x;
                partials[o + 1u] = v.y;
                partials[o + 2u] = v.z;
                partials[o + 3u] = v.w;
            }
        }
    }

    // Σ log p(x) of this invocation's points (pass 0 only); the reduction pass and the host sum
    // the T columns.
    if (lid < T && wid.y == 0u) {
        partials[base + lid] = ll;
    }
}
