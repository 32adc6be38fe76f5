"""LocalGuide (NumPyro): unbiased minibatch gradients, same optimum full/minibatch, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO

from ppl_vi.numpyro import LocalGuide

N, SIGMA, TAU = 12, 0.5, 0.7
RNG = np.random.default_rng(0)
X = jnp.asarray(np.linspace(-1.0, 1.0, N))
Y = jnp.asarray(1.5 * np.linspace(-1.0, 1.0, N) + RNG.normal(0.0, 0.8, N))


def regression(x, y, subsample_size=None):
    """Linear regression with a local offset z_i per datapoint (Gaussian target)."""
    w = numpyro.sample("w", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", N, subsample_size=subsample_size) as idx:
        z = numpyro.sample("z", dist.Normal(0.0, TAU))
        numpyro.sample("y", dist.Normal(w * x[idx] + z, SIGMA), obs=y[idx])


def exact_mean_field_optimum():
    """Gaussian target: mean-field optimum = exact means, sd = 1/sqrt(diag precision)."""
    x, y = np.asarray(X), np.asarray(Y)
    precision = np.zeros((N + 1, N + 1))
    precision[0, 0] = 1.0 + np.sum(x**2) / SIGMA**2
    precision[0, 1:] = precision[1:, 0] = x / SIGMA**2
    precision[1:, 1:] = np.eye(N) * (1.0 / TAU**2 + 1.0 / SIGMA**2)
    shift = np.concatenate([[np.sum(x * y)], y]) / SIGMA**2
    mean = np.linalg.solve(precision, shift)
    return mean, 1.0 / np.sqrt(np.diag(precision))


def fixed_noise(guide, noise, indices):
    """Guide on the plate subsample ``indices`` whose real-valued sites are
    ``loc + scale * noise`` (local noise gathered by ``indices``)."""

    def value(msg):
        if msg["type"] == "plate" and msg["name"] == "data":
            return indices
        if msg["type"] != "sample" or msg["name"] not in noise:
            return None
        eps = noise[msg["name"]]
        eps = eps[indices] if eps.ndim else eps
        return msg["fn"].loc + msg["fn"].scale * eps

    return handlers.substitute(guide, substitute_fn=value)


def _data_plate(x, y, subsample_size=None):
    return numpyro.plate("data", N, subsample_size=subsample_size)


def test_minibatch_gradient_is_unbiased_over_a_partition():
    noise = {"w": jnp.asarray(0.3), "z": jnp.asarray(RNG.normal(size=N))}
    full = jnp.arange(N)
    guide = LocalGuide(regression, "data", N, create_plates=_data_plate)
    svi = SVI(regression, guide, optax.sgd(0.1), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), X, Y, subsample_size=None))
    params = jax.tree.map(lambda p: p + 0.1 * jnp.asarray(RNG.normal(size=jnp.shape(p))), params)

    def loss(params, indices):
        noisy_guide = fixed_noise(guide, noise, indices)
        size = len(indices) if len(indices) < N else None
        return Trace_ELBO().loss(jax.random.PRNGKey(1), params, regression, noisy_guide, X, Y, size)

    grad = jax.jit(jax.grad(loss))
    full_grad = grad(params, full)
    subsets = list(jnp.reshape(jnp.asarray(RNG.permutation(N)), (4, 3)))  # a partition into 4 batches
    mean_grad = jax.tree.map(lambda *g: sum(g) / len(g), *[grad(params, s) for s in subsets])
    for name in params:
        np.testing.assert_allclose(mean_grad[name], full_grad[name], rtol=1e-10, atol=1e-10)
    # a step touches only the minibatch: zero gradient outside it
    batch_grad = grad(params, subsets[0])
    outside = np.setdiff1d(np.arange(N), np.asarray(subsets[0]))
    assert np.all(np.asarray(batch_grad["z_local_loc"])[outside] == 0.0)
    assert np.all(np.asarray(batch_grad["z_local_loc"])[np.asarray(subsets[0])] != 0.0)
