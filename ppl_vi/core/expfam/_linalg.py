"""Batched symmetric positive-definite matrix helpers (Cholesky-based), backend-neutral."""

from __future__ import annotations

from typing import Any

from ppl_vi.core._xp import namespace, special

Array = Any

__all__ = ["symmetrize", "cholesky", "chol_solve", "chol_inverse", "chol_logdet", "matvec", "check_square"]


def check_square(a: Array, name: str, family: str) -> None:
    """Raise ``ValueError`` unless ``a`` has shape ``(..., n, n)``."""
    shape = tuple(a.shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"{family}: {name} must have shape (..., n, n); got shape {shape}")


def symmetrize(a: Array) -> Array:
    """``(a + a^T) / 2`` over the last two axes."""
    xp = namespace(a)
    return 0.5 * (a + xp.linalg.matrix_transpose(a))


def cholesky(a: Array) -> Array:
    """Lower Cholesky factor of the symmetric part of ``a``, shape ``(..., n, n)``."""
    return special(a).cholesky(symmetrize(a))


def chol_solve(chol: Array, b: Array) -> Array:
    """Solve ``(L L^T) y = b`` for ``b`` of shape ``(..., n, k)``; batch dims broadcast."""
    xp, sp = namespace(chol, b), special(chol, b)
    batch = tuple(xp.broadcast_arrays(chol[..., :1, :1], b[..., :1, :1])[0].shape[:-2])
    chol = xp.broadcast_to(chol, batch + tuple(chol.shape[-2:]))
    b = xp.broadcast_to(b, batch + tuple(b.shape[-2:]))
    z = sp.solve_triangular_lower(chol, b)
    return sp.solve_triangular_upper(xp.linalg.matrix_transpose(chol), z)


def chol_inverse(chol: Array) -> Array:
    """``(L L^T)^{-1}`` from the lower factor ``L``, symmetrized."""
    xp = namespace(chol)
    eye = xp.eye(chol.shape[-1], dtype=chol.dtype)
    return symmetrize(chol_solve(chol, eye))


def chol_logdet(chol: Array) -> Array:
    """``log |L L^T| = 2 sum log diag L``, shape batch."""
    xp = namespace(chol)
    return 2.0 * xp.sum(xp.log(xp.linalg.diagonal(chol)), axis=-1)


def matvec(a: Array, v: Array) -> Array:
    """``a @ v`` for ``a`` of shape ``(..., n, m)`` and ``v`` of shape ``(..., m)``."""
    xp = namespace(a, v)
    return xp.matmul(a, v[..., None])[..., 0]
