// E-step and sufficient statistics, fused, for the full and tied covariance types.
// Needs gmm_common.wgsl, a gmm_lse_*.wgsl and a gmm_resp_*.wgsl (prepended) and the constants they list, plus
//   NB2   = ceil(D / 4)         4-wide blocks of the D features
//   NBT   = NB2·(NB2+1)/2       4×4 blocks in the upper block triangle of one component's S2
//   NBLK  = K·NBT               S2 blocks over all components
//   NU    = NBLK + K·NB         units: the S2 blocks, then the (component, 4 columns) pieces of
//                               Σ r·(x̃ − s̃) (S1 and, in the constant column D, S0)
//   BPT                         units per invocation in one pass (accumulators: 16·BPT floats)
//   P     = T + 16·NBLK + 4·K·NB  floats per workgroup partial (row of `partials`)
//
// Each workgroup walks tiles wid.x, wid.x + G, ... of its chunk. Per tile: load the points,
// compute log p(x, k) for every point and component, turn them into responsibilities r in
// workgroup memory, then every invocation adds the tile into its own units:
//   an S2 block (k, ib, jb), ib ≤ jb:  Σ_t r_tk·(x_t − s_k)[4ib..+4]·(x_t − s_k)[4jb..+4]ᵀ
//     (a tiled outer product; the blocks cover the upper triangle, the host fills the lower);
//   a row piece (k, jb):                Σ_t r_tk·(x̃_t − s̃_k)[4jb..+4]
//     where x̃ is the point with a constant 1 appended (feature D) and s̃_k the shift (component
//     k's mean) with 0 appended: features < D give S1, feature D gives S0 = Σ r.
// The S2 blocks come first, so the cheap row pieces fill warps of their own. The N×K
// responsibilities never leave workgroup memory.
//
// Workgroup (wid.x, wid.y) handles units [wid.y·WG·BPT, (wid.y + 1)·WG·BPT): when the units of
// all components need more registers than one pass holds, several passes (dispatch y) split them
// and each recomputes the responsibilities. Output, at partials[wid.x·P + T + ...]: S2 block b at
// 16·b + 4·row + col, row piece (k, jb) at 16·NBLK + 4·(k·NB + jb) + col; and (pass 0)
// invocation t's Σ log p(x) at partials[wid.x·P + t], t < T (no tree, no barrier: the reduction
// pass sums the rows and the host the T columns). Accumulation is in f32 per invocation over the
// workgroup's tiles (a bounded number), then summed across workgroups by reduce_partials.wgsl and
// across chunks in f64 on the host.

@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

// Block b of a component's upper block triangle → (ib, jb), row by row.
fn block_coords(local: u32) -> vec2<u32> {
    var ib = 0u;
    var rem = local;
    while (rem >= NB2 - ib) {
        rem -= NB2 - ib;
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
    inv: Inv,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let lid = inv.lid;
    let slot = lse_slot(inv);
    tile_init(lid);
    let first_unit = wid.y * WG * BPT;

    var acc: array<vec4<f32>, 4 * BPT>;
    for (var m = 0u; m < 4u * BPT; m++) {
        acc[m] = vec4<f32>(0.0);
    }
    // Σ log p(x) with Neumaier's compensation (llc): the lower bound drives the stopping test.
    var ll = 0.0;
    var llc = 0.0;

    for (var tile = wid.x; tile < chunk.n_tiles; tile += nwg.x) {
        // The previous tile's statistics are done with xt and lj.
        workgroupBarrier();
        load_tile(lid, tile);
        workgroupBarrier();
        let lpx = tile_responsibilities(lid, slot, tile);
        let lls = ll + lpx;
        llc += select((lpx - lls) + ll, (ll - lls) + lpx, abs(ll) >= abs(lpx));
        ll = lls;
        workgroupBarrier();

        for (var m = 0u; m < BPT; m++) {
            let g = first_unit + m * WG + lid;
            if (g < NBLK) {
                let k = g / NBT;
                let c = block_coords(g % NBT);
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
            } else if (g < NU) {
                let k = (g - NBLK) / NB;
                let jb = (g - NBLK) % NB;
                let sb = shift4(k, jb);
                var a0 = acc[4u * m];
                for (var t = 0u; t < T; t++) {
                    a0 = fma(vec4<f32>(lj[t * K + k]), xt[t * NB + jb] - sb, a0);
                }
                acc[4u * m] = a0;
            }
        }
    }

    let base = wid.x * P + T;
    for (var m = 0u; m < BPT; m++) {
        let g = first_unit + m * WG + lid;
        if (g < NBLK) {
            for (var q = 0u; q < 4u; q++) {
                let v = acc[4u * m + q];
                let o = base + 16u * g + 4u * q;
                partials[o] = v.x;
                partials[o + 1u] = v.y;
                partials[o + 2u] = v.z;
                partials[o + 3u] = v.w;
            }
        } else if (g < NU) {
            let v = acc[4u * m];
            let o = base + 16u * NBLK + 4u * (g - NBLK);
            partials[o] = v.x;
            partials[o + 1u] = v.y;
            partials[o + 2u] = v.z;
            partials[o + 3u] = v.w;
        }
    }

    // Σ log p(x) of this invocation's points (pass 0 only; column t from the invocation whose
    // log-sum-exp returned point t's); the reduction pass and the host sum the T columns.
    if (slot % LPP == 0u && slot / LPP < T && wid.y == 0u) {
        partials[wid.x * P + slot / LPP] = ll + llc;
    }
}
