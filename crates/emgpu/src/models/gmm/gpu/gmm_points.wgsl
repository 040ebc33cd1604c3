// Per-point outputs (score_samples, predict_proba): log p(x) of every point, and with bit 0 of
// chunk.flags its responsibilities. Needs gmm_common.wgsl and a gmm_lse_*.wgsl (prepended). Row n
// of this dispatch (row chunk.row_offset + n of the bound data) writes log_px[n] and resp[n·K + k].
// With bit 1 of chunk.flags, resp[n·K + k] gets log p(x_n, k) instead (the log-joint before the
// log-sum-exp; with zero log-weights, the component log-densities a hidden Markov model's
// emissions need, models/hmm/gpu/); bit 0 is then ignored.

@group(0) @binding(3) var<storage, read_write> log_px: array<f32>;
@group(0) @binding(4) var<storage, read_write> resp: array<f32>;

@compute @workgroup_size(WG)
fn main(
    inv: Inv,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let lid = inv.lid;
    let slot = lse_slot(inv);
    tile_init(lid);
    for (var tile = wid.x; tile < chunk.n_tiles; tile += nwg.x) {
        workgroupBarrier();
        load_tile(lid, tile);
        workgroupBarrier();
        log_joint_tile(lid);
        workgroupBarrier();
        let rows = tile_rows(tile);
        if ((chunk.flags & 2u) != 0u) {
            // The log-joint, before lse_tile overwrites it (flags is uniform: so is this branch).
            for (var e = lid; e < rows * K; e += WG) {
                resp[tile * T * K + e] = lj[e];
            }
            workgroupBarrier();
        }
        let lpx = lse_tile(slot, rows);
        if (slot % LPP == 0u && slot / LPP < rows) {
            log_px[tile * T + slot / LPP] = lpx;
        }
        workgroupBarrier();
        if ((chunk.flags & 3u) == 1u) {
            // lj is [t][k]: consecutive invocations write consecutive floats.
            for (var e = lid; e < rows * K; e += WG) {
                resp[tile * T * K + e] = lj[e];
            }
        }
    }
}
