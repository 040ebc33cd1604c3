// E-step and sufficient statistics, fused, for the full and tied covariance types, with the
// weighted deviations staged in workgroup memory. Same constants, dispatch, units and output
// layout as gmm_stats_full.wgsl (read it first); only the inner loops differ.
//
// After the responsibilities of a tile are known, one pass writes, for every point t and
// component k,
//   ys[(t·K + k)·NB2 + b] = √r_tk · (x_t − s_k)[4b..4b+4]     (b < NB2: the D features)
//   srt[t·K + k]          = √r_tk
// so that an S2 block (k, ib, jb) is Σ_t ys[t,k,ib]·ys[t,k,jb]ᵀ: per point two 16-byte loads
// and 16 FMAs, where gmm_stats_full.wgsl also loads r and subtracts both shifts (about 31
// instructions per 16 FMAs instead of 18). A row piece (k, jb), jb < NB2, is Σ_t srt·ys[t,k,jb]
// = Σ r·(x − s); when D is not a multiple of 4 its last block holds the constant feature D,
// whose ys entry is √r (x̃_D − s̃_D = 1), so that column gives Σ r; when D is a multiple of 4 the
// constant column is its own piece jb = NB2 = NB − 1: (Σ_t r, 0, 0, 0). Entries past D in the
// staged blocks are √r·(0 − 0) = 0, or √r in column D, which the host ignores (i, j < D).
// The √ splits r between the two factors: r·a·b = (√r·a)·(√r·b), exact up to rounding.
//
// Workgroup memory: 16·T·K·NB2 + 4·T·K bytes on top of the common tile (models/gmm/gpu/kernels.rs
// counts them when it picks the tile).

@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

var<workgroup> ys: array<vec4<f32>, T * K * NB2>;
var<workgroup> srt: array<f32, T * K>;

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

// ys and srt from the tile (xt) and the responsibilities (lj). Reads lj only: no race with the
// writes of srt.
fn stage_tile(lid: u32) {
    for (var e = lid; e < T * K; e += WG) {
        srt[e] = sqrt(lj[e]);
    }
    for (var e = lid; e < T * K * NB2; e += WG) {
        let b = e % NB2;
        let tk = e / NB2;
        let k = tk % K;
        let t = tk / K;
        ys[e] = sqrt(lj[tk]) * (xt[t * NB + b] - shift4(k, b));
    }
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
        // The previous tile's statistics are done with xt, lj, ys and srt.
        workgroupBarrier();
        load_tile(lid, tile);
        workgroupBarrier();
        let lpx = tile_responsibilities(lid, slot, tile);
        let lls = ll + lpx;
        llc += select((lpx - lls) + ll, (ll - lls) + lpx, abs(ll) >= abs(lpx));
        ll = lls;
        workgroupBarrier();
        stage_tile(lid);
        workgroupBarrier();

        for (var m = 0u; m < BPT; m++) {
            let g = first_unit + m * WG + lid;
            if (g < NBLK) {
                let k = g / NBT;
                let c = block_coords(g % NBT);
                let ia = k * NB2 + c.x;
                let ib = k * NB2 + c.y;
                var a0 = acc[4u * m];
                var a1 = acc[4u * m + 1u];
                var a2 = acc[4u * m + 2u];
                var a3 = acc[4u * m + 3u];
                for (var t = 0u; t < T; t++) {
                    let ya = ys[t * (K * NB2) + ia];
                    let yb = ys[t * (K * NB2) + ib];
                    a0 = fma(vec4<f32>(ya.x), yb, a0);
                    a1 = fma(vec4<f32>(ya.y), yb, a1);
                    a2 = fma(vec4<f32>(ya.z), yb, a2);
                    a3 = fma(vec4<f32>(ya.w), yb, a3);
                }
                acc[4u * m] = a0;
                acc[4u * m + 1u] = a1;
                acc[4u * m + 2u] = a2;
                acc[4u * m + 3u] = a3;
            } else if (g < NU) {
                let k = (g - NBLK) / NB;
                let jb = (g - NBLK) % NB;
                var a0 = acc[4u * m];
                if (jb < NB2) {
                    let ia = k * NB2 + jb;
                    for (var t = 0u; t < T; t++) {
                        a0 = fma(vec4<f32>(srt[t * K + k]), ys[t * (K * NB2) + ia], a0);
                    }
                } else {
                    // The constant column D alone (D a multiple of 4): Σ r.
                    for (var t = 0u; t < T; t++) {
                        a0.x += lj[t * K + k];
                    }
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
