"""Pareto k̂ (ArviZ PSIS) against the closed-form tail index of Normal importance weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from ppl_vi.diagnostics.psis import (
    elbo_estimate,
    khat_meaning,
    khat_over_seeds,
    khat_threshold,
    pareto_khat,
)


def normal_log_weights(q_scale: float, num: int, seed: int) -> np.ndarray:
    """log N(z; 0, 1) - log N(z; 0, q_scale), z ~ N(0, q_scale)."""
    z = q_scale * np.random.default_rng(seed).standard_normal(num)
    return norm.logpdf(z) - norm.logpdf(z, scale=q_scale)


@pytest.mark.parametrize("q_scale", [0.5, 1 / 3])
def test_khat_matches_tail_index_of_too_narrow_normal(q_scale):
    # For p = N(0,1), q = N(0, s^2), s < 1: w ∝ exp((1 - s^2) χ²_1 / 2), so P(w > t) ~ t^(-1/(1-s^2)):
    # a generalized Pareto tail with shape k = 1 - s^2.
    khats = [pareto_khat(normal_log_weights(q_scale, 4000, seed)) for seed in range(3)]
    assert abs(np.median(khats) - (1 - q_scale**2)) < 0.15


def test_khat_small_for_wider_q_and_minus_inf_for_exact_q():
    assert pareto_khat(normal_log_weights(1.5, 2000, 0)) < 0.5
    assert pareto_khat(np.full(100, -3.2)) == -np.inf  # q = posterior: constant weights


def test_threshold_and_meaning():
    assert khat_threshold(1000) == pytest.approx(1 - 1 / 3)
    assert khat_threshold(10**6) == 0.7
    assert "< 0.5" in khat_meaning(0.3, 1000)
    assert "[0.5, 0.7)" in khat_meaning(0.55, 1000)
    assert "sample-size threshold" in khat_meaning(0.68, 1000)
    assert ">= 0.7" in khat_meaning(0.9, 1000)
    with pytest.raises(ValueError, match="at least 10"):
        pareto_khat(np.zeros(3))


def test_khat_over_seeds_and_elbo_estimate():
    sets = [normal_log_weights(0.8, 2000, seed) for seed in range(3)]
    stats = khat_over_seeds(sets)
    assert stats["khat_median"] <= stats["khat_max"] and len(stats["khat_seeds"]) == 3
    # E_q[log p - log q] = -KL(N(0, s²) || N(0, 1)) = -(s² - 1 - log s²)/2
    elbo, se = elbo_estimate(sets)
    assert elbo == pytest.approx(-(0.64 - 1 - np.log(0.64)) / 2, abs=4 * se)
