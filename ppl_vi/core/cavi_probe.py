"""How a distribution parameter depends on a latent site, found by probing (NumPy only).

The CAVI planner re-runs the program with a latent site substituted by a few values
(``z0`` the base, ``z1, z2, z3`` probes) and reads back each site's parameters. This
module turns those readings into a dependency, or says there is none it supports:

* **scaled gather** ``P[b] = c[b] * z[idx[b]] + o[b]`` over "atoms" (a scalar, a row
  of a vector latent, a matrix of a Wishart latent). It covers ``locs[assignment]``,
  ``topics[assignment]``, ``doc_topics[doc_ids]``, broadcasting, ``beta0 * precisions``
  and ``1 / sqrt(lambda0 * precision)`` (read as the precision ``lambda0 * precision``).
  Atoms are matched by the ratio of their differences between probes,
  ``(P1 - P0) / (P2 - P0) == (z1 - z0) / (z2 - z0)``, which is free of ``c`` and ``o``;
  ``c`` and ``o`` then follow, and the map is verified on the fourth probe ``z3``.
* **dense affine** ``P = J z + o`` of a latent with one atom (``X @ weights``): the
  columns of ``J`` come from unit perturbations, verified on the probes.

Anything that fails verification is not one of these and is reported as ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["GatherMap", "DenseMap", "detect_gather", "detect_dense", "probe_value", "changed", "allclose", "max_abs"]

_RTOL = 1e-6
# Readings are compared in blocks of this many entries: ``np.allclose`` on a whole
# parameter makes several temporaries of its size, and a mixture's or a topic model's
# parameters are as large as the data times the support (500k x 20 entries: 0.40 s whole,
# 0.03 s in blocks).
_BLOCK = 1 << 16
# after its exact-equality pass, ``changed`` compares about this many entries, evenly
# strided, before all of them
_SAMPLE = 4096


@dataclass(frozen=True)
class GatherMap:
    """``P[b] = coef[b] * z_atoms[index[b]] + offset[b]`` (NumPy arrays).

    ``index`` has the parameter's atom-batch shape; ``coef`` the same shape, or that
    shape plus the parameter atom (a matrix coefficient times a scalar latent atom);
    ``offset`` the parameter's full shape.
    """

    index: np.ndarray
    coef: np.ndarray
    offset: np.ndarray


@dataclass(frozen=True)
class DenseMap:
    """``P.reshape(B, *atom).flat = J @ z + offset`` with ``J`` of shape (B, *atom, L)."""

    jacobian: np.ndarray
    offset: np.ndarray


def max_abs(a: np.ndarray) -> float:
    """``max |a|`` (0 for an empty array); for a float array without a temporary of its size."""
    if not a.size:
        return 0.0
    a = a if a.dtype.kind == "f" else a.astype(float)
    return float(max(a.max(), -a.min()))


def _magnitude(a: np.ndarray) -> float:
    """``max(1, max |a|)``: the scale of a reading's absolute tolerance."""
    return max(1.0, max_abs(a))


def allclose(a: np.ndarray, b: np.ndarray, rtol: float, atol: float, equal_nan: bool = False) -> bool:
    """``np.allclose(a, b, rtol, atol, equal_nan)`` for arrays of one shape, in blocks
    (:data:`_BLOCK`)."""
    flat_a, flat_b = np.ravel(a), np.ravel(b)
    return all(
        np.allclose(flat_a[i : i + _BLOCK], flat_b[i : i + _BLOCK], rtol=rtol, atol=atol, equal_nan=equal_nan)
        for i in range(0, flat_a.size, _BLOCK)
    )


def changed(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two readings of a parameter differ beyond rounding."""
    if a.shape != b.shape:
        return True
    if np.array_equal(a, b):  # the common case, one pass (a parameter that ignores the probe)
        return False
    atol = 1e-12 * _magnitude(a)
    stride = max(1, a.size // _SAMPLE)
    # a probe that moves a parameter moves most of its entries: a strided sample shows it
    if not allclose(np.ravel(a)[::stride], np.ravel(b)[::stride], 1e-9, atol, equal_nan=True):
        return True
    return not allclose(a, b, 1e-9, atol, equal_nan=True)


def _atoms(a: np.ndarray, atom_ndim: int) -> tuple[tuple, np.ndarray]:
    batch = a.shape[: a.ndim - atom_ndim]
    return batch, a.reshape(int(math.prod(batch)), -1)


def detect_gather(params: list, latents: list, param_atom_ndim: int, latent_atom_ndim: int) -> Optional[GatherMap]:
    """Find a scaled gather from four readings; ``None`` if the parameter is not one.

    Parameters
    ----------
    params : list of 4 arrays
        The parameter read with the latent at ``z0, z1, z2, z3``.
    latents : list of 4 arrays
        ``z0, z1, z2, z3``.
    param_atom_ndim, latent_atom_ndim : int
        Trailing dimensions of one atom of each.
    """
    batch, P = zip(*[_atoms(np.asarray(p, dtype=float), param_atom_ndim) for p in params])
    _, Z = zip(*[_atoms(np.asarray(z, dtype=float), latent_atom_ndim) for z in latents])
    batch = batch[0]
    if P[0].shape[-1] != Z[0].shape[-1] and Z[0].shape[-1] != 1:
        return None
    w_p = 1.0 + np.sqrt(2.0) * np.arange(P[0].shape[-1]) / P[0].shape[-1]
    w_z = 1.0 + np.sqrt(2.0) * np.arange(Z[0].shape[-1]) / Z[0].shape[-1]
    if Z[0].shape[-1] == 1:
        w_p = w_p / w_p.sum()
    fp = [p @ w_p for p in P]
    fz = [z @ w_z for z in Z]
    dp1, dp2, dz1, dz2 = fp[1] - fp[0], fp[2] - fp[0], fz[1] - fz[0], fz[2] - fz[0]
    if np.any(dz2 == 0.0):
        return None
    scale_p = max(1e-300, float(np.max(np.abs(np.stack([fp[0], fp[1], fp[2]])))))
    moving = (np.abs(dp1) + np.abs(dp2)) > 1e-12 * scale_p
    ratio_z = dz1 / dz2
    order = np.argsort(ratio_z)
    sorted_ratio = ratio_z[order]
    index = np.zeros(P[0].shape[0], dtype=np.int64)
    if np.any(moving):
        if np.any(dp2[moving] == 0.0):
            return None
        ratio_p = dp1[moving] / dp2[moving]
        pos = np.clip(np.searchsorted(sorted_ratio, ratio_p), 1, len(sorted_ratio) - 1) if len(sorted_ratio) > 1 else np.zeros_like(ratio_p, dtype=np.int64)
        left, right = order[np.maximum(pos - 1, 0)], order[pos]
        pick = np.where(np.abs(ratio_z[left] - ratio_p) <= np.abs(ratio_z[right] - ratio_p), left, right)
        if not np.allclose(ratio_z[pick], ratio_p, rtol=_RTOL, atol=_RTOL):
            return None
        index[moving] = pick
    if Z[0].shape[-1] == 1:
        coef = (P[1] - P[0]) / (Z[1] - Z[0])[index]
        coef[~moving] = 0.0
        coef_atom = coef
    else:
        coef = np.where(moving, dp1 / np.where(moving, dz1[index], 1.0), 0.0)
        coef_atom = coef[:, None]
    # the offset is computed and verified in blocks of about _BLOCK entries: no temporary
    # of the parameter's size (a topic model's is data x topics)
    offset = np.empty(np.broadcast_shapes(P[0].shape, coef_atom.shape))
    atol = _RTOL * _magnitude(P[3])
    rows = max(1, _BLOCK // max(1, P[0].shape[-1]))
    for i in range(0, P[0].shape[0], rows):
        block = slice(i, i + rows)
        np.subtract(P[0][block], coef_atom[block] * Z[0][index[block]], out=offset[block])
        if not np.allclose(coef_atom[block] * Z[3][index[block]] + offset[block], P[3][block], rtol=_RTOL, atol=atol):
            return None
    atom_shape = np.asarray(params[0]).shape[len(batch) :]
    coef_shape = batch + atom_shape if Z[0].shape[-1] == 1 and P[0].shape[-1] > 1 else batch
    return GatherMap(index.reshape(batch), coef.reshape(coef_shape), offset.reshape(np.asarray(params[0]).shape))


def detect_dense(base: np.ndarray, columns: list, probes: list, latents: list) -> Optional[DenseMap]:
    """Affine map ``P = J z + o`` from unit perturbations; ``None`` if not affine.

    Parameters
    ----------
    base : array
        The parameter at ``z0``.
    columns : list of arrays
        The parameter at ``z0 + e_i`` for each coordinate ``i`` of the latent.
    probes, latents : lists of arrays
        Further readings and the latent values that produced them (for verification).
    """
    base = np.asarray(base, dtype=float)
    jac = np.stack([np.asarray(c, dtype=float) - base for c in columns], axis=-1)
    z0 = np.asarray(latents[0], dtype=float).reshape(-1)
    offset = base - jac @ z0
    for p, z in zip(probes, latents[1:]):
        predicted = jac @ np.asarray(z, dtype=float).reshape(-1) + offset
        p = np.asarray(p, dtype=float)
        if predicted.shape != p.shape or not allclose(predicted, p, _RTOL, _RTOL * _magnitude(p)):
            return None
    return DenseMap(jac, offset)


def probe_value(q_family: Optional[str], base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random value in the support of ``q_family`` with the shape of ``base``.

    ``rng`` is the caller's seeded source of probe values. For an unsupported family
    (``q_family=None``) the base value is perturbed in a way that keeps its sign.
    """
    base = np.asarray(base, dtype=float)
    if q_family in ("Normal", "MultivariateNormal"):
        return base + rng.standard_normal(base.shape) * (1.0 + np.abs(base))
    if q_family == "Gamma":
        return rng.uniform(0.5, 2.0, base.shape)
    if q_family == "Beta":
        return rng.uniform(0.05, 0.95, base.shape)
    if q_family == "Dirichlet":
        return rng.dirichlet(np.full(base.shape[-1], 2.0), size=base.shape[:-1])
    if q_family == "Wishart":
        dim = base.shape[-1]
        a = rng.standard_normal(base.shape)
        return a @ np.swapaxes(a, -1, -2) / dim + np.eye(dim)
    if np.all(base > 0):
        return base * np.exp(0.3 * rng.standard_normal(base.shape))
    return base + rng.standard_normal(base.shape) * (1.0 + np.abs(base))
