"""Kernel density scores and the denoising score-matching loss for jax (NumPyro) users.

The formulas live in :mod:`ppl_vi.core.score`; this module draws the noise (and, for the
noise-conditional loss, the noise level of each sample) from a jax PRNG key.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ppl_vi.core import score as _core

__all__ = ["kde_score", "kde_log_density", "dsm_loss"]

kde_score = _core.kde_score
kde_log_density = _core.kde_log_density


def dsm_loss(
    score_fn: Callable,
    x0: jax.Array,
    sigma,
    rng_key: Optional[jax.Array] = None,
    *,
    noise: Optional[jax.Array] = None,
    level_index: Optional[jax.Array] = None,
) -> jax.Array:
    """Monte Carlo denoising score-matching loss on a batch of clean data.

    Two forms, chosen by the shape of ``sigma``:

    * ``sigma`` a scalar: ``x = x0 + σ ε`` and the loss is
      ``mean ½||score_fn(x) − (x0 − x)/σ²||²`` (Vincent 2011);
    * ``sigma`` of shape ``(L,)`` (noise levels): each sample gets a level ``σ_b`` drawn
      uniformly from ``sigma``, and the loss is
      ``mean σ_b² · ½||score_fn(x, σ_b) − (x0 − x)/σ_b²||²`` with ``score_fn`` called on
      ``x`` of shape ``(B, ...)`` and ``σ_b`` of shape ``(B,)`` (Song & Ermon 2019).

    Parameters
    ----------
    score_fn : callable
        ``score_fn(x)`` or ``score_fn(x, sigma)``, returning an array shaped like ``x``.
    x0 : jax.Array, shape (B, ...)
        Clean data.
    sigma : float or jax.Array of shape () or (L,)
    rng_key : jax.Array, optional
        Key for the noise (and levels); not needed when ``noise`` (and ``level_index``)
        are given.
    noise : jax.Array, shape (B, ...), optional
        Standard normal ε to use instead of drawing it.
    level_index : int jax.Array, shape (B,), optional
        Level of each sample (noise-conditional form) instead of drawing it.

    Returns
    -------
    jax.Array, shape ()

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> x0 = jnp.zeros((4, 2))
    >>> float(dsm_loss(lambda x: -x, x0, 1.0, noise=jnp.ones((4, 2))))  # target (x0 - x)/σ² = -x
    0.0
    """
    sigma = jnp.asarray(sigma, dtype=x0.dtype)
    if sigma.ndim > 1:
        raise ValueError(f"dsm_loss: `sigma` must be a scalar or a 1-D array of levels; got shape {sigma.shape}")
    need_key = noise is None or (sigma.ndim == 1 and level_index is None)
    if need_key and rng_key is None:
        raise ValueError("dsm_loss: pass `rng_key` (or both `noise` and, for several levels, `level_index`)")
    key_noise, key_level = jax.random.split(rng_key) if need_key else (None, None)
    if noise is None:
        noise = jax.random.normal(key_noise, x0.shape, dtype=x0.dtype)
    if sigma.ndim == 0:
        x = _core.perturb(x0, noise, sigma)
        return _core.dsm_loss(score_fn(x), x, x0, sigma)
    if level_index is None:
        level_index = jax.random.randint(key_level, (x0.shape[0],), 0, sigma.shape[0])
    sigma_per_sample = sigma[level_index]
    x = _core.perturb(x0, noise, sigma_per_sample)
    return _core.dsm_loss(score_fn(x, sigma_per_sample), x, x0, sigma_per_sample, sigma_weighted=True)
