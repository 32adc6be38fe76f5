"""NumPyro NUTS on each posteriordb port lands within 4 Monte Carlo SEs of Stan's reference
mean and sd (the SEs of both runs combined; seeded, so the outcome is deterministic)."""

from __future__ import annotations

import arviz as az
import jax
import numpy as np
import pytest

import models
from models.posteriordb import POSTERIORDB_NAMES, reference_summary

# In the default run: the hierarchical port and two regressions (with and without a
# proper prior on sigma); the other regressions' densities are already pinned to Stan's
# by test_posteriordb.py, so their NUTS runs (~5 s CPU each) go to the slow run, with
# diamonds (5000 x 24 design, badly conditioned: ~10-20 s alone).
SLOW = {
    "pdb_diamonds_diamonds",
    "pdb_earnings_earn_height",
    "pdb_earnings_logearn_height",
    "pdb_kidiq_kidscore_momhs",
    "pdb_mesquite_logmesquite_logvas",
}
PORTS = [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
    for name in sorted(POSTERIORDB_NAMES)
]


def nuts_posterior(
    name: str, num_warmup: int = 400, num_samples: int = 1000
) -> az.InferenceData:
    from numpyro.infer import MCMC, NUTS

    m = models.get(name)
    mcmc = MCMC(
        NUTS(m.numpyro_model, dense_mass=True),
        num_warmup=num_warmup,
        num_samples=num_samples,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), **m.data("numpyro"))
    samples = mcmc.get_samples(group_by_chain=True)
    return az.from_dict(
        posterior={site: np.asarray(values) for site, values in samples.items()}
    )


@pytest.mark.parametrize("name", PORTS)
def test_nuts_matches_the_reference_mean_within_four_mcse(name):
    posterior = nuts_posterior(name)
    mean = posterior.posterior.mean(dim=("chain", "draw"))
    sd = posterior.posterior.std(dim=("chain", "draw"), ddof=1)
    mcse, mcse_sd = az.mcse(posterior), az.mcse(posterior, method="sd")
    reference = reference_summary(name)
    reference_draws = models.get(name).reference_draws()
    assert set(reference.site) <= set(posterior.posterior.data_vars)
    mean_z, sd_z = {}, {}
    for coordinate, row in reference.iterrows():
        at = row["index"]
        nuts_mean = float(mean[row.site].values[at])
        mean_z[coordinate] = (nuts_mean - row["mean"]) / np.hypot(float(mcse[row.site].values[at]), row.mcse)
        # SE of the reference sd (delta method, kurtosis from the shipped thinned draws)
        ref = reference_draws[row.site][(slice(None), slice(None)) + at]
        kurtosis = np.mean((ref - row["mean"]) ** 4) / row.sd**4
        ref_sd_se = row.sd * np.sqrt((kurtosis - 1.0) / (4.0 * row.ess))
        sd_se = np.hypot(float(mcse_sd[row.site].values[at]), ref_sd_se)
        sd_z[coordinate] = (float(sd[row.site].values[at]) - row.sd) / sd_se
    off = {c: round(z, 2) for c, z in mean_z.items() if abs(z) > 4}
    assert not off, f"{name}: NUTS means more than 4 MCSE from posteriordb's: {off}"
    wrong_scale = {c: round(z, 2) for c, z in sd_z.items() if abs(z) > 4}
    assert not wrong_scale, f"{name}: NUTS sds more than 4 MCSE from posteriordb's: {wrong_scale}"
