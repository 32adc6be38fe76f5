"""Langevin steps, the MALA correction and annealed step sizes (math.md §3), backend-neutral.

Unadjusted Langevin algorithm (ULA)::

    x' = x + h ∇ log p(x) + sqrt(2h) ε,        ε ~ N(0, I).

Its stationary law is p only as h → 0; on a Gaussian target N(m, s²) it is
N(m, s² / (1 − h/(2s²))). The Metropolis-adjusted version (MALA; Roberts & Tweedie 1996)
treats x' as a proposal with density ``q(x' | x) = N(x + h ∇ log p(x), 2h I)`` and accepts
it with probability ``min(1, p(x') q(x | x') / (p(x) q(x' | x)))``, which removes the bias.

Annealed Langevin (Song & Ermon 2019): noise levels σ_1 > … > σ_L, step sizes
``α_i = ε σ_i² / σ_L²``, a few Langevin steps with the score of the σ_i-perturbed density
at each level.

Positions have shape ``(..., D)``: leading axes are independent chains, the last axis is
the event. No randomness here: noise and uniforms are arguments.
"""

from __future__ import annotations

from typing import Any

from ppl_vi.core._xp import namespace

__all__ = [
    "ula_step",
    "mala_log_proposal",
    "mala_log_acceptance",
    "mala_select",
    "acceptance_probability",
    "annealed_step_sizes",
    "adapt_log_step_size",
]

Array = Any


def ula_step(x: Array, score: Array, noise: Array, step_size: Any) -> Array:
    """One Langevin step ``x + h score + sqrt(2h) noise``.

    Parameters
    ----------
    x, score, noise : array, shape (..., D)
        Position, ``∇ log p(x)`` and a standard normal draw.
    step_size : float or array broadcastable to ``x``
        ``h > 0``.

    Returns
    -------
    array, shape (..., D)
    """
    if isinstance(step_size, (int, float)) and not step_size > 0:
        raise ValueError(f"ula_step: `step_size` must be positive; got {step_size}")
    return x + step_size * score + (2 * step_size) ** 0.5 * noise


def mala_log_proposal(x_to: Array, x_from: Array, score_from: Array, step_size: Any) -> Array:
    """``log q(x_to | x_from)`` up to a constant, with ``q = N(x_from + h ∇log p(x_from), 2h I)``.

    The constant cancels in the acceptance ratio. Returns shape ``(...)``.
    """
    xp = namespace(x_to, x_from, score_from)
    residual = x_to - x_from - step_size * score_from
    return -xp.sum(residual * residual / (4 * step_size), axis=-1)


def mala_log_acceptance(
    x: Array,
    proposal: Array,
    log_density_x: Array,
    log_density_proposal: Array,
    score_x: Array,
    score_proposal: Array,
    step_size: Any,
) -> Array:
    """Log Metropolis–Hastings ratio of a Langevin proposal.

    ``log p(x') − log p(x) + log q(x | x') − log q(x' | x)``, shape ``(...)``.
    The acceptance probability is ``min(1, exp(·))``.
    """
    return (
        log_density_proposal
        - log_density_x
        + mala_log_proposal(x, proposal, score_proposal, step_size)
        - mala_log_proposal(proposal, x, score_x, step_size)
    )


def mala_select(x: Array, proposal: Array, log_acceptance: Array, log_uniform: Array) -> tuple[Array, Array]:
    """Accept ``proposal`` where ``log U < log acceptance ratio``.

    Parameters
    ----------
    x, proposal : array, shape (..., D)
    log_acceptance, log_uniform : array, shape (...)
        ``log_uniform`` is ``log U`` with ``U ~ Uniform(0, 1)``.

    Returns
    -------
    (array of shape (..., D), bool array of shape (...))
        New position and which chains accepted.
    """
    xp = namespace(x, proposal)
    accepted = log_uniform < log_acceptance
    return xp.where(accepted[..., None], proposal, x), accepted


def acceptance_probability(log_acceptance: Array) -> Array:
    """``min(1, exp(log ratio))``, and 0 where the ratio is NaN (a proposal off the support)."""
    xp = namespace(log_acceptance)
    probability = xp.exp(xp.minimum(log_acceptance, xp.zeros_like(log_acceptance)))
    return xp.where(xp.isnan(log_acceptance), xp.zeros_like(probability), probability)


def annealed_step_sizes(sigmas: Array, eps: Any) -> Array:
    """Song & Ermon's step sizes ``α_i = ε σ_i² / σ_L²`` for levels ``σ_1 > … > σ_L``.

    Parameters
    ----------
    sigmas : array, shape (L,)
        Decreasing noise levels.
    eps : float
        Step size at the last (smallest) level.

    Returns
    -------
    array, shape (L,)
    """
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"annealed_step_sizes: `sigmas` must have shape (L,), L ≥ 1; got {tuple(sigmas.shape)}")
    return eps * sigmas**2 / sigmas[-1] ** 2


def adapt_log_step_size(log_step_size: Any, acceptance_probability: Any, iteration: Any, target: float = 0.574) -> Any:
    """One Robbins–Monro update of ``log h`` towards a target mean acceptance probability.

    ``log h ← log h + (ā − target) / (iteration + 10)^0.6`` where ``ā`` is the acceptance
    probability averaged over chains; 0.574 is the optimal MALA acceptance rate
    (Roberts & Rosenthal 1998). Used during warm-up only.
    """
    return log_step_size + (acceptance_probability - target) / (iteration + 10) ** 0.6
