"""Dirichlet–Categorical: category probabilities from labels.

Model::

    probs ~ Dirichlet(alpha0)                          alpha0: (K,)
    x_n | probs ~ Categorical(probs),  n = 1..N        (plate "data")

Posterior ``Dirichlet(alpha0 + counts)``; evidence (Dirichlet-multinomial of the ordered
sequence) ``log p(x) = lgamma(A0) - lgamma(A0 + N) + sum_k [lgamma(alpha0_k + n_k) -
lgamma(alpha0_k)]`` with ``A0 = sum_k alpha0_k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro
from scipy.special import gammaln

from models import ExactPosterior, ZooModel, register
from models._checks import require, require_positive


def dirichlet_categorical(x, alpha0) -> None:
    """``x``: (N,) integer labels in ``[0, K)``; ``alpha0``: (K,) Dirichlet concentration."""
    probs = pyro.sample("probs", dist.Dirichlet(alpha0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Categorical(probs), obs=x)


def generate_data(seed: int, num_data: int = 60, true_probs=(0.5, 0.3, 0.2), concentration: float = 1.0) -> dict:
    """``num_data`` labels drawn from ``true_probs``; a symmetric prior ``concentration * 1_K``."""
    true_probs = np.asarray(true_probs, dtype=float)
    require_positive("dirichlet_categorical", num_data=num_data, concentration=concentration)
    require(
        "dirichlet_categorical", bool(np.all(true_probs >= 0) and true_probs.sum() > 0), "true_probs >= 0", true_probs
    )
    rng = np.random.default_rng(seed)
    x = rng.choice(true_probs.shape[0], size=num_data, p=true_probs / true_probs.sum())
    return {"x": x.astype(np.int64), "alpha0": np.full(true_probs.shape[0], float(concentration))}


def exact_posterior(data: Mapping[str, Any]) -> ExactPosterior:
    """Exact posterior and log evidence for ``data`` (formulas in the module docstring)."""
    alpha0 = np.asarray(data["alpha0"], dtype=float)
    x = np.asarray(data["x"])
    require(
        "dirichlet_categorical", alpha0.ndim == 1 and bool(np.all(alpha0 > 0)), "'alpha0' of shape (K,) > 0", alpha0
    )
    labels_ok = x.ndim == 1 and x.dtype.kind in "iu" and bool(np.all((x >= 0) & (x < alpha0.shape[0])))
    require("dirichlet_categorical", labels_ok, f"'x' of shape (N,) with integer labels in [0, {alpha0.shape[0]})", x)
    alpha = alpha0 + np.bincount(x, minlength=alpha0.shape[0])
    total = alpha.sum()
    log_evidence = gammaln(alpha0.sum()) - gammaln(total) + (gammaln(alpha) - gammaln(alpha0)).sum()

    def sample(rng: np.random.Generator, num_samples: int) -> dict:
        return {"probs": rng.dirichlet(alpha, size=num_samples)}

    return ExactPosterior(
        mean={"probs": alpha / total},
        sd={"probs": np.sqrt(alpha * (total - alpha) / (total**2 * (total + 1.0)))},
        sample=sample,
        log_evidence=float(log_evidence),
        params={"probs": ("Dirichlet", {"concentration": alpha})},
    )


MODEL = register(
    ZooModel(
        name="dirichlet_categorical",
        description="Dirichlet prior on categorical probabilities (conjugate, exact)",
        program=dirichlet_categorical,
        latent_sites=("probs",),
        conjugate=True,
        reference="exact",
        generate_data=generate_data,
        exact_posterior=exact_posterior,
    )
)
