// Viterbi's recursion (ROWS = 1; one item per sequence), in f32 log space:
//   δ_0(j) = ln π_j + log b_j(x_0),  δ_t(j) = max_i (δ_{t−1}(i) + ln A_ij) + log b_j(x_t),
// with the argmax (the lowest i among ties, as numpy's argmax) in bp[t·K + j]. δ is shifted by
// its maximum at every step (the shifts summed into the path's log-probability) so that f32
// keeps its precision along long sequences. The host backtracks from the final δ.
//
// A dispatch runs steps [blk.first, blk.first + VB) of every item, so that one invocation's loops
// stay within the driver's budget; δ and the summed shifts carry over in dl between dispatches:
// dl[item·K + j] = δ(j), dl[n_items·K + 2·item + {0, 1}] = Σ shifts with its compensation.
// Needs hmm_common.wgsl (prepended) and VB. items[i] = (first row, steps, 0, 0); wgsteps[g]: the
// longest of workgroup g's items.

struct Block {
    first: u32,
    n_items: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> blk: Block;
@group(0) @binding(1) var<storage, read> items: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> wgsteps: array<u32>;
@group(0) @binding(3) var<storage, read> logb: array<f32>;
@group(0) @binding(4) var<storage, read> hp: array<f32>;
@group(0) @binding(5) var<storage, read_write> bp: array<u32>;
@group(0) @binding(6) var<storage, read_write> dl: array<f32>;

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
    let row0 = info.x;
    let len = info.y;
    var n_wg = 0u;
    if (g * IPW < blk.n_items) {
        n_wg = wgsteps[g];
    }
    let last = min(blk.first + VB, n_wg);
    let n = load_steps(lid, max(last, blk.first) - blk.first);
    let gb = lid - lane;
    let j = lane;
    let off_at = blk.n_items * K + 2u * it;
    var dv = NEG;
    var off = 0.0;
    var offc = 0.0;
    if (live && blk.first > 0u && blk.first < len) {
        if (j < K) {
            dv = dl[it * K + j];
        }
        off = dl[off_at];
        offc = dl[off_at + 1u];
    }
    for (var s = 0u; s < n; s++) {
        let step = blk.first + s;
        let gact = live && step < len;
        let act = gact && j < K;
        let t = row0 + step;
        workgroupBarrier();
        sh[lid] = dv;
        workgroupBarrier();
        var nv = NEG;
        if (act) {
            if (step == 0u) {
                nv = hp[j] + logb[t * K + j];
            } else {
                var best = sh[gb] + hp[OFF_LA + j];
                var arg = 0u;
                for (var i = 1u; i < K; i++) {
                    let v = sh[gb + i] + hp[OFF_LA + i * K + j];
                    if (v > best) {
                        best = v;
                        arg = i;
                    }
                }
                nv = best + logb[t * K + j];
                bp[t * K + j] = arg;
            }
        }
        let m = group_max(lid, lane, nv);
        if (act) {
            dv = nv - m;
        }
        if (gact) {
            let u = off + m;
            offc += select((m - u) + off, (off - u) + m, abs(off) >= abs(m));
            off = u;
        }
    }
    if (live && blk.first < len) {
        if (j < K) {
            dl[it * K + j] = dv;
        }
        if (lane == 0u) {
            dl[off_at] = off;
            dl[off_at + 1u] = offc;
        }
    }
}
