"""The model zoo: every model as a Pyro and a NumPyro program, with data and references.

>>> import models
>>> m = models.get("beta_bernoulli")
>>> data = m.data("numpyro", seed=0)          # doctest: +SKIP
>>> m.numpyro_model(**data)                    # doctest: +SKIP

Modules in this package register their models on import (``register(ZooModel(...))``);
every public module is imported when the registry is first read.
"""

from __future__ import annotations

import importlib
import pkgutil

from models._base import BACKENDS, ExactPosterior, ZooModel, to_backend

__all__ = ["BACKENDS", "ExactPosterior", "ZooModel", "get", "names", "register", "to_backend"]

_REGISTRY: dict[str, ZooModel] = {}
_LOADED = False


def register(model: ZooModel) -> ZooModel:
    """Add ``model`` to the registry (its name must be new)."""
    if model.name in _REGISTRY and _REGISTRY[model.name] is not model:
        raise ValueError(f"a zoo model named {model.name!r} is already registered")
    _REGISTRY[model.name] = model
    return model


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _LOADED = True


def names() -> list[str]:
    """Names of all zoo models, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> ZooModel:
    """The zoo model called ``name``; a ``KeyError`` lists the valid names."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None
