// The short serial pass over the chunks of each long sequence (ROWS = 1; one item per long
// sequence): from the chunks' transfer matrices (hmm_chain, MODE 1), the true incoming vector of
// every chunk, forward and backward:
//   forward   v_0 = ln startprob;  v_{c+1} = ln normalize(Σ_r exp(v_c(r) + d_r)·row_r)  (chunk c)
//             → vecs[xid0 + c + 1]: ln α̂_{t−1}·A before chunk c + 1 (sums to 1)
//   backward  v_{n−1} = 0 (β̂ uniform at the last step);
//             v_{c−1} = ln normalize(Σ_r exp(v_c(r) + d_r)·row_r)  (chunk c)
//             → vecs[X + xid0 + c − 1]: ln β̂ at the last step of chunk c − 1
// The weights exp(v(r) + d_r) are shifted by their maximum (log-sum-exp), so the relative scales
// of the rows, however far apart, combine without overflow.
//
// A dispatch runs iterations [blk.first, blk.first + CB) of every item (forward chunk c = q,
// backward chunk c = n − 1 − q for iteration q), so that one invocation's loops stay within the
// driver's budget; the vectors carry over in vecs between dispatches.
// Needs hmm_common.wgsl (prepended) and CB. items[i] = (xid0, chunks n, 0, 0); wgsteps[g]: the
// most iterations (n − 1) of workgroup g's items.

struct Block {
    first: u32,
    n_items: u32,
    n_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> blk: Block;
@group(0) @binding(1) var<storage, read> items: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> wgsteps: array<u32>;
@group(0) @binding(3) var<storage, read> hp: array<f32>;
@group(0) @binding(4) var<storage, read> xfer: array<f32>;
@group(0) @binding(5) var<storage, read_write> vecs: array<f32>;

// One chunk's map applied to v (lane j's entry); `o` is the chunk's transfer matrix in xfer.
fn combine(lid: u32, lane: u32, act: bool, v: f32, o: u32) -> f32 {
    let j = lane;
    var w = NEG;
    if (act) {
        w = v + xfer[o + K * K + j];
    }
    let m = group_max(lid, lane, w);
    var p = 0.0;
    if (act) {
        p = exp(w - m);
    }
    sh[lid] = p;
    workgroupBarrier();
    var x = 0.0;
    if (act) {
        let gb = lid - lane;
        for (var r = 0u; r < K; r++) {
            x = fma(sh[gb + r], xfer[o + r * K + j], x);
        }
    }
    let total = group_sum(lid, lane, x);
    return safe_log(x) - log(total);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = workgroup_index(wid, nwg);
    let lane = lid % LK;
    let it = g * IPW + lid / LK;
    let live = it < blk.n_items;
    var info = vec4<u32>(0u);
    if (live) {
        info = items[it];
    }
    let xid0 = info.x;
    let nch = info.y;
    var n_wg = 0u;
    if (g * IPW < blk.n_items) {
        n_wg = wgsteps[g];
    }
    let last = min(blk.first + CB, n_wg);
    let n = load_steps(lid, max(last, blk.first) - blk.first);
    let j = lane;
    let stride = (K + 1u) * K;
    let bwd = blk.n_x * stride;
    // Carried over from the previous dispatch (or the sequence's ends).
    var vf = NEG;
    var vb = NEG;
    if (live && j < K && blk.first + 1u < nch) {
        if (blk.first == 0u) {
            vf = hp[j];
            vb = 0.0;
        } else {
            vf = vecs[(xid0 + blk.first) * K + j];
            vb = vecs[blk.n_x * K + (xid0 + nch - 1u - blk.first) * K + j];
        }
    }
    for (var s = 0u; s < n; s++) {
        let q = blk.first + s;
        let act = live && q + 1u < nch && j < K;
        let f = combine(lid, lane, act, vf, (xid0 + q) * stride);
        let b = combine(lid, lane, act, vb, bwd + (xid0 + nch - 1u - q) * stride);
        if (act) {
            vf = f;
            vb = b;
            vecs[(xid0 + q + 1u) * K + j] = vf;
            vecs[blk.n_x * K + (xid0 + nch - 2u - q) * K + j] = vb;
        }
    }
}
