"""SQUAREM-accelerated CAVI: squared extrapolation of the sweep map, kept only if better.

On a mixture, a plain sweep is EM's map ``eta -> G(eta)`` on the continuous sites'
natural parameters (the discrete sites are a function of them after each sweep), and it
converges linearly, as slowly as the assignments hide information. SQUAREM (Varadhan &
Roland 2008, scheme S3, with the step-length control of their ``SQUAREM`` package)
extrapolates along two sweeps of that map. One step here:

1. two plain sweeps, ``eta_1 = G(eta_0)``, ``eta_2 = G(eta_1)``;
   ``r = eta_1 - eta_0``, ``v = eta_2 - 2 eta_1 + eta_0``;
2. the step length ``a = |r| / |v|`` clipped to ``[1, a_max]`` and the extrapolated point
   ``eta' = eta_0 + 2 a r + a^2 v`` (``a = 1`` gives ``eta_2``); while ``eta'`` lies
   outside some family's natural domain, ``a <- (a + 1) / 2`` (:data:`BACKTRACKS` times
   at most, then ``a = 1``);
3. the discrete sites set to their optimum given ``eta'``, then one plain sweep from
   there (SQUAREM's stabilising step): kept if its exact ELBO is finite and no lower than
   ``eta_2``'s, otherwise ``eta_2``'s state is kept;
4. ``a_max`` (the state's ``relaxation``; 0 at the start, read as 1) grows by
   :data:`STEP_GROWTH` when a step of length ``a_max`` is kept, up to :data:`STEP_BOUND_CAP`,
   and shrinks by it (not below 1) when one is rejected.

Unlike the ``SQUAREM`` package, a step is kept only if its ELBO is no lower (no slack),
and the stabilising sweep is never skipped. So every step gains at least what two plain
sweeps gain and the ELBO never decreases:
the relative ELBO change stays a sound stopping rule, and a fixed point is a fixed point
of CAVI. The first step (``a_max = 1``) is three plain sweeps, whatever the start. A step
costs three sweeps and an update of the discrete sites.

The step is written as three pure parts — :func:`plain_sweep`, :func:`extrapolate`,
:func:`accept` — that :func:`squarem_step` composes, so that a host can compile the
sweep once and call it three times (one sweep's compilation instead of three inlined).
Measured on the 100k-point GMM and on LDA: see :mod:`ppl_vi.core.cavi_acceleration`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

from ppl_vi.core._xp import namespace
from ppl_vi.core.cavi_extrapolation import continuous_sites, in_domain, move_continuous, select
from ppl_vi.core.cavi_objective import Plan
from ppl_vi.core.cavi_sweep import Grad, kept_natural, sweep

__all__ = ["BACKTRACKS", "STEP_GROWTH", "STEP_BOUND_CAP", "plain_sweep", "extrapolate", "accept", "squarem_step", "squarem_parts"]

STEP_GROWTH = 4.0
"""Factor by which the bound on the step length grows when a step at the bound is kept
and shrinks when one is rejected (the ``SQUAREM`` package's ``mstep``). On the GMM
benchmark (seed 1; SQUAREM from the first step, as one program, before the plain sweeps
first of :func:`~ppl_vi.core.cavi_acceleration.scheduled`) an unbounded step was rejected
in 64% of steps, and converged in 319 steps instead of 210."""

STEP_BOUND_CAP = 4.0**10
"""Largest bound on the step length (at an exact fixed point every step is kept at the
bound, which would otherwise grow without end)."""

BACKTRACKS = 6
"""Halvings of ``a - 1`` tried when the extrapolated point leaves a natural domain (after
six, ``a - 1`` is 1/64 of its first value; then ``a = 1``, the plain point)."""

State = tuple  # (eta, mu, elbo): eta as kept_natural keeps it


def _bound(step_max: Any) -> Any:
    """The bound ``a_max`` a state's ``relaxation`` stands for (0 at the start: 1)."""
    return namespace(step_max).maximum(step_max, 1.0)


def _norm(xp: Any, parts: Mapping[str, tuple]) -> Any:
    return xp.sqrt(sum(xp.sum(x * x) for value in parts.values() for x in value))


def plain_sweep(plan: Plan, grad: Grad, eta: Mapping[str, tuple], mu: Mapping[str, tuple]) -> State:
    """A plain sweep (:func:`~ppl_vi.core.cavi_sweep.sweep`): ``(eta, mu, elbo)``, with
    ``eta`` as :func:`kept_natural` keeps it (no discrete site's)."""
    new_eta, new_mu, value = sweep(plan, eta, mu, grad)
    return kept_natural(plan, new_eta), new_mu, value


def extrapolate(
    plan: Plan, grad: Grad, eta_0: Mapping[str, tuple], eta_1: Mapping[str, tuple], eta_2: Mapping[str, tuple],
    mu_2: Mapping[str, tuple], step_max: Any,
) -> tuple[dict, dict, Any]:
    """Steps 2 and 3's start: the extrapolated point with its discrete sites at their optimum.

    Parameters
    ----------
    eta_0, eta_1, eta_2 : dict
        Site name -> natural parameters before and after the two sweeps (continuous sites
        at least; each array of its site's natural-parameter shape).
    mu_2 : dict
        Every site's mean parameters after the two sweeps.
    step_max : scalar array
        The bound ``a_max`` (values below 1 read as 1).

    Returns
    -------
    eta, mu : dict
        The extrapolated point (``eta`` as :func:`kept_natural` keeps it), its discrete
        sites updated.
    length : scalar array
        The step length ``a`` taken (1: the plain point ``eta_2``).
    """
    continuous = continuous_sites(plan)
    xp = namespace(step_max)
    one = xp.ones_like(step_max)
    r = {n: tuple(b - a for a, b in zip(eta_0[n], eta_1[n])) for n in continuous}
    v = {n: tuple(c - 2.0 * b + a for a, b, c in zip(eta_0[n], eta_1[n], eta_2[n])) for n in continuous}
    r_norm, v_norm = _norm(xp, r), _norm(xp, v)
    bound = _bound(step_max)
    ratio = r_norm / xp.where(v_norm > 0.0, v_norm, one)
    length = xp.where((v_norm > 0.0) & (ratio < bound), ratio, bound)
    length = xp.where(length > 1.0, length, one)

    def point(a: Any) -> dict:
        # eta_0 + 2 a r + a^2 v, written from eta_2 so that a = 1 gives eta_2 exactly
        return {n: tuple(e + (a - 1.0) * (2.0 * dr + (a + 1.0) * dv) for e, dr, dv in zip(eta_2[n], r[n], v[n])) for n in continuous}

    # the first length on the way back to 1 whose point is valid (1, the plain point, if none is)
    chosen, found, trial = one, xp.zeros_like(step_max) > 0.0, length
    for _ in range(BACKTRACKS + 1):
        candidate = point(trial)
        inside = xp.isfinite(trial) & xp.all(xp.stack([xp.all(in_domain(plan.latents[n].q_family, candidate[n])) for n in continuous]))
        chosen = xp.where(~found & inside, trial, chosen)
        found = found | inside
        trial = (trial + 1.0) / 2.0
    eta, mu, _ = move_continuous(plan, grad, eta_2, mu_2, point(chosen))
    return kept_natural(plan, eta), mu, chosen


def accept(stabilised: State, plain: State, length: Any, step_max: Any) -> tuple[dict, dict, Any, Any]:
    """Step 3's choice and step 4.

    Parameters
    ----------
    stabilised, plain : tuple
        ``(eta, mu, elbo)`` of the sweep from the extrapolated point and of the second
        plain sweep.
    length : scalar array
        The step length ``a`` taken.
    step_max : scalar array
        The bound ``a_max`` the step was taken under.

    Returns
    -------
    eta, mu, elbo : the state kept.
    step_max : scalar array
        The next step's bound.
    """
    value_3, value_2 = stabilised[2], plain[2]
    xp = namespace(value_3)
    keep = xp.isfinite(value_3) & (value_3 >= value_2)
    bound = _bound(step_max)
    at_bound = length >= bound
    bound = xp.where(at_bound, xp.where(keep, xp.where(bound < STEP_BOUND_CAP, STEP_GROWTH * bound, bound), bound / STEP_GROWTH), bound)
    return (
        select(keep, stabilised[0], plain[0]),
        select(keep, stabilised[1], plain[1]),
        xp.where(keep, value_3, value_2),
        _bound(bound),
    )


def squarem_step(
    eta: Mapping[str, tuple], mu: Mapping[str, tuple], step_max: Any,
    sweep_fn: Callable[..., State], extrapolate_fn: Callable[..., tuple], accept_fn: Callable[..., tuple],
) -> tuple[dict, dict, Any, Any]:
    """One step of the module docstring from its parts (:func:`plain_sweep`,
    :func:`extrapolate`, :func:`accept` bound to a plan, or their compiled programs).

    Returns
    -------
    eta, mu : dict
        The new state (``eta`` as :func:`kept_natural` keeps it).
    elbo : scalar array
        Its exact ELBO.
    step_max : scalar array
        The next step's bound on the step length.
    """
    first = sweep_fn(eta, mu)
    second = sweep_fn(first[0], first[1])
    start_eta, start_mu, length = extrapolate_fn(eta, first[0], second[0], second[1], step_max)
    return accept_fn(sweep_fn(start_eta, start_mu), second, length, step_max)


def squarem_parts(plan: Plan, grad: Grad) -> tuple[Callable, Callable, Callable]:
    """:func:`squarem_step`'s parts bound to ``plan``: ``(sweep, extrapolate, accept)``, pure
    functions a host may compile one by one."""
    return partial(plain_sweep, plan, grad), partial(extrapolate, plan, grad), accept
