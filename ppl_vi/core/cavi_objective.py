"""The CAVI objective of a planned program: ``F(mu) = E_q[log p(x, z)]`` and the ELBO.

``F`` is a sum over the program's sample sites of the closed-form expected
log-densities of :mod:`ppl_vi.core.conjugate`, each parameter's moments computed from
the mean parameters ``mu_j = E_q[T(z_j)]`` of the latent site it depends on
(:class:`Dependency`). Discrete latents are enumerated: a term that varies along a
discrete site's enumeration dimension is weighted by that site's probabilities ``r``
and summed over it. ``F`` is linear in each ``mu_j``, so ``grad_{mu_j} F / scale_j`` is
the optimal natural parameter of ``q_j`` (Hoffman et al. 2013, eq. 33; Khan & Lin 2017),
and ``ELBO = F + sum_j scale_j H(q_j)`` is exact.

Why this route ("expected log-density by rule + autodiff") rather than the others:

* a VMP table (Winn & Bishop 2005) needs one message per (parent family, child family,
  parameter) triple, written by hand in both directions; here each *child* family has
  one rule in the moments of its parameters, and autodiff produces every message —
  so adding a family is one function, and the ELBO comes out of the same code;
* autoconj (Hoffman, Johnson, Tran 2018) rewrites a traced log joint symbolically; the
  hosts' distributions are opaque objects, so we read them instead through the hosts'
  own handlers (``substitute``/``condition`` + ``trace``) and probe how each parameter
  depends on the latents (:mod:`ppl_vi.core.cavi_plan`).

The mean field is over *sites*: a site's batch elements are independent factors, a
site's event is one factor (a ``Normal(...).to_event(1)`` site gets one Gaussian block,
a ``MultivariateNormal`` site one full-covariance Gaussian per batch element).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ppl_vi.core import expfam
from ppl_vi.core._xp import namespace, special
from ppl_vi.core.cavi_enumeration import AFFINE_VALUE_EVENT_NDIMS, Weight, WeightSums, reduced_total, right_aligned, weighted_total
from ppl_vi.core.conjugate import RULES, SimplexMoments, gather_atoms

Array = Any
MeanParams = Mapping[str, tuple]

__all__ = ["Dependency", "LatentSpec", "Term", "Plan", "expected_log_joint", "elbo", "natural_update", "categorical_log_normalizer", "categorical_update", "normalizer_total", "touches", "site_gradient"]


@dataclass(frozen=True)
class Dependency:
    """How one parameter of a site is computed from (at most) one latent site.

    kind : ``"const"`` (``moments`` holds the moments), ``"gather"``
    (``P[b] = coef[b] * atoms(z)[index[b]] + offset[b]``; ``offset`` is ``None``, i.e. 0,
    for every role but the locations ``"real"`` and ``"vector"``) or ``"dense"``
    (``P = J z + offset`` of a one-atom latent). ``shape`` is the parameter's shape.
    ``enumerates``: for a gather whose ``index`` is ``arange`` over all of the latent's
    atoms along one axis (size 1 along the others) — a mixture's components selected
    by an enumerated site — that axis (negative); ``None`` otherwise.
    """

    role: str
    kind: str
    latent: Optional[str] = None
    moments: Any = None
    index: Any = None
    coef: Any = None
    offset: Any = None
    jacobian: Any = None
    log_coef: Any = None
    shape: tuple = ()
    enumerates: Optional[int] = None


@dataclass(frozen=True)
class LatentSpec:
    """A latent site and its variational family ``q_family`` (an expfam name);
    ``plates``: ``(name, dim)`` of the plates it sits in (``dim`` negative)."""

    name: str
    q_family: str
    prior: str
    shape: tuple
    batch_shape: tuple
    scale: Any = 1.0
    enum_dim: Optional[int] = None
    support_size: Optional[int] = None
    plates: tuple = ()

    @property
    def discrete(self) -> bool:
        return self.enum_dim is not None


@dataclass(frozen=True)
class Term:
    """One sample site's contribution ``E_q[log p_site]``.

    ``value`` is ``("observed", stats)``, ``("latent", name)`` or
    ``("enumerated", values)``; ``batch_shape`` is the site's batch shape under
    enumeration; ``scale`` includes the plate scale and any mask; ``plates`` are the
    ``(name, dim)`` of the plates the site sits in (``dim`` negative).
    """

    name: str
    family: str
    params: Mapping[str, Dependency]
    value: tuple
    batch_shape: tuple
    reinterpreted_ndims: int = 0
    scale: Any = 1.0
    plates: tuple = ()


@dataclass(frozen=True)
class Plan:
    """Everything CAVI derived from a program (arrays in the host's backend).

    ``blocks``: a :class:`~ppl_vi.core.cavi_blocks.RowBlocks` when a sweep visits the rows
    of a large local plate block by block (set by the host adapter), else ``None``.
    """

    latents: Mapping[str, LatentSpec]
    terms: tuple
    constant: float = 0.0
    order: tuple = field(default=())
    blocks: Any = None


def _moments(dep: Dependency, mu: MeanParams, latents: Mapping[str, LatentSpec]) -> Any:
    if dep.kind == "const":
        return dep.moments
    spec = latents[dep.latent]
    stats = mu[dep.latent]
    xp = namespace(stats[0])
    role = dep.role
    if dep.kind == "dense":
        return _dense_moments(dep, stats, xp)
    ndims = expfam.family(spec.q_family).stat_event_ndims
    tables = [xp.reshape(s, (-1,) + tuple(s.shape[s.ndim - n :])) for s, n in zip(stats, ndims)]
    picked = [gather_atoms(t, dep.index, t.ndim - 1) for t in tables]
    if role == "real":
        m, s = picked
        return (dep.coef * m + dep.offset, dep.coef**2 * s + 2.0 * dep.coef * dep.offset * m + dep.offset**2)
    if role == "vector":
        m, outer = picked
        c, o = dep.coef[..., None], dep.offset
        mean = c * m + o
        cross = m[..., :, None] * o[..., None, :]
        second = c[..., None] ** 2 * outer + c[..., None] * (cross + xp.matrix_transpose(cross)) + o[..., :, None] * o[..., None, :]
        return (mean, second)
    if role in ("precision", "positive"):
        log_g, g = picked
        return (dep.coef * g, xp.log(dep.coef) + log_g)
    if role == "precision_matrix":
        if spec.q_family == "Wishart":
            w, logdet = picked
            dim = w.shape[-1]
            return (dep.coef[..., None, None] * w, dim * xp.log(dep.coef) + logdet)
        log_g, g = picked
        dim = dep.coef.shape[-1]
        return (dep.coef * g[..., None, None], dep.log_coef + dim * log_g)
    if role == "unit":
        return tuple(picked)
    if role == "simplex":
        return SimplexMoments(tables[0], dep.index)
    raise ValueError(f"no moments for role {role!r} from a {spec.q_family} latent")


def _dense_moments(dep: Dependency, stats: tuple, xp) -> tuple:
    m, second = stats
    dim = m.shape[-1]
    m = xp.reshape(m, (dim,))
    second = xp.reshape(second, (dim, dim))
    jac, off = dep.jacobian, dep.offset  # (B, *atom, L), (B, *atom)
    jm = jac @ m
    mean = jm + off
    if dep.role == "real":
        sq = xp.sum((jac @ second) * jac, axis=-1) + 2.0 * off * jm + off * off
        return (xp.reshape(mean, dep.shape), xp.reshape(sq, dep.shape))
    outer = jac @ second @ xp.matrix_transpose(jac)
    cross = jm[..., :, None] * off[..., None, :]
    outer = outer + cross + xp.matrix_transpose(cross) + off[..., :, None] * off[..., None, :]
    return (mean, outer)


def _value_stats(term: Term, mu: MeanParams, latents: Mapping[str, LatentSpec]) -> tuple:
    kind = term.value[0]
    if kind != "latent":
        return term.value[1]
    stats = mu[term.value[1]]
    if term.family == "Normal" and latents[term.value[1]].q_family == "MultivariateNormal":
        m, second = stats
        return (m, namespace(second).linalg.diagonal(second))
    return tuple(stats)


def _enumeration_weights(term: Term, plan: Plan, mu: MeanParams) -> list:
    """The probabilities of every enumerated site ``term`` varies along, each as a
    :class:`Weight` in the term's batch dims (in the probabilities' own layout)."""
    ndim = len(term.batch_shape)
    weights = []
    for spec in plan.latents.values():
        dim, size = spec.enum_dim, spec.support_size
        if not spec.discrete or size <= 1 or ndim < -dim or term.batch_shape[dim] != size:
            continue
        probs = mu[spec.name][0]
        if spec.q_family == "Bernoulli":
            probs = namespace(probs).stack([1.0 - probs, probs], axis=-1)
        batch = len(spec.batch_shape)
        weights.append(Weight(probs, tuple(range(ndim - batch, ndim)) + (ndim + dim,)))
    return weights


def _reduces(term: Term) -> bool:
    """Whether ``term`` may sum its data through sufficient statistics (:func:`reduced_total`)."""
    return term.value[0] == "observed" and term.family in AFFINE_VALUE_EVENT_NDIMS


def _categorical_log_probs(term: Term, plan: Plan, probs: SimplexMoments, value: Array) -> Optional[Weight]:
    """``E[log p_value]`` of an enumerated Categorical term in the layout its operands
    have, or ``None`` (then :meth:`SimplexMoments.log_at` gathers element by element).

    When the value enumerates every category (a mixture's prior ``z ~ Cat(theta_d)``),
    the term is the gathered rows ``E[log theta][rows]``, shape ``rows + (K,)``; when the
    rows enumerate every component (a child ``x ~ Cat(beta[z])``), it is the gathered
    columns ``E[log beta]^T[x]``, shape ``x + (R,)``. Either way, a gather of whole rows
    in the layout of the probabilities ``r`` — no element-wise gather or scatter of the
    enumerated batch, and no transposes of it.
    """
    ndim = len(term.batch_shape)
    xp = namespace(probs.table)
    if term.value[0] == "enumerated":
        dim = ndim + plan.latents[term.name].enum_dim
        rows = probs.rows
        if rows.ndim <= ndim and ((1,) * (ndim - rows.ndim) + tuple(rows.shape))[dim] == 1:
            rows_dims = [d for d in range(ndim - rows.ndim, ndim) if d != dim]
            full = xp.reshape(probs.full(), tuple(rows.shape[i] for i in range(rows.ndim) if ndim - rows.ndim + i != dim) + (probs.table.shape[-1],))
            return Weight(full, tuple(rows_dims) + (dim,))
    dep = term.params["probs"]
    if dep.kind == "gather" and dep.enumerates is not None and value.ndim < ndim + 1:
        dim = ndim + dep.enumerates
        if ((1,) * (ndim - value.ndim) + tuple(value.shape))[dim] == 1:
            table = special(probs.table).materialize(probs.table)
            columns = xp.take(xp.matrix_transpose(table), xp.reshape(value, (-1,)), axis=0)
            kept = [i for i in range(value.ndim) if ndim - value.ndim + i != dim]
            columns = xp.reshape(columns, tuple(value.shape[i] for i in kept) + (table.shape[0],))
            return Weight(columns, tuple(ndim - value.ndim + i for i in kept) + (dim,))
    return None


def _term_value(term: Term, plan: Plan, mu: MeanParams, weight_sums: WeightSums) -> Array:
    params = {name: _moments(dep, mu, plan.latents) for name, dep in term.params.items()}
    rule = RULES[term.family]
    value_stats = _value_stats(term, mu, plan.latents)
    batch = tuple(term.batch_shape)
    probs = _enumeration_weights(term, plan, mu)
    if not probs:
        log_p = rule(value_stats, params)
        if term.reinterpreted_ndims:
            log_p = namespace(log_p).sum(log_p, axis=tuple(range(-term.reinterpreted_ndims, 0)))
        return namespace(log_p).sum(namespace(log_p).broadcast_to(log_p * term.scale, batch))
    # enumerated: a scale that varies along the batch (a mask) is one more weight
    if isinstance(term.scale, (int, float)):
        factor, weights = term.scale, probs
    elif math.prod(term.scale.shape) == 1:
        factor, weights = namespace(term.scale).reshape(term.scale, ()), probs
    else:
        factor, weights = 1.0, [right_aligned(term.scale, len(batch)), *probs]
    if _reduces(term):
        event_ndims = AFFINE_VALUE_EVENT_NDIMS[term.family]
        xp = namespace(value_stats[0])
        point = tuple(xp.zeros(tuple(v.shape[v.ndim - n :]), dtype=v.dtype) for v, n in zip(value_stats, event_ndims))
        param_shape = tuple(rule(point, params).shape)  # where the parameters vary
        total = reduced_total(lambda stats: rule(stats, params), value_stats, event_ndims, param_shape, batch, term.reinterpreted_ndims, weights, weight_sums)
        if total is not None:
            return factor * total
    if term.family == "Categorical" and isinstance(params["probs"], SimplexMoments) and not term.reinterpreted_ndims:
        log_p = _categorical_log_probs(term, plan, params["probs"], value_stats[0])
        if log_p is not None:
            return factor * weighted_total(log_p, batch, weights, weight_sums)
    log_p = rule(value_stats, params)
    if term.reinterpreted_ndims:
        log_p = namespace(log_p).sum(log_p, axis=tuple(range(-term.reinterpreted_ndims, 0)))
    return factor * weighted_total(log_p, batch, weights, weight_sums)


def touches(term: Term, spec: LatentSpec) -> bool:
    """Whether ``term`` depends on the latent ``spec`` (so its gradient may be non-zero)."""
    if spec.discrete:
        dim, shape = spec.enum_dim, term.batch_shape
        return len(shape) >= -dim and shape[dim] == spec.support_size
    return term.value == ("latent", spec.name) or any(d.latent == spec.name for d in term.params.values())


def expected_log_joint(plan: Plan, mu: MeanParams, only: Optional[str] = None, without: Optional[str] = None) -> Array:
    """``F(mu) = E_q[log p(x, z)]`` (a scalar), every constant kept.

    With ``only``, just the terms that depend on that latent site: the same gradient
    with respect to its mean parameters, for less work. With ``without``, just the terms
    that do *not* depend on that site.
    """
    if only is not None and without is not None:
        raise ValueError(f"expected_log_joint takes only={only!r} or without={without!r}, not both")
    total = plan.constant
    weight_sums = WeightSums()
    # terms that sum their data through sufficient statistics first: they leave their
    # total weights for the others (a mixture's prior term)
    for term in sorted(plan.terms, key=lambda t: not _reduces(t)):
        if only is not None and not touches(term, plan.latents[only]):
            continue
        if without is not None and touches(term, plan.latents[without]):
            continue
        total = total + _term_value(term, plan, mu, weight_sums)
    return total


def site_gradient(plan: Plan, mu: MeanParams, name: str, grad: Any) -> tuple:
    """``grad_{mu_name} F``: the gradient, with respect to the site's mean parameters, of
    the terms that touch it (``grad(fn, x)``: the host's autodiff)."""
    return tuple(grad(lambda stats: expected_log_joint(plan, {**mu, name: stats}, only=name), tuple(mu[name])))


def _scale_for_stat(spec: LatentSpec, stat_ndim: int) -> Any:
    """The site's scale, broadcastable against a statistic with ``stat_ndim`` event dims.

    A scale that varies along the batch (``handlers.scale`` with an array, a mask) has the
    batch's shape, or a shape broadcasting against it from the right; it is given the
    statistic's event dimensions as trailing ones.
    """
    scale = spec.scale
    if isinstance(scale, (int, float)) or scale.ndim == 0 or stat_ndim == 0:
        return scale
    xp = namespace(scale)
    padding = len(spec.batch_shape) - scale.ndim
    return xp.reshape(scale, (1,) * padding + tuple(scale.shape) + (1,) * stat_ndim)


def _categorical_logits(spec: LatentSpec, grad: tuple) -> Array:
    """A Categorical site's unnormalized log-probabilities ``g / scale``, ``batch + (K,)``."""
    return grad[0] / _scale_for_stat(spec, 1)


def categorical_log_normalizer(spec: LatentSpec, grad: tuple) -> Array:
    """Log normalizer of a Categorical site's update, ``logsumexp(g / scale)`` over the
    support (short: ``logsumexp_small`` of :mod:`ppl_vi.core._xp`); shape ``batch + (1,)``.
    NGSVI's local passes use it; the CAVI sweep uses :func:`categorical_update`."""
    logits = _categorical_logits(spec, grad)
    return special(logits).logsumexp_small(logits)


def categorical_update(spec: LatentSpec, grad: tuple) -> tuple[Array, Array]:
    """A Categorical site's update as ``(log_normalizer, probs)``: ``logsumexp`` and
    ``softmax`` of ``g / scale`` over the support (``log_normalize`` of
    :mod:`ppl_vi.core._xp`); shapes ``batch + (1,)`` and ``batch + (K,)``."""
    logits = _categorical_logits(spec, grad)
    return special(logits).log_normalize(logits)


def normalizer_total(spec: LatentSpec, log_normalizer: Array) -> Array:
    """``sum(scale * log_normalizer)`` over a Categorical site's batch (``log_normalizer``
    of shape ``batch + (1,)``, :func:`categorical_update`'s): what the site's terms and
    entropy add up to right after its update (:func:`ppl_vi.core.cavi_sweep.sweep`)."""
    return namespace(log_normalizer).sum(spec.scale * log_normalizer[..., 0])


def natural_update(spec: LatentSpec, grad: tuple, log_normalizer: Optional[Array] = None) -> tuple:
    """Optimal natural parameter of ``q_j`` from ``grad_{mu_j} F`` (divided by the site scale).

    Matrix statistics are symmetrized; Categorical log-probabilities normalized by
    ``log_normalizer`` (:func:`categorical_log_normalizer`, computed when not given).
    """
    xp = namespace(grad[0])
    stat_ndims = expfam.family(spec.q_family).stat_event_ndims
    eta = [g / _scale_for_stat(spec, ndim) for g, ndim in zip(grad, stat_ndims)]
    matrix_stat = {"MultivariateNormal": 1, "Wishart": 0}.get(spec.q_family)
    if matrix_stat is not None:
        eta[matrix_stat] = 0.5 * (eta[matrix_stat] + xp.matrix_transpose(eta[matrix_stat]))
    if spec.q_family == "Categorical":
        eta[0] = eta[0] - (categorical_log_normalizer(spec, grad) if log_normalizer is None else log_normalizer)
    return tuple(eta)


def entropy(spec: LatentSpec, eta: Optional[tuple], mu: Optional[tuple] = None) -> Array:
    """``scale * H(q_j)`` summed over the site (``mu``: its mean parameters, when at hand;
    ``eta=None``: rebuilt from them, as a CAVI state keeps no natural parameters for
    discrete sites, see :func:`ppl_vi.core.cavi_sweep.kept_natural`)."""
    family = expfam.family(spec.q_family)
    if eta is None:
        eta = tuple(family.natural_from_mean(mu))
    xp = namespace(eta[0])
    return xp.sum(family.entropy(eta, mu) * spec.scale)


def elbo(plan: Plan, mu: MeanParams, eta: Mapping[str, tuple]) -> Array:
    """Exact ELBO ``F(mu) + sum_j scale_j H(q_j)`` (same constants as ``Trace_ELBO``);
    ``mu`` must be the mean parameters of ``eta`` (which may leave out discrete sites)."""
    total = expected_log_joint(plan, mu)
    for name, spec in plan.latents.items():
        total = total + entropy(spec, eta.get(name), mu[name])
    return total
