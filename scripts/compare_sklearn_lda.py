#!/usr/bin/env python3
"""Side-by-side timing of LDA batch EM iterations: emgpu (CPU backend) vs scikit-learn
(LatentDirichletAllocation(learning_method="batch", n_jobs=-1)), on the same synthetic corpus and
the same initial lambda (issue 14's benchmark).

    python3 scripts/compare_sklearn_lda.py [--docs 200000] [--vocab 20000] [--k 50] [--length 100]
                                           [--sk-iters 1] [--iters 3]

emgpu writes the corpus (`emgpu bench --model lda --write-data DIR`: CSR arrays and init.json);
scikit-learn runs `_em_step(X, total_samples=N, batch_update=True)` --sk-iters times from that
lambda (its own E-step: gamma started from random gamma(100, 0.01), as its fit does); emgpu
`bench --model lda` runs --iters iterations (gamma from ones, the contract). The ratio is
scikit-learn's median seconds per iteration over emgpu's. The thread pools are printed
(threadpoolctl); run it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.decomposition import LatentDirichletAllocation
from sklearn.decomposition._online_lda_fast import _dirichlet_expectation_2d
from threadpoolctl import threadpool_info

ROOT = Path(__file__).resolve().parent.parent
EMGPU = ROOT / "target/release/emgpu"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--vocab", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--length", type=float, default=100.0)
    ap.add_argument("--sk-iters", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, cpus {os.cpu_count()}")
    print("threadpools:", [(p["internal_api"], p["num_threads"]) for p in threadpool_info()])
    common = ["--model", "lda", "--docs", str(a.docs), "--vocab", str(a.vocab), "--k", str(a.k),
              "--doc-length", str(a.length)]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([str(EMGPU), "bench", *common, "--write-data", d], check=True)
        n, v = np.load(f"{d}/shape.npy")
        x = sp.csr_matrix((np.load(f"{d}/data.npy"), np.load(f"{d}/indices.npy"),
                           np.load(f"{d}/indptr.npy")), shape=(n, v))
        init = json.load(open(f"{d}/init.json"))
        lam = np.array(init["components"])
    lda = LatentDirichletAllocation(n_components=a.k, doc_topic_prior=init["doc_topic_prior"],
                                    topic_word_prior=init["topic_word_prior"],
                                    learning_method="batch", n_jobs=-1, random_state=0)
    lda._init_latent_vars(v)
    lda.components_ = lam
    lda.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(lam))
    sk = []
    from joblib import Parallel
    with Parallel(n_jobs=-1) as parallel:
        for i in range(a.sk_iters):
            t = time.perf_counter()
            lda._em_step(x, total_samples=n, batch_update=True, parallel=parallel)
            sk.append(time.perf_counter() - t)
            print(f"scikit-learn: iteration {i + 1}: {sk[-1]:.2f} s", flush=True)
    out = subprocess.run([str(EMGPU), "bench", *common, "--iters", str(a.iters), "--backend", "cpu",
                          "--json", "--quiet"], check=True, capture_output=True, text=True)
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    em = rep["results"][0]["iteration_seconds"]
    print(f"emgpu cpu: iterations {', '.join(f'{t:.2f}' for t in em)} s")
    sk_med, em_med = float(np.median(sk)), float(np.median(em))
    print(f"shape: {n} docs x {v} terms, nnz {x.nnz}, K {a.k}")
    print(f"scikit-learn {sk_med:.2f} s/iteration, emgpu {em_med:.2f} s/iteration: {sk_med / em_med:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
