"""Gaussian-VAE pieces (math.md §1): closed forms vs Monte Carlo / exact evidence, and
torch vs jax on identical inputs."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
import torch

from ppl_vi.core import vae

RNG = np.random.default_rng(7)
D, K, B = 4, 2, 3
SIGMA = 0.6
# linear-Gaussian decoder f(z) = A z + b with orthogonal columns: the exact posterior is
# diagonal, so the mean-field family contains it
A = np.linalg.qr(RNG.normal(size=(D, K)))[0] * np.array([1.5, 0.8])
BIAS = RNG.normal(size=D)
X = RNG.normal(size=(B, D))


def decode(z):
    return z @ torch.as_tensor(A.T) + torch.as_tensor(BIAS)


def exact_posterior_and_evidence(x):
    precision = np.eye(K) + A.T @ A / SIGMA**2
    cov = np.linalg.inv(precision)
    loc = (x - BIAS) @ A @ cov.T / SIGMA**2
    evidence = st.multivariate_normal(BIAS, A @ A.T + SIGMA**2 * np.eye(D)).logpdf(x)
    return loc, np.sqrt(np.diag(cov)) * np.ones_like(loc), evidence


def test_analytic_kl_matches_monte_carlo():
    loc, scale = torch.as_tensor(RNG.normal(size=(B, K))), torch.as_tensor(RNG.uniform(0.3, 2.0, (B, K)))
    z = loc + scale * torch.randn((200_000, B, K), generator=torch.Generator().manual_seed(0))
    log_ratio = vae.diag_normal_log_prob(z, loc, scale) - vae.diag_normal_log_prob(z, 0 * z, 0 * z + 1)
    error = 4 * log_ratio.std(0) / math.sqrt(z.shape[0])
    closed = vae.kl_diag_normal_to_standard(loc, scale)
    assert torch.all((log_ratio.mean(0) - closed).abs() < error)
    # and against the reference implementation
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    torch.testing.assert_close(closed, reference)


def test_log_densities_keep_every_constant():
    x, mean = RNG.normal(size=(B, D)), RNG.normal(size=(B, D))
    expected = st.norm(mean, SIGMA).logpdf(x).sum(-1)
    np.testing.assert_allclose(vae.gaussian_log_likelihood(torch.as_tensor(x), torch.as_tensor(mean), SIGMA), expected)
    scale = RNG.uniform(0.5, 2.0, (B, D))
    expected = st.norm(mean, scale).logpdf(x).sum(-1)
    got = vae.diag_normal_log_prob(torch.as_tensor(x), torch.as_tensor(mean), torch.as_tensor(scale))
    np.testing.assert_allclose(got, expected)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        vae.gaussian_log_likelihood(torch.as_tensor(x), torch.as_tensor(mean), 0.0)


def test_negative_elbo_matches_the_linear_gaussian_closed_form():
    """E_q||x − Az − b||² = ||x − Aμ − b||² + Σ_j s_j² ||A_j||² for q = N(μ, diag s²)."""
    loc, scale = RNG.normal(size=(B, K)), RNG.uniform(0.2, 1.0, (B, K))
    residual = X - loc @ A.T - BIAS
    expected_sq = (residual**2).sum(-1) + (scale**2 * (A**2).sum(0)).sum(-1)
    kl = 0.5 * (scale**2 + loc**2 - 1 - np.log(scale**2)).sum(-1)
    closed = expected_sq / (2 * SIGMA**2) + 0.5 * D * math.log(2 * math.pi * SIGMA**2) + kl
    noise = torch.randn((100_000, B, K), generator=torch.Generator().manual_seed(1))
    loc_t, scale_t = torch.as_tensor(loc), torch.as_tensor(scale)
    estimate = vae.vae_negative_elbo(torch.as_tensor(X), loc_t, scale_t, noise, decode, SIGMA)
    per_draw = -vae.gaussian_log_likelihood(torch.as_tensor(X), decode(loc_t + scale_t * noise), SIGMA)
    error = 4 * per_draw.std(0) / math.sqrt(noise.shape[0])
    assert np.all(np.abs(estimate.numpy() - closed) < error.numpy())


def test_elbo_and_iwae_at_the_exact_posterior_equal_the_evidence():
    loc, scale, evidence = exact_posterior_and_evidence(X)
    noise = torch.randn((20_000, B, K), generator=torch.Generator().manual_seed(2))
    args = (torch.as_tensor(X), torch.as_tensor(loc), torch.as_tensor(scale), noise, decode, SIGMA)
    # q = p(z|x): every importance weight equals p(x), whatever the draws
    np.testing.assert_allclose(vae.iwae_log_evidence(*args), evidence, rtol=1e-10)
    z = args[1] + args[2] * noise
    per_draw = vae.gaussian_log_likelihood(args[0], decode(z), SIGMA) - vae.kl_diag_normal_to_standard(args[1], args[2])
    error = 4 * per_draw.std(0) / math.sqrt(noise.shape[0])
    assert np.all(np.abs(-vae.vae_negative_elbo(*args).numpy() - evidence) < error.numpy())


def test_iwae_bounds_are_ordered_for_a_poor_proposal():
    loc, scale, evidence = exact_posterior_and_evidence(X)
    noise = torch.randn((5_000, B, K), generator=torch.Generator().manual_seed(3))
    args = (torch.as_tensor(X), torch.as_tensor(loc + 0.5), torch.as_tensor(2 * scale))
    elbo = -vae.vae_negative_elbo(*args, noise, decode, SIGMA)
    # E[IWAE_10] from 500 disjoint groups of 10 draws (the extra axis is a batch axis)
    iwae_10 = vae.iwae_log_evidence(*args, noise.reshape(10, 500, B, K), decode, SIGMA).mean(0)
    iwae_5000 = vae.iwae_log_evidence(*args, noise, decode, SIGMA)
    assert torch.all(elbo < iwae_10 - 0.05) and torch.all(iwae_10 < iwae_5000 - 0.01)
    np.testing.assert_allclose(iwae_5000, evidence, atol=0.02)


def test_torch_and_jax_agree_on_identical_inputs():
    loc, scale, noise = RNG.normal(size=(B, K)), RNG.uniform(0.2, 1.0, (B, K)), RNG.normal(size=(7, B, K))
    results = {}
    for name, convert, decoder in [
        ("torch", torch.as_tensor, decode),
        ("jax", jnp.asarray, lambda z: z @ jnp.asarray(A.T) + jnp.asarray(BIAS)),
    ]:
        args = (convert(X), convert(loc), convert(scale), convert(noise), decoder, SIGMA)
        results[name] = [
            np.asarray(vae.vae_negative_elbo(*args)),
            np.asarray(vae.iwae_log_evidence(*args)),
            np.asarray(vae.kl_diag_normal_to_standard(convert(loc), convert(scale))),
            np.asarray(vae.log_mean_exp(convert(noise), axis=0)),
        ]
    for got, expected in zip(results["jax"], results["torch"]):
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_encoder_output_check_names_site_and_shapes():
    loc = torch.zeros(3, 2)
    vae.check_encoder_output("z", loc, loc, (3, 2))
    with pytest.raises(ValueError, match=r"site 'z': expected \(loc, scale\) of shape \(3, 2\).*got loc \(3, 2\) and scale \(3,\)"):
        vae.check_encoder_output("z", loc, torch.zeros(3), (3, 2))


def test_gap_estimates_use_common_draws():
    loc, scale, evidence = exact_posterior_and_evidence(X)
    noise = torch.randn((2_000, B, K), generator=torch.Generator().manual_seed(4))
    x, exact_q = torch.as_tensor(X), (torch.as_tensor(loc), torch.as_tensor(scale))
    poor_q = (exact_q[0] + 0.5, 2 * exact_q[1])
    elbo_poor, elbo_exact, gap, iwae = vae.amortization_gap_estimates(x, poor_q, exact_q, noise, decode, SIGMA, 100)
    torch.testing.assert_close(gap, elbo_exact - elbo_poor)
    torch.testing.assert_close(elbo_poor, -vae.vae_negative_elbo(x, *poor_q, noise, decode, SIGMA))
    np.testing.assert_allclose(iwae, evidence, rtol=1e-10)  # exact proposal: weights constant
    # the exact gap is KL(q_poor || p(z|x)) = KL between two diagonal Gaussians
    kl = 0.5 * (poor_q[1] ** 2 / exact_q[1] ** 2 + (poor_q[0] - exact_q[0]) ** 2 / exact_q[1] ** 2
                - 1 - torch.log(poor_q[1] ** 2 / exact_q[1] ** 2)).sum(-1)
    assert torch.all((gap - kl).abs() < 0.1 * kl)
