"""Variational diffusion model terms (Kingma et al. 2021; math.md §2), backend-neutral.

Data are discrete: each of D coordinates takes one of K bin indices, mapped to the
bin centres ``v_k = (2k + 1)/K − 1`` in (−1, 1). Latents ``z_t = a_t v + σ_t ε``.

The negative ELBO of one datum is the sum of three terms (all in nats):

* reconstruction ``−E_{q(z_0|x)} log p(x | z_0)``, with ``p(x_d = k | z_0)`` the exact
  posterior over bins of ``N(z_0; a_0 v_k, σ_0²)`` under a uniform prior on bins
  (VDM's decoder);
* prior ``KL(q(z_1 | x) || N(0, I))``;
* diffusion: ``L_T = T E_i[KL_i]`` with the per-step KL
  ``½ (SNR(s) − SNR(t)) ||x − x̂||² = ½ expm1(γ_t − γ_s) ||ε − ε̂||²`` (ε-parameterized
  denoiser ``x̂ = (z_t − σ_t ε̂)/a_t``), or in continuous time
  ``L_∞ = ½ E_t[γ'(t) ||ε − ε̂||²]``.

No randomness here: the uniform variates and Gaussian noise are arguments, so torch and
jax agree exactly on the same inputs.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from ppl_vi.core import schedules
from ppl_vi.core._xp import namespace, special

__all__ = [
    "DiffusionTerms", "bin_centers", "bin_values", "q_sample", "x_from_eps", "gaussian_kl",
    "step_kl", "step_kl_eps", "continuous_loss_eps", "prior_kl", "decoder_logits",
    "reconstruction_nll", "discretize_time", "reverse_step", "forward_step",
    "negative_elbo_terms", "to_bits_per_dim", "CHAIN_STEPS", "PROGRAM_STEPS_CONTINUOUS",
    "resolve_steps", "check_data",
]

Array = Any


class DiffusionTerms(NamedTuple):
    """Negative-ELBO terms per datum, shape (B,) each (nats, or bits/dim after
    :func:`to_bits_per_dim`)."""

    reconstruction: Array
    prior: Array
    diffusion: Array

    @property
    def total(self) -> Array:
        return self.reconstruction + self.prior + self.diffusion


def bin_centers(num_bins: int, like: Array) -> Array:
    """Centres ``(2k + 1)/K − 1`` of K equal bins of [−1, 1], shape (K,), dtype of ``like``."""
    xp = namespace(like)
    k = xp.arange(num_bins, dtype=like.dtype)
    return (2 * k + 1) / num_bins - 1


def bin_values(x_index: Array, num_bins: int, like: Array) -> Array:
    """Bin centres of integer indices ``x_index`` (any shape), dtype of ``like``."""
    xp = namespace(like)
    return (2 * xp.astype(x_index, like.dtype) + 1) / num_bins - 1


def q_sample(x: Array, g: Array, eps: Array) -> Array:
    """z_t = a_t x + σ_t ε; ``g`` broadcasts against ``x`` (shape (B, 1) for per-datum t)."""
    return schedules.alpha(g) * x + schedules.sigma(g) * eps


def x_from_eps(z: Array, g: Array, eps_hat: Array) -> Array:
    """Denoised estimate x̂ = (z_t − σ_t ε̂) / a_t."""
    return (z - schedules.sigma(g) * eps_hat) / schedules.alpha(g)


def gaussian_kl(mu_q: Array, var_q: Array, mu_p: Array, var_p: Array) -> Array:
    """Elementwise KL(N(mu_q, var_q) || N(mu_p, var_p))."""
    xp = namespace(mu_q, var_q, mu_p, var_p)
    return 0.5 * (xp.log(var_p / var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1)


def step_kl(x: Array, x_hat: Array, g_s: Array, g_t: Array) -> Array:
    """½ (SNR(s) − SNR(t)) ||x − x̂||², shapes (B, D), (B, D), (B,), (B,) -> (B,)."""
    xp = namespace(x, x_hat)
    return 0.5 * (schedules.snr(g_s) - schedules.snr(g_t)) * xp.sum((x - x_hat) ** 2, axis=-1)


def step_kl_eps(eps: Array, eps_hat: Array, g_s: Array, g_t: Array) -> Array:
    """The same per-step KL in ε form: ½ expm1(γ_t − γ_s) ||ε − ε̂||², -> (B,)."""
    xp = namespace(eps, eps_hat)
    return 0.5 * xp.expm1(g_t - g_s) * xp.sum((eps - eps_hat) ** 2, axis=-1)


def continuous_loss_eps(eps: Array, eps_hat: Array, dgamma: Array) -> Array:
    """Integrand of L_∞: ½ γ'(t) ||ε − ε̂||², -> (B,)."""
    return 0.5 * dgamma * namespace(eps, eps_hat).sum((eps - eps_hat) ** 2, axis=-1)


def prior_kl(x: Array, g_1: Array) -> Array:
    """KL(q(z_1 | x) || N(0, I)) = ½ Σ_d (σ_1² + a_1² x_d² − 1 − log σ_1²); x (B, D),
    g_1 scalar -> (B,)."""
    xp = namespace(x)
    var = schedules.sigma2(g_1)
    return 0.5 * (xp.sum(schedules.alpha2(g_1) * x ** 2, axis=-1)
                  + x.shape[-1] * (var - 1 - special(g_1).log_sigmoid(g_1)))


def decoder_logits(z_0: Array, g_0: Array, num_bins: int) -> Array:
    """Logits of p(x_d = k | z_0) ∝ N(z_0,d; a_0 v_k, σ_0²), shape (B, D) -> (B, D, K)."""
    v = bin_centers(num_bins, z_0)
    return -0.5 * ((z_0[..., None] - schedules.alpha(g_0) * v) ** 2) / schedules.sigma2(g_0)


def reconstruction_nll(x_index: Array, z_0: Array, g_0: Array, num_bins: int) -> Array:
    """−log p(x | z_0) summed over D; x_index integer (B, D) -> (B,)."""
    xp = namespace(z_0)
    log_p = special(z_0).log_softmax(decoder_logits(z_0, g_0, num_bins), axis=-1)
    return -xp.sum(xp.take_along_axis(log_p, x_index[..., None], axis=-1), axis=(-2, -1))


def discretize_time(u: Array, num_steps: int) -> tuple[Array, Array]:
    """Map u ~ U[0, 1) to a step i ~ U{1..T}: returns (s, t) = ((i − 1)/T, i/T)."""
    xp = namespace(u)
    i = xp.floor(u * num_steps) + 1
    i = xp.clip(i, 1, num_steps)
    return (i - 1) / num_steps, i / num_steps


def reverse_step(z_t: Array, x_hat: Array, g_s: Array, g_t: Array) -> tuple[Array, Array]:
    """Model step p_θ(z_s | z_t) = q(z_s | z_t, x = x̂): returns (loc, scale)."""
    coef_z, coef_x, var = schedules.posterior_coefficients(g_s, g_t)
    return coef_z * z_t + coef_x * x_hat, namespace(var).sqrt(var)


def forward_step(z_s: Array, g_s: Array, g_t: Array) -> tuple[Array, Array]:
    """Forward step q(z_t | z_s) = N(a_{t|s} z_s, σ²_{t|s}): returns (loc, scale)."""
    return schedules.alpha_ts(g_t, g_s) * z_s, namespace(g_t).sqrt(schedules.sigma2_ts(g_t, g_s))


def negative_elbo_terms(
    x_index: Array,
    u: Array,
    eps: Array,
    eps_0: Array,
    denoise_fn: Callable[[Array, Array], Array],
    gamma_fn: Callable[[Array], tuple[Array, Array]],
    num_bins: int,
    num_steps: int | None,
) -> DiffusionTerms:
    """One-sample estimate of the negative ELBO terms of each datum.

    Parameters
    ----------
    x_index : integer array, shape (B, D)
        Bin indices in {0, ..., K − 1}.
    u : array, shape (B,)
        Uniform variates on [0, 1): the time t (continuous) or the step i (discrete).
    eps, eps_0 : arrays, shape (B, D)
        Standard normal noise for z_t and for z_0 (reconstruction).
    denoise_fn : callable ``(z, gamma) -> eps_hat``, shapes (B, D), (B,) -> (B, D)
    gamma_fn : callable ``t -> (gamma, dgamma/dt)``
    num_bins : int
    num_steps : int or None
        T of the discrete-time loss L_T; ``None`` for the continuous-time L_∞.

    Returns
    -------
    DiffusionTerms
        Each of shape (B,), in nats.
    """
    xp = namespace(u)
    x = bin_values(x_index, num_bins, u)
    batch = u.shape[0]
    ends = xp.asarray([0.0, 1.0], dtype=u.dtype)
    if num_steps is None:  # one schedule evaluation for the endpoints and all times
        g_all, dg_all = gamma_fn(xp.concat([ends, u]))
        g_t, dg_t = g_all[2:], dg_all[2:]
    else:
        s, t = discretize_time(u, num_steps)
        g_all, _ = gamma_fn(xp.concat([ends, s, t]))
        g_s, g_t = g_all[2:batch + 2], g_all[batch + 2:]
    g_0, g_1 = g_all[0], g_all[1]
    reconstruction = reconstruction_nll(x_index, q_sample(x, g_0, eps_0), g_0, num_bins)
    prior = prior_kl(x, g_1)
    eps_hat = denoise_fn(q_sample(x, g_t[:, None], eps), g_t)
    if num_steps is None:
        diffusion = continuous_loss_eps(eps, eps_hat, dg_t)
    else:
        diffusion = num_steps * step_kl_eps(eps, eps_hat, g_s, g_t)
    return DiffusionTerms(reconstruction, prior, diffusion)


def to_bits_per_dim(terms: DiffusionTerms, num_dims: int) -> DiffusionTerms:
    """Divide each term by D log 2."""
    scale = 1.0 / (num_dims * math.log(2.0))
    return DiffusionTerms(*(term * scale for term in terms))


CHAIN_STEPS = "chain"
"""Default of every ``num_steps`` argument of the adapters: use the chain's own T."""

PROGRAM_STEPS_CONTINUOUS = 1000
"""Steps of the written-out program (model, guide, sampling) of a continuous-time chain."""


def resolve_steps(num_steps: int | None | str, chain_steps: int | None,
                  program: bool = False) -> int | None:
    """The number of steps T to use (None: continuous time).

    ``num_steps="chain"`` takes ``chain_steps``. A program (``program=True``) needs finite
    T, so continuous time is written out with :data:`PROGRAM_STEPS_CONTINUOUS` steps.
    """
    steps = chain_steps if isinstance(num_steps, str) and num_steps == CHAIN_STEPS else num_steps
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"num_steps must be a positive int, None (continuous time) or "
                         f"'chain'; got {num_steps!r}")
    if program and steps is None:
        return PROGRAM_STEPS_CONTINUOUS
    return steps


def check_data(x: Array, num_bins: int, num_dims: int | None) -> None:
    """Raise a ValueError unless ``x`` is an integer array of bin indices, shape (B, D).

    The range check 0 <= x < K is done where values are concrete (not under jax tracing).
    """
    xp = namespace(x)
    if len(x.shape) != 2 or not xp.isdtype(x.dtype, "integral"):
        raise ValueError(f"site 'x' expects integer bin indices of shape (batch, num_dims); "
                         f"got shape {tuple(x.shape)} and dtype {x.dtype}")
    if num_dims is not None and x.shape[1] != num_dims:
        raise ValueError(f"site 'x' expects {num_dims} dimensions (the chain's num_dims); "
                         f"got shape {tuple(x.shape)}")
    try:
        out_of_range = bool(xp.any((x < 0) | (x >= num_bins)))
    except Exception:  # abstract (traced) values: no range check possible
        return
    if out_of_range:
        raise ValueError(f"site 'x' expects bin indices in [0, {num_bins - 1}] (num_bins="
                         f"{num_bins}); got values in [{int(xp.min(x))}, {int(xp.max(x))}]")
