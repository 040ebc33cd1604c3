//! `--init`: an initialization method by name, or a model file to start from (warm start).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use emgpu::{GaussianMixture, Init};

use super::{CliError, load_model};

/// Makes the library's `Init` of a method, if this build has it.
type MakeInit = fn() -> Option<Init>;

/// The initialization methods `--init` names, and the library's `Init` for each that this build
/// has (`None`: the name is reserved and refused with "not available yet"). Making one available
/// is changing its `None` to `Some(Init::...)`.
const METHODS: &[(&str, MakeInit)] = &[
    ("kmeans", || Some(Init::Kmeans)),
    ("k-means++", || Some(Init::KMeansPlusPlus)),
    ("random", || Some(Init::Random)),
    ("random_from_data", || Some(Init::RandomFromData)),
];

/// The value of `--init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitArg {
    /// A method from [`METHODS`], by name.
    Method(&'static str),
    /// A model file whose parameters are the starting point.
    Model(PathBuf),
}

impl Default for InitArg {
    /// The library's default initialization, by its name.
    fn default() -> Self {
        let default = Init::default();
        METHODS
            .iter()
            .find(|(_, make)| make().as_ref() == Some(&default))
            .map_or(InitArg::Method("kmeans"), |(name, _)| InitArg::Method(name))
    }
}

impl fmt::Display for InitArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitArg::Method(name) => f.write_str(name),
            InitArg::Model(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for InitArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((name, _)) = METHODS.iter().find(|(name, _)| *name == s) {
            return Ok(InitArg::Method(name));
        }
        let path = PathBuf::from(s);
        let looks_like_file = path.exists()
            || path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if looks_like_file {
            Ok(InitArg::Model(path))
        } else {
            Err(format!(
                "unknown init method \"{s}\"; use one of {}, or the path of a model JSON file",
                method_names()
            ))
        }
    }
}

fn method_names() -> String {
    METHODS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl InitArg {
    /// The library's `Init` (a model file is read and checked here).
    pub fn resolve(&self) -> Result<Init, CliError> {
        match self {
            InitArg::Method(name) => METHODS
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, make)| make())
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "init method {name} is not available yet in this build; use --init random_from_data or a model JSON file"
                    ))
                }),
            InitArg::Model(path) => Ok(Init::Params(load_model(path)?.params().clone())),
        }
    }

    /// Applies this initialization to a fit.
    pub fn apply(&self, gmm: GaussianMixture) -> Result<GaussianMixture, CliError> {
        Ok(gmm.init(self.resolve()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_typos() {
        assert_eq!(
            "random_from_data".parse::<InitArg>(),
            Ok(InitArg::Method("random_from_data"))
        );
        assert_eq!(
            "warm.json".parse::<InitArg>(),
            Ok(InitArg::Model("warm.json".into()))
        );
        let err = "kmean".parse::<InitArg>().unwrap_err();
        assert!(err.contains("unknown init method \"kmean\""), "{err}");
        // Names reserved for methods this build lacks say so, as a usage error.
        for (name, make) in METHODS {
            let arg: InitArg = name.parse().unwrap();
            match (make(), arg.resolve()) {
                (Some(init), Ok(got)) => assert_eq!(got, init),
                (None, Err(e)) => {
                    assert!(e.message.contains("not available yet"), "{}", e.message);
                    assert_eq!(e.code, super::super::EXIT_USAGE);
                }
                (want, got) => panic!("{name}: {want:?} vs {got:?}"),
            }
        }
        // The default is the library's default, shown by name in --help.
        assert!(InitArg::default().resolve().is_ok());
        assert_eq!(
            InitArg::default().resolve().ok(),
            Some(emgpu::Init::default())
        );
    }
}
