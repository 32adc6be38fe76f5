"""Kernel density scores and denoising score matching (math.md §3), backend-neutral.

Kernel density score. For ``q(x) = (1/M) Σ_i N(x; x^(i), σ² I)``::

    ∇_x log q(x) = Σ_i w_i(x) (x^(i) − x) / σ²,   w_i = softmax_i(−||x − x^(i)||² / (2σ²)),

computed with a max-shifted softmax, so the score stays finite far from the data
(where every kernel value underflows to zero).

Denoising score matching (Vincent 2011). With ``q(x | x0) = N(x; x0, σ² I)`` the
regression target is ``∇_x log q(x | x0) = (x0 − x) / σ²`` — the seed notes' sign
``(x − x0)/σ²`` is wrong and trains the negative score. The noise-conditional variant of
Song & Ermon (2019) averages over noise levels with weight ``λ(σ) = σ²``, which makes every
level contribute on the same scale: ``σ² · ½||s + ε/σ||² = ½||σ s + ε||²``.

No randomness here: the noise ``ε`` and the perturbed points are arguments.
"""

from __future__ import annotations

import math
from typing import Any

from ppl_vi.core._xp import namespace, special

__all__ = ["kde_log_density", "kde_score", "perturb", "dsm_target", "dsm_loss"]

Array = Any


def _check_kde_inputs(x: Array, data: Array, bandwidth: Any) -> None:
    if data.ndim != 2:
        raise ValueError(f"kde: `data` must have shape (M, D); got shape {tuple(data.shape)}")
    if x.ndim < 1 or x.shape[-1] != data.shape[-1]:
        raise ValueError(
            f"kde: `x` must have shape (..., D) with D = {data.shape[-1]} (the data's last axis); "
            f"got shape {tuple(x.shape)}"
        )
    if isinstance(bandwidth, (int, float)) and not bandwidth > 0:
        raise ValueError(f"kde: `bandwidth` must be positive; got {bandwidth}")


def _kde_logits(x: Array, data: Array, bandwidth: Any) -> Array:
    """``−||x − x^(i)||² / (2σ²)``, shape ``(..., M)``."""
    xp = namespace(x, data)
    diff = x[..., None, :] - data
    return -xp.sum(diff * diff, axis=-1) / (2 * bandwidth**2)


def kde_log_density(x: Array, data: Array, bandwidth: Any) -> Array:
    """Log density of the Gaussian kernel density estimate ``(1/M) Σ_i N(x; x^(i), σ² I)``.

    Parameters
    ----------
    x : array, shape (..., D)
        Points at which to evaluate.
    data : array, shape (M, D)
        Kernel centres.
    bandwidth : float or 0-d array
        Kernel standard deviation σ > 0.

    Returns
    -------
    array, shape (...)
    """
    _check_kde_inputs(x, data, bandwidth)
    xp = namespace(x, data)
    num_data, dim = data.shape
    log_kernel_norm = 0.5 * dim * xp.log(2 * math.pi * bandwidth**2 * xp.ones((), dtype=x.dtype))
    return special(x).logsumexp(_kde_logits(x, data, bandwidth), axis=-1) - math.log(num_data) - log_kernel_norm


def kde_score(x: Array, data: Array, bandwidth: Any) -> Array:
    """Score ``∇_x log q(x)`` of the Gaussian kernel density estimate.

    ``Σ_i w_i(x) (x^(i) − x)/σ²`` with stable softmax weights ``w_i`` (math.md §3).

    Parameters
    ----------
    x : array, shape (..., D)
    data : array, shape (M, D)
    bandwidth : float or 0-d array
        Kernel standard deviation σ > 0.

    Returns
    -------
    array, shape (..., D)

    Examples
    --------
    >>> import torch
    >>> data = torch.tensor([[0.0], [2.0]])
    >>> kde_score(torch.tensor([[1.0]]), data, 1.0)   # midway: the pulls cancel
    tensor([[0.]])
    """
    _check_kde_inputs(x, data, bandwidth)
    xp = namespace(x, data)
    weights = special(x).softmax(_kde_logits(x, data, bandwidth), axis=-1)
    weighted_centre = xp.matmul(weights, data)
    return (weighted_centre - x) / bandwidth**2


def _per_sample(sigma: Array, x: Array) -> Array:
    """Broadcast a noise level (scalar or shape ``(B,)``) against ``x`` of shape ``(B, ...)``."""
    if isinstance(sigma, (int, float)) or sigma.ndim == 0:
        return sigma
    if sigma.ndim != 1 or sigma.shape[0] != x.shape[0]:
        raise ValueError(
            f"dsm: `sigma` must be a scalar or have shape (B,) = ({x.shape[0]},) matching the batch "
            f"axis of x; got shape {tuple(sigma.shape)}"
        )
    return namespace(sigma).reshape(sigma, (x.shape[0],) + (1,) * (x.ndim - 1))


def perturb(x0: Array, noise: Array, sigma: Array) -> Array:
    """Perturbed data ``x = x0 + σ ε`` (a draw of ``q(x | x0) = N(x0, σ² I)`` given ``ε``).

    Parameters
    ----------
    x0 : array, shape (B, ...)
    noise : array, shape (B, ...)
        Standard normal ``ε``.
    sigma : float or array of shape () or (B,)
    """
    return x0 + _per_sample(sigma, x0) * noise


def dsm_target(x: Array, x0: Array, sigma: Array) -> Array:
    """Denoising score matching target ``∇_x log q(x | x0) = (x0 − x) / σ²``.

    Parameters
    ----------
    x, x0 : array, shape (B, ...)
        Perturbed and clean data.
    sigma : float or array of shape () or (B,)

    Returns
    -------
    array, shape (B, ...)
    """
    return (x0 - x) / _per_sample(sigma, x) ** 2


def dsm_loss(score: Array, x: Array, x0: Array, sigma: Array, *, sigma_weighted: bool = False) -> Array:
    """Denoising score matching objective ``J2`` (Vincent 2011), averaged over the batch.

    ``mean_b  λ(σ_b) · ½ ||score_b − (x0_b − x_b)/σ_b²||²`` with ``λ(σ) = σ²`` when
    ``sigma_weighted`` (Song & Ermon's noise-conditional objective, one level per sample)
    and ``λ = 1`` otherwise. ``J2`` differs from the explicit score-matching loss
    ``J1 = E ½||s − ∇ log q(x)||²`` by a constant independent of the score model.

    Parameters
    ----------
    score : array, shape (B, ...)
        The model's score ``s_θ(x)`` (or ``s_θ(x, σ)``) at the perturbed points.
    x, x0 : array, shape (B, ...)
        Perturbed and clean data.
    sigma : float or array of shape () or (B,)
        Noise level of each sample.
    sigma_weighted : bool
        Apply ``λ(σ) = σ²``.

    Returns
    -------
    array, shape ()
    """
    if score.shape != x.shape or x0.shape != x.shape:
        raise ValueError(
            f"dsm_loss: `score`, `x` and `x0` must have the same shape; got {tuple(score.shape)}, "
            f"{tuple(x.shape)}, {tuple(x0.shape)}"
        )
    xp = namespace(score, x, x0)
    residual = score - dsm_target(x, x0, sigma)
    per_sample = 0.5 * xp.sum(xp.reshape(residual * residual, (x.shape[0], -1)), axis=-1)
    if sigma_weighted:
        per_sample = per_sample * (xp.reshape(sigma, (-1,)) if not isinstance(sigma, (int, float)) else sigma) ** 2
    return xp.mean(per_sample)
