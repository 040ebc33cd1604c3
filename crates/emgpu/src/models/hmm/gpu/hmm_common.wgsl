// Shared by the hidden-Markov-model kernels (hmm_chain, hmm_post, hmm_scan, hmm_viterbi): the
// lane layout, the parameter buffer, and reductions over the lanes of one vector.
//
// Constants (prepended by models/hmm/gpu/kernels.rs, one pipeline per value set):
//   K     states;  LK  lanes per vector (K rounded up to a power of two; lanes ≥ K are padding)
//   ROWS  vectors per item (1; LK for the transfer matrices of hmm_chain)
//   WG    invocations per workgroup (a multiple of ROWS·LK);  IPW = WG / (ROWS·LK) items per
//         workgroup
//   OFF_A, OFF_LA  offsets of transmat and ln transmat in `hp`
//
// Invocation lid works on item IPW·g + lid / (ROWS·LK) of its workgroup g (workgroups numbered
// g = wid.y·nwg.x + wid.x), vector (lid / LK) % ROWS of it, state lid % LK.
//
// `hp` (f32, written by the host before every pass): [0, K) ln startprob, [OFF_A, +K²) transmat
// (row-major, row i: from state i), [OFF_LA, +K²) ln transmat. Logarithms of 0 are NEG: a large
// finite negative number (no infinities in the kernels), whose exp is 0 and whose sums with a
// few others stay finite.

const NEG: f32 = -1.0e30;
// Bit of an item's flags: the item starts its sequence.
const FIRST: u32 = 1u;
// Bit of an item's flags: the item ends its sequence.
const LAST: u32 = 2u;

var<workgroup> red: array<f32, WG>;
// One value per invocation: the vector of the previous step, exchanged between the lanes.
var<workgroup> sh: array<f32, WG>;
// Per workgroup: how many steps its items run (the largest count among them).
var<workgroup> wg_steps: u32;

fn safe_log(x: f32) -> f32 {
    return select(NEG, log(x), x > 0.0);
}

// Max over the LK lanes of the caller's vector (lane = lid % LK): a tree in workgroup memory.
// Called by every invocation (uniform control flow); log2(LK) loop iterations.
fn group_max(lid: u32, lane: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var h = LK / 2u; h > 0u; h >>= 1u) {
        if (lane < h) {
            red[lid] = max(red[lid], red[lid + h]);
        }
        workgroupBarrier();
    }
    let r = red[lid - lane];
    workgroupBarrier();
    return r;
}

// Sum over the LK lanes of the caller's vector, as group_max.
fn group_sum(lid: u32, lane: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var h = LK / 2u; h > 0u; h >>= 1u) {
        if (lane < h) {
            red[lid] += red[lid + h];
        }
        workgroupBarrier();
    }
    let r = red[lid - lane];
    workgroupBarrier();
    return r;
}

// log Σ exp(v) over the lanes (padding lanes pass NEG).
fn group_lse(lid: u32, lane: u32, v: f32) -> f32 {
    let m = group_max(lid, lane, v);
    let s = group_sum(lid, lane, exp(v - m));
    return m + log(s);
}

// The workgroup's linear index.
fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// The steps the workgroup runs (from a per-workgroup table), the same in every invocation.
fn load_steps(lid: u32, count: u32) -> u32 {
    if (lid == 0u) {
        wg_steps = count;
    }
    return workgroupUniformLoad(&wg_steps);
}
