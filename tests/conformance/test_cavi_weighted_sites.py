"""Sites scaled by an array (``handlers.scale(scale=w)``) count ``w_n`` times, in both backends.

A data point scaled by an integer ``w_n`` contributes what ``w_n`` copies of it do: its
latent factor enters the ELBO ``w_n`` times (both its log-density terms and its
entropy), and copies share one factor at the optimum. So CAVI on weighted data must
reach the fixed point, and the ELBO, of CAVI on the replicated data: checked for LDA on
distinct (document, word) pairs with counts (an enumerated site) and for a model with
vector latents per data point (a Gaussian block and a Gamma global).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from pyroapi import distributions as dist
from pyroapi import handlers, pyro

import models
from models import ZooModel
from ppl_vi.core._xp import namespace
from tests.conformance.test_cavi_helpers import assert_monotone, np_params


def _run(backend: str, model, data: dict):
    if backend == "numpyro":
        import jax

        from ppl_vi.numpyro import CAVI

        return CAVI(model).run(jax.random.PRNGKey(0), **data, tol=1e-13, num_steps=5000)
    import torch

    from ppl_vi.pyro import CAVI

    torch.manual_seed(0)
    return CAVI(model).run(**data, tol=1e-13, num_steps=5000)


def test_lda_on_distinct_pairs_with_counts_matches_the_tokens(backend):
    zoo = models.get("lda")
    tokens = zoo.generate_data(2, num_docs=20, vocab_size=12, num_topics=3, doc_length=25)
    pairs = zoo.extras["pair_counts"](tokens)
    assert len(pairs["words"]) < 0.6 * len(tokens["words"])  # many tokens repeat a pair
    np.testing.assert_array_equal(zoo.extras["token_counts"](pairs), zoo.extras["token_counts"](tokens))
    by_tokens = _run(backend, zoo.model(backend), models.to_backend(tokens, backend))
    by_pairs = _run(backend, zoo.model(backend), models.to_backend(pairs, backend))
    assert by_tokens.converged and by_pairs.converged
    np.testing.assert_allclose(by_pairs.elbo[-1], by_tokens.elbo[-1], rtol=1e-9)
    for site in ("topics", "doc_topics"):
        np.testing.assert_allclose(np_params(by_pairs.posterior[site])["concentration"], np_params(by_tokens.posterior[site])["concentration"], rtol=1e-6)
    assert_monotone(by_pairs.elbo)


def _points(x, weights=None) -> None:
    """``mu ~ N(0, I)``, ``tau ~ Gamma(2, 1)``; per point ``z_n ~ N(mu, I)``, ``x_n ~ N(z_n, I / tau)`` (D=2)."""
    mu = pyro.sample("mu", dist.MultivariateNormal(0.0 * x[0], scale_tril=_eye(x)))
    tau = pyro.sample("tau", dist.Gamma(2.0, 1.0))
    weighted = contextlib.nullcontext() if weights is None else handlers.scale(scale=weights)
    with pyro.plate("data", x.shape[0]), weighted:
        z = pyro.sample("z", dist.MultivariateNormal(mu, scale_tril=_eye(x)))
        pyro.sample("x", dist.MultivariateNormal(z, precision_matrix=tau * _eye(x)), obs=x)


def _eye(x):
    return namespace(x).eye(2, dtype=x.dtype)


_POINTS = ZooModel("weighted_points", "test model", _points, ("mu", "tau", "z"), True, "exact", lambda seed: {})


def test_vector_latents_scaled_by_weights_match_the_replicated_data(backend):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.5, (15, 2))
    weights = rng.integers(1, 4, 15)
    weighted = _run(backend, _POINTS.model(backend), models.to_backend({"x": x, "weights": weights.astype(float)}, backend))
    replicated = _run(backend, _POINTS.model(backend), models.to_backend({"x": np.repeat(x, weights, axis=0)}, backend))
    assert weighted.converged and replicated.converged
    np.testing.assert_allclose(weighted.elbo[-1], replicated.elbo[-1], rtol=1e-9)
    for site in ("mu", "tau"):
        got, expected = np_params(weighted.posterior[site]), np_params(replicated.posterior[site])
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-6)
    # each point's factor is its copies' factor
    first_copy = np.concatenate([[0], np.cumsum(weights)[:-1]])
    np.testing.assert_allclose(np_params(weighted.posterior["z"])["loc"], np_params(replicated.posterior["z"])["loc"][first_copy], rtol=1e-6, atol=1e-6)
    assert_monotone(weighted.elbo)


def test_a_latent_site_weighted_zero_is_refused_naming_the_site(backend):
    weights = np.array([1.0, 0.0, 2.0])
    data = models.to_backend({"x": np.ones((3, 2)), "weights": weights}, backend)
    with pytest.raises(ValueError, match=r"latent site 'z' is scaled by 0 .*mask or scale the observed site"):
        _run(backend, _POINTS.model(backend), data)
