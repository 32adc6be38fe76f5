"""The step a CAVI engine takes: a plain sweep or an accelerated one, chosen once by name.

Both accelerations keep CAVI's guarantees (the ELBO never decreases, a fixed point is a
fixed point of CAVI) and only change how far a step goes:

* ``"squarem"`` — squared extrapolation of the sweep map (:mod:`ppl_vi.core.cavi_squarem`);
* ``"overrelax"`` — adaptive over-relaxation (:mod:`ppl_vi.core.cavi_overrelax`);
* ``None`` — plain sweeps.

``"auto"`` (the engines' default) takes SQUAREM where a plan has both discrete and
continuous latent sites — mixtures and topic models, whose plain sweeps converge as
slowly as EM — and plain sweeps elsewhere, where a conditionally conjugate model
without enumerated sites converges in a few sweeps that an extrapolation, costing three
sweeps a step, would only slow down.

The engines' ``run`` takes :data:`PLAIN_SWEEPS_FIRST` plain sweeps before the first
SQUAREM step (:func:`scheduled`): the first sweeps from a start gain the most, and a fit
that needs no more (LDA reaches scikit-learn's 20-iteration perplexity in 7) pays for
no extrapolation, nor, on NumPyro, for compiling it (SQUAREM's other parts compile while
those sweeps run).

Measured (NumPyro, ``tol=1e-8``, 2 shared cores, 2026-12-06): on the 100k-point GMM
benchmark (``benchmarks/cavi_gmm.py --seed s``, s = 0, 1, 2) the defaults converged in 88,
178 and 146 steps against 480, 1,769 and 1,524 plain sweeps, to ELBOs 5.8, 22.4 and 17.6
nats higher (commit 47480bf). Measured in the previous stop, with the sweep of commit 8664cf5
(before the one-exponential normalization): on the LDA benchmark's corpus (1,800 documents of 50 tokens, 20 topics) in 156
steps and 13.9 s against 906 sweeps and 19.1 s, 25 nats higher. Early on a step costs about
four sweeps and may gain less: on documents of 400 tokens, scikit-learn's 20-iteration
perplexity took 10 sweeps and 4 steps (3.8 s) against 22 plain sweeps (2.9 s).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Optional

from ppl_vi.core.cavi_extrapolation import continuous_sites, discrete_sites
from ppl_vi.core.cavi_objective import Plan
from ppl_vi.core.cavi_overrelax import overrelaxed_sweep
from ppl_vi.core.cavi_squarem import squarem_parts, squarem_step
from ppl_vi.core.cavi_sweep import Grad, sweep

__all__ = ["ACCELERATIONS", "PLAIN_SWEEPS_FIRST", "check_acceleration", "resolve_acceleration", "scheduled", "accelerated_step"]

ACCELERATIONS = ("auto", "squarem", "overrelax", None)
"""The values the engines' ``acceleration`` argument takes."""

PLAIN_SWEEPS_FIRST = 10
"""Plain sweeps ``run`` takes before SQUAREM's steps. On the 100k-point GMM benchmark
(``tol=1e-8``, commit 47480bf, a SQUAREM step counted as 3.8 sweeps) 0, 10 and 30 took
361, 1,087 and 281; 306, 648 and 527; 205, 395 and 969 sweeps' worth of work for
seeds 0, 1 and 2: the path, not this number, decides."""


def check_acceleration(acceleration: Optional[str], overrelax: Optional[bool] = None) -> Optional[str]:
    """``acceleration`` if it is one of :data:`ACCELERATIONS`, else a ``ValueError`` naming
    them; ``overrelax`` (the engines' former argument) other than ``None`` is a ``TypeError``
    naming its replacement."""
    if overrelax is not None:
        replacement = "'overrelax'" if overrelax else "None"
        raise TypeError(f"CAVI: overrelax= was replaced by acceleration=; for overrelax={overrelax!r} pass acceleration={replacement}")
    if acceleration not in ACCELERATIONS:
        raise ValueError(f"CAVI: acceleration must be one of {ACCELERATIONS}; got {acceleration!r}")
    return acceleration


def resolve_acceleration(plan: Plan, acceleration: Optional[str]) -> Optional[str]:
    """The step ``"auto"`` stands for in ``plan`` (module docstring); other values as given,
    but ``None`` for a plan without continuous sites (nothing to extrapolate; a warning says
    so when an acceleration was asked for by name)."""
    if not continuous_sites(plan):
        if acceleration not in ("auto", None):
            warnings.warn(
                f"CAVI: acceleration={acceleration!r} has nothing to extrapolate (no continuous latent site); "
                "taking plain sweeps",
                stacklevel=3,
            )
        return None
    if acceleration != "auto":
        return acceleration
    return "squarem" if discrete_sites(plan) else None


def scheduled(step_kind: Optional[str], steps_taken: int) -> Optional[str]:
    """The step ``run`` takes after ``steps_taken`` steps: plain sweeps (``None``) for the
    first :data:`PLAIN_SWEEPS_FIRST` under SQUAREM, else ``step_kind`` (resolved)."""
    return None if step_kind == "squarem" and steps_taken < PLAIN_SWEEPS_FIRST else step_kind


def accelerated_step(
    plan: Plan, acceleration: Optional[str], eta: Mapping[str, tuple], mu: Mapping[str, tuple], grad: Grad, relaxation: Any
) -> tuple[dict, dict, Any, Any]:
    """One step of the resolved ``acceleration`` (not ``"auto"``): ``(eta, mu, elbo, relaxation)``.

    ``relaxation`` is the state's extrapolation record: 0 before the first step, then the
    over-relaxation factor (``"overrelax"``) or SQUAREM's bound on the step length
    (``"squarem"``); plain sweeps pass it through.
    """
    if acceleration == "auto":
        raise ValueError("accelerated_step: resolve 'auto' for the plan first (resolve_acceleration)")
    if acceleration == "squarem":
        return squarem_step(eta, mu, relaxation, *squarem_parts(plan, grad))
    if acceleration == "overrelax":
        return overrelaxed_sweep(plan, eta, mu, grad, relaxation)
    new_eta, new_mu, value = sweep(plan, eta, mu, grad)
    return new_eta, new_mu, value, relaxation
