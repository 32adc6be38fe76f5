"""Stochastic VI with natural gradients (Hoffman, Blei, Wang & Paisley 2013), written once.

For a conditionally conjugate program planned by :mod:`ppl_vi.core.cavi_plan`, the sites
inside the *local plate* (size ``N``) are local, the others global. One step on a
minibatch ``B`` of the plate's indices (:func:`step`):

1. the plan is cut to the rows of ``B`` (:func:`ppl_vi.core.ngsvi_batch.batch_plan`), and
   so are the local sites' natural and mean parameters;
2. local CAVI on that batch plan: each local site of the minibatch is set to its exact
   optimum given the globals, repeated until the local mean parameters stop changing
   (on average over the batch rows, :func:`row_change`);
3. global step: for each global site ``g`` (in plan order),
   ``eta_hat_g = natural_update(grad_{mu_g} F_B)``, where ``F_B`` is the expected log
   joint of the batch plan with every term of the local plate weighted by ``N/|B|``
   (an unbiased estimate of the full ``F``); then the Robbins–Monro blend
   ``eta_g <- (1 - rho_t) eta_g + rho_t eta_hat_g`` with ``rho_t = (tau0 + t)^-kappa``;
4. the batch rows of the local sites are written back into the full state (the local
   parameters of all ``N`` rows are kept, and warm-start the next visit of a row).

A step costs ``O(|B|)``: nothing of the other rows is computed. ``F_B`` is, by
definition, the full plan with the local terms weighted ``N/|B|`` on ``B`` and 0
elsewhere (:func:`plate_weight`, :func:`weighted_plan`); the batch plan computes the
same number from the batch rows alone. With ``rho = 1`` and the full batch a step is
exactly the CAVI coordinate update of the locals followed by that of the globals.

The host supplies the three operations that differ between jax and torch
(:class:`Host`): the gradient, a scatter along an axis, and a while loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from ppl_vi.core import expfam
from ppl_vi.core._xp import namespace
from ppl_vi.core.cavi_objective import Plan, natural_update, site_gradient
from ppl_vi.core.ngsvi_batch import LocalPlate, Scatter, batch_plan, check_batchable, check_indices, gather_rows, local_plate, scatter_rows

__all__ = [
    "MAX_BATCH_SIZE",
    "STEPS_PER_EPOCH",
    "default_batch_size",
    "LOCAL_TOL",
    "MAX_LOCAL_ITERS",
    "EVALUATE_TOL",
    "START_TOL",
    "START_PASSES",
    "Host",
    "LocalPlate",
    "SplitPlan",
    "robbins_monro",
    "local_plate",
    "check_indices",
    "split_plan",
    "epoch_batches",
    "plate_weight",
    "weighted_plan",
    "optimal_natural",
    "blend",
    "local_pass",
    "local_cavi",
    "global_step",
    "start_passes",
    "step",
    "row_change",
]

MAX_BATCH_SIZE = 128
"""Largest default minibatch size (scikit-learn's online LDA ``batch_size``)."""

STEPS_PER_EPOCH = 100
"""Steps per epoch that the default batch size aims for (:func:`default_batch_size`)."""

LOCAL_TOL = 1e-2
"""Default tolerance of the local CAVI loop on :func:`row_change` (a mean change of the
local mean parameters, probabilities for a discrete site). On the LDA benchmark
(``benchmarks/ngsvi_lda.py --epochs 3``) 1e-3 takes about twice the training time to the
same held-out perplexity (``--local-tol 1e-3``)."""

MAX_LOCAL_ITERS = 100
"""Default cap on local CAVI passes per step (scikit-learn's ``max_doc_update_iter``)."""

EVALUATE_TOL = 1e-6
"""Tolerance of the full-data local CAVI that precedes an exact ELBO (the adapters' ``evaluate``)."""

START_TOL = LOCAL_TOL
"""Tolerance of the full-data local CAVI of the start (:data:`START_PASSES`): the locals
fitted to CAVI's random starting globals, and those that score the two candidate starts
by exact ELBO. On the LDA benchmark corpus (1,800 documents, ``full_data_start=True`` as
in ``benchmarks/ngsvi_lda.py --elbo-gap``) it picked the same start as
:data:`EVALUATE_TOL` (the data-seeded one, about 26,000 nats ahead) and cut ``init``
from 6-11 s to about 2 s; ``tests/numpyro/test_ngsvi.py`` checks the choice on a
smaller corpus."""

START_PASSES = 3
"""CAVI passes over the global sites, on all rows, that fit the globals to the starting
locals. Two starts are tried and the one with the higher exact ELBO kept: CAVI's
starting locals (k-means++ responsibilities for mixtures of Normals, random otherwise),
and the locals fitted to CAVI's random starting globals (a random start of the globals,
as scikit-learn's and Hoffman et al.'s online LDA); the passes make each global see the
others fitted rather than at their random starting point."""

Grad = Callable[[Callable[[Any], Any], Any], Any]


class Host(NamedTuple):
    """The backend operations: ``grad(fn, x)``, ``scatter(full, axis, indices, rows)``
    and ``while_loop(cond, body, carry)`` (``jax.lax.while_loop``'s contract)."""

    grad: Grad
    scatter: Scatter
    while_loop: Callable[[Callable, Callable, Any], Any]


@dataclass(frozen=True)
class SplitPlan:
    """A plan, its local plate, and its local and global site names (each in CAVI's update order)."""

    plan: Plan
    plate: LocalPlate
    locals: tuple
    globals: tuple


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


def default_batch_size(num_data: int) -> int:
    """Default ``|B|``: ``num_data // STEPS_PER_EPOCH``, clipped to ``[1, MAX_BATCH_SIZE]``.

    The Robbins–Monro schedule counts steps, not data: with the default ``(10 + t)^-0.7``
    the step sizes sum to 6.1 after 75 steps, 7.1 after 100, 10.0 after 200 and 12.1
    after 300, and a step of size ``rho`` moves the globals a fraction ``rho`` of the way
    to their (minibatch estimate of the) full-data CAVI update. A batch that gives about
    100 steps per epoch makes the sum reach 10 in two epochs.

    Measured on the LDA benchmark (``benchmarks/ngsvi_lda.py --elbo-gap``: 1,800
    documents, 20 topics; the full-data start is about 2.3% below CAVI's optimum, and it
    takes 10 full-data updates of the topics, each after the locals converged, to come
    within 1%): batches of 128 (15 steps per epoch) were 1.36-1.44% below CAVI's ELBO
    after 5 epochs and 1.15-1.22% after 8 (seeds 0-2); batches of 18 (this rule) were
    0.79-0.87% below after 3 epochs and 0.55-0.63% after 8, for about 0.1 s of training
    per epoch instead of 0.05 s. Smaller batches make noisier steps: on a 300-point
    Gaussian mixture whose start is already near the optimum, batches of 3 were 0.5-0.9%
    below it after one epoch and under 0.35% after two, batches of 30 under 0.06%.
    """
    return int(min(MAX_BATCH_SIZE, max(1, int(num_data) // STEPS_PER_EPOCH)))


def split_plan(plan: Plan, plate: LocalPlate) -> SplitPlan:
    """Split the latents into local and global (refusing coupled rows, :func:`~ppl_vi.core.ngsvi_batch.check_batchable`).

    The update order is CAVI's: the program order of the continuous sites, then the
    discrete ones (:mod:`ppl_vi.core.cavi_sweep`), taken from ``plate.program_order`` so
    that it is the same on every host.
    """
    check_batchable(plan, plate)
    ranked = [n for n in plate.program_order if n in plan.latents] + [n for n in plan.order if n not in plate.program_order]
    order = [n for n in ranked if not plan.latents[n].discrete] + [n for n in ranked if plan.latents[n].discrete]
    return SplitPlan(plan, plate, tuple(n for n in order if n in plate.sites), tuple(n for n in order if n not in plate.sites))


def epoch_batches(num_data: int, batch_size: int, rng: np.random.Generator) -> list:
    """One epoch: a random permutation of ``range(num_data)`` cut into ``ceil(N / |B|)`` batches of ``|B|``.

    All batches have the same size, so that a compiled step is reused. When ``|B|`` does
    not divide ``N`` the last batch (the ``r`` remaining points) is topped up with
    ``|B| - r`` other points of the epoch drawn without replacement; every batch is then
    a uniformly random ``|B|``-subset (so ``F_B`` stays unbiased) and every point is
    visited at least once per epoch.
    """
    perm = rng.permutation(num_data)
    batches = [perm[i : i + batch_size] for i in range(0, num_data, batch_size)]
    short = batch_size - batches[-1].size
    if short:
        batches[-1] = np.concatenate([batches[-1], rng.choice(perm[: num_data - batches[-1].size], size=short, replace=False)])
    return batches


def plate_weight(indices: np.ndarray, plate: LocalPlate) -> np.ndarray:
    """Weights ``N/|B|`` on the minibatch, 0 elsewhere; shape ``(N,) + (1,) * (-dim - 1)`` (NumPy).

    With :func:`weighted_plan` this *defines* ``F_B`` on the full plan; :func:`step`
    computes it from the batch plan instead (the tests check that they agree).
    """
    indices = check_indices(indices, plate)
    weight = np.zeros(plate.size)
    weight[indices] = plate.size / indices.size
    return weight.reshape((plate.size,) + (1,) * (-plate.dim - 1))


def weighted_plan(plan: Plan, plate: LocalPlate, weight: Any) -> Plan:
    """The plan with every term of the local plate's sites scaled by ``weight`` (a number or per-row array)."""
    terms = tuple(replace(t, scale=t.scale * weight) if t.name in plate.sites else t for t in plan.terms)
    return replace(plan, terms=terms)


def optimal_natural(plan: Plan, name: str, mu: Mapping[str, tuple], grad: Grad) -> tuple:
    """CAVI-optimal natural parameter of site ``name`` given the others' mean parameters."""
    return natural_update(plan.latents[name], site_gradient(plan, mu, name, grad))


def blend(eta: tuple, eta_hat: tuple, rho: Any) -> tuple:
    """``(1 - rho) eta + rho eta_hat`` (a natural-gradient step of length ``rho``)."""
    return tuple((1.0 - rho) * a + rho * b for a, b in zip(eta, eta_hat))


def _mean(plan: Plan, name: str, eta: tuple) -> tuple:
    return tuple(expfam.family(plan.latents[name].q_family).mean_from_natural(eta))


def local_pass(plan: Plan, names: tuple, eta: dict, mu: dict, grad: Grad) -> tuple[dict, dict]:
    """One CAVI update of every site in ``names``, in order."""
    eta, mu = dict(eta), dict(mu)
    for name in names:
        eta[name] = optimal_natural(plan, name, mu, grad)
        mu[name] = _mean(plan, name, eta[name])
    return eta, mu


def local_cavi(plan: Plan, plate: LocalPlate, names: tuple, eta: dict, mu: dict, host: Host, tol: float, max_iters: int) -> tuple[dict, dict]:
    """Local CAVI passes until :func:`row_change` ``<= tol`` (at most ``max_iters`` passes).

    One pass when there is a single local site: its update is then exact; none when
    there is no local site (only observations in the plate).
    """
    if not names:
        return dict(eta), dict(mu)
    fixed_eta = {n: a for n, a in eta.items() if n not in names}
    fixed_mu = {n: a for n, a in mu.items() if n not in names}

    def body(carry: tuple) -> tuple:  # only the local sites are carried: the rest is loop-invariant
        local_eta, local_mu, _, it = carry
        new_eta, new_mu = local_pass(plan, names, {**fixed_eta, **local_eta}, {**fixed_mu, **local_mu}, host.grad)
        new_eta, new_mu = {n: new_eta[n] for n in names}, {n: new_mu[n] for n in names}
        return new_eta, new_mu, row_change(plan, plate, new_mu, local_mu, names), it + 1

    carry = ({n: eta[n] for n in names}, {n: mu[n] for n in names}, math.inf, 0)
    if len(names) == 1:
        carry = body(carry)
    else:  # the loop runs at least one pass, even with max_iters=0; the first pass inside
        # it, a compiled loop holds one copy of the pass (LDA's step: 360 -> 96 operations)
        carry = host.while_loop(lambda c: (c[3] == 0) | ((c[2] > tol) & (c[3] < max_iters)), body, carry)
    return {**eta, **carry[0]}, {**mu, **carry[1]}


def global_step(scaled: Plan, names: tuple, eta: dict, mu: dict, grad: Grad, rho: Any) -> tuple[dict, dict]:
    """Blend each global site towards its optimum under the minibatch-scaled plan ``scaled``."""
    eta, mu = dict(eta), dict(mu)
    for name in names:
        eta[name] = blend(eta[name], optimal_natural(scaled, name, mu, grad), rho)
        mu[name] = _mean(scaled, name, eta[name])
    return eta, mu


def start_passes(split: SplitPlan, eta: dict, mu: dict, grad: Grad) -> tuple[dict, dict]:
    """:data:`START_PASSES` full-data CAVI passes over the global sites (the locals stay)."""
    for _ in range(START_PASSES):
        eta, mu = global_step(split.plan, split.globals, eta, mu, grad, 1.0)
    return eta, mu


def step(split: SplitPlan, host: Host, eta: dict, mu: dict, indices: Any, rho: Any, tol: float, max_iters: int) -> tuple[dict, dict]:
    """One stochastic natural-gradient step on the plate rows ``indices`` (the module docstring's 1–4).

    Parameters
    ----------
    eta, mu : dict
        Site -> natural / mean parameters, all ``N`` rows for the local sites.
    indices : integer host array, shape (|B|,)
        Distinct plate positions (:func:`~ppl_vi.core.ngsvi_batch.check_indices`).
    rho : float or scalar array
        Step size of the global blend.

    Returns
    -------
    (eta, mu) : the new state, same shapes.
    """
    plan, plate = split.plan, split.plate
    batch = batch_plan(plan, plate, indices)
    eta_b = gather_rows(plan, plate, split.locals, eta, indices)
    mu_b = gather_rows(plan, plate, split.locals, mu, indices)
    eta_b, mu_b = local_cavi(batch, plate, split.locals, eta_b, mu_b, host, tol, max_iters)
    scaled = weighted_plan(batch, plate, plate.size / int(indices.shape[0]))
    eta_b, mu_b = global_step(scaled, split.globals, eta_b, mu_b, host.grad, rho)
    new_eta = {**scatter_rows(plan, plate, split.locals, eta, eta_b, indices, host.scatter), **{g: eta_b[g] for g in split.globals}}
    new_mu = {**scatter_rows(plan, plate, split.locals, mu, mu_b, indices, host.scatter), **{g: mu_b[g] for g in split.globals}}
    return new_eta, new_mu


def row_change(plan: Plan, plate: LocalPlate, new: Mapping[str, tuple], old: Mapping[str, tuple], names: tuple) -> Any:
    """The local stopping statistic: the mean, over the plate rows, of each row's largest
    (over the sites ``names`` and their mean-parameter arrays) mean absolute change.

    A row's *mean* change (over a document's tokens and topics, say), as scikit-learn's and
    Hoffman et al.'s online LDA stop a document's E-step on the mean change of its topic
    proportions; averaged over the rows because the global step reads the locals only
    through their sum over the rows (the batch's sufficient statistics), whose change
    this bounds: a few slow rows do not hold the whole batch's loop.
    """
    per_row = []
    for name in names:
        axis = len(plan.latents[name].batch_shape) + plate.dim
        for a, b in zip(new[name], old[name]):
            xp = namespace(a)
            others = tuple(i for i in range(a.ndim) if i != axis)
            per_row.append(xp.mean(xp.abs(a - b), axis=others) if others else xp.abs(a - b))
    xp = namespace(per_row[0])
    return xp.mean(xp.max(xp.stack(per_row), axis=0))
