"""Bayesian linear regression with unknown noise precision (Normal–Gamma prior).

Model::

    precision ~ Gamma(a0, b0)
    weights | precision ~ Normal(0, 1 / sqrt(lambda0 * precision))^D     (one site, event (D,))
    y_n | weights, precision ~ Normal(X_n @ weights, 1 / sqrt(precision))   (plate "data")

The exact posterior is Normal–Gamma (``m0 = 0``, ``Lambda0 = lambda0 I``; formulas in
:mod:`models._normal_gamma_regression`): ``precision ~ Gamma(aN, bN)`` and ``weights``
multivariate Student-t with ``2 aN`` degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from models import ExactPosterior, ZooModel, register
from models._checks import require_positive
from models._normal_gamma_regression import normal_gamma_regression_posterior


def bayesian_linear_regression(X, y, lambda0: float, a0: float, b0: float) -> None:
    """``X``: (N, D) design; ``y``: (N,) responses; ``lambda0, a0, b0``: prior."""
    precision = pyro.sample("precision", dist.Gamma(a0, b0))
    weights = pyro.sample("weights", dist.Normal(0.0, (lambda0 * precision) ** -0.5).expand([X.shape[-1]]).to_event(1))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(X @ weights, precision**-0.5), obs=y)


def generate_data(
    seed: int,
    num_data: int = 50,
    num_features: int = 3,
    noise_scale: float = 0.5,
    lambda0: float = 1.0,
    a0: float = 2.0,
    b0: float = 1.0,
) -> dict:
    """Standard-normal design, weights ``1, -1, 0.5, ...`` (cycled), Gaussian noise."""
    require_positive(
        "bayesian_linear_regression", num_data=num_data, num_features=num_features, lambda0=lambda0, a0=a0, b0=b0
    )
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_data, num_features))
    true_weights = np.resize([1.0, -1.0, 0.5], num_features)
    y = X @ true_weights + noise_scale * rng.standard_normal(num_data)
    return {"X": X, "y": y, "lambda0": float(lambda0), "a0": float(a0), "b0": float(b0)}


def exact_posterior(data: Mapping[str, Any]) -> ExactPosterior:
    """Exact posterior and log evidence for ``data`` (formulas in the module docstring)."""
    X = np.asarray(data["X"], dtype=float)
    require_positive("bayesian_linear_regression", lambda0=data["lambda0"], a0=data["a0"], b0=data["b0"])
    num_features = X.shape[-1]
    post = normal_gamma_regression_posterior(
        X, data["y"], np.zeros(num_features), data["lambda0"] * np.eye(num_features), data["a0"], data["b0"]
    )
    a, b = post.concentration, post.rate
    scale_tril = np.linalg.cholesky(b / a * post.weights_covariance_factor)

    def sample(rng: np.random.Generator, num_samples: int) -> dict:
        weights, precision = post.sample(rng, num_samples)
        return {"weights": weights, "precision": precision}

    return ExactPosterior(
        mean={"weights": post.loc, "precision": np.asarray(a / b)},
        sd={"weights": post.weights_sd, "precision": np.asarray(np.sqrt(a) / b)},
        sample=sample,
        log_evidence=post.log_evidence,
        params={
            ("weights", "precision"): (
                "NormalGamma",
                {"loc": post.loc, "precision_matrix": post.precision_matrix, "concentration": a, "rate": b},
            ),
            "weights": ("MultivariateStudentT", {"df": np.asarray(2.0 * a), "loc": post.loc, "scale_tril": scale_tril}),
            "precision": ("Gamma", {"concentration": np.asarray(a), "rate": np.asarray(b)}),
        },
    )


MODEL = register(
    ZooModel(
        name="bayesian_linear_regression",
        description="Linear regression, Normal weights and Gamma noise precision (Normal-Gamma; exact)",
        program=bayesian_linear_regression,
        latent_sites=("precision", "weights"),
        conjugate=True,
        reference="exact",
        generate_data=generate_data,
        exact_posterior=exact_posterior,
    )
)
