"""Kernel density score and denoising score matching (math.md §3) against autodiff and Monte Carlo."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from ppl_vi.core.score import dsm_loss, dsm_target, kde_log_density, kde_score, perturb

RNG = np.random.default_rng(0)
DATA = RNG.normal(size=(50, 3))
POINTS = RNG.normal(scale=2.0, size=(7, 3))
BANDWIDTH = 0.6


def _backend_arrays(backend, *arrays):
    if backend == "pyro":
        return [torch.as_tensor(a) for a in arrays]
    return [jnp.asarray(a) for a in arrays]


def test_kde_log_density_matches_mixture_of_normal_pdfs():
    expected = np.log(np.mean([multivariate_normal(c, BANDWIDTH**2 * np.eye(3)).pdf(POINTS) for c in DATA], axis=0))
    for backend in ("numpyro", "pyro"):
        x, data = _backend_arrays(backend, POINTS, DATA)
        np.testing.assert_allclose(np.asarray(kde_log_density(x, data, BANDWIDTH)), expected, rtol=1e-10)


def test_kde_score_equals_autodiff_of_log_kde_torch():
    x, data = _backend_arrays("pyro", POINTS, DATA)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(kde_log_density(x, data, BANDWIDTH).sum(), x)
    torch.testing.assert_close(kde_score(x.detach(), data, BANDWIDTH), grad, rtol=1e-10, atol=1e-12)


def test_kde_score_equals_autodiff_of_log_kde_jax():
    x, data = _backend_arrays("numpyro", POINTS, DATA)
    grad = jax.grad(lambda z: kde_log_density(z, data, BANDWIDTH).sum())(x)
    np.testing.assert_allclose(kde_score(x, data, BANDWIDTH), grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_kde_score_is_finite_far_from_data(backend):
    # 1e3 away every kernel value underflows (exp(-1e6)); the unshifted ratio would be 0/0.
    far = np.array([[1e3, -1e3, 5e2]])
    x, data = _backend_arrays(backend, far, DATA)
    score = np.asarray(kde_score(x, data, BANDWIDTH))
    naive_weights = np.exp(-np.sum((far[:, None] - DATA) ** 2, -1) / (2 * BANDWIDTH**2))
    assert naive_weights.sum() == 0.0  # the naive formula really fails here
    nearest = DATA[np.argmin(np.sum((far - DATA) ** 2, -1))]
    np.testing.assert_allclose(score, (nearest - far) / BANDWIDTH**2, rtol=1e-12)


def test_kde_rejects_mismatched_dimensions():
    x, data = _backend_arrays("pyro", POINTS[:, :2], DATA)
    with pytest.raises(ValueError, match="D = 3"):
        kde_score(x, data, BANDWIDTH)
    with pytest.raises(ValueError, match="bandwidth"):
        kde_score(*_backend_arrays("pyro", POINTS, DATA), -1.0)


def test_dsm_target_is_score_of_the_perturbation_kernel():
    x0, noise = _backend_arrays("numpyro", DATA[:5], POINTS[:5])
    sigma = 0.3
    x = perturb(x0, noise, sigma)
    log_kernel = lambda z: jax.scipy.stats.norm.logpdf(z, x0, sigma).sum()  # noqa: E731
    np.testing.assert_allclose(dsm_target(x, x0, sigma), jax.grad(log_kernel)(x), rtol=1e-12)
    # the seed notes' (x - x0)/σ² is the opposite vector
    assert float(jnp.sum(dsm_target(x, x0, sigma) * (x - x0))) < 0


def test_explicit_and_denoising_score_matching_differ_by_a_constant():
    """J1(θ) = J2(θ) − ½(1/σ² − 1/(v+σ²)) for a 1-D Gaussian q(x0) = N(m, v) (Vincent 2011)."""
    m, v, sigma, n = 1.5, 0.7, 0.5, 400_000
    rng = np.random.default_rng(1)
    x0 = torch.as_tensor(m + np.sqrt(v) * rng.normal(size=(n, 1)))
    x = perturb(x0, torch.as_tensor(rng.normal(size=(n, 1))), sigma)
    exact_score = (m - x) / (v + sigma**2)
    constant = 0.5 * (1 / sigma**2 - 1 / (v + sigma**2))
    for slope, intercept in [(-1.0, 0.0), (0.5, 2.0), (-1 / (v + sigma**2), m / (v + sigma**2)), (-3.0, -1.0)]:
        model_score = slope * x + intercept
        j2 = dsm_loss(model_score, x, x0, sigma)
        per_sample_gap = 0.5 * (model_score - dsm_target(x, x0, sigma)) ** 2 - 0.5 * (model_score - exact_score) ** 2
        gap, standard_error = float(per_sample_gap.mean()), float(per_sample_gap.std() / np.sqrt(n))
        j1 = float(0.5 * torch.mean((model_score - exact_score) ** 2))
        np.testing.assert_allclose(float(j2) - j1, gap, rtol=1e-10)  # dsm_loss is the J2 term
        assert standard_error < 0.03
        assert abs(gap - constant) < 4 * standard_error, (slope, intercept, gap, constant, standard_error)


def test_dsm_minimiser_is_the_perturbed_score_and_seed_sign_flips_it():
    """Least-squares fit of a linear score s(x) = a x + b by J2: (a, b) → ((m-x)/(v+σ²) coefficients)."""
    m, v, sigma, n = -2.0, 1.3, 0.8, 200_000
    rng = np.random.default_rng(2)
    x0 = jnp.asarray(m + np.sqrt(v) * rng.normal(size=(n, 1)))
    x = perturb(x0, jnp.asarray(rng.normal(size=(n, 1))), sigma)
    features = jnp.concatenate([x, jnp.ones_like(x)], axis=1)
    fit = lambda target: jnp.linalg.lstsq(features, target[:, 0])[0]  # noqa: E731
    a, b = fit(dsm_target(x, x0, sigma))
    np.testing.assert_allclose([a, b], [-1 / (v + sigma**2), m / (v + sigma**2)], rtol=2e-2)
    a_seed, b_seed = fit((x - x0) / sigma**2)
    np.testing.assert_allclose([a_seed, b_seed], [-a, -b], rtol=1e-12)


def test_sigma_weighted_dsm_is_the_sigma_squared_weighted_mean():
    rng = np.random.default_rng(3)
    x0, noise, score = (torch.as_tensor(rng.normal(size=(6, 2))) for _ in range(3))
    sigma = torch.as_tensor([0.1, 0.5, 1.0, 2.0, 4.0, 0.1])
    x = perturb(x0, noise, sigma)
    per_sample = [float(dsm_loss(score[i : i + 1], x[i : i + 1], x0[i : i + 1], sigma[i])) for i in range(6)]
    expected = np.mean(np.asarray(sigma) ** 2 * np.asarray(per_sample))
    np.testing.assert_allclose(float(dsm_loss(score, x, x0, sigma, sigma_weighted=True)), expected, rtol=1e-12)
    # σ² · ½||s − target||² = ½||σ s + ε||²
    direct = 0.5 * torch.sum((sigma[:, None] * score + noise) ** 2, dim=1).mean()
    np.testing.assert_allclose(float(dsm_loss(score, x, x0, sigma, sigma_weighted=True)), float(direct), rtol=1e-12)


def test_dsm_rejects_bad_shapes():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="same shape"):
        dsm_loss(torch.zeros(4, 3), z, z, 1.0)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        dsm_target(z, z, torch.ones(3))
