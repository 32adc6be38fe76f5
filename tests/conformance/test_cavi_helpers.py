"""Shared helpers of the CAVI conformance tests (no tests here): fit a zoo model on either backend."""

from __future__ import annotations

import functools

import numpy as np

import models


@functools.lru_cache(maxsize=None)
def fit(backend: str, name: str, seed: int = 0, num_restarts: int = 1, tol: float = 1e-13, seed_from_data: bool = True, **sizes):
    """Run CAVI on zoo model ``name``; returns ``(result, numpy data, cavi)``.

    Cached: tests that need the same fit (exactness, parity) share it; results are
    read-only.
    """
    zoo = models.get(name)
    raw = zoo.generate_data(seed, **sizes)
    data = models.to_backend(raw, backend)
    if backend == "numpyro":
        import jax

        from ppl_vi.numpyro import CAVI

        cavi = CAVI(zoo.numpyro_model, num_restarts=num_restarts, seed_from_data=seed_from_data)
        return cavi.run(jax.random.PRNGKey(seed), **data, tol=tol), raw, cavi
    import torch

    from ppl_vi.pyro import CAVI

    torch.manual_seed(seed)
    cavi = CAVI(zoo.pyro_model, num_restarts=num_restarts, seed_from_data=seed_from_data)
    return cavi.run(**data, tol=tol), raw, cavi


def np_params(q) -> dict:
    """A host distribution's parameters as NumPy arrays, under canonical names."""
    names = {
        "Beta": ("concentration1", "concentration0"),
        "Gamma": ("concentration", "rate"),
        "Dirichlet": ("concentration",),
        "Normal": ("loc", "scale"),
        "MultivariateNormal": ("loc", "covariance_matrix"),
    }
    kind = type(q).__name__
    if kind == "Wishart":
        df = getattr(q, "df", None)
        df = q.concentration if df is None else df
        scale = getattr(q, "scale_matrix", None)
        scale = q.covariance_matrix if scale is None else scale
        return {"df": _np(df), "scale_matrix": _np(scale)}
    if kind.startswith("Categorical"):
        return {"probs": _np(q.probs)}
    return {n: _np(getattr(q, n)) for n in names[kind]}


def _np(a) -> np.ndarray:
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def assert_monotone(elbo: np.ndarray, rtol: float = 1e-10) -> None:
    """ELBO trace non-decreasing up to ``rtol`` relative to its magnitude."""
    elbo = np.asarray(elbo)
    drops = elbo[:-1] - elbo[1:]
    assert np.all(drops <= rtol * np.abs(elbo[1:])), f"ELBO decreased: max drop {drops.max()} in {elbo}"
