"""Langevin step, MALA ratio and annealed step sizes (math.md §3) against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from ppl_vi.core.langevin import (
    adapt_log_step_size,
    annealed_step_sizes,
    mala_log_acceptance,
    mala_select,
    ula_step,
)

RNG = np.random.default_rng(0)
MEAN, COV = np.array([1.0, -2.0]), np.array([[2.0, 0.5], [0.5, 1.0]])
PRECISION = np.linalg.inv(COV)


def _log_p(x):
    return multivariate_normal(MEAN, COV).logpdf(x)


def _score(x):
    return (MEAN - x) @ PRECISION


def test_ula_step_is_gradient_step_plus_scaled_noise():
    x, noise = RNG.normal(size=(5, 2)), RNG.normal(size=(5, 2))
    h = 0.3
    out = ula_step(torch.as_tensor(x), torch.as_tensor(_score(x)), torch.as_tensor(noise), h)
    np.testing.assert_allclose(out.numpy(), x + h * _score(x) + np.sqrt(2 * h) * noise, rtol=1e-12)
    with pytest.raises(ValueError, match="step_size"):
        ula_step(torch.as_tensor(x), torch.as_tensor(x), torch.as_tensor(x), 0.0)


def test_ula_without_noise_is_gradient_ascent_to_the_mode():
    x = torch.as_tensor(RNG.normal(size=(3, 2)))
    for _ in range(500):
        x = ula_step(x, torch.as_tensor(_score(x.numpy())), torch.zeros_like(x), 0.2)
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(MEAN, (3, 2)), atol=1e-8)


def test_mala_log_acceptance_is_the_metropolis_hastings_ratio():
    """Compare with fully normalised densities: p(y) q(x|y) / (p(x) q(y|x)), q = N(· + h∇log p, 2h I)."""
    h = 0.4
    x, y = RNG.normal(size=(6, 2)), RNG.normal(size=(6, 2))

    def log_q(to, frm):
        return np.array([multivariate_normal(f + h * _score(f), 2 * h * np.eye(2)).logpdf(t) for t, f in zip(to, frm)])

    expected = _log_p(y) + log_q(x, y) - _log_p(x) - log_q(y, x)
    args = [torch.as_tensor(a) for a in (x, y, _log_p(x), _log_p(y), _score(x), _score(y))]
    np.testing.assert_allclose(mala_log_acceptance(*args, h).numpy(), expected, rtol=1e-10)


def test_mala_select_accepts_where_log_uniform_is_below_the_ratio():
    x, proposal = torch.zeros(3, 2), torch.ones(3, 2)
    new, accepted = mala_select(x, proposal, torch.tensor([0.0, -1.0, -5.0]), torch.tensor([-0.1, -0.5, -4.0]))
    assert accepted.tolist() == [True, False, False]
    assert new[:, 0].tolist() == [1.0, 0.0, 0.0]


def test_annealed_step_sizes_follow_song_and_ermon():
    sigmas = torch.as_tensor(np.geomspace(20.0, 1.0, 10))
    sizes = annealed_step_sizes(sigmas, 0.1)
    np.testing.assert_allclose(sizes.numpy(), 0.1 * sigmas.numpy() ** 2 / 1.0, rtol=1e-12)
    assert float(sizes[-1]) == pytest.approx(0.1) and float(sizes[0]) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="shape"):
        annealed_step_sizes(sigmas[None], 0.1)


def test_step_size_adaptation_moves_towards_the_target_acceptance():
    assert adapt_log_step_size(0.0, 0.9, 0) > 0.0  # accepting too often: larger steps
    assert adapt_log_step_size(0.0, 0.1, 0) < 0.0
    assert adapt_log_step_size(0.0, 0.574, 0) == 0.0


def test_acceptance_probability_is_capped_at_one_and_zero_for_nan():
    from ppl_vi.core.langevin import acceptance_probability

    out = acceptance_probability(torch.tensor([0.5, -np.log(4.0), float("nan"), -np.inf]))
    np.testing.assert_allclose(out.numpy(), [1.0, 0.25, 0.0, 0.0])
