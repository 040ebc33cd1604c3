//! The devices the per-point work runs on, and the machinery they share.
#[cfg(feature = "gpu")]
pub mod gpu;
