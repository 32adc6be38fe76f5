"""The sweep's ELBO shortcut (reusing the last enumerated site's gradient) equals a full ELBO."""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

import models
from ppl_vi.core.cavi_objective import elbo, entropy
from ppl_vi.core.cavi_sweep import full_natural
from ppl_vi.numpyro import CAVI


def test_reported_elbo_equals_full_elbo_of_the_returned_state():
    m = models.get("bayesian_gmm")
    cavi = CAVI(m.numpyro_model)
    plan = cavi.plan(**m.data("numpyro", seed=1, num_data=200))
    state = cavi.init(jax.random.PRNGKey(0))  # reuses the plan just derived
    assert plan.latents[plan.order[-1]].discrete  # the shortcut path is the one exercised
    update = jax.jit(cavi.update)
    for _ in range(4):
        state, info = update(state)
        full = float(elbo(plan, state.mean, state.natural))
        np.testing.assert_allclose(float(info.elbo), full, rtol=1e-12)


def test_discrete_sites_keep_no_natural_parameters_and_their_entropy_comes_from_the_probabilities():
    """CAVI's state drops a discrete site's natural parameters (``kept_natural``); the
    entropy rebuilt from the probabilities equals the one from the natural parameters,
    for a Categorical with an impossible category (``0 log 0 = 0``) and a Bernoulli."""
    m = models.get("bayesian_gmm")
    cavi = CAVI(m.numpyro_model)
    plan = cavi.plan(**m.data("numpyro", seed=1, num_data=50))
    state, _ = jax.jit(cavi.update)(cavi.init(jax.random.PRNGKey(0)))
    assert "assignment" not in state.natural and set(state.mean) == set(plan.latents)
    rebuilt = full_natural(plan, state.natural, state.mean)
    np.testing.assert_allclose(np.exp(np.asarray(rebuilt["assignment"][0])), np.asarray(state.mean["assignment"][0]), rtol=1e-12)
    spec = plan.latents["assignment"]
    probs = jnp.asarray([[0.2, 0.8, 0.0], [0.5, 0.25, 0.25]])
    categorical = replace(spec, batch_shape=(2,), scale=1.0)
    np.testing.assert_allclose(float(entropy(categorical, None, (probs,))), -np.sum(np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)), rtol=1e-12)
    np.testing.assert_allclose(float(entropy(categorical, None, (probs,))), float(entropy(categorical, (jnp.log(probs),), (probs,))), rtol=1e-12)
    bernoulli = replace(spec, q_family="Bernoulli", batch_shape=(3,), scale=1.0)
    p = jnp.asarray([0.1, 0.5, 0.9])
    np.testing.assert_allclose(float(entropy(bernoulli, None, (p,))), -float(jnp.sum(p * jnp.log(p) + (1 - p) * jnp.log1p(-p))), rtol=1e-12)
