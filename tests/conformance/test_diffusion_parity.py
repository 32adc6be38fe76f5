"""Pyro and NumPyro diffusion chains agree on identical inputs: schedules, DiffusionELBO
terms (same denoiser weights, same noise) and the log density of the chain program."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numpyro import handlers
from numpyro.infer.util import log_density

import ppl_vi.numpyro as vi_numpyro
import ppl_vi.pyro as vi_pyro
from ppl_vi.core import diffusion, schedules

NUM_BINS, NUM_DIMS, NUM_HIDDEN, BATCH = 7, 3, 12, 8


def torch_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(NUM_DIMS + 1, NUM_HIDDEN), torch.nn.SiLU(),
                               torch.nn.Linear(NUM_HIDDEN, NUM_DIMS))


class TorchDenoiser(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch_mlp()

    def forward(self, z, gamma):
        return self.net(torch.cat([z, gamma[:, None]], -1))


def jax_apply(params, z, gamma):
    h = jnp.concatenate([z, gamma[:, None]], -1) @ params["w1"].T + params["b1"]
    return jax.nn.silu(h) @ params["w2"].T + params["b2"]


def jax_params(module: TorchDenoiser) -> dict:
    (l1, _, l2) = module.net
    return {k: jnp.asarray(v.detach().numpy()) for k, v in
            dict(w1=l1.weight, b1=l1.bias, w2=l2.weight, b2=l2.bias).items()}


def make_pair(kind: str, num_steps):
    sched = schedules.learned(-6.0, 4.0, num_hidden=10, seed=3) if kind == "learned" else getattr(schedules, kind)()
    denoiser = TorchDenoiser()
    chain_pyro = vi_pyro.DiffusionChain(denoiser, sched, num_steps, num_bins=NUM_BINS)
    chain_numpyro = vi_numpyro.DiffusionChain((jax_apply, jax_params(denoiser)), sched, num_steps, num_bins=NUM_BINS)
    return chain_pyro, chain_numpyro


@pytest.mark.parametrize("kind", ["linear", "cosine", "learned"])
def test_schedule_parity(kind):
    sched = schedules.learned(num_hidden=10) if kind == "learned" else getattr(schedules, kind)()
    t = np.linspace(0.0, 1.0, 11)

    def coefficients(t):
        g_t, dg_t = schedules.gamma_and_derivative(t, sched)
        g_s = g_t - 0.5
        return (g_t, dg_t, schedules.alpha_ts(g_t, g_s), schedules.sigma2_ts(g_t, g_s),
                *schedules.posterior_coefficients(g_s, g_t))

    for a, b in zip(coefficients(torch.tensor(t)), jax.jit(coefficients)(jnp.asarray(t))):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,num_steps", [("cosine", None), ("learned", None), ("linear", 10)])
def test_elbo_terms_parity(kind, num_steps):
    chain_pyro, chain_numpyro = make_pair(kind, num_steps)
    rng = np.random.default_rng(0)
    x = rng.integers(0, NUM_BINS, (BATCH, NUM_DIMS))
    u, eps, eps_0 = rng.uniform(size=BATCH), rng.normal(size=(BATCH, NUM_DIMS)), rng.normal(size=(BATCH, NUM_DIMS))
    with torch.no_grad():
        terms_t = chain_pyro.loss_terms(*(torch.tensor(a) for a in (x, u, eps, eps_0)))
    terms_j = jax.jit(chain_numpyro.loss_terms)(None, *(jnp.asarray(a) for a in (x, u, eps, eps_0)))
    for a, b in zip(terms_t, terms_j):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_program_log_density_parity():
    """log p(x, z_{0..T}) and log q(z_{0..T} | x) of the two programs at the same values."""
    chain_pyro, chain_numpyro = make_pair("learned", 3)
    x = torch.tensor(np.random.default_rng(1).integers(0, NUM_BINS, (BATCH, NUM_DIMS)))
    import pyro
    guide_tr = pyro.poutine.trace(chain_pyro.guide).get_trace(x)
    latents = {n: s["value"].detach() for n, s in guide_tr.nodes.items()
               if s["type"] == "sample" and n.startswith("z_")}
    with torch.no_grad():
        model_tr = pyro.poutine.trace(pyro.poutine.condition(chain_pyro.model, data=latents)).get_trace(x)
        guide_tr = pyro.poutine.trace(pyro.poutine.condition(chain_pyro.guide, data=latents)).get_trace(x)
        lp_model_t, lp_guide_t = model_tr.log_prob_sum().item(), guide_tr.log_prob_sum().item()
    values = {n: jnp.asarray(v.numpy()) for n, v in latents.items()}
    params = chain_numpyro.init_params
    x_j = jnp.asarray(x.numpy())
    lp_model_j, lp_guide_j = jax.jit(lambda p: [log_density(fn, (x_j,), {}, p)[0] for fn in
                                                 (chain_numpyro.model, chain_numpyro.guide)])({**params, **values})
    assert float(lp_model_j) == pytest.approx(lp_model_t, rel=1e-10)
    assert float(lp_guide_j) == pytest.approx(lp_guide_t, rel=1e-10)


class ScaledIdentity(torch.nn.Module):
    """ε̂ = c z: the reverse chain is then linear-Gaussian, with exact marginals."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, z, gamma):
        return self.scale * z


def exact_bin_probabilities(sched, num_steps: int, scale: float, num_bins: int) -> np.ndarray:
    """P(x_d = k) of the chain with ε̂ = c z, per dimension, shape (K,).

    Each reverse step is z_s = m_i z_t + σ_Q ξ with m_i = c_z + c_x (1 − σ_t c)/a_t, so
    z_0 ~ N(0, v) with v from the recursion v ← m_i² v + σ_Q², and P(x = k) is the
    decoder's softmax integrated against N(0, v) by Gauss–Hermite quadrature.
    """
    g = schedules.gamma(torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64), sched)
    variance = torch.tensor(1.0, dtype=torch.float64)
    for i in range(num_steps, 0, -1):
        coef_z, coef_x, var_q = schedules.posterior_coefficients(g[i - 1], g[i])
        mean_factor = coef_z + coef_x * (1 - schedules.sigma(g[i]) * scale) / schedules.alpha(g[i])
        variance = mean_factor ** 2 * variance + var_q
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z_0 = torch.sqrt(variance) * torch.tensor(nodes)[:, None]
    boundary = diffusion.boundary_constants(*schedules.gamma_endpoints(
        {k: torch.tensor(v) for k, v in sched.params.items()}), num_bins)
    probs = torch.softmax(diffusion.decoder_logits(z_0, boundary), -1)[:, 0, :]
    return (torch.tensor(weights / weights.sum())[:, None] * probs).sum(0).numpy()


def chi_square(draws: np.ndarray, probs: np.ndarray) -> float:
    counts = np.bincount(np.asarray(draws).ravel(), minlength=len(probs))
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


def test_sampling_follows_the_chain_distribution():
    """``sample`` of both backends (NumPyro's compiled lax.scan, Pyro's program) and
    ancestral sampling through NumPyro's ``model`` (its sample sites) match the exact marginal of
    x; the same draws are rejected against the chain with another denoiser."""
    sched, num_steps, scale, num_bins, num = schedules.linear(-3.0, 3.0), 3, 0.6, 5, 20_000
    exact = exact_bin_probabilities(sched, num_steps, scale, num_bins)
    wrong = exact_bin_probabilities(sched, num_steps, scale - 0.1, num_bins)
    critical = 27.0  # chi-square, 4 degrees of freedom, p ≈ 1e-5
    torch.manual_seed(0)
    chain_pyro = vi_pyro.DiffusionChain(ScaledIdentity(scale), sched, num_steps, num_bins=num_bins, num_dims=2)
    chain_numpyro = vi_numpyro.DiffusionChain((lambda p, z, g: p["scale"] * z, {"scale": jnp.array(scale)}),
                                              sched, num_steps, num_bins=num_bins, num_dims=2)
    draws = {
        "pyro sample": chain_pyro.sample(num).numpy(),
        "numpyro sample": chain_numpyro.sample(num, rng_key=jax.random.PRNGKey(0)),
        "numpyro model": jax.jit(lambda key: handlers.seed(chain_numpyro.model, key)(None, num))(
            jax.random.PRNGKey(1)),
    }
    for name, x in draws.items():
        assert np.shape(x) == (num, 2), name
        assert chi_square(x, exact) < critical, name
        assert chi_square(x, wrong) > 10 * critical, name
