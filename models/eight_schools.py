"""Eight schools (Rubin 1981; Gelman et al., *BDA3* §5.5), centred parametrization.

Model::

    mu ~ Normal(0, 5)
    tau ~ HalfCauchy(5)
    theta_j | mu, tau ~ Normal(mu, tau),      j = 1..8   (plate "schools")
    y_j | theta_j ~ Normal(theta_j, sigma_j)             (sigma_j known)

Not conditionally conjugate (``tau``'s complete conditional is not a standard family):
it exists to exercise CAVI's refusal and the comparison layer; the reference is NUTS.
"""

from __future__ import annotations

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from models import ZooModel, register

EFFECTS = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
STANDARD_ERRORS = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(y, sigma) -> None:
    """``y``: (J,) estimated effects; ``sigma``: (J,) their standard errors."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", y.shape[0]):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def generate_data(seed: int = 0) -> dict:
    """The classic data (``seed`` is ignored: there is one data set)."""
    del seed
    return {"y": EFFECTS.copy(), "sigma": STANDARD_ERRORS.copy()}


MODEL = register(
    ZooModel(
        name="eight_schools",
        description="Eight schools, centred hierarchical Normal with HalfCauchy scale (non-conjugate)",
        program=eight_schools,
        latent_sites=("mu", "tau", "theta"),
        conjugate=False,
        reference="nuts",
        generate_data=generate_data,
    )
)
