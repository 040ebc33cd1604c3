//! The fit options `fit`, `validate` and `select` share, and how they become the library's
//! builders. Defaults are scikit-learn's and depend on the model (`GaussianMixture` or `KMeans`),
//! so the options are optional here and resolved per model; an option that one model does not
//! have is a usage error when given with it.

use clap::{Args, ValueEnum};
use emgpu::{Backend, CovarianceType, GaussianMixture, KMeans};

use super::init::{InitArg, check_centers};
use super::{CliError, CovarianceArg, at_least_one};

/// `--model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// A Gaussian mixture (scikit-learn's GaussianMixture).
    Gmm,
    /// k-means, Lloyd's algorithm (scikit-learn's KMeans).
    Kmeans,
    /// A hidden Markov model with Gaussian emissions (hmmlearn's GaussianHMM); sequences cut by
    /// --lengths.
    Hmm,
    /// Latent Dirichlet Allocation (scikit-learn's LatentDirichletAllocation, batch variational
    /// EM) of a document-term count matrix (.npz or .npy).
    Lda,
}

/// The options of a fit that `fit`, `validate` and `select` share.
// These doc comments are clap's --help text, where brackets are literal ("[N]", "[default]").
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Initialization. Gaussian mixture: kmeans [default], k-means++, random, random_from_data,
    /// or a Gaussian mixture MODEL.json to start from exactly (warm start). k-means: k-means++
    /// [default], random, or initial centers: a CENTERS.npy [K, D] or a MODEL.json (k-means
    /// centers, or a mixture's means).
    #[arg(long, value_name = "METHOD|FILE")]
    pub init: Option<InitArg>,

    /// Maximum iterations per initialization [default: 100 for gmm, 300 for kmeans, 10 for hmm
    /// (hmmlearn's n_iter)].
    #[arg(long, value_name = "M")]
    pub max_iter: Option<usize>,

    /// Convergence threshold. gmm: on the change of the lower bound (mean log-likelihood per
    /// sample) [default: 1e-3]; 0 runs exactly --max-iter iterations. kmeans: on the squared
    /// shift of the centers, relative to the mean variance of the features [default: 1e-4]; a
    /// run also stops when no label changes. hmm: on the rise of the total log-likelihood
    /// (hmmlearn's rule) [default: 1e-2]; 0 runs exactly --max-iter iterations.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub tol: Option<f64>,

    /// gmm and hmm: added to the diagonal of every covariance, keeping it positive definite
    /// [default: 1e-6].
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub reg_covar: Option<f64>,

    /// Seed of every random choice (same seed and backend: same model).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
}

impl TrainArgs {
    /// Range checks that can fail before any file is read.
    pub fn check(&self) -> Result<(), CliError> {
        if let Some(m) = self.max_iter {
            at_least_one("--max-iter", m)?;
        }
        Ok(())
    }

    /// The `--init` of a Gaussian mixture (given or default).
    pub fn gmm_init(&self) -> InitArg {
        self.init.clone().unwrap_or_else(InitArg::gmm_default)
    }

    /// The `--init` of k-means (given or default).
    pub fn kmeans_init(&self) -> InitArg {
        self.init.clone().unwrap_or_else(InitArg::kmeans_default)
    }

    /// The Gaussian mixture builder (init files are read here), scikit-learn's defaults where an
    /// option is not given.
    pub fn gmm(
        &self,
        n_components: usize,
        covariance: CovarianceType,
        n_init: Option<usize>,
        backend: Backend,
    ) -> Result<GaussianMixture, CliError> {
        let defaults = GaussianMixture::params(n_components);
        let mut gm = defaults
            .covariance(covariance)
            .seed(self.seed)
            .backend(backend)
            .init(self.gmm_init().gmm()?);
        if let Some(t) = self.tol {
            gm = gm.tol(t);
        }
        if let Some(m) = self.max_iter {
            gm = gm.max_iter(m);
        }
        if let Some(r) = self.reg_covar {
            gm = gm.reg_covar(r);
        }
        if let Some(n) = n_init {
            gm = gm.n_init(n);
        }
        Ok(gm)
    }

    /// The k-means builder (init files are read and checked against the data's `n_features`
    /// here), scikit-learn's defaults where an option is not given (`n_init`: "auto").
    pub fn kmeans(
        &self,
        n_clusters: usize,
        n_features: usize,
        n_init: Option<usize>,
        backend: Backend,
    ) -> Result<KMeans, CliError> {
        self.reject_for_kmeans()?;
        let source = self.kmeans_init();
        let init = source.kmeans()?;
        check_centers(&init, &source, n_clusters, n_features)?;
        let mut km = KMeans::params(n_clusters)
            .seed(self.seed)
            .backend(backend)
            .init(init);
        if let Some(t) = self.tol {
            km = km.tol(t);
        }
        if let Some(m) = self.max_iter {
            km = km.max_iter(m);
        }
        if let Some(n) = n_init {
            km = km.n_init(n);
        }
        Ok(km)
    }

    /// The Gaussian-mixture-only options are refused for k-means.
    fn reject_for_kmeans(&self) -> Result<(), CliError> {
        if self.reg_covar.is_some() {
            return Err(not_for_kmeans("--reg-covar"));
        }
        Ok(())
    }
}

/// The usage error of a Gaussian mixture option given with `--model kmeans`.
pub fn not_for_kmeans(flag: &str) -> CliError {
    CliError::usage(format!(
        "{flag} is an option of Gaussian mixtures; k-means (--model kmeans) has no covariances: drop {flag}, or fit a Gaussian mixture (--model gmm)"
    ))
}

/// The options of one fit (`fit` and `validate`).
#[derive(Debug, Args)]
pub struct FitArgs {
    /// Number of mixture components (k-means: clusters) K.
    #[arg(long, short = 'k', value_name = "K")]
    pub components: usize,

    /// The model to fit.
    #[arg(long, value_enum, default_value_t = ModelArg::Gmm, value_name = "MODEL")]
    pub model: ModelArg,

    /// gmm and hmm: the covariance structure (scikit-learn's covariance_type) [default: full;
    /// hmm: diag, hmmlearn's].
    #[arg(long, value_enum, value_name = "TYPE")]
    pub covariance: Option<CovarianceArg>,

    #[command(flatten)]
    pub train: TrainArgs,
}

impl FitArgs {
    /// Range checks, and options the model does not have, before any file is read.
    pub fn check(&self) -> Result<(), CliError> {
        at_least_one("--components", self.components)?;
        self.train.check()?;
        if self.model == ModelArg::Lda {
            for (given, flag) in [
                (self.covariance.is_some(), "--covariance"),
                (self.train.reg_covar.is_some(), "--reg-covar"),
            ] {
                if given {
                    return Err(CliError::usage(format!(
                        "{flag} is an option of Gaussian models; LDA (--model lda) has none: drop {flag}"
                    )));
                }
            }
        }
        if self.model == ModelArg::Kmeans {
            if self.covariance.is_some() {
                return Err(not_for_kmeans("--covariance"));
            }
            self.train.reject_for_kmeans()?;
        }
        Ok(())
    }

    /// The covariance type (given or the default: scikit-learn's full; hmmlearn's diag for
    /// hmm).
    pub fn covariance_type(&self) -> CovarianceType {
        let default = match self.model {
            ModelArg::Hmm => CovarianceType::Diag,
            _ => CovarianceType::Full,
        };
        self.covariance.map_or(default, CovarianceType::from)
    }

    /// The hidden Markov model builder (an `--init` model file is read here), hmmlearn's
    /// defaults where an option is not given.
    pub fn hmm(
        &self,
        n_init: Option<usize>,
        backend: Backend,
    ) -> Result<emgpu::models::hmm::GaussianHmm, CliError> {
        let mut hmm = emgpu::models::hmm::GaussianHmm::params(self.components)
            .covariance(self.covariance_type())
            .seed(self.train.seed)
            .backend(backend)
            .init(super::hmm::hmm_init(self.train.init.as_ref())?);
        if let Some(t) = self.train.tol {
            hmm = hmm.tol(t);
        }
        if let Some(m) = self.train.max_iter {
            hmm = hmm.max_iter(m);
        }
        if let Some(r) = self.train.reg_covar {
            hmm = hmm.reg_covar(r);
        }
        if let Some(n) = n_init {
            hmm = hmm.n_init(n);
        }
        Ok(hmm)
    }

    /// The `--init` given or the model's default.
    pub fn init(&self) -> InitArg {
        match self.model {
            ModelArg::Gmm | ModelArg::Hmm => self.train.gmm_init(),
            ModelArg::Lda => self.train.init.clone().unwrap_or(InitArg::Method("random")),
            ModelArg::Kmeans => self.train.kmeans_init(),
        }
    }

    /// The Gaussian mixture builder.
    pub fn gmm(
        &self,
        n_init: Option<usize>,
        backend: Backend,
    ) -> Result<GaussianMixture, CliError> {
        self.train
            .gmm(self.components, self.covariance_type(), n_init, backend)
    }

    /// The k-means builder for data of `n_features` columns.
    pub fn kmeans(
        &self,
        n_features: usize,
        n_init: Option<usize>,
        backend: Backend,
    ) -> Result<KMeans, CliError> {
        self.train
            .kmeans(self.components, n_features, n_init, backend)
    }
}
