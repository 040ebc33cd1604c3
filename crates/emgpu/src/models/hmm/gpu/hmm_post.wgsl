// State posteriors and the statistics of the transitions, per item of hmm_chain's segments
// (ROWS = 1), from ln α̂ (in `gam`, replaced by γ) and ln β̂ (models/hmm/forward_backward.rs's
// `posteriors`, in logarithms):
//   γ_t(j)    = exp(q_j − lse(q)),  q_j = ln α̂_tj + ln β̂_tj
//   ξ_t(i, j) = exp(z_ij − lse(z)),  z_ij = ln α̂_ti + ln A_ij + log b_j(x_{t+1}) + ln β̂_{t+1,j}
// for every step t of the item and, for ξ, every t whose next step is in the same sequence
// (which may be the first step of the next chunk). Lane i owns row i of ξ: it walks j twice for
// lse_j(ln A_ij + v_j) (v_j = log b_j + ln β̂_{t+1,j}, exchanged in workgroup memory), the
// lanes' lse gives the normalizer, and a third walk adds ξ_t(i, ·).
// Needs hmm_common.wgsl (prepended) and PH = 1 + K + K² floats per partial row.
//
// Output: part[item·PH + ...]: [0] the item's log-likelihood (copied from seg_ll), [1, 1+K)
// γ of the sequence's first step (items with FIRST; 0 otherwise), [1+K, PH) Σ_t ξ_t, row-major.
// The rows are summed by reduce_partials.wgsl.

struct Args {
    n_items: u32,
    n_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> args: Args;
@group(0) @binding(1) var<storage, read> items: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> wgsteps: array<u32>;
@group(0) @binding(3) var<storage, read> logb: array<f32>;
@group(0) @binding(4) var<storage, read> hp: array<f32>;
@group(0) @binding(5) var<storage, read> lbeta: array<f32>;
@group(0) @binding(6) var<storage, read_write> gam: array<f32>;
@group(0) @binding(7) var<storage, read> seg_ll: array<f32>;
@group(0) @binding(8) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = workgroup_index(wid, nwg);
    let lane = lid % LK;
    let it = g * IPW + lid / LK;
    let live = it < args.n_items;
    var info = vec4<u32>(0u);
    if (live) {
        info = items[it];
    }
    let row0 = info.x;
    let len = info.y;
    let flags = info.z;
    var n_wg = 0u;
    if (g * IPW < args.n_items) {
        n_wg = wgsteps[g];
    }
    let n = load_steps(lid, n_wg);
    let gb = lid - lane;
    let i = lane;
    let base = it * PH;
    if (live) {
        if (lane == 0u) {
            part[base] = seg_ll[it];
        }
        if (i < K) {
            part[base + 1u + i] = 0.0;
            for (var j = 0u; j < K; j++) {
                part[base + 1u + K + i * K + j] = 0.0;
            }
        }
    }

    for (var s = 0u; s < n; s++) {
        let gact = live && s < len;
        let act = gact && i < K;
        let t = row0 + s;
        var la = NEG;
        var q = NEG;
        if (act) {
            la = gam[t * K + i];
            q = la + lbeta[t * K + i];
        }
        let zg = group_lse(lid, lane, q);
        if (act) {
            let gi = exp(q - zg);
            gam[t * K + i] = gi;
            if (s == 0u && (flags & FIRST) != 0u) {
                part[base + 1u + i] = gi;
            }
        }
        let has_next = gact && (s + 1u < len || (flags & LAST) == 0u);
        var v = NEG;
        if (has_next && i < K) {
            v = logb[(t + 1u) * K + i] + lbeta[(t + 1u) * K + i];
        }
        sh[lid] = v;
        workgroupBarrier();
        var z = NEG;
        if (has_next && i < K) {
            let row = OFF_LA + i * K;
            var mx = NEG;
            for (var j = 0u; j < K; j++) {
                mx = max(mx, hp[row + j] + sh[gb + j]);
            }
            var sm = 0.0;
            for (var j = 0u; j < K; j++) {
                sm += exp(hp[row + j] + sh[gb + j] - mx);
            }
            z = la + mx + log(sm);
        }
        let zx = group_lse(lid, lane, z);
        if (has_next && i < K) {
            let row = OFF_LA + i * K;
            let o = base + 1u + K + i * K;
            for (var j = 0u; j < K; j++) {
                part[o + j] += exp(la + hp[row + j] + sh[gb + j] - zx);
            }
        }
        // The reads of sh are done before the next step writes it.
        workgroupBarrier();
    }
}
