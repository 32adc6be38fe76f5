"""Read a NumPyro program's sample sites for the CAVI planner (private).

``run_sites(model, args, kwargs)`` returns the ``run(values, seed)`` callable that
:func:`ppl_vi.core.cavi_plan.build_plan` probes: the program under NumPyro's ``seed``,
``substitute`` and ``trace`` handlers, each site unwrapped from its ``Independent`` /
``ExpandedDistribution`` / ``MaskedDistribution`` layers and reported as a
:class:`~ppl_vi.core.cavi_plan.SiteInfo` with NumPy parameters.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution

from ppl_vi.core.cavi_plan import SiteInfo

__all__ = ["run_sites", "to_jax"]

_ALIASES = {"BernoulliProbs": "Bernoulli", "BernoulliLogits": "Bernoulli", "CategoricalProbs": "Categorical",
            "CategoricalLogits": "Categorical", "BinomialProbs": "Binomial", "BinomialLogits": "Binomial",
            "MultinomialProbs": "Multinomial", "MultinomialLogits": "Multinomial"}
# canonical parameter -> attribute of the NumPyro distribution
_ATTRS = {
    "Normal": {"loc": "loc", "scale": "scale"},
    "MultivariateNormal": {"loc": "loc", "precision_matrix": "precision_matrix"},
    "Gamma": {"concentration": "concentration", "rate": "rate"},
    "Exponential": {"rate": "rate"},
    "Poisson": {"rate": "rate"},
    "Beta": {"concentration1": "concentration1", "concentration0": "concentration0"},
    "Bernoulli": {"probs": "probs"},
    "Binomial": {"total_count": "total_count", "probs": "probs"},
    "Dirichlet": {"concentration": "concentration"},
    "Categorical": {"probs": "probs"},
    "Multinomial": {"total_count": "total_count", "probs": "probs"},
    "Wishart": {"df": "concentration", "scale_matrix": "scale_matrix"},
}


def to_jax(a: np.ndarray) -> Any:
    """NumPy -> jax array (floats as float64 under ``jax_enable_x64``)."""
    a = np.asarray(a)
    return jnp.asarray(a, dtype=jnp.result_type(float)) if np.issubdtype(a.dtype, np.floating) else jnp.asarray(a)


def _unwrap(fn) -> tuple[Any, int, Any]:
    reinterpreted, mask = 0, None
    while True:
        if isinstance(fn, MaskedDistribution):
            mask = np.asarray(fn._mask, dtype=float) if mask is None else mask * np.asarray(fn._mask, dtype=float)
            fn = fn.base_dist
        elif isinstance(fn, Independent):
            reinterpreted += fn.reinterpreted_batch_ndims
            fn = fn.base_dist
        elif isinstance(fn, ExpandedDistribution):
            fn = fn.base_dist
        else:
            return fn, reinterpreted, mask


def _site_info(site: dict, latent_names: Optional[set]) -> SiteInfo:
    base, reinterpreted, mask = _unwrap(site["fn"])
    family = _ALIASES.get(type(base).__name__, type(base).__name__)
    attrs = _ATTRS.get(family)
    if attrs is None:
        params = {k: np.asarray(getattr(base, k)) for k in base.arg_constraints if hasattr(base, k)}
    else:
        params = {k: np.asarray(getattr(base, a)) for k, a in attrs.items()}
    scale = np.asarray(1.0 if site["scale"] is None else site["scale"], dtype=float)
    if mask is not None:
        scale = scale * mask
    observed = site["is_observed"] and (latent_names is None or site["name"] not in latent_names)
    log_prob = 0.0
    if attrs is None and observed:
        log_prob = float(jnp.sum(site["fn"].log_prob(site["value"]) * jnp.asarray(scale)))
    support = int(params["probs"].shape[-1]) if family == "Categorical" else None
    return SiteInfo(
        name=site["name"],
        family=family,
        params=params,
        value=np.asarray(site["value"]),
        observed=bool(observed),
        batch_shape=tuple(site["fn"].batch_shape),
        event_shape=tuple(site["fn"].event_shape),
        reinterpreted_ndims=reinterpreted,
        scale=scale,
        plate_dims=tuple(f.dim for f in site["cond_indep_stack"] if f.dim is not None),
        support_size=support,
        log_prob=log_prob,
    )


def trace_program(model: Callable, args: tuple, kwargs: dict, values: Optional[dict], seed: int) -> dict:
    """The NumPyro trace of ``model`` with ``values`` substituted (only sample sites)."""
    substituted = handlers.substitute(model, data={k: to_jax(v) for k, v in (values or {}).items()})
    trace = handlers.trace(handlers.seed(substituted, rng_seed=seed)).get_trace(*args, **kwargs)
    return {name: site for name, site in trace.items() if site["type"] == "sample"}


def run_sites(model: Callable, args: tuple, kwargs: dict) -> Callable[[Optional[dict], int], dict]:
    """The ``run(values, seed) -> {name: SiteInfo}`` callable of ``model(*args, **kwargs)``."""

    def run(values: Optional[dict], seed: int) -> dict:
        trace = trace_program(model, args, kwargs, values, seed)
        return {name: _site_info(site, None) for name, site in trace.items()}

    return run
