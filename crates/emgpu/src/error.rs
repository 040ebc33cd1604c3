//! The one error type of the crate.
//!
//! Every variant's message says what went wrong and, where there is one, what to do about it.
//! Nothing a user's data, files or device can cause panics: it becomes one of these.

use std::path::PathBuf;

/// Everything that can go wrong in emgpu.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter of a model or a command is out of its range (K = 0, tol < 0, ...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),

    /// The data has no rows, or no columns.
    #[error(
        "the data is empty ({n_samples} rows, {n_features} columns); give at least one row and one column"
    )]
    EmptyData {
        /// Rows seen.
        n_samples: usize,
        /// Columns seen.
        n_features: usize,
    },

    /// A value in the data is NaN or infinite.
    #[error(
        "the data has a non-finite value ({value}) at row {row}, column {column} (0-based); remove or impute it before fitting"
    )]
    NonFinite {
        /// 0-based row of the first non-finite value.
        row: usize,
        /// 0-based column of that value.
        column: usize,
        /// The value, as printed (NaN, inf, -inf).
        value: String,
    },

    /// A row of data marked with missing values has no observed entry (every value NaN).
    #[error(
        "row {row} (0-based) has no observed value (every entry is NaN); drop it: a row with nothing observed says nothing about the mixture"
    )]
    NothingObserved {
        /// 0-based row.
        row: usize,
    },

    /// More components were asked for than there are data points.
    #[error(
        "n_components={n_components} is larger than the number of samples ({n_samples}); use at most {n_samples} components or more data"
    )]
    TooManyComponents {
        /// Components asked for.
        n_components: usize,
        /// Rows in the data.
        n_samples: usize,
    },

    /// The data's number of columns differs from the model's.
    #[error(
        "the data has {got} features (columns) but the model was fitted on {expected}; pass data with {expected} columns"
    )]
    DimensionMismatch {
        /// The model's number of features.
        expected: usize,
        /// The data's number of features.
        got: usize,
    },

    /// A covariance matrix is not positive definite, even with `reg_covar` on its diagonal.
    #[error(
        "component {component} has an ill-defined covariance (Cholesky pivot {pivot:.3e} is not positive), caused by singleton or collapsed samples; increase reg_covar (now {reg_covar:e}), reduce the number of components, or scale the data"
    )]
    IllConditioned {
        /// The component whose covariance failed (for tied: 0).
        component: usize,
        /// The offending pivot.
        pivot: f64,
        /// The regularization that was in effect.
        reg_covar: f64,
    },

    /// `Backend::Gpu` was asked for and wgpu found no adapter.
    #[error(
        "no GPU adapter found: install a Vulkan, Metal or DX12 driver (on Debian/Ubuntu without a GPU, `apt-get install mesa-vulkan-drivers` gives a CPU Vulkan adapter), or use the CPU backend"
    )]
    NoAdapter,

    /// `Backend::Gpu` was asked for but this build of emgpu has no GPU engines.
    #[error(
        "this build of emgpu has no GPU support (it was built without the `gpu` feature); rebuild with it, or use the CPU backend"
    )]
    NoGpuSupport,

    /// The progress callback asked the fit to stop.
    #[error("the fit was cancelled by its progress callback at iteration {iteration}")]
    Cancelled {
        /// The iteration after which it stopped.
        iteration: usize,
    },

    /// The GPU device failed or refused a request.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The data (or one chunk of it) does not fit what the device allows.
    #[error("the data does not fit the GPU: {0}")]
    DeviceLimits(String),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },

    /// A file's contents are not what they must be (bad .npy header, bad CSV cell, ...).
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and what would be right.
        message: String,
    },

    /// A computation produced a non-finite value where none can be.
    #[error("numerical failure: {0}")]
    Numerical(String),

    /// A model (JSON) is not a valid emgpu model.
    #[error("invalid model: {0}")]
    BadModel(String),

    /// The memory a request needs (numbers given) cannot be allocated on this machine.
    #[error("not enough memory: {0}")]
    OutOfMemory(String),

    /// Another process of a distributed fit failed; its message, as it would have printed it
    /// (see [`crate::em::reduce::Reducer::agree`]).
    #[error("{0}")]
    Remote(String),
}

impl Error {
    /// An [`Error::InvalidParameter`] from anything printable.
    pub fn param(msg: impl Into<String>) -> Self {
        Error::InvalidParameter(msg.into())
    }

    /// An [`Error::BadFile`] for `path`.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
