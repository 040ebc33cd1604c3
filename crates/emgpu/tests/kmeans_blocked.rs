//! The blocked k-means assignment (one GEMM per chunk of rows) against the point-by-point
//! reference: the same labels except at near-ties, the same distances, inertia and sums.

use emgpu::Dataset;
use emgpu::models::kmeans::KMeansStats;
use emgpu::models::kmeans::cpu::{
    NO_LABEL, assign_blocked, assign_chunk_blocked, assign_chunk_reference, assign_reference,
    sq_distance,
};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Clustered points around `k` random centers, all moved by `offset`; the start centers are
/// points of the data plus a little noise.
fn problem(n: usize, d: usize, k: usize, offset: f64, seed: u64) -> (Array2<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
    let truth: Vec<f64> = (0..k * d).map(|_| 3.0 * normal()).collect();
    let mut x = Array2::<f64>::zeros((n, d));
    let mut rng2 = ChaCha8Rng::seed_from_u64(seed + 1);
    for mut row in x.rows_mut() {
        let c = rng2.random_range(0..k);
        for (j, v) in row.iter_mut().enumerate() {
            let z: f64 = StandardNormal.sample(&mut rng2);
            *v = offset + truth[c * d + j] + z;
        }
    }
    let centers = (0..k * d)
        .map(|e| {
            let z: f64 = StandardNormal.sample(&mut rng2);
            x[[rng2.random_range(0..n).min(n - 1), e % d]] + 0.1 * z
        })
        .collect();
    (x, centers)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

/// Labels equal unless the reference's two best distances are within a relative 1e-12; distances
/// exact for the chosen label; inertia, counts and sums within 1e-10. Returns how many labels
/// differ.
fn check(x: &Array2<f64>, centers: &[f64], k: usize, chunk: usize, what: &str) -> usize {
    let (n, d) = x.dim();
    let data = Dataset::from_array(x);
    let (mut lr, mut lb) = (vec![NO_LABEL; n], vec![NO_LABEL; n]);
    let (mut dr, mut db) = (vec![0.0; n], vec![0.0; n]);
    let r = assign_reference(&data, centers, k, chunk, &mut lr, &mut dr).unwrap();
    let b = assign_blocked(&data, centers, k, chunk, &mut lb, &mut db).unwrap();
    let mut differ = 0;
    for i in 0..n {
        let row = x.row(i).to_vec();
        if lr[i] != lb[i] {
            let mut ds: Vec<f64> = (0..k)
                .map(|c| sq_distance(&row, &centers[c * d..(c + 1) * d]))
                .collect();
            ds.sort_by(f64::total_cmp);
            assert!(
                ds[1] - ds[0] <= 1e-12 * ds[1].max(1e-300),
                "{what}: row {i} labels {} vs {} with distances {} and {}",
                lr[i],
                lb[i],
                ds[0],
                ds[1]
            );
            differ += 1;
        } else {
            assert!(rel(db[i], dr[i]) <= 1e-12, "{what}: row {i} distance");
        }
    }
    // Where a near-tie went the other way: the reference statistics of the blocked labels.
    let r = if differ == 0 {
        r
    } else {
        let mut s = KMeansStats::zeros(k, d, centers);
        for (i, &l) in lb.iter().enumerate() {
            let row = x.row(i).to_vec();
            let c = l as usize;
            s.add_point(
                &row,
                c,
                sq_distance(&row, &centers[c * d..(c + 1) * d]),
                true,
            );
        }
        s
    };
    assert_eq!(r.counts, b.counts, "{what}: counts");
    assert_eq!(r.n_changed, b.n_changed, "{what}: changed");
    assert_eq!(b.n_samples, n as f64);
    assert!(rel(b.inertia, r.inertia) <= 1e-10, "{what}: inertia");
    let scale = r.sums.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (e, (p, q)) in b.sums.iter().zip(&r.sums).enumerate() {
        assert!(
            (p - q).abs() <= 1e-10 * scale,
            "{what}: sums[{e}] {p} vs {q}"
        );
    }
    differ
}

#[test]
fn blocked_assignment_matches_the_reference() {
    let (mut seed, mut differ) = (10, 0);
    for &d in &[1, 3, 16, 64, 130] {
        for &k in &[1, 2, 17, 256] {
            for &offset in &[0.0, 1e4] {
                // N not a multiple of the GEMM chunk nor of the parallel chunk.
                let n = if k == 256 && d >= 64 { 700 } else { 1337 };
                let (x, centers) = problem(n, d, k, offset, seed);
                seed += 2;
                for chunk in [4096, 300] {
                    differ += check(
                        &x,
                        &centers,
                        k,
                        chunk,
                        &format!("D {d} K {k} offset {offset} chunk {chunk}"),
                    );
                }
            }
        }
    }
    // Near-ties are rare: almost every label is the reference's.
    assert!(differ <= 10, "{differ} labels differ from the reference");
}

#[test]
fn blocked_chunk_counts_changes_and_breaks_ties_to_the_lowest_index() {
    // Row 4 is equally far from both centers: cluster 0 takes it.
    let x = [0.0, 0.0, 1.0, 0.0, 10.0, 10.0, 11.0, 9.0, 5.0, 5.0];
    let centers = [0.0, 0.0, 10.0, 10.0];
    let mut labels = [NO_LABEL, 0, 1, 0, 1];
    let mut dists = [0.0; 5];
    let b = assign_chunk_blocked(&x, &centers, 2, &mut labels, &mut dists);
    let (mut lr, mut dr) = ([NO_LABEL, 0, 1, 0, 1], [0.0; 5]);
    let r = assign_chunk_reference(&x, &centers, 2, &mut lr, &mut dr);
    assert_eq!(labels, [0, 0, 1, 1, 0]);
    assert_eq!((labels, dists), (lr, dr));
    assert_eq!(b, r);
    assert_eq!(b.n_changed, 3);
}

#[test]
fn near_ties_below_f32_resolution_get_the_f64_label() {
    // The blocked path screens centers with f32 scores and decides any row whose two best
    // scores are within the f32 rounding in f64. Rows a relative 1e-9 off the bisector of two
    // centers (far below f32's 6e-8, far above f64's 1e-16), around the origin and offset by
    // 1e4, with more centers farther away: every label must be the reference's.
    for offset in [0.0, 1e4] {
        let d = 16;
        let (mut rng, k) = (ChaCha8Rng::seed_from_u64(7), 5);
        let mut centers = vec![offset; k * d];
        centers[0] += 1.0; // c0 = offset + e0, c1 = offset − e0
        centers[d] -= 1.0;
        for c in 2..k {
            for j in 0..d {
                centers[c * d + j] += 50.0 + 10.0 * rng.random::<f64>();
            }
        }
        let n = 1000;
        let mut x = Array2::<f64>::zeros((n, d));
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            for v in row.iter_mut() {
                *v = offset + rng.random::<f64>() - 0.5;
            }
            // On the bisector (x0 = offset), then nudged by ±1e-9 relative to the distance².
            let side = if i % 2 == 0 { 1.0 } else { -1.0 };
            row[0] = offset + side * 1e-9 * (1.0 + rng.random::<f64>());
        }
        assert_eq!(check(&x, &centers, k, 4096, &format!("offset {offset}")), 0);
        // And the labels really alternate: the f64 decision, not a constant one.
        let data = Dataset::from_array(&x);
        let (mut labels, mut dists) = (vec![NO_LABEL; n], vec![0.0; n]);
        assign_blocked(&data, &centers, k, 4096, &mut labels, &mut dists).unwrap();
        for (i, &l) in labels.iter().enumerate() {
            assert_eq!(
                l,
                if i % 2 == 0 { 0 } else { 1 },
                "offset {offset}: row {i}"
            );
        }
    }
}
