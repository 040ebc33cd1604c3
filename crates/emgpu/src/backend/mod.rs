//! The GPU engines' former home, kept while they move into the models' folders.

pub use crate::device::{Backend, BackendReport, EngineOptions};
pub use crate::models::gmm::GmmEngine;
pub use crate::models::kmeans::{FarPoint, KMeansEngine};

pub mod gpu;
pub mod gpu_kmeans;
