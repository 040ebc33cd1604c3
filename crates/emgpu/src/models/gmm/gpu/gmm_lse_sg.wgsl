// Log-sum-exp of a tile with LPP invocations per point (LSE = 2; LPP a power of two, 2 ≤ LPP ≤ K,
// T·LPP ≤ WG), combining the lanes of a point with subgroup shuffles: no workgroup memory and no
// barrier. Same interface and the same three steps as gmm_lse_wg.wgsl (read it), with
// subgroupShuffleXor over the LPP lanes in place of the exchange arrays.
//
// Needs the device's subgroup feature, subgroups of a power-of-two size ≥ LPP and ≤ WG (checked
// by models/gmm/gpu/kernels.rs, which otherwise prepends gmm_lse_wg.wgsl). The slot is numbered by
// subgroup (subgroup_id · subgroup_size + lane), not by local_invocation_index, so the LPP lanes
// of a point are adjacent lanes of one subgroup whatever order the driver packs invocations in;
// with WG a multiple of the subgroup size every subgroup is full and the slots cover [0, WG).

struct Inv {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
}

fn lse_slot(inv: Inv) -> u32 {
    return inv.sg_id * inv.sg_size + inv.sg_lane;
}

fn lse_tile(slot: u32, rows: u32) -> f32 {
    let t = slot / LPP;
    let c = slot % LPP;
    let live = t < rows;
    let row = t * K;
    // Slots past the tile (when T·LPP < WG) read and write nothing; their lanes shuffle only
    // among themselves, and every lane reaches every shuffle.
    var m = 0.0;
    if (t < T) {
        m = lj[row + c];
        for (var k = c + LPP; k < K; k += LPP) {
            m = max(m, lj[row + k]);
        }
    }
    for (var j = 1u; j < LPP; j <<= 1u) {
        m = max(m, subgroupShuffleXor(m, j));
    }
    var s = 0.0;
    if (t < T) {
        for (var k = c; k < K; k += LPP) {
            let e = exp(lj[row + k] - m);
            lj[row + k] = e;
            s += e;
        }
    }
    for (var j = 1u; j < LPP; j <<= 1u) {
        s += subgroupShuffleXor(s, j);
    }
    var lpx = 0.0;
    if (live) {
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
