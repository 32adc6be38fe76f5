"""Normal mean with known noise scale.

Model::

    loc ~ Normal(m0, s0)
    x_n | loc ~ Normal(loc, sigma),  n = 1..N     (plate "data"; sigma known)

Posterior ``Normal(mN, sN)`` with ``1/sN^2 = 1/s0^2 + N/sigma^2`` and
``mN = sN^2 (m0/s0^2 + sum_n x_n / sigma^2)``. Evidence: ``x ~ N(m0 1, sigma^2 I +
s0^2 1 1^T)``, i.e. (matrix determinant lemma and Sherman–Morrison)

    log p(x) = -N/2 log(2 pi sigma^2) - 1/2 log(1 + N s0^2/sigma^2)
               - [sum_n d_n^2 - s0^2 (sum_n d_n)^2 / (sigma^2 + N s0^2)] / (2 sigma^2),

with ``d_n = x_n - m0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from models import ExactPosterior, ZooModel, register
from models._checks import require, require_positive


def normal_known_variance(x, m0: float, s0: float, sigma: float) -> None:
    """``x``: (N,) observations; ``m0, s0``: prior of ``loc``; ``sigma``: known noise sd."""
    loc = pyro.sample("loc", dist.Normal(m0, s0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, sigma), obs=x)


def generate_data(
    seed: int, num_data: int = 30, true_loc: float = 1.5, sigma: float = 2.0, m0: float = 0.0, s0: float = 3.0
) -> dict:
    """``num_data`` draws from ``Normal(true_loc, sigma)``."""
    require_positive("normal_known_variance", num_data=num_data, sigma=sigma, s0=s0)
    rng = np.random.default_rng(seed)
    x = true_loc + sigma * rng.standard_normal(num_data)
    return {"x": x, "m0": float(m0), "s0": float(s0), "sigma": float(sigma)}


def exact_posterior(data: Mapping[str, Any]) -> ExactPosterior:
    """Exact posterior and log evidence for ``data`` (formulas in the module docstring)."""
    x = np.asarray(data["x"], dtype=float)
    m0, s0, sigma = data["m0"], data["s0"], data["sigma"]
    require("normal_known_variance", x.ndim == 1 and bool(np.all(np.isfinite(x))), "finite 'x' of shape (N,)", x)
    require_positive("normal_known_variance", s0=s0, sigma=sigma)
    num_data = x.shape[0]
    variance = 1.0 / (1.0 / s0**2 + num_data / sigma**2)
    mean = variance * (m0 / s0**2 + x.sum() / sigma**2)
    d = x - m0
    log_evidence = (
        -0.5 * num_data * np.log(2.0 * np.pi * sigma**2)
        - 0.5 * np.log1p(num_data * s0**2 / sigma**2)
        - (d @ d - s0**2 * d.sum() ** 2 / (sigma**2 + num_data * s0**2)) / (2.0 * sigma**2)
    )
    sd = np.sqrt(variance)

    def sample(rng: np.random.Generator, num_samples: int) -> dict:
        return {"loc": mean + sd * rng.standard_normal(num_samples)}

    return ExactPosterior(
        mean={"loc": np.asarray(mean)},
        sd={"loc": np.asarray(sd)},
        sample=sample,
        log_evidence=float(log_evidence),
        params={"loc": ("Normal", {"loc": np.asarray(mean), "scale": np.asarray(sd)})},
    )


MODEL = register(
    ZooModel(
        name="normal_known_variance",
        description="Normal prior on the mean of Normal data with known scale (conjugate, exact)",
        program=normal_known_variance,
        latent_sites=("loc",),
        conjugate=True,
        reference="exact",
        generate_data=generate_data,
        exact_posterior=exact_posterior,
    )
)
