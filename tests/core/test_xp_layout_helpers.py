"""``special().materialize``, ``special().logsumexp_small`` and ``special().log_normalize``:
the same values as the identity, ``logsumexp`` and ``(logsumexp, softmax)`` on both
backends, also jitted, vmapped and differentiated (they only change how XLA lays out and
fuses the computation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from ppl_vi.core._xp import special


def _arrays(backend, values):
    if backend == "numpyro":
        import jax.numpy as jnp

        return jnp.asarray(values)
    import torch

    return torch.as_tensor(values)


@pytest.mark.parametrize("size", [1, 3, 20, 70])
def test_values_are_the_identity_and_logsumexp(backend, size):
    values = np.random.default_rng(size).normal(scale=30.0, size=(5, 4, size))
    values[0, 0, 0] = -np.inf
    x = _arrays(backend, values)
    sp = special(x)
    if backend == "numpyro":
        np.testing.assert_array_equal(np.asarray(sp.materialize(x)), values)
    else:  # torch fuses nothing: the helper is the identity
        assert sp.materialize(x) is x
    got = np.asarray(sp.logsumexp_small(x))
    assert got.shape == (5, 4, 1)
    np.testing.assert_allclose(got, logsumexp(values, axis=-1, keepdims=True), rtol=1e-14, atol=0)


@pytest.mark.parametrize("size", [1, 3, 20])
def test_log_normalize_is_logsumexp_and_softmax(backend, size):
    values = np.random.default_rng(size).normal(scale=30.0, size=(5, 4, size))
    values[0, 0, 0] = -np.inf
    values[1, 2, :] = -np.inf  # a row with no mass
    lse, probs = (np.asarray(a) for a in special(_arrays(backend, values)).log_normalize(_arrays(backend, values)))
    assert lse.shape == (5, 4, 1) and probs.shape == values.shape
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(lse, logsumexp(values, axis=-1, keepdims=True), rtol=1e-14, atol=0)
        np.testing.assert_allclose(probs, softmax(values, axis=-1), rtol=1e-13, atol=1e-300)
    assert lse[1, 2, 0] == -np.inf


def test_jax_transformations_keep_the_values():
    import jax
    import jax.numpy as jnp

    values = jnp.asarray(np.random.default_rng(0).normal(size=(3, 200, 20)))
    sp = special(values)

    def objective(x):
        table = sp.materialize(jnp.exp(x))
        return jnp.sum(table[:, jnp.arange(7) % 3] * jnp.cos(x[:, :7])) + jnp.sum(sp.logsumexp_small(x))

    def reference(x):
        return jnp.sum(jnp.exp(x)[:, jnp.arange(7) % 3] * jnp.cos(x[:, :7])) + jnp.sum(jax.scipy.special.logsumexp(x, axis=-1))

    got = jax.jit(jax.vmap(jax.value_and_grad(objective)))(values)
    want = jax.vmap(jax.value_and_grad(reference))(values)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-14)
