//! `emgpu._emgpu`: the extension module behind the `emgpu` Python package.
//!
//! The scikit-learn-compatible estimators (`emgpu.GaussianMixture`, `emgpu.KMeans`) are written
//! in Python (`python/emgpu/__init__.py`: parameter handling, validation with scikit-learn's
//! helpers, attributes); they call this module for everything that touches the data:
//!
//! - `fit_gmm`, `gmm_initial_params`, `fit_kmeans` fit the core's builders on a numpy array, and
//!   `FittedGmm` / `FittedKMeans` wrap the core's fitted models (predictions, scores, samples,
//!   model files);
//! - arrays come in as float32 or float64 of any layout and are read **in place**: a
//!   `PyReadonlyArray2` is an ndarray view of numpy's buffer, and [`emgpu::Dataset::from_array`]
//!   reads its rows chunk by chunk (a C-order array or a memory map as one slice, Fortran order
//!   and strided arrays row by row), so a `np.load(..., mmap_mode="r")` array streams from the
//!   page cache as the CLI's mapped `.npy` files do;
//! - the GIL is released while the core works ([`Python::detach`]); after every EM iteration the
//!   progress callback takes it back for a moment to run Python's signal handlers (Ctrl-C raises
//!   `KeyboardInterrupt` there, which stops the fit through the core's [`emgpu::Control`]) and the
//!   estimator's verbose printer, if any;
//! - core errors become Python exceptions carrying the core's message: `ValueError` for bad data,
//!   parameters and models (as scikit-learn), `RuntimeError` for the GPU, `OSError` for files,
//!   `MemoryError` when memory cannot be had.

use std::ops::ControlFlow;

use emgpu::{
    Backend, CovarianceType, Dataset, Error, FittedGmm, FittedKMeans, GaussianMixture, GmmParams,
    Init, KMeans, KMeansInit,
};
use ndarray::{Array2, ArrayView2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn,
};
use pyo3::exceptions::{
    PyKeyboardInterrupt, PyMemoryError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// A core error as the Python exception scikit-learn users expect, with the core's message.
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NoAdapter | Error::NoGpuSupport | Error::Gpu(_) | Error::DeviceLimits(_) => {
            PyRuntimeError::new_err(msg)
        }
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::OutOfMemory(_) => PyMemoryError::new_err(msg),
        Error::Cancelled { .. } => PyKeyboardInterrupt::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// The data of a call: a float32 or float64 2-D array borrowed from numpy (no copy).
enum Input<'py> {
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
}

impl<'py> Input<'py> {
    fn extract(x: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(a) = x.extract::<PyReadonlyArray2<'py, f64>>() {
            return Ok(Input::F64(a));
        }
        if let Ok(a) = x.extract::<PyReadonlyArray2<'py, f32>>() {
            return Ok(Input::F32(a));
        }
        Err(PyValueError::new_err(
            "X must be a 2-D numpy array of float32 or float64 (the estimators convert other input)",
        ))
    }

    /// Runs `f` on a dataset over the array with the GIL released.
    fn run<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Dataset) -> emgpu::Result<R> + Send,
    ) -> PyResult<R> {
        match self {
            Input::F64(a) => {
                let view: ArrayView2<f64> = a.as_array();
                py.detach(|| f(&Dataset::from_array(&view)))
            }
            Input::F32(a) => {
                let view: ArrayView2<f32> = a.as_array();
                py.detach(|| f(&Dataset::from_array(&view)))
            }
        }
        .map_err(to_py)
    }
}

fn backend(device: &str) -> PyResult<Backend> {
    device.parse().map_err(to_py)
}

/// The per-iteration hook of a fit: with the GIL taken back for a moment, runs Python's signal
/// handlers (Ctrl-C) and calls `callback(init, iteration, value, change)` when there is one. The
/// first Python error stops the fit and is kept, to be raised instead of the core's
/// `Cancelled`.
struct Hook {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl Hook {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        Self {
            callback,
            error: None,
        }
    }

    fn step(&mut self, init: usize, iteration: usize, value: f64, change: f64) -> emgpu::Control {
        let result = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                cb.call1(py, (init, iteration, value, change))?;
            }
            Ok(())
        });
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    /// The fit's result, with a Python error raised in the hook taking precedence.
    fn finish<T>(self, result: PyResult<T>) -> PyResult<T> {
        match self.error {
            Some(e) => Err(e),
            None => result,
        }
    }
}

/// Explicit initial parameters: (weights `[K]`, means `[K, D]`, covariances in scikit-learn's
/// shape for the covariance type).
type InitialParams<'py> = (
    PyReadonlyArray1<'py, f64>,
    PyReadonlyArray2<'py, f64>,
    PyReadonlyArrayDyn<'py, f64>,
);

/// Drawn samples `[n, D]` and their components `[n]`.
type Samples<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<i64>>);

/// Row-major `Vec` of a float64 array of any layout.
fn flat(a: &PyReadonlyArrayDyn<'_, f64>) -> Vec<f64> {
    a.as_array().iter().copied().collect()
}

/// The builder of a Gaussian mixture fit.
#[allow(clippy::too_many_arguments)]
fn gmm_builder(
    n_components: usize,
    covariance_type: &str,
    tol: f64,
    reg_covar: f64,
    max_iter: usize,
    n_init: usize,
    init: Init,
    seed: u64,
    device: &str,
) -> PyResult<GaussianMixture> {
    let cov: CovarianceType = covariance_type.parse().map_err(to_py)?;
    Ok(GaussianMixture::params(n_components)
        .covariance(cov)
        .tol(tol)
        .reg_covar(reg_covar)
        .max_iter(max_iter)
        .n_init(n_init)
        .init(init)
        .seed(seed)
        .backend(backend(device)?))
}

/// The initialization: a method name, or explicit parameters when `weights`, `means` and
/// `covariances` (scikit-learn's shapes for the covariance type) are all given.
fn gmm_init(
    init_params: &str,
    covariance_type: &str,
    initial: Option<InitialParams<'_>>,
) -> PyResult<Init> {
    match initial {
        None => init_params.parse().map_err(to_py),
        Some((w, m, c)) => {
            let cov: CovarianceType = covariance_type.parse().map_err(to_py)?;
            let d = m.as_array().ncols();
            let params = GmmParams::new(
                cov,
                w.as_array().iter().copied().collect(),
                m.as_array().iter().copied().collect(),
                flat(&c),
                d,
            )
            .map_err(to_py)?;
            Ok(Init::Params(params))
        }
    }
}

/// Fits a Gaussian mixture to `x`; `initial` = (weights, means, covariances) starts from those.
#[pyfunction]
#[pyo3(signature = (x, n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params, initial, seed, device, callback))]
#[allow(clippy::too_many_arguments)]
fn fit_gmm(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_components: usize,
    covariance_type: &str,
    tol: f64,
    reg_covar: f64,
    max_iter: usize,
    n_init: usize,
    init_params: &str,
    initial: Option<InitialParams<'_>>,
    seed: u64,
    device: &str,
    callback: Option<Py<PyAny>>,
) -> PyResult<PyFittedGmm> {
    let init = gmm_init(init_params, covariance_type, initial)?;
    let gm = gmm_builder(
        n_components,
        covariance_type,
        tol,
        reg_covar,
        max_iter,
        n_init,
        init,
        seed,
        device,
    )?;
    let input = Input::extract(x)?;
    let mut hook = Hook::new(callback);
    let result = input.run(py, |data| {
        gm.fit_with_control(data, &mut |p| {
            hook.step(p.init, p.iteration, p.lower_bound, p.change)
        })
    });
    let inner = hook.finish(result)?;
    Ok(PyFittedGmm { inner })
}

/// The parameters the first initialization of `fit_gmm` with these settings starts from:
/// (weights, means, covariances) in scikit-learn's shapes.
#[pyfunction]
#[pyo3(signature = (x, n_components, covariance_type, reg_covar, init_params, seed, device))]
#[allow(clippy::too_many_arguments)]
fn gmm_initial_params<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    n_components: usize,
    covariance_type: &str,
    reg_covar: f64,
    init_params: &str,
    seed: u64,
    device: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let init = gmm_init(init_params, covariance_type, None)?;
    let gm = gmm_builder(
        n_components,
        covariance_type,
        1e-3,
        reg_covar,
        100,
        1,
        init,
        seed,
        device,
    )?;
    let input = Input::extract(x)?;
    let p = input.run(py, |data| gm.initial_params(data))?;
    PyTuple::new(
        py,
        [
            p.weights_array().into_pyarray(py).into_any(),
            p.means_array().into_pyarray(py).into_any(),
            p.covariances_array().into_pyarray(py).into_any(),
        ],
    )
}

/// A fitted Gaussian mixture (the core's `FittedGmm`).
#[pyclass(name = "FittedGmm", module = "emgpu._emgpu", frozen)]
struct PyFittedGmm {
    inner: FittedGmm,
}

impl PyFittedGmm {
    fn on(&self, device: &str) -> PyResult<FittedGmm> {
        Ok(self.inner.clone().with_backend(backend(device)?))
    }
}

#[pymethods]
impl PyFittedGmm {
    /// Mixture weights `[K]`.
    fn weights<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.weights().into_pyarray(py)
    }
    /// Means `[K, D]`.
    fn means<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        self.inner.means().into_pyarray(py)
    }
    /// Covariances in scikit-learn's shape.
    fn covariances<'py>(&self, py: Python<'py>) -> Bound<'py, PyArrayDyn<f64>> {
        self.inner.covariances().into_pyarray(py)
    }
    /// Cholesky factors of the precisions (scikit-learn's `precisions_cholesky_`).
    fn precisions_cholesky<'py>(&self, py: Python<'py>) -> Bound<'py, PyArrayDyn<f64>> {
        self.inner.precisions_cholesky().into_pyarray(py)
    }
    #[getter]
    fn covariance_type(&self) -> String {
        self.inner.covariance_type().to_string()
    }
    #[getter]
    fn n_components(&self) -> usize {
        self.inner.n_components()
    }
    #[getter]
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }
    #[getter]
    fn lower_bound(&self) -> f64 {
        self.inner.lower_bound()
    }
    #[getter]
    fn lower_bound_trace(&self) -> Vec<f64> {
        self.inner.lower_bound_trace().to_vec()
    }
    #[getter]
    fn n_iter(&self) -> usize {
        self.inner.n_iter()
    }
    #[getter]
    fn converged(&self) -> bool {
        self.inner.converged()
    }
    /// The backend and device that ran the fit (`None` for loaded models).
    #[getter]
    fn backend(&self) -> Option<String> {
        self.inner
            .backend_report()
            .map(|r| format!("{} ({})", r.backend, r.device))
    }
    #[getter]
    fn feature_names(&self) -> Option<Vec<String>> {
        self.inner.feature_names().map(<[String]>::to_vec)
    }
    /// The same model with these feature names (`None` removes them).
    fn with_feature_names(&self, names: Option<Vec<String>>) -> PyResult<Self> {
        let inner = self
            .inner
            .clone()
            .with_feature_names(names)
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    fn score_samples<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        device: &str,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let m = self.on(device)?;
        let out = Input::extract(x)?.run(py, |d| m.score_samples(d))?;
        Ok(out.into_pyarray(py))
    }
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        device: &str,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let m = self.on(device)?;
        let out = Input::extract(x)?.run(py, |d| m.predict_proba(d))?;
        Ok(out.into_pyarray(py))
    }
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        device: &str,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let m = self.on(device)?;
        let out = Input::extract(x)?.run(py, |d| m.predict(d))?;
        Ok(out.mapv(|l| l as i64).into_pyarray(py))
    }
    fn score(&self, py: Python<'_>, x: &Bound<'_, PyAny>, device: &str) -> PyResult<f64> {
        let m = self.on(device)?;
        Input::extract(x)?.run(py, |d| m.score(d))
    }
    fn bic(&self, py: Python<'_>, x: &Bound<'_, PyAny>, device: &str) -> PyResult<f64> {
        let m = self.on(device)?;
        Input::extract(x)?.run(py, |d| m.bic(d))
    }
    fn aic(&self, py: Python<'_>, x: &Bound<'_, PyAny>, device: &str) -> PyResult<f64> {
        let m = self.on(device)?;
        Input::extract(x)?.run(py, |d| m.aic(d))
    }
    /// `n` samples and their components (scikit-learn's `sample`), drawn with `seed`.
    fn sample<'py>(&self, py: Python<'py>, n: usize, seed: u64) -> PyResult<Samples<'py>> {
        let m = &self.inner;
        let (x, y) = py.detach(|| m.sample(n, seed)).map_err(to_py)?;
        Ok((x.into_pyarray(py), y.mapv(|l| l as i64).into_pyarray(py)))
    }
    /// The model file (the CLI's JSON schema).
    fn to_json(&self) -> String {
        self.inner.to_json()
    }
    /// Pickles as its model file.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let f = py.import("emgpu._emgpu")?.getattr("gmm_from_json")?;
        Ok((f, (self.inner.to_json(),)))
    }
}

/// Reads a Gaussian mixture's model file (written by `to_json` or the CLI).
#[pyfunction]
fn gmm_from_json(text: &str) -> PyResult<PyFittedGmm> {
    Ok(PyFittedGmm {
        inner: FittedGmm::from_json(text).map_err(to_py)?,
    })
}

/// Fits k-means to `x`; `centers` (`[K, D]`) start the one run when given.
#[pyfunction]
#[pyo3(signature = (x, n_clusters, tol, max_iter, n_init, init, centers, seed, device, callback))]
#[allow(clippy::too_many_arguments)]
fn fit_kmeans(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    n_clusters: usize,
    tol: f64,
    max_iter: usize,
    n_init: Option<usize>,
    init: &str,
    centers: Option<PyReadonlyArray2<'_, f64>>,
    seed: u64,
    device: &str,
    callback: Option<Py<PyAny>>,
) -> PyResult<PyFittedKMeans> {
    let init = match centers {
        Some(c) => KMeansInit::Centers(c.as_array().to_owned()),
        None => init.parse().map_err(to_py)?,
    };
    let mut km = KMeans::params(n_clusters)
        .tol(tol)
        .max_iter(max_iter)
        .init(init)
        .seed(seed)
        .backend(backend(device)?);
    if let Some(n) = n_init {
        km = km.n_init(n);
    }
    let input = Input::extract(x)?;
    let mut hook = Hook::new(callback);
    let result = input.run(py, |data| {
        km.fit_with_control(data, &mut |p| {
            hook.step(p.init, p.iteration, p.inertia, p.center_shift)
        })
    });
    let inner = hook.finish(result)?;
    Ok(PyFittedKMeans { inner })
}

/// A fitted k-means model (the core's `FittedKMeans`).
#[pyclass(name = "FittedKMeans", module = "emgpu._emgpu", frozen)]
struct PyFittedKMeans {
    inner: FittedKMeans,
}

#[pymethods]
impl PyFittedKMeans {
    /// Cluster centers `[K, D]`.
    fn cluster_centers<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        self.inner.cluster_centers().into_pyarray(py)
    }
    /// Labels of the training data (`None` for loaded models).
    fn labels<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<i32>>> {
        self.inner.labels().map(|l| {
            l.iter()
                .map(|&v| v as i32)
                .collect::<Vec<_>>()
                .into_pyarray(py)
        })
    }
    #[getter]
    fn n_clusters(&self) -> usize {
        self.inner.n_clusters()
    }
    #[getter]
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }
    #[getter]
    fn inertia(&self) -> f64 {
        self.inner.inertia()
    }
    #[getter]
    fn n_iter(&self) -> usize {
        self.inner.n_iter()
    }
    #[getter]
    fn converged(&self) -> bool {
        self.inner.converged()
    }
    #[getter]
    fn backend(&self) -> Option<String> {
        self.inner
            .backend_report()
            .map(|r| format!("{} ({})", r.backend, r.device))
    }
    #[getter]
    fn feature_names(&self) -> Option<Vec<String>> {
        self.inner.feature_names().map(<[String]>::to_vec)
    }
    /// The same model with these feature names (`None` removes them).
    fn with_feature_names(&self, names: Option<Vec<String>>) -> PyResult<Self> {
        let inner = self
            .inner
            .clone()
            .with_feature_names(names)
            .map_err(to_py)?;
        Ok(Self { inner })
    }
    /// The nearest center of every row (int32, as scikit-learn's `predict`).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        device: &str,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let m = self.inner.clone().with_backend(backend(device)?);
        let out = Input::extract(x)?.run(py, |d| m.predict(d))?;
        Ok(out.mapv(|l| l as i32).into_pyarray(py))
    }
    /// Minus the inertia of `x` (scikit-learn's `score`).
    fn score(&self, py: Python<'_>, x: &Bound<'_, PyAny>, device: &str) -> PyResult<f64> {
        let m = self.inner.clone().with_backend(backend(device)?);
        Input::extract(x)?.run(py, |d| m.score(d))
    }
    /// The model file (the CLI's JSON schema).
    fn to_json(&self) -> String {
        self.inner.to_json()
    }
    /// Pickles as its model file.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let f = py.import("emgpu._emgpu")?.getattr("kmeans_from_json")?;
        Ok((f, (self.inner.to_json(),)))
    }
}

/// Reads a k-means model file (written by `to_json` or the CLI).
#[pyfunction]
fn kmeans_from_json(text: &str) -> PyResult<PyFittedKMeans> {
    Ok(PyFittedKMeans {
        inner: FittedKMeans::from_json(text).map_err(to_py)?,
    })
}

/// Whether a GPU adapter (hardware or software) can be had: `(found, description)`.
#[pyfunction]
fn gpu_adapter(py: Python<'_>) -> (bool, String) {
    // A tiny fit on the GPU backend: it builds the shared context or says why it cannot.
    let x = Array2::from_shape_fn((8, 1), |(i, _)| i as f64);
    py.detach(
        || match KMeans::params(1).max_iter(1).backend(Backend::Gpu).fit(&x) {
            Ok(m) => (
                true,
                m.backend_report()
                    .map(|r| r.device.clone())
                    .unwrap_or_default(),
            ),
            Err(e) => (false, e.to_string()),
        },
    )
}

/// The extension module.
#[pymodule]
fn _emgpu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFittedGmm>()?;
    m.add_class::<PyFittedKMeans>()?;
    m.add_function(wrap_pyfunction!(fit_gmm, m)?)?;
    m.add_function(wrap_pyfunction!(gmm_initial_params, m)?)?;
    m.add_function(wrap_pyfunction!(gmm_from_json, m)?)?;
    m.add_function(wrap_pyfunction!(fit_kmeans, m)?)?;
    m.add_function(wrap_pyfunction!(kmeans_from_json, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_adapter, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
