// The responsibilities of a tile in the statistics kernels (gmm_stats_*), computed from the
// parameters: the mixture's E-step. Prepended after gmm_common.wgsl and a gmm_lse_*.wgsl; the
// alternative with the same interface is gmm_resp_weights.wgsl (weights read from a buffer).
//
// tile_responsibilities(lid, slot, tile): leaves the responsibilities of the tile's points in
// lj (0 past the chunk's end) and returns log p(x_t) in the invocation with slot = t·LPP (0
// elsewhere), as lse_tile does. Called by every invocation of the workgroup (uniform control
// flow), after the tile is loaded and a barrier.
fn tile_responsibilities(lid: u32, slot: u32, tile: u32) -> f32 {
    log_joint_tile(lid);
    workgroupBarrier();
    return lse_tile(slot, tile_rows(tile));
}
