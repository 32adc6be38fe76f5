"""Gaussian-VAE loss pieces (math.md §1), backend-neutral and noise-as-argument.

Decoder ``p_θ(x|z) = N(f_θ(z), σ² I_D)``, encoder ``q_φ(z|x) = N(μ, diag s²)``,
prior ``N(0, I_k)``. Per datapoint

``−ELBO = E_q[ ||x − f_θ(z)||² ]/(2σ²) + (D/2) log(2πσ²)
        + ½ Σ_j (s_j² + μ_j² − 1 − log s_j²)``

with the expectation estimated from reparameterized draws ``z = μ + s ⊙ ε``. The
importance-weighted bound (IWAE, Burda et al. 2016) with k draws from q is
``log (1/k) Σ_s p(x, z_s) / q(z_s | x)``; it is ≤ log p(x) and increases to it with k.

All functions take torch tensors or jax arrays; ``decode_fn`` is any callable of the
same backend mapping ``(..., k) -> (..., D)``. No randomness here: ``noise`` is an
argument, so the two backends agree to float tolerance on the same inputs.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ppl_vi.core._xp import namespace, special

__all__ = [
    "kl_diag_normal_to_standard",
    "diag_normal_log_prob",
    "gaussian_log_likelihood",
    "reparameterize",
    "log_mean_exp",
    "vae_negative_elbo",
    "iwae_log_evidence",
    "check_encoder_output",
    "amortization_gap_estimates",
]

Array = Any
_LOG_2PI = math.log(2.0 * math.pi)


def kl_diag_normal_to_standard(loc: Array, scale: Array) -> Array:
    """``KL(N(loc, diag scale²) || N(0, I))`` summed over the last axis.

    Parameters
    ----------
    loc, scale : array, shape ``(..., k)``
        Mean and standard deviation (``scale > 0``).

    Returns
    -------
    array, shape ``(...)``
        ``½ Σ_j (scale_j² + loc_j² − 1 − log scale_j²)``.
    """
    xp = namespace(loc, scale)
    var = scale**2
    return 0.5 * xp.sum(var + loc**2 - 1.0 - xp.log(var), axis=-1)


def diag_normal_log_prob(value: Array, loc: Array, scale: Array) -> Array:
    """``log N(value; loc, diag scale²)`` summed over the last axis; shapes broadcast."""
    xp = namespace(value, loc, scale)
    standardized = (value - loc) / scale
    per_coordinate = -0.5 * standardized**2 - xp.log(scale) - 0.5 * _LOG_2PI
    return xp.sum(per_coordinate, axis=-1)


def gaussian_log_likelihood(x: Array, mean: Array, sigma: float) -> Array:
    """``log N(x; mean, σ² I_D)`` with every constant, summed over the last axis.

    Parameters
    ----------
    x, mean : array, shape ``(..., D)`` (broadcastable)
    sigma : float
        Fixed observation standard deviation ``σ > 0``.

    Returns
    -------
    array, shape ``(...)``
        ``−||x − mean||²/(2σ²) − (D/2) log(2πσ²)``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    xp = namespace(x, mean)
    dim = x.shape[-1]
    squared_error = xp.sum((x - mean) ** 2, axis=-1)
    return -squared_error / (2.0 * sigma**2) - 0.5 * dim * (_LOG_2PI + 2.0 * math.log(sigma))


def reparameterize(loc: Array, scale: Array, noise: Array) -> Array:
    """``z = loc + scale ⊙ noise``; ``noise`` of shape ``(S, ..., k)`` gives ``S`` draws."""
    return loc + scale * noise


def log_mean_exp(log_values: Array, axis: int = 0) -> Array:
    """``log((1/k) Σ exp(log_values))`` along ``axis`` (k = its length), stably."""
    count = log_values.shape[axis]
    return special(log_values).logsumexp(log_values, axis=axis) - math.log(count)


def vae_negative_elbo(
    x: Array,
    loc: Array,
    scale: Array,
    noise: Array,
    decode_fn: Callable[[Array], Array],
    sigma: float,
) -> Array:
    """Per-datapoint Gaussian-VAE ``−ELBO`` with the analytic KL (math.md §1).

    Parameters
    ----------
    x : array, shape ``(B, D)``
        Data.
    loc, scale : array, shape ``(B, k)``
        Encoder output: mean and standard deviation of ``q(z | x_i)``.
    noise : array, shape ``(S, B, k)``
        Standard-normal draws; the reconstruction term is their average.
    decode_fn : callable
        ``(S, B, k) -> (S, B, D)``, the decoder mean ``f_θ``.
    sigma : float
        Decoder standard deviation ``σ``.

    Returns
    -------
    array, shape ``(B,)``
        ``−mean_s log N(x_i; f_θ(z_is), σ²I) + KL(q(z|x_i) || N(0, I))``.
    """
    xp = namespace(x, loc, scale, noise)
    z = reparameterize(loc, scale, noise)
    reconstruction = xp.mean(gaussian_log_likelihood(x, decode_fn(z), sigma), axis=0)
    return -reconstruction + kl_diag_normal_to_standard(loc, scale)


def iwae_log_evidence(
    x: Array,
    loc: Array,
    scale: Array,
    noise: Array,
    decode_fn: Callable[[Array], Array],
    sigma: float,
) -> Array:
    """Per-datapoint IWAE estimate of ``log p(x_i)`` with ``k = noise.shape[0]`` draws.

    Same arguments as :func:`vae_negative_elbo`; returns shape ``(B,)``
    ``log (1/k) Σ_s [p(x_i | z_s) N(z_s; 0, I) / q(z_s | x_i)]``.
    """
    xp = namespace(x, loc, scale, noise)
    z = reparameterize(loc, scale, noise)
    zeros = xp.zeros_like(z)
    log_weights = (
        gaussian_log_likelihood(x, decode_fn(z), sigma)
        + diag_normal_log_prob(z, zeros, zeros + 1.0)
        - diag_normal_log_prob(z, loc, scale)
    )
    return log_mean_exp(log_weights, axis=0)


def check_encoder_output(site: str, loc: Array, scale: Array, expected_shape: tuple) -> None:
    """Raise ``ValueError`` unless ``loc`` and ``scale`` both have ``expected_shape``.

    ``site`` names the latent site (or ``"z"`` for :func:`vae_negative_elbo`) in the
    message, with what was expected and what the encoder returned.
    """
    shapes = (tuple(loc.shape), tuple(scale.shape))
    if shapes != (tuple(expected_shape), tuple(expected_shape)):
        raise ValueError(
            f"encoder output for site {site!r}: expected (loc, scale) of shape "
            f"{tuple(expected_shape)} each (batch first), got loc {shapes[0]} and scale "
            f"{shapes[1]}"
        )


def amortization_gap_estimates(
    x: Array,
    encoder_q: tuple[Array, Array],
    optimized_q: tuple[Array, Array],
    noise: Array,
    decode_fn: Callable[[Array], Array],
    sigma: float,
    num_importance: int,
) -> tuple[Array, Array, Array, Array]:
    """Per-datapoint ELBOs of two Gaussian q's on common draws, their gap, and IWAE.

    Parameters
    ----------
    x : array, shape ``(n, D)``
    encoder_q, optimized_q : (loc, scale), each ``(n, k)``
        ``q_φ(z|x_i)`` from the encoder and the per-datapoint optimum ``q_ψ*_i``.
    noise : array, shape ``(S, n, k)``
        Common standard-normal draws (common random numbers make the gap precise).
    decode_fn, sigma
        As in :func:`vae_negative_elbo`.
    num_importance : int
        ``k`` of the IWAE estimate (proposal ``q_ψ*``, the first ``k`` draws).

    Returns
    -------
    elbo_encoder, elbo_optimized, gap, iwae : arrays of shape ``(n,)``
        ``gap = elbo_optimized − elbo_encoder`` (math.md §1's amortization gap).
    """
    elbo_encoder = -vae_negative_elbo(x, *encoder_q, noise, decode_fn, sigma)
    elbo_optimized = -vae_negative_elbo(x, *optimized_q, noise, decode_fn, sigma)
    iwae = iwae_log_evidence(x, *optimized_q, noise[:num_importance], decode_fn, sigma)
    return elbo_encoder, elbo_optimized, elbo_optimized - elbo_encoder, iwae
