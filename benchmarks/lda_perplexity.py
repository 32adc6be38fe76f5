"""Held-out perplexity of a topic posterior, by scikit-learn's own code, the time a
perplexity curve reaches a target, and a fresh JAX compilation cache (shared by the LDA
benchmarks).

Both methods of a benchmark are scored by this one function: the topics' posterior
``Dirichlet(lambda)`` is put into a scikit-learn ``LatentDirichletAllocation`` estimator
(``components_`` and ``exp_dirichlet_component_``), whose ``perplexity`` folds the held-out
documents in with the topics fixed.
"""

from __future__ import annotations

import tempfile
from typing import Iterable, Optional

import numpy as np
from scipy.special import psi


def sklearn_perplexity(estimator, topic_concentration: np.ndarray, counts: np.ndarray) -> float:
    """scikit-learn's held-out perplexity of ``counts`` (docs x words) with topics
    ``Dirichlet(topic_concentration)`` (topics x words)."""
    estimator.components_ = np.array(topic_concentration, dtype=np.float64)
    estimator.exp_dirichlet_component_ = np.exp(psi(estimator.components_) - psi(estimator.components_.sum(1, keepdims=True)))
    return float(estimator.perplexity(counts))


def time_to(curve: Iterable, target: float) -> Optional[float]:
    """First cumulative time at which the perplexity is <= ``target`` (``None`` if never);
    ``curve``: (cumulative seconds, perplexity) pairs."""
    return next((t for t, p in curve if p <= target), None)


def fresh_compilation_cache() -> str:
    """Turn JAX's persistent compilation cache on, in a new (empty) temporary directory:
    programs compiled from now on are written there, and compiling one of them again (a
    later fit in this process) reads it. Returns the directory."""
    import jax

    directory = tempfile.mkdtemp(prefix="ppl_vi_bench_jax_cache_")
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return directory
