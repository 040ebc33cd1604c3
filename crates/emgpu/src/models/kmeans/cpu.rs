//! The k-means assignment on the CPU in f64: a blocked path (the default) and the point-by-point
//! reference.
//!
//! The reference ([`assign_reference`]) is the twin of a GPU assignment kernel and the oracle of
//! the tests. The blocked path ([`assign_blocked`]) is scikit-learn's Lloyd: per chunk of
//! [`blocked_gemm_rows`] rows (cache-resident), one GEMM `X·Cᵀ` gives every point-center product,
//! the argmin of `‖c‖² − 2x·c` the label (`‖x‖²` is the same for every center and is not needed),
//! and the statistics are summed in the same pass. Both run in parallel over blocks of rows; block
//! statistics are merged in block order, so a fit is reproducible bit for bit whatever the number
//! of threads.
//!
//! Numerics of the blocked path: `‖c‖² − 2x·c` cancels when the points are far from the origin
//! (its terms are `‖x‖‖c‖` large while the distances are small), so points and centers are first
//! moved by the same origin (the first center; distances do not change). The GEMM and the argmin
//! run in f32 (twice the arithmetic per instruction of f64, half the bytes) as a *screening*: each
//! f32 score is within a proven bound of its exact value (the roundings of the inputs, of a dot
//! product of D terms and of the sums), so a row whose best score beats the second best by more
//! than twice that bound has its nearest center; a row that does not (a near-tie, or a score past
//! f32's range) gets its distances to every center in f64, as the reference computes them. The
//! distance of the chosen center is then computed directly in f64 as `‖x − c‖²` (with
//! [`sq_distance`]), so labels, inertia, distances and the sums `Σ (x − c)` are the f64
//! reference's up to the rounding of a sum, and a point whose two nearest centers are within f64
//! rounding may take the other one of them (scikit-learn's Lloyd has the same property). A score
//! that is not finite (f32 overflows past ~1.8e19 in a coordinate) proves nothing: its row is
//! decided in f64.
//!
//! Speed: rows the data hold in place (a row-major array, a C-order `.npy` map, f32 or f64) are
//! read there, with no copy; the f64 arithmetic of each row (its exact distance and its share of
//! the sums) runs with AVX-512 or AVX2 where the CPU has them, in the same order as the portable
//! code (the same bits). With at most 16 centers on a CPU with AVX-512F the screening needs no GEMM: each
//! row's 16 scores fill one register (`avx512_screen`): about 10 % less time per iteration than
//! the GEMM screening at 1M × 16, K = 16 (one thread, CPU time).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::KMeansStats;
use super::{FarPoint, KMeansEngine};
use crate::data::{Dataset, Element, RowsRef};
use crate::device::{BackendReport, CpuPath, EngineOptions, cpu_report};
use crate::error::{Error, Result};

/// The label the engines hold for "not assigned yet" (every label differs from it).
pub const NO_LABEL: u32 = u32::MAX;

pub use crate::numerics::sq_distance;

/// Rows per chunk of the CPU assignment (the unit of parallel work; the blocked path splits it in
/// GEMM chunks of [`blocked_gemm_rows`]).
pub const ASSIGN_CHUNK_ROWS: usize = 4096;

/// Bytes of one GEMM chunk of the blocked assignment (its rows, the rows moved by the origin and
/// their K products): half of a 1 MiB L2 cache.
pub const BLOCKED_GEMM_BYTES: usize = 512 * 1024;

/// Rows whose nearest center the blocked assignment looks for together (two AVX2 registers of
/// f64 for the running minimum, two for its index).
const ARGMIN_LANES: usize = 8;

/// Rows per GEMM of the blocked assignment for D features and K centers: as many as fit in
/// [`BLOCKED_GEMM_BYTES`], between 64 and 1024 (1024 at D = K = 16, 128 at D = 128, K = 256).
pub fn blocked_gemm_rows(n_features: usize, n_clusters: usize) -> usize {
    (BLOCKED_GEMM_BYTES / (8 * (2 * n_features + n_clusters)).max(1)).clamp(64, 1024)
}

/// `points` (`[m][D]`, row-major) transposed to `[D][m]`, the layout [`sq_distances_to`] reads.
pub fn transpose_points(points: &[f64], m: usize) -> Vec<f64> {
    let d = points.len() / m.max(1);
    let mut t = vec![0.0; points.len()];
    for (c, p) in points.chunks_exact(d.max(1)).enumerate() {
        for (j, &v) in p.iter().enumerate() {
            t[j * m + c] = v;
        }
    }
    t
}

/// `out[c] = ‖x − p_c‖²` for the `m = out.len()` points `p` given transposed (`pt` `[D][m]`, see
/// [`transpose_points`]). Summed over features in order; vectorized across the points.
#[inline]
pub fn sq_distances_to(x: &[f64], pt: &[f64], out: &mut [f64]) {
    let m = out.len();
    out.fill(0.0);
    for (j, &xj) in x.iter().enumerate() {
        for (o, &p) in out.iter_mut().zip(&pt[j * m..(j + 1) * m]) {
            let t = xj - p;
            *o += t * t;
        }
    }
}

/// Index and value of the smallest of `v`; ties go to the lowest index (scikit-learn's strict
/// `<` scan and `np.argmin`).
#[inline]
pub fn argmin(v: &[f64]) -> (usize, f64) {
    let mut best = (0, v[0]);
    for (c, &x) in v.iter().enumerate().skip(1) {
        if x < best.1 {
            best = (c, x);
        }
    }
    best
}

/// Assigns the rows of `x` (row-major f64) to their nearest center (squared Euclidean distance,
/// ties to the lowest index), writing `labels` and `dists` (one per row; `labels` holds the
/// previous assignment on entry, to count changes).
pub fn assign_chunk_reference(
    x: &[f64],
    centers: &[f64],
    n_clusters: usize,
    labels: &mut [u32],
    dists: &mut [f64],
) -> KMeansStats {
    assign_chunk_reference_weighted(x, None, centers, n_clusters, labels, dists)
}

/// [`assign_chunk_reference`] with a sample weight per row (`None`: all 1): the sums, counts
/// and inertia are weighted (scikit-learn's `sample_weight`).
pub fn assign_chunk_reference_weighted(
    x: &[f64],
    weights: Option<&[f64]>,
    centers: &[f64],
    n_clusters: usize,
    labels: &mut [u32],
    dists: &mut [f64],
) -> KMeansStats {
    let d = centers.len() / n_clusters;
    let mut stats = KMeansStats::zeros(n_clusters, d, centers);
    let ct = transpose_points(centers, n_clusters);
    let mut dist = vec![0.0; n_clusters];
    for (i, ((row, label), out)) in x
        .chunks_exact(d)
        .zip(labels.iter_mut())
        .zip(dists.iter_mut())
        .enumerate()
    {
        sq_distances_to(row, &ct, &mut dist);
        let (c, sq) = argmin(&dist);
        let changed = *label != c as u32;
        *label = c as u32;
        *out = sq;
        match weights {
            None => stats.add_point(row, c, sq, changed),
            Some(w) => stats.add_weighted_point(row, c, sq, changed, w[i]),
        }
    }
    stats
}

/// The whole assignment on the CPU: every point of `data`, in parallel over chunks of
/// `chunk_rows` rows, chunk statistics merged in order (weighted by the data's sample weights, if
/// any). `labels` and `dists` are `[N]`.
pub fn assign_reference(
    data: &Dataset,
    centers: &[f64],
    n_clusters: usize,
    chunk_rows: usize,
    labels: &mut [u32],
    dists: &mut [f64],
) -> Result<KMeansStats> {
    let d = data.n_features();
    let chunk_rows = chunk_rows.max(1);
    let parts: Vec<KMeansStats> = labels
        .par_chunks_mut(chunk_rows)
        .zip(dists.par_chunks_mut(chunk_rows))
        .enumerate()
        .map_init(Vec::new, |buf, (c, (l, dd))| {
            buf.resize(l.len() * d, 0.0);
            data.read_f64(c * chunk_rows, buf)?;
            let w = data.weights_of(c * chunk_rows, l.len());
            Ok(assign_chunk_reference_weighted(
                buf, w, centers, n_clusters, l, dd,
            ))
        })
        .collect::<Result<_>>()?;
    let mut total = KMeansStats::zeros(n_clusters, d, centers);
    for part in &parts {
        total.merge(part);
    }
    Ok(total)
}

/// The centers as the blocked assignment uses them: moved by an origin, with their squared norms,
/// in f64 and (for the screening GEMM) in f32.
struct BlockedCenters<'c> {
    k: usize,
    d: usize,
    centers: &'c [f64],
    /// The first center: points and centers are moved by it before the GEMM.
    origin: Vec<f64>,
    /// `c − origin` in f32, `[K][D]`.
    moved: Vec<f32>,
    /// `‖c − origin‖²` in f32, `[K]`.
    norms: Vec<f32>,
    /// `max_c ‖c − origin‖²`: the scale of the screening's rounding.
    max_sq_norm: f64,
    /// Relative rounding bound of one screening score, `(D + 4)·2⁻²⁴`, doubled for safety: a
    /// score is within `rounding·(2‖x − o‖·max_c ‖c − o‖ + max_sq_norm)` of its exact value
    /// (the exact `‖c − o‖² − 2 (x − o)·(c − o)`; Higham's bound for a dot product of D terms
    /// plus the roundings of the inputs to f32 and of the final sum).
    rounding: f64,
    /// With at most 16 centers on a CPU with AVX-512F: `−2 (c − o)` transposed, `[D][16]` f32,
    /// then the 16 norms (`f32::MAX` past K: a padding lane is never nearest, as a real score is
    /// either below it, equal to it and of a lower index, or not finite), for the fused
    /// screening (one register of scores per row, no GEMM).
    #[cfg(target_arch = "x86_64")]
    fused16: Option<Vec<f32>>,
}

/// One thread's buffers of the blocked assignment.
#[derive(Default)]
struct BlockedScratch {
    /// Rows as read, `[rows][D]`.
    x: Vec<f64>,
    /// Rows moved by the origin, in f32, `[rows][D]`.
    moved: Vec<f32>,
    /// `−2 (x − o)·(c − o)` in f32, `[K][rows]` (column-major `[rows][K]`).
    prod: Vec<f32>,
    /// The screening's nearest center per row (as f32: exact for K < 2²⁴).
    best_index: Vec<f32>,
    /// The gap between the nearest and the second-nearest screening score per row.
    gap: Vec<f32>,
    /// `‖x − c‖²` for every center, for a row whose screening is not conclusive.
    exact: Vec<f64>,
}

/// The screening's argmin for the rows of `prod` (`[K][rows]`, column-major) in groups of
/// [`ARGMIN_LANES`], with AVX2: `best_index[r]` is the first column of the smallest
/// `prod[c][r] + norms[c]`, `gap[r]` its distance to the second smallest, or NaN when any of the
/// row's scores is not finite (an f32 overflow: its exact value is then unknown, so nothing is
/// proved and the row is decided in f64). Returns how many rows it did (a multiple of the lanes;
/// none without AVX2): the caller does the rest one by one.
#[inline(always)]
fn screen_lanes(
    prod: &[f32],
    rows: usize,
    norms: &[f32],
    best_index: &mut [f32],
    gap: &mut [f32],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(
            prod: &[f32],
            rows: usize,
            norms: &[f32],
            best_index: &mut [f32],
            gap: &mut [f32],
        ) -> usize {
            use std::arch::x86_64::*;
            let k = norms.len();
            let full = rows - rows % ARGMIN_LANES;
            assert!(prod.len() >= k * rows && best_index.len() >= rows && gap.len() >= rows);
            for r0 in (0..full).step_by(ARGMIN_LANES) {
                // SAFETY: every load reads 8 values from `c * rows + r0` with
                // `r0 + 8 <= rows` and `c < K`, inside `prod` (asserted above); the stores
                // write 8 values from `r0` inside `best_index` and `gap`.
                unsafe {
                    let mut best = _mm256_add_ps(
                        _mm256_loadu_ps(prod.as_ptr().add(r0)),
                        _mm256_set1_ps(norms[0]),
                    );
                    let mut second = _mm256_set1_ps(f32::INFINITY);
                    let mut index = _mm256_setzero_ps();
                    // Lanes with a score that is ±∞ or NaN: |v| > f32::MAX, or unordered.
                    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
                    let max = _mm256_set1_ps(f32::MAX);
                    let mut bad = _mm256_cmp_ps::<_CMP_NLE_UQ>(_mm256_and_ps(best, abs), max);
                    for (c, &n) in norms.iter().enumerate().skip(1) {
                        let v = _mm256_add_ps(
                            _mm256_loadu_ps(prod.as_ptr().add(c * rows + r0)),
                            _mm256_set1_ps(n),
                        );
                        bad = _mm256_or_ps(
                            bad,
                            _mm256_cmp_ps::<_CMP_NLE_UQ>(_mm256_and_ps(v, abs), max),
                        );
                        let lt = _mm256_cmp_ps::<_CMP_LT_OQ>(v, best);
                        // min(v, second) returns `second` when v is NaN.
                        second = _mm256_blendv_ps(_mm256_min_ps(v, second), best, lt);
                        best = _mm256_blendv_ps(best, v, lt);
                        index = _mm256_blendv_ps(index, _mm256_set1_ps(c as f32), lt);
                    }
                    let g = _mm256_blendv_ps(
                        _mm256_sub_ps(second, best),
                        _mm256_set1_ps(f32::NAN),
                        bad,
                    );
                    _mm256_storeu_ps(best_index.as_mut_ptr().add(r0), index);
                    _mm256_storeu_ps(gap.as_mut_ptr().add(r0), g);
                }
            }
            full
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2(prod, rows, norms, best_index, gap) };
        }
    }
    let _ = (prod, rows, norms, best_index, gap);
    0
}

/// The per-row arithmetic of the blocked assignment, in f64, on rows in their stored precision:
/// portable Rust ([`Portable`]) or AVX2 (`Avx2`, x86-64). Both round alike (the same operations in
/// the same order: no fused multiply-add), so a fit's numbers do not depend on the CPU.
trait RowOps {
    /// `‖x − c‖²` with four partial sums, as [`sq_distance`] (the same bits for an f64 row).
    fn sq_distance<E: Row>(x: &[E], c: &[f64]) -> f64;
    /// `sums += w·(x − c)` (`w = None`: `sums += x − c`).
    fn add_difference<E: Row>(sums: &mut [f64], x: &[E], c: &[f64], w: Option<f64>);
    /// `out = (x − o) as f32`.
    fn moved<E: Row>(out: &mut [f32], x: &[E], o: &[f64]);
}

/// The precisions rows are read in by the blocked assignment (those of [`RowsRef`]).
trait Row: Element {
    /// Whether the type is f32 (else f64).
    const F32: bool;
}
impl Row for f32 {
    const F32: bool = true;
}
impl Row for f64 {
    const F32: bool = false;
}

/// [`RowOps`] in portable Rust.
struct Portable;

impl RowOps for Portable {
    #[inline(always)]
    fn sq_distance<E: Row>(x: &[E], c: &[f64]) -> f64 {
        let mut acc = [0.0f64; 4];
        let (x4, xr) = x.split_at(x.len() - x.len() % 4);
        let (c4, cr) = c.split_at(x4.len());
        for (x, y) in x4.chunks_exact(4).zip(c4.chunks_exact(4)) {
            for l in 0..4 {
                let t = x[l].to_f64() - y[l];
                acc[l] += t * t;
            }
        }
        let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (x, y) in xr.iter().zip(cr) {
            let t = x.to_f64() - y;
            s += t * t;
        }
        s
    }

    #[inline(always)]
    fn add_difference<E: Row>(sums: &mut [f64], x: &[E], c: &[f64], w: Option<f64>) {
        let terms = sums.iter_mut().zip(x).zip(c);
        match w {
            None => {
                for ((s, xj), cj) in terms {
                    *s += xj.to_f64() - cj;
                }
            }
            Some(w) => {
                for ((s, xj), cj) in terms {
                    *s += w * (xj.to_f64() - cj);
                }
            }
        }
    }

    #[inline(always)]
    fn moved<E: Row>(out: &mut [f32], x: &[E], o: &[f64]) {
        for ((m, x), o) in out.iter_mut().zip(x).zip(o) {
            *m = (x.to_f64() - o) as f32;
        }
    }
}

/// [`RowOps`] with AVX2 intrinsics, four f64 lanes (the four partial sums of
/// [`sq_distance`]); callable only where the CPU has AVX2 (the blocked assignment checks).
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
mod avx2_ops {
    use std::arch::x86_64::*;

    use super::Row;

    /// Four values from `p` as f64.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load4<E: Row>(p: *const E) -> __m256d {
        // SAFETY: the caller passes a pointer with 4 values of E readable from it.
        unsafe {
            if E::F32 {
                _mm256_cvtps_pd(_mm_loadu_ps(p.cast::<f32>()))
            } else {
                _mm256_loadu_pd(p.cast::<f64>())
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn sq_distance<E: Row>(x: &[E], c: &[f64]) -> f64 {
        let d = x.len().min(c.len());
        let d4 = d - d % 4;
        // SAFETY: every 4-value load starts at j < d4 ≤ d − 3 in both slices.
        let mut s = unsafe {
            let mut acc = _mm256_setzero_pd();
            for j in (0..d4).step_by(4) {
                let t = _mm256_sub_pd(load4(x.as_ptr().add(j)), _mm256_loadu_pd(c.as_ptr().add(j)));
                acc = _mm256_add_pd(acc, _mm256_mul_pd(t, t));
            }
            // (a0 + a1) + (a2 + a3)
            let pairs = _mm_hadd_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd::<1>(acc));
            _mm_cvtsd_f64(_mm_add_sd(pairs, _mm_unpackhi_pd(pairs, pairs)))
        };
        for j in d4..d {
            let t = x[j].to_f64() - c[j];
            s += t * t;
        }
        s
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn add_difference<E: Row>(sums: &mut [f64], x: &[E], c: &[f64], w: Option<f64>) {
        let d = sums.len().min(x.len()).min(c.len());
        let d4 = d - d % 4;
        // SAFETY: every 4-value load and store starts at j < d4 ≤ d − 3 in all three slices.
        unsafe {
            let weight = _mm256_set1_pd(w.unwrap_or(1.0));
            for j in (0..d4).step_by(4) {
                let t = _mm256_sub_pd(load4(x.as_ptr().add(j)), _mm256_loadu_pd(c.as_ptr().add(j)));
                let t = if w.is_some() {
                    _mm256_mul_pd(weight, t)
                } else {
                    t
                };
                let p = sums.as_mut_ptr().add(j);
                _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), t));
            }
        }
        for j in d4..d {
            let t = x[j].to_f64() - c[j];
            sums[j] += w.map_or(t, |w| w * t);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn moved<E: Row>(out: &mut [f32], x: &[E], o: &[f64]) {
        let d = out.len().min(x.len()).min(o.len());
        let d4 = d - d % 4;
        // SAFETY: every 4-value load and store starts at j < d4 ≤ d − 3 in all three slices.
        unsafe {
            for j in (0..d4).step_by(4) {
                let t = _mm256_sub_pd(load4(x.as_ptr().add(j)), _mm256_loadu_pd(o.as_ptr().add(j)));
                _mm_storeu_ps(out.as_mut_ptr().add(j), _mm256_cvtpd_ps(t));
            }
        }
        for j in d4..d {
            out[j] = (x[j].to_f64() - o[j]) as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl RowOps for Avx2 {
    #[inline(always)]
    fn sq_distance<E: Row>(x: &[E], c: &[f64]) -> f64 {
        // SAFETY: `Avx2` is used only on CPUs with AVX2 (see `BlockedCenters::assign`).
        unsafe { avx2_ops::sq_distance(x, c) }
    }
    #[inline(always)]
    fn add_difference<E: Row>(sums: &mut [f64], x: &[E], c: &[f64], w: Option<f64>) {
        // SAFETY: as above.
        unsafe { avx2_ops::add_difference(sums, x, c, w) }
    }
    #[inline(always)]
    fn moved<E: Row>(out: &mut [f32], x: &[E], o: &[f64]) {
        // SAFETY: as above.
        unsafe { avx2_ops::moved(out, x, o) }
    }
}

/// [`RowOps`] with AVX-512F intrinsics: eight f64 lanes per operation, summed into the four
/// partial sums of [`sq_distance`] in the same order (so the same bits); callable only where the
/// CPU has AVX-512F and AVX2 (the blocked assignment checks).
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
mod avx512_ops {
    use std::arch::x86_64::*;

    use super::Row;

    /// Eight values from `p` as f64.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load8<E: Row>(p: *const E) -> __m512d {
        // SAFETY: the caller passes a pointer with 8 values of E readable from it.
        unsafe {
            if E::F32 {
                _mm512_cvtps_pd(_mm256_loadu_ps(p.cast::<f32>()))
            } else {
                _mm512_loadu_pd(p.cast::<f64>())
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    pub(super) fn sq_distance<E: Row>(x: &[E], c: &[f64]) -> f64 {
        let d = x.len().min(c.len());
        let d8 = d - d % 8;
        // SAFETY: every 8-value load starts at j < d8 ≤ d − 7 in both slices; the 4-value one at
        // d8 ≤ d − 4.
        unsafe {
            let mut acc = _mm256_setzero_pd();
            for j in (0..d8).step_by(8) {
                let t = _mm512_sub_pd(load8(x.as_ptr().add(j)), _mm512_loadu_pd(c.as_ptr().add(j)));
                let t = _mm512_mul_pd(t, t);
                // Features j..j+4, then j+4..j+8: the portable code's order of the 4 sums.
                acc = _mm256_add_pd(acc, _mm512_castpd512_pd256(t));
                acc = _mm256_add_pd(acc, _mm512_extractf64x4_pd::<1>(t));
            }
            let mut j = d8;
            if d - j >= 4 {
                let v = if E::F32 {
                    _mm256_cvtps_pd(_mm_loadu_ps(x.as_ptr().add(j).cast::<f32>()))
                } else {
                    _mm256_loadu_pd(x.as_ptr().add(j).cast::<f64>())
                };
                let t = _mm256_sub_pd(v, _mm256_loadu_pd(c.as_ptr().add(j)));
                acc = _mm256_add_pd(acc, _mm256_mul_pd(t, t));
                j += 4;
            }
            // (a0 + a1) + (a2 + a3)
            let pairs = _mm_hadd_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd::<1>(acc));
            let mut s = _mm_cvtsd_f64(_mm_add_sd(pairs, _mm_unpackhi_pd(pairs, pairs)));
            for j in j..d {
                let t = x[j].to_f64() - c[j];
                s += t * t;
            }
            s
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn add_difference<E: Row>(sums: &mut [f64], x: &[E], c: &[f64], w: Option<f64>) {
        let d = sums.len().min(x.len()).min(c.len());
        let d8 = d - d % 8;
        // SAFETY: every 8-value load and store starts at j < d8 ≤ d − 7 in all three slices.
        unsafe {
            let weight = _mm512_set1_pd(w.unwrap_or(1.0));
            for j in (0..d8).step_by(8) {
                let t = _mm512_sub_pd(load8(x.as_ptr().add(j)), _mm512_loadu_pd(c.as_ptr().add(j)));
                let t = if w.is_some() {
                    _mm512_mul_pd(weight, t)
                } else {
                    t
                };
                let p = sums.as_mut_ptr().add(j);
                _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), t));
            }
        }
        for j in d8..d {
            let t = x[j].to_f64() - c[j];
            sums[j] += w.map_or(t, |w| w * t);
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl RowOps for Avx512 {
    #[inline(always)]
    fn sq_distance<E: Row>(x: &[E], c: &[f64]) -> f64 {
        // SAFETY: `Avx512` is used only on CPUs with AVX-512F and AVX2 (see
        // `BlockedCenters::assign`).
        unsafe { avx512_ops::sq_distance(x, c) }
    }
    #[inline(always)]
    fn add_difference<E: Row>(sums: &mut [f64], x: &[E], c: &[f64], w: Option<f64>) {
        // SAFETY: as above.
        unsafe { avx512_ops::add_difference(sums, x, c, w) }
    }
    #[inline(always)]
    fn moved<E: Row>(out: &mut [f32], x: &[E], o: &[f64]) {
        Avx2::moved(out, x, o)
    }
}

/// Tests set it to run the GEMM screening where the fused AVX-512 one would run, to compare them.
#[cfg(target_arch = "x86_64")]
static FORCE_GEMM_SCREEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The screening of at most 16 centers with AVX-512F, without a GEMM: each row moved by the
/// origin (in f64, then rounded to f32, as the GEMM path does), its 16 scores
/// `‖c − o‖² − 2 (x − o)·(c − o)` in one register by D fused multiply-adds (a few rows at a time,
/// whose chains overlap), and the first smallest and the gap to the second smallest by two
/// reductions. The same bound holds as for the GEMM (a sum of D + 1 rounded terms in any order);
/// a score that is not finite (an f32 overflow) makes the gap NaN, which sends the row to the
/// exact path.
#[cfg(target_arch = "x86_64")]
mod avx512_screen {
    use std::arch::x86_64::*;

    use super::Row;

    #[target_feature(enable = "avx512f")]
    pub(super) fn screen16<E: Row>(
        x: &[E],
        origin: &[f64],
        ct: &[f32],
        moved: &mut [f32],
        best_index: &mut [f32],
        gap: &mut [f32],
    ) {
        let d = origin.len();
        assert!(d > 0 && ct.len() == (d + 1) * 16 && moved.len() >= GROUP * d);
        assert!(x.len() == best_index.len() * d && gap.len() == best_index.len());
        for ((xs, b), g) in x
            .chunks(GROUP * d)
            .zip(best_index.chunks_mut(GROUP))
            .zip(gap.chunks_mut(GROUP))
        {
            if b.len() == GROUP {
                group::<GROUP, E>(xs, origin, ct, moved, b, g);
            } else {
                // The last rows of the chunk, one at a time.
                for ((xr, b), g) in xs.chunks(d).zip(b.chunks_mut(1)).zip(g.chunks_mut(1)) {
                    group::<1, E>(xr, origin, ct, moved, b, g);
                }
            }
        }
    }

    /// Rows screened together: their D-term chains of multiply-adds are independent, so they
    /// overlap in the pipeline (one row's chain alone waits on each add's latency).
    pub(super) const GROUP: usize = 8;

    /// [`screen16`] of `G` rows (`x` is `[G][D]`; `moved` has room for `G·D`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn group<const G: usize, E: Row>(
        x: &[E],
        origin: &[f64],
        ct: &[f32],
        moved: &mut [f32],
        best_index: &mut [f32],
        gap: &mut [f32],
    ) {
        let d = origin.len();
        let d8 = d - d % 8;
        debug_assert!(x.len() == G * d && moved.len() >= G * d && ct.len() == (d + 1) * 16);
        for (row, m) in x.chunks_exact(d).zip(moved.chunks_exact_mut(d)) {
            // SAFETY: the loads read 8 values from j < d8 ≤ d − 7 of the row and the origin;
            // the stores write 8 values from j < d8 into the row's D values of `moved`.
            unsafe {
                for j in (0..d8).step_by(8) {
                    let v = if E::F32 {
                        _mm512_cvtps_pd(_mm256_loadu_ps(row.as_ptr().add(j).cast::<f32>()))
                    } else {
                        _mm512_loadu_pd(row.as_ptr().add(j).cast::<f64>())
                    };
                    let t = _mm512_sub_pd(v, _mm512_loadu_pd(origin.as_ptr().add(j)));
                    _mm256_storeu_ps(m.as_mut_ptr().add(j), _mm512_cvtpd_ps(t));
                }
            }
            for j in d8..d {
                m[j] = (row[j].to_f64() - origin[j]) as f32;
            }
        }
        // SAFETY: `ct` holds (D + 1)·16 values: the loads read 16 from j·16 ≤ D·16.
        let norms = unsafe { _mm512_loadu_ps(ct.as_ptr().add(d * 16)) };
        let mut acc = [norms; G];
        for j in 0..d {
            // SAFETY: as above.
            let c = unsafe { _mm512_loadu_ps(ct.as_ptr().add(j * 16)) };
            for (g, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(moved[g * d + j]), c, *a);
            }
        }
        let (inf, max) = (_mm512_set1_ps(f32::INFINITY), _mm512_set1_ps(f32::MAX));
        for ((a, b), gp) in acc.iter().zip(best_index.iter_mut()).zip(gap.iter_mut()) {
            // A score past f32's range (±∞ or NaN: |v| > f32::MAX, or unordered) proves
            // nothing; the padding lanes hold f32::MAX, finite.
            if _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(_mm512_abs_ps(*a), max) != 0 {
                (*b, *gp) = (0.0, f32::NAN);
                continue;
            }
            let best = _mm512_reduce_min_ps(*a);
            let first = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(*a, _mm512_set1_ps(best)).trailing_zeros();
            let second = _mm512_reduce_min_ps(_mm512_mask_blend_ps(1 << first, *a, inf));
            (*b, *gp) = (first as f32, second - best);
        }
    }
}

impl<'c> BlockedCenters<'c> {
    fn new(centers: &'c [f64], k: usize) -> Self {
        let d = centers.len() / k;
        let origin = centers[..d].to_vec();
        let moved64: Vec<f64> = centers
            .iter()
            .enumerate()
            .map(|(e, c)| c - origin[e % d])
            .collect();
        let sq_norms: Vec<f64> = moved64
            .chunks_exact(d.max(1))
            .map(|c| c.iter().map(|v| v * v).sum())
            .collect();
        let max_sq_norm = sq_norms.iter().copied().fold(0.0, f64::max);
        Self {
            k,
            d,
            centers,
            origin,
            moved: moved64.iter().map(|&v| v as f32).collect(),
            norms: sq_norms.iter().map(|&v| v as f32).collect(),
            #[cfg(target_arch = "x86_64")]
            fused16: (k <= 16
                && d > 0
                && !FORCE_GEMM_SCREEN.load(std::sync::atomic::Ordering::Relaxed)
                && std::arch::is_x86_feature_detected!("avx512f"))
            .then(|| {
                let mut ct = vec![0.0f32; (d + 1) * 16];
                for (c, m) in moved64.chunks_exact(d).enumerate() {
                    for (j, &v) in m.iter().enumerate() {
                        ct[j * 16 + c] = -2.0 * v as f32;
                    }
                }
                for c in 0..16 {
                    ct[d * 16 + c] = sq_norms.get(c).map_or(f32::MAX, |&v| v as f32);
                }
                ct
            }),
            max_sq_norm,
            // (D + 4)·u with u = 2⁻²⁴ = ε/2, doubled. The screening holds center indices as
            // f32, exact below 2²⁴: with more centers no screening is trusted (every row is
            // decided in f64).
            rounding: if k < 1 << 24 {
                (d as f64 + 4.0) * f64::from(f32::EPSILON)
            } else {
                f64::INFINITY
            },
        }
    }

    /// Assigns `rows` (`[labels.len()][D]`, as the source holds them or as copied into `w.x`),
    /// adding them to `stats`; with AVX2 when the CPU has it (the selects of the argmin need it
    /// to vectorize; the arithmetic is the same).
    fn assign(
        &self,
        rows: RowsRef,
        w: &mut BlockedScratch,
        weights: Option<&[f64]>,
        labels: &mut [u32],
        dists: &mut [f64],
        stats: &mut KMeansStats,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(
                this: &BlockedCenters,
                rows: RowsRef,
                w: &mut BlockedScratch,
                weights: Option<&[f64]>,
                labels: &mut [u32],
                dists: &mut [f64],
                stats: &mut KMeansStats,
            ) {
                match rows {
                    RowsRef::F32(x) => {
                        this.assign_body::<Avx2, _>(x, w, weights, labels, dists, stats)
                    }
                    RowsRef::F64(x) => {
                        this.assign_body::<Avx2, _>(x, w, weights, labels, dists, stats)
                    }
                }
            }
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512(
                this: &BlockedCenters,
                rows: RowsRef,
                w: &mut BlockedScratch,
                weights: Option<&[f64]>,
                labels: &mut [u32],
                dists: &mut [f64],
                stats: &mut KMeansStats,
            ) {
                match rows {
                    RowsRef::F32(x) => {
                        this.assign_body::<Avx512, _>(x, w, weights, labels, dists, stats)
                    }
                    RowsRef::F64(x) => {
                        this.assign_body::<Avx512, _>(x, w, weights, labels, dists, stats)
                    }
                }
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512f,avx2,fma` (checked here).
                    return unsafe { avx512(self, rows, w, weights, labels, dists, stats) };
                }
                // SAFETY: the CPU has the features `avx2,fma` enables (checked just above).
                return unsafe { avx2(self, rows, w, weights, labels, dists, stats) };
            }
        }
        match rows {
            RowsRef::F32(x) => self.assign_body::<Portable, _>(x, w, weights, labels, dists, stats),
            RowsRef::F64(x) => self.assign_body::<Portable, _>(x, w, weights, labels, dists, stats),
        }
    }

    /// The screening: `w.best_index` and `w.gap` of every row of `x` from one f32 GEMM.
    #[inline(always)]
    fn screen<R: RowOps, E: Row>(&self, x: &[E], w: &mut BlockedScratch, rows: usize) {
        let (k, d) = (self.k, self.d);
        w.moved.resize(rows * d, 0.0);
        w.best_index.resize(rows, 0.0);
        w.gap.resize(rows, 0.0);
        #[cfg(target_arch = "x86_64")]
        if let Some(ct) = &self.fused16 {
            w.moved
                .resize(w.moved.len().max(avx512_screen::GROUP * d), 0.0);
            // SAFETY: `fused16` exists only on CPUs with AVX-512F (`BlockedCenters::new`).
            unsafe {
                avx512_screen::screen16(
                    &x[..rows * d],
                    &self.origin,
                    ct,
                    &mut w.moved,
                    &mut w.best_index[..rows],
                    &mut w.gap[..rows],
                )
            };
            return;
        }
        for (m, xr) in w.moved.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            R::moved(m, xr, &self.origin);
        }
        w.prod.resize(rows * k, 0.0);
        // Column-major: column c holds −2 (x − o)·(c − o) for the rows of the chunk, so that the
        // argmin below runs over contiguous rows and vectorizes.
        matmul(
            MatMut::from_column_major_slice_mut(&mut w.prod, rows, k),
            Accum::Replace,
            MatRef::from_row_major_slice(&w.moved, rows, d),
            MatRef::from_row_major_slice(&self.moved, k, d).transpose(),
            -2.0f32,
            Par::Seq,
        );
        // ‖x − c‖² − ‖x − o‖² = ‖c − o‖² − 2 (x − o)·(c − o): its argmin over c is the nearest
        // center. Rows go in groups of ARGMIN_LANES whose running minimum, second minimum and
        // index stay in registers over the K columns (a conditional store per column would
        // compile to a slow masked store); a strict `<` over increasing c keeps the lowest
        // index on ties.
        let full = screen_lanes(&w.prod, rows, &self.norms, &mut w.best_index, &mut w.gap);
        for r in full..rows {
            let (mut best, mut second, mut index) = (w.prod[r] + self.norms[0], f32::INFINITY, 0);
            let mut finite = best.is_finite();
            for c in 1..k {
                let v = w.prod[c * rows + r] + self.norms[c];
                finite &= v.is_finite();
                if v < best {
                    (second, best, index) = (best, v, c);
                } else {
                    second = second.min(v);
                }
            }
            w.best_index[r] = index as f32;
            w.gap[r] = if finite { second - best } else { f32::NAN };
        }
    }

    #[inline(always)]
    fn assign_body<R: RowOps, E: Row>(
        &self,
        x: &[E],
        w: &mut BlockedScratch,
        weights: Option<&[f64]>,
        labels: &mut [u32],
        dists: &mut [f64],
        stats: &mut KMeansStats,
    ) {
        self.screen::<R, E>(x, w, labels.len());
        self.finish_rows::<R, E>(x, w, weights, labels, dists, stats);
    }

    /// The rows of `x` after their screening (`w.best_index`, `w.gap`): each one's nearest
    /// center proved or found exactly, its exact distance, and its share of the statistics.
    #[inline(always)]
    fn finish_rows<R: RowOps, E: Row>(
        &self,
        x: &[E],
        w: &mut BlockedScratch,
        weights: Option<&[f64]>,
        labels: &mut [u32],
        dists: &mut [f64],
        stats: &mut KMeansStats,
    ) {
        let (k, d, rows) = (self.k, self.d, labels.len());
        let BlockedScratch {
            best_index,
            gap,
            exact,
            ..
        } = w;
        for (i, (((row, (&cf, &g)), label), out)) in x[..rows * d]
            .chunks_exact(d)
            .zip(best_index.iter().zip(gap.iter()))
            .zip(labels.iter_mut())
            .zip(dists.iter_mut())
            .enumerate()
        {
            // Each f32 score is within `bound` of its exact value (rounding of x − o and c − o
            // to f32, of the D products and sums, and of the norm): a gap above twice that
            // proves the screening's center the nearest. The bound needs ‖x − o‖, which the
            // exact distance to the screened center bounds: ‖x − o‖ ≤ √sq + max ‖c − o‖, so
            // 2‖x − o‖·max ‖c − o‖ + max ‖c − o‖² ≤ sq + 4·max ‖c − o‖². Otherwise (near-ties,
            // or a score that overflowed f32: the comparison is false for NaN) the distances to
            // every center are computed in f64, exactly as the reference does.
            let screened = cf as usize;
            let mut sq = R::sq_distance(row, &self.centers[screened * d..(screened + 1) * d]);
            let bound = self.rounding * (sq + 4.0 * self.max_sq_norm);
            let c = if f64::from(g) > 2.0 * bound {
                screened
            } else {
                exact.clear();
                exact.extend(
                    self.centers
                        .chunks_exact(d)
                        .map(|center| R::sq_distance(row, center)),
                );
                let (c, s) = argmin(exact);
                sq = s;
                c
            };
            debug_assert!(c < k);
            // Σ (x − c) (`KMeansStats::add_point`) with the exact ‖x − c‖² above.
            let center = &self.centers[c * d..(c + 1) * d];
            let sums = &mut stats.sums[c * d..(c + 1) * d];
            match weights {
                None => {
                    R::add_difference(sums, row, center, None);
                    stats.counts[c] += 1.0;
                    stats.n_samples += 1.0;
                    stats.inertia += sq;
                    stats.n_changed += u64::from(*label != c as u32);
                }
                Some(weights) => {
                    let wi = weights[i];
                    R::add_difference(sums, row, center, Some(wi));
                    stats.counts[c] += wi;
                    stats.n_samples += wi;
                    stats.inertia += wi * sq;
                    // Points of weight 0 move no center: their label changes do not count.
                    stats.n_changed += u64::from(*label != c as u32 && wi > 0.0);
                }
            }
            *label = c as u32;
            *out = sq;
        }
    }
}

/// [`assign_chunk_reference`] by the blocked path: the same labels (up to near-ties, see the module
/// docs), distances and statistics.
pub fn assign_chunk_blocked(
    x: &[f64],
    centers: &[f64],
    n_clusters: usize,
    labels: &mut [u32],
    dists: &mut [f64],
) -> KMeansStats {
    let prepared = BlockedCenters::new(centers, n_clusters);
    let d = prepared.d;
    let gemm_rows = blocked_gemm_rows(d, n_clusters);
    let mut stats = KMeansStats::zeros(n_clusters, d, centers);
    let mut w = BlockedScratch::default();
    for ((xs, l), dd) in x
        .chunks(gemm_rows * d.max(1))
        .zip(labels.chunks_mut(gemm_rows))
        .zip(dists.chunks_mut(gemm_rows))
    {
        prepared.assign(RowsRef::F64(xs), &mut w, None, l, dd, &mut stats);
    }
    stats
}

/// [`assign_reference`] by the blocked path (see the module docs): in parallel over blocks of
/// `chunk_rows` rows, each read and assigned [`blocked_gemm_rows`] rows at a time, block statistics
/// merged in order.
pub fn assign_blocked(
    data: &Dataset,
    centers: &[f64],
    n_clusters: usize,
    chunk_rows: usize,
    labels: &mut [u32],
    dists: &mut [f64],
) -> Result<KMeansStats> {
    let d = data.n_features();
    let chunk_rows = chunk_rows.max(1);
    let gemm_rows = blocked_gemm_rows(d, n_clusters).min(chunk_rows);
    let prepared = BlockedCenters::new(centers, n_clusters);
    let parts: Vec<KMeansStats> = labels
        .par_chunks_mut(chunk_rows)
        .zip(dists.par_chunks_mut(chunk_rows))
        .enumerate()
        .map_init(BlockedScratch::default, |w, (b, (l, dd))| {
            let mut stats = KMeansStats::zeros(n_clusters, d, centers);
            for (g, (lg, dg)) in l
                .chunks_mut(gemm_rows)
                .zip(dd.chunks_mut(gemm_rows))
                .enumerate()
            {
                let start = b * chunk_rows + g * gemm_rows;
                let weights = data.weights_of(start, lg.len());
                // Rows held in place (a row-major array, a mapped file) are read there, in their
                // own precision; others are copied as f64 first.
                if let Some(rows) = data.borrow_rows(start, lg.len()) {
                    prepared.assign(rows, w, weights, lg, dg, &mut stats);
                } else {
                    let mut x = std::mem::take(&mut w.x);
                    x.resize(lg.len() * d, 0.0);
                    data.read_f64(start, &mut x)?;
                    prepared.assign(RowsRef::F64(&x), w, weights, lg, dg, &mut stats);
                    w.x = x;
                }
            }
            Ok(stats)
        })
        .collect::<Result<_>>()?;
    let mut total = KMeansStats::zeros(n_clusters, d, centers);
    for part in &parts {
        total.merge(part);
    }
    Ok(total)
}

/// The `n` largest of `dists` (at most all), by decreasing distance, ties by increasing index.
pub fn farthest_reference(labels: &[u32], dists: &[f64], n: usize) -> Vec<FarPoint> {
    let n = n.min(dists.len());
    if n == 0 {
        return Vec::new();
    }
    // Distances are finite and ≥ 0 (finite data, finite centers), so total_cmp orders them.
    let order = |a: &usize, b: &usize| dists[*b].total_cmp(&dists[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..dists.len()).collect();
    if n < idx.len() {
        idx.select_nth_unstable_by(n - 1, order);
        idx.truncate(n);
    }
    idx.sort_unstable_by(order);
    idx.into_iter()
        .map(|i| FarPoint {
            index: i,
            label: labels[i] as usize,
            sq_distance: dists[i],
            weight: 1.0,
        })
        .collect()
}

/// k-means assignments on the CPU over one dataset (f64, parallel over chunks of rows): the
/// blocked path ([`assign_blocked`]) unless the options ask for the reference.
pub struct CpuKMeansEngine<'a> {
    data: &'a Dataset<'a>,
    chunk_rows: usize,
    path: CpuPath,
    reason: String,
    /// Labels of the last assignment (`NO_LABEL` before the first), `[N]`.
    labels: Vec<u32>,
    /// Squared distances of the last assignment, `[N]`.
    dists: Vec<f64>,
    assigned: bool,
}

impl<'a> CpuKMeansEngine<'a> {
    /// An engine over `data`; `reason` says why the CPU was chosen (for `Auto`).
    pub fn new(data: &'a Dataset<'a>, options: EngineOptions, reason: String) -> Self {
        Self {
            data,
            chunk_rows: options.chunk_rows.unwrap_or(ASSIGN_CHUNK_ROWS).max(1),
            path: options.cpu_path,
            reason,
            labels: Vec::new(),
            dists: Vec::new(),
            assigned: false,
        }
    }

    /// Which assignment the engine runs.
    pub fn path(&self) -> CpuPath {
        self.path
    }

    fn check_assigned(&self) -> Result<()> {
        if self.assigned {
            Ok(())
        } else {
            Err(Error::param(
                "the k-means engine has no assignment yet; call assign_and_sum first",
            ))
        }
    }
}

impl KMeansEngine for CpuKMeansEngine<'_> {
    fn assign_and_sum(&mut self, centers: &[f64], n_clusters: usize) -> Result<KMeansStats> {
        let (n, d) = (self.data.n_samples(), self.data.n_features());
        if n_clusters == 0 || centers.len() != n_clusters * d {
            return Err(Error::param(format!(
                "k-means centers must be [n_clusters ≥ 1][{d}], got {} values for {n_clusters} clusters",
                centers.len()
            )));
        }
        if self.labels.len() != n {
            self.labels = vec![NO_LABEL; n];
            self.dists = vec![0.0; n];
        }
        let assign = match self.path {
            CpuPath::Blocked => assign_blocked,
            CpuPath::Reference => assign_reference,
        };
        let stats = assign(
            self.data,
            centers,
            n_clusters,
            self.chunk_rows,
            &mut self.labels,
            &mut self.dists,
        )?;
        self.assigned = true;
        Ok(stats)
    }

    fn labels(&mut self, out: &mut [u32]) -> Result<()> {
        self.check_assigned()?;
        if out.len() != self.labels.len() {
            return Err(Error::param(format!(
                "the labels buffer holds {} values but the data has {} rows",
                out.len(),
                self.labels.len()
            )));
        }
        out.copy_from_slice(&self.labels);
        Ok(())
    }

    fn farthest(&mut self, n: usize) -> Result<Vec<FarPoint>> {
        self.check_assigned()?;
        Ok(farthest_reference(&self.labels, &self.dists, n))
    }

    fn report(&self) -> BackendReport {
        cpu_report(&self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random rows around `k` centers (spread `scale`, moved by `offset`), as f64 and as f32
    /// (the f32 rows are the f64 ones rounded; each is assigned as its own data).
    fn rows(n: usize, d: usize, k: usize, scale: f64, offset: f64) -> (Vec<f64>, Vec<f64>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64((n * 31 + d * 7 + k) as u64);
        let centers: Vec<f64> = (0..k * d)
            .map(|_| offset + scale * (rng.random::<f64>() - 0.5))
            .collect();
        let x = (0..n * d)
            .map(|e| {
                let c = (e / d) % k;
                centers[c * d + e % d] + 0.3 * scale * (rng.random::<f64>() - 0.5)
            })
            .collect();
        (x, centers)
    }

    /// The blocked assignment of `data`, with the screening chosen by `force_gemm`.
    fn blocked(
        data: &Dataset,
        centers: &[f64],
        k: usize,
        force_gemm: bool,
    ) -> (Vec<u32>, Vec<f64>, KMeansStats) {
        let n = data.n_samples();
        let (mut labels, mut dists) = (vec![NO_LABEL; n], vec![0.0; n]);
        #[cfg(target_arch = "x86_64")]
        FORCE_GEMM_SCREEN.store(force_gemm, std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(target_arch = "x86_64"))]
        let _ = force_gemm;
        let stats = assign_blocked(data, centers, k, 700, &mut labels, &mut dists).unwrap();
        #[cfg(target_arch = "x86_64")]
        FORCE_GEMM_SCREEN.store(false, std::sync::atomic::Ordering::Relaxed);
        (labels, dists, stats)
    }

    #[test]
    fn both_screenings_and_the_reference_agree_on_f32_and_f64_rows() {
        // The fused AVX-512 screening (K ≤ 16, where the CPU has it) and the GEMM screening
        // only propose centers: the f64 pass after them decides, so both give the same bits;
        // and those are the reference's labels, distances (to its rounding) and statistics.
        for &(d, k) in &[(1, 1), (5, 3), (8, 16), (16, 16), (19, 7), (16, 17)] {
            for &(scale, offset) in &[(10.0, 0.0), (1.0, 1e4), (1e20, 0.0)] {
                let n = 1237;
                let (x64, centers) = rows(n, d, k, scale, offset);
                let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
                let what = format!("D {d} K {k} scale {scale} offset {offset}");
                for data in [
                    Dataset::from_slice(&x64, n, d).unwrap(),
                    Dataset::from_slice(&x32, n, d).unwrap(),
                ] {
                    assert!(data.borrow_rows(0, n).is_some());
                    let fused = blocked(&data, &centers, k, false);
                    let gemm = blocked(&data, &centers, k, true);
                    assert_eq!(fused.0, gemm.0, "{what}: labels");
                    assert_eq!(fused.1, gemm.1, "{what}: distances");
                    assert_eq!(fused.2, gemm.2, "{what}: statistics");
                    let (mut lr, mut dr) = (vec![NO_LABEL; n], vec![0.0; n]);
                    let r = assign_reference(&data, &centers, k, 700, &mut lr, &mut dr).unwrap();
                    assert_eq!(fused.0, lr, "{what}: labels against the reference");
                    for (a, b) in fused.1.iter().zip(&dr) {
                        assert!((a - b).abs() <= 1e-12 * b.abs(), "{what}: {a} vs {b}");
                    }
                    assert_eq!(fused.2.counts, r.counts, "{what}: counts");
                    let tol = 1e-12 * r.sums.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    for (a, b) in fused.2.sums.iter().zip(&r.sums) {
                        assert!((a - b).abs() <= tol, "{what}: sums {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_row_arithmetic_gives_the_portable_bits() {
        // AVX2 and AVX-512 (where the CPU has them) sum in the portable code's order: the same
        // distances and sums to the bit, for f32 and f64 rows, every D from 1 to 21.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for d in 1..=21 {
            let x: Vec<f64> = (0..d).map(|_| 1e3 * (rng.random::<f64>() - 0.5)).collect();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let c: Vec<f64> = (0..d).map(|_| 1e3 * (rng.random::<f64>() - 0.5)).collect();
            let start: Vec<f64> = (0..d).map(|_| rng.random::<f64>()).collect();
            let want = (
                Portable::sq_distance(&x, &c),
                Portable::sq_distance(&x32, &c),
            );
            assert_eq!(want.0.to_bits(), sq_distance(&x, &c).to_bits(), "D {d}");
            let sums = |f: &dyn Fn(&mut [f64])| {
                let mut s = start.clone();
                f(&mut s);
                s
            };
            let want_sums = (
                sums(&|s| Portable::add_difference(s, &x, &c, None)),
                sums(&|s| Portable::add_difference(s, &x32, &c, Some(0.3))),
            );
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    let got = (Avx2::sq_distance(&x, &c), Avx2::sq_distance(&x32, &c));
                    assert_eq!(got.0.to_bits(), want.0.to_bits(), "AVX2 f64, D {d}");
                    assert_eq!(got.1.to_bits(), want.1.to_bits(), "AVX2 f32, D {d}");
                    assert_eq!(
                        sums(&|s| Avx2::add_difference(s, &x, &c, None)),
                        want_sums.0
                    );
                    assert_eq!(
                        sums(&|s| Avx2::add_difference(s, &x32, &c, Some(0.3))),
                        want_sums.1
                    );
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                {
                    let got = (Avx512::sq_distance(&x, &c), Avx512::sq_distance(&x32, &c));
                    assert_eq!(got.0.to_bits(), want.0.to_bits(), "AVX-512 f64, D {d}");
                    assert_eq!(got.1.to_bits(), want.1.to_bits(), "AVX-512 f32, D {d}");
                    assert_eq!(
                        sums(&|s| Avx512::add_difference(s, &x, &c, None)),
                        want_sums.0
                    );
                    assert_eq!(
                        sums(&|s| Avx512::add_difference(s, &x32, &c, Some(0.3))),
                        want_sums.1
                    );
                }
            }
        }
    }

    #[test]
    fn rows_read_in_place_or_copied_give_the_same_assignment() {
        // A strided (Fortran-order) array has no rows in place: they are copied as f64 first.
        let (n, d, k) = (999, 6, 4);
        let (x, centers) = rows(n, d, k, 5.0, 2.0);
        let c_order = ndarray::Array2::from_shape_vec((n, d), x.clone()).unwrap();
        let mut f_order = ndarray::Array2::zeros(ndarray::ShapeBuilder::f((n, d)));
        f_order.assign(&c_order);
        assert!(f_order.as_slice().is_none());
        let a = Dataset::from_array(&c_order);
        let b = Dataset::from_array(&f_order);
        assert!(a.borrow_rows(0, n).is_some() && b.borrow_rows(0, n).is_none());
        assert_eq!(
            blocked(&a, &centers, k, false),
            blocked(&b, &centers, k, false)
        );
    }

    #[test]
    fn distances_and_argmin_follow_the_reference_formulas() {
        let centers = [0.0, 0.0, 3.0, 4.0, 3.0, 4.0, -1.0, 0.5];
        let ct = transpose_points(&centers, 4);
        let mut out = [0.0; 4];
        sq_distances_to(&[3.0, 4.0], &ct, &mut out);
        assert_eq!(out, [25.0, 0.0, 0.0, 16.0 + 12.25]);
        // Equal distances: the lowest index wins.
        assert_eq!(argmin(&out), (1, 0.0));
        assert_eq!(sq_distance(&[1.0, 2.0, 3.0, 4.0, 5.0], &[0.0; 5]), 55.0);
    }

    #[test]
    fn farthest_orders_by_distance_then_row() {
        let labels = [0, 1, 2, 0, 1];
        let dists = [1.0, 5.0, 3.0, 5.0, 0.0];
        let far = farthest_reference(&labels, &dists, 3);
        let got: Vec<(usize, usize)> = far.iter().map(|f| (f.index, f.label)).collect();
        assert_eq!(got, vec![(1, 1), (3, 0), (2, 2)]);
        assert_eq!(farthest_reference(&labels, &dists, 10).len(), 5);
        assert!(farthest_reference(&labels, &dists, 0).is_empty());
    }

    #[test]
    fn chunk_statistics_add_up_and_count_changed_labels() {
        let x = [0.0, 0.0, 1.0, 0.0, 10.0, 10.0, 11.0, 9.0, 0.5, 0.5];
        let centers = [0.0, 0.0, 10.0, 10.0];
        let mut labels = [NO_LABEL, NO_LABEL, 1, 1, 0];
        let mut dists = [0.0; 5];
        let whole = assign_chunk_reference(&x, &centers, 2, &mut labels, &mut dists);
        assert_eq!(labels, [0, 0, 1, 1, 0]);
        assert_eq!(whole.counts, vec![3.0, 2.0]);
        assert_eq!(whole.n_changed, 2);
        assert_eq!(whole.sums, vec![1.5, 0.5, 1.0, -1.0]);
        assert_eq!(whole.inertia, 0.0 + 1.0 + 0.0 + 2.0 + 0.5);
        let (mut l1, mut l2) = ([NO_LABEL; 2], [NO_LABEL; 3]);
        let mut a = assign_chunk_reference(&x[..4], &centers, 2, &mut l1, &mut dists[..2]);
        let b = assign_chunk_reference(&x[4..], &centers, 2, &mut l2, &mut dists[2..]);
        a.merge(&b);
        assert_eq!(
            (a.counts.clone(), a.sums.clone()),
            (whole.counts, whole.sums)
        );
        assert_eq!(a.n_changed, 5);
    }
}
