// The word-topic statistics of a chunk, first pass: for every segment (a run of at most SEG
// entries of one word, in word order) and topic k, Σ over its entries of r_j · t_{doc(j) k}.
// One invocation per (segment, topic). Prepended: `const K: u32`, `const WG: u32`.
// CPU twin: `models::lda::cpu::doc_stats` (the accumulation `S[w] += r_j · t`).

struct SegInfo {
    n_segs: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> info: SegInfo;
// [segments + 1]: where each segment's entries start in `ent`.
@group(0) @binding(1) var<storage, read> seg_ptr: array<u32>;
// [entries][2]: the entry's position in the chunk's rows (for `r`) and its document.
@group(0) @binding(2) var<storage, read> ent: array<u32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
// [doc][γ K | t K].
@group(0) @binding(4) var<storage, read> gt: array<f32>;
@group(0) @binding(5) var<storage, read_write> seg_part: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let seg = i / K;
    if (seg >= info.n_segs) {
        return;
    }
    let k = i - seg * K;
    var acc = 0.0;
    for (var q = seg_ptr[seg]; q < seg_ptr[seg + 1u]; q++) {
        acc = fma(r[ent[2u * q]], gt[ent[2u * q + 1u] * 2u * K + K + k], acc);
    }
    seg_part[i] = acc;
}
