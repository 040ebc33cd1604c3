//! Seeded synthetic corpora drawn from an LDA with known topics (tests, benchmarks, `emgpu
//! bench --model lda`): topics β_k ~ Dirichlet(η) over V terms, per document θ_d ~ Dirichlet(α)
//! and a length L_d ~ Poisson(mean length) (at least 1), each word's topic drawn from θ_d and its
//! term from β_topic. Documents are drawn in blocks of 1024, each from its own generator seeded
//! by (seed, block), in parallel: the corpus depends on the seed only.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, Poisson};
use rayon::prelude::*;

use crate::data::sparse::CountMatrix;
use crate::error::{Error, Result};

/// One block of documents: θ rows, row lengths, term indices, counts.
type Block = (Vec<f64>, Vec<usize>, Vec<u32>, Vec<f64>);

/// A corpus and the model it was drawn from.
#[derive(Debug, Clone)]
pub struct SyntheticCorpus {
    /// Document-term counts `[N, V]`.
    pub x: CountMatrix,
    /// The topics' term distributions β `[K][V]` row-major (each row sums to 1).
    pub topics: Vec<f64>,
    /// The documents' topic proportions θ `[N][K]` row-major.
    pub theta: Vec<f64>,
}

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusSpec {
    /// N.
    pub n_docs: usize,
    /// V.
    pub n_terms: usize,
    /// K.
    pub n_topics: usize,
    /// Mean words per document.
    pub mean_length: f64,
    /// α of θ.
    pub alpha: f64,
    /// η of β.
    pub eta: f64,
    /// Seed.
    pub seed: u64,
}

fn dirichlet(rng: &mut ChaCha8Rng, g: &Gamma<f64>, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|_| g.sample(rng).max(1e-300)).collect();
    let s: f64 = v.iter().sum();
    v.iter_mut().for_each(|x| *x /= s);
    v
}

/// Draws a corpus (see the module docs).
pub fn corpus(spec: &CorpusSpec) -> Result<SyntheticCorpus> {
    let (n, v, k) = (spec.n_docs, spec.n_terms, spec.n_topics);
    let positive = |x: f64| x > 0.0;
    if v == 0
        || k == 0
        || ![spec.mean_length, spec.alpha, spec.eta]
            .into_iter()
            .all(positive)
    {
        return Err(Error::param(
            "a synthetic corpus needs V ≥ 1, K ≥ 1 and a mean length, α and η > 0",
        ));
    }
    let bad = |e: &dyn std::fmt::Display| Error::param(format!("synthetic corpus: {e}"));
    let g_eta = Gamma::new(spec.eta, 1.0).map_err(|e| bad(&e))?;
    let g_alpha = Gamma::new(spec.alpha, 1.0).map_err(|e| bad(&e))?;
    let poisson = Poisson::new(spec.mean_length).map_err(|e| bad(&e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let topics: Vec<f64> = (0..k)
        .flat_map(|_| dirichlet(&mut rng, &g_eta, v))
        .collect();
    // Cumulative distributions for drawing terms by bisection.
    let cdf: Vec<Vec<f64>> = topics
        .chunks(v)
        .map(|row| {
            let mut acc = 0.0;
            row.iter()
                .map(|p| {
                    acc += p;
                    acc
                })
                .collect()
        })
        .collect();
    const BLOCK: usize = 1024;
    let blocks: Vec<Block> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let mut rng = ChaCha8Rng::seed_from_u64(
                spec.seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(b as u64 + 1)),
            );
            let docs = (b * BLOCK)..((b + 1) * BLOCK).min(n);
            let (mut theta, mut lens, mut idx, mut val) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut words: Vec<u32> = Vec::new();
            for _ in docs {
                let th = dirichlet(&mut rng, &g_alpha, k);
                let len = (poisson.sample(&mut rng) as usize).max(1);
                words.clear();
                for _ in 0..len {
                    let u: f64 = rng.random();
                    let mut acc = 0.0;
                    let mut z = k - 1;
                    for (c, p) in th.iter().enumerate() {
                        acc += p;
                        if u < acc {
                            z = c;
                            break;
                        }
                    }
                    let cz = &cdf[z];
                    let u: f64 = rng.random::<f64>() * cz[v - 1];
                    let w = cz.partition_point(|&c| c <= u).min(v - 1);
                    words.push(w as u32);
                }
                words.sort_unstable();
                let before = idx.len();
                for &w in &words {
                    if idx.len() > before && *idx.last().unwrap_or(&u32::MAX) == w {
                        *val.last_mut().expect("an entry was pushed") += 1.0;
                    } else {
                        idx.push(w);
                        val.push(1.0);
                    }
                }
                lens.push(idx.len() - before);
                theta.extend(th);
            }
            (theta, lens, idx, val)
        })
        .collect();
    let mut theta = Vec::with_capacity(n * k);
    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0);
    let (mut indices, mut data) = (Vec::new(), Vec::new());
    for (th, lens, idx, val) in blocks {
        theta.extend(th);
        for l in lens {
            indptr.push(indptr.last().copied().unwrap_or(0) + l);
        }
        indices.extend(idx);
        data.extend(val);
    }
    let x = CountMatrix::from_csr(n, v, indptr, indices, data)?;
    Ok(SyntheticCorpus { x, topics, theta })
}
