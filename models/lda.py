"""Latent Dirichlet allocation (Blei, Ng & Jordan 2003) on a flat token list.

Model::

    topics_k ~ Dirichlet(eta * 1_V)            k = 1..K      (plate "topic_plate")
    doc_topics_d ~ Dirichlet(alpha * 1_K)      d = 1..D      (plate "docs")
    assignment_t ~ Categorical(doc_topics[doc_ids_t])        (plate "tokens", enumerated)
    words_t ~ Categorical(topics[assignment_t])              (observed)

The same program takes a corpus as distinct (document, word) pairs with their
multiplicities: ``counts`` scales each pair's two sites (``handlers.scale``), so a pair
seen ``c`` times contributes what its ``c`` tokens do (they share one posterior factor
at the optimum) while the program's size grows with the distinct pairs, as
scikit-learn's document-word matrix does. :func:`pair_counts` (``extras["pair_counts"]``)
turns a token corpus into that form.

The topic plate is called ``"topic_plate"``, not ``"topics"``: Pyro records a plate as a
trace site of its own name, which would collide with the sample site ``"topics"``.
:func:`token_counts` gives the document-by-word count matrix that scikit-learn's
``LatentDirichletAllocation`` takes, and :func:`sklearn_priors` (``extras["sklearn_priors"]``)
its arguments for the same model (``n_components = num_topics``, ``doc_topic_prior = alpha``,
``topic_word_prior = eta``).

Topics are exchangeable, so chains and methods may label them differently:
:func:`relabel` (``extras["relabel"]``) aligns every draw's topics to the first
chain's mean topic-word matrix (Hungarian matching on L1 distance), then orders
topics by the mean word index of that template, a canonical order shared by all
sets of draws of the same posterior.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from pyroapi import distributions as dist
from pyroapi import handlers, pyro

from models import ZooModel, register
from models._checks import require_positive
from ppl_vi.core._xp import namespace


def lda(words, doc_ids, num_docs: int, num_topics: int, vocab_size: int, alpha: float, eta: float, counts=None) -> None:
    """``words``, ``doc_ids``: (num_tokens,) integer word and document indices;
    ``counts``: optional (num_tokens,) multiplicity of each entry (then the entries are
    distinct (document, word) pairs, see :func:`pair_counts`)."""
    xp = namespace(words)
    with pyro.plate("topic_plate", num_topics):
        topics = pyro.sample("topics", dist.Dirichlet(xp.full((vocab_size,), float(eta))))
    with pyro.plate("docs", num_docs):
        doc_topics = pyro.sample("doc_topics", dist.Dirichlet(xp.full((num_topics,), float(alpha))))
    multiplicity = contextlib.nullcontext() if counts is None else handlers.scale(scale=counts)
    with pyro.plate("tokens", words.shape[0]), multiplicity:
        assignment = pyro.sample("assignment", dist.Categorical(doc_topics[doc_ids]), infer={"enumerate": "parallel"})
        pyro.sample("words", dist.Categorical(topics[assignment]), obs=words)


def generate_data(
    seed: int,
    num_docs: int = 20,
    num_topics: int = 3,
    vocab_size: int = 30,
    doc_length: int = 40,
    alpha: float = 0.5,
    eta: float = 0.1,
) -> dict:
    """A corpus from LDA's generative process, ``doc_length`` tokens per document."""
    require_positive(
        "lda",
        num_docs=num_docs,
        num_topics=num_topics,
        vocab_size=vocab_size,
        doc_length=doc_length,
        alpha=alpha,
        eta=eta,
    )
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(vocab_size, eta), size=num_topics)
    doc_topics = rng.dirichlet(np.full(num_topics, alpha), size=num_docs)
    doc_ids = np.repeat(np.arange(num_docs), doc_length)
    cumulative = np.cumsum(doc_topics[doc_ids], axis=-1)
    assignment = np.minimum((rng.random((doc_ids.shape[0], 1)) > cumulative).sum(-1), num_topics - 1)
    words = np.empty_like(doc_ids)
    for topic in range(num_topics):
        chosen = assignment == topic
        words[chosen] = rng.choice(vocab_size, size=chosen.sum(), p=topics[topic])
    return {
        "words": words.astype(np.int64),
        "doc_ids": doc_ids.astype(np.int64),
        "num_docs": int(num_docs),
        "num_topics": int(num_topics),
        "vocab_size": int(vocab_size),
        "alpha": float(alpha),
        "eta": float(eta),
    }


def token_counts(data: Mapping[str, Any]) -> np.ndarray:
    """Document-by-word counts, shape (num_docs, vocab_size), from the flat tokens (or
    pairs with their ``counts``)."""
    num_docs, vocab_size = data["num_docs"], data["vocab_size"]
    flat = np.asarray(data["doc_ids"]) * vocab_size + np.asarray(data["words"])
    counts = data.get("counts")
    weights = None if counts is None else np.asarray(counts)
    matrix = np.bincount(flat, weights=weights, minlength=num_docs * vocab_size).reshape(num_docs, vocab_size)
    return matrix if weights is None else np.rint(matrix).astype(np.int64)


def pair_counts(data: Mapping[str, Any]) -> dict:
    """The corpus as distinct (document, word) pairs, for :func:`lda`'s ``counts``.

    Returns ``data`` with ``words`` and ``doc_ids`` of shape (num_pairs,) (sorted by
    document, then word) and ``counts`` (num_pairs,) float, each pair's number of tokens.
    """
    matrix = token_counts(data)
    doc_ids, words = np.nonzero(matrix)
    return {**data, "words": words.astype(np.int64), "doc_ids": doc_ids.astype(np.int64), "counts": matrix[doc_ids, words].astype(np.float64)}


def relabel(draws: dict) -> dict:
    """Draws with topics aligned across draws and chains and put in a canonical order.

    ``draws``: site -> ``(chain, draw, *site_shape)`` NumPy arrays; ``topics`` is
    ``(C, S, K, V)``, ``doc_topics`` ``(C, S, D, K)``. Each draw's topics are matched to
    the template (the first chain's mean of ``topics``) by
    :func:`scipy.optimize.linear_sum_assignment` on L1 distance; the template's topics
    are ordered by their mean word index ``sum_v v * topics[k, v]``. ``doc_topics`` is
    permuted along its last axis consistently. Returns a new dict.
    """
    from scipy.optimize import linear_sum_assignment

    if "topics" not in draws:
        raise KeyError(f"lda relabel: needs the 'topics' draws, got sites {sorted(draws)}")
    topics = np.asarray(draws["topics"])
    if topics.ndim != 4:
        raise ValueError(f"lda relabel: 'topics' must be (chain, draw, K, V), got shape {topics.shape}")
    template = topics[0].mean(axis=0)  # (K, V)
    template = template[np.argsort(template @ np.arange(template.shape[-1]), kind="stable")]
    flat = topics.reshape(-1, *topics.shape[2:])  # (C*S, K, V)
    cost = np.abs(template[None, :, None, :] - flat[:, None, :, :]).sum(-1)  # (C*S, K_template, K_draw)
    order = np.stack([linear_sum_assignment(c)[1] for c in cost]).reshape(topics.shape[:3])  # (C, S, K)
    out = dict(draws)
    out["topics"] = np.take_along_axis(topics, order[..., None], axis=2)
    if "doc_topics" in draws:
        doc_topics = np.asarray(draws["doc_topics"])
        out["doc_topics"] = np.take_along_axis(doc_topics, order[:, :, None, :], axis=3)
    return out


def sklearn_priors(data: dict) -> dict:
    """Keyword arguments of scikit-learn's ``LatentDirichletAllocation`` for the same model
    and priors as ``data``: the number of topics and the two Dirichlet concentrations."""
    return {"n_components": int(data["num_topics"]), "doc_topic_prior": float(data["alpha"]), "topic_word_prior": float(data["eta"])}


MODEL = register(
    ZooModel(
        name="lda",
        description="Latent Dirichlet allocation on a synthetic corpus (Dirichlet-Categorical topics)",
        program=lda,
        latent_sites=("topics", "doc_topics", "assignment"),
        conjugate=True,
        reference="nuts",
        generate_data=generate_data,
        extras={"token_counts": token_counts, "pair_counts": pair_counts, "relabel": relabel, "sklearn_priors": sklearn_priors},
    )
)
