"""Benchmark: NaturalGradientSVI (NumPyro) on LDA vs scikit-learn's online LDA.

Corpus: the zoo's ``lda`` generator (default 2,000 documents x 1,000 words, 20 topics,
``--doc-length`` tokens each); the last ``--held-out`` fraction of the documents is held
out. Both methods use the same priors (``doc_topic_prior = alpha``, ``topic_word_prior =
eta``), batch size, and Robbins–Monro schedule ``rho_t = (10 + t)^-0.7``.

The program given to NGSVI is LDA with the token plate nested inside the document plate
(``words`` as a ``(doc_length, num_docs)`` array), so that a document's tokens are local
to it; the zoo's flat-token ``lda`` program has the tokens in a plate of their own, which
``local_plate`` cannot subsample (one plate only).

Held-out perplexity is computed for both by the same code, scikit-learn's
``perplexity`` (fold-in E-step of the held-out documents with the topics fixed): NGSVI's
topic posterior ``Dirichlet(lambda)`` is put into a scikit-learn estimator's
``components_``. (scikit-learn's bound includes the topics' Dirichlet KL term, which
does not shrink with the number of held-out words, so on a small held-out set its
"perplexity" can exceed the vocabulary size; it is the same number for both methods.)
NGSVI here weights the full-data plan by the minibatch mask, so each step costs local
CAVI passes over all training documents (:mod:`ppl_vi.core.ngsvi`). Printed: perplexity and cumulative training time after each epoch for
both, then the time each needs to reach the perplexity that both reach, and the ratio.
NGSVI's time excludes planning and compilation (printed separately).

Run: ``.venv/bin/python benchmarks/ngsvi_lda.py [--num-docs 2000] [--epochs 5]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def lda_docs(words, num_topics: int, vocab_size: int, alpha: float, eta: float) -> None:
    """LDA with ``words`` of shape (doc_length, num_docs), tokens nested in documents."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    length, num_docs = words.shape
    with numpyro.plate("topic_plate", num_topics):
        topics = numpyro.sample("topics", dist.Dirichlet(jnp.full((vocab_size,), eta)))
    with numpyro.plate("docs", num_docs, dim=-1):
        doc_topics = numpyro.sample("doc_topics", dist.Dirichlet(jnp.full((num_topics,), alpha)))
        with numpyro.plate("tokens", length, dim=-2):
            assignment = numpyro.sample("assignment", dist.Categorical(doc_topics), infer={"enumerate": "parallel"})
            numpyro.sample("words", dist.Categorical(topics[assignment]), obs=words)


def sklearn_perplexity(estimator, topic_concentration: np.ndarray, counts: np.ndarray) -> float:
    """scikit-learn's held-out perplexity of ``counts`` with topics ``Dirichlet(topic_concentration)``."""
    from scipy.special import psi

    estimator.components_ = topic_concentration
    estimator.exp_dirichlet_component_ = np.exp(psi(topic_concentration) - psi(topic_concentration.sum(1, keepdims=True)))
    return float(estimator.perplexity(counts))


def time_to(perplexities: list, times: list, target: float) -> float:
    """First cumulative time at which the perplexity is <= ``target``."""
    return next(t for p, t in zip(perplexities, times) if p <= target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-docs", type=int, default=2000)
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--num-topics", type=int, default=20)
    parser.add_argument("--doc-length", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--held-out", type=float, default=0.1)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    from sklearn.decomposition import LatentDirichletAllocation

    import models
    from ppl_vi.core import expfam
    from ppl_vi.core.ngsvi import epoch_batches
    from ppl_vi.numpyro import NaturalGradientSVI

    zoo = models.get("lda")
    raw = zoo.generate_data(0, num_docs=args.num_docs, vocab_size=args.vocab_size, num_topics=args.num_topics, doc_length=args.doc_length)
    counts = zoo.extras["token_counts"](raw).astype(np.float64)
    num_train = int(round(args.num_docs * (1.0 - args.held_out)))
    train, test = counts[:num_train], counts[num_train:]
    words = raw["words"].reshape(args.num_docs, args.doc_length)[:num_train].T
    priors = dict(doc_topic_prior=raw["alpha"], topic_word_prior=raw["eta"])
    print(f"corpus: {num_train} training + {args.num_docs - num_train} held-out documents, {args.vocab_size} words, "
          f"{args.num_topics} topics, {args.doc_length} tokens/document; batch {args.batch_size}")

    online = dict(n_components=args.num_topics, learning_method="online", batch_size=args.batch_size, learning_offset=10.0,
                  learning_decay=0.7, total_samples=num_train, random_state=0, **priors)
    sk_perp, sk_time = [], []
    for epochs in range(1, args.epochs + 1):
        start = time.perf_counter()
        estimator = LatentDirichletAllocation(max_iter=epochs, **online).fit(train)
        sk_time.append(time.perf_counter() - start)
        sk_perp.append(float(estimator.perplexity(test)))
        print(f"scikit-learn online  epoch {epochs}: held-out perplexity {sk_perp[-1]:9.2f}  train time {sk_time[-1]:7.2f} s")

    ngsvi = NaturalGradientSVI(lda_docs, local_plate="docs", num_data=num_train, batch_size=args.batch_size, local_tol=1e-3)
    start = time.perf_counter()
    state = ngsvi.init(jax.random.PRNGKey(0), words=jnp.asarray(words), num_topics=args.num_topics, vocab_size=args.vocab_size,
                       alpha=raw["alpha"], eta=raw["eta"])
    state = ngsvi.update(state, np.arange(args.batch_size), rho=0.0)  # compiles the step; rho = 0 leaves the globals
    jax.block_until_ready(state.natural)
    print(f"NGSVI planning + compilation: {time.perf_counter() - start:.2f} s (not counted below)")
    rng = np.random.default_rng(0)
    ng_perp, ng_time, elapsed = [], [], 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        for batch in epoch_batches(num_train, args.batch_size, rng):
            state = ngsvi.update(state, batch)
        jax.block_until_ready(state.natural)
        elapsed += time.perf_counter() - start
        ng_time.append(elapsed)
        topics = expfam.family("Dirichlet").params_from_natural(state.natural["topics"])["concentration"]
        ng_perp.append(sklearn_perplexity(estimator, np.asarray(topics), test))
        print(f"ppl_vi NGSVI         epoch {epoch}: held-out perplexity {ng_perp[-1]:9.2f}  train time {ng_time[-1]:7.2f} s")

    target = max(min(sk_perp), min(ng_perp))
    t_sk, t_ng = time_to(sk_perp, sk_time, target), time_to(ng_perp, ng_time, target)
    print(f"equal held-out perplexity {target:.2f}: scikit-learn {t_sk:.2f} s, NGSVI {t_ng:.2f} s, "
          f"NGSVI/scikit-learn time ratio {t_ng / t_sk:.2f}")


if __name__ == "__main__":
    main()
