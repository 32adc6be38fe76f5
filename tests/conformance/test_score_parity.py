"""torch and jax give the same score-matching and Langevin quantities on identical inputs and noise."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ppl_vi.core import langevin as core_langevin
from ppl_vi.core import score as core_score

RNG = np.random.default_rng(7)
X, DATA, NOISE, SCORE = RNG.normal(size=(9, 3)), RNG.normal(size=(40, 3)), RNG.normal(size=(9, 3)), RNG.normal(size=(9, 3))
SIGMAS = np.abs(RNG.normal(size=9)) + 0.1


def _both(fn, *arrays, **kwargs):
    out_torch = fn(*[torch.as_tensor(a) if isinstance(a, np.ndarray) else a for a in arrays], **kwargs)
    out_jax = fn(*[jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays], **kwargs)
    return out_torch, out_jax


def _assert_same(out_torch, out_jax):
    if isinstance(out_torch, tuple):
        for a, b in zip(out_torch, out_jax):
            _assert_same(a, b)
        return
    np.testing.assert_allclose(out_torch.numpy(), np.asarray(out_jax), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    "fn, arrays, kwargs",
    [
        (core_score.kde_score, (X, DATA, 0.7), {}),
        (core_score.kde_score, (X + 300.0, DATA, 0.2), {}),  # far from the data
        (core_score.kde_log_density, (X, DATA, 0.7), {}),
        (core_score.dsm_target, (X, DATA[:9], SIGMAS), {}),
        (core_score.perturb, (DATA[:9], NOISE, 0.3), {}),
        (core_score.dsm_loss, (SCORE, X, DATA[:9], 0.5), {}),
        (core_score.dsm_loss, (SCORE, X, DATA[:9], SIGMAS), {"sigma_weighted": True}),
        (core_langevin.ula_step, (X, SCORE, NOISE, 0.05), {}),
        (core_langevin.mala_log_proposal, (X, DATA[:9], SCORE, 0.05), {}),
        (core_langevin.mala_log_acceptance, (X, DATA[:9], SIGMAS, -SIGMAS, SCORE, NOISE, 0.05), {}),
        (core_langevin.mala_select, (X, DATA[:9], SIGMAS - 0.5, np.log(RNG.uniform(size=9))), {}),
        (core_langevin.acceptance_probability, (np.array([0.3, -0.2, -4.0, np.nan]),), {}),
        (core_langevin.annealed_step_sizes, (np.geomspace(20.0, 1.0, 10), 0.1), {}),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_core_functions_agree_across_backends(fn, arrays, kwargs):
    _assert_same(*_both(fn, *arrays, **kwargs))


def test_adapter_dsm_losses_agree_given_the_same_noise_and_levels():
    from ppl_vi.numpyro import dsm_loss as jax_dsm_loss
    from ppl_vi.pyro import dsm_loss as torch_dsm_loss

    weight = RNG.normal(size=(3, 3))
    levels = np.geomspace(5.0, 0.1, 4)
    level_index = RNG.integers(0, 4, size=9)
    values = []
    for dsm_loss, asarray in ((torch_dsm_loss, torch.as_tensor), (jax_dsm_loss, jnp.asarray)):
        w = asarray(weight)
        single = dsm_loss(lambda x: x @ w, asarray(DATA[:9]), 0.4, noise=asarray(NOISE))
        conditional = dsm_loss(
            lambda x, s: (x @ w) / s[:, None], asarray(DATA[:9]), asarray(levels),
            noise=asarray(NOISE), level_index=asarray(level_index),
        )
        values.append([float(single), float(conditional)])
    np.testing.assert_allclose(values[0], values[1], rtol=1e-12)
    # and the conditional form is the σ²-weighted mean over the drawn levels
    sigma = levels[level_index][:, None]
    x = DATA[:9] + sigma * NOISE
    expected = np.mean(sigma[:, 0] ** 2 * 0.5 * np.sum(((x @ weight) / sigma + NOISE / sigma) ** 2, axis=1))
    np.testing.assert_allclose(values[0][1], expected, rtol=1e-12)
