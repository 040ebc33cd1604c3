// The forward (DIR = 0) or backward (DIR = 1) recursion of a hidden Markov model over items of
// consecutive steps, in f32, with the vectors kept as logarithms normalized at every step (the
// scaled recursion of models/hmm/forward_backward.rs, with the shifts of its forward pass on both
// sides, so that no step under- or overflows):
//   forward   s_j = ln (Σ_i a_i A_ij) + log b_j(x_t),  m = max_j s_j,  c = Σ_j exp(s_j − m),
//             ln α̂_tj = s_j − m − ln c,  a = α̂_t (probabilities, for the next step),
//             log p += m + ln c
//   backward  y_k = ln β̂_{t+1,k} + log b_k(x_{t+1}),  m = max_k y_k,  w_k = exp(y_k − m),
//             β_i = Σ_k A_ik w_k,  n = Σ_i β_i,  ln β̂_ti = ln β_i − ln n
// Needs hmm_common.wgsl (prepended) and MODE:
//   MODE 0 (segments; ROWS = 1): an item is a run of steps of one sequence (a whole sequence, or
//     a chunk of a long one). Forward: starts from ln startprob (flag FIRST) or from the chunk's
//     incoming predictive vector vecs[xid] (ln of α̂_{t−1}·A, from hmm_scan); writes ln α̂ of
//     every step to out[t·K + j] and the item's Σ (m + ln c) to seg_ll[item]. Backward: starts
//     at the item's last step from 0 (flag LAST: β̂ uniform) or from vecs[X + xid] (ln β̂ there,
//     from hmm_scan); writes ln β̂ of every step.
//   MODE 1 (transfer matrices; ROWS = LK): an item is a chunk of a long sequence; vector r < K
//     runs the chunk's recursion from the unit vector e_r (forward: as predictive vector before
//     the chunk's first step; backward: as β̂ at its last step) and keeps its log-scale
//     relative to vector 0, d_r (Σ over steps of (m + ln c)_r − (m + ln c)_0). Output at
//     out[DIR·X·(K+1)·K + xid·(K+1)·K]: rows r < K: forward the normalized α̂_end·A of vector r,
//     backward its normalized β̂ one step before the chunk (K probabilities each); row K: d.
//     The chunk maps any incoming vector v to Σ_r v_r·exp(d_r)·row_r (up to scale): hmm_scan
//     chains the chunks with that.
//
// items[i] = (first row, steps, flags, xid); wgsteps[g]: the most iterations of workgroup g's
// items (forward: steps; backward: steps, and one more for transfer matrices).

struct Args {
    n_items: u32,
    // Chunks of long sequences (X): the stride of the two halves of vecs and xfer.
    n_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> args: Args;
@group(0) @binding(1) var<storage, read> items: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> wgsteps: array<u32>;
@group(0) @binding(3) var<storage, read> logb: array<f32>;
@group(0) @binding(4) var<storage, read> hp: array<f32>;
@group(0) @binding(5) var<storage, read> vecs: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> seg_ll: array<f32>;

// Per vector: its log-scale increment of the step (transfer matrices).
var<workgroup> incs: array<f32, WG / LK>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = workgroup_index(wid, nwg);
    let lane = lid % LK;
    let row = (lid / LK) % ROWS;
    let it = g * IPW + lid / (LK * ROWS);
    let live = it < args.n_items;
    var info = vec4<u32>(0u);
    if (live) {
        info = items[it];
    }
    let row0 = info.x;
    let len = info.y;
    let flags = info.z;
    let xid = info.w;
    var count = len;
    if (DIR == 1u && MODE == 1u) {
        count = len + 1u;
    }
    var n_wg = 0u;
    if (g * IPW < args.n_items) {
        n_wg = wgsteps[g];
    }
    let n = load_steps(lid, n_wg);
    let gb = lid - lane;
    // Padding vectors of transfer matrices (row ≥ K) run like inactive ones.
    let real = live && (MODE == 0u || row < K);
    let j = lane;

    var lv = NEG;
    var d = 0.0;
    var ll = 0.0;
    var llc = 0.0;
    for (var s = 0u; s < n; s++) {
        let gact = real && s < count;
        let act = gact && j < K;
        // The previous step's writes of sh are visible.
        workgroupBarrier();
        var inc = 0.0;
        if (DIR == 0u) {
            let t = row0 + s;
            var sv = NEG;
            if (act) {
                var lp = NEG;
                if (s == 0u) {
                    if (MODE == 0u) {
                        if ((flags & FIRST) != 0u) {
                            lp = hp[j];
                        } else {
                            lp = vecs[xid * K + j];
                        }
                    } else {
                        lp = select(NEG, 0.0, j == row);
                    }
                } else {
                    var pred = 0.0;
                    for (var i = 0u; i < K; i++) {
                        pred = fma(sh[gb + i], hp[OFF_A + i * K + j], pred);
                    }
                    lp = safe_log(pred);
                }
                sv = lp + logb[t * K + j];
            }
            let m = group_max(lid, lane, sv);
            var e = 0.0;
            if (act) {
                e = exp(sv - m);
            }
            let c = group_sum(lid, lane, e);
            if (gact) {
                let lnc = log(c);
                inc = m + lnc;
                if (j < K) {
                    lv = sv - m - lnc;
                    sh[lid] = e / c;
                    if (MODE == 0u) {
                        out[t * K + j] = lv;
                    }
                } else {
                    sh[lid] = 0.0;
                }
            }
        } else {
            var y = NEG;
            if (s == 0u) {
                if (act) {
                    if (MODE == 0u) {
                        if ((flags & LAST) != 0u) {
                            lv = 0.0;
                        } else {
                            lv = vecs[args.n_x * K + xid * K + j];
                        }
                        out[(row0 + len - 1u) * K + j] = lv;
                    } else {
                        lv = select(NEG, 0.0, j == row);
                    }
                }
            } else {
                let next = row0 + len - s;
                if (act) {
                    y = lv + logb[next * K + j];
                }
            }
            // At s = 0 the reductions see NEG everywhere and change nothing.
            let m = group_max(lid, lane, y);
            var w = 0.0;
            if (act && s > 0u) {
                w = exp(y - m);
            }
            sh[lid] = w;
            workgroupBarrier();
            var beta = 0.0;
            if (act && s > 0u) {
                for (var k = 0u; k < K; k++) {
                    beta = fma(hp[OFF_A + j * K + k], sh[gb + k], beta);
                }
            }
            let nrm = group_sum(lid, lane, beta);
            if (gact && s > 0u) {
                let lnn = log(nrm);
                inc = m + lnn;
                if (j < K) {
                    lv = safe_log(beta) - lnn;
                    if (MODE == 0u) {
                        out[(row0 + len - s - 1u) * K + j] = lv;
                    }
                }
            }
        }
        if (MODE == 0u) {
            if (DIR == 0u && gact && lane == 0u) {
                // Neumaier's compensated sum: the log-likelihood drives the stopping test.
                let t = ll + inc;
                llc += select((inc - t) + ll, (ll - t) + inc, abs(ll) >= abs(inc));
                ll = t;
            }
        } else {
            if (lane == 0u) {
                incs[lid / LK] = inc;
            }
            workgroupBarrier();
            if (gact) {
                d += inc - incs[lid / LK - row];
            }
        }
    }

    workgroupBarrier();
    if (MODE == 0u) {
        if (DIR == 0u && live && lane == 0u) {
            seg_ll[it] = ll + llc;
        }
    } else if (real && j < K) {
        let o = (DIR * args.n_x + xid) * (K + 1u) * K;
        if (DIR == 0u) {
            // Fold the transition out of the chunk in: α̂_end·A (sums to 1).
            var r = 0.0;
            for (var i = 0u; i < K; i++) {
                r = fma(sh[gb + i], hp[OFF_A + i * K + j], r);
            }
            out[o + row * K + j] = r;
        } else {
            out[o + row * K + j] = exp(lv);
        }
        if (lane == 0u) {
            out[o + K * K + row] = d;
        }
    }
}
