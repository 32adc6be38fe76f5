"""Held-out perplexity of a topic posterior, by scikit-learn's own code (shared by the LDA benchmarks).

Both methods of a benchmark are scored by this one function: the topics' posterior
``Dirichlet(lambda)`` is put into a scikit-learn ``LatentDirichletAllocation`` estimator
(``components_`` and ``exp_dirichlet_component_``), whose ``perplexity`` folds the held-out
documents in with the topics fixed.
"""

from __future__ import annotations

import numpy as np
from scipy.special import psi


def sklearn_perplexity(estimator, topic_concentration: np.ndarray, counts: np.ndarray) -> float:
    """scikit-learn's held-out perplexity of ``counts`` (docs x words) with topics
    ``Dirichlet(topic_concentration)`` (topics x words)."""
    estimator.components_ = np.array(topic_concentration, dtype=np.float64)
    estimator.exp_dirichlet_component_ = np.exp(psi(estimator.components_) - psi(estimator.components_.sum(1, keepdims=True)))
    return float(estimator.perplexity(counts))
