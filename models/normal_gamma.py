"""Normal data with unknown mean and precision: the Normal–Gamma model (PRML §10.1.3).

Model (Bishop, *Pattern Recognition and Machine Learning*, eqs. 10.21–10.23)::

    precision ~ Gamma(a0, b0)                              (shape, rate)
    loc | precision ~ Normal(mu0, 1 / sqrt(lambda0 * precision))
    x_n | loc, precision ~ Normal(loc, 1 / sqrt(precision)),  n = 1..N   (plate "data")

Exact posterior ``NormalGamma(muN, lambdaN, aN, bN)`` (the one-column case of
:mod:`models._normal_gamma_regression`): ``lambdaN = lambda0 + N``,
``muN = (lambda0 mu0 + N xbar) / lambdaN``, ``aN = a0 + N/2``,
``bN = b0 + [sum_n (x_n - xbar)^2 + lambda0 N (xbar - mu0)^2 / lambdaN] / 2``.
Marginals: ``precision ~ Gamma(aN, bN)``, ``loc ~ StudentT(2 aN, muN, sqrt(bN / (aN lambdaN)))``.

``extras["mean_field_fixed_point"](data)`` is the fixed point of the mean-field CAVI
updates PRML (10.26)–(10.30), ``q(loc) q(precision)``::

    q(loc) = Normal(muN, lambdaN^{-1/2}),  muN = (lambda0 mu0 + N xbar) / (lambda0 + N),
                                           lambdaN = (lambda0 + N) E[precision]
    q(precision) = Gamma(aN, bN),          aN = a0 + (N + 1) / 2,
    bN = b0 + E_loc[sum_n (x_n - loc)^2 + lambda0 (loc - mu0)^2] / 2,  E[precision] = aN / bN.

Writing ``E_loc[...] = C + (N + lambda0) / lambdaN`` with
``C = sum_n (x_n - muN)^2 + lambda0 (muN - mu0)^2`` and ``(N + lambda0) / lambdaN = bN / aN``
gives the fixed point in closed form, ``bN = (b0 + C/2) / (1 - 1/(2 aN))``, exact to
rounding (well inside 1e-12).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from models import ExactPosterior, ZooModel, register
from models._checks import require, require_positive
from models._normal_gamma_regression import normal_gamma_regression_posterior


def normal_gamma(x, mu0: float, lambda0: float, a0: float, b0: float) -> None:
    """``x``: (N,) observations; ``mu0, lambda0, a0, b0``: Normal-Gamma prior."""
    precision = pyro.sample("precision", dist.Gamma(a0, b0))
    loc = pyro.sample("loc", dist.Normal(mu0, (lambda0 * precision) ** -0.5))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, precision**-0.5), obs=x)


def generate_data(
    seed: int,
    num_data: int = 20,
    true_loc: float = 1.0,
    true_precision: float = 0.5,
    mu0: float = 0.0,
    lambda0: float = 1.0,
    a0: float = 2.0,
    b0: float = 2.0,
) -> dict:
    """``num_data`` draws from ``Normal(true_loc, true_precision^{-1/2})``."""
    require_positive("normal_gamma", num_data=num_data, true_precision=true_precision, lambda0=lambda0, a0=a0, b0=b0)
    rng = np.random.default_rng(seed)
    x = true_loc + rng.standard_normal(num_data) / np.sqrt(true_precision)
    return {"x": x, "mu0": float(mu0), "lambda0": float(lambda0), "a0": float(a0), "b0": float(b0)}


def _observations(data: Mapping[str, Any]) -> np.ndarray:
    x = np.asarray(data["x"], dtype=float)
    require("normal_gamma", x.ndim == 1 and bool(np.all(np.isfinite(x))), "finite 'x' of shape (N,)", x)
    require_positive("normal_gamma", lambda0=data["lambda0"], a0=data["a0"], b0=data["b0"])
    return x


def exact_posterior(data: Mapping[str, Any]) -> ExactPosterior:
    """Exact posterior and log evidence for ``data`` (formulas in the module docstring)."""
    x = _observations(data)
    post = normal_gamma_regression_posterior(
        np.ones((x.shape[0], 1)), x, np.array([data["mu0"]]), np.array([[data["lambda0"]]]), data["a0"], data["b0"]
    )
    loc, lam = post.loc[0], post.precision_matrix[0, 0]
    a, b = post.concentration, post.rate
    student_scale = np.sqrt(b / (a * lam))

    def sample(rng: np.random.Generator, num_samples: int) -> dict:
        weights, precision = post.sample(rng, num_samples)
        return {"loc": weights[:, 0], "precision": precision}

    return ExactPosterior(
        mean={"loc": np.asarray(loc), "precision": np.asarray(a / b)},
        sd={"loc": np.asarray(post.weights_sd[0]), "precision": np.asarray(np.sqrt(a) / b)},
        sample=sample,
        log_evidence=post.log_evidence,
        params={
            ("loc", "precision"): ("NormalGamma", {"loc": loc, "lambda": lam, "concentration": a, "rate": b}),
            "loc": ("StudentT", {"df": np.asarray(2.0 * a), "loc": np.asarray(loc), "scale": student_scale}),
            "precision": ("Gamma", {"concentration": np.asarray(a), "rate": np.asarray(b)}),
        },
    )


def mean_field_fixed_point(data: Mapping[str, Any]) -> dict:
    """The PRML (10.26)–(10.30) mean-field optimum ``q(loc) q(precision)``.

    Returns
    -------
    dict
        ``{"loc": ("Normal", {"loc", "scale"}), "precision": ("Gamma", {"concentration", "rate"})}``
        with float values.
    """
    x = _observations(data)
    mu0, lambda0, a0, b0 = data["mu0"], data["lambda0"], data["a0"], data["b0"]
    num_data = x.shape[0]
    loc = (lambda0 * mu0 + x.sum()) / (lambda0 + num_data)
    concentration = a0 + (num_data + 1) / 2.0
    spread = np.sum((x - loc) ** 2) + lambda0 * (loc - mu0) ** 2
    rate = (b0 + 0.5 * spread) / (1.0 - 0.5 / concentration)
    loc_precision = (lambda0 + num_data) * concentration / rate
    return {
        "loc": ("Normal", {"loc": float(loc), "scale": float(loc_precision**-0.5)}),
        "precision": ("Gamma", {"concentration": float(concentration), "rate": float(rate)}),
    }


MODEL = register(
    ZooModel(
        name="normal_gamma",
        description="Normal data, unknown mean and precision, Normal-Gamma prior (PRML 10.1.3; exact)",
        program=normal_gamma,
        latent_sites=("precision", "loc"),
        conjugate=True,
        reference="exact",
        generate_data=generate_data,
        exact_posterior=exact_posterior,
        extras={"mean_field_fixed_point": mean_field_fixed_point},
    )
)
