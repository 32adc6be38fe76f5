"""Mean-to-natural inversions that have no closed form.

The Gamma, Beta, Dirichlet and Wishart maps ``mu -> eta`` need the root of an
equation in digamma functions. Each is solved by a fixed number of Newton steps on a
log-scale unknown, each step clipped to ``[-1, 1]`` (a change of at most a factor
``e``), so the iterate stays in the domain and the cost is static (jit-friendly);
convergence from the starting point is reached well within the step budget over the
parameter ranges the tests cover (concentrations 1e-2 .. 1e4).

Gradients: the iterations run on ``stop_gradient`` copies, and one last Newton step is
taken with gradients attached. At the root that step's derivative is the
implicit-function derivative ``-J^{-1} df/dtarget``, so first derivatives are exact
without differentiating through the loop (second derivatives are not). References: T. Minka, *Estimating a Gamma
distribution* (2002) and *Estimating a Dirichlet distribution* (2000/2012).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ppl_vi.core._xp import namespace, special

Array = Any

__all__ = ["gamma_shape_from_log_gap", "dirichlet_from_mean_log", "multipolygamma", "wishart_df_from_log_gap"]

_MAX_LOG_STEP = 1.0


def _solve_log(newton_step: Callable[[Array, Array], Array], u: Array, target: Array, num_steps: int) -> Array:
    """Root ``u`` of an equation in ``(u, target)``, given its Newton increment.

    ``newton_step(u, target)`` returns ``-f(u) / f'(u)`` (or its vector analogue);
    the iterations see a gradient-free copy, the last step carries the gradient.
    """
    xp, sp = namespace(target), special(target)
    fixed_target, u = sp.stop_gradient(target), sp.stop_gradient(u)
    for _ in range(num_steps):
        u = u + xp.clip(newton_step(u, fixed_target), -_MAX_LOG_STEP, _MAX_LOG_STEP)
    u = sp.stop_gradient(u)
    return u + newton_step(u, target)


def gamma_shape_from_log_gap(log_gap: Array, num_steps: int = 6) -> Array:
    """Solve ``log(a) - digamma(a) = log_gap`` for the Gamma shape ``a`` (``log_gap > 0``).

    ``log_gap = log E[x] - E[log x]``. Starts from Minka's approximation
    ``a = (3 - s + sqrt((s - 3)^2 + 24 s)) / (12 s)``.
    """
    xp, sp = namespace(log_gap), special(log_gap)

    def newton_step(u: Array, gap: Array) -> Array:
        a = xp.exp(u)
        residual = u - sp.digamma(a) - gap
        slope = 1.0 - a * sp.polygamma(1, a)  # d residual / d log a  (< 0)
        return -residual / slope

    s = sp.stop_gradient(log_gap)
    start = (3.0 - s + xp.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    return xp.exp(_solve_log(newton_step, xp.log(start), log_gap, num_steps))


def dirichlet_from_mean_log(mean_log: Array, num_steps: int = 25) -> Array:
    """Solve ``digamma(a_k) - digamma(sum a) = mean_log_k`` for the concentration ``a``.

    Newton on ``log a``; the Jacobian ``diag(a psi'(a)) - psi'(a_0) 1 a^T`` is inverted
    by Sherman–Morrison. The start uses ``digamma(x) ~ log(x - 1/2)``, exact for large
    ``a``: with ``E = sum_k exp(mean_log_k)``, ``a_0 = (K - E) / (2 (1 - E))`` and
    ``a_k = 1/2 + (a_0 - 1/2) exp(mean_log_k)``.

    Parameters
    ----------
    mean_log : array, shape (..., K)
        ``E[log x_k]`` under the target Dirichlet (all negative).

    Returns
    -------
    array, shape (..., K)
    """
    xp, sp = namespace(mean_log), special(mean_log)

    def newton_step(u: Array, target: Array) -> Array:
        a = xp.exp(u)
        a0 = xp.sum(a, axis=-1, keepdims=True)
        residual = sp.digamma(a) - sp.digamma(a0) - target
        diag = a * sp.polygamma(1, a)
        rank_one = sp.polygamma(1, a0)
        d_inv_r = residual / diag
        correction = (
            rank_one
            * xp.sum(a * d_inv_r, axis=-1, keepdims=True)
            / (1.0 - rank_one * xp.sum(a / diag, axis=-1, keepdims=True))
        )
        return -(d_inv_r + correction / diag)

    geometric = xp.exp(sp.stop_gradient(mean_log))
    total = xp.sum(geometric, axis=-1, keepdims=True)
    precision = (mean_log.shape[-1] - total) / (2.0 * (1.0 - total))
    start = xp.log(0.5 + (precision - 0.5) * geometric)
    return xp.exp(_solve_log(newton_step, start, mean_log, num_steps))


def multipolygamma(order: int, a: Array, dim: int) -> Array:
    """``sum_{i=0}^{dim-1} polygamma(order, a - i/2)``; order 0 is the derivative of
    ``multigammaln(a, dim)`` with respect to ``a``."""
    xp, sp = namespace(a), special(a)
    halves = xp.asarray([i / 2.0 for i in range(dim)], dtype=a.dtype)
    args = a[..., None] - halves
    values = sp.digamma(args) if order == 0 else sp.polygamma(order, args)
    return xp.sum(values, axis=-1)


def wishart_df_from_log_gap(log_gap: Array, dim: int, num_steps: int = 10) -> Array:
    """Solve ``multipolygamma(0, nu/2, p) + p log 2 - p log nu = log_gap`` for ``nu > p - 1``.

    ``log_gap = E[log|X|] - log|E[X]|`` (negative). Newton on ``log(nu - p + 1)``; the
    start puts that excess at the large-``nu`` approximation ``p (p + 1) / (-2 log_gap)``
    of ``nu`` itself, which is positive for every gap (so ``nu`` starts ``p - 1`` above
    the approximation: harmless for large ``nu``, and inside the domain for small ones).
    """
    xp, sp = namespace(log_gap), special(log_gap)
    p = dim

    def newton_step(u: Array, gap: Array) -> Array:
        excess = xp.exp(u)
        nu = excess + (p - 1)
        residual = multipolygamma(0, nu / 2.0, p) + p * math.log(2.0) - p * xp.log(nu) - gap
        slope = excess * (0.5 * multipolygamma(1, nu / 2.0, p) - p / nu)
        return -residual / slope

    start = xp.log(p * (p + 1) / (-2.0 * sp.stop_gradient(log_gap)))
    return xp.exp(_solve_log(newton_step, start, log_gap, num_steps)) + (p - 1)
