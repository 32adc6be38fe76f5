"""The closed forms under CAVI, checked numerically on torch and jax arrays.

* every expected-log-density rule with constant parameters equals Pyro's
  ``log_prob`` (exactly: no expectation left);
* with random parameters, the Normal, MultivariateNormal, Gamma-rate, Poisson and
  Categorical rules equal Monte Carlo averages of the host's ``log_prob`` under q;
* the probe-based dependency detector recovers gathers, scales and affine maps, and
  rejects a non-linear map; its comparisons of readings, made in blocks and on a
  strided sample first, decide as ``np.allclose`` on the whole arrays does.
"""

from __future__ import annotations

import numpy as np
import pytest

from ppl_vi.core import cavi_probe
from ppl_vi.core.cavi_probe import allclose, changed, detect_dense, detect_gather, max_abs
from ppl_vi.core.conjugate import PARAM_ROLES, RULES, SimplexMoments, const_moments, observed_stats

RNG = np.random.default_rng(0)
SPD = np.array([[2.0, 0.3], [0.3, 1.0]])
CASES = {
    "Normal": ({"loc": np.array([0.3, -1.0]), "scale": np.array([0.7, 2.0])}, np.array([0.1, 0.5])),
    "MultivariateNormal": ({"loc": np.array([0.2, -0.4]), "precision_matrix": SPD}, np.array([[0.3, 0.1], [-1.0, 2.0]])),
    "Gamma": ({"concentration": np.array(2.5), "rate": np.array([0.5, 3.0])}, np.array([1.2, 0.3])),
    "Exponential": ({"rate": np.array([0.5, 3.0])}, np.array([1.2, 0.3])),
    "Poisson": ({"rate": np.array([0.5, 3.0])}, np.array([2.0, 0.0])),
    "Beta": ({"concentration1": np.array(2.0), "concentration0": np.array(0.7)}, np.array([0.2, 0.9])),
    "Bernoulli": ({"probs": np.array([0.3, 0.8])}, np.array([1.0, 0.0])),
    "Binomial": ({"total_count": np.array(5.0), "probs": np.array([0.3, 0.8])}, np.array([2.0, 5.0])),
    "Dirichlet": ({"concentration": np.array([0.5, 2.0, 1.5])}, np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])),
    "Categorical": ({"probs": np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])}, np.array([2, 0])),
    "Multinomial": ({"total_count": np.array(4.0), "probs": np.array([0.2, 0.5, 0.3])}, np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 4.0]])),
    "Wishart": ({"df": np.array(4.0), "scale_matrix": SPD}, np.array([[[1.0, 0.2], [0.2, 2.0]], [[3.0, -0.5], [-0.5, 0.7]]])),
}


def _host(backend: str):
    if backend == "numpyro":
        import jax.numpy as jnp
        import numpyro.distributions as dist

        def arr(a):
            a = np.asarray(a)
            return jnp.asarray(a) if a.dtype.kind == "i" else jnp.asarray(a, dtype=jnp.float64)

        names = {"df": "concentration", "Wishart.scale_matrix": "scale_matrix"}
        return dist, arr, names, np.asarray
    import pyro.distributions as dist
    import torch

    def arr(a):
        a = np.asarray(a)
        return torch.as_tensor(a) if a.dtype.kind == "i" else torch.as_tensor(a, dtype=torch.float64)

    names = {"df": "df", "Wishart.scale_matrix": "covariance_matrix"}
    return dist, arr, names, lambda t: t.detach().numpy()


def _host_dist(dist, arr, names, family, params):
    kwargs = {}
    for k, v in params.items():
        key = names.get(f"{family}.{k}", names.get(k, k)) if family == "Wishart" else k
        kwargs[key] = arr(v) if k != "total_count" else (int(v) if family == "Multinomial" else arr(v))
    return getattr(dist, family)(**kwargs)


@pytest.mark.parametrize("family", sorted(CASES))
def test_rule_with_constant_params_is_log_prob(family):
    """On torch (eager, no per-op compilation); jax runs the same code, and the
    cross-backend fits of the zoo agree to 1e-8 (test_cavi_exact)."""
    dist, arr, names, to_np = _host("pyro")
    params, value = CASES[family]
    moments = {k: const_moments(role, arr(params[k])) for k, role in PARAM_ROLES[family].items()}
    got = RULES[family](observed_stats(family, arr(value)), moments)
    expected = _host_dist(dist, arr, names, family, params).log_prob(arr(value))
    np.testing.assert_allclose(to_np(got), to_np(expected), rtol=1e-10, atol=1e-12)


def test_rules_with_random_params_match_monte_carlo(backend):
    """Normal(loc ~ N(m, s), precision ~ Gamma(a, b)); Poisson(rate ~ Gamma);
    Categorical(probs ~ Dirichlet); MVN(loc ~ MVN, precision ~ Wishart)."""
    from scipy import stats
    from scipy.special import digamma

    dist, arr, names, to_np = _host(backend)
    n = 200_000
    rng = np.random.default_rng(1)
    # Normal child
    m, s, a, b, x = 0.4, 0.6, 3.0, 2.0, 1.3
    locs, precs = rng.normal(m, s, n), rng.gamma(a, 1.0 / b, n)
    mc = stats.norm(locs, precs**-0.5).logpdf(x)
    loc_m = (arr(np.array(m)), arr(np.array(m * m + s * s)))
    prec_m = (arr(np.array(a / b)), arr(np.array(digamma(a) - np.log(b))))
    got = RULES["Normal"](observed_stats("Normal", arr(np.array(x))), {"loc": loc_m, "scale": prec_m})
    assert abs(float(to_np(got)) - mc.mean()) < 4 * mc.std() / np.sqrt(n)
    # Poisson child with a Gamma rate
    rates = rng.gamma(a, 1.0 / b, n)
    mc = stats.poisson(rates).logpmf(3)
    got = RULES["Poisson"]((arr(np.array(3.0)),), {"rate": prec_m})
    assert abs(float(to_np(got)) - mc.mean()) < 4 * mc.std() / np.sqrt(n)
    # Categorical child with Dirichlet probs
    alpha = np.array([0.5, 2.0, 1.5])
    probs = rng.dirichlet(alpha, n)
    mc = np.log(probs[:, 1])
    table = arr((digamma(alpha) - digamma(alpha.sum()))[None, :])
    got = RULES["Categorical"]((arr(np.array(1)),), {"probs": SimplexMoments(table, arr(np.array(0)))})
    assert abs(float(to_np(got)) - mc.mean()) < 4 * mc.std() / np.sqrt(n)
    # MVN child: loc ~ N(mu, C), precision ~ Wishart(nu, V)
    mu, C, nu, V, y = np.array([0.5, -0.2]), 0.3 * SPD, 5.0, SPD / 5.0, np.array([1.0, 0.3])
    k = 40_000
    loc_draws = rng.multivariate_normal(mu, C, k)
    prec_draws = stats.wishart(df=nu, scale=V).rvs(k, random_state=2)
    diff = y - loc_draws
    quad = np.einsum("ni,nij,nj->n", diff, prec_draws, diff)
    mc = 0.5 * np.linalg.slogdet(prec_draws)[1] - np.log(2 * np.pi) - 0.5 * quad
    logdet = digamma((nu - np.arange(2)) / 2).sum() + 2 * np.log(2) + np.linalg.slogdet(V)[1]
    moments = {"loc": (arr(mu), arr(C + np.outer(mu, mu))), "precision_matrix": (arr(nu * V), arr(np.array(logdet)))}
    got = RULES["MultivariateNormal"](observed_stats("MultivariateNormal", arr(y)), moments)
    assert abs(float(to_np(got)) - mc.mean()) < 4 * mc.std() / np.sqrt(k)


def test_detect_gather_finds_index_scale_and_offset():
    z = [RNG.normal(size=(5,)) for _ in range(4)]
    idx = np.array([[3, 0, 0, 4]])
    readings = [2.5 * zk[idx] + 1.0 for zk in z]
    found = detect_gather(readings, z, 0, 0)
    np.testing.assert_array_equal(found.index, idx)
    np.testing.assert_allclose(found.coef, 2.5)
    np.testing.assert_allclose(found.offset, 1.0)
    rows = [RNG.dirichlet(np.ones(3), size=4) for _ in range(4)]
    found = detect_gather([r[np.array([2, 2, 1])] for r in rows], rows, 1, 1)
    np.testing.assert_array_equal(found.index, [2, 2, 1])
    assert detect_gather([np.exp(zk[idx]) for zk in z], z, 0, 0) is None


def test_detect_dense_finds_affine_maps_only():
    X = RNG.normal(size=(6, 3))
    z = [RNG.normal(size=3) for _ in range(4)]
    columns = [X @ (z[0] + e) for e in np.eye(3)]
    found = detect_dense(X @ z[0], columns, [X @ zk for zk in z[1:]], z)
    np.testing.assert_allclose(found.jacobian, X, atol=1e-12)
    squares = [(X @ (z[0] + e)) ** 2 for e in np.eye(3)]
    assert detect_dense((X @ z[0]) ** 2, squares, [(X @ zk) ** 2 for zk in z[1:]], z) is None


def test_blocked_comparisons_decide_as_whole_array_ones():
    size = 3 * cavi_probe._BLOCK + 17  # several blocks and a partial one
    a = RNG.normal(size=size) * 1e3
    assert max_abs(a) == np.abs(a).max() and max_abs(np.zeros(0)) == 0.0
    assert max_abs(np.array([True, False])) == 1.0
    for position in (0, cavi_probe._BLOCK - 1, size - 1):
        for step in (1e-3, 1e-13):  # a change, and rounding
            b = a.copy()
            b[position] += step * abs(a[position])
            assert allclose(a, b, 1e-9, 0.0) == np.allclose(a, b, rtol=1e-9, atol=0.0)
    b = a.copy()
    a[5], b[5] = np.nan, np.nan
    assert allclose(a, b, 1e-9, 0.0, equal_nan=True) and not allclose(a, b, 1e-9, 0.0)  # as np.allclose's equal_nan
    b[6] = np.nan
    assert not allclose(a, b, 1e-9, 0.0, equal_nan=True)


def test_changed_sees_a_single_moved_entry_the_sample_skips():
    a = RNG.normal(size=(40_000, 5))
    b = a.copy()
    stride = a.size // cavi_probe._SAMPLE
    b.reshape(-1)[stride * 3 + 1] += 1.0  # between two sampled entries
    assert changed(a, b)
    assert changed(a, a + 1.0)  # moved everywhere: the sample shows it
    assert not changed(a, a.copy())
    assert not changed(a, a * (1.0 + 1e-14))  # rounding
    assert changed(a, a[:-1])


def test_detect_gather_verifies_every_block_of_rows():
    rows = [RNG.dirichlet(np.ones(4), size=6) for _ in range(4)]
    idx = RNG.integers(0, 6, size=2 * cavi_probe._BLOCK // 4 + 3)  # three blocks of rows
    readings = [r[idx] for r in rows]
    found = detect_gather(readings, rows, 1, 1)
    np.testing.assert_array_equal(found.index, idx)
    readings[3] = readings[3].copy()
    readings[3][-1] = readings[3][-1][::-1]  # the fourth probe breaks the map in the last row only
    assert detect_gather(readings, rows, 1, 1) is None
