"""Bayesian logistic regression (non-conjugate).

Model::

    weights ~ Normal(0, 1)^D                              (one site, event (D,))
    y_n | weights ~ Bernoulli(logits = X_n @ weights)     (plate "data")

No closed-form posterior; the reference is NUTS.
"""

from __future__ import annotations

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from models import ZooModel, register
from models._checks import require_positive


def logistic_regression(X, y) -> None:
    """``X``: (N, D) design; ``y``: (N,) labels in {0, 1} stored as floats."""
    weights = pyro.sample("weights", dist.Normal(0.0, 1.0).expand([X.shape[-1]]).to_event(1))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=X @ weights), obs=y)


def generate_data(seed: int, num_data: int = 100, num_features: int = 3) -> dict:
    """Standard-normal design, weights ``1.5, -1, 0.5, ...`` (cycled), Bernoulli labels."""
    require_positive("logistic_regression", num_data=num_data, num_features=num_features)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_data, num_features))
    true_weights = np.resize([1.5, -1.0, 0.5], num_features)
    y = (rng.random(num_data) < 1.0 / (1.0 + np.exp(-X @ true_weights))).astype(float)
    return {"X": X, "y": y}


MODEL = register(
    ZooModel(
        name="logistic_regression",
        description="Logistic regression with a standard Normal prior on the weights (non-conjugate)",
        program=logistic_regression,
        latent_sites=("weights",),
        conjugate=False,
        reference="nuts",
        generate_data=generate_data,
    )
)
