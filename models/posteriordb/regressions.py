"""posteriordb linear regressions with Stan's implicit flat priors (ARM ch. 3–4).

Every model here is ``y ~ normal(X @ beta, sigma)`` with ``beta`` under Stan's implicit
improper flat prior (:func:`~models.posteriordb._host.flat_prior`, exact in both hosts)
and ``sigma`` either flat on ``(0, ∞)`` or ``cauchy(0, 2.5)`` on ``sigma >= 0``
(``HalfCauchy(2.5)``, equal up to the constant log 2). Stan's ``transformed data``
(logs, age dummies) and the predictors are computed in NumPy into the design matrix
``X``, whose column ``j`` multiplies Stan's ``beta[j + 1]`` (column 0 is the intercept).

=============================  ================  ==================================
posteriordb name               response site     ``X`` columns after the intercept
=============================  ================  ==================================
kidiq-kidscore_momhs           ``kid_score``     mom_hs
kidiq-kidscore_momiq           ``kid_score``     mom_iq
earnings-earn_height           ``earn``          height
earnings-logearn_height        ``log_earn``      height
mesquite-logmesquite_logvas    ``log_weight``    log canopy volume, area, shape,
                                                 log total height, log density, group
nes1980-nes                    ``partyid7``      real_ideo, race_adj, age30_44,
                                                 age45_64, age65up, educ1, gender,
                                                 income
=============================  ================  ==================================
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from models.posteriordb._data import load_data, register_posterior
from models.posteriordb._host import flat_prior


def linear_regression(response: str, sigma_scale: float | None) -> Callable:
    """A Stan-style normal linear regression program.

    Parameters
    ----------
    response : str
        Name of the observed site (Stan's response variable).
    sigma_scale : float or None
        Scale of ``sigma ~ cauchy(0, sigma_scale)`` on ``sigma >= 0``; ``None`` for
        Stan's implicit flat prior on ``(0, ∞)``.

    Returns
    -------
    callable
        ``program(X, y)`` with ``X`` of shape ``(N, k)`` and ``y`` of shape ``(N,)``;
        latent sites ``beta`` ``(k,)`` and ``sigma`` ``()``.
    """

    def program(X, y) -> None:
        num_obs, num_coefficients = X.shape
        beta = pyro.sample("beta", flat_prior("real", (num_coefficients,)))
        sigma_prior = (
            flat_prior("positive")
            if sigma_scale is None
            else dist.HalfCauchy(sigma_scale)
        )
        sigma = pyro.sample("sigma", sigma_prior)
        with pyro.plate("observations", num_obs):
            pyro.sample(response, dist.Normal(X @ beta, sigma), obs=y)

    program.__name__ = program.__qualname__ = f"linear_regression_{response}"
    return program


def _design(*columns: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(columns[0]), *columns])


def _kidiq(predictor: str) -> dict:
    data = load_data("kidiq")
    return {"X": _design(data[predictor]), "y": data["kid_score"]}


def _earnings(log_response: bool) -> dict:
    data = load_data("earnings")
    return {
        "X": _design(data["height"]),
        "y": np.log(data["earn"]) if log_response else data["earn"],
    }


def _mesquite() -> dict:
    data = load_data("mesquite")
    diam1, diam2 = data["diam1"], data["diam2"]
    predictors = (
        np.log(diam1 * diam2 * data["canopy_height"]),
        np.log(diam1 * diam2),
        np.log(diam1 / diam2),
        np.log(data["total_height"]),
        np.log(data["density"]),
        data["group"],
    )
    return {"X": _design(*predictors), "y": np.log(data["weight"])}


def _nes() -> dict:
    data = load_data("nes1980")
    age = data["age_discrete"]
    predictors = (
        data["real_ideo"],
        data["race_adj"],
        (age == 2).astype(np.float64),
        (age == 3).astype(np.float64),
        (age == 4).astype(np.float64),
        data["educ1"],
        data["gender"],
        data["income"],
    )
    return {"X": _design(*predictors), "y": data["partyid7"]}


_REGRESSIONS = (
    (
        "kidiq-kidscore_momhs",
        "kid score on mother's high school",
        "kid_score",
        2.5,
        lambda: _kidiq("mom_hs"),
    ),
    (
        "kidiq-kidscore_momiq",
        "kid score on mother's IQ",
        "kid_score",
        2.5,
        lambda: _kidiq("mom_iq"),
    ),
    (
        "earnings-earn_height",
        "earnings on height",
        "earn",
        None,
        lambda: _earnings(False),
    ),
    (
        "earnings-logearn_height",
        "log earnings on height",
        "log_earn",
        None,
        lambda: _earnings(True),
    ),
    (
        "mesquite-logmesquite_logvas",
        "log mesquite weight on log canopy measures",
        "log_weight",
        None,
        _mesquite,
    ),
    (
        "nes1980-nes",
        "party identification on ideology, race, age, education, sex, income",
        "partyid7",
        None,
        _nes,
    ),
)


def _register_all() -> None:
    for name, description, response, sigma_scale, make_data in _REGRESSIONS:
        register_posterior(
            name,
            f"linear regression: {description}",
            linear_regression(response, sigma_scale),
            ("beta", "sigma"),
            make_data,
        )


_register_all()
