"""Data generators (seeded, sized), the LDA count helper, and the GMM's scikit-learn mapping."""

from __future__ import annotations

import re

import numpy as np
import pyro
import pytest
import torch
from scipy import stats
from sklearn.mixture import BayesianGaussianMixture

import models

OURS = [n for n in models.names() if not n.startswith("pdb_")]


@pytest.mark.parametrize("name", OURS)
def test_generators_are_seeded(name):
    gen = models.get(name).generate_data
    first, again = gen(7), gen(7)
    assert first.keys() == again.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    arrays = [k for k, v in first.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 8]
    if name != "eight_schools":  # one fixed data set
        assert any(not np.array_equal(first[k], gen(8)[k]) for k in arrays + ["x", "words", "y"] if k in first)


def test_sizes_are_configurable():
    gmm = models.get("bayesian_gmm").generate_data(0, num_data=500, num_features=3, num_components=10)
    assert gmm["x"].shape == (500, 3) and gmm["W0"].shape == (3, 3) and gmm["num_components"] == 10
    corpus = models.get("lda").generate_data(0, num_docs=7, num_topics=4, vocab_size=11, doc_length=5)
    assert corpus["words"].shape == corpus["doc_ids"].shape == (35,)
    assert corpus["words"].max() < 11 and corpus["num_topics"] == 4
    blr = models.get("bayesian_linear_regression").generate_data(0, num_data=9, num_features=5)
    assert blr["X"].shape == (9, 5)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("bayesian_gmm", {"num_features": 1}, "bayesian_gmm: expected num_features >= 2"),
        ("bayesian_gmm", {"nu0": 0.5}, "nu0 > num_features - 1"),
        ("lda", {"num_topics": 0}, "lda: expected num_topics > 0; got 0"),
        ("beta_bernoulli", {"true_p": 1.5}, "true_p in"),
        ("normal_gamma", {"b0": -1.0}, "normal_gamma: expected b0 > 0; got -1.0"),
        ("logistic_regression", {"num_data": 0}, "num_data > 0"),
    ],
)
def test_generators_refuse_bad_sizes(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        models.get(name).generate_data(0, **kwargs)


@pytest.mark.parametrize(
    "name, bad, message",
    [
        (
            "beta_bernoulli",
            {"x": np.array([0.0, 2.0])},
            "beta_bernoulli: expected 'x' of shape (N,) with values in {0, 1}",
        ),
        ("gamma_poisson", {"x": np.array([1.0, 0.5])}, "non-negative integer counts"),
        ("dirichlet_categorical", {"x": np.array([0, 3])}, "integer labels in [0, 3)"),
        ("normal_known_variance", {"sigma": 0.0}, "expected sigma > 0"),
        ("normal_gamma", {"x": np.ones((2, 2))}, "finite 'x' of shape (N,)"),
        ("bayesian_linear_regression", {"y": np.ones(3)}, "expected X of shape (N, D) and y of shape (N,)"),
    ],
)
def test_exact_posteriors_refuse_bad_data(name, bad, message):
    zoo = models.get(name)
    with pytest.raises(ValueError, match=re.escape(message)):
        zoo.exact_posterior({**zoo.generate_data(0), **bad})


def test_gmm_clusters_are_well_separated():
    data = models.get("bayesian_gmm").generate_data(0, num_data=2000, num_components=10)
    fit = BayesianGaussianMixture(n_components=10, covariance_type="full", random_state=0).fit(data["x"])
    centres = np.sort(np.linalg.norm(fit.means_[fit.weights_ > 0.02], axis=-1))
    assert centres.shape == (10,)
    np.testing.assert_allclose(centres, 4.0 / np.sin(np.pi / 10), rtol=0.1)


def test_lda_token_counts():
    zoo = models.get("lda")
    corpus = zoo.generate_data(0)
    counts = zoo.extras["token_counts"](corpus)
    assert counts.shape == (corpus["num_docs"], corpus["vocab_size"])
    assert counts.sum() == corpus["words"].shape[0]
    d, w = corpus["doc_ids"][5], corpus["words"][5]
    assert counts[d, w] == np.sum((corpus["doc_ids"] == d) & (corpus["words"] == w))


def test_gmm_is_the_model_of_sklearn_bayesian_gaussian_mixture():
    """With the documented prior mapping and the assignments fixed, scikit-learn's conjugate
    update is our model's exact conditional: ``log p(x, z, theta) - log q_sklearn(theta)`` is
    the same at every ``theta``."""
    zoo = models.get("bayesian_gmm")
    data = zoo.generate_data(0, num_data=200)
    x, K = data["x"], data["num_components"]
    labels = np.argmin(((x[:, None, :] - x[[0, 1, 2]][None]) ** 2).sum(-1), axis=-1)  # any assignment will do
    bgm = BayesianGaussianMixture(**zoo.extras["sklearn_priors"](data), reg_covar=0.0)  # the mapping under test
    bgm._check_parameters(x)
    bgm._initialize(x, np.eye(K)[labels])
    wishart_scales = np.linalg.inv(bgm.covariances_ * bgm.degrees_of_freedom_[:, None, None])

    rng = np.random.default_rng(0)
    differences = []
    for _ in range(4):
        weights = rng.dirichlet(np.full(K, 2.0))
        precisions = np.stack([stats.wishart(5.0, np.eye(2)).rvs(random_state=rng) for _ in range(K)])
        locs = rng.standard_normal((K, 2)) * 3.0
        log_q = stats.dirichlet(bgm.weight_concentration_).logpdf(weights) + sum(
            stats.wishart(bgm.degrees_of_freedom_[k], wishart_scales[k]).logpdf(precisions[k])
            + stats.multivariate_normal(bgm.means_[k], np.linalg.inv(bgm.mean_precision_[k] * precisions[k])).logpdf(
                locs[k]
            )
            for k in range(K)
        )
        values = {"weights": weights, "precisions": precisions, "locs": locs, "assignment": labels}
        conditioned = pyro.poutine.condition(zoo.pyro_model, data={k: torch.as_tensor(v) for k, v in values.items()})
        log_joint = float(pyro.poutine.trace(conditioned).get_trace(**models.to_backend(data, "pyro")).log_prob_sum())
        differences.append(log_joint - log_q)
    assert np.ptp(differences) < 1e-7 * np.abs(differences).max()
