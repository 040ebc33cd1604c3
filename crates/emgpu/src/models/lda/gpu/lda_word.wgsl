// The word-topic statistics of a chunk, second pass: S_{w k} += Σ over the segments of word w of
// their sums (`lda_seg.wgsl`). One invocation per (word, topic); S accumulates over the chunks.
// Prepended: `const K: u32`, `const WG: u32`.

struct WordInfo {
    n_words: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> info: WordInfo;
// [V + 1]: each word's segments.
@group(0) @binding(1) var<storage, read> word_seg: array<u32>;
@group(0) @binding(2) var<storage, read> seg_part: array<f32>;
@group(0) @binding(3) var<storage, read_write> s: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let w = i / K;
    if (w >= info.n_words) {
        return;
    }
    let k = i - w * K;
    var acc = 0.0;
    for (var sg = word_seg[w]; sg < word_seg[w + 1u]; sg++) {
        acc += seg_part[sg * K + k];
    }
    s[i] += acc;
}
