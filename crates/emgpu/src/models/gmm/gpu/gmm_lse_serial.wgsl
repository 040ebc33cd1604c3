// Log-sum-exp of a tile, one invocation per point (LSE = 0, LPP = 1). Prepended after
// gmm_common.wgsl; alternatives with the same interface: gmm_lse_wg.wgsl, gmm_lse_sg.wgsl.
//
// Interface (every kernel that needs responsibilities uses only this):
//   struct Inv            the entry point's invocation builtins (`lid` among them)
//   lse_slot(inv)         the invocation's slot in [0, WG): slot s works on point s / LPP
//   lse_tile(slot, rows)  turns lj (log p(x_t, k)) into responsibilities in place and returns
//                         log p(x_t) in the invocation with slot = t·LPP, t < rows (0 elsewhere).
//                         Called by every invocation of the workgroup (uniform control flow).

struct Inv {
    @builtin(local_invocation_index) lid: u32,
}

fn lse_slot(inv: Inv) -> u32 {
    return inv.lid;
}

// Log-sum-exp over the components of each valid point: with m = max_k lj and
// e_k = exp(lj_k − m) (no overflow; the largest is exactly 1), log p(x_t) = m + log Σ_k e_k and
// the responsibilities are e_k / Σ_k e_k; they replace lj. Points past the chunk's end get
// responsibilities 0. Invocation t < T returns log p(x_t) (0 for the others).
fn lse_tile(slot: u32, rows: u32) -> f32 {
    var lpx = 0.0;
    if (slot < T) {
        let t = slot;
        let row = t * K;
        if (t < rows) {
            var m = lj[row];
            for (var k = 1u; k < K; k++) {
                m = max(m, lj[row + k]);
            }
            var s = 0.0;
            for (var k = 0u; k < K; k++) {
                let e = exp(lj[row + k] - m);
                lj[row + k] = e;
                s += e;
            }
            lpx = m + log(s);
            let inv = 1.0 / s;
            for (var k = 0u; k < K; k++) {
                lj[row + k] *= inv;
            }
        } else {
            for (var k = 0u; k < K; k++) {
                lj[row + k] = 0.0;
            }
        }
    }
    return lpx;
}
