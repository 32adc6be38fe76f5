"""AmortizedGuide, vae_loss and amortization_gap (NumPyro) on a linear-Gaussian VAE,
whose posterior p(z|x) and evidence p(x) are exact."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.stats as st
from numpyro import handlers
from numpyro.infer import Trace_ELBO
from numpyro.infer.util import log_density

from ppl_vi.numpyro import AmortizedGuide, amortization_gap, vae_loss

RNG = np.random.default_rng(11)
N, D, K, SIGMA = 10, 4, 2, 0.6
A = np.linalg.qr(RNG.normal(size=(D, K)))[0] * np.array([1.5, 0.8])  # orthogonal columns
BIAS = RNG.normal(size=D)
X = jnp.asarray(RNG.normal(size=(N, D)) * 1.5 + BIAS)
COV = np.linalg.inv(np.eye(K) + A.T @ A / SIGMA**2)  # diagonal: mean field is exact
EXACT = {"weight": jnp.asarray(A @ COV.T / SIGMA**2), "shift": jnp.asarray(-BIAS @ A @ COV.T / SIGMA**2),
         "scale": jnp.asarray(np.sqrt(np.diag(COV)))}
LOG_EVIDENCE = st.multivariate_normal(BIAS, A @ A.T + SIGMA**2 * np.eye(D)).logpdf(np.asarray(X))
DECODER = (lambda p, z: z @ p[0].T + p[1], (jnp.asarray(A), jnp.asarray(BIAS)))


def encoder_fn(params, x):
    loc = x @ params["weight"] + params["shift"]
    return loc, jnp.broadcast_to(params["scale"], loc.shape)


def model(x, subsample_size=None):
    with numpyro.plate("data", N, subsample_size=subsample_size) as idx:
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
        numpyro.sample("x", dist.Normal(DECODER[0](DECODER[1], z), SIGMA).to_event(1), obs=x[idx])


def poor_encoder():
    return {"weight": EXACT["weight"], "shift": EXACT["shift"] + 0.7, "scale": 2.0 * EXACT["scale"]}


def test_vae_loss_matches_trace_elbo_monte_carlo():
    params = poor_encoder()
    guide = AmortizedGuide(model, (encoder_fn, params), "data")
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    host = jax.vmap(lambda k: Trace_ELBO().loss(k, {"amortized_encoder": params}, model, guide, X))(keys)
    ours = jax.vmap(lambda k: vae_loss((encoder_fn, params), DECODER, X, sigma=SIGMA, rng_key=k))(keys)
    error = 4 * math.sqrt((np.var(host) + np.var(ours)) / len(keys))
    assert abs(float(host.mean() - ours.mean())) < error
    assert np.var(ours) < np.var(host)  # the analytic KL removes part of the variance


def test_minibatch_loss_at_the_exact_posterior_is_scaled_evidence():
    """With q = p(z|x), log p(x,z) − log q(z|x) = log p(x): the host ELBO of any
    minibatch is exactly (N/|B|) Σ_{i∈B} log p(x_i)."""
    guide = AmortizedGuide(model, (encoder_fn, EXACT), "data")
    params = {"amortized_encoder": EXACT}
    handlers.seed(guide, 0)(X, 4)  # build the prototype outside jit

    @jax.jit
    def log_ratio_and_indices(key):
        log_q, guide_trace = log_density(handlers.seed(guide, key), (X, 4), {}, params)
        log_p, _ = log_density(handlers.replay(model, guide_trace), (X, 4), {}, params)
        return log_p - log_q, guide_trace["data"]["value"]

    for seed in range(3):
        log_ratio, indices = log_ratio_and_indices(jax.random.PRNGKey(seed))
        assert len(indices) == 4 and guide.num_data == N
        np.testing.assert_allclose(log_ratio, N / 4 * LOG_EVIDENCE[np.asarray(indices)].sum(), rtol=1e-10)
    draws = guide.sample_posterior(jax.random.PRNGKey(1), params, X, sample_shape=(3,))
    assert draws["z"].shape == (3, 4, K)
    np.testing.assert_allclose(guide.median(params, X, 4)["z"], encoder_fn(EXACT, X)[0])


def test_amortization_gap_recovers_the_exact_posterior():
    gap = amortization_gap((encoder_fn, poor_encoder()), DECODER, X[:4], jax.random.PRNGKey(2), sigma=SIGMA,
                           num_steps=800, step_size=0.02, num_particles=32, num_eval_particles=20_000,
                           progress_bar=False)
    evidence = LOG_EVIDENCE[:4]
    assert np.all(gap.gap > 0.5)  # the poor encoder leaves a large gap
    np.testing.assert_allclose(gap.elbo_optimized, evidence, atol=0.05)  # ψ* ≈ exact posterior
    np.testing.assert_allclose(gap.iwae, evidence, atol=0.02)
    np.testing.assert_allclose(gap.scale, np.broadcast_to(EXACT["scale"], (4, K)), atol=0.05)
    np.testing.assert_allclose(gap.loc, encoder_fn(EXACT, X[:4])[0], atol=0.05)


def test_errors_name_plate_site_and_shape():
    with pytest.raises(ValueError, match=r"no plate named 'batch'.*\['data'\]"):
        AmortizedGuide(model, (encoder_fn, EXACT), "batch")(X)
    wrong = (lambda p, x: (x @ p["weight"], jnp.ones((x.shape[0], K + 1))), EXACT)
    with pytest.raises(ValueError, match=r"site 'z': expected \(loc, scale\) of shape \(10, 2\)"):
        handlers.seed(AmortizedGuide(model, wrong, "data"), 0)(X)
    with pytest.raises(ValueError, match=r"site 'z': expected"):
        vae_loss(wrong, DECODER, X, sigma=SIGMA, rng_key=jax.random.PRNGKey(0))

    def with_global(x):
        numpyro.sample("g", dist.Normal(0.0, 1.0))
        model(x)

    with pytest.raises(ValueError, match="latent site 'g' is outside plate 'data'"):
        AmortizedGuide(with_global, (encoder_fn, EXACT), "data")(X)


def test_mlp_encoder_trains_with_host_svi_on_a_minibatch():
    import optax
    from numpyro.infer import SVI

    from ppl_vi.numpyro.amortized import local_site_shapes, mlp_encoder

    shapes = local_site_shapes(model, X, local_plate="data")
    assert shapes == {"z": (K,)}
    encoder = mlp_encoder(jax.random.PRNGKey(0), D, shapes, hidden=(16,))
    loc, scale = encoder[0](encoder[1], X)["z"]
    assert loc.shape == scale.shape == (N, K) and bool(jnp.all(scale > 0))
    guide = AmortizedGuide(model, encoder, "data")
    svi = SVI(model, guide, optax.adam(0.02), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(1), 1500, X, 5, progress_bar=False)
    assert result.losses[-100:].mean() < result.losses[:100].mean() - 5.0
    # the trained encoder is close to the best possible: -ELBO ≥ -Σ log p(x_i), within N/2 nats
    assert -LOG_EVIDENCE.sum() < result.losses[-100:].mean() < -LOG_EVIDENCE.sum() + 0.5 * N
