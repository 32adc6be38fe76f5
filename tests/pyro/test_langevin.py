"""Langevin samplers on torch: ULA bias and MALA, the NCSN mixture regression, posterior scores."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_vi.pyro import annealed_langevin, langevin, posterior_score
from ppl_vi.pyro.langevin_sampling import langevin_posterior

# --- Gaussian target N(m, s²): ULA's stationary variance is s² / (1 − h/(2s²)) ----------------
M, S2, H, NUM_CHAINS = 1.0, 2.0, 1.0, 4000


def gaussian_log_density(x):
    return -0.5 * torch.sum((x - M) ** 2, dim=-1) / S2


def gaussian_score(x):
    return (M - x) / S2


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_ula_has_its_discretisation_bias_and_mala_removes_it():
    init = torch.zeros(NUM_CHAINS, 1)
    ula = langevin(gaussian_score, init, 200, H, generator(0)).position[:, 0]
    # MALA with the score taken from the log density by autograd, every 50th position kept
    mala = langevin(None, init, 200, H, generator(1), mala=True, log_density_fn=gaussian_log_density, thinning=50)
    assert mala.samples.shape == (4, NUM_CHAINS, 1)
    torch.testing.assert_close(mala.samples[-1], mala.position)
    ula_variance, mala_variance = float(ula.var()), float(mala.position[:, 0].var())
    biased = S2 / (1 - H / (2 * S2))
    se = lambda v: v * np.sqrt(2 / NUM_CHAINS)  # noqa: E731  (sd of a sample variance, normal draws)
    assert abs(ula_variance - biased) < 4 * se(biased)
    assert abs(ula_variance - S2) > 6 * se(S2)
    assert abs(mala_variance - S2) < 4 * se(S2)
    assert abs(float(mala.position.mean()) - M) < 4 * np.sqrt(S2 / NUM_CHAINS)
    assert 0.3 < float(mala.acceptance_rate) < 1.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="log_density_fn"):
        langevin(gaussian_score, torch.zeros(2, 1), 5, 0.1, mala=True)
    with pytest.raises(ValueError, match="num_steps"):
        langevin(gaussian_score, torch.zeros(2, 1), 0, 0.1)
    with pytest.raises(ValueError, match="decreasing"):
        annealed_langevin(lambda x, s: -x, torch.zeros(2, 1), torch.tensor([1.0, 2.0]), 5, 0.1)


# --- NCSN's toy (Song & Ermon 2019): 0.8·N((5,5), I) + 0.2·N((−5,−5), I), exact scores ----------
MEANS, LOG_WEIGHTS = torch.tensor([[5.0, 5.0], [-5.0, -5.0]]), torch.log(torch.tensor([0.8, 0.2]))
NUM_MIXTURE_CHAINS = 2000
MIXTURE_SE = np.sqrt(0.8 * 0.2 / NUM_MIXTURE_CHAINS)


def mixture_score(x, sigma=0.0):
    """Score of the mixture convolved with N(0, σ² I): Σ_k r_k(x) (μ_k − x)/(1 + σ²)."""
    variance = 1.0 + sigma**2
    logits = LOG_WEIGHTS - torch.sum((x[..., None, :] - MEANS) ** 2, dim=-1) / (2 * variance)
    return (torch.softmax(logits, dim=-1) @ MEANS - x) / variance


def test_annealing_recovers_mixture_weights_that_plain_langevin_gets_wrong():
    init = 16.0 * torch.rand(NUM_MIXTURE_CHAINS, 2, generator=generator(0)) - 8.0
    plain = langevin(mixture_score, init, 1000, 0.1, generator(1)).position
    sigmas = torch.logspace(np.log10(20.0), 0.0, 10)
    annealed = annealed_langevin(mixture_score, init, sigmas, 100, 0.1, generator(2)).position
    plain_weight = float((plain[:, 0] > 0).double().mean())
    annealed_weight = float((annealed[:, 0] > 0).double().mean())
    # reference (10,000 chains): plain 0.51, annealed 0.78, i.i.d. 0.80
    assert abs(plain_weight - 0.5) < 4 * np.sqrt(0.25 / NUM_MIXTURE_CHAINS)
    assert abs(annealed_weight - 0.79) < 4 * MIXTURE_SE
    assert bool(torch.all(torch.isfinite(annealed)))


# --- Posterior scores of a Pyro program ------------------------------------------------------
Y = torch.tensor([0.3, 1.9, 1.1, 0.7, 2.4])
Z = torch.tensor([0.5, -1.2, 0.8, 0.1, -0.4, 1.5])
PRIOR_SD, A0, B0 = 2.0, 3.0, 2.0


def conjugate_model(y, z):
    """mu ~ N(0, 2²), y_i ~ N(mu, 1); tau ~ Gamma(3, 2), z_j ~ N(0, 1/sqrt(tau))."""
    mu = pyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    tau = pyro.sample("tau", dist.Gamma(A0, B0))
    with pyro.plate("n", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    with pyro.plate("m", z.shape[0]):
        pyro.sample("z", dist.Normal(0.0, 1.0 / torch.sqrt(tau)), obs=z)


def exact_posterior():
    precision = 1 / PRIOR_SD**2 + Y.shape[0]
    mean = float(Y.sum()) / precision
    a, b = A0 + Z.shape[0] / 2, B0 + float((Z**2).sum()) / 2
    return mean, 1 / precision, a, b


def test_posterior_score_is_the_exact_score_in_unconstrained_space():
    mean, variance, a, b = exact_posterior()
    post = posterior_score(conjugate_model, Y, Z)
    assert post.dim == 2
    mu, log_tau = torch.tensor([-1.0, 0.0, 2.5]), torch.tensor([-0.5, 0.2, 1.0])
    u = torch.stack([mu, log_tau], dim=-1)  # sites in the order the program samples them
    values = post.constrain_fn(u)
    torch.testing.assert_close(values["mu"], mu)
    torch.testing.assert_close(values["tau"], log_tau.exp())
    score = post.score_fn(u)
    # d/dmu log N(mu; mean, variance); d/du [log Gamma(e^u; a, b) + u] = a − b e^u
    torch.testing.assert_close(score[:, 0], (mean - mu) / variance)
    torch.testing.assert_close(score[:, 1], a - b * log_tau.exp())


def test_langevin_posterior_matches_exact_moments():
    mean, variance, a, b = exact_posterior()
    result = langevin_posterior(conjugate_model, (Y, Z), seed=0, num_samples=700, num_warmup=300, num_chains=4)
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
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="no continuous latent"):
        posterior_score(observed_only, Y)


def test_posterior_score_of_a_model_that_does_not_broadcast_over_chains():
    """Python control flow on a latent value: chains are evaluated one trace at a time."""

    def branching_model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
        scale = 1.0 if bool(mu < 100.0) else 2.0  # fails under a plate over chains
        with pyro.plate("n", y.shape[0]):
            pyro.sample("y", dist.Normal(mu, scale), obs=y)

    mean, variance, _, _ = exact_posterior()
    post = posterior_score(branching_model, Y)
    mu = torch.tensor([[-1.0], [0.5], [3.0]])
    torch.testing.assert_close(post.score_fn(mu), (mean - mu) / variance)


def test_posterior_score_of_a_hierarchical_model_with_plated_latents():
    """Latent sites with plate batch dims are padded correctly under the chain plate."""

    def hierarchical(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("groups", 3):
            theta = pyro.sample("theta", dist.Normal(mu, 1.0))
            pyro.sample("y", dist.Normal(theta, 1.0), obs=y)

    y = torch.tensor([0.5, -1.0, 2.0])
    post = posterior_score(hierarchical, y)
    u = torch.tensor([[0.3, 0.1, -0.2, 0.4], [1.0, 2.0, 0.0, -1.0]])
    values = post.constrain_fn(u)
    mu, theta = values["mu"], values["theta"]
    exact = torch.distributions.Normal(0.0, 1.0).log_prob(mu) + torch.distributions.Normal(mu[:, None], 1.0).log_prob(
        theta
    ).sum(-1) + torch.distributions.Normal(theta, 1.0).log_prob(y).sum(-1)
    torch.testing.assert_close(post.log_density_fn(u), exact)


def test_posterior_score_of_the_zoo_normal_known_variance_model():
    import models

    zoo = models.get("normal_known_variance")
    exact = zoo.exact_posterior(zoo.generate_data(0))
    post = posterior_score(zoo.pyro_model, **zoo.data("pyro", seed=0))
    loc = torch.tensor([[-1.0], [0.0], [2.0]])
    mean, sd = float(exact.mean["loc"]), float(exact.sd["loc"])
    torch.testing.assert_close(post.score_fn(loc)[:, 0], (mean - loc[:, 0]) / sd**2)


def test_public_langevin_is_callable_whatever_the_import_order():
    """Importing the defining submodule first must not shadow the public function ``langevin``."""
    import importlib

    import ppl_vi.pyro

    importlib.import_module("ppl_vi.pyro.langevin_sampling")
    from ppl_vi.pyro import langevin as public_langevin

    res = public_langevin(gaussian_score, torch.zeros(3, 1), 2, 0.1, generator(0))
    assert res.position.shape == (3, 1)
    assert callable(ppl_vi.pyro.langevin)


def test_posterior_score_sums_out_an_enumerated_discrete_site():
    """z ~ Bernoulli(0.3), y ~ N(mu + 2z, 1): Pyro's potential marginalises z; so must the score."""

    def mixture_model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        z = pyro.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        pyro.sample("y", dist.Normal(mu + 2.0 * z, 1.0), obs=y)

    y = torch.tensor(1.2)
    post = posterior_score(mixture_model, y)
    mu = torch.tensor([[-0.5], [0.4], [1.5]])
    components = torch.stack([torch.log(torch.tensor(0.7)) + dist.Normal(mu[:, 0], 1.0).log_prob(y),
                              torch.log(torch.tensor(0.3)) + dist.Normal(mu[:, 0] + 2.0, 1.0).log_prob(y)])
    exact = dist.Normal(0.0, 1.0).log_prob(mu[:, 0]) + torch.logsumexp(components, dim=0)
    torch.testing.assert_close(post.log_density_fn(mu), exact)
