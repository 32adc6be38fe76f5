"""Exact posteriors and evidences of the conjugate zoo models, checked independently.

Each closed form is compared with a computation that does not use it: numerical
quadrature of ``p(theta) p(x | theta)`` (1-D models), the chain rule of predictive
probabilities (Dirichlet-categorical evidence), a grid on the simplex (Dirichlet
moments), and, for the Normal-Gamma models, quadrature over the precision of the
Gaussian marginal ``y | precision ~ N(X m0, (I + X Lambda0^{-1} X^T) / precision)``.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import models

EXACT = [n for n in models.names() if models.get(n).exact_posterior is not None]
HOSTS = [(ndist, np.asarray), (pdist, lambda v: torch.as_tensor(np.asarray(v, dtype=float)))]


def _quadrature(log_joint, lower: float, upper: float, num_grid: int = 4001) -> tuple[float, float, float]:
    """``(log Z, mean, sd)`` of the density proportional to ``exp(log_joint)`` on ``(lower, upper)``."""
    grid = np.linspace(lower, upper, num_grid)[1:-1]
    values = np.array([log_joint(t) for t in grid])
    peak, shift = grid[np.argmax(values)], values.max()

    def moment(power: int) -> float:
        f = lambda t: t**power * np.exp(log_joint(t) - shift)
        return integrate.quad(f, lower, upper, points=[peak], limit=400, epsabs=0.0, epsrel=1e-11)[0]

    z, m1, m2 = moment(0), moment(1), moment(2)
    mean = m1 / z
    return float(np.log(z) + shift), float(mean), float(np.sqrt(m2 / z - mean**2))


def _check(post: models.ExactPosterior, site: str, expected: tuple[float, float, float]) -> None:
    np.testing.assert_allclose(
        [post.log_evidence, float(post.mean[site]), float(post.sd[site])], expected, rtol=1e-7, atol=1e-9
    )


def test_beta_bernoulli_against_quadrature():
    data = models.get("beta_bernoulli").generate_data(3)
    x = data["x"]
    log_joint = lambda p: stats.beta.logpdf(p, data["a0"], data["b0"]) + stats.bernoulli.logpmf(x, p).sum()
    _check(models.get("beta_bernoulli").exact_posterior(data), "p", _quadrature(log_joint, 0.0, 1.0))


def test_gamma_poisson_against_quadrature():
    data = models.get("gamma_poisson").generate_data(3)
    x = data["x"]

    def log_joint(rate):
        return stats.gamma.logpdf(rate, data["a0"], scale=1.0 / data["b0"]) + stats.poisson.logpmf(x, rate).sum()

    _check(models.get("gamma_poisson").exact_posterior(data), "rate", _quadrature(log_joint, 0.0, 30.0))


def test_normal_known_variance_against_quadrature():
    data = models.get("normal_known_variance").generate_data(3)

    def log_joint(loc):
        prior = stats.norm.logpdf(loc, data["m0"], data["s0"])
        return prior + stats.norm.logpdf(data["x"], loc, data["sigma"]).sum()

    post = models.get("normal_known_variance").exact_posterior(data)
    _check(post, "loc", _quadrature(log_joint, -30.0, 30.0))


def test_dirichlet_categorical_evidence_by_chain_rule_and_moments_on_a_grid():
    data = models.get("dirichlet_categorical").generate_data(3)
    alpha0, x = data["alpha0"], data["x"]
    post = models.get("dirichlet_categorical").exact_posterior(data)

    counts, log_predictive = np.zeros_like(alpha0), 0.0
    for n, label in enumerate(x):  # Polya urn: p(x_n = k | x_<n) = (alpha0_k + n_k) / (A0 + n)
        log_predictive += np.log((alpha0[label] + counts[label]) / (alpha0.sum() + n))
        counts[label] += 1
    np.testing.assert_allclose(post.log_evidence, log_predictive, rtol=1e-12)

    step = 1.0 / 1200
    p1, p2 = np.meshgrid(np.arange(step / 2, 1, step), np.arange(step / 2, 1, step), indexing="ij")
    inside = p1 + p2 < 1.0
    probs = np.stack([p1[inside], p2[inside], 1.0 - p1[inside] - p2[inside]], axis=-1)
    log_density = (np.log(probs) * (alpha0 + np.bincount(x, minlength=3) - 1.0)).sum(-1)
    weights = np.exp(log_density - log_density.max())
    weights /= weights.sum()
    mean = weights @ probs
    sd = np.sqrt(weights @ (probs - mean) ** 2)
    np.testing.assert_allclose(post.mean["probs"], mean, atol=2e-5)
    np.testing.assert_allclose(post.sd["probs"], sd, atol=2e-5)


def _regression_by_precision_quadrature(X, y, prior_loc, prior_cov, a0, b0) -> dict:
    """Evidence and moments of the Normal-Gamma regression, by quadrature over the precision."""
    marginal_cov = np.eye(y.shape[0]) + X @ prior_cov @ X.T
    centred = y - X @ prior_loc

    def log_joint(precision):
        likelihood = stats.multivariate_normal(np.zeros_like(y), marginal_cov / precision).logpdf(centred)
        return stats.gamma.logpdf(precision, a0, scale=1.0 / b0) + likelihood

    log_evidence, precision_mean, precision_sd = _quadrature(log_joint, 0.0, 40.0, num_grid=801)
    shift = log_joint(precision_mean)
    inverse_moment = (
        integrate.quad(lambda t: np.exp(log_joint(t) - shift) / t, 0.0, 40.0, limit=400)[0]
        / (integrate.quad(lambda t: np.exp(log_joint(t) - shift), 0.0, 40.0, limit=400)[0])
    )
    gain = prior_cov @ X.T @ np.linalg.inv(marginal_cov)  # Gaussian conditioning given the precision
    weights_mean = prior_loc + gain @ centred
    weights_cov = inverse_moment * (prior_cov - gain @ X @ prior_cov)
    return {
        "log_evidence": log_evidence,
        "precision": (precision_mean, precision_sd),
        "weights": (weights_mean, np.sqrt(np.diag(weights_cov))),
    }


def test_normal_gamma_against_precision_quadrature():
    data = models.get("normal_gamma").generate_data(3)
    x = data["x"]
    post = models.get("normal_gamma").exact_posterior(data)
    ref = _regression_by_precision_quadrature(
        np.ones((x.shape[0], 1)),
        x,
        np.array([data["mu0"]]),
        np.array([[1.0 / data["lambda0"]]]),
        data["a0"],
        data["b0"],
    )
    np.testing.assert_allclose(post.log_evidence, ref["log_evidence"], rtol=1e-8)
    np.testing.assert_allclose([post.mean["precision"], post.sd["precision"]], ref["precision"], rtol=1e-7)
    np.testing.assert_allclose([post.mean["loc"], post.sd["loc"]], [w[0] for w in ref["weights"]], rtol=1e-7)


def test_bayesian_linear_regression_against_precision_quadrature():
    data = models.get("bayesian_linear_regression").generate_data(3, num_data=25, num_features=4)
    num_features = data["X"].shape[1]
    post = models.get("bayesian_linear_regression").exact_posterior(data)
    ref = _regression_by_precision_quadrature(
        data["X"], data["y"], np.zeros(num_features), np.eye(num_features) / data["lambda0"], data["a0"], data["b0"]
    )
    np.testing.assert_allclose(post.log_evidence, ref["log_evidence"], rtol=1e-8)
    np.testing.assert_allclose([post.mean["precision"], post.sd["precision"]], ref["precision"], rtol=1e-7)
    np.testing.assert_allclose(post.mean["weights"], ref["weights"][0], rtol=1e-8)
    np.testing.assert_allclose(post.sd["weights"], ref["weights"][1], rtol=1e-7)


@pytest.mark.parametrize("name", EXACT)
def test_params_build_host_distributions_with_the_stated_moments(name):
    zoo = models.get(name)
    post = zoo.exact_posterior(zoo.generate_data(1))
    marginal_sites = [site for site in post.params if isinstance(site, str)]
    assert set(marginal_sites) == set(zoo.latent_sites)
    for site, (module, as_array) in itertools.product(marginal_sites, HOSTS):
        family, params = post.params[site]
        d = getattr(module, family)(**{k: as_array(v) for k, v in params.items()})
        np.testing.assert_allclose(np.asarray(d.mean), post.mean[site], rtol=1e-10)
        np.testing.assert_allclose(np.sqrt(np.asarray(d.variance)), post.sd[site], rtol=1e-10)


@pytest.mark.parametrize("name", EXACT)
def test_joint_sampler_matches_moments(name):
    zoo = models.get(name)
    post = zoo.exact_posterior(zoo.generate_data(1))
    num_samples = 40_000
    draws = post.sample(np.random.default_rng(0), num_samples)
    assert set(draws) == set(zoo.latent_sites)
    for site, value in draws.items():
        assert value.shape == (num_samples, *np.shape(post.mean[site]))
        standard_error = post.sd[site] / np.sqrt(num_samples)
        assert np.all(np.abs(value.mean(0) - post.mean[site]) < 5 * standard_error), site
        # sd of the sample sd (delta method): sd * sqrt((kurtosis - 1) / (4 S))
        kurtosis = ((value - post.mean[site]) ** 4).mean(0) / post.sd[site] ** 4
        sd_error = post.sd[site] * np.sqrt((kurtosis - 1.0) / (4.0 * num_samples))
        assert np.all(np.abs(value.std(0) - post.sd[site]) < 5 * sd_error), (site, value.std(0), post.sd[site])


def test_normal_gamma_sampler_has_the_joint_dependence():
    """Given the precision, ``loc`` has variance ``1 / (lambdaN * precision)``: E[(loc - muN)^2 precision] = 1/lambdaN."""
    post = models.get("normal_gamma").exact_posterior(models.get("normal_gamma").generate_data(1))
    draws = post.sample(np.random.default_rng(1), 40_000)
    _, params = post.params[("loc", "precision")]
    scaled = (draws["loc"] - params["loc"]) ** 2 * draws["precision"] * params["lambda"]
    assert abs(scaled.mean() - 1.0) < 5 * scaled.std() / np.sqrt(scaled.shape[0])


def test_normal_gamma_mean_field_fixed_point_satisfies_prml_10_26_to_10_30():
    data = models.get("normal_gamma").generate_data(4)
    x, mu0, lambda0, a0, b0 = data["x"], data["mu0"], data["lambda0"], data["a0"], data["b0"]
    n = x.shape[0]
    fixed = models.get("normal_gamma").extras["mean_field_fixed_point"](data)
    assert fixed["loc"][0] == "Normal" and fixed["precision"][0] == "Gamma"
    loc, scale = fixed["loc"][1]["loc"], fixed["loc"][1]["scale"]
    a, b = fixed["precision"][1]["concentration"], fixed["precision"][1]["rate"]
    expected_precision = a / b
    second_moment = loc**2 + scale**2  # E[loc^2] under q(loc)
    np.testing.assert_allclose(loc, (lambda0 * mu0 + x.sum()) / (lambda0 + n), rtol=1e-12)  # (10.26)
    np.testing.assert_allclose(scale**-2, (lambda0 + n) * expected_precision, rtol=1e-12)  # (10.27)
    np.testing.assert_allclose(a, a0 + (n + 1) / 2, rtol=1e-12)  # (10.29)
    expected_rate = b0 + 0.5 * (  # (10.30), expanded in E[loc] and E[loc^2]
        (x**2).sum() - 2 * loc * x.sum() + n * second_moment + lambda0 * (second_moment - 2 * mu0 * loc + mu0**2)
    )
    np.testing.assert_allclose(b, expected_rate, rtol=1e-12)


def test_normal_gamma_mean_field_elbo_is_below_the_exact_evidence():
    """ELBO(q*) by Monte Carlo, below log p(x) and close to it (mean field is nearly exact here)."""
    zoo = models.get("normal_gamma")
    data = zoo.generate_data(4)
    fixed = zoo.extras["mean_field_fixed_point"](data)
    q_loc = stats.norm(fixed["loc"][1]["loc"], fixed["loc"][1]["scale"])
    q_precision = stats.gamma(fixed["precision"][1]["concentration"], scale=1.0 / fixed["precision"][1]["rate"])
    rng = np.random.default_rng(0)
    loc, precision = q_loc.rvs(20_000, random_state=rng), q_precision.rvs(20_000, random_state=rng)
    log_joint = (
        stats.gamma.logpdf(precision, data["a0"], scale=1.0 / data["b0"])
        + stats.norm.logpdf(loc, data["mu0"], 1.0 / np.sqrt(data["lambda0"] * precision))
        + stats.norm.logpdf(data["x"][:, None], loc, 1.0 / np.sqrt(precision)).sum(0)
    )
    integrand = log_joint - q_loc.logpdf(loc) - q_precision.logpdf(precision)
    elbo, elbo_se = integrand.mean(), integrand.std() / np.sqrt(integrand.shape[0])
    log_evidence = zoo.exact_posterior(data).log_evidence
    assert elbo < log_evidence + 3 * elbo_se
    assert log_evidence - elbo < 0.5


# --- hypothesis: the candidate's identity log p(x) = log p(x, theta) - log p(theta | x) ---------

_UNIT = st.floats(0.2, 10.0)
_GENERATOR_ARGS = {
    "beta_bernoulli": {"true_p": st.floats(0.0, 1.0), "a0": _UNIT, "b0": _UNIT},
    "gamma_poisson": {"true_rate": st.floats(0.1, 20.0), "a0": _UNIT, "b0": _UNIT},
    "dirichlet_categorical": {"concentration": _UNIT},
    "normal_known_variance": {"true_loc": st.floats(-5, 5), "sigma": _UNIT, "m0": st.floats(-3, 3), "s0": _UNIT},
    "normal_gamma": {"true_precision": _UNIT, "mu0": st.floats(-3, 3), "lambda0": _UNIT, "a0": _UNIT, "b0": _UNIT},
    "bayesian_linear_regression": {
        "num_features": st.integers(1, 4),
        "noise_scale": _UNIT,
        "lambda0": _UNIT,
        "a0": _UNIT,
        "b0": _UNIT,
    },
}


def _posterior_log_density(post: models.ExactPosterior, theta: dict) -> float:
    """``log p(theta | x)`` from the closed-form parameters in ``post.params``."""
    joint = [site for site in post.params if isinstance(site, tuple)]
    if joint:  # Normal-Gamma: Gamma(precision) x Normal(first site | precision)
        (site, _), (_, p) = joint[0], post.params[joint[0]]
        precision = theta["precision"]
        matrix = np.atleast_2d(p.get("precision_matrix", p.get("lambda")))
        value = np.atleast_1d(theta[site])
        return float(
            stats.gamma.logpdf(precision, p["concentration"], scale=1.0 / p["rate"])
            + stats.multivariate_normal(np.atleast_1d(p["loc"]), np.linalg.inv(precision * matrix)).logpdf(value)
        )
    ((site, (family, p)),) = post.params.items()
    scipy_density = {
        "Beta": lambda v: stats.beta.logpdf(v, p["concentration1"], p["concentration0"]),
        "Gamma": lambda v: stats.gamma.logpdf(v, p["concentration"], scale=1.0 / p["rate"]),
        "Dirichlet": lambda v: stats.dirichlet.logpdf(v, p["concentration"]),
        "Normal": lambda v: stats.norm.logpdf(v, p["loc"], p["scale"]),
    }
    return float(scipy_density[family](theta[site]))


@pytest.mark.parametrize("name", sorted(_GENERATOR_ARGS))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**16), num_data=st.integers(1, 30))
def test_evidence_is_log_joint_minus_log_posterior(name, data, seed, num_data):
    """At a posterior draw, Pyro's log joint of the zoo program minus the closed-form
    posterior log density is the closed-form log evidence (checks both against the program)."""
    zoo = models.get(name)
    kwargs = {k: data.draw(strategy, label=k) for k, strategy in _GENERATOR_ARGS[name].items()}
    dataset = zoo.generate_data(seed, num_data=num_data, **kwargs)
    post = zoo.exact_posterior(dataset)
    theta = {k: v[0] for k, v in post.sample(np.random.default_rng(seed), 1).items()}
    conditioned = pyro.poutine.condition(zoo.pyro_model, data={k: torch.as_tensor(v) for k, v in theta.items()})
    log_joint = float(pyro.poutine.trace(conditioned).get_trace(**models.to_backend(dataset, "pyro")).log_prob_sum())
    np.testing.assert_allclose(log_joint - _posterior_log_density(post, theta), post.log_evidence, rtol=1e-9, atol=1e-9)
