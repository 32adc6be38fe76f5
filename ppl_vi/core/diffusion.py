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
from ppl_vi.core._xp import is_jax, is_torch, namespace, special

__all__ = [
    "DiffusionTerms", "bin_centers", "bin_values", "q_sample", "x_from_eps", "gaussian_kl",
    "step_kl", "step_kl_eps", "continuous_loss_eps", "BoundaryConstants", "boundary_constants",
    "prior_kl", "decoder_logits",
    "reconstruction_nll", "discretize_time", "reverse_step", "reverse_step_eps", "forward_step",
    "negative_elbo_terms", "to_bits_per_dim", "CHAIN_STEPS", "PROGRAM_STEPS_CONTINUOUS",
    "check_chain_arguments", "resolve_steps", "program_batch_size", "check_data",
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


class BoundaryConstants(NamedTuple):
    """Scalars of the reconstruction and prior terms, computed once from γ_0 = γ(0) and
    γ_1 = γ(1) (see :func:`boundary_constants`)."""

    alpha_0: Array
    """a_0, shape ()."""
    sigma_0: Array
    """σ_0, shape ()."""
    decoder_means: Array
    """a_0 v_k, the means of the decoder's K Gaussians, shape (K,)."""
    decoder_scale: Array
    """−1 / (2 σ_0²): logits are ``decoder_scale · (z_0 − a_0 v_k)²``, shape ()."""
    prior_scale: Array
    """½ a_1², shape ()."""
    prior_offset: Array
    """½ (σ_1² − 1 − log σ_1²), the x-free part of the prior KL per dimension, shape ()."""


def boundary_constants(g_0: Array, g_1: Array, num_bins: int) -> BoundaryConstants:
    """The constants of :class:`BoundaryConstants` for K = ``num_bins`` bins."""
    a_0 = schedules.alpha(g_0)
    return BoundaryConstants(
        alpha_0=a_0,
        sigma_0=schedules.sigma(g_0),
        decoder_means=a_0 * bin_centers(num_bins, g_0),
        decoder_scale=-0.5 / schedules.sigma2(g_0),
        prior_scale=0.5 * schedules.alpha2(g_1),
        prior_offset=0.5 * (schedules.sigma2(g_1) - 1 - special(g_1).log_sigmoid(g_1)),
    )


def prior_kl(x: Array, boundary: BoundaryConstants) -> Array:
    """KL(q(z_1 | x) || N(0, I)) = ½ Σ_d (σ_1² + a_1² x_d² − 1 − log σ_1²); x (B, D) -> (B,)."""
    return boundary.prior_scale * namespace(x).sum(x ** 2, axis=-1) + x.shape[-1] * boundary.prior_offset


def decoder_logits(z_0: Array, boundary: BoundaryConstants) -> Array:
    """Logits of p(x_d = k | z_0) ∝ N(z_0,d; a_0 v_k, σ_0²), shape (B, D) -> (B, D, K)."""
    return boundary.decoder_scale * (z_0[..., None] - boundary.decoder_means) ** 2


def reconstruction_nll(x_index: Array, z_0: Array, boundary: BoundaryConstants) -> Array:
    """−log p(x | z_0) summed over D; x_index integer (B, D) -> (B,)."""
    log_p = special(z_0).log_softmax(decoder_logits(z_0, boundary), axis=-1)
    return -namespace(z_0).sum(_take_last_axis(log_p, x_index), axis=-1)


def _take_last_axis(values: Array, index: Array) -> Array:
    """``values[..., index]`` elementwise: shapes (..., K), (...) -> (...).

    torch's ``gather`` directly: array_api_compat's ``take_along_axis`` adds a
    negative-index fix-up and a broadcasting ``take_along_dim``, about 3× slower here.
    """
    if is_torch(values):
        return values.gather(-1, index[..., None])[..., 0]
    return namespace(values).take_along_axis(values, index[..., None], axis=-1)[..., 0]


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


def reverse_step_eps(z_t: Array, eps_hat: Array, g_s: Array, g_t: Array) -> tuple[Array, Array]:
    """:func:`reverse_step` of an ε-prediction ε̂, with x̂ = (z_t − σ_t ε̂)/a_t."""
    return reverse_step(z_t, x_from_eps(z_t, g_t, eps_hat), g_s, g_t)


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
    boundary: BoundaryConstants,
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
    boundary : BoundaryConstants
        From γ(0) and γ(1) of the same schedule; fixes K = ``len(boundary.decoder_means)``.
    num_steps : int or None
        T of the discrete-time loss L_T; ``None`` for the continuous-time L_∞.

    Returns
    -------
    DiffusionTerms
        Each of shape (B,), in nats.
    """
    x = bin_values(x_index, boundary.decoder_means.shape[0], u)
    if num_steps is None:
        g_t, dg_t = gamma_fn(u)
    else:
        s, t = discretize_time(u, num_steps)
        g_st, _ = gamma_fn(namespace(u).concat([s, t]))
        g_s, g_t = g_st[:u.shape[0]], g_st[u.shape[0]:]
    z_0 = boundary.alpha_0 * x + boundary.sigma_0 * eps_0
    reconstruction = reconstruction_nll(x_index, z_0, boundary)
    prior = prior_kl(x, boundary)
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


def check_chain_arguments(schedule: schedules.Schedule, num_steps: int | None, num_bins: int,
                          num_dims: int | None) -> int | None:
    """Validate a chain's construction arguments; returns its T (None: continuous time)."""
    if not isinstance(schedule, schedules.Schedule):
        raise TypeError(f"schedule must be a ppl_vi.core.schedules.Schedule (linear, cosine, "
                        f"learned); got {type(schedule).__name__}")
    for name, value, least in (("num_bins", num_bins, 2), ("num_dims", num_dims, 1)):
        if value is None and name == "num_dims":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
    return resolve_steps(num_steps, None)


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


def _is_traced(x: Array) -> bool:
    """Whether ``x`` is an abstract jax value (inside ``jit``/``grad``/``vmap``)."""
    if not is_jax(x):
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def program_batch_size(x: Array | None, num_samples: int | None, num_dims: int | None) -> int:
    """Rows of the chain program: ``x``'s batch when observed, else ``num_samples``.

    Raises
    ------
    ValueError
        When sampling (``x`` is None) without ``num_samples`` or without a known D.
    """
    if x is not None:
        return x.shape[0]
    if num_dims is None or num_samples is None:
        raise ValueError(f"sampling x (model(x=None), sample()) needs num_samples and a known num_dims "
                         f"(pass num_dims= to DiffusionChain); got num_samples={num_samples}, "
                         f"num_dims={num_dims}")
    return num_samples


def check_data(x: Array, num_bins: int, num_dims: int | None, check_range: bool = True) -> None:
    """Raise a ValueError unless ``x`` is an integer array of bin indices, shape (B, D).

    The range check 0 <= x < K (two reductions) runs when ``check_range`` is true and the
    values are concrete (not under jax tracing, where even a captured constant's minimum is
    abstract).
    """
    xp = namespace(x)
    if len(x.shape) != 2 or not xp.isdtype(x.dtype, "integral"):
        raise ValueError(f"site 'x' expects integer bin indices of shape (batch, num_dims); "
                         f"got shape {tuple(x.shape)} and dtype {x.dtype}")
    if num_dims is not None and x.shape[1] != num_dims:
        raise ValueError(f"site 'x' expects {num_dims} dimensions (the chain's num_dims); "
                         f"got shape {tuple(x.shape)}")
    if not check_range:
        return
    low, high = xp.min(x), xp.max(x)
    if _is_traced(low):
        return
    low, high = int(low), int(high)
    if low < 0 or high >= num_bins:
        raise ValueError(f"site 'x' expects bin indices in [0, {num_bins - 1}] (num_bins="
                         f"{num_bins}); got values in [{low}, {high}]")
