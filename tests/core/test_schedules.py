"""Noise schedules and forward-process coefficients (math.md §2) against autodiff,
Monte Carlo and Bayes' rule."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl_vi.core import schedules

KINDS = ("linear", "cosine", "learned")


def make(kind: str, gamma_min: float = -6.6, gamma_max: float = 4.1, seed: int = 0):
    if kind == "learned":
        return schedules.learned(gamma_min, gamma_max, num_hidden=16, seed=seed)
    return getattr(schedules, kind)(gamma_min, gamma_max)


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    gamma_min=st.floats(-15.0, 5.0),
    width=st.floats(0.05, 20.0),
    seed=st.integers(0, 1000),
)
def test_snr_strictly_decreasing_and_endpoints(kind, gamma_min, width, seed):
    sched = make(kind, gamma_min, gamma_min + width, seed)
    t = torch.linspace(0.0, 1.0, 257)
    g, dg = schedules.gamma_and_derivative(t, sched)
    snr = schedules.snr(g)
    assert torch.all(snr[1:] < snr[:-1])
    assert torch.all(dg > 0)
    assert g[0].item() == pytest.approx(gamma_min, abs=1e-9)
    assert g[-1].item() == pytest.approx(gamma_min + width, abs=1e-8 * (1 + abs(gamma_min)))


@settings(max_examples=50, deadline=None)
@given(g=st.floats(-30.0, 30.0))
def test_variance_preserving(g):
    g = torch.tensor(g)
    assert (schedules.alpha2(g) + schedules.sigma2(g)).item() == pytest.approx(1.0, abs=1e-12)
    assert (schedules.alpha(g) ** 2 / schedules.sigma(g) ** 2).item() == pytest.approx(
        schedules.snr(g).item(), rel=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_derivative_matches_autodiff(kind):
    t = torch.linspace(0.0, 1.0, 33, requires_grad=True)
    g, dg = schedules.gamma_and_derivative(t, make(kind))
    (auto,) = torch.autograd.grad(g.sum(), t)
    torch.testing.assert_close(dg, auto, rtol=1e-10, atol=1e-10)


def test_learned_schedule_trains_through_parameters():
    sched = make("learned")
    params = {k: torch.tensor(v, requires_grad=True) for k, v in sched.params.items()}
    g, _ = schedules.gamma_and_derivative(torch.tensor([0.3, 0.7]), sched, params)
    g.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    assert params["w2_raw"].grad.abs().sum() > 0


@pytest.mark.parametrize("gamma_min,gamma_max", [(1.0, 1.0), (2.0, -1.0), (float("nan"), 1.0)])
def test_bad_endpoints_raise(gamma_min, gamma_max):
    with pytest.raises(ValueError, match="gamma_min < gamma_max"):
        schedules.linear(gamma_min, gamma_max)


def _forward_pair(x: float, g_s, g_t, n: int, gen):
    """Samples of (z_s, z_t) from q(z_s | x) q(z_t | z_s)."""
    z_s = schedules.alpha(g_s) * x + schedules.sigma(g_s) * torch.randn(n, generator=gen)
    z_t = schedules.alpha_ts(g_t, g_s) * z_s + torch.sqrt(schedules.sigma2_ts(g_t, g_s)) * torch.randn(n, generator=gen)
    return z_s, z_t


def test_transition_composes_to_marginal_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    g_s, g_t, x, n = torch.tensor(-2.0), torch.tensor(1.5), 0.7, 400_000
    _, z_t = _forward_pair(x, g_s, g_t, n, gen)
    se_mean = math.sqrt(schedules.sigma2(g_t).item() / n)
    assert abs(z_t.mean().item() - schedules.alpha(g_t).item() * x) < 5 * se_mean
    assert z_t.var().item() == pytest.approx(schedules.sigma2(g_t).item(), rel=0.015)
    # closed form of the same identity
    assert (schedules.alpha_ts(g_t, g_s) ** 2 * schedules.sigma2(g_s) + schedules.sigma2_ts(g_t, g_s)).item() == \
        pytest.approx(schedules.sigma2(g_t).item(), rel=1e-12)


def test_posterior_coefficients_bayes_rule_and_monte_carlo():
    g_s, g_t, x = torch.tensor(-1.0), torch.tensor(0.8), -0.4
    coef_z, coef_x, var = schedules.posterior_coefficients(g_s, g_t)
    # Bayes' rule: prior N(a_s x, σ_s²) on z_s, likelihood N(z_t; a_{t|s} z_s, σ²_{t|s}).
    a_ts, v_ts, v_s = schedules.alpha_ts(g_t, g_s), schedules.sigma2_ts(g_t, g_s), schedules.sigma2(g_s)
    precision = 1 / v_s + a_ts ** 2 / v_ts
    assert var.item() == pytest.approx(1 / precision.item(), rel=1e-12)
    assert coef_z.item() == pytest.approx((a_ts / v_ts / precision).item(), rel=1e-12)
    assert (coef_x * x).item() == pytest.approx((schedules.alpha(g_s) * x / v_s / precision).item(), rel=1e-12)
    # Monte Carlo: regress z_s on z_t under the forward process.
    gen = torch.Generator().manual_seed(1)
    z_s, z_t = _forward_pair(x, g_s, g_t, 400_000, gen)
    design = torch.stack([z_t, torch.ones_like(z_t)], dim=-1)
    beta = torch.linalg.lstsq(design, z_s[:, None]).solution[:, 0]
    resid = z_s - design @ beta
    assert beta[0].item() == pytest.approx(coef_z.item(), abs=5e-3)
    assert beta[1].item() == pytest.approx((coef_x * x).item(), abs=5e-3)
    assert resid.var().item() == pytest.approx(var.item(), rel=0.015)


def test_seed_factorization_is_wrong():
    """The notes write q(z_s, z_t | x) = q(z_s | z_t) q(z_t | x). With data x ∈ {−1, 1},
    q(z_s | z_t) (x marginalized) differs from q(z_s | z_t, x): samples of the true joint
    q(z_s, z_t | x = 1) near a fixed z_t follow q(z_s | z_t, x) and not q(z_s | z_t)."""
    g_s, g_t = torch.tensor(-3.0), torch.tensor(0.0)
    coef_z, coef_x, _ = schedules.posterior_coefficients(g_s, g_t)
    z_star = 0.0
    # E[z_s | z_t] with x marginalized: posterior weights of x given z_t are equal at z_t = 0.
    mean_marginal = coef_z * z_star + coef_x * 0.0
    mean_given_x = coef_z * z_star + coef_x * 1.0
    gen = torch.Generator().manual_seed(2)
    z_s, z_t = _forward_pair(1.0, g_s, g_t, 400_000, gen)
    near = (z_t - z_star).abs() < 0.02
    empirical = z_s[near].mean().item()
    se = z_s[near].std().item() / math.sqrt(int(near.sum()))
    assert abs(empirical - mean_given_x.item()) < 5 * se
    assert abs(empirical - mean_marginal.item()) > 50 * se
