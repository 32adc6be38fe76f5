"""NumPyro NUTS on each posteriordb port lands within 4 Monte Carlo SEs of Stan's reference mean
(and its sd near the reference sd)."""

from __future__ import annotations

import arviz as az
import jax
import numpy as np
import pytest

import models
from models.posteriordb import POSTERIORDB_NAMES, reference_summary

SLOW = {"pdb_diamonds_diamonds"}  # 5000 x 24 design, badly conditioned: ~10-20 s alone
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
    mcse = az.mcse(posterior)
    reference = reference_summary(name)
    assert set(reference.site) <= set(posterior.posterior.data_vars)
    z_scores, sd_ratios = {}, {}
    for coordinate, row in reference.iterrows():
        nuts_mean = float(mean[row.site].values[row["index"]])
        nuts_mcse = float(mcse[row.site].values[row["index"]])
        z_scores[coordinate] = (nuts_mean - row["mean"]) / np.hypot(nuts_mcse, row.mcse)
        sd_ratios[coordinate] = float(sd[row.site].values[row["index"]]) / row.sd
    off = {c: round(z, 2) for c, z in z_scores.items() if abs(z) > 4}
    assert not off, f"{name}: NUTS means more than 4 MCSE from posteriordb's: {off}"
    # sd of ~1000 effective draws: relative error ~3% (heavier for tau's tail); 20% is a gross-error check
    wrong_scale = {c: round(r, 3) for c, r in sd_ratios.items() if abs(r - 1) > 0.2}
    assert not wrong_scale, (
        f"{name}: NUTS/reference sd ratios off by more than 20%: {wrong_scale}"
    )
