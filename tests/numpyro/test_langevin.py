"""Langevin samplers on jax: ULA bias and MALA, the NCSN mixture regression, posterior scores."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from ppl_vi.numpyro import annealed_langevin, langevin, posterior_score
from ppl_vi.numpyro.langevin_sampling import langevin_posterior

# --- Gaussian target N(m, s²): ULA's stationary variance is s² / (1 − h/(2s²)) ----------------
M, S2, H, NUM_CHAINS = 1.0, 2.0, 1.0, 4000


def gaussian_log_density(x):
    return -0.5 * jnp.sum((x - M) ** 2, axis=-1) / S2


def gaussian_score(x):
    return (M - x) / S2


def test_ula_has_its_discretisation_bias_and_mala_removes_it():
    init = jnp.zeros((NUM_CHAINS, 1))
    ula = langevin(gaussian_score, init, 200, H, 0).position[:, 0]
    # MALA with the score taken from the log density by autodiff, every 50th position kept
    mala = langevin(None, init, 200, H, 1, mala=True, log_density_fn=gaussian_log_density, thinning=50)
    assert mala.samples.shape == (4, NUM_CHAINS, 1)
    np.testing.assert_allclose(mala.samples[-1], mala.position)
    ula_variance, mala_variance = float(jnp.var(ula)), float(jnp.var(mala.position[:, 0]))
    biased = S2 / (1 - H / (2 * S2))
    se = lambda v: v * np.sqrt(2 / NUM_CHAINS)  # noqa: E731  (sd of a sample variance, normal draws)
    assert abs(ula_variance - biased) < 4 * se(biased)
    assert abs(ula_variance - S2) > 6 * se(S2)
    assert abs(mala_variance - S2) < 4 * se(S2)
    assert abs(float(jnp.mean(mala.position)) - M) < 4 * np.sqrt(S2 / NUM_CHAINS)
    assert 0.3 < float(mala.acceptance_rate) < 1.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="log_density_fn"):
        langevin(gaussian_score, jnp.zeros((2, 1)), 5, 0.1, 0, mala=True)
    with pytest.raises(ValueError, match="num_steps"):
        langevin(gaussian_score, jnp.zeros((2, 1)), 0, 0.1, 0)
    with pytest.raises(ValueError, match="decreasing"):
        annealed_langevin(lambda x, s: -x, jnp.zeros((2, 1)), jnp.array([1.0, 2.0]), 5, 0.1, 0)


# --- NCSN's toy (Song & Ermon 2019): 0.8·N((5,5), I) + 0.2·N((−5,−5), I), exact scores ----------
MEANS, LOG_WEIGHTS = jnp.array([[5.0, 5.0], [-5.0, -5.0]]), jnp.log(jnp.array([0.8, 0.2]))
NUM_MIXTURE_CHAINS = 2000
MIXTURE_SE = np.sqrt(0.8 * 0.2 / NUM_MIXTURE_CHAINS)


def mixture_score(x, sigma=0.0):
    """Score of the mixture convolved with N(0, σ² I): Σ_k r_k(x) (μ_k − x)/(1 + σ²)."""
    variance = 1.0 + sigma**2
    logits = LOG_WEIGHTS - jnp.sum((x[..., None, :] - MEANS) ** 2, axis=-1) / (2 * variance)
    return (jax.nn.softmax(logits, axis=-1) @ MEANS - x) / variance


def test_annealing_recovers_mixture_weights_that_plain_langevin_gets_wrong():
    init = jax.random.uniform(jax.random.PRNGKey(0), (NUM_MIXTURE_CHAINS, 2), minval=-8.0, maxval=8.0)
    plain = langevin(mixture_score, init, 1000, 0.1, 1).position
    annealed = annealed_langevin(mixture_score, init, jnp.geomspace(20.0, 1.0, 10), 100, 0.1, 2).position
    plain_weight = float(jnp.mean(plain[:, 0] > 0))
    annealed_weight = float(jnp.mean(annealed[:, 0] > 0))
    # reference (10,000 chains): plain 0.51, annealed 0.78, i.i.d. 0.80
    assert abs(plain_weight - 0.5) < 4 * np.sqrt(0.25 / NUM_MIXTURE_CHAINS)
    assert abs(annealed_weight - 0.79) < 4 * MIXTURE_SE
    assert bool(jnp.all(jnp.isfinite(annealed)))


# --- Posterior scores of a NumPyro program ---------------------------------------------------
Y = jnp.array([0.3, 1.9, 1.1, 0.7, 2.4])
Z = jnp.array([0.5, -1.2, 0.8, 0.1, -0.4, 1.5])
PRIOR_SD, A0, B0 = 2.0, 3.0, 2.0


def conjugate_model(y, z):
    """mu ~ N(0, 2²), y_i ~ N(mu, 1); tau ~ Gamma(3, 2), z_j ~ N(0, 1/sqrt(tau))."""
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    tau = numpyro.sample("tau", dist.Gamma(A0, B0))
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    with numpyro.plate("m", z.shape[0]):
        numpyro.sample("z", dist.Normal(0.0, 1.0 / jnp.sqrt(tau)), obs=z)


def exact_posterior():
    precision = 1 / PRIOR_SD**2 + Y.shape[0]
    mean = float(jnp.sum(Y)) / precision
    a, b = A0 + Z.shape[0] / 2, B0 + float(jnp.sum(Z**2)) / 2
    return mean, 1 / precision, a, b


def test_posterior_score_is_the_exact_score_in_unconstrained_space():
    mean, variance, a, b = exact_posterior()
    post = posterior_score(conjugate_model, Y, Z)
    assert post.dim == 2
    mu, log_tau = jnp.array([-1.0, 0.0, 2.5]), jnp.array([-0.5, 0.2, 1.0])
    u = jnp.stack([mu, log_tau], axis=-1)  # ravel_pytree orders the sites by name: mu, tau
    values = post.constrain_fn(u)
    np.testing.assert_allclose(values["mu"], mu, rtol=1e-12)
    np.testing.assert_allclose(values["tau"], jnp.exp(log_tau), rtol=1e-12)
    score = post.score_fn(u)
    # d/dmu log N(mu; mean, variance); d/du [log Gamma(e^u; a, b) + u] = a − b e^u
    np.testing.assert_allclose(score[:, 0], (mean - mu) / variance, rtol=1e-10)
    np.testing.assert_allclose(score[:, 1], a - b * jnp.exp(log_tau), rtol=1e-10)


def test_langevin_posterior_matches_exact_moments():
    mean, variance, a, b = exact_posterior()
    result = langevin_posterior(conjugate_model, (Y, Z), rng_key=0, num_samples=700, num_warmup=300, num_chains=4)
    mu, tau = result.samples["mu"], result.samples["tau"]
    assert mu.shape == tau.shape == (4, 700)
    sd_mu, sd_tau = np.sqrt(variance), np.sqrt(a) / b
    # MALA's effective sample size here is ≈ the number of draws (2,800): Monte Carlo
    # standard errors ≈ 0.02 sd for the means and ≈ 0.015 for the sd ratios
    assert abs(float(mu.mean()) - mean) < 0.12 * sd_mu
    assert abs(float(tau.mean()) - a / b) < 0.12 * sd_tau
    assert abs(float(mu.std()) / sd_mu - 1) < 0.1
    assert abs(float(tau.std()) / sd_tau - 1) < 0.1
    assert 0.4 < float(result.acceptance_rate) < 0.8


def test_posterior_score_refuses_a_model_without_latents():
    def observed_only(y):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="no continuous latent"):
        posterior_score(observed_only, Y)


def test_posterior_score_of_the_zoo_normal_known_variance_model():
    import models

    zoo = models.get("normal_known_variance")
    exact = zoo.exact_posterior(zoo.generate_data(0))
    post = posterior_score(zoo.numpyro_model, **zoo.data("numpyro", seed=0))
    loc = jnp.array([[-1.0], [0.0], [2.0]])
    mean, sd = float(exact.mean["loc"]), float(exact.sd["loc"])
    np.testing.assert_allclose(post.score_fn(loc)[:, 0], (mean - loc[:, 0]) / sd**2, rtol=1e-10)
    np.testing.assert_allclose(post.constrain_fn(loc)["loc"], loc[:, 0])


def test_public_langevin_is_callable_whatever_the_import_order():
    """Importing the defining submodule first must not shadow the public function ``langevin``."""
    import importlib

    import ppl_vi.numpyro

    importlib.import_module("ppl_vi.numpyro.langevin_sampling")
    from ppl_vi.numpyro import langevin as public_langevin

    assert public_langevin(gaussian_score, jnp.zeros((3, 1)), 2, 0.1, 0).position.shape == (3, 1)
    assert callable(ppl_vi.numpyro.langevin)
