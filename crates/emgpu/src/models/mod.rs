//! The models emgpu fits by EM.

pub mod gmm;
pub mod hmm;
pub mod kmeans;
pub mod lda;
pub mod model_file;
pub mod poisson;
