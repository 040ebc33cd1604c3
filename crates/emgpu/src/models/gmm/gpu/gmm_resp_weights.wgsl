// The responsibilities of a tile in the statistics kernels (gmm_stats_*), read from a buffer of
// weights instead of computed: the same kernels then sum weighted moments with any weights (the
// hidden Markov model's state posteriors γ, models/hmm/gpu/). Same interface as
// gmm_resp_estep.wgsl (read its header); the log-likelihood it returns is 0 (the caller knows
// its own).
//
// weights[n·K + k]: the weight of component k for row n of the bound data (n counted from the
// start of the data buffer, so row chunk.row_offset + tile·T + t for point t of the tile).

@group(0) @binding(4) var<storage, read> weights: array<f32>;

fn tile_responsibilities(lid: u32, slot: u32, tile: u32) -> f32 {
    let rows = tile_rows(tile);
    let base = (chunk.row_offset + tile * T) * K;
    // Consecutive invocations read consecutive floats (coalesced); points past the end get 0.
    for (var e = lid; e < T * K; e += WG) {
        var w = 0.0;
        if (e < rows * K) {
            w = weights[base + e];
        }
        lj[e] = w;
    }
    return 0.0;
}
