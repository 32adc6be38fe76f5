"""Benchmark: derived CAVI on LDA vs scikit-learn's batch variational Bayes.

Corpus: the zoo's ``lda`` generator, 2,000 documents x 1,000 words, 20 topics
(``--doc-length`` tokens each). Same priors: ``doc_topic_prior = alpha``,
``topic_word_prior = eta``; same mean-field family, so scikit-learn's ``score`` (its
variational bound, Dirichlet normalizers kept) is on the same scale as CAVI's ELBO —
tests/conformance/test_cavi_sklearn.py shows the two coincide at a common fixed point.

Printed: per-sweep cost and time to convergence of ppl_vi CAVI (NumPyro), the time
scikit-learn needs for its default 10 and for 100 batch iterations, the bound each
reaches, and the ratios. Held-out perplexity is not measured (CAVI has no fold-in
step); the comparison is at equal training bound.

Run: ``.venv/bin/python benchmarks/cavi_lda.py [--num-docs 2000] [--doc-length 50]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-docs", type=int, default=2000)
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--num-topics", type=int, default=20)
    parser.add_argument("--doc-length", type=int, default=50)
    parser.add_argument("--tol", type=float, default=1e-6)
    args = parser.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    from sklearn.decomposition import LatentDirichletAllocation

    import models
    from ppl_vi.numpyro import CAVI

    zoo = models.get("lda")
    sizes = dict(num_docs=args.num_docs, vocab_size=args.vocab_size, num_topics=args.num_topics, doc_length=args.doc_length)
    raw = zoo.generate_data(0, **sizes)
    counts = zoo.extras["token_counts"](raw).astype(np.float64)
    data = models.to_backend(raw, "numpyro")

    cavi = CAVI(zoo.numpyro_model)
    result = cavi.run(jax.random.PRNGKey(0), **data, tol=args.tol, num_steps=1000)
    state = cavi.init(jax.random.PRNGKey(0), **data)
    update = jax.jit(cavi.update)
    state, _ = update(state)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(10):
        state, _ = update(state)
    jax.block_until_ready(state)
    per_sweep = (time.perf_counter() - start) / 10

    rows = {"ppl_vi CAVI (NumPyro)": (per_sweep, result.wall_time, float(result.elbo[-1]), result.num_steps)}
    for max_iter in (10, 100):
        sk = LatentDirichletAllocation(
            n_components=args.num_topics,
            doc_topic_prior=raw["alpha"],
            topic_word_prior=raw["eta"],
            learning_method="batch",
            max_iter=max_iter,
            random_state=0,
        )
        start = time.perf_counter()
        sk.fit(counts)
        elapsed = time.perf_counter() - start
        rows[f"scikit-learn batch ({max_iter} iter)"] = (elapsed / max_iter, elapsed, float(sk.score(counts)), max_iter)

    print(f"LDA, {args.num_docs} docs x {args.vocab_size} words, {args.num_topics} topics, "
          f"{len(raw['words'])} tokens (timings on a shared machine: noisy)")
    print(f"{'method':34s} {'s/sweep':>10s} {'total s':>9s} {'ELBO/bound':>14s} {'sweeps':>7s}")
    for name, (per, total, value, steps) in rows.items():
        print(f"{name:34s} {per:10.4f} {total:9.2f} {value:14.1f} {steps:7d}")
    ours = rows["ppl_vi CAVI (NumPyro)"]
    for name in list(rows)[1:]:
        print(f"vs {name}: per sweep {rows[name][0] / ours[0]:.1f}x, total time {rows[name][1] / ours[1]:.1f}x, "
              f"ELBO difference (CAVI - scikit-learn) {ours[2] - rows[name][2]:+.1f} nats")


if __name__ == "__main__":
    main()
