// Shared by the Gaussian-mixture kernels (gmm_stats_full, gmm_stats_full_staged, gmm_stats_diag,
// gmm_points): the chunk uniform, the data and parameter bindings, the tile of points in
// workgroup memory and log p(x, k) for the four covariance types. The log-sum-exp that turns
// log p(x, k) into responsibilities comes from one of gmm_lse_{serial,wg,sg}.wgsl (prepended
// after this file; models/gmm/gpu/kernels.rs picks it).
//
// Constants (prepended by models/gmm/gpu/kernels.rs, one pipeline per value set):
//   D   features;  K  components;  DP = D + 1 rounded up to a multiple of 4;  NB = DP / 4
//   T   points per tile (a power of two, 4 ≤ T ≤ WG);  PPT points per E-step invocation (2 or
//       4) and PV = vec<PPT>f;  WG  invocations per workgroup (a power of two)
//   COV 0 full, 1 tied, 2 diag, 3 spherical
//   LSE 0 serial, 1 workgroup, 2 subgroup log-sum-exp (which gmm_lse_*.wgsl is prepended);
//       LPP invocations per point of its log-sum-exp (1 for serial; 2 or 4 otherwise)
//   OFF_LOGC, OFF_PREC  offsets into `params`
//   JB  columns of the precision factor per block of the full/tied quadratic form (min(D, 32))
//
// `params` (f32, written by the host before every E-step):
//   [0, K·DP)          means, in the GPU's centred coordinates, each padded with zeros to DP
//                      (feature D is the constant-1 feature of the tile, whose "mean" is 0)
//   [OFF_LOGC, +K)     log w_k + log det U_k − ½·D·ln 2π
//   [OFF_PREC, ...)    Cholesky factor of the precision: full K·D·D (upper triangular, row-major),
//                      tied D·D, diag K·D (1/σ), spherical K (1/σ)

// Mirrored by `ChunkUniform` in models/gmm/gpu/kernels.rs.
struct Chunk {
    // Rows this dispatch covers.
    n_rows: u32,
    // Index of its first row in the bound data buffer.
    row_offset: u32,
    // ceil(n_rows / T).
    n_tiles: u32,
    // gmm_points: bit 0 set → write responsibilities too; bit 1 set → write the log-joint
    // log p(x, k) instead. Unused elsewhere.
    flags: u32,
}

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;

// The tile: point t's features 4q..4q+3 at xt[t·NB + q]. Feature D is 1 and features D+1..DP−1
// are 0: with them, Σ r·(x − s)·(x − s)ᵀ over the augmented vector also gives Σ r·(x − s) (its
// column D) and Σ r (its corner).
var<workgroup> xt: array<vec4<f32>, T * NB>;
// log p(x_t, k) at lj[t·K + k]; after `lse_tile`, the responsibilities.
var<workgroup> lj: array<f32, T * K>;

fn xt_get(t: u32, i: u32) -> f32 {
    return xt[t * NB + i / 4u][i % 4u];
}

// Zeroes the tile and sets the constant-1 feature. Tile loads only write features < D.
fn tile_init(lid: u32) {
    for (var e = lid; e < T * NB; e += WG) {
        xt[e] = vec4<f32>(0.0);
    }
    workgroupBarrier();
    for (var t = lid; t < T; t += WG) {
        xt[t * NB + D / 4u][D % 4u] = 1.0;
    }
}

// Rows of tile `tile` that exist in this chunk.
fn tile_rows(tile: u32) -> u32 {
    return min(T, chunk.n_rows - tile * T);
}

// Copies the tile's rows into `xt` (consecutive invocations read consecutive floats: coalesced);
// rows past the chunk's end become 0. Features < D only: the constant feature stays.
fn load_tile(lid: u32, tile: u32) {
    let rows = tile_rows(tile);
    let base = (chunk.row_offset + tile * T) * D;
    for (var e = lid; e < T * D; e += WG) {
        var v = 0.0;
        if (e < rows * D) {
            v = x[base + e];
        }
        let t = e / D;
        let i = e % D;
        xt[t * NB + i / 4u][i % 4u] = v;
    }
}

// Points per E-step invocation, as a vector type: PV = vec<PPT>f (PPT is 2 or 4).
// Feature i of points t, t + T/PPT, t + 2T/PPT, ... (the points one invocation handles).
fn xt_getv(t: u32, i: u32) -> PV {
    var v = PV(0.0);
    for (var c = 0u; c < PPT; c++) {
        v[c] = xt_get(t + c * (T / PPT), i);
    }
    return v;
}

// log p(x, k) = log w_k + log det U_k − ½·D·ln 2π − ½·‖(x − μ_k)ᵀ·U_k‖² for the PPT points of
// `xt_getv(t, ·)` at once: every parameter read serves PPT points.
fn log_jointv(t: u32, k: u32) -> PV {
    let mu = k * DP;
    var maha = PV(0.0);
    if (COV <= 1u) {
        // Full and tied: y_j = Σ_{i ≤ j} (x − μ)_i·U[i][j] (U upper triangular), JB columns j
        // at a time: the private accumulators stay JB·PPT floats whatever D is. (A private
        // array of all D differences, as this loop once kept, is 16·D bytes per invocation;
        // lavapipe computed garbage from D ≈ 360 on, 5.6 KiB, and on any GPU it spills.) Each
        // block re-reads the differences it needs from the tile: D²/(2·JB) extra reads.
        var u = OFF_PREC;
        if (COV == 0u) {
            u += k * D * D;
        }
        for (var j0 = 0u; j0 < D; j0 += JB) {
            let jn = min(JB, D - j0);
            var y: array<PV, JB>;
            for (var i = 0u; i < j0 + jn; i++) {
                let di = xt_getv(t, i) - params[mu + i];
                let row = u + i * D + j0;
                // Columns j0 + jj ≥ i of row i.
                for (var jj = select(0u, i - j0, i > j0); jj < jn; jj++) {
                    y[jj] = fma(di, PV(params[row + jj]), y[jj]);
                }
            }
            for (var jj = 0u; jj < jn; jj++) {
                maha = fma(y[jj], y[jj], maha);
            }
        }
    } else if (COV == 2u) {
        // Diag: Σ_i ((x − μ)_i / σ_i)².
        let p = OFF_PREC + k * D;
        for (var i = 0u; i < D; i++) {
            let y = (xt_getv(t, i) - params[mu + i]) * params[p + i];
            maha = fma(y, y, maha);
        }
    } else {
        // Spherical: ‖x − μ‖² / σ².
        var s = PV(0.0);
        for (var i = 0u; i < D; i++) {
            let e = xt_getv(t, i) - params[mu + i];
            s = fma(e, e, s);
        }
        let p = params[OFF_PREC + k];
        maha = s * (p * p);
    }
    return params[OFF_LOGC + k] - 0.5 * maha;
}

// lj[t][k] = log p(x_t, k) for every point of the tile and every component. An invocation takes
// PPT points (t, t + T/PPT, ...) of one component; consecutive invocations take consecutive
// points of the same component, so they read the same parameters at the same time.
fn log_joint_tile(lid: u32) {
    let q = T / PPT;
    for (var p = lid; p < q * K; p += WG) {
        let t = p % q;
        let k = p / q;
        let v = log_jointv(t, k);
        for (var c = 0u; c < PPT; c++) {
            lj[(t + c * q) * K + k] = v[c];
        }
    }
}
