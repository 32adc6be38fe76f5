"""Stochastic VI with natural gradients (Hoffman, Blei, Wang & Paisley 2013), written once.

For a conditionally conjugate program planned by :mod:`ppl_vi.core.cavi_plan`, the sites
inside the *local plate* (size ``N``) are local, the others global. One step on a
minibatch ``B`` of the plate's indices:

1. local CAVI: each local site of the minibatch is set to its exact optimum given the
   globals, repeated until the local mean parameters stop changing;
2. global step: for each global site ``g`` (in plan order),
   ``eta_hat_g = natural_update(grad_{mu_g} F_B)``, where ``F_B`` is the expected log
   joint with every term of the local plate weighted by ``N/|B|`` on the minibatch and
   by 0 elsewhere (an unbiased estimate of the full ``F``); then the Robbins–Monro blend
   ``eta_g <- (1 - rho_t) eta_g + rho_t eta_hat_g`` with ``rho_t = (tau0 + t)^-kappa``.

The minibatch enters as a weight on the full-data plan (built once, never re-probed), so
the step is exact for any plate layout; its cost is that of one CAVI sweep over all
``N`` rows (rows outside the minibatch are computed with weight 0 and discarded). With
``rho = 1`` and the full batch a step is exactly the CAVI coordinate update of the locals
followed by that of the globals.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ppl_vi.core import expfam
from ppl_vi.core._xp import namespace
from ppl_vi.core.cavi_objective import Plan, expected_log_joint, natural_update

__all__ = [
    "START_PASSES",
    "LocalPlate",
    "robbins_monro",
    "local_plate",
    "split_latents",
    "epoch_batches",
    "plate_weight",
    "weighted_plan",
    "optimal_natural",
    "blend",
    "local_pass",
    "global_step",
    "max_change",
]

START_PASSES = 3
"""CAVI passes over the global sites, on all rows, that fit the globals to the starting
locals. Two starts are tried and the one with the higher exact ELBO kept: CAVI's
starting locals (k-means++ responsibilities for mixtures of Normals, random otherwise),
and the locals fitted to CAVI's random starting globals (a random start of the globals,
as scikit-learn's and Hoffman et al.'s online LDA); the passes make each global see the
others fitted rather than at their random starting point."""

Grad = Callable[[Callable[[Any], Any], Any], Any]


@dataclass(frozen=True)
class LocalPlate:
    """The plate that is subsampled: its name, dim (negative), size, its sample sites,
    and every sample site of the program in program order."""

    name: str
    dim: int
    size: int
    sites: frozenset
    program_order: tuple = ()


def robbins_monro(tau0: float = 10.0, kappa: float = 0.7) -> Callable[[int], float]:
    """Step size ``rho_t = (tau0 + t)^-kappa`` (``t = 0, 1, ...``).

    ``sum rho_t = inf`` and ``sum rho_t^2 < inf`` need ``0.5 < kappa <= 1``; the defaults
    are scikit-learn's online LDA (``learning_offset=10``, ``learning_decay=0.7``).
    """
    if not 0.5 < kappa <= 1.0:
        raise ValueError(f"kappa must be in (0.5, 1] for a Robbins-Monro schedule; got {kappa}")
    if tau0 < 0:
        raise ValueError(f"tau0 must be >= 0; got {tau0}")
    return lambda t: float((tau0 + t) ** -kappa)


def local_plate(name: str, frames: Mapping[str, Sequence[tuple]], num_data: int | None, batch_size: int) -> LocalPlate:
    """Validate the subsampled plate from the sites' plate frames.

    Parameters
    ----------
    frames : dict
        Sample site name -> sequence of ``(plate name, dim, size)`` (from a host trace),
        in program order.
    num_data : int or None
        Expected plate size (``None``: take the plate's size).
    """
    found = {f[0]: (f[1], f[2]) for fs in frames.values() for f in fs}
    if name not in found:
        raise ValueError(f"local_plate {name!r} is not a plate of the model; its plates are {sorted(found)}")
    dim, size = found[name]
    if num_data is not None and int(num_data) != int(size):
        raise ValueError(f"num_data={num_data} but plate {name!r} has size {size}")
    if not 1 <= int(batch_size) <= int(size):
        raise ValueError(f"batch_size must be in [1, num_data={size}]; got {batch_size}")
    sites = frozenset(s for s, fs in frames.items() if any(f[0] == name for f in fs))
    return LocalPlate(name, int(dim), int(size), sites, tuple(frames))


def split_latents(plan: Plan, plate: LocalPlate) -> tuple[tuple, tuple]:
    """``(local names, global names)``, each in CAVI's update order.

    That order is the program order of the continuous sites, then the discrete ones
    (:mod:`ppl_vi.core.cavi_sweep`); it is taken from ``plate.program_order`` so that it
    is the same on every host.
    """
    ranked = [n for n in plate.program_order if n in plan.latents] + [n for n in plan.order if n not in plate.program_order]
    order = [n for n in ranked if not plan.latents[n].discrete] + [n for n in ranked if plan.latents[n].discrete]
    return tuple(n for n in order if n in plate.sites), tuple(n for n in order if n not in plate.sites)


def epoch_batches(num_data: int, batch_size: int, rng: np.random.Generator) -> list:
    """One epoch: a random permutation of ``range(num_data)`` cut into batches (the last may be smaller)."""
    perm = rng.permutation(num_data)
    return [perm[i : i + batch_size] for i in range(0, num_data, batch_size)]


def plate_weight(indices: np.ndarray, plate: LocalPlate) -> np.ndarray:
    """Weights ``N/|B|`` on the minibatch, 0 elsewhere; shape ``(N,) + (1,) * (-dim - 1)`` (NumPy)."""
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0 or indices.min() < 0 or indices.max() >= plate.size:
        raise ValueError(f"minibatch indices must be a non-empty 1-D array in [0, {plate.size}); got shape {indices.shape}")
    if np.unique(indices).size != indices.size:
        raise ValueError("minibatch indices must be distinct")
    weight = np.zeros(plate.size)
    weight[indices] = plate.size / indices.size
    return weight.reshape((plate.size,) + (1,) * (-plate.dim - 1))


def weighted_plan(plan: Plan, plate: LocalPlate, weight: Any) -> Plan:
    """The plan with every term of the local plate's sites scaled by ``weight``."""
    terms = tuple(replace(t, scale=t.scale * weight) if t.name in plate.sites else t for t in plan.terms)
    return replace(plan, terms=terms)


def optimal_natural(plan: Plan, name: str, mu: Mapping[str, tuple], grad: Grad) -> tuple:
    """CAVI-optimal natural parameter of site ``name`` given the others' mean parameters."""
    spec = plan.latents[name]
    objective = lambda stats: expected_log_joint(plan, {**mu, name: stats}, only=name)  # noqa: E731
    return natural_update(spec, tuple(grad(objective, tuple(mu[name]))))


def blend(eta: tuple, eta_hat: tuple, rho: Any) -> tuple:
    """``(1 - rho) eta + rho eta_hat`` (a natural-gradient step of length ``rho``)."""
    return tuple((1.0 - rho) * a + rho * b for a, b in zip(eta, eta_hat))


def _mean(plan: Plan, name: str, eta: tuple) -> tuple:
    return tuple(expfam.family(plan.latents[name].q_family).mean_from_natural(eta))


def _keep(plan: Plan, plate: LocalPlate, name: str, rows: Any, new: tuple, old: tuple) -> tuple:
    """``new`` on the plate rows where ``rows > 0``, ``old`` elsewhere."""
    axis = len(plan.latents[name].batch_shape) + plate.dim
    xp = namespace(new[0])
    flat = xp.reshape(rows, (-1,)) > 0
    out = []
    for a, b in zip(new, old):
        mask = xp.reshape(flat, (1,) * axis + (plate.size,) + (1,) * (a.ndim - axis - 1))
        out.append(xp.where(mask, a, b))
    return tuple(out)


def local_pass(plan: Plan, plate: LocalPlate, names: tuple, eta: dict, mu: dict, grad: Grad, rows: Any) -> tuple[dict, dict]:
    """One CAVI update of every local site, committed on the plate rows where ``rows > 0``."""
    eta, mu = dict(eta), dict(mu)
    for name in names:
        new_eta = optimal_natural(plan, name, mu, grad)
        eta[name] = _keep(plan, plate, name, rows, new_eta, eta[name])
        mu[name] = _keep(plan, plate, name, rows, _mean(plan, name, new_eta), mu[name])
    return eta, mu


def global_step(scaled: Plan, names: tuple, eta: dict, mu: dict, grad: Grad, rho: Any) -> tuple[dict, dict]:
    """Blend each global site towards its optimum under the minibatch-scaled plan ``scaled``."""
    eta, mu = dict(eta), dict(mu)
    for name in names:
        eta[name] = blend(eta[name], optimal_natural(scaled, name, mu, grad), rho)
        mu[name] = _mean(scaled, name, eta[name])
    return eta, mu


def max_change(new: Mapping[str, tuple], old: Mapping[str, tuple], names: tuple) -> Any:
    """Largest absolute change of the mean parameters of ``names`` (the local stopping statistic)."""
    changes = [namespace(a).max(namespace(a).abs(a - b)) for n in names for a, b in zip(new[n], old[n])]
    xp = namespace(changes[0]) if changes else np
    return xp.max(xp.stack(changes)) if changes else 0.0
