"""Diffusion-loss terms (math.md §2): per-step KL, ε-parameterization, prior KL,
decoder, and L_T → L_∞ with an exact (quadrature) expectation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppl_vi.core import diffusion, schedules


def test_step_kl_equals_gaussian_kl_of_reverse_step():
    gen = torch.Generator().manual_seed(0)
    x, x_hat, z_t = (torch.randn(5, 3, generator=gen) for _ in range(3))
    g_s, g_t = torch.full((5,), -2.0), torch.full((5,), 0.5)
    loc_q, scale = diffusion.reverse_step(z_t, x, g_s[:, None], g_t[:, None])
    loc_p, _ = diffusion.reverse_step(z_t, x_hat, g_s[:, None], g_t[:, None])
    kl = diffusion.gaussian_kl(loc_q, scale ** 2, loc_p, scale ** 2).sum(-1)
    torch.testing.assert_close(diffusion.step_kl(x, x_hat, g_s, g_t), kl, rtol=1e-10, atol=0)


def test_gaussian_kl_monte_carlo():
    gen = torch.Generator().manual_seed(1)
    mu_q, var_q, mu_p, var_p = 0.3, 0.5, -0.2, 1.7
    z = mu_q + math.sqrt(var_q) * torch.randn(400_000, generator=gen)
    q, p = torch.distributions.Normal(mu_q, math.sqrt(var_q)), torch.distributions.Normal(mu_p, math.sqrt(var_p))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    kl = diffusion.gaussian_kl(*(torch.tensor(v) for v in (mu_q, var_q, mu_p, var_p)))
    assert abs(log_ratio.mean().item() - kl.item()) < 5 * log_ratio.std().item() / math.sqrt(z.numel())


def test_eps_parameterization_identities():
    gen = torch.Generator().manual_seed(2)
    x, eps, eps_hat = (torch.randn(4, 6, generator=gen) for _ in range(3))
    g_s, g_t = torch.linspace(-5, 1, 4), torch.linspace(-4, 3, 4)
    z_t = diffusion.q_sample(x, g_t[:, None], eps)
    x_hat = diffusion.x_from_eps(z_t, g_t[:, None], eps_hat)
    torch.testing.assert_close(diffusion.step_kl(x, x_hat, g_s, g_t),
                               diffusion.step_kl_eps(eps, eps_hat, g_s, g_t), rtol=1e-10, atol=0)
    # continuous time: −½ SNR'(t) ||x − x̂||² = ½ γ'(t) ||ε − ε̂||², SNR' by autodiff.
    sched = schedules.cosine()
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], requires_grad=True)
    g, dg = schedules.gamma_and_derivative(t, sched)
    (dsnr,) = torch.autograd.grad(schedules.snr(g).sum(), t)
    g = g.detach()
    x_hat = diffusion.x_from_eps(diffusion.q_sample(x, g[:, None], eps), g[:, None], eps_hat)
    lhs = -0.5 * dsnr * ((x - x_hat) ** 2).sum(-1)
    torch.testing.assert_close(lhs, diffusion.continuous_loss_eps(eps, eps_hat, dg.detach()), rtol=1e-9, atol=0)


def test_prior_kl_monte_carlo():
    gen = torch.Generator().manual_seed(3)
    x, g_1, n = torch.tensor([[0.9, -0.3]]), torch.tensor(1.0), 400_000
    z = schedules.alpha(g_1) * x + schedules.sigma(g_1) * torch.randn(n, 2, generator=gen)
    q = torch.distributions.Normal(schedules.alpha(g_1) * x, schedules.sigma(g_1))
    log_ratio = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(-1)
    kl = diffusion.prior_kl(x, diffusion.boundary_constants(torch.tensor(-3.0), g_1, 5)).item()
    assert abs(log_ratio.mean().item() - kl) < 5 * log_ratio.std().item() / math.sqrt(n)


def test_decoder_is_bayes_posterior_over_bins():
    num_bins, g_0 = 5, torch.tensor(-1.0)
    z_0 = torch.tensor([[0.2, -0.9]])
    centers = diffusion.bin_centers(num_bins, z_0)
    torch.testing.assert_close(centers, torch.tensor([-0.8, -0.4, 0.0, 0.4, 0.8]))
    lik = torch.distributions.Normal(schedules.alpha(g_0) * centers, schedules.sigma(g_0)).log_prob(z_0[..., None])
    expected = lik - torch.logsumexp(lik, -1, keepdim=True)
    x_index = torch.tensor([[3, 0]])
    nll = diffusion.reconstruction_nll(x_index, z_0, diffusion.boundary_constants(g_0, torch.tensor(2.0), num_bins))
    torch.testing.assert_close(nll, -(expected[0, 0, 3] + expected[0, 1, 0]).reshape(1))


def test_discretize_time_is_uniform_over_steps():
    u = torch.linspace(0, 1 - 1e-12, 1000)
    s, t = diffusion.discretize_time(u, 10)
    torch.testing.assert_close(t - s, torch.full_like(t, 0.1))
    counts = torch.bincount(torch.round(t * 10).long())[1:]
    assert counts.tolist() == [100] * 10


def _bayes_denoiser(points: torch.Tensor):
    """ε̂ of the posterior-mean denoiser for data uniform on ``points`` (1-D)."""
    def denoise(z, g):
        a, s2 = schedules.alpha(g)[:, None], schedules.sigma2(g)[:, None]
        w = torch.softmax(-0.5 * (z - a * points) ** 2 / s2, dim=-1)
        x_hat = (w * points).sum(-1, keepdim=True)
        return (z - a * x_hat) / torch.sqrt(s2)
    return denoise


def _exact_diffusion_loss(num_steps):
    """E over data, step (all T midpoints) and ε (Gauss–Hermite) of the diffusion term."""
    num_bins, sched = 4, schedules.linear(-5.0, 3.0)
    x_values = torch.tensor([0, 3])
    points = diffusion.bin_centers(num_bins, torch.zeros(1, dtype=torch.float64))[x_values]
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    if num_steps is None:
        u, u_w = np.polynomial.legendre.leggauss(200)
        u, u_w = (u + 1) / 2, u_w / 2
    else:
        u, u_w = (np.arange(num_steps) + 0.5) / num_steps, np.full(num_steps, 1.0 / num_steps)
    axes = (np.arange(len(x_values)), np.arange(len(u)), np.arange(len(nodes)))
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    w = torch.tensor(0.5 * u_w[grid[:, 1]] * weights[grid[:, 2]])
    x_index = x_values[grid[:, 0]][:, None]
    eps = torch.tensor(nodes[grid[:, 2]])[:, None]
    terms = diffusion.negative_elbo_terms(
        x_index, torch.tensor(u[grid[:, 1]]), eps, torch.zeros_like(eps),
        _bayes_denoiser(points), lambda t: schedules.gamma_and_derivative(t, sched),
        diffusion.boundary_constants(torch.tensor(-5.0), torch.tensor(3.0), num_bins), num_steps)
    return float((w * terms.diffusion).sum())


def test_discrete_loss_decreases_to_continuous_limit():
    losses = [_exact_diffusion_loss(T) for T in (10, 100, 1000)]
    limit = _exact_diffusion_loss(None)
    assert losses[0] > losses[1] > losses[2] > limit > 0
    assert losses[2] - limit < 5e-3 * limit
    # the gap closes like 1/T
    assert (losses[1] - limit) / (losses[2] - limit) == pytest.approx(10.0, rel=0.2)
