"""What an extrapolating CAVI step needs, for both accelerations
(:mod:`ppl_vi.core.cavi_overrelax`, :mod:`ppl_vi.core.cavi_squarem`): which sites move,
whether a point is a valid natural parameter, moving the continuous sites to a point with
the discrete sites at their optimum given it, and choosing between two states without a
branch (so that a step runs under ``jit`` and ``vmap``).
"""

from __future__ import annotations

from typing import Any, Mapping

from ppl_vi.core import expfam
from ppl_vi.core._xp import namespace
from ppl_vi.core.cavi_objective import Plan
from ppl_vi.core.cavi_sweep import Grad, sweep
from ppl_vi.core.expfam._linalg import symmetrize

__all__ = ["continuous_sites", "discrete_sites", "in_domain", "move_continuous", "select"]


def continuous_sites(plan: Plan) -> tuple:
    """The continuous latent sites, in sweep order (the ones an extrapolation moves)."""
    return tuple(n for n in plan.order if not plan.latents[n].discrete)


def discrete_sites(plan: Plan) -> tuple:
    """The discrete latent sites, in sweep order (set to their optimum after a move)."""
    return tuple(n for n in plan.order if plan.latents[n].discrete)


def _positive_definite(a: Any) -> Any:
    xp = namespace(a)
    return xp.all(xp.linalg.eigvalsh(symmetrize(a)) > 0.0)


def in_domain(q_family: str, eta: tuple) -> Any:
    """Whether ``eta`` is a valid natural parameter of ``q_family`` (a boolean array).

    Normal: ``eta_2 < 0``; MultivariateNormal: ``-eta_2`` positive definite; Gamma:
    shape ``eta_1 + 1 > 0`` and rate ``-eta_2 > 0``; Beta and Dirichlet: concentrations
    ``eta + 1 > 0``; Wishart: ``-eta_1`` positive definite and ``df > D - 1``
    (``eta_2 > -1``).

    Raises
    ------
    ValueError
        For a family without a check, naming the supported ones and the way out.
    """
    xp = namespace(eta[0])
    if q_family == "Normal":
        return xp.all(eta[1] < 0.0)
    if q_family == "MultivariateNormal":
        return _positive_definite(-eta[1])
    if q_family == "Gamma":
        return xp.all(eta[0] > -1.0) & xp.all(eta[1] < 0.0)
    if q_family in ("Beta", "Dirichlet"):
        return xp.all(xp.stack([xp.all(e > -1.0) for e in eta]))
    if q_family == "Wishart":
        return _positive_definite(-eta[0]) & xp.all(eta[1] > -1.0)
    raise ValueError(
        f"CAVI acceleration: no natural-domain check for the variational family {q_family!r} "
        "(supported: Normal, MultivariateNormal, Gamma, Beta, Dirichlet, Wishart); use acceleration=None"
    )


def move_continuous(
    plan: Plan, grad: Grad, eta: Mapping[str, tuple], mu: Mapping[str, tuple], point: Mapping[str, tuple]
) -> tuple[dict, dict, Any]:
    """The state with the continuous sites at ``point`` (natural parameters, valid) and
    every discrete site at its optimum given them: ``(eta, mu, elbo)``, its exact ELBO."""
    eta, mu = dict(eta), dict(mu)
    for name, value in point.items():
        eta[name] = tuple(value)
        mu[name] = tuple(expfam.family(plan.latents[name].q_family).mean_from_natural(value))
    return sweep(plan, eta, mu, grad, names=discrete_sites(plan))


def select(keep: Any, a: Mapping[str, tuple], b: Mapping[str, tuple]) -> dict:
    """Per site and parameter, ``a``'s value where ``keep`` (a boolean scalar array) holds,
    else ``b``'s."""
    return {n: tuple(namespace(x).where(keep, x, y) for x, y in zip(a[n], b[n])) for n in a}
