"""Kernel density scores and the denoising score-matching loss for torch (Pyro) users.

The formulas live in :mod:`ppl_vi.core.score`; this module draws the noise (and, for the
noise-conditional loss, the noise level of each sample) with torch's RNG — the global one,
which ``pyro.set_rng_seed`` seeds, or a given ``torch.Generator``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ppl_vi.core import score as _core

__all__ = ["kde_score", "kde_log_density", "dsm_loss"]

kde_score = _core.kde_score
kde_log_density = _core.kde_log_density


def dsm_loss(
    score_fn: Callable,
    x0: torch.Tensor,
    sigma,
    generator: Optional[torch.Generator] = None,
    *,
    noise: Optional[torch.Tensor] = None,
    level_index: Optional[torch.Tensor] = None,
) -> torch.Tensor:
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
        ``score_fn(x)`` or ``score_fn(x, sigma)``, returning a tensor shaped like ``x``.
    x0 : torch.Tensor, shape (B, ...)
        Clean data.
    sigma : float or torch.Tensor of shape () or (L,)
    generator : torch.Generator, optional
        Source of randomness; the global torch RNG when ``None``.
    noise : torch.Tensor, shape (B, ...), optional
        Standard normal ε to use instead of drawing it.
    level_index : int torch.Tensor, shape (B,), optional
        Level of each sample (noise-conditional form) instead of drawing it.

    Returns
    -------
    torch.Tensor, shape ()

    Examples
    --------
    >>> import torch
    >>> x0 = torch.zeros(4, 2)
    >>> float(dsm_loss(lambda x: -x, x0, 1.0, noise=torch.ones(4, 2)))  # target (x0 - x)/σ² = -x
    0.0
    """
    sigma = torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device)
    if sigma.ndim > 1:
        raise ValueError(f"dsm_loss: `sigma` must be a scalar or a 1-D tensor of levels; got shape {tuple(sigma.shape)}")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    if sigma.ndim == 0:
        x = _core.perturb(x0, noise, sigma)
        return _core.dsm_loss(score_fn(x), x, x0, sigma)
    if level_index is None:
        level_index = torch.randint(0, sigma.shape[0], (x0.shape[0],), generator=generator, device=x0.device)
    sigma_per_sample = sigma[level_index]
    x = _core.perturb(x0, noise, sigma_per_sample)
    return _core.dsm_loss(score_fn(x, sigma_per_sample), x, x0, sigma_per_sample, sigma_weighted=True)
