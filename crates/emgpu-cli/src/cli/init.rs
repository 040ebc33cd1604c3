//! `--init`: an initialization method by name, or a file to start from (warm start).
//!
//! The names are scikit-learn's. A Gaussian mixture takes `kmeans`, `k-means++`, `random`,
//! `random_from_data` (its `init_params`) or a Gaussian mixture model file; k-means takes
//! `k-means++`, `random` (its `init`), a `.npy` file of centers `[K, D]`, or a model file (a
//! k-means model's centers, a Gaussian mixture's means).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::file::{FileFormat, ReadOptions, open_dataset};
use emgpu::{Init, KMeansInit};
use ndarray::Array2;

use super::{AnyModel, CliError, about_file, load_any_model};

/// The initialization methods of a Gaussian mixture (scikit-learn's `init_params`).
pub const GMM_METHODS: &[&str] = &["kmeans", "k-means++", "random", "random_from_data"];
/// The initialization methods of k-means (scikit-learn's `init`).
pub const KMEANS_METHODS: &[&str] = &["k-means++", "random"];

/// The value of `--init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitArg {
    /// A method from [`GMM_METHODS`] or [`KMEANS_METHODS`], by name.
    Method(&'static str),
    /// A file to start from: a model JSON file, or (k-means) a `.npy` of centers.
    File(PathBuf),
}

impl fmt::Display for InitArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitArg::Method(name) => f.write_str(name),
            InitArg::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for InitArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(name) = GMM_METHODS.iter().chain(KMEANS_METHODS).find(|n| **n == s) {
            return Ok(InitArg::Method(name));
        }
        let path = PathBuf::from(s);
        let looks_like_file = path.exists() || has_extension(&path, "json") || is_npy(&path);
        if looks_like_file {
            Ok(InitArg::File(path))
        } else {
            Err(format!(
                "unknown init method \"{s}\"; use one of {} (Gaussian mixtures) or {} (k-means), or the path of a model JSON file (k-means also: a .npy of centers)",
                GMM_METHODS.join(", "),
                KMEANS_METHODS.join(", ")
            ))
        }
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn is_npy(path: &Path) -> bool {
    has_extension(path, "npy")
}

impl InitArg {
    /// The name of the library's default initialization of a Gaussian mixture.
    pub fn gmm_default() -> Self {
        InitArg::Method(
            GMM_METHODS
                .iter()
                .copied()
                .find(|n| n.parse::<Init>().ok() == Some(Init::default()))
                .unwrap_or("kmeans"),
        )
    }

    /// The name of the library's default initialization of k-means.
    pub fn kmeans_default() -> Self {
        InitArg::Method(
            KMEANS_METHODS
                .iter()
                .copied()
                .find(|n| n.parse::<KMeansInit>().ok() == Some(KMeansInit::default()))
                .unwrap_or("k-means++"),
        )
    }

    /// The library's `Init` for a Gaussian mixture (a model file is read and checked here).
    pub fn gmm(&self) -> Result<Init, CliError> {
        match self {
            InitArg::Method(name) => name.parse::<Init>().map_err(CliError::from),
            InitArg::File(path) if is_npy(path) => Err(CliError::usage(format!(
                "--init {}: a .npy of initial centers starts k-means (--model kmeans); a Gaussian mixture starts from a method ({}) or a Gaussian mixture model JSON file",
                path.display(),
                GMM_METHODS.join(", ")
            ))),
            InitArg::File(path) => match load_any_model(path)? {
                AnyModel::Gmm(m) => Ok(Init::Params(m.params().clone())),
                other => Err(CliError::usage(format!(
                    "--init {}: this is {}; a Gaussian mixture starts from a Gaussian mixture model file or a method ({}; kmeans runs k-means first)",
                    path.display(),
                    other.kind(),
                    GMM_METHODS.join(", ")
                ))),
            },
        }
    }

    /// The library's `KMeansInit` for k-means (files are read and checked here).
    pub fn kmeans(&self) -> Result<KMeansInit, CliError> {
        match self {
            InitArg::Method(name) if KMEANS_METHODS.contains(name) => {
                name.parse::<KMeansInit>().map_err(CliError::from)
            }
            InitArg::Method(name) => Err(CliError::usage(format!(
                "--init {name} initializes a Gaussian mixture; k-means (--model kmeans) takes {}, a .npy of centers [K, D] or a model JSON file",
                KMEANS_METHODS.join(" or ")
            ))),
            InitArg::File(path) if is_npy(path) => Ok(KMeansInit::Centers(read_centers(path)?)),
            InitArg::File(path) => Ok(KMeansInit::Centers(match load_any_model(path)? {
                AnyModel::KMeans(m) => m.cluster_centers(),
                AnyModel::Gmm(m) => m.means(),
                AnyModel::Hmm(m) => m.means(),
                AnyModel::Lda(_) => {
                    return Err(CliError::usage(format!(
                        "--init {}: this is an LDA model; k-means starts from centers (a .npy [K, D] or a k-means or Gaussian mixture model)",
                        path.display()
                    )));
                }
            })),
        }
    }
}

/// Reads initial centers `[K, D]` from a `.npy` file (float32 or float64, finite).
fn read_centers(path: &Path) -> Result<Array2<f64>, CliError> {
    let options = ReadOptions {
        format: Some(FileFormat::Npy),
        ..ReadOptions::default()
    };
    let data = open_dataset(path, &options)?;
    data.validate().map_err(|e| about_file(e, path))?;
    Array2::from_shape_vec((data.n_samples(), data.n_features()), data.to_vec_f64()?)
        .map_err(|e| CliError::error(format!("{}: {e}", path.display())))
}

/// Checks initial centers against the fit: K rows of D values.
pub fn check_centers(
    init: &KMeansInit,
    source: &InitArg,
    k: usize,
    d: usize,
) -> Result<(), CliError> {
    if let KMeansInit::Centers(c) = init {
        if c.ncols() != d {
            return Err(CliError::error(format!(
                "--init {source}: the initial centers have {} features but the data has {d}",
                c.ncols()
            )));
        }
        if c.nrows() != k {
            return Err(CliError::usage(format!(
                "--init {source}: {} initial centers, but --components is {k}; give {k} centers or --components {}",
                c.nrows(),
                c.nrows()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_typos() {
        for name in GMM_METHODS.iter().chain(KMEANS_METHODS) {
            assert_eq!(name.parse::<InitArg>(), Ok(InitArg::Method(name)));
        }
        assert_eq!(
            "warm.json".parse::<InitArg>(),
            Ok(InitArg::File("warm.json".into()))
        );
        assert_eq!(
            "centers.npy".parse::<InitArg>(),
            Ok(InitArg::File("centers.npy".into()))
        );
        let err = "kmean".parse::<InitArg>().unwrap_err();
        assert!(err.contains("unknown init method \"kmean\""), "{err}");
    }

    #[test]
    fn every_name_resolves_for_its_model_and_the_others_say_why_not() {
        for name in GMM_METHODS {
            let arg = InitArg::Method(name);
            assert_eq!(arg.gmm().unwrap().name(), *name);
            match arg.kmeans() {
                Ok(init) => assert!(KMEANS_METHODS.contains(name), "{init:?}"),
                Err(e) => {
                    assert!(!KMEANS_METHODS.contains(name));
                    assert!(e.message.contains("initializes a Gaussian mixture"));
                    assert_eq!(e.code, super::super::EXIT_USAGE);
                }
            }
        }
        assert_eq!(
            InitArg::Method("random").kmeans().unwrap(),
            KMeansInit::Random
        );
        let e = InitArg::File("c.npy".into()).gmm().unwrap_err();
        assert!(e.message.contains("--model kmeans"), "{}", e.message);
        // The defaults are the library's.
        assert_eq!(InitArg::gmm_default().gmm().unwrap(), Init::default());
        assert_eq!(
            InitArg::kmeans_default().kmeans().unwrap(),
            KMeansInit::default()
        );
    }
}
