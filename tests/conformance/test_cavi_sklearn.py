"""CAVI on the Bayesian GMM and on LDA against scikit-learn's variational Bayes.

Prior mapping, GMM (scikit-learn ``BayesianGaussianMixture(covariance_type="full",
weight_concentration_prior_type="dirichlet_distribution")``): ``weight_concentration_prior
= alpha0``, ``mean_prior = m0``, ``mean_precision_prior = beta0``,
``degrees_of_freedom_prior = nu0``, ``covariance_prior = inv(W0)``.

scikit-learn's q keeps each component's mean and precision together (a Normal-Wishart
factor, PRML §10.2); CAVI derived from the program factorizes over *sites*,
``q(locs) q(precisions)``. The means, weights and responsibilities have the same fixed
point; the Wishart degrees of freedom differ by exactly one (the ``locs`` prior adds
``1/2 log|Lambda_k|`` to ``q(precisions)``), and ``E[Lambda_k]`` by ``O(1/N_k)``.

LDA (scikit-learn ``LatentDirichletAllocation(learning_method="batch")``):
``doc_topic_prior = alpha``, ``topic_word_prior = eta``; the same mean-field family,
so the fixed points coincide: started at CAVI's optimum, scikit-learn's EM step leaves
the topic-word posterior unchanged and its bound equals CAVI's ELBO.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import LatentDirichletAllocation
from sklearn.decomposition._lda import _dirichlet_expectation_2d
from sklearn.mixture import BayesianGaussianMixture

import models
from tests.conformance.test_cavi_helpers import assert_monotone, fit, np_params


# The NumPyro variants compile the model's sweep (~40 s each on the shared 2-core
# machine): they run with the slow tests; the planner and sweep are the same core code
# as the Pyro variants, and the backends' fixed points agree (test_cavi_exact).
COMPILED = [pytest.param("numpyro", marks=pytest.mark.slow), "pyro"]


@pytest.mark.parametrize("backend", COMPILED)
def test_gmm_agrees_with_scikit_learn(backend):
    result, raw, _ = fit(backend, "bayesian_gmm", num_data=400, tol=1e-12)
    assert result.converged
    assert_monotone(result.elbo)
    sk = BayesianGaussianMixture(
        **models.get("bayesian_gmm").extras["sklearn_priors"](raw),
        max_iter=1000,
        tol=1e-12,
        random_state=0,
    ).fit(raw["x"])
    locs = np_params(result.posterior["locs"])["loc"]
    perm = [int(np.argmin(((sk.means_ - mu) ** 2).sum(-1))) for mu in locs]
    assert sorted(perm) == list(range(raw["num_components"]))
    np.testing.assert_allclose(locs, sk.means_[perm], rtol=1e-6, atol=1e-8)
    weights = np_params(result.posterior["weights"])["concentration"]
    np.testing.assert_allclose(weights / weights.sum(), sk.weights_[perm], rtol=1e-6)
    resp = np_params(result.posterior["assignment"])["probs"]
    np.testing.assert_allclose(resp, sk.predict_proba(raw["x"])[:, perm], atol=1e-6)
    wishart = np_params(result.posterior["precisions"])
    np.testing.assert_allclose(wishart["df"], sk.degrees_of_freedom_[perm] + 1.0, rtol=1e-6)
    expected_precision = wishart["df"][:, None, None] * wishart["scale_matrix"]
    counts = resp.sum(0)
    np.testing.assert_allclose(expected_precision, np.linalg.inv(sk.covariances_[perm]), rtol=5.0 / counts.min())


def _sklearn_lda(raw: dict) -> LatentDirichletAllocation:
    return LatentDirichletAllocation(
        **models.get("lda").extras["sklearn_priors"](raw),
        learning_method="batch",
        max_doc_update_iter=5000,
        mean_change_tol=1e-13,
        random_state=0,
    )


@pytest.mark.parametrize("backend", COMPILED)
def test_lda_fixed_point_is_scikit_learns(backend):
    result, raw, _ = fit(backend, "lda", num_restarts=2, tol=1e-13)
    assert_monotone(result.elbo)
    counts = models.get("lda").extras["token_counts"](raw).astype(np.float64)
    topics = np.ascontiguousarray(np_params(result.posterior["topics"])["concentration"], dtype=np.float64)
    sk = _sklearn_lda(raw)
    sk._init_latent_vars(raw["vocab_size"])
    sk.components_ = topics.copy()
    sk.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(topics))
    sk._em_step(counts, total_samples=raw["num_docs"], batch_update=True)
    np.testing.assert_allclose(sk.components_, topics, rtol=1e-5, atol=1e-6)
    doc_topics = np_params(result.posterior["doc_topics"])["concentration"]
    np.testing.assert_allclose(sk.transform(counts), doc_topics / doc_topics.sum(-1, keepdims=True), atol=1e-5)
    # scikit-learn's bound keeps the Dirichlet normalizers: it is the same ELBO
    np.testing.assert_allclose(sk.score(counts), result.elbo[-1], rtol=1e-7)


@pytest.mark.slow
def test_lda_from_scratch_is_no_worse_than_scikit_learn():
    # random (Dirichlet(1)) starts: see ppl_vi.core.cavi_start for when the data-seeded start is worse
    result, raw, _ = fit("numpyro", "lda", seed=1, num_restarts=4, seed_from_data=False, num_docs=40, doc_length=60)
    counts = models.get("lda").extras["token_counts"](raw).astype(np.float64)
    bounds = []
    for seed in range(4):
        sk = _sklearn_lda(raw).set_params(random_state=seed, max_iter=300).fit(counts)
        bounds.append(sk.score(counts))
    assert result.elbo[-1] >= max(bounds) - 1e-4 * abs(max(bounds))
