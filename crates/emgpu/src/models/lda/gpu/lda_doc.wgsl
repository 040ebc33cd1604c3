// The per-document variational E-step of LDA: one workgroup per document of the chunk.
//
// Prepended by the host: `const K: u32` (topics), `const WG: u32` (invocations), `const G: u32`
// (word slices of the topic sums: WG / K when K <= WG, else 1), `const MAX_UPDATES: u32` (100),
// and `lda_common.wgsl` (digamma, ln_gamma).
//
// A document's state lives in `gt` ([doc][γ K | t K]) and `state` ([doc][status, bound]):
// status = the γ updates done so far, | DONE once the document stopped. Each dispatch runs at
// most `info.updates` γ updates of every document not yet done (the host dispatches again until
// all could have run MAX_UPDATES: a software adapter bounds the loop iterations of a dispatch):
//   t = exp(ψ(γ) − ψ(Σγ))            (γ = 1 before the first update)
//   r_j = cnt_j / (t · expβ_{w_j} + EPS)
//   γ_k = t_k · Σ_j r_j expβ_{w_j k} + α
// stopping after the update whose mean |Δγ| is below `info.tol`, or after MAX_UPDATES. A document
// that stops gets its final t, r_j (for the word-topic statistics, `lda_seg.wgsl`) and its part of
// the approximate bound: Σ_j cnt_j ln(t · expβ_{w_j}) + Σ_k [(α − γ_k) E[log θ_k] + ln Γ(γ_k)
// − ln Γ(α)] + ln Γ(Kα) − ln Γ(Σγ).
// CPU twin: `models::lda::cpu` (`doc_gamma`, `doc_stats`).

struct Info {
    n_docs: u32,
    updates: u32,
    alpha: f32,
    tol: f32,
    ln_gamma_alpha: f32,
    ln_gamma_k_alpha: f32,
    eps: f32,
    _pad: u32,
}

const DONE: u32 = 0x80000000u;

@group(0) @binding(0) var<uniform> info: Info;
@group(0) @binding(1) var<storage, read> doc_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> words: array<u32>;
@group(0) @binding(3) var<storage, read> cnt: array<f32>;
@group(0) @binding(4) var<storage, read> eb: array<f32>;
@group(0) @binding(5) var<storage, read_write> gt: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: array<u32>;
@group(0) @binding(7) var<storage, read_write> r: array<f32>;

var<workgroup> t_w: array<f32, K>;
var<workgroup> g_w: array<f32, K>;
var<workgroup> s_w: array<f32, K>;
var<workgroup> part: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
var<workgroup> flag: u32;

// Σ over the workgroup of `v` (every invocation must call it; all see the sum).
fn sum_all(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (lid < s) {
            red[lid] += red[lid + s];
        }
    }
    let total = workgroupUniformLoad(&red[0]);
    // Nobody writes `red` again before everyone has read the sum.
    workgroupBarrier();
    return total;
}

// t_w = exp(ψ(γ) − ψ(Σγ)) (E[log θ] ≤ 0); returns ψ(Σγ) and Σγ.
fn update_t(lid: u32) -> vec2<f32> {
    var gs = 0.0;
    for (var k = lid; k < K; k += WG) {
        gs += g_w[k];
    }
    let total = sum_all(lid, gs);
    let psi_total = digamma(total);
    for (var k = lid; k < K; k += WG) {
        t_w[k] = exp(min(digamma(g_w[k]) - psi_total, 0.0));
    }
    workgroupBarrier();
    return vec2<f32>(psi_total, total);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let doc = wid.x + wid.y * nwg.x;
    if (doc >= info.n_docs) {
        return;
    }
    if (lid == 0u) {
        flag = state[2u * doc];
    }
    let status = workgroupUniformLoad(&flag);
    if ((status & DONE) != 0u) {
        return;
    }
    let start = doc_ptr[doc];
    let m = doc_ptr[doc + 1u] - start;
    let base = doc * 2u * K;
    var count = status;
    for (var k = lid; k < K; k += WG) {
        g_w[k] = select(gt[base + k], 1.0, count == 0u);
    }
    workgroupBarrier();

    var done = false;
    for (var it = 0u; it < info.updates; it++) {
        update_t(lid);
        // r_j = cnt_j / (t · expβ_j + EPS)
        for (var j = lid; j < m; j += WG) {
            let row = words[start + j] * K;
            var dot = 0.0;
            for (var k = 0u; k < K; k++) {
                dot = fma(t_w[k], eb[row + k], dot);
            }
            r[start + j] = cnt[start + j] / (dot + info.eps);
        }
        storageBarrier();
        // s_k = Σ_j r_j expβ_{j k}: G slices of the words per topic, then summed.
        if (G == 1u) {
            for (var k = lid; k < K; k += WG) {
                var acc = 0.0;
                for (var j = 0u; j < m; j++) {
                    acc = fma(r[start + j], eb[words[start + j] * K + k], acc);
                }
                s_w[k] = acc;
            }
        } else {
            let k = lid % K;
            let g = lid / K;
            var acc = 0.0;
            if (g < G) {
                for (var j = g; j < m; j += G) {
                    acc = fma(r[start + j], eb[words[start + j] * K + k], acc);
                }
            }
            part[lid] = acc;
            workgroupBarrier();
            if (lid < K) {
                var s = 0.0;
                for (var q = 0u; q < G; q++) {
                    s += part[q * K + lid];
                }
                s_w[lid] = s;
            }
        }
        workgroupBarrier();
        var change = 0.0;
        for (var k = lid; k < K; k += WG) {
            let g = fma(t_w[k], s_w[k], info.alpha);
            change += abs(g - g_w[k]);
            g_w[k] = g;
        }
        let total_change = sum_all(lid, change);
        count += 1u;
        if (total_change / f32(K) < info.tol || count >= MAX_UPDATES) {
            done = true;
            break;
        }
    }

    if (!done) {
        for (var k = lid; k < K; k += WG) {
            gt[base + k] = g_w[k];
        }
        if (lid == 0u) {
            state[2u * doc] = count;
        }
        return;
    }

    // The document stopped: its final t, r and bound.
    let pt = update_t(lid);
    var b = 0.0;
    for (var k = lid; k < K; k += WG) {
        let g = g_w[k];
        let elog = digamma(g) - pt.x;
        b += (info.alpha - g) * elog + ln_gamma(g) - info.ln_gamma_alpha;
        gt[base + k] = g;
        gt[base + K + k] = t_w[k];
    }
    for (var j = lid; j < m; j += WG) {
        let row = words[start + j] * K;
        var dot = 0.0;
        for (var k = 0u; k < K; k++) {
            dot = fma(t_w[k], eb[row + k], dot);
        }
        let c = cnt[start + j];
        r[start + j] = c / (dot + info.eps);
        b += c * log(dot);
    }
    let bound = sum_all(lid, b);
    if (lid == 0u) {
        state[2u * doc] = count | DONE;
        state[2u * doc + 1u] = bitcast<u32>(bound + info.ln_gamma_k_alpha - ln_gamma(pt.y));
    }
}
