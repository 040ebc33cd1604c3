//! A fitted k-means model: predictions, scores and the model file.

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::kmeans_engine;
use crate::data::{AsDataset, Dataset};
use crate::device::{Backend, BackendReport, EngineOptions};
use crate::error::{Error, Result};
use crate::models::model_file::{self, Header, Nested, checked_names};

/// k-means cluster centers with how their fit went (scikit-learn's fitted `KMeans`).
#[derive(Debug, Clone)]
pub struct FittedKMeans {
    centers: Vec<f64>,
    n_clusters: usize,
    n_features: usize,
    pub(crate) inertia: f64,
    pub(crate) n_iter: usize,
    pub(crate) converged: bool,
    pub(crate) labels: Option<Vec<usize>>,
    pub(crate) init_inertias: Vec<f64>,
    pub(crate) report: Option<BackendReport>,
    pub(crate) predict_backend: Backend,
    feature_names: Option<Vec<String>>,
}

impl FittedKMeans {
    /// A model from centers `[K, D]` (made by hand, or loaded); it has no fit history.
    pub fn from_centers(centers: &Array2<f64>) -> Result<Self> {
        let (k, d) = centers.dim();
        Self::from_centers_vec(centers.iter().copied().collect(), k, d)
    }

    pub(crate) fn from_centers_vec(centers: Vec<f64>, k: usize, d: usize) -> Result<Self> {
        if k == 0 || d == 0 || centers.len() != k * d {
            return Err(Error::BadModel(format!(
                "k-means centers must have shape [K ≥ 1, D ≥ 1]; got {} values for [{k}, {d}]",
                centers.len()
            )));
        }
        if centers.iter().any(|v| !v.is_finite()) {
            return Err(Error::BadModel("the cluster centers must be finite".into()));
        }
        Ok(Self {
            centers,
            n_clusters: k,
            n_features: d,
            inertia: f64::NAN,
            n_iter: 0,
            converged: false,
            labels: None,
            init_inertias: Vec::new(),
            report: None,
            predict_backend: Backend::Cpu,
            feature_names: None,
        })
    }

    /// The model with the names of its features (e.g. a CSV header's), stored in its model
    /// file; `None` removes them. Errors unless there is one name per feature.
    pub fn with_feature_names(mut self, names: Option<Vec<String>>) -> Result<Self> {
        self.feature_names = checked_names(names, self.n_features)?;
        Ok(self)
    }

    /// The names of the features, when the model has them (scikit-learn's `feature_names_in_`).
    pub fn feature_names(&self) -> Option<&[String]> {
        self.feature_names.as_deref()
    }

    /// The backend `predict` and `score` use (by default the one the fit ran on; CPU for loaded
    /// models).
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.predict_backend = backend;
        self
    }

    /// The centers `[K, D]` (scikit-learn's `cluster_centers_`).
    pub fn cluster_centers(&self) -> Array2<f64> {
        Array2::from_shape_vec((self.n_clusters, self.n_features), self.centers.clone())
            .expect("centers length is checked at construction")
    }
    /// K.
    pub fn n_clusters(&self) -> usize {
        self.n_clusters
    }
    /// D.
    pub fn n_features(&self) -> usize {
        self.n_features
    }
    /// Sum of squared distances of the training points to their centers (`inertia_`); NaN for a
    /// model made from centers.
    pub fn inertia(&self) -> f64 {
        self.inertia
    }
    /// Iterations of the kept run (`n_iter_`).
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }
    /// Whether the kept run stopped on unchanged labels or on the tolerance, not on `max_iter`.
    pub fn converged(&self) -> bool {
        self.converged
    }
    /// The cluster of every training point (`labels_`); `None` for a loaded model.
    pub fn labels(&self) -> Option<&[usize]> {
        self.labels.as_deref()
    }
    /// Final inertia of each run, in order.
    pub fn init_inertias(&self) -> &[f64] {
        &self.init_inertias
    }
    /// Which backend and device ran the fit (None for loaded models).
    pub fn backend_report(&self) -> Option<&BackendReport> {
        self.report.as_ref()
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        data.validate_for("k-means")?;
        if data.n_features() != self.n_features {
            return Err(Error::DimensionMismatch {
                expected: self.n_features,
                got: data.n_features(),
            });
        }
        Ok(())
    }

    /// Labels and inertia of `x` under the centers, and what computed them.
    fn assign(&self, x: &impl AsDataset) -> Result<(Array1<usize>, f64, BackendReport)> {
        let data = x.as_dataset();
        self.check_data(&data)?;
        let mut engine = kmeans_engine(self.predict_backend, &data, EngineOptions::default())?;
        let stats = engine.assign_and_sum(&self.centers, self.n_clusters)?;
        let mut labels = vec![0u32; data.n_samples()];
        engine.labels(&mut labels)?;
        let labels = labels.iter().map(|&l| l as usize).collect();
        Ok((labels, stats.inertia, engine.report()))
    }

    /// [`FittedKMeans::score`] and what computed it (the device `Backend::Auto` chose, and why).
    pub fn score_with_report(&self, x: &impl AsDataset) -> Result<(f64, BackendReport)> {
        let (_, inertia, report) = self.assign(x)?;
        Ok((-inertia, report))
    }

    /// The nearest center of every sample (scikit-learn's `predict`; ties to the lowest index).
    pub fn predict(&self, x: &impl AsDataset) -> Result<Array1<usize>> {
        Ok(self.assign(x)?.0)
    }

    /// Minus the inertia of `x` under the centers (scikit-learn's `score`: higher is better;
    /// on a weighted [`Dataset`] the weighted inertia, as `score(X, sample_weight=w)`).
    pub fn score(&self, x: &impl AsDataset) -> Result<f64> {
        Ok(-self.assign(x)?.1)
    }

    /// The model as JSON in emgpu's model schema (`"model": "kmeans"`, centers `[K][D]`).
    pub fn to_json(&self) -> String {
        let (k, d) = (self.n_clusters, self.n_features);
        model_file::write(&KMeansFile {
            header: Header::new("kmeans"),
            n_features: d,
            n_clusters: k,
            cluster_centers: Nested::from_flat(&self.centers, &[k, d]),
            inertia: model_file::finite(self.inertia),
            n_iter: self.n_iter,
            converged: self.converged,
            backend: self.report.as_ref().map(|r| r.backend.to_string()),
            device: self.report.as_ref().map(|r| r.device.clone()),
            feature_names: self.feature_names.clone(),
        })
    }

    /// Reads a model written by [`FittedKMeans::to_json`], checking every field.
    pub fn from_json(text: &str) -> Result<Self> {
        let file: KMeansFile = model_file::read(text, "kmeans", "a k-means model")?;
        let (k, d) = (file.n_clusters, file.n_features);
        let centers = file
            .cluster_centers
            .to_flat(&[k, d], "cluster_centers")
            .map_err(|_| {
                Error::BadModel(format!(
                    "field \"cluster_centers\" must be {k} arrays of {d} numbers"
                ))
            })?;
        let mut model = Self::from_centers_vec(centers, k, d)?;
        model.inertia = file.inertia.unwrap_or(f64::NAN);
        model.n_iter = file.n_iter;
        model.converged = file.converged;
        model.feature_names = checked_names(file.feature_names, d)?;
        Ok(model)
    }
}

/// A k-means model file (`"model": "kmeans"`). `backend` and `device` are written for the
/// reader's information and not read back.
#[derive(Debug, Serialize, Deserialize)]
struct KMeansFile {
    #[serde(flatten)]
    header: Header,
    n_features: usize,
    n_clusters: usize,
    cluster_centers: Nested,
    /// `null` when not finite (a model made from centers has no inertia).
    #[serde(default)]
    inertia: Option<f64>,
    #[serde(default)]
    n_iter: usize,
    #[serde(default)]
    converged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    /// The features' names (a CSV header's); absent in older files and for `.npy` data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    feature_names: Option<Vec<String>>,
}
