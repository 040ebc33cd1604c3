//! Additive statistics of one k-means assignment.
//!
//! After every point has been assigned to its nearest center `c_k`, the update needs per cluster
//! only the count `n_k` and the sum `S_k = Σ_{x in k} (x − c_k)`: the new center is
//! `c_k + S_k / n_k`. Sums are taken about the centers of the assignment (the shift), as the
//! Gaussian mixture statistics are, so that an f32 backend does not lose digits on data far from
//! the origin; on the f64 CPU path the shift only changes rounding. Together with the inertia and
//! the number of changed labels these add over any partition of the points.

/// Statistics of one assignment over a set of points (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansStats {
    /// K.
    pub n_clusters: usize,
    /// D.
    pub n_features: usize,
    /// Number of points summed.
    pub n_samples: u64,
    /// Points per cluster, `[K]`.
    pub counts: Vec<u64>,
    /// `S_k = Σ (x − c_k)` over the points of cluster k, `[K][D]`.
    pub sums: Vec<f64>,
    /// The centers of the assignment (the shifts of `sums`), `[K][D]`.
    pub shift: Vec<f64>,
    /// `Σ ‖x − c_label(x)‖²`: scikit-learn's inertia of these points under these centers.
    pub inertia: f64,
    /// Points whose label differs from the engine's previous assignment (all of them at the first).
    pub n_changed: u64,
}

impl KMeansStats {
    /// Zero statistics about `centers` (`[K][D]`).
    pub fn zeros(n_clusters: usize, n_features: usize, centers: &[f64]) -> Self {
        assert_eq!(
            centers.len(),
            n_clusters * n_features,
            "centers must be [K][D]"
        );
        Self {
            n_clusters,
            n_features,
            n_samples: 0,
            counts: vec![0; n_clusters],
            sums: vec![0.0; n_clusters * n_features],
            shift: centers.to_vec(),
            inertia: 0.0,
            n_changed: 0,
        }
    }

    /// Adds `other` (statistics of other points, about the same centers) into `self`.
    pub fn merge(&mut self, other: &KMeansStats) {
        assert_eq!(
            (self.n_clusters, self.n_features),
            (other.n_clusters, other.n_features),
            "merging statistics of different shapes"
        );
        assert!(
            self.shift == other.shift,
            "merging statistics about different centers"
        );
        self.n_samples += other.n_samples;
        self.inertia += other.inertia;
        self.n_changed += other.n_changed;
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a += b;
        }
    }

    /// Adds one point `x` assigned to cluster `label` at squared distance `sq_distance`; `changed`
    /// says whether its label differs from the previous assignment's.
    pub fn add_point(&mut self, x: &[f64], label: usize, sq_distance: f64, changed: bool) {
        let d = self.n_features;
        let s = &self.shift[label * d..(label + 1) * d];
        for ((acc, xj), sj) in self.sums[label * d..(label + 1) * d]
            .iter_mut()
            .zip(x)
            .zip(s)
        {
            *acc += xj - sj;
        }
        self.counts[label] += 1;
        self.n_samples += 1;
        self.inertia += sq_distance;
        self.n_changed += u64::from(changed);
    }
}
