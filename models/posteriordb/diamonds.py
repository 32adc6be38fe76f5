"""posteriordb ``diamonds-diamonds`` (brms-generated; badly conditioned: a stress test).

Stan (``diamonds.stan``), with ``Xc`` the design matrix without its intercept column,
centred column by column (transformed data, computed here in NumPy)::

    target += normal_lpdf(b | 0, 1);
    target += student_t_lpdf(Intercept | 3, 8, 10);
    target += student_t_lpdf(sigma | 3, 0, 10) - student_t_lccdf(0 | 3, 0, 10);
    target += normal_id_glm_lpdf(Y | Xc, Intercept, b, sigma);

The prior on ``sigma >= 0`` is the Student-t(3, 0, 10) truncated at 0, i.e. folded
(the location is 0): ``FoldedDistribution(StudentT(3, 0, 10))``, exact with constants.
"""

from __future__ import annotations

from pyroapi import distributions as dist
from pyroapi import pyro

from models.posteriordb._data import load_data, register_posterior


def diamonds(Xc, Y) -> None:
    """Normal regression of ``Y`` ``(N,)`` on the centred predictors ``Xc`` ``(N, K - 1)``."""
    num_obs, num_coefficients = Xc.shape
    with pyro.plate("coefficients", num_coefficients):
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
    intercept = pyro.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
    sigma = pyro.sample("sigma", dist.FoldedDistribution(dist.StudentT(3.0, 0.0, 10.0)))
    with pyro.plate("observations", num_obs):
        pyro.sample("Y", dist.Normal(intercept + Xc @ b, sigma), obs=Y)


def _data() -> dict:
    data = load_data("diamonds")
    predictors = data["X"][:, 1:]
    return {"Xc": predictors - predictors.mean(axis=0), "Y": data["Y"]}


register_posterior(
    "diamonds-diamonds",
    "diamond log price regression, 24 predictors",
    diamonds,
    ("b", "Intercept", "sigma"),
    _data,
)
