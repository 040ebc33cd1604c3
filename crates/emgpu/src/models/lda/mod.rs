//! Latent Dirichlet Allocation by batch variational EM, with scikit-learn's answers
//! (`sklearn.decomposition.LatentDirichletAllocation`, `learning_method="batch"`).
//!
//! Data: a document-term count matrix ([`CountMatrix`]: rows = documents, columns = vocabulary).
//! Parameters: the variational topic-word parameters λ `[K][V]` (scikit-learn's `components_`)
//! with the priors α (`doc_topic_prior`) and η (`topic_word_prior`).
//!
//! One EM iteration is scikit-learn's `_em_step(X, batch_update=True)` with the per-document γ
//! started from ones (as its `transform` does):
//! - **prepare**: E[log β_kw] = ψ(λ_kw) − ψ(Σ_w λ_kw) and exp of it, stored word-major
//!   (`[V][K]`, the K topics of a word contiguous), and the topic part of the bound.
//! - **E-step** (per document, [`cpu`]): γ ← 1, t = exp(E[log θ]); up to 100 times:
//!   `norm_w = t·expβ_w + ε`, `γ = t ⊙ Σ_w (cnt_w / norm_w)·expβ_w + α`, `t = exp(ψ(γ) − ψ(Σγ))`,
//!   stop after the update in which `mean_k |γ − γ_old| < 1e-3`. The statistics
//!   `S_kw = expβ_kw · Σ_d t_dk · cnt_dw / norm_dw` use the final t and a fresh `norm`.
//! - **M-step**: λ ← η + S.
//!
//! The E-step also yields scikit-learn's approximate bound (`_approx_bound`) under the λ it ran
//! with: `Σ_d Σ_w cnt·ln(t·expβ_w) + Σ_d [Σ_k (α − γ_k)E[log θ_k] + ln Γ(γ_k) − ln Γ(α) + ln Γ(Kα)
//! − ln Γ(Σγ)] + Σ_k [Σ_w (η − λ_kw)E[log β_kw] + ln Γ(λ_kw) − ln Γ(η) + ln Γ(Vη) − ln Γ(Σ_w λ_kw)]`,
//! which is `score`; the perplexity is `exp(−score / Σ cnt)`. The statistics' "samples" are the
//! words, so the core's lower bound is `score / words = −ln perplexity`.
//!
//! ψ is scikit-learn's own approximation ([`crate::numerics::special::digamma_sklearn_with`],
//! absolute error up to ~2.5e-9) everywhere scikit-learn uses it (all of the above): with the
//! exact ψ, λ after ten iterations on a real corpus differed from scikit-learn's by up to 8e-6
//! relative (the E-steps amplify the small difference); with scikit-learn's, by ~1e-13.
//!
//! Engines: the f64 CPU engine ([`cpu`]) and the f32 GPU engine (`gpu`, feature `gpu`); [`engine`]
//! chooses between them by the crate's one rule ([`crate::device::choose`]).

use std::path::Path;

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};
use rayon::prelude::*;

use crate::data::sparse::CountMatrix;
use crate::device::{Backend, BackendReport, choose};
use crate::em::{Control, EStep, Model, Progress, Stats, Step, StopRule, run_em};
use crate::error::{Error, Result};
use crate::numerics::special::{digamma_sklearn as digamma, ln_gamma};

pub mod cpu;
mod file;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod synth;

pub use cpu::CpuLdaEngine;

/// scikit-learn's `max_doc_update_iter`: at most this many γ updates per document.
pub const MAX_DOC_UPDATE_ITER: usize = 100;
/// scikit-learn's `mean_change_tol`: a document stops once `mean_k |γ − γ_old|` is below it.
pub const MEAN_CHANGE_TOL: f64 = 1e-3;
/// Added to every φ normaliser (float64's machine epsilon, as scikit-learn).
pub const EPS: f64 = f64::EPSILON;

/// The model: K topics over V terms and the two Dirichlet priors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LdaModel {
    /// K.
    pub n_components: usize,
    /// V.
    pub n_features: usize,
    /// α (scikit-learn's `doc_topic_prior`).
    pub doc_topic_prior: f64,
    /// η (scikit-learn's `topic_word_prior`).
    pub topic_word_prior: f64,
}

impl LdaModel {
    /// Checks K ≥ 1, V ≥ 1 and both priors finite and > 0.
    pub fn validate(&self) -> Result<()> {
        if self.n_components == 0 {
            return Err(Error::param(
                "LDA needs at least one topic (n_components ≥ 1)",
            ));
        }
        if self.n_features == 0 {
            return Err(Error::param("LDA needs at least one vocabulary term"));
        }
        for (name, v) in [
            ("doc_topic_prior", self.doc_topic_prior),
            ("topic_word_prior", self.topic_word_prior),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::param(format!(
                    "{name} must be a finite number > 0, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// K rounded up to a multiple of 8: the row length of the word-major arrays (the extra
    /// topics are zeros), so that the inner loops run on whole vectors.
    pub fn padded_k(&self) -> usize {
        self.n_components.div_ceil(8) * 8
    }

    /// Checks `lambda` is `[K][V]` of finite values > 0.
    pub fn check_components(&self, lambda: &[f64]) -> Result<()> {
        let (k, v) = (self.n_components, self.n_features);
        if lambda.len() != k * v {
            return Err(Error::param(format!(
                "the topic-word parameters must be [{k}][{v}] ({} values), got {} values",
                k * v,
                lambda.len()
            )));
        }
        if let Some(p) = lambda.iter().position(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(Error::param(format!(
                "the topic-word parameters must be finite and > 0; topic {}, term {} is {}",
                p / v,
                p % v,
                lambda[p]
            )));
        }
        Ok(())
    }
}

/// λ `[K][V]` row-major (scikit-learn's `components_`).
#[derive(Debug, Clone, PartialEq)]
pub struct LdaParams {
    /// λ, row-major `[K][V]`.
    pub components: Vec<f64>,
}

/// λ prepared for an E-step.
#[derive(Debug, Clone)]
pub struct LdaPrepared {
    model: LdaModel,
    /// exp(E[log β]) word-major: `[V][padded K]`, zeros in the padding.
    exp_beta: Vec<f64>,
    /// The topic part of the approximate bound (depends on λ only).
    topic_bound: f64,
}

impl LdaPrepared {
    /// exp(E[log β]) word-major, `[V][LdaModel::padded_k]`.
    pub fn exp_beta(&self) -> &[f64] {
        &self.exp_beta
    }
    /// The model.
    pub fn model(&self) -> &LdaModel {
        &self.model
    }
}

/// The statistics of an E-step: the expected topic-word counts (already multiplied by
/// exp(E[log β]), word-major `[V][padded K]`), the document part of the bound, the words and the
/// documents summed; and the topic part of the bound of the λ they were computed under (not
/// additive: merging keeps `self`'s, scaling leaves it).
#[derive(Debug, Clone, PartialEq)]
pub struct LdaStats {
    /// `[V][padded K]`.
    pub word_topic: Vec<f64>,
    /// Σ over documents of their part of the bound.
    pub doc_bound: f64,
    /// Σ cnt.
    pub n_words: f64,
    /// Documents.
    pub n_docs: f64,
    /// The topic part of the bound (see [`LdaStats`]).
    pub topic_bound: f64,
}

impl LdaStats {
    /// Zero statistics of `len` word-topic values, with `topic_bound`.
    pub fn zeros(len: usize, topic_bound: f64) -> Self {
        Self {
            word_topic: vec![0.0; len],
            doc_bound: 0.0,
            n_words: 0.0,
            n_docs: 0.0,
            topic_bound,
        }
    }
    /// scikit-learn's `score`: the approximate bound of the documents summed.
    pub fn score(&self) -> f64 {
        self.doc_bound + self.topic_bound
    }
    /// scikit-learn's `perplexity`: `exp(−score / words)`.
    pub fn perplexity(&self) -> f64 {
        (-self.score() / self.n_words).exp()
    }
}

impl Stats for LdaStats {
    fn merge(&mut self, o: &Self) {
        self.word_topic
            .par_iter_mut()
            .zip(o.word_topic.par_iter())
            .for_each(|(a, b)| *a += b);
        self.doc_bound += o.doc_bound;
        self.n_words += o.n_words;
        self.n_docs += o.n_docs;
    }
    fn scale(&mut self, f: f64) {
        self.word_topic.par_iter_mut().for_each(|a| *a *= f);
        self.doc_bound *= f;
        self.n_words *= f;
        self.n_docs *= f;
    }
    fn log_likelihood(&self) -> f64 {
        self.score()
    }
    fn n_samples(&self) -> f64 {
        self.n_words
    }
    fn flat_len(&self) -> usize {
        self.word_topic.len() + 3
    }
    fn write_flat(&self, out: &mut [f64]) {
        let n = self.word_topic.len();
        out[..n].copy_from_slice(&self.word_topic);
        out[n..n + 3].copy_from_slice(&[self.doc_bound, self.n_words, self.n_docs]);
    }
    fn read_flat(&mut self, src: &[f64]) {
        let n = self.word_topic.len();
        self.word_topic.copy_from_slice(&src[..n]);
        (self.doc_bound, self.n_words, self.n_docs) = (src[n], src[n + 1], src[n + 2]);
    }
}

impl Model for LdaModel {
    type Params = LdaParams;
    type Prepared = LdaPrepared;
    type Stats = LdaStats;

    fn prepare(&self, p: &LdaParams) -> Result<LdaPrepared> {
        self.check_components(&p.components)?;
        let (k, v, kp) = (self.n_components, self.n_features, self.padded_k());
        let eta = self.topic_word_prior;
        // Per topic: E[log β] row and its part of the bound.
        let rows: Vec<(Vec<f64>, f64)> = p
            .components
            .par_chunks(v)
            .map(|lam| {
                let total: f64 = lam.iter().sum();
                let psi_total = digamma(total);
                let mut bound = ln_gamma(v as f64 * eta) - ln_gamma(total);
                let e_log: Vec<f64> = lam
                    .iter()
                    .map(|&l| {
                        let e = digamma(l) - psi_total;
                        bound += (eta - l) * e + ln_gamma(l) - ln_gamma(eta);
                        e
                    })
                    .collect();
                (e_log, bound)
            })
            .collect();
        let topic_bound = rows.iter().map(|r| r.1).sum();
        let mut exp_beta = vec![0.0; v * kp];
        exp_beta
            .par_chunks_mut(kp)
            .enumerate()
            .for_each(|(w, out)| {
                for (c, o) in out[..k].iter_mut().enumerate() {
                    *o = rows[c].0[w].exp();
                }
            });
        Ok(LdaPrepared {
            model: *self,
            exp_beta,
            topic_bound,
        })
    }

    /// λ ← η + S (scikit-learn's batch update).
    fn m_step(&self, s: &LdaStats) -> Result<LdaParams> {
        let (k, v, kp) = (self.n_components, self.n_features, self.padded_k());
        let eta = self.topic_word_prior;
        let mut components = vec![0.0; k * v];
        components
            .par_chunks_mut(v)
            .enumerate()
            .for_each(|(c, row)| {
                for (w, x) in row.iter_mut().enumerate() {
                    *x = eta + s.word_topic[w * kp + c];
                }
            });
        Ok(LdaParams { components })
    }

    fn n_parameters(&self) -> usize {
        self.n_components * self.n_features
    }

    fn numerical_advice(&self) -> &'static str {
        "check that the corpus has words (a matrix of all zeros has no perplexity) and that the priors are not extreme"
    }

    /// With `tol > 0`, scikit-learn's perplexity rule (`evaluate_every=1`, `perp_tol=tol`):
    /// converged when the perplexity changed by less than `tol` (here the perplexities of
    /// successive E-steps, i.e. of the λ before each M-step). `tol = 0` never converges.
    fn converged(&self, step: &Step<'_, Self>, tol: f64) -> (bool, f64) {
        let perp = (-step.lower_bound).exp();
        let prev = (-step.previous_lower_bound).exp();
        let change = (perp - prev).abs();
        (tol > 0.0 && change < tol, change)
    }
}

/// How the topic-word parameters start.
#[derive(Debug, Clone, PartialEq)]
pub enum LdaInit {
    /// scikit-learn's random init: every λ_kw drawn from Gamma(shape 100, scale 0.01), from the
    /// seeded generator (ChaCha8, so not NumPy's stream: the same seed gives other numbers than
    /// scikit-learn's `random_state`).
    Random,
    /// Explicit λ `[K][V]` row-major (warm start).
    Components(Vec<f64>),
}

/// The LDA builder: `LatentDirichletAllocation::params(k)` with scikit-learn's defaults
/// (α = η = 1/K, 10 iterations, random init), then `.fit(&x)`.
#[derive(Debug, Clone)]
pub struct LatentDirichletAllocation {
    n_components: usize,
    doc_topic_prior: Option<f64>,
    topic_word_prior: Option<f64>,
    max_iter: usize,
    tol: f64,
    seed: u64,
    backend: Backend,
    init: LdaInit,
}

impl LatentDirichletAllocation {
    /// K topics, scikit-learn's defaults: α = η = 1/K, `max_iter` 10, no convergence test
    /// (`tol` 0), random init, seed 0, [`Backend::Auto`].
    pub fn params(n_components: usize) -> Self {
        Self {
            n_components,
            doc_topic_prior: None,
            topic_word_prior: None,
            max_iter: 10,
            tol: 0.0,
            seed: 0,
            backend: Backend::Auto,
            init: LdaInit::Random,
        }
    }
    /// α.
    pub fn doc_topic_prior(mut self, a: f64) -> Self {
        self.doc_topic_prior = Some(a);
        self
    }
    /// η.
    pub fn topic_word_prior(mut self, b: f64) -> Self {
        self.topic_word_prior = Some(b);
        self
    }
    /// EM iterations (with `tol` 0: exactly this many).
    pub fn max_iter(mut self, m: usize) -> Self {
        self.max_iter = m;
        self
    }
    /// The perplexity change below which the fit stops (0: never; see [`LdaModel::converged`]).
    pub fn tol(mut self, t: f64) -> Self {
        self.tol = t;
        self
    }
    /// Seed of the random init.
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }
    /// Where the E-steps run.
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }
    /// The starting λ.
    pub fn init(mut self, init: LdaInit) -> Self {
        self.init = init;
        self
    }

    /// The model these settings fit on data of `n_features` terms (priors resolved).
    pub fn model(&self, n_features: usize) -> Result<LdaModel> {
        let k = self.n_components;
        let model = LdaModel {
            n_components: k,
            n_features,
            doc_topic_prior: self.doc_topic_prior.unwrap_or(1.0 / k.max(1) as f64),
            topic_word_prior: self.topic_word_prior.unwrap_or(1.0 / k.max(1) as f64),
        };
        model.validate()?;
        Ok(model)
    }

    /// Fits λ to the documents `x`.
    pub fn fit(&self, x: &CountMatrix) -> Result<FittedLda> {
        self.fit_with_progress(x, &mut |_| Control::Continue(()))
    }

    /// [`fit`](Self::fit), reporting every iteration to `progress` (which may stop the fit).
    pub fn fit_with_progress(
        &self,
        x: &CountMatrix,
        progress: &mut dyn FnMut(&Progress) -> Control,
    ) -> Result<FittedLda> {
        let model = self.model(x.n_cols())?;
        let rule = StopRule {
            tol: self.tol,
            max_iter: self.max_iter,
        };
        rule.validate()?;
        let components = match &self.init {
            LdaInit::Components(c) => {
                model.check_components(c)?;
                c.clone()
            }
            LdaInit::Random => random_components(&model, self.seed),
        };
        let mut engine = engine(self.backend, x, model)?;
        let run = run_em(
            &model,
            engine.as_mut() as &mut dyn EStep<LdaModel>,
            LdaParams { components },
            rule,
            0,
            progress,
        )?;
        let words = run.last.1.n_words;
        Ok(FittedLda {
            model,
            components: run.params.components,
            n_iter: run.n_iter,
            bound_trace: run.lower_bound_trace.iter().map(|lb| lb * words).collect(),
            report: Some(engine.report()),
            backend: self.backend,
        })
    }
}

/// scikit-learn's random init: λ_kw ~ Gamma(100, 0.01), seeded.
pub fn random_components(model: &LdaModel, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let gamma = Gamma::new(100.0, 0.01).expect("shape and scale are positive");
    (0..model.n_components * model.n_features)
        .map(|_| gamma.sample(&mut rng))
        .collect()
}

/// An LDA E-step engine: the statistics of all documents ([`EStep`]) and their γ.
pub trait LdaEngine: EStep<LdaModel> {
    /// γ of every document `[N, K]` under `p` (scikit-learn's `_unnormalized_transform`).
    fn doc_topic(&mut self, p: &LdaPrepared) -> Result<Array2<f64>>;
}

/// The E-step engine of `backend` over `x`, after checking `x` has the model's vocabulary, by the
/// crate's one rule ([`choose`]: `Gpu` runs on a GPU adapter or fails; `Auto` says what it chose
/// and why; corpora under [`crate::device::AUTO_MIN_GPU_VALUES`] stored entries × topics run on
/// the CPU without probing an adapter).
pub fn engine<'a>(
    backend: Backend,
    x: &'a CountMatrix,
    model: LdaModel,
) -> Result<Box<dyn LdaEngine + 'a>> {
    model.validate()?;
    if x.n_cols() != model.n_features {
        return Err(Error::DimensionMismatch {
            expected: model.n_features,
            got: x.n_cols(),
        });
    }
    choose::<dyn LdaEngine + 'a>(
        backend,
        x.nnz().saturating_mul(model.n_components),
        |reason| Box::new(CpuLdaEngine::new(x, reason)),
        |ctx, reason| {
            #[cfg(feature = "gpu")]
            {
                Ok(Box::new(gpu::GpuLdaEngine::new(ctx, x, &model, reason)?))
            }
            #[cfg(not(feature = "gpu"))]
            {
                let _ = reason;
                match ctx {}
            }
        },
    )
}

/// A fitted LDA model: λ and the priors, how the fit went.
#[derive(Debug, Clone)]
pub struct FittedLda {
    model: LdaModel,
    components: Vec<f64>,
    n_iter: usize,
    bound_trace: Vec<f64>,
    report: Option<BackendReport>,
    backend: Backend,
}

/// What [`FittedLda::score`] returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LdaScore {
    /// scikit-learn's `score` (approximate bound).
    pub score: f64,
    /// scikit-learn's `perplexity`.
    pub perplexity: f64,
    /// Σ cnt.
    pub n_words: f64,
    /// Documents.
    pub n_docs: usize,
}

impl FittedLda {
    /// A model from λ `[K][V]` row-major and the priors (checked).
    pub fn from_components(
        n_components: usize,
        n_features: usize,
        doc_topic_prior: f64,
        topic_word_prior: f64,
        components: Vec<f64>,
    ) -> Result<Self> {
        let model = LdaModel {
            n_components,
            n_features,
            doc_topic_prior,
            topic_word_prior,
        };
        model.validate()?;
        model.check_components(&components)?;
        Ok(Self {
            model,
            components,
            n_iter: 0,
            bound_trace: Vec::new(),
            report: None,
            backend: Backend::Auto,
        })
    }
    /// The same model, computing on `backend`.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
    /// The model (K, V, priors).
    pub fn model(&self) -> &LdaModel {
        &self.model
    }
    /// K.
    pub fn n_components(&self) -> usize {
        self.model.n_components
    }
    /// V.
    pub fn n_features(&self) -> usize {
        self.model.n_features
    }
    /// λ `[K][V]` row-major (scikit-learn's `components_`).
    pub fn components(&self) -> &[f64] {
        &self.components
    }
    /// λ as an `[K, V]` array.
    pub fn components_array(&self) -> Array2<f64> {
        Array2::from_shape_vec(
            (self.model.n_components, self.model.n_features),
            self.components.clone(),
        )
        .expect("K·V values")
    }
    /// Iterations the fit ran.
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }
    /// The bound (`score`) of the training data under the λ of each iteration's E-step.
    pub fn bound_trace(&self) -> &[f64] {
        &self.bound_trace
    }
    /// What ran the fit.
    pub fn report(&self) -> Option<&BackendReport> {
        self.report.as_ref()
    }
    fn prepared(&self) -> Result<LdaPrepared> {
        self.model.prepare(&LdaParams {
            components: self.components.clone(),
        })
    }
    fn check_data(&self, x: &CountMatrix) -> Result<()> {
        if x.n_cols() != self.model.n_features {
            return Err(Error::DimensionMismatch {
                expected: self.model.n_features,
                got: x.n_cols(),
            });
        }
        Ok(())
    }
    /// scikit-learn's `score` and `perplexity` of `x`, and what ran them.
    pub fn score(&self, x: &CountMatrix) -> Result<(LdaScore, BackendReport)> {
        let mut engine = engine(self.backend, x, self.model)?;
        let stats = engine.e_step(&self.prepared()?)?;
        let s = LdaScore {
            score: stats.score(),
            perplexity: stats.perplexity(),
            n_words: stats.n_words,
            n_docs: x.n_rows(),
        };
        Ok((s, engine.report()))
    }
    /// γ of every document `[N, K]` (scikit-learn's `_unnormalized_transform`).
    pub fn unnormalized_transform(&self, x: &CountMatrix) -> Result<Array2<f64>> {
        Ok(self.unnormalized_transform_with_report(x)?.0)
    }
    /// [`unnormalized_transform`](Self::unnormalized_transform) and what ran it.
    pub fn unnormalized_transform_with_report(
        &self,
        x: &CountMatrix,
    ) -> Result<(Array2<f64>, BackendReport)> {
        self.check_data(x)?;
        let mut engine = engine(self.backend, x, self.model)?;
        let g = engine.doc_topic(&self.prepared()?)?;
        Ok((g, engine.report()))
    }
    /// The normalized document-topic distribution `[N, K]` (scikit-learn's `transform`).
    pub fn transform(&self, x: &CountMatrix) -> Result<Array2<f64>> {
        Ok(self.transform_with_report(x)?.0)
    }
    /// [`transform`](Self::transform) and what ran it.
    pub fn transform_with_report(&self, x: &CountMatrix) -> Result<(Array2<f64>, BackendReport)> {
        let (mut g, report) = self.unnormalized_transform_with_report(x)?;
        for mut row in g.rows_mut() {
            let s: f64 = row.sum();
            row /= s;
        }
        Ok((g, report))
    }
    /// The most likely topic of every document (the argmax of γ; ties: the lowest index).
    pub fn predict(&self, x: &CountMatrix) -> Result<Vec<usize>> {
        Ok(self.predict_with_report(x)?.0)
    }
    /// [`predict`](Self::predict) and what ran it.
    pub fn predict_with_report(&self, x: &CountMatrix) -> Result<(Vec<usize>, BackendReport)> {
        let (g, report) = self.unnormalized_transform_with_report(x)?;
        let labels = g
            .rows()
            .into_iter()
            .map(|r| {
                let mut best = 0;
                for (c, &v) in r.iter().enumerate() {
                    if v > r[best] {
                        best = c;
                    }
                }
                best
            })
            .collect();
        Ok((labels, report))
    }
    /// The `n` terms of largest λ in topic `topic`, largest first (ties: the lower index).
    pub fn top_terms(&self, topic: usize, n: usize) -> Vec<usize> {
        let v = self.model.n_features;
        let row = &self.components[topic * v..(topic + 1) * v];
        let mut idx: Vec<usize> = (0..v).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        idx.truncate(n);
        idx
    }
    /// The model file (JSON, one line).
    pub fn to_json(&self) -> String {
        file::write(self)
    }
    /// Reads a model file written by [`to_json`](Self::to_json) (or by hand: `format` and
    /// `version` may be left out).
    pub fn from_json(text: &str) -> Result<Self> {
        file::read(text)
    }
    /// Reads a model file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            Error::BadModel(m) => Error::bad_file(path, m),
            other => other,
        })
    }
}
