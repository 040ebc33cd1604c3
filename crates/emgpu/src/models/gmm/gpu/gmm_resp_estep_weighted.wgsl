// The responsibilities of a tile in the statistics kernels (gmm_stats_*), computed from the
// parameters and multiplied by each point's sample weight: the weighted mixture's E-step. Same
// interface as gmm_resp_estep.wgsl (read its header); the log p(x_t) it returns is multiplied by
// the point's weight too, so the kernels sum Σ w·r, Σ w·r·x, ... and Σ w·log p(x).
//
// sample_weights[n]: the weight of row n of the bound data (n counted from the start of the data
// buffer, so row chunk.row_offset + tile·T + t for point t of the tile).

@group(0) @binding(4) var<storage, read> sample_weights: array<f32>;

fn tile_responsibilities(lid: u32, slot: u32, tile: u32) -> f32 {
    log_joint_tile(lid);
    workgroupBarrier();
    let rows = tile_rows(tile);
    var lpx = lse_tile(slot, rows);
    // lse_tile's responsibilities are all written before they are scaled.
    workgroupBarrier();
    let base = chunk.row_offset + tile * T;
    for (var e = lid; e < rows * K; e += WG) {
        lj[e] *= sample_weights[base + e / K];
    }
    // log p(x_t) is in the invocation with slot = t·LPP (0 elsewhere); a weight of 0 gives 0.
    let t = slot / LPP;
    if (t < rows) {
        let w = sample_weights[base + t];
        lpx = select(0.0, w * lpx, w != 0.0);
    }
    return lpx;
}
