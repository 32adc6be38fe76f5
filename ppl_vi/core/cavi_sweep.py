"""One CAVI sweep, the starting point and the stopping rule, written once for both hosts.

A sweep visits the latent sites in ``plan.order`` (continuous sites in program order,
then the enumerated discrete sites) and sets each ``q_j`` to its exact optimum given the
others: ``eta_j = grad_{mu_j} F(mu) / scale_j``, ``mu_j = E_{eta_j}[T]``. The host
supplies ``grad(fn, x)`` (``jax.grad`` or ``torch.autograd.grad``).

Starts (never symmetric): continuous sites start as point masses at a random point of
their support (NumPyro) or a prior draw (Pyro), ``mu_j = T(z_j)``; a discrete site that selects the component of
continuous observations (a mixture) starts from greedy k-means++ seeding and Lloyd
steps on those observations (Arthur & Vassilvitskii 2007), any other discrete site from
random probabilities. The continuous sites are updated first in every sweep, so the
first sweep already starts from the discrete sites' informed probabilities.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ppl_vi.core import expfam
from ppl_vi.core._xp import namespace
from ppl_vi.core.cavi_objective import LatentSpec, Plan, elbo, entropy, expected_log_joint, natural_update

__all__ = ["initial_state", "sweep", "relative_change", "kmeans_plus_plus", "initial_responsibilities"]

Grad = Callable[[Callable[[Any], Any], Any], Any]


def _update_site(plan: Plan, name: str, eta: dict, mu: dict, grad: Grad) -> tuple:
    """Set ``q_name`` to its optimum in place; return ``grad_{mu_name} F``."""
    spec = plan.latents[name]

    def objective(stats):
        return expected_log_joint(plan, {**mu, name: stats}, only=name)

    gradient = tuple(grad(objective, tuple(mu[name])))
    new_eta = natural_update(spec, gradient)
    eta[name] = new_eta
    mu[name] = tuple(expfam.family(spec.q_family).mean_from_natural(new_eta))
    return gradient


def _elbo_after_update(plan: Plan, mu: dict, eta: dict, name: str, gradient: tuple) -> Any:
    """The ELBO right after ``name`` was updated with ``gradient = grad_{mu_name} F``.

    Every term that touches an enumerated Categorical site (``K > 1``) is
    ``sum(log_p * r)`` over its enumeration dimension, so those terms add up to
    ``<grad_r F, r>`` at any ``r`` (linear, no offset): the terms touching ``name``
    need not be evaluated again — for a mixture they are the N x K bulk of the ELBO.
    With the site's entropy ``-scale <r, eta>`` and its update ``eta = g / scale - lse``
    (``lse`` the log normalizer of each row), both add up to ``sum scale * lse``, read
    from one column: ``sum_n (g[n, 0] - scale[n] * eta[n, 0])``.
    """
    spec = plan.latents[name]
    if spec.q_family != "Categorical" or not spec.discrete or spec.support_size <= 1:
        return elbo(plan, mu, eta)
    xp = namespace(gradient[0])
    total = expected_log_joint(plan, mu, without=name) + xp.sum(gradient[0][..., 0] - spec.scale * eta[name][0][..., 0])
    for other, other_spec in plan.latents.items():
        if other != name:
            total = total + entropy(other_spec, eta[other])
    return total


def sweep(plan: Plan, eta: Mapping[str, tuple], mu: Mapping[str, tuple], grad: Grad, names=None) -> tuple[dict, dict, Any]:
    """Update every site in ``names`` (default ``plan.order``) once; return ``(eta, mu, elbo)``."""
    eta, mu = dict(eta), dict(mu)
    names = tuple(plan.order if names is None else names)
    gradient = None
    for name in names:
        gradient = _update_site(plan, name, eta, mu, grad)
    if not names:
        return eta, mu, elbo(plan, mu, eta)
    return eta, mu, _elbo_after_update(plan, mu, eta, names[-1], gradient)


def relative_change(new: Any, old: Any) -> Any:
    """``|new - old| / |new|`` (the stopping statistic)."""
    xp = namespace(new)
    return xp.abs(new - old) / xp.maximum(xp.abs(new), xp.asarray(1e-300, dtype=new.dtype))


def initial_state(plan: Plan, base: Mapping[str, Any], responsibilities: Mapping[str, Any]) -> tuple[dict, dict]:
    """``(eta, mu)`` after the start described in the module docstring.

    Parameters
    ----------
    base : dict
        Continuous latent name -> host array (a prior draw).
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


def initial_responsibilities(plan: Plan, spec: LatentSpec, rng: np.random.Generator, to_numpy: Callable) -> np.ndarray:
    """Starting probabilities of a discrete site, shape ``batch + (K,)`` (NumPy).

    k-means++ when an observed Normal/MultivariateNormal site is selected by it and its
    values line up with the site's batch; otherwise Dirichlet(1) draws.
    """
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
            probs = np.full((points.shape[0], size), 1e-3 / size)
            probs[np.arange(points.shape[0]), labels] += 1.0 - 1e-3
            probs = probs.reshape(batch + (size,))
            return probs[..., 1] if spec.q_family == "Bernoulli" else probs
    probs = rng.dirichlet(np.ones(size), size=batch)
    return probs[..., 1] if spec.q_family == "Bernoulli" else probs
