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


def _data_plate(*data, subsample_size=None):
    return numpyro.plate("data", N, subsample_size=subsample_size)


@pytest.fixture(scope="module")
def regression_guide():
    """One guide for every regression test (its prototype is built once)."""
    return LocalGuide(regression, "data", N, create_plates=_data_plate)


def test_minibatch_gradient_is_unbiased_over_a_partition(regression_guide):
    noise = {"w": jnp.asarray(0.3), "z": jnp.asarray(RNG.normal(size=N))}
    full = jnp.arange(N)
    guide = regression_guide
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


def _fit_average(model, guide, *args, num_steps=4000, seed=0, **kwargs):
    schedule = optax.exponential_decay(0.05, num_steps, 0.01)
    svi = SVI(model, guide, optax.adam(schedule), TraceMeanField_ELBO())
    state = svi.init(jax.random.PRNGKey(seed), *args, **kwargs)

    def body(state, _):
        state, _ = svi.update(state, *args, **kwargs)
        return state, svi.get_params(state)

    _, trajectory = jax.jit(lambda s: jax.lax.scan(body, s, None, length=num_steps))(state)
    return jax.tree.map(lambda p: jnp.mean(p[-num_steps // 4 :], axis=0), trajectory)


@pytest.mark.parametrize("subsample_size", [None, 4])
def test_full_and_minibatch_reach_the_exact_mean_field_optimum(regression_guide, subsample_size):
    guide = regression_guide
    params = _fit_average(regression, guide, X, Y, subsample_size=subsample_size)
    mean, sd = exact_mean_field_optimum()
    assert guide.local_sites == ("z",) and guide.global_sites == ("w",)
    np.testing.assert_allclose(params["w_local_loc"], mean[0], atol=0.03)
    np.testing.assert_allclose(params["w_local_scale"], sd[0], atol=0.03)
    np.testing.assert_allclose(params["z_local_loc"], mean[1:], atol=0.05)
    np.testing.assert_allclose(params["z_local_scale"], sd[1:], atol=0.05)


X_MIX = jnp.asarray(np.concatenate([RNG.normal(-2.0, 0.5, N // 2), RNG.normal(2.0, 0.5, N // 2)]))


def mixture(x, subsample_size=None):
    """GMM-like: local z_i from a two-component mixture prior, global component means."""
    means = numpyro.sample("means", dist.Normal(jnp.array([-1.0, 1.0]), 1.0).to_event(1))
    with numpyro.plate("data", N, subsample_size=subsample_size) as idx:
        prior = dist.MixtureSameFamily(dist.Categorical(probs=jnp.array([0.5, 0.5])), dist.Normal(means, 1.0))
        z = numpyro.sample("z", prior)
        numpyro.sample("x", dist.Normal(z, 0.3), obs=x[idx])


def test_full_and_minibatch_reach_the_same_optimum_on_a_mixture():
    guide = LocalGuide(mixture, "data", N, create_plates=_data_plate)
    full = _fit_average(mixture, guide, X_MIX, subsample_size=None)
    mini = _fit_average(mixture, guide, X_MIX, subsample_size=4, seed=1)
    for name in full:
        np.testing.assert_allclose(mini[name], full[name], atol=0.06, err_msg=name)
    assert float(full["means_local_loc"][1] - full["means_local_loc"][0]) > 3.0


def test_sgd_step_moves_only_the_minibatch_and_guide_contract(regression_guide):
    guide = regression_guide
    svi = SVI(regression, guide, optax.sgd(0.01), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), X, Y, subsample_size=3)
    before = svi.get_params(state)
    state, _ = svi.update(state, X, Y, subsample_size=3)
    after = svi.get_params(state)
    moved = np.flatnonzero(np.asarray(after["z_local_loc"] != before["z_local_loc"]))
    assert len(moved) == 3
    loc, scale = guide.local_params(after, moved)["z"]
    np.testing.assert_array_equal(loc, after["z_local_loc"][moved])
    assert scale.shape == (3,)
    draws = guide.sample_posterior(jax.random.PRNGKey(1), after, sample_shape=(5,))
    assert draws["z"].shape == (5, N) and draws["w"].shape == (5,)
    assert guide.median(after)["z"].shape == (N,)
    predictive = Predictive(regression, guide=guide, params=after, num_samples=5)
    assert predictive(jax.random.PRNGKey(2), X, Y, subsample_size=3)["y"].shape == (5, 3)


def test_errors_name_the_plate_and_the_size():
    with pytest.raises(ValueError, match=r"no plate named 'dta'.*\['data'\]"):
        handlers.seed(LocalGuide(regression, "dta", N), 0)(X, Y)
    with pytest.raises(ValueError, match=r"plate 'data' has full size 12 .* num_data=13"):
        handlers.seed(LocalGuide(regression, "data", N + 1), 0)(X, Y)
    with pytest.raises(ValueError, match="num_data must be a positive integer"):
        LocalGuide(regression, "data", 0)
