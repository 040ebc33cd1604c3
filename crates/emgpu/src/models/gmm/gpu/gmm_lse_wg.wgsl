// Log-sum-exp of a tile with LPP invocations per point (LSE = 1; LPP a power of two, 2 ≤ LPP ≤ K,
// T·LPP ≤ WG), exchanging partial maxima and sums through workgroup memory. Same interface as
// gmm_lse_serial.wgsl (read its header). With one invocation per point, 3/4 of a 256-invocation
// workgroup waits at the next barrier while a quarter walks K components three times; here
// every lane of a point walks K / LPP components, at the price of two more barriers.
//
// Lane c of point t (slot t·LPP + c) owns components c, c + LPP, c + 2·LPP, ...:
//   1. m_c = max of its components → lse_m[slot];                               barrier
//   2. m = max_c m_c (the point's maximum, the same in every lane); e_k = exp(lj_k − m) into lj,
//      s_c = Σ of its e_k → lse_s[slot];                                        barrier
//   3. s = Σ_c s_c; lj_k = e_k / s; lane 0 returns log p(x_t) = m + log s.
// Points past the chunk's end get responsibilities 0.

struct Inv {
    @builtin(local_invocation_index) lid: u32,
}

fn lse_slot(inv: Inv) -> u32 {
    return inv.lid;
}

var<workgroup> lse_m: array<f32, T * LPP>;
var<workgroup> lse_s: array<f32, T * LPP>;

fn lse_tile(slot: u32, rows: u32) -> f32 {
    let t = slot / LPP;
    let c = slot % LPP;
    let live = t < rows;
    let row = t * K;
    if (live) {
        var m = lj[row + c];
        for (var k = c + LPP; k < K; k += LPP) {
            m = max(m, lj[row + k]);
        }
        lse_m[slot] = m;
    }
    workgroupBarrier();
    var m = 0.0;
    if (live) {
        m = lse_m[t * LPP];
        for (var j = 1u; j < LPP; j++) {
            m = max(m, lse_m[t * LPP + j]);
        }
        var s = 0.0;
        for (var k = c; k < K; k += LPP) {
            let e = exp(lj[row + k] - m);
            lj[row + k] = e;
            s += e;
        }
        lse_s[slot] = s;
    }
    workgroupBarrier();
    var lpx = 0.0;
    if (live) {
        var s = lse_s[t * LPP];
        for (var j = 1u; j < LPP; j++) {
            s += lse_s[t * LPP + j];
        }
        let inv = 1.0 / s;
        for (var k = c; k < K; k += LPP) {
            lj[row + k] *= inv;
        }
        if (c == 0u) {
            lpx = m + log(s);
        }
    } else if (t < T) {
        for (var k = c; k < K; k += LPP) {
            lj[row + k] = 0.0;
        }
    }
    return lpx;
}
