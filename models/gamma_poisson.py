"""Gamma–Poisson: an event rate from counts.

Model::

    rate ~ Gamma(a0, b0)                     (shape a0, rate b0)
    x_n | rate ~ Poisson(rate),  n = 1..N    (plate "data")

Posterior ``Gamma(a0 + S, b0 + N)`` with ``S = sum_n x_n``; evidence
``log p(x) = a0 log b0 - lgamma(a0) + lgamma(a0 + S) - (a0 + S) log(b0 + N)
- sum_n lgamma(x_n + 1)``.
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


def gamma_poisson(x, a0: float, b0: float) -> None:
    """``x``: (N,) non-negative integer counts stored as floats; ``a0, b0``: Gamma prior."""
    rate = pyro.sample("rate", dist.Gamma(a0, b0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Poisson(rate), obs=x)


def generate_data(seed: int, num_data: int = 40, true_rate: float = 3.5, a0: float = 2.0, b0: float = 1.0) -> dict:
    """``num_data`` Poisson counts with rate ``true_rate`` (as floats, as Poisson's ``log_prob`` wants)."""
    require_positive("gamma_poisson", num_data=num_data, true_rate=true_rate, a0=a0, b0=b0)
    rng = np.random.default_rng(seed)
    return {"x": rng.poisson(true_rate, size=num_data).astype(float), "a0": float(a0), "b0": float(b0)}


def exact_posterior(data: Mapping[str, Any]) -> ExactPosterior:
    """Exact posterior and log evidence for ``data`` (formulas in the module docstring)."""
    x = np.asarray(data["x"], dtype=float)
    counts_ok = x.ndim == 1 and bool(np.all((x >= 0) & (x == np.round(x))))
    require("gamma_poisson", counts_ok, "'x' of shape (N,) with non-negative integer counts", x)
    a0, b0 = data["a0"], data["b0"]
    require_positive("gamma_poisson", a0=a0, b0=b0)
    concentration, rate = a0 + x.sum(), b0 + x.shape[0]
    log_evidence = (
        a0 * np.log(b0) - gammaln(a0) + gammaln(concentration) - concentration * np.log(rate) - gammaln(x + 1.0).sum()
    )

    def sample(rng: np.random.Generator, num_samples: int) -> dict:
        return {"rate": rng.gamma(concentration, 1.0 / rate, size=num_samples)}

    return ExactPosterior(
        mean={"rate": np.asarray(concentration / rate)},
        sd={"rate": np.asarray(np.sqrt(concentration) / rate)},
        sample=sample,
        log_evidence=float(log_evidence),
        params={"rate": ("Gamma", {"concentration": np.asarray(concentration), "rate": np.asarray(rate)})},
    )


MODEL = register(
    ZooModel(
        name="gamma_poisson",
        description="Gamma prior on a Poisson rate (conjugate, exact)",
        program=gamma_poisson,
        latent_sites=("rate",),
        conjugate=True,
        reference="exact",
        generate_data=generate_data,
        exact_posterior=exact_posterior,
    )
)
