#!/usr/bin/env python3
"""Writes crates/emgpu/tests/fixtures/lda/: scikit-learn LatentDirichletAllocation results that
emgpu's LDA must reproduce (issue 14).

Two corpora:
  - "docstrings": a small real corpus, the docstrings of NumPy's public functions (text that an
    installed package ships; no download), vectorized with
    CountVectorizer(stop_words="english", min_df=3, max_features=800); empty documents are kept
    (a row with no words is allowed: it contributes nothing to the statistics);
  - "synthetic": documents drawn (seeded) from an LDA with K=4 known topics over 150 terms;
    document 5 is emptied (no words: gamma = alpha, transform = 1/K, as scikit-learn).

For each: X.npz (scipy.sparse.save_npz, CSR, int64 counts; the tests write the dense .npy), an explicit
starting lambda init.json (numpy gamma(100, 0.01), seeded, in emgpu's model file format) and what
scikit-learn computes from it:

    lda = LatentDirichletAllocation(n_components=K, doc_topic_prior=A, topic_word_prior=B,
                                    learning_method="batch", max_doc_update_iter=100,
                                    mean_change_tol=1e-3)
    components_ = init;  10 x lda._em_step(X, total_samples=N, batch_update=True)

with `_e_step` called with random_init=False (gamma starts from ones, as `transform` does: the
contract of issue 14), giving expected.json (components after 10 iterations, score(X),
perplexity(X) of that model), theta.npy = transform(X) [N, K] and labels.npy = argmax (int64).
Also score/perplexity of the *initial* model (init_score, init_perplexity).
"""
import json
import sys
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
from sklearn.decomposition import LatentDirichletAllocation
from sklearn.decomposition._online_lda_fast import _dirichlet_expectation_2d
from sklearn.feature_extraction.text import CountVectorizer

OUT = Path(__file__).resolve().parent.parent / "crates/emgpu/tests/fixtures/lda"
N_ITER = 10


def docstring_corpus():
    docs = []
    for name in sorted(dir(np)):
        if name.startswith("_"):
            continue
        obj = getattr(np, name)
        doc = getattr(obj, "__doc__", None)
        if callable(obj) and isinstance(doc, str):
            docs.append(doc)
    docs = docs[:400]
    cv = CountVectorizer(stop_words="english", min_df=3, max_features=800)
    x = cv.fit_transform(docs).astype(np.int64).tocsr()
    return x, list(cv.get_feature_names_out())


def synthetic_corpus(rng, n=300, v=150, k=4, length=60, alpha=0.3, eta=0.05):
    topics = rng.dirichlet(np.full(v, eta), size=k)
    rows = []
    for _ in range(n):
        theta = rng.dirichlet(np.full(k, alpha))
        z = rng.choice(k, size=rng.poisson(length) + 1, p=theta)
        words = [rng.choice(v, p=topics[t]) for t in z]
        rows.append(np.bincount(words, minlength=v))
    rows[5] = np.zeros(v, dtype=np.int64)  # a document with no words (allowed)
    return sp.csr_matrix(np.array(rows, dtype=np.int64)), topics


def model_json(k, v, a, b, comp, extra=None):
    d = {"format": "emgpu-model", "version": 1, "model": "lda", "n_components": k,
         "n_features": v, "doc_topic_prior": a, "topic_word_prior": b,
         "components": comp.tolist()}
    if extra:
        d.update(extra)
    return d


def run_case(name, x, k, a, b, seed, vocab=None):
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    n, v = x.shape
    rng = np.random.RandomState(seed)
    init = rng.gamma(100.0, 0.01, (k, v))
    sp.save_npz(out / "X.npz", x)  # CSR, compressed (the default)
    (out / "init.json").write_text(json.dumps(model_json(k, v, a, b, init)))
    if vocab is not None:
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n")

    lda = LatentDirichletAllocation(n_components=k, doc_topic_prior=a, topic_word_prior=b,
                                    learning_method="batch", max_doc_update_iter=100,
                                    mean_change_tol=1e-3, max_iter=N_ITER)
    lda._init_latent_vars(v)
    lda.components_ = init.copy()
    lda.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(lda.components_))
    lda.n_features_in_ = v
    orig = lda._e_step
    # gamma from ones in the EM steps too (the contract), not random gamma(100, 0.01)
    lda._e_step = lambda X, cal_sstats, random_init, parallel=None: orig(X, cal_sstats, False, parallel)
    # fit() hands _em_step float64 data (check_array); the public methods convert themselves
    xf = x.astype(np.float64)
    init_score, init_perp = lda.score(x), lda.perplexity(x)
    for _ in range(N_ITER):
        lda._em_step(xf, total_samples=n, batch_update=True)
    theta = lda.transform(x)
    labels = np.argmax(theta, axis=1).astype(np.int64)
    np.save(out / "theta.npy", theta)
    np.save(out / "labels.npy", labels)
    expected = model_json(k, v, a, b, lda.components_, {
        "n_iter": N_ITER, "score": lda.score(x), "perplexity": lda.perplexity(x),
        "init_score": init_score, "init_perplexity": init_perp,
        "n_docs": n, "n_words": float(x.sum()), "empty_docs": int((x.sum(axis=1) == 0).sum()),
        "source": f"scripts/make_fixtures_lda.py; scikit-learn {sklearn.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, Python {sys.version.split()[0]}",
    })
    (out / "expected.json").write_text(json.dumps(expected))
    print(f"{name}: N={n} V={v} K={k} nnz={x.nnz} words={x.sum()} empty={expected['empty_docs']} "
          f"score={expected['score']:.6f} perplexity={expected['perplexity']:.4f}")


def main():
    x, vocab = docstring_corpus()
    run_case("docstrings", x, k=5, a=0.2, b=0.05, seed=1, vocab=vocab)
    rng = np.random.RandomState(7)
    xs, topics = synthetic_corpus(rng)
    run_case("synthetic", xs, k=4, a=0.3, b=0.05, seed=2)
    np.save(OUT / "synthetic" / "true_topics.npy", topics)


if __name__ == "__main__":
    main()
