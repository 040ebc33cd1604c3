//! Additive statistics of one k-means assignment.
//!
//! After every point has been assigned to its nearest center `c_k`, the update needs per cluster
//! only the count `n_k` and the sum `S_k = Σ_{x in k} (x − c_k)`: the new center is
//! `c_k + S_k / n_k`. Sums are taken about the centers of the assignment (the shift), as the
//! Gaussian mixture statistics are, so that an f32 backend does not lose digits on data far from
//! the origin; on the f64 CPU path the shift only changes rounding. Together with the inertia and
//! the number of changed labels these add over any partition of the points.

use super::FarPoint;
use crate::data::Dataset;
use crate::em::Stats;
use crate::error::Result;

/// Statistics of one assignment over a set of points (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansStats {
    /// K.
    pub n_clusters: usize,
    /// D.
    pub n_features: usize,
    /// Number of points summed (weighted: a sum of weights; scaled by [`Stats::scale`]).
    pub n_samples: f64,
    /// Points per cluster (sums of weights), `[K]`.
    pub counts: Vec<f64>,
    /// `S_k = Σ w (x − c_k)` over the points of cluster k (`w` = 1 without weights), `[K][D]`.
    pub sums: Vec<f64>,
    /// The centers of the assignment (the shifts of `sums`), `[K][D]`.
    pub shift: Vec<f64>,
    /// `Σ w ‖x − c_label(x)‖²`: scikit-learn's (weighted) inertia of these points under these
    /// centers.
    pub inertia: f64,
    /// Points whose label differs from the engine's previous assignment (all of them at the
    /// first). With sample weights only points of positive weight count: a point of weight 0
    /// moves no center (scikit-learn's run then stops on a zero center shift instead, at the same
    /// iteration).
    pub n_changed: u64,
    /// When a cluster is empty: the points farthest from their centers, by decreasing distance
    /// (equal distances in increasing row order), with their rows, for the relocation of empty
    /// clusters. Not part of the flat (additive) view.
    pub farthest: Vec<(FarPoint, Vec<f64>)>,
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
            n_samples: 0.0,
            counts: vec![0.0; n_clusters],
            sums: vec![0.0; n_clusters * n_features],
            shift: centers.to_vec(),
            inertia: 0.0,
            n_changed: 0,
            farthest: Vec::new(),
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
        if !other.farthest.is_empty() {
            // The farthest points of the union: the two lists merged by decreasing distance,
            // ties by row, at most K kept (at most K clusters can be empty).
            self.farthest.extend(other.farthest.iter().cloned());
            self.farthest.sort_by(|a, b| {
                b.0.sq_distance
                    .total_cmp(&a.0.sq_distance)
                    .then(a.0.index.cmp(&b.0.index))
            });
            self.farthest.truncate(self.n_clusters);
        }
    }

    /// Attaches `far` (as [`super::KMeansEngine::farthest`] returns them) with their rows and
    /// sample weights read from `data`.
    pub fn set_farthest(&mut self, data: &Dataset, far: Vec<FarPoint>) -> Result<()> {
        let d = self.n_features;
        self.farthest = far
            .into_iter()
            .map(|f| {
                let mut row = vec![0.0; d];
                data.read_f64(f.index, &mut row)?;
                let weight = data.weights_of(f.index, 1).map_or(1.0, |w| w[0]);
                Ok((FarPoint { weight, ..f }, row))
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// The same sums about `new_centers` (`[K][D]`) instead of `self.shift`:
    /// `Σ (x − new) = Σ (x − old) + n_k·(old − new)`. The GPU engine sums about the f32 centers it
    /// used and moves the result to the f64 centers here.
    pub fn reshift(&mut self, new_centers: &[f64]) {
        let d = self.n_features;
        assert_eq!(
            new_centers.len(),
            self.shift.len(),
            "centers must be [K][D]"
        );
        for (e, (s, (old, new))) in self
            .sums
            .iter_mut()
            .zip(self.shift.iter().zip(new_centers))
            .enumerate()
        {
            *s += self.counts[e / d] * (old - new);
        }
        self.shift.copy_from_slice(new_centers);
    }

    /// [`KMeansStats::add_point`] for a point of sample weight `weight`: its contribution to the
    /// sums, the count, the sample count and the inertia multiplied by `weight` (a label change
    /// counts once, if the weight is positive).
    pub fn add_weighted_point(
        &mut self,
        x: &[f64],
        label: usize,
        sq_distance: f64,
        changed: bool,
        weight: f64,
    ) {
        let d = self.n_features;
        let s = &self.shift[label * d..(label + 1) * d];
        for ((acc, xj), sj) in self.sums[label * d..(label + 1) * d]
            .iter_mut()
            .zip(x)
            .zip(s)
        {
            *acc += weight * (xj - sj);
        }
        self.counts[label] += weight;
        self.n_samples += weight;
        self.inertia += weight * sq_distance;
        self.n_changed += u64::from(changed && weight > 0.0);
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
        self.counts[label] += 1.0;
        self.n_samples += 1.0;
        self.inertia += sq_distance;
        self.n_changed += u64::from(changed);
    }
}

/// The flat view is `[n_samples, inertia, n_changed, counts (K), sums (K·D)]`; the centers (shifts)
/// and the farthest points are not additive and stay as they are. `scale` leaves `n_changed`
/// (a count of label changes, not a sum over points' weights) as it is.
impl Stats for KMeansStats {
    fn merge(&mut self, other: &Self) {
        KMeansStats::merge(self, other)
    }
    fn scale(&mut self, factor: f64) {
        self.n_samples *= factor;
        self.inertia *= factor;
        for v in self.counts.iter_mut().chain(&mut self.sums) {
            *v *= factor;
        }
    }
    /// Minus the inertia: k-means maximizes it as EM maximizes the log-likelihood.
    fn log_likelihood(&self) -> f64 {
        -self.inertia
    }
    fn n_samples(&self) -> f64 {
        self.n_samples
    }
    fn flat_len(&self) -> usize {
        3 + self.counts.len() + self.sums.len()
    }
    fn write_flat(&self, out: &mut [f64]) {
        let k = self.counts.len();
        out[0] = self.n_samples;
        out[1] = self.inertia;
        out[2] = self.n_changed as f64;
        out[3..3 + k].copy_from_slice(&self.counts);
        out[3 + k..].copy_from_slice(&self.sums);
    }
    fn read_flat(&mut self, src: &[f64]) {
        let k = self.counts.len();
        self.n_samples = src[0];
        self.inertia = src[1];
        self.n_changed = src[2] as u64;
        self.counts.copy_from_slice(&src[3..3 + k]);
        self.sums.copy_from_slice(&src[3 + k..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums gathered about centers A and moved to centers B equal those gathered about B.
    #[test]
    fn reshift_equals_summing_about_the_new_centers() {
        let a = [0.5, -1.0, 3.0, 2.25];
        let b = [0.0, 1.0, -2.0, 2.0];
        let (mut about_a, mut about_b) =
            (KMeansStats::zeros(2, 2, &a), KMeansStats::zeros(2, 2, &b));
        for n in 0..30 {
            let x = [(n % 7) as f64 - 3.0, (n % 4) as f64 * 0.5];
            about_a.add_point(&x, n % 2, 1.0, false);
            about_b.add_point(&x, n % 2, 1.0, false);
        }
        about_a.reshift(&b);
        assert_eq!(about_a.shift, about_b.shift);
        for (x, y) in about_a.sums.iter().zip(&about_b.sums) {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{x} vs {y}");
        }
    }
}
