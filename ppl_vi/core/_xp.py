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
        # eager torch computes every operation once and reduces any axis at memory speed
        materialize=lambda x: x,
        logsumexp_small=lambda x: torch.logsumexp(x, dim=-1, keepdim=True),
        log_normalize=_torch_log_normalize,
    )


def _torch_log_normalize(x):
    """``(logsumexp(x, dim=-1, keepdim=True), softmax(x, dim=-1))`` as ``exp(x - logsumexp)``:
    with ``torch.softmax`` a Pyro CAVI sweep of the 100k-point mixture took 40-41 ms instead
    of 25-26 ms (minima of 3 x 10 sweeps, two runs each)."""
    import torch

    total = torch.logsumexp(x, dim=-1, keepdim=True)
    return total, torch.exp(x - total)


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
        materialize=_jax_materialize,
        logsumexp_small=_jax_logsumexp_small,
        log_normalize=_jax_log_normalize,
    )


def _jax_materialize(x):
    """``x``, computed once as an array before its consumers read it (exact).

    XLA on CPU fuses elementwise producers into a consumer ``gather`` and recomputes the
    producer for every gathered element: LDA's ``E[log topics]`` table (a ``digamma`` of
    K x V values) would be evaluated once per token and topic. A dot is never fused into
    a gather, so the table goes through one: a contraction with ``[1, 0]`` over a new
    axis of size 2 (size 1 would be simplified back into a fusible multiply), which is
    exact: ``x * 1 + 0 * 0``.
    """
    import jax.numpy as jnp

    return jnp.stack([x, jnp.zeros_like(x)], axis=-1) @ jnp.asarray([1.0, 0.0], dtype=x.dtype)


_UNROLL_MAX = 64


def _jax_logsumexp_small(x):
    """``logsumexp(x, axis=-1, keepdims=True)`` for a short last axis (same value).

    The gradient of an enumerated site comes out of the objective's ``einsum`` with its
    last (support) axis physically major; XLA on CPU reduces over a major axis about ten
    times slower than it runs elementwise passes over contiguous slices, so up to
    ``_UNROLL_MAX`` entries the maximum and the sum are unrolled into such passes.
    """
    import jax
    import jax.numpy as jnp
    import jax.scipy.special as jss

    size = x.shape[-1]
    if size > _UNROLL_MAX:
        return jss.logsumexp(x, axis=-1, keepdims=True)
    top = x[..., 0]
    for i in range(1, size):
        top = jnp.maximum(top, x[..., i])
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))  # as jax.scipy's: all -inf rows give -inf
    total = jnp.exp(x[..., 0] - top)
    for i in range(1, size):
        total = total + jnp.exp(x[..., i] - top)
    return (top + jnp.log(total))[..., None]


def _jax_log_normalize(x):
    """``(logsumexp(x, axis=-1, keepdims=True), softmax(x, axis=-1))`` with one ``exp`` per entry.

    The probabilities are the shifted exponentials divided by their sum, not
    ``exp(x - logsumexp)``: that would take every entry's exponential twice. A CAVI sweep
    of the 100k-point mixture (K = 10) took 3.5-3.8 ms instead of 4.0-4.4 ms (8 x 20 sweeps
    alternating, one process); LDA's on 85k pairs (K = 20) 9.9-11.6 instead of 10.3-12.2 ms.
    NGSVI's local passes keep ``logsumexp_small`` and ``exp(eta)``: with this function its
    LDA step (batches of 128 documents, tokens x documents layout) took 12.9-13.2 ms instead
    of 11.1-11.2 ms over its first 30 steps and 3.5-3.6 instead of 3.0-3.2 ms over steps
    121-150 (three alternating runs).
    """
    import jax
    import jax.numpy as jnp

    top = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)  # as jax.scipy's: all -inf rows give -inf
    shifted = jnp.exp(x - top)
    total = jnp.sum(shifted, axis=-1, keepdims=True)
    return top + jnp.log(total), shifted / total


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
        ``einsum(subscripts, *operands)``; two layout helpers with the value of the
        identity and of ``logsumexp(x, axis=-1, keepdims=True)``, ``materialize(x)`` and
        ``logsumexp_small(x)``, that work around XLA CPU's fusion and layout choices
        (see ``_jax_materialize`` and ``_jax_logsumexp_small``; plain in torch);
        ``log_normalize(x)``: ``(logsumexp(x, axis=-1, keepdims=True), softmax(x, axis=-1))``
        from one exponential per entry in jax.
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
