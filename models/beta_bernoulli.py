"""Beta–Bernoulli: a coin's bias from flips.

Model::

    p ~ Beta(a0, b0)
    x_n | p ~ Bernoulli(p),  n = 1..N        (plate "data")

Posterior ``Beta(a0 + s, b0 + N - s)`` with ``s = sum_n x_n``; evidence
``log p(x) = log B(a0 + s, b0 + N - s) - log B(a0, b0)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro
from scipy.special import betaln

from models import ExactPosterior, ZooModel, register
from models._checks import require, require_positive


def beta_bernoulli(x, a0: float, b0: float) -> None:
    """``x``: (N,) floats in {0, 1}; ``a0, b0``: Beta prior concentrations."""
    p = pyro.sample("p", dist.Beta(a0, b0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Bernoulli(p), obs=x)


def generate_data(seed: int, num_data: int = 50, true_p: float = 0.3, a0: float = 2.0, b0: float = 2.0) -> dict:
    """``num_data`` flips of a coin with bias ``true_p``."""
    require_positive("beta_bernoulli", num_data=num_data, a0=a0, b0=b0)
    require("beta_bernoulli", 0.0 <= true_p <= 1.0, "true_p in [0, 1]", true_p)
    rng = np.random.default_rng(seed)
    x = (rng.random(num_data) < true_p).astype(float)
    return {"x": x, "a0": float(a0), "b0": float(b0)}


def exact_posterior(data: Mapping[str, Any]) -> ExactPosterior:
    """Exact posterior and log evidence for ``data`` (formulas in the module docstring)."""
    x = np.asarray(data["x"], dtype=float)
    require(
        "beta_bernoulli", x.ndim == 1 and np.isin(x, (0.0, 1.0)).all(), "'x' of shape (N,) with values in {0, 1}", x
    )
    require_positive("beta_bernoulli", a0=data["a0"], b0=data["b0"])
    heads = x.sum()
    c1, c0 = data["a0"] + heads, data["b0"] + x.shape[0] - heads
    total = c1 + c0
    mean = c1 / total
    sd = np.sqrt(c1 * c0 / (total**2 * (total + 1.0)))

    def sample(rng: np.random.Generator, num_samples: int) -> dict:
        return {"p": rng.beta(c1, c0, size=num_samples)}

    return ExactPosterior(
        mean={"p": np.asarray(mean)},
        sd={"p": np.asarray(sd)},
        sample=sample,
        log_evidence=float(betaln(c1, c0) - betaln(data["a0"], data["b0"])),
        params={"p": ("Beta", {"concentration1": np.asarray(c1), "concentration0": np.asarray(c0)})},
    )


MODEL = register(
    ZooModel(
        name="beta_bernoulli",
        description="Beta prior on a Bernoulli probability (conjugate, exact)",
        program=beta_bernoulli,
        latent_sites=("p",),
        conjugate=True,
        reference="exact",
        generate_data=generate_data,
        exact_posterior=exact_posterior,
    )
)
