"""CAVI on the conjugate zoo: exact posteriors, PRML fixed points, refusals (both backends)."""

from __future__ import annotations

import numpy as np
import pytest

import models
from tests.conformance.test_cavi_helpers import assert_monotone, fit, np_params

SINGLE_LATENT = ["beta_bernoulli", "gamma_poisson", "dirichlet_categorical", "normal_known_variance"]


@pytest.mark.parametrize("name", SINGLE_LATENT)
def test_single_latent_posterior_is_exact(backend, name):
    result, raw, _ = fit(backend, name)
    exact = models.get(name).exact_posterior(raw)
    (site,) = models.get(name).latent_sites
    family, expected = exact.params[site]
    got = np_params(result.posterior[site])
    assert type(result.posterior[site]).__name__ == family
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6)
    # q is the exact posterior, so the ELBO is the log evidence (every constant kept)
    np.testing.assert_allclose(result.elbo[-1], exact.log_evidence, rtol=1e-8)
    assert result.converged and result.stop_reason == "converged"
    assert_monotone(result.elbo)


def test_normal_gamma_prml_fixed_point(backend):
    result, raw, _ = fit(backend, "normal_gamma", num_data=25)
    zoo = models.get("normal_gamma")
    fixed = zoo.extras["mean_field_fixed_point"](raw)
    for site in ("loc", "precision"):
        got = np_params(result.posterior[site])
        for key, value in fixed[site][1].items():
            np.testing.assert_allclose(got[key], value, rtol=1e-6)
    assert result.elbo[-1] <= zoo.exact_posterior(raw).log_evidence
    assert_monotone(result.elbo)


def test_linear_regression_fixed_point(backend):
    """q(weights) q(precision): Gaussian block for the ``to_event`` weights, Gamma noise.

    The mean-field optimum (Bishop PRML §10.3 with a known prior precision scale) has
    ``E[w] = (lambda0 I + X^T X)^{-1} X^T y`` — the exact posterior mean — and
    ``Cov[w] = ((lambda0 I + X^T X) E[tau])^{-1}``, ``q(tau) = Gamma(a0 + (N + D)/2,
    b0 + (E||y - X w||^2 + lambda0 E[w^T w]) / 2)``; solved here by iterating those
    formulas directly.
    """
    result, raw, _ = fit(backend, "bayesian_linear_regression")
    X, y = raw["X"], raw["y"]
    lam, a0, b0 = raw["lambda0"], raw["a0"], raw["b0"]
    n, d = X.shape
    precision_matrix = lam * np.eye(d) + X.T @ X
    mean = np.linalg.solve(precision_matrix, X.T @ y)
    conc, rate = a0 + (n + d) / 2.0, b0
    for _ in range(200):
        cov = np.linalg.inv(precision_matrix * conc / rate)
        resid = np.sum((y - X @ mean) ** 2) + np.trace(X @ cov @ X.T)
        rate = b0 + 0.5 * (resid + lam * (mean @ mean + np.trace(cov)))
    q_w = np_params(result.posterior["weights"])
    q_tau = np_params(result.posterior["precision"])
    np.testing.assert_allclose(q_w["loc"], models.get("bayesian_linear_regression").exact_posterior(raw).mean["weights"], rtol=1e-6)
    np.testing.assert_allclose(q_w["covariance_matrix"], cov, rtol=1e-6)
    np.testing.assert_allclose([q_tau["concentration"], q_tau["rate"]], [conc, rate], rtol=1e-6)
    assert_monotone(result.elbo)


@pytest.mark.parametrize(
    "name, site, prior, child",
    [("eight_schools", "tau", "HalfCauchy", "theta"), ("logistic_regression", "weights", "Normal", "y")],
)
def test_non_conjugate_model_is_refused_before_iterating(backend, name, site, prior, child, monkeypatch):
    import ppl_vi.core.cavi_sweep as sweep_module

    def no_sweep(*args, **kwargs):
        raise AssertionError("CAVI iterated on a non-conjugate model")

    monkeypatch.setattr(sweep_module, "sweep", no_sweep)
    with pytest.raises(NotImplementedError) as err:
        fit(backend, name)
    message = str(err.value)
    for part in (f"site {site!r}", f"prior {prior}", f"child {child!r}", "Supported:", "SVI"):
        assert part in message, message


def test_backends_agree_on_every_conjugate_model():
    for name in SINGLE_LATENT + ["normal_gamma", "bayesian_linear_regression"]:
        fitted = {b: fit(b, name)[0] for b in ("numpyro", "pyro")}
        for site in fitted["numpyro"].posterior:
            a = np_params(fitted["numpyro"].posterior[site])
            b = np_params(fitted["pyro"].posterior[site])
            for key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=f"{name}.{site}.{key}")
        np.testing.assert_allclose(fitted["numpyro"].elbo[-1], fitted["pyro"].elbo[-1], rtol=1e-8)
