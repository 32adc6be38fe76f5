"""The enumeration contractions equal the naive broadcast-multiply-sum, and the rules
they rely on are affine in the value's statistics."""

from __future__ import annotations

import numpy as np
import pytest

from ppl_vi.core.cavi_enumeration import AFFINE_VALUE_EVENT_NDIMS, Weight, WeightSums, reduced_total, right_aligned, weighted_total
from ppl_vi.core.conjugate import RULES, const_moments, observed_stats


def test_weighted_total_matches_broadcast_sum(as_backend):
    rng = np.random.default_rng(0)
    log_p = rng.normal(size=(4, 1, 7))  # varies along enum dim 0 and data dim 2
    r = rng.dirichlet(np.ones(4), size=(3, 7))  # (3, 7, K): batch dims 1, 2 and enum dim 0
    scale = rng.uniform(size=(7,))
    naive = np.sum(np.broadcast_to(log_p, (4, 3, 7)) * np.moveaxis(r, -1, 0) * scale)
    got = weighted_total(as_backend(log_p), (4, 3, 7), [right_aligned(as_backend(scale), 3), Weight(as_backend(r), (1, 2, 0))])
    np.testing.assert_allclose(float(got), naive, rtol=1e-12)


@pytest.mark.parametrize("reinterpreted", [0, 1])
def test_reduced_total_matches_naive_mixture(as_backend, reinterpreted):
    """A Normal mixture term: parameters vary along K only, data along N (and along a
    to_event dim of size 3 when ``reinterpreted``); masks enter through the scale."""
    rng = np.random.default_rng(1)
    K, N = 5, 40
    event = (3,) if reinterpreted else ()
    x = rng.normal(size=(N,) + event)
    loc = rng.normal(size=(K, 1) + event)
    scale_param = rng.uniform(0.5, 2.0, size=(K, 1) + event)
    params = {"loc": const_moments("real", as_backend(loc)), "scale": const_moments("precision", as_backend(scale_param))}
    stats = observed_stats("Normal", as_backend(x))
    r = rng.dirichlet(np.ones(K), size=N)
    mask = (rng.uniform(size=N) > 0.2).astype(float)
    log_p = np.asarray(RULES["Normal"](stats, params))
    if reinterpreted:
        log_p = log_p.sum(-1)
    naive = np.sum(log_p * r.T * mask)
    weights = [right_aligned(as_backend(mask), 2), Weight(as_backend(r), (1, 0))]
    probe = RULES["Normal"](tuple(as_backend(np.zeros(())) for _ in stats), params)
    got = reduced_total(lambda s: RULES["Normal"](s, params), stats, (0, 0), tuple(probe.shape), (K, N), reinterpreted, weights)
    np.testing.assert_allclose(float(got), naive, rtol=1e-10)


def test_shared_weight_sums_give_the_same_totals(as_backend):
    """A mixture's prior term (constant along N) reads the child term's total weights
    from :class:`WeightSums`; a term that varies along N, or other weights, does not."""
    rng = np.random.default_rng(2)
    K, N = 4, 30
    x = rng.normal(size=(N,))
    params = {"loc": const_moments("real", as_backend(rng.normal(size=(K, 1)))), "scale": const_moments("precision", as_backend(np.ones((K, 1))))}
    stats = observed_stats("Normal", as_backend(x))
    r = as_backend(rng.dirichlet(np.ones(K), size=N))
    sums = WeightSums()
    reduced_total(lambda s: RULES["Normal"](s, params), stats, (0, 0), (K, 1), (K, N), 0, [Weight(r, (1, 0))], sums)
    log_pi = rng.normal(size=(K, 1))
    shared = sums.get([Weight(r, (1, 0))], (K, N), [1])
    assert shared is not None and sums.get([Weight(r * 1.0, (1, 0))], (K, N), [1]) is None
    np.testing.assert_allclose(np.asarray(shared)[:, 0], np.asarray(r).sum(0), rtol=1e-12)
    for log_p in (log_pi, rng.normal(size=(K, N))):
        expected = np.sum(np.broadcast_to(log_p, (K, N)) * np.asarray(r).T)
        got = weighted_total(as_backend(log_p), (K, N), [Weight(r, (1, 0))], sums)
        np.testing.assert_allclose(float(got), expected, rtol=1e-12)
    planted = WeightSums()  # the constant term reads what is there, and only for its own dims
    planted.put([Weight(r, (1, 0))], (K, N), [1], as_backend(np.ones((K, 1))))
    got = weighted_total(as_backend(log_pi), (K, N), [Weight(r, (1, 0))], planted)
    np.testing.assert_allclose(float(got), log_pi.sum(), rtol=1e-12)


def test_reduced_total_declines_when_nothing_to_sum(as_backend):
    """Parameters varying along every batch dim leave nothing to sum inside."""
    x = as_backend(np.ones((2, 3)))
    params = {"loc": const_moments("real", as_backend(np.zeros((2, 3)))), "scale": const_moments("precision", as_backend(np.ones((2, 3))))}
    stats = observed_stats("Normal", x)
    r = as_backend(np.full((3, 2), 0.5))
    got = reduced_total(lambda s: RULES["Normal"](s, params), stats, (0, 0), (2, 3), (2, 3), 0, [Weight(r, (1, 0))])
    assert got is None


_VALUES = {
    "Normal": lambda rng: rng.normal(size=(2,)),
    "MultivariateNormal": lambda rng: rng.normal(size=(2, 3)),
    "Gamma": lambda rng: rng.uniform(0.5, 2.0, size=(2,)),
    "Exponential": lambda rng: rng.uniform(0.5, 2.0, size=(2,)),
    "Beta": lambda rng: rng.uniform(0.1, 0.9, size=(2,)),
    "Bernoulli": lambda rng: rng.integers(0, 2, size=(2,)).astype(float),
    "Dirichlet": lambda rng: rng.dirichlet(np.ones(3), size=2),
    "Wishart": lambda rng: np.stack([np.eye(3) + 0.1 * np.outer(v, v) for v in rng.normal(size=(2, 3))]),
}
_PARAMS = {
    "Normal": {"loc": ("real", 0.3), "scale": ("precision", 1.5)},
    "MultivariateNormal": {"loc": ("vector", np.array([0.1, -0.2, 0.3])), "precision_matrix": ("precision_matrix", np.eye(3) * 2.0)},
    "Gamma": {"concentration": ("const", 2.0), "rate": ("positive", 1.5)},
    "Exponential": {"rate": ("positive", 1.5)},
    "Beta": {"concentration1": ("const", 2.0), "concentration0": ("const", 3.0)},
    "Bernoulli": {"probs": ("unit", 0.3)},
    "Dirichlet": {"concentration": ("const", np.array([1.0, 2.0, 3.0]))},
    "Wishart": {"df": ("const", 5.0), "scale_matrix": ("const", np.eye(3))},
}


@pytest.mark.parametrize("family", sorted(AFFINE_VALUE_EVENT_NDIMS))
def test_listed_rules_are_affine_in_the_statistics(as_backend, family):
    """f(a v1 + (1 - a) v2) = a f(v1) + (1 - a) f(v2): what the sufficient-statistics sum needs."""
    rng = np.random.default_rng(2)
    params = {name: const_moments(role, as_backend(np.asarray(value, dtype=float))) for name, (role, value) in _PARAMS[family].items()}
    v1, v2 = (observed_stats(family, as_backend(_VALUES[family](rng))) for _ in range(2))
    a = 0.3
    mixed = tuple(a * s1 + (1 - a) * s2 for s1, s2 in zip(v1, v2))
    lhs = np.asarray(RULES[family](mixed, params))
    rhs = a * np.asarray(RULES[family](v1, params)) + (1 - a) * np.asarray(RULES[family](v2, params))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)
    assert len(v1) == len(AFFINE_VALUE_EVENT_NDIMS[family])


def test_poisson_rule_is_not_affine(as_backend):
    """Why Poisson is not listed: its base measure log x! is not affine in x."""
    params = {"rate": const_moments("positive", as_backend(np.asarray(2.0)))}
    v1, v2 = (observed_stats("Poisson", as_backend(np.asarray(x))) for x in (1.0, 5.0))
    mixed = tuple(0.5 * a + 0.5 * b for a, b in zip(v1, v2))
    lhs = float(RULES["Poisson"](mixed, params))
    rhs = 0.5 * float(RULES["Poisson"](v1, params)) + 0.5 * float(RULES["Poisson"](v2, params))
    assert abs(lhs - rhs) > 1e-3
