"""Read a Pyro program's sample sites for the CAVI planner (private).

``run_sites(model, args, kwargs)`` returns the ``run(values, seed)`` callable that
:func:`ppl_vi.core.cavi_plan.build_plan` probes: the program under Pyro's ``trace``
and ``condition`` handlers (validation off, the global torch RNG left untouched), each
site unwrapped from its ``Independent`` / ``ExpandedDistribution`` /
``MaskedDistribution`` layers and reported as a
:class:`~ppl_vi.core.cavi_plan.SiteInfo` with NumPy parameters.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from pyro.distributions import MaskedDistribution
from pyro.distributions.torch_distribution import ExpandedDistribution
from torch.distributions import Independent

from ppl_vi.core.cavi_plan import SiteInfo, host_attributes

__all__ = ["run_sites", "to_torch", "to_numpy"]

_ATTRS = host_attributes("pyro")


def to_torch(a: np.ndarray) -> torch.Tensor:
    """NumPy -> torch tensor (floats in torch's default dtype, integers kept)."""
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.floating):
        return torch.as_tensor(a, dtype=torch.get_default_dtype())
    return torch.as_tensor(a)


def to_numpy(a: Any) -> np.ndarray:
    """torch tensor (or number) -> NumPy array."""
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _compact(a: Any) -> np.ndarray:
    """A parameter without the dimensions ``expand`` added (stride 0), kept as size 1.

    Pyro's plates expand a distribution's parameters to the plate's size as views;
    the planner and the sweep work on the small parameters, as NumPyro's
    ``ExpandedDistribution`` keeps them.
    """
    if not isinstance(a, torch.Tensor):
        return np.asarray(a)
    index = tuple(slice(0, 1) if stride == 0 and size > 1 else slice(None) for stride, size in zip(a.stride(), a.shape))
    return to_numpy(a[index])


def _unwrap(fn) -> tuple[Any, int, Any]:
    reinterpreted, mask = 0, None
    while True:
        if isinstance(fn, MaskedDistribution):
            mask = fn._mask if mask is None else mask * fn._mask
            fn = fn.base_dist
        elif isinstance(fn, Independent):
            reinterpreted += fn.reinterpreted_batch_ndims
            fn = fn.base_dist
        elif isinstance(fn, ExpandedDistribution):
            fn = fn.base_dist
        else:
            return fn, reinterpreted, mask


def _site_info(site: dict, observed: bool) -> SiteInfo:
    base, reinterpreted, mask = _unwrap(site["fn"])
    family = type(base).__name__
    attrs = _ATTRS.get(family)
    if attrs is None:
        params = {k: _compact(getattr(base, k)) for k in base.arg_constraints if hasattr(base, k)}
    else:
        params = {k: _compact(getattr(base, a)) for k, a in attrs.items()}
    scale = np.asarray(to_numpy(site["scale"]), dtype=float)
    for m in (mask, site.get("mask")):
        if m is not None and not isinstance(m, bool):
            scale = scale * to_numpy(m).astype(float)
        elif m is False:
            scale = scale * 0.0
    log_prob = 0.0
    if attrs is None and observed:
        log_prob = float((site["fn"].log_prob(site["value"]) * to_torch(scale)).sum())
    return SiteInfo(
        name=site["name"],
        family=family,
        params=params,
        value=to_numpy(site["value"]),
        observed=observed,
        batch_shape=tuple(site["fn"].batch_shape),
        event_shape=tuple(site["fn"].event_shape),
        reinterpreted_ndims=reinterpreted,
        scale=scale,
        plates=tuple((f.name, f.dim) for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None),
        support_size=int(params["probs"].shape[-1]) if family == "Categorical" else None,
        log_prob=log_prob,
    )


def run_sites(model: Callable, args: tuple, kwargs: dict) -> Callable[[Optional[dict], int], dict]:
    """The ``run(values, seed) -> {name: SiteInfo}`` callable of ``model(*args, **kwargs)``.

    ``values=None`` draws every latent site from the prior (torch RNG seeded with
    ``seed`` inside ``torch.random.fork_rng``); otherwise the sites in ``values`` are
    conditioned on (and still reported as latent).
    """

    def run(values: Optional[dict], seed: int) -> dict:
        data = {k: to_torch(v) for k, v in (values or {}).items()}
        with pyro.validation_enabled(False), torch.random.fork_rng(), torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Singular sample detected")
            torch.manual_seed(seed)
            trace = poutine.trace(poutine.condition(model, data=data)).get_trace(*args, **kwargs)
        return {
            name: _site_info(site, bool(site["is_observed"]) and name not in data)
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)
        }

    return run
