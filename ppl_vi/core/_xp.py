"""Array-namespace lookup and the special functions the Array API standard lacks.

``namespace(*arrays)`` returns the Array-API-compatible namespace of its arguments
(torch or jax.numpy through :mod:`array_api_compat`). ``special(*arrays)`` returns
a small table of special functions for the same backend (digamma, gammaln,
logsumexp, softplus, ...), in the spirit of funsor's ``ops``: the standard covers
arithmetic, linear algebra and reductions; this fills the rest.
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import array_api_compat

__all__ = ["namespace", "special", "is_torch", "is_jax"]


def namespace(*arrays: Any) -> ModuleType:
    """Array API namespace shared by ``arrays`` (Python scalars are ignored).

    Raises
    ------
    TypeError
        If no argument is an array, or the arrays come from different libraries.
    """
    arrays = [a for a in arrays if not isinstance(a, (int, float, bool, complex))]
    if not arrays:
        raise TypeError("namespace() needs at least one torch tensor or jax array")
    return array_api_compat.array_namespace(*arrays)


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch if it is not loaded)."""
    return array_api_compat.is_torch_array(x)


def is_jax(x: Any) -> bool:
    """Whether ``x`` is a jax array (without importing jax if it is not loaded)."""
    return array_api_compat.is_jax_array(x)


def _torch_special() -> SimpleNamespace:
    import torch

    def multigammaln(a, d: int):
        return torch.special.multigammaln(a, d)

    return SimpleNamespace(
        digamma=torch.special.digamma,
        polygamma=lambda n, x: torch.special.polygamma(n, x),
        gammaln=torch.special.gammaln,
        multigammaln=multigammaln,
        logsumexp=lambda x, axis=-1, keepdims=False: torch.logsumexp(x, dim=axis, keepdim=keepdims),
        softmax=lambda x, axis=-1: torch.softmax(x, dim=axis),
        log_softmax=lambda x, axis=-1: torch.log_softmax(x, dim=axis),
        softplus=torch.nn.functional.softplus,
        sigmoid=torch.sigmoid,
        log_sigmoid=torch.nn.functional.logsigmoid,
        xlogy=torch.special.xlogy,
        logdet=lambda a: torch.linalg.slogdet(a)[1],
        cholesky=torch.linalg.cholesky,
        solve_triangular_lower=lambda L, b: torch.linalg.solve_triangular(L, b, upper=False),
        solve_triangular_upper=lambda U, b: torch.linalg.solve_triangular(U, b, upper=True),
        stop_gradient=lambda x: x.detach(),
        einsum=torch.einsum,
    )


def _jax_special() -> SimpleNamespace:
    import jax
    import jax.numpy as jnp
    import jax.scipy.special as jss

    return SimpleNamespace(
        digamma=jss.digamma,
        polygamma=jss.polygamma,
        gammaln=jss.gammaln,
        multigammaln=jss.multigammaln,
        logsumexp=lambda x, axis=-1, keepdims=False: jss.logsumexp(x, axis=axis, keepdims=keepdims),
        softmax=lambda x, axis=-1: jax.nn.softmax(x, axis=axis),
        log_softmax=lambda x, axis=-1: jax.nn.log_softmax(x, axis=axis),
        softplus=jax.nn.softplus,
        sigmoid=jax.nn.sigmoid,
        log_sigmoid=jax.nn.log_sigmoid,
        xlogy=jss.xlogy,
        logdet=lambda a: jnp.linalg.slogdet(a)[1],
        cholesky=jnp.linalg.cholesky,
        solve_triangular_lower=lambda L, b: jax.scipy.linalg.solve_triangular(L, b, lower=True),
        solve_triangular_upper=lambda U, b: jax.scipy.linalg.solve_triangular(U, b, lower=False),
        stop_gradient=jax.lax.stop_gradient,
        einsum=jnp.einsum,
    )


_TABLES: dict[str, SimpleNamespace] = {}


def special(*arrays: Any) -> SimpleNamespace:
    """Special functions for the backend of ``arrays`` (torch or jax).

    Returns
    -------
    SimpleNamespace
        ``digamma, polygamma, gammaln, multigammaln(a, d), logsumexp(x, axis),
        softmax, log_softmax, softplus, sigmoid, log_sigmoid, xlogy, logdet,
        cholesky, solve_triangular_lower(L, b), solve_triangular_upper(U, b)``
        (triangular solves take ``b`` of shape ``(..., n, k)``), ``stop_gradient``,
        ``einsum(subscripts, *operands)``.
    """
    arrays = [a for a in arrays if not isinstance(a, (int, float, bool, complex))]
    if any(is_torch(a) for a in arrays):
        key = "torch"
    elif any(is_jax(a) for a in arrays):
        key = "jax"
    else:
        raise TypeError(
            "special() needs a torch tensor or a jax array; got "
            + ", ".join(type(a).__name__ for a in arrays)
        )
    if key not in _TABLES:
        _TABLES[key] = _torch_special() if key == "torch" else _jax_special()
    return _TABLES[key]
