"""expfam against the host libraries: log_prob, entropy, KL, parameter maps, parity."""

from __future__ import annotations

import numpy as np
import numpyro.distributions as nd
import pytest
import scipy.stats
import torch.distributions as td

from tests.core.test_expfam_cases import ARRAY_BACKENDS, CASES, NAMES, host_dists, host_samples, to_backend, to_numpy

# numpyro registers KL for these pairs only; torch for all but Wishart.
NUMPYRO_KL = {"Normal", "MultivariateNormal", "Gamma", "Beta", "Dirichlet", "Categorical"}
TORCH_KL = set(NAMES) - {"Wishart"}


def _close(actual, expected, rtol=1e-9, atol=1e-9):
    """assert_allclose through tuples and dicts (same keys)."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), (set(actual), set(expected))
        for key in expected:
            _close(actual[key], expected[key], rtol, atol)
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _close(a, e, rtol, atol)
    else:
        np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=rtol, atol=atol)


@pytest.mark.parametrize("backend", ARRAY_BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_log_prob_matches_hosts(name, backend):
    case = CASES[name]
    torch_dist, numpyro_dist = host_dists(case)
    x = host_samples(case, 5, seed=1)  # (5,) + batch + event
    ours = case.family.log_prob(to_backend(to_numpy(x), backend), case.eta(backend))
    _close(ours, torch_dist.log_prob(x))
    _close(ours, numpyro_dist.log_prob(to_backend(to_numpy(x), "jax")))


@pytest.mark.parametrize("backend", ARRAY_BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_entropy_matches_hosts(name, backend):
    case = CASES[name]
    torch_dist, numpyro_dist = host_dists(case)
    ours = case.family.entropy(case.eta(backend))
    if name == "Poisson":  # neither host has it; SciPy sums the series
        _close(ours, scipy.stats.poisson(case.params()["rate"]).entropy(), rtol=1e-10)
        return
    _close(ours, torch_dist.entropy())
    _close(ours, numpyro_dist.entropy())


@pytest.mark.parametrize("backend", ARRAY_BACKENDS)
@pytest.mark.parametrize("name", sorted(TORCH_KL))
def test_kl_matches_hosts(name, backend):
    case = CASES[name]
    (tp, np_p), (tq, np_q) = host_dists(case, seed=0), host_dists(case, seed=1)
    ours = case.family.kl_divergence(case.eta(backend, seed=0), case.eta(backend, seed=1))
    _close(ours, td.kl_divergence(tp, tq))
    if name == "Categorical":  # numpyro registers the probs parameterization only
        np_p, np_q = nd.CategoricalProbs(np_p.probs), nd.CategoricalProbs(np_q.probs)
    if name in NUMPYRO_KL:
        _close(ours, nd.kl_divergence(np_p, np_q))


@pytest.mark.parametrize("backend", ARRAY_BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_natural_mean_round_trip(name, backend):
    family = CASES[name].family
    eta = CASES[name].eta(backend)
    mu = family.mean_from_natural(eta)
    back = family.natural_from_mean(mu)
    if name == "Categorical":  # non-minimal: compare up to the additive constant
        _close(back[0] - back[0][..., :1], eta[0] - eta[0][..., :1], rtol=1e-8)
    else:
        _close(back, eta, rtol=1e-8, atol=1e-10)
    _close(family.mean_from_natural(back), mu, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", ARRAY_BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip(name, backend):
    case = CASES[name]
    back = case.family.params_from_natural(case.eta(backend))
    assert set(back) <= set(case.family.param_names)
    _close(back, case.params(), rtol=1e-10)
    # The returned dict is ready for the host distribution's constructor.
    host = case.torch_dist if backend == "torch" else case.numpyro_dist
    assert tuple(host(back).batch_shape) == (3,)


_FUNCTIONS = ("log_normalizer", "mean_from_natural", "entropy", "params_from_natural", "round_trip", "kl", "log_prob")


@pytest.mark.parametrize("name", NAMES)
def test_torch_and_jax_agree(name):
    case = CASES[name]
    family = case.family
    x = to_numpy(host_samples(case, 2, seed=2))

    def run(backend):
        eta, eta_q = case.eta(backend, 0), case.eta(backend, 1)
        return {
            "log_normalizer": family.log_normalizer(eta),
            "mean_from_natural": family.mean_from_natural(eta),
            "entropy": family.entropy(eta),
            "params_from_natural": family.params_from_natural(eta),
            "round_trip": family.natural_from_mean(family.mean_from_natural(eta)),
            "kl": family.kl_divergence(eta, eta_q),
            "log_prob": family.log_prob(to_backend(x, backend), eta),
        }

    torch_out, jax_out = run("torch"), run("jax")
    for key in _FUNCTIONS:
        _close(torch_out[key], jax_out[key], rtol=1e-11, atol=1e-12)


def _wishart_kl_textbook(df_p, scale_p, df_q, scale_q):
    """KL(W(df_p, V_p) || W(df_q, V_q)), written out (e.g. Penny 2001, eq. 25 in scale form):
    df_q/2 (log|V_q| - log|V_p|) + df_p/2 (tr(V_q^{-1} V_p) - p)
    + log Gamma_p(df_q/2) - log Gamma_p(df_p/2) + (df_p - df_q)/2 psi_p(df_p/2)."""
    from scipy.special import digamma, multigammaln

    p = scale_p.shape[-1]
    logdet = lambda a: np.linalg.slogdet(a)[1]
    psi_p = sum(digamma(df_p / 2 - i / 2) for i in range(p))
    return (
        df_q / 2 * (logdet(scale_q) - logdet(scale_p))
        + df_p / 2 * (np.trace(np.linalg.solve(scale_q, scale_p)) - p)
        + multigammaln(df_q / 2, p)
        - multigammaln(df_p / 2, p)
        + (df_p - df_q) / 2 * psi_p
    )


@pytest.mark.parametrize("backend", ARRAY_BACKENDS)
def test_wishart_kl_matches_the_textbook_formula(backend):
    """Neither host registers a Wishart KL; the Bregman form must equal the written-out one."""
    case = CASES["Wishart"]
    p, q = case.params(0), case.params(1)
    ours = to_numpy(case.family.kl_divergence(case.eta(backend, 0), case.eta(backend, 1)))
    expected = [
        _wishart_kl_textbook(p["df"][b], p["scale_matrix"][b], q["df"][b], q["scale_matrix"][b])
        for b in range(len(p["df"]))
    ]
    np.testing.assert_allclose(ours, expected, rtol=1e-10)
