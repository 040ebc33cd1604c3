// E-step and sufficient statistics, fused, for the diag and spherical covariance types (only
// the diagonal of the second moments is needed).
// Needs gmm_common.wgsl, a gmm_lse_*.wgsl and a gmm_resp_*.wgsl (prepended) and the constants they list, plus
//   NE  = K·(D+1)   statistic entries (k, i), i ≤ D; entry (k, D) uses the constant-1 feature
//   EPT             entries per invocation in one pass
//   P   = T + 2·NE  floats per workgroup partial
//
// Same walk as gmm_stats_full.wgsl; each invocation owns entries e = (k, i) and accumulates
// Σ r·(x_i − s_ki) at partials[wid.x·P + T + 2e] and Σ r·(x_i − s_ki)² at [.. + 1]; for i = D
// these are Σ r (twice). Invocation t's Σ log p(x) at partials[wid.x·P + t], t < T (pass 0).

@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(WG)
fn main(
    inv: Inv,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let lid = inv.lid;
    let slot = lse_slot(inv);
    tile_init(lid);
    let first = wid.y * WG * EPT;

    var acc1: array<f32, EPT>;
    var acc2: array<f32, EPT>;
    for (var m = 0u; m < EPT; m++) {
        acc1[m] = 0.0;
        acc2[m] = 0.0;
    }
    // Σ log p(x) with Neumaier's compensation (llc): the lower bound drives the stopping test.
    var ll = 0.0;
    var llc = 0.0;

    for (var tile = wid.x; tile < chunk.n_tiles; tile += nwg.x) {
        workgroupBarrier();
        load_tile(lid, tile);
        workgroupBarrier();
        let lpx = tile_responsibilities(lid, slot, tile);
        let lls = ll + lpx;
        llc += select((lpx - lls) + ll, (ll - lls) + lpx, abs(ll) >= abs(lpx));
        ll = lls;
        workgroupBarrier();

        for (var m = 0u; m < EPT; m++) {
            let e = first + m * WG + lid;
            if (e < NE) {
                let k = e / (D + 1u);
                let i = e % (D + 1u);
                let s = params[k * DP + i];
                var s1 = acc1[m];
                var s2 = acc2[m];
                for (var t = 0u; t < T; t++) {
                    let b = xt_get(t, i) - s;
                    let rb = lj[t * K + k] * b;
                    s1 += rb;
                    s2 = fma(rb, b, s2);
                }
                acc1[m] = s1;
                acc2[m] = s2;
            }
        }
    }

    let base = wid.x * P;
    for (var m = 0u; m < EPT; m++) {
        let e = first + m * WG + lid;
        if (e < NE) {
            partials[base + T + 2u * e] = acc1[m];
            partials[base + T + 1u + 2u * e] = acc2[m];
        }
    }

    // Σ log p(x) of this invocation's points (pass 0 only; column t from the invocation whose
    // log-sum-exp returned point t's); the reduction pass and the host sum the T columns.
    if (slot % LPP == 0u && slot / LPP < T && wid.y == 0u) {
        partials[base + slot / LPP] = ll + llc;
    }
}
