"""Property tests of CAVI on random conjugate programs (hypothesis).

Random linear-Gaussian chains ``z_0 -> z_1 -> ... -> x`` (optionally with a Gamma noise
precision) and Beta/Gamma single-latent models with random priors and data: the ELBO
trace of exact CAVI never decreases (relative tolerance 1e-10), and where the log
evidence is known in closed form, ELBO <= log p(x), with equality for one latent.
The planner and the sweep are backend-neutral (:mod:`ppl_vi.core`); the random
programs run on Pyro (eager torch, no per-program compilation), one fixed program on
both backends.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from ppl_vi.pyro import CAVI
from tests.conformance.test_cavi_helpers import assert_monotone

floats = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False)
scales = st.floats(min_value=0.3, max_value=3.0, allow_nan=False)


def _chain_model(links, obs_coef, noise, gamma_noise):
    def model(x):
        z = pyro.sample("z0", dist.Normal(links[0][1], links[0][2]))
        for i, (a, b, s) in enumerate(links[1:], start=1):
            z = pyro.sample(f"z{i}", dist.Normal(a * z + b, s))
        if gamma_noise:
            precision = pyro.sample("precision", dist.Gamma(2.0, 2.0 * noise**2))
            scale = precision**-0.5
        else:
            scale = noise
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(obs_coef * z, scale), obs=x)

    return model


def _chain_log_evidence(links, obs_coef, noise, x):
    mean, var = links[0][1], links[0][2] ** 2
    for a, b, s in links[1:]:
        mean, var = a * mean + b, a * a * var + s * s
    n = x.shape[0]
    cov = noise**2 * np.eye(n) + obs_coef**2 * var * np.ones((n, n))
    return multivariate_normal(np.full(n, obs_coef * mean), cov).logpdf(x)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    links=st.lists(st.tuples(floats, floats, scales), min_size=1, max_size=3),
    obs_coef=st.floats(min_value=0.5, max_value=2.0),
    noise=scales,
    gamma_noise=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_gaussian_chains_monotone_and_below_evidence(links, obs_coef, noise, gamma_noise, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 1.5, size=int(rng.integers(3, 12)))
    torch.manual_seed(seed)
    result = CAVI(_chain_model(links, obs_coef, noise, gamma_noise)).run(torch.as_tensor(x), tol=1e-12)
    assert result.stop_reason in ("converged", "max_steps")
    assert_monotone(result.elbo)
    if not gamma_noise:
        log_evidence = _chain_log_evidence(links, obs_coef, noise, x)
        assert result.elbo[-1] <= log_evidence + 1e-9 * abs(log_evidence)
        if len(links) == 1:
            np.testing.assert_allclose(result.elbo[-1], log_evidence, rtol=1e-9)


@settings(max_examples=10, deadline=None)
@given(
    a=st.floats(0.5, 5.0), b=st.floats(0.5, 5.0), rate_scale=st.floats(0.2, 3.0), seed=st.integers(0, 2**16)
)
def test_random_gamma_rate_hierarchy_is_monotone(a, b, rate_scale, seed):
    """``g0 ~ Gamma(a, b)``, ``g1 ~ Gamma(a, rate_scale * g0)``, ``x ~ Poisson(g1)``."""

    def model(x):
        g0 = pyro.sample("g0", dist.Gamma(a, b))
        g1 = pyro.sample("g1", dist.Gamma(a, rate_scale * g0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Poisson(g1), obs=x)

    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.poisson(3.0, size=8).astype(float))
    torch.manual_seed(seed)
    result = CAVI(model).run(x, tol=1e-12)
    assert_monotone(result.elbo)
    assert np.all(np.isfinite(result.elbo))


@pytest.mark.parametrize("seed", [0])
def test_fixed_chain_same_elbo_on_both_backends(seed):
    import jax
    import numpyro
    import numpyro.distributions as ndist

    from ppl_vi.numpyro import CAVI as NumPyroCAVI

    def numpyro_model(x):
        z0 = numpyro.sample("z0", ndist.Normal(0.5, 1.5))
        z1 = numpyro.sample("z1", ndist.Normal(-0.7 * z0 + 0.2, 0.8))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", ndist.Normal(1.3 * z1, 0.6), obs=x)

    links = [(0.0, 0.5, 1.5), (-0.7, 0.2, 0.8)]
    x = np.random.default_rng(seed).normal(size=6)
    ours = NumPyroCAVI(numpyro_model).run(jax.random.PRNGKey(seed), jax.numpy.asarray(x), tol=1e-13)
    torch.manual_seed(seed)
    theirs = CAVI(_chain_model(links, 1.3, 0.6, False)).run(torch.as_tensor(x), tol=1e-13)
    np.testing.assert_allclose(ours.elbo[-1], theirs.elbo[-1], rtol=1e-9)
    assert ours.elbo[-1] <= _chain_log_evidence(links, 1.3, 0.6, x)


def test_kmeans_start_is_a_lloyd_fixed_point_that_recovers_separated_clusters():
    from ppl_vi.core.cavi_start import kmeans_plus_plus

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, size=600)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    points = centres[truth] + rng.standard_normal((600, 2))
    labels = kmeans_plus_plus(points, 4, np.random.default_rng(1))
    # the same partition as the truth, up to relabelling
    assert len(set(zip(truth.tolist(), labels.tolist()))) == 4
    # a Lloyd fixed point: every point is nearest to the mean of its own cluster
    means = np.stack([points[labels == k].mean(0) for k in range(4)])
    nearest = np.argmin(((points[:, None, :] - means[None]) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(nearest, labels)
