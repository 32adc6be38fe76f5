"""Exact posteriors agree with NumPyro NUTS on two conjugate models.

One chain, 400 warm-up and 800 kept draws (seeded); the tolerance is four Monte Carlo
standard errors from ArviZ (``mcse`` of the mean and of the sd, which use the ESS).
"""

from __future__ import annotations

import arviz as az
import jax
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

import models


@pytest.mark.parametrize("name", ["normal_gamma", "bayesian_linear_regression"])
def test_exact_posterior_agrees_with_nuts(name):
    zoo = models.get(name)
    data = zoo.generate_data(5)
    exact = zoo.exact_posterior(data)
    mcmc = MCMC(NUTS(zoo.numpyro_model), num_warmup=400, num_samples=800, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), **models.to_backend(data, "numpyro"))
    posterior = az.convert_to_dataset({k: np.asarray(v)[None] for k, v in mcmc.get_samples().items()})
    mcse_mean, mcse_sd = az.mcse(posterior, method="mean"), az.mcse(posterior, method="sd")
    assert float(az.ess(posterior).to_array().min()) > 100
    for site in zoo.latent_sites:
        draws = posterior[site].values[0]
        np.testing.assert_array_less(np.abs(draws.mean(0) - exact.mean[site]), 4 * mcse_mean[site].values)
        np.testing.assert_array_less(np.abs(draws.std(0) - exact.sd[site]), 4 * mcse_sd[site].values)


@pytest.mark.slow
def test_gmm_nuts_reference_with_enumerated_assignments():
    """NUTS with ``assignment`` summed out (NumPyro's enumeration needs ``funsor``) finds the centres."""
    pytest.importorskip("funsor", reason="NumPyro enumerates discrete sites in NUTS only with funsor installed")
    zoo = models.get("bayesian_gmm")
    data = zoo.generate_data(0, num_data=150)
    mcmc = MCMC(NUTS(zoo.numpyro_model), num_warmup=200, num_samples=200, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), **models.to_backend(data, "numpyro"))
    radii = np.linalg.norm(np.asarray(mcmc.get_samples()["locs"]).mean(0), axis=-1)
    np.testing.assert_allclose(radii, 4.0 / np.sin(np.pi / 3), rtol=0.1)
