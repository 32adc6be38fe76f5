"""Bayesian Gaussian mixture with full precisions (PRML §10.2).

Model (Bishop, *Pattern Recognition and Machine Learning*, eqs. 10.37–10.40)::

    weights ~ Dirichlet(alpha0 * 1_K)
    Lambda_k ~ Wishart(nu0, W0)                       k = 1..K   (plate "components";
    mu_k | Lambda_k ~ Normal(m0, (beta0 Lambda_k)^{-1})             sites "precisions", "locs")
    z_n | weights ~ Categorical(weights)              n = 1..N   (plate "data"; site "assignment",
    x_n | z_n ~ Normal(mu_{z_n}, Lambda_{z_n}^{-1})                enumerated in parallel)

``Wishart(nu0, W0)`` has scale matrix ``W0`` and mean ``nu0 W0`` (PRML B.78–B.80; Pyro's
``df``/``covariance_matrix``, NumPyro's ``concentration``/``scale_matrix``, both passed
positionally).

This is the model of scikit-learn's ``BayesianGaussianMixture(
weight_concentration_prior_type="dirichlet_distribution", covariance_type="full")``
with

==============================  ======================
scikit-learn                    here
==============================  ======================
``weight_concentration_prior``  ``alpha0``
``mean_prior``                  ``m0``
``mean_precision_prior``        ``beta0``
``degrees_of_freedom_prior``    ``nu0``
``covariance_prior``            ``inv(W0)``
==============================  ======================

(``covariance_prior`` enters scikit-learn's ``_estimate_wishart_full`` as
``W0^{-1}`` in PRML eq. 10.62: ``W_k^{-1} = W0^{-1} + N_k S_k + beta0 N_k/(beta0 + N_k)
(xbar_k - m0)(xbar_k - m0)^T``; its ``covariances_`` are ``W_k^{-1} / nu_k``.)
No closed-form posterior; the reference is NUTS with ``assignment`` marginalized.
The mixture is invariant under permuting its components, so draws from different
chains or methods may carry different labels: :func:`relabel` (``extras["relabel"]``)
aligns the components of every draw to a template and puts them in a canonical order.
:func:`sklearn_priors` (``extras["sklearn_priors"]``) gives scikit-learn's arguments.
"""

from __future__ import annotations

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from models import ZooModel, register
from models._checks import require, require_positive
from ppl_vi.core._xp import namespace


def bayesian_gmm(x, num_components: int, alpha0: float, m0, beta0: float, nu0: float, W0) -> None:
    """``x``: (N, D) points; ``m0``: (D,); ``W0``: (D, D); scalars ``alpha0, beta0, nu0``.

    ``locs[assignment]`` broadcasts under parallel enumeration: an enumerated
    ``assignment`` of shape (K, 1) selects locs/precisions of shape (K, 1, D[, D]).
    """
    xp = namespace(x)
    weights = pyro.sample("weights", dist.Dirichlet(xp.full((num_components,), alpha0, dtype=x.dtype)))
    with pyro.plate("components", num_components):
        precisions = pyro.sample("precisions", dist.Wishart(nu0, W0))
        locs = pyro.sample("locs", dist.MultivariateNormal(m0, precision_matrix=beta0 * precisions))
    with pyro.plate("data", x.shape[0]):
        assignment = pyro.sample("assignment", dist.Categorical(weights), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.MultivariateNormal(locs[assignment], precision_matrix=precisions[assignment]), obs=x)


def generate_data(
    seed: int,
    num_data: int = 300,
    num_features: int = 2,
    num_components: int = 3,
    alpha0: float = 1.0,
    beta0: float = 0.01,
    nu0: float | None = None,
) -> dict:
    """Points from a well-separated mixture, and a weak prior.

    The true centres lie on a circle (first two coordinates) with neighbours 8 apart;
    each component has a random covariance with eigenvalues in [0.25, 1]; mixing
    proportions ``~ Dirichlet(10 * 1_K)``. The prior: ``m0 = 0``, ``nu0 = D + 1`` unless
    given, ``W0 = I / nu0`` (prior mean precision ``I``).
    """
    require("bayesian_gmm", num_features >= 2, "num_features >= 2 (centres lie on a circle)", num_features)
    require_positive("bayesian_gmm", num_data=num_data, num_components=num_components, alpha0=alpha0, beta0=beta0)
    rng = np.random.default_rng(seed)
    angles = 2.0 * np.pi * np.arange(num_components) / num_components
    radius = 4.0 / np.sin(np.pi / num_components) if num_components > 1 else 0.0
    centres = np.zeros((num_components, num_features))
    centres[:, 0], centres[:, 1] = radius * np.cos(angles), radius * np.sin(angles)
    rotations = np.linalg.qr(rng.standard_normal((num_components, num_features, num_features)))[0]
    scales = np.sqrt(rng.uniform(0.25, 1.0, size=(num_components, num_features)))
    chol = rotations * scales[:, None, :]
    proportions = rng.dirichlet(np.full(num_components, 10.0))
    labels = rng.choice(num_components, size=num_data, p=proportions)
    x = centres[labels] + np.einsum("nij,nj->ni", chol[labels], rng.standard_normal((num_data, num_features)))
    nu0 = num_features + 1.0 if nu0 is None else float(nu0)
    require("bayesian_gmm", nu0 > num_features - 1, f"nu0 > num_features - 1 = {num_features - 1}", nu0)
    return {
        "x": x,
        "num_components": int(num_components),
        "alpha0": float(alpha0),
        "m0": np.zeros(num_features),
        "beta0": float(beta0),
        "nu0": nu0,
        "W0": np.eye(num_features) / nu0,
    }


def relabel(draws: dict) -> dict:
    """Draws with components aligned across draws and chains, in a canonical order.

    ``draws``: site -> ``(chain, draw, *site_shape)`` NumPy arrays; ``locs`` is
    ``(C, S, K, D)``, ``precisions`` ``(C, S, K, D, D)``, ``weights`` ``(C, S, K)``.
    Sorting by one coordinate alone fails when two centres share it (the default data
    have two centres at the same ``x``), so: (1) each draw's components are sorted by
    the key ``locs @ u`` with a fixed generic direction ``u``; (2) the first chain's
    mean ``locs`` is the template, put in key order; (3) each draw's components are
    matched to the template by :func:`scipy.optimize.linear_sum_assignment` on squared
    distance. The same permutation is applied to the three sites within a draw; other
    sites pass unchanged. Step (1) makes the result invariant to any relabelling of the
    input. Returns a new dict.
    """
    from scipy.optimize import linear_sum_assignment

    if "locs" not in draws:
        raise KeyError(f"bayesian_gmm relabel: needs the 'locs' draws, got sites {sorted(draws)}")
    locs = np.asarray(draws["locs"])
    if locs.ndim != 4:
        raise ValueError(f"bayesian_gmm relabel: 'locs' must be (chain, draw, K, D), got shape {locs.shape}")
    direction = 1.0 / np.pi ** np.arange(locs.shape[-1])  # generic: no ties between distinct centres
    order = np.argsort(locs @ direction, axis=-1, kind="stable")  # (C, S, K)
    sorted_locs = np.take_along_axis(locs, order[..., None], axis=2)
    template = sorted_locs[0].mean(axis=0)  # (K, D)
    template = template[np.argsort(template @ direction, kind="stable")]
    cost = ((template[None, :, None, :] - sorted_locs.reshape(-1, 1, *locs.shape[2:])) ** 2).sum(-1)
    matched = np.stack([linear_sum_assignment(c)[1] for c in cost]).reshape(order.shape)
    order = np.take_along_axis(order, matched, axis=-1)
    out = dict(draws)
    for site, trailing in (("locs", 1), ("precisions", 2), ("weights", 0)):
        if site in draws:
            index = order.reshape(order.shape + (1,) * trailing)
            out[site] = np.take_along_axis(np.asarray(draws[site]), index, axis=2)
    return out


def sklearn_priors(data: dict) -> dict:
    """Keyword arguments of scikit-learn's ``BayesianGaussianMixture`` for the same model
    and priors as ``data`` (the table in the module docstring)."""
    return {
        "n_components": int(data["num_components"]),
        "covariance_type": "full",
        "weight_concentration_prior_type": "dirichlet_distribution",
        "weight_concentration_prior": data["alpha0"],
        "mean_prior": data["m0"],
        "mean_precision_prior": data["beta0"],
        "degrees_of_freedom_prior": data["nu0"],
        "covariance_prior": np.linalg.inv(data["W0"]),
    }


MODEL = register(
    ZooModel(
        name="bayesian_gmm",
        description="Bayesian Gaussian mixture, Dirichlet weights and Normal-Wishart components (PRML 10.2)",
        program=bayesian_gmm,
        latent_sites=("weights", "precisions", "locs", "assignment"),
        conjugate=True,
        reference="nuts",
        generate_data=generate_data,
        extras={"relabel": relabel, "sklearn_priors": sklearn_priors},
    )
)
