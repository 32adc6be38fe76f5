"""posteriordb ``eight_schools-eight_schools_noncentered``.

Stan (``eight_schools_noncentered.stan``)::

    parameters { vector[J] theta_trans; real mu; real<lower=0> tau; }
    transformed parameters { theta = theta_trans * tau + mu; }
    model { theta_trans ~ normal(0, 1); y ~ normal(theta, sigma);
            mu ~ normal(0, 5); tau ~ cauchy(0, 5); }

``cauchy(0, 5)`` on ``tau >= 0`` is ``HalfCauchy(5)`` (same density up to the constant
log 2). ``theta`` is recorded as a deterministic site; the reference draws hold Stan's
``theta``, ``mu``, ``tau`` and ``theta_trans = (theta - mu) / tau``.
"""

from __future__ import annotations

from pyroapi import distributions as dist
from pyroapi import pyro

from models.posteriordb._data import load_data, register_posterior
from models.posteriordb._host import deterministic


def eight_schools_noncentered(y, sigma) -> None:
    """Non-centred eight schools; ``y``, ``sigma``: arrays ``(J,)`` of estimates and their sds."""
    num_schools = y.shape[-1]
    with pyro.plate("schools", num_schools):
        theta_trans = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    theta = deterministic("theta", theta_trans * tau + mu)
    with pyro.plate("observations", num_schools):
        pyro.sample("y", dist.Normal(theta, sigma), obs=y)


def _data() -> dict:
    data = load_data("eight_schools")
    return {"y": data["y"], "sigma": data["sigma"]}


register_posterior(
    "eight_schools-eight_schools_noncentered",
    "eight schools, non-centred hierarchical normal",
    eight_schools_noncentered,
    ("theta_trans", "mu", "tau"),
    _data,
)
