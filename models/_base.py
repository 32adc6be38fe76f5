"""What a zoo entry is: one program, two backends, a data generator and a reference.

Each model is written once against :mod:`pyroapi` (``from pyroapi import pyro,
distributions as dist``) and run as a native Pyro or NumPyro program by
:attr:`ZooModel.pyro_model` / :attr:`ZooModel.numpyro_model`: inside those wrappers
``pyro.sample`` *is* ``pyro.sample`` (resp. ``numpyro.sample``), so every handler of
the host library sees an ordinary program.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Mapping, Optional

import numpy as np

Backend = Literal["numpyro", "pyro"]
BACKENDS: tuple[str, ...] = ("numpyro", "pyro")
_PYROAPI_NAME = {"numpyro": "numpy", "pyro": "pyro"}


@dataclass(frozen=True)
class ExactPosterior:
    """Closed-form posterior of a zoo model on one data set (NumPy only).

    Attributes
    ----------
    mean, sd : dict
        Latent site name -> array of the site's shape: posterior mean and standard
        deviation of each coordinate.
    sample : callable
        ``sample(rng: np.random.Generator, num_samples) -> dict`` of joint posterior
        draws, each of shape ``(num_samples, *site_shape)``.
    log_evidence : float or None
        ``log p(x)`` with every constant kept (same scale as the hosts' ``Trace_ELBO``).
    params : dict
        Site name -> ``(family, {parameter: array})``, the closed-form parameters
        (e.g. ``("Normal", {"loc": ..., "scale": ...})``); joint families such as
        Normal-Gamma appear under the tuple of their site names.
    """

    mean: Mapping[str, np.ndarray]
    sd: Mapping[str, np.ndarray]
    sample: Callable[[np.random.Generator, int], dict]
    log_evidence: Optional[float] = None
    params: Mapping[Any, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class ZooModel:
    """A model of the zoo.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"beta_bernoulli"``.
    description : str
        One line for ``ppl-vi models``.
    program : callable
        The model written against :mod:`pyroapi`; called as ``program(**data)``.
    latent_sites : tuple of str
        Names of the latent sample sites (same in both backends).
    conjugate : bool
        Whether every latent site has a conditionally conjugate complete conditional
        (what CAVI needs).
    reference : {"exact", "nuts", "posteriordb"}
        Which reference posterior ``compare(reference="auto")`` uses.
    generate_data : callable
        ``generate_data(seed: int, **sizes) -> dict`` of NumPy arrays and Python
        ints/floats: the keyword arguments of ``program``. Seeded and deterministic.
    exact_posterior : callable, optional
        ``exact_posterior(data) -> ExactPosterior`` where a closed form exists.
    reference_draws : callable, optional
        ``reference_draws() -> dict`` site -> array ``(chains, draws, *site_shape)``
        (posteriordb models: Stan's gold-standard draws).
    extras : dict
        Other model-specific closed forms, e.g. ``"mean_field_fixed_point"``.
    """

    name: str
    description: str
    program: Callable[..., Any]
    latent_sites: tuple[str, ...]
    conjugate: bool
    reference: Literal["exact", "nuts", "posteriordb"]
    generate_data: Callable[..., dict]
    exact_posterior: Optional[Callable[[Mapping[str, Any]], ExactPosterior]] = None
    reference_draws: Optional[Callable[[], dict]] = None
    extras: Mapping[str, Callable[..., Any]] = field(default_factory=dict)

    def model(self, backend: Backend) -> Callable[..., Any]:
        """The program as a native ``backend`` ("numpyro" or "pyro") model."""
        _check_backend(backend)
        return _in_backend(self.program, _PYROAPI_NAME[backend])

    @property
    def numpyro_model(self) -> Callable[..., Any]:
        return self.model("numpyro")

    @property
    def pyro_model(self) -> Callable[..., Any]:
        return self.model("pyro")

    def data(self, backend: Backend, seed: int = 0, **sizes: Any) -> dict:
        """Generated data converted to ``backend`` arrays (the model's kwargs)."""
        return to_backend(self.generate_data(seed, **sizes), backend)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


@contextlib.contextmanager
def _dispatch_to(pyroapi_name: str) -> Iterator[None]:
    """Point pyroapi's generic modules at one host library.

    ``pyroapi.pyro_backend`` would also install ``handlers.seed(rng_seed=0)`` as the
    innermost handler, which overrides every seed the user sets outside the model
    (identical draws for all NumPyro seeds; Pyro's global RNG reset on each call).
    Only the dispatch table is switched here.
    """
    from pyroapi.dispatch import _ALIASES, GenericModule

    new = _ALIASES[pyroapi_name]
    old = {name: GenericModule.current_backend[name] for name in new}
    GenericModule.current_backend.update(new)
    try:
        yield
    finally:
        GenericModule.current_backend.update(old)


def _in_backend(program: Callable[..., Any], pyroapi_name: str) -> Callable[..., Any]:
    @functools.wraps(program)
    def model(*args: Any, **kwargs: Any) -> Any:
        with _dispatch_to(pyroapi_name):
            return program(*args, **kwargs)

    return model


def to_backend(data: Mapping[str, Any], backend: Backend) -> dict:
    """Convert NumPy arrays in ``data`` to torch tensors or jax arrays.

    Floating arrays take the backend's default float dtype (float64 under
    ``torch.set_default_dtype(torch.float64)`` / ``jax_enable_x64``); integer arrays
    stay integer; Python scalars and ``None`` pass through.
    """
    _check_backend(backend)
    if backend == "pyro":
        import torch

        def convert(v):
            a = np.asarray(v)
            if np.issubdtype(a.dtype, np.floating):
                return torch.as_tensor(a, dtype=torch.get_default_dtype())
            return torch.as_tensor(a)

    else:
        import jax.numpy as jnp

        def convert(v):
            a = np.asarray(v)
            if np.issubdtype(a.dtype, np.floating):
                return jnp.asarray(a, dtype=jnp.result_type(float))
            return jnp.asarray(a)

    return {k: convert(v) if isinstance(v, np.ndarray) else v for k, v in data.items()}
