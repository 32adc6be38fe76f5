"""Starting points of CAVI, read from the plan (never symmetric, reproducible from an rng).

Continuous sites start as point masses at a random point of their support (NumPyro) or
a prior draw (Pyro), ``mu_j = T(z_j)``; discrete sites start from responsibilities
computed here in NumPy (both hosts call :func:`initial_responsibilities`, so the same
rng gives the same start on both):

* a site that selects the component of continuous (Normal/MultivariateNormal)
  observations starts from greedy k-means++ seeding and Lloyd steps on those
  observations (Arthur & Vassilvitskii 2007);
* a site that selects, by a gather over its values, a row of a Dirichlet latent that is
  the ``probs`` of an observed Categorical (a mixture of categoricals, LDA's topics)
  starts from *data-seeded rows*: each selected row gets the observation counts of a
  few random groups of observations, ``lambda_r = prior_r + counts_r``, and
  ``r_nk ∝ exp E[log beta_{row(n, k)}, x_n]`` under ``beta_r ~ Dirichlet(lambda_r)``.
  The groups are those of the site's own prior: when its ``probs`` is a gather of a
  latent (LDA's ``doc_topics[doc_ids]``), the observations sharing an index value form
  a group (a document); otherwise (or with fewer groups than rows) every observation
  is a group of its own. This is the "seeded" start of Blei's lda-c (topics from
  random documents), written for any such program;
* any other discrete site starts from Dirichlet(1) draws.

Measured trade-off of the data-seeded start (benchmarks/cavi_lda.py and small zoo
corpora, with the start seeds of commit af40c80; the seed mapping changed in 7e90030, after
which the benchmark's ``PRNGKey(0)`` start reached the perplexity in 7 sweeps): on 1,800 documents x 1,000 words x 20 topics it reaches scikit-learn's
20-iteration held-out perplexity in 7-8 sweeps instead of 34 and stays ahead (perplexity
2,998 vs 3,098 after 150 sweeps); on small corpora with few topics (40 documents x 30
words x 3 topics, where every document mixes most topics) it commits early and its
restarts end 10-50 nats below those of the random start. ``seed_from_data=False`` gives
the random start.

The k-means start puts :data:`START_NOISE` of each row's mass evenly over the components; the
data-seeded start is mixed with a Dirichlet(1) draw (weight :data:`START_NOISE`), so no
two components start identical even when two rows drew the same counts. The continuous
sites are updated first in every sweep, so the first sweep already starts from these
probabilities.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional

import numpy as np
from scipy.special import digamma

from ppl_vi.core import expfam
from ppl_vi.core._xp import namespace
from ppl_vi.core.cavi_objective import LatentSpec, Plan, Term

__all__ = ["initial_state", "initial_responsibilities", "kmeans_plus_plus", "seeded_rows", "START_NOISE", "GROUPS_PER_ROW"]

START_NOISE = 1e-3
"""Weight of the Dirichlet(1) draw mixed into an informed start (breaks ties)."""

GROUPS_PER_ROW = 2
"""Groups of observations whose counts seed one Dirichlet row (fewer when there are fewer groups).

Measured on the LDA benchmark (benchmarks/cavi_lda.py, 1,800 documents, 20 topics; start
seeds of commit af40c80), groups drawn uniformly: 2 documents per topic reach scikit-learn's 20-iteration
perplexity in 7-8 sweeps and the lowest perplexity after 25-80 sweeps; 1 document is
too noisy (12-13 sweeps), 5 or more mix several topics in each seed (12-24 sweeps).
k-means++-style picks (D^2 on word frequencies, plus nearest documents) were no better
than uniform picks within the spread over seeds."""


def initial_state(plan: Plan, base: Mapping[str, Any], responsibilities: Mapping[str, Any]) -> tuple[dict, dict]:
    """``(eta, mu)`` of the start described in the module docstring.

    Parameters
    ----------
    base : dict
        Continuous latent name -> host array (a point of the support).
    responsibilities : dict
        Discrete latent name -> host array of probabilities, shape ``batch + (K,)``
        (``batch`` for Bernoulli: the probability of 1).
    """
    eta, mu = {}, {}
    for name, spec in plan.latents.items():
        fam = expfam.family(spec.q_family)
        if spec.discrete:
            r = responsibilities[name]
            xp = namespace(r)
            mu[name] = (r,)
            eta[name] = (xp.log(r / (1.0 - r)),) if spec.q_family == "Bernoulli" else (xp.log(r),)
        else:
            mu[name] = tuple(fam.sufficient_stats(base[name]))
            eta[name] = tuple(0.0 * s for s in mu[name])
    return eta, mu


def kmeans_plus_plus(points: np.ndarray, num_clusters: int, rng: np.random.Generator, max_lloyd: int = 50) -> np.ndarray:
    """Hard labels of ``points`` (N, D): greedy k-means++ seeding, then Lloyd steps.

    Greedy seeding (``2 + log K`` candidates per centre, keep the one that lowers the
    potential most; Arthur & Vassilvitskii 2007, as scikit-learn's ``KMeans``), then
    Lloyd iterations until the labels stop changing (at most ``max_lloyd``).

    Returns
    -------
    ndarray of int, shape (N,)
    """
    n = points.shape[0]
    num_trials = 2 + int(np.log(num_clusters))
    centres = [points[rng.integers(n)]]
    dist2 = np.sum((points - centres[0]) ** 2, axis=-1)
    for _ in range(1, num_clusters):
        total = dist2.sum()
        picks = rng.integers(n, size=num_trials) if total <= 0 else rng.choice(n, size=num_trials, p=dist2 / total)
        candidates = [np.minimum(dist2, np.sum((points - points[p]) ** 2, axis=-1)) for p in picks]
        best = int(np.argmin([c.sum() for c in candidates]))
        centres.append(points[picks[best]])
        dist2 = candidates[best]
    centres = np.stack(centres)
    labels = np.full(n, -1)
    for _ in range(max_lloyd):
        # ||x||^2 is the same for every centre, so the argmin needs only the other two terms
        new_labels = np.argmin(np.sum(centres**2, -1)[None, :] - 2.0 * points @ centres.T, axis=-1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        counts = np.bincount(labels, minlength=num_clusters)
        sums = np.stack([np.bincount(labels, weights=points[:, d], minlength=num_clusters) for d in range(points.shape[1])], axis=-1)
        occupied = counts > 0
        centres[occupied] = sums[occupied] / counts[occupied, None]
    return labels


def seeded_rows(
    prior: np.ndarray,
    rows: np.ndarray,
    values: np.ndarray,
    groups: np.ndarray,
    rng: np.random.Generator,
    per_row: int = GROUPS_PER_ROW,
    weights: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Dirichlet concentrations seeded from data: ``prior`` plus the counts of random groups.

    Each row in ``rows`` gets the category counts of ``per_row`` groups of observations
    (fewer if there are too few groups); the groups are drawn without replacement, so no
    two rows share one. An observation counts ``weights[n]`` times where given (an
    observed site scaled by an array: distinct values with their multiplicities).

    Parameters
    ----------
    prior : ndarray, shape (R, V)
        Prior concentrations of the Dirichlet rows.
    rows : ndarray of int
        The rows to seed (the others keep their prior).
    values : ndarray of int, shape (N,)
        Observed categories.
    groups : ndarray of int, shape (N,)
        Group label of each observation.
    weights : ndarray, shape (N,), optional
        Multiplicity of each observation (default: 1 each).

    Returns
    -------
    ndarray, shape (R, V)
    """
    labels, group_of = np.unique(groups, return_inverse=True)
    per_row = max(1, min(per_row, len(labels) // max(len(rows), 1)))
    chosen = rng.choice(len(labels), size=(len(rows), per_row), replace=len(labels) < len(rows) * per_row)
    owner = np.full(len(labels), -1)
    owner[chosen.reshape(-1)] = np.repeat(np.arange(len(rows)), per_row)
    hit = owner[group_of] >= 0
    num_categories = prior.shape[-1]
    flat = owner[group_of[hit]] * num_categories + values[hit]
    hit_weights = None if weights is None else weights[hit]
    counts = np.bincount(flat, weights=hit_weights, minlength=len(rows) * num_categories).reshape(len(rows), num_categories)
    concentration = np.array(prior, dtype=float)
    concentration[rows] += counts
    return concentration


def _enumerated_layout(shape: tuple, spec: LatentSpec) -> bool:
    """Whether a term of batch ``shape`` varies along ``spec``'s enumeration dim and its batch only."""
    size, batch, dim = spec.support_size, tuple(spec.batch_shape), spec.enum_dim
    if len(shape) < -dim or shape[dim] != size or shape[len(shape) - len(batch) :] != batch:
        return False
    others = [s for i, s in enumerate(shape) if i != len(shape) + dim and i < len(shape) - len(batch)]
    return all(s == 1 for s in others)


def _to_site_layout(array: np.ndarray, shape: tuple, spec: LatentSpec) -> np.ndarray:
    """An array of a term's batch ``shape`` as ``(prod(batch), K)`` (K the enumeration dim);
    a view of ``array`` when the term has one batch dim besides K (no copy of the broadcast)."""
    full = np.broadcast_to(array, shape)
    return np.moveaxis(full, spec.enum_dim, -1).reshape(-1, spec.support_size)


def _prior_groups(plan: Plan, spec: LatentSpec, to_numpy: Callable) -> Optional[np.ndarray]:
    """Group labels of the site's batch from the gather index of its own prior's ``probs``."""
    term = next((t for t in plan.terms if t.name == spec.name), None)
    dep = None if term is None else term.params.get("probs")
    if dep is None or dep.kind != "gather":
        return None
    index = to_numpy(dep.index)
    batch = tuple(spec.batch_shape)
    extra = index.ndim - len(batch)
    if extra > 0:
        if math.prod(index.shape[:extra]) != 1:
            return None  # the prior varies along other sites' enumeration dims: no grouping
        index = index.reshape(index.shape[extra:])
    return np.broadcast_to(index, batch).reshape(-1)


def _dirichlet_prior(plan: Plan, latent: str, to_numpy: Callable) -> Optional[np.ndarray]:
    """Prior concentrations of a Dirichlet latent as ``(rows, V)``, or ``None`` if not constant."""
    spec = plan.latents[latent]
    term: Optional[Term] = next((t for t in plan.terms if t.name == latent), None)
    dep = None if term is None else term.params.get("concentration")
    if dep is None or dep.kind != "const":
        return None
    return np.broadcast_to(to_numpy(dep.moments), tuple(spec.batch_shape) + tuple(spec.shape[-1:])).reshape(-1, spec.shape[-1])


def _categorical_start(plan: Plan, spec: LatentSpec, rng: np.random.Generator, to_numpy: Callable) -> Optional[np.ndarray]:
    """Data-seeded responsibilities ``(prod(batch), K)`` (module docstring), or ``None``."""
    for term in plan.terms:
        dep = term.params.get("probs")
        if term.value[0] != "observed" or term.family != "Categorical" or dep is None or dep.kind != "gather":
            continue
        shape = tuple(term.batch_shape)
        if plan.latents[dep.latent].q_family != "Dirichlet" or not _enumerated_layout(shape, spec):
            continue
        compact = to_numpy(dep.index)  # the row each value selects, broadcasting against ``shape``
        if _constant_along(compact, len(shape) + spec.enum_dim, len(shape)):
            continue  # the site does not select the row
        prior = _dirichlet_prior(plan, dep.latent, to_numpy)
        if prior is None:
            continue
        values = _to_site_layout(to_numpy(term.value[1][0]), shape, spec)[:, 0].astype(np.int64)
        rows = np.unique(compact)  # the rows the broadcast index takes, from its compact form
        groups = _prior_groups(plan, spec, to_numpy)
        if groups is None or len(np.unique(groups)) < len(rows):
            groups = np.arange(values.shape[0])  # no grouping (e.g. shared mixture weights)
        concentration = seeded_rows(prior, rows, values, groups, rng, weights=_observation_weights(term, shape, spec, to_numpy))
        expected_log = digamma(concentration) - digamma(concentration.sum(-1, keepdims=True))
        # (N, K), computed in place: a topic model's responsibilities are data x topics
        probs = expected_log[_to_site_layout(compact, shape, spec), values[:, None]]
        probs -= probs.max(-1, keepdims=True)
        np.exp(probs, out=probs)
        probs /= probs.sum(-1, keepdims=True)
        return probs
    return None


def _constant_along(index: np.ndarray, axis: int, ndim: int) -> bool:
    """Whether ``index``, broadcast to ``ndim`` dims (from the right), is constant along ``axis``."""
    full_axis = axis - (ndim - index.ndim)
    if full_axis < 0 or index.shape[full_axis] == 1:
        return True
    return bool(np.all(index == np.take(index, [0], axis=full_axis)))


def _observation_weights(term: Term, shape: tuple, spec: LatentSpec, to_numpy: Callable) -> Optional[np.ndarray]:
    """A term's scale per observation ``(N,)`` in the site's layout, ``None`` if it is one number."""
    scale = term.scale if isinstance(term.scale, (int, float)) else to_numpy(term.scale)
    if np.ndim(scale) == 0 or np.size(scale) == 1:
        return None
    return _to_site_layout(scale, shape, spec)[:, 0]


def _kmeans_start(plan: Plan, spec: LatentSpec, rng: np.random.Generator, to_numpy: Callable) -> Optional[np.ndarray]:
    """Nearly one-hot responsibilities ``(prod(batch), K)`` from k-means++ on continuous observations, or ``None``."""
    size, batch = spec.support_size, tuple(spec.batch_shape)
    for term in plan.terms:
        shape = tuple(term.batch_shape)
        if term.value[0] != "observed" or term.family not in ("Normal", "MultivariateNormal"):
            continue
        if len(shape) < -spec.enum_dim or shape[spec.enum_dim] != size or shape[len(shape) - len(batch) :] != batch:
            continue
        points = to_numpy(term.value[1][0]).reshape(int(np.prod(batch)), -1)
        if points.shape[0] >= size:
            labels = kmeans_plus_plus(points, size, rng)
            probs = np.full((points.shape[0], size), START_NOISE / size)
            probs[np.arange(points.shape[0]), labels] += 1.0 - START_NOISE
            return probs
    return None


def initial_responsibilities(
    plan: Plan, spec: LatentSpec, rng: np.random.Generator, to_numpy: Callable, seed_from_data: bool = True
) -> np.ndarray:
    """Starting probabilities of a discrete site, shape ``batch + (K,)`` (NumPy).

    The first of: k-means++ on continuous observations it selects the component of;
    data-seeded Dirichlet rows of an observed Categorical it selects the row of;
    Dirichlet(1) draws (module docstring). ``to_numpy`` converts the plan's host arrays.
    ``seed_from_data=False`` skips the data-seeded rows (Dirichlet(1) draws instead: slower
    to leave the near-symmetric start, but on small corpora with few topics it reached
    better optima; see the module docstring).
    """
    size, batch = spec.support_size, tuple(spec.batch_shape)
    probs = _kmeans_start(plan, spec, rng, to_numpy)
    if probs is None:
        seeded = _categorical_start(plan, spec, rng, to_numpy) if seed_from_data else None
        probs = rng.dirichlet(np.ones(size), size=batch)
        if seeded is not None:  # (1 - START_NOISE) * seeded + START_NOISE * probs, in place
            probs *= START_NOISE
            seeded = seeded.reshape(batch + (size,))
            seeded *= 1.0 - START_NOISE
            probs += seeded
    probs = probs.reshape(batch + (size,))
    return probs[..., 1] if spec.q_family == "Bernoulli" else probs
