"""The minibatch of a CAVI plan: every local-plate array gathered to the batch rows.

Stochastic VI on a minibatch ``B`` of the local plate (size ``N``) only needs the rows of
``B``. :func:`batch_plan` builds, from the full :class:`~ppl_vi.core.cavi_objective.Plan`
and the batch indices, the plan of the sub-program restricted to those rows:

* the terms of the local plate's sites keep, along the plate's dimension, only the
  batch rows of every array that carries it — observed statistics, the term scale, and
  a :class:`~ppl_vi.core.cavi_objective.Dependency`'s ``index``/``coef``/``offset``/
  ``log_coef``/``moments``/``jacobian`` (its ``shape`` follows);
* the local latent sites' :class:`~ppl_vi.core.cavi_objective.LatentSpec` get the batch
  size in their ``batch_shape``/``shape`` and the batch rows of their ``scale``;
* a gather index that points *into* a local latent's rows (a token's index into its
  document's topic proportions, when the token plate is nested in the document plate)
  is renumbered to the batch positions.

The expected log joint of the batch plan at the batch rows of ``mu`` equals that of the
full plan with the non-batch rows' terms weighted 0 (and the batch's by the same weight);
``tests/core/test_ngsvi_batch.py`` checks that to 1e-10. All shapes depend on ``|B|``
only, so a jitted step compiles once per batch size, and its cost is ``O(|B|)``.

A dependency that reads another row of a local latent than its own (row ``n`` of a
child reading row ``m != n`` of a local parent), or a global site that depends on a
local one, would couple the rows and is refused by :func:`check_batchable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ppl_vi.core._xp import namespace
from ppl_vi.core.cavi_objective import Dependency, LatentSpec, Plan, Term, touches
from ppl_vi.core.conjugate import ROLE_ATOM_NDIM, SimplexMoments

__all__ = ["LocalPlate", "RowBlock", "local_plate", "check_indices", "check_batchable", "batch_plan", "gather_rows", "scatter_rows"]

# event dimensions of an observed value (its first statistic), by family
_VALUE_EVENT_NDIM = {"MultivariateNormal": 1, "Dirichlet": 1, "Multinomial": 1, "Wishart": 2}
# event dimensions of the constant parameters that are not scalars (the others: ROLE_ATOM_NDIM of their role)
_CONST_ATOM_NDIM = {("Dirichlet", "concentration"): 1, ("Wishart", "scale_matrix"): 2}

Scatter = Callable[[Any, int, Any, Any], Any]
"""``scatter(full, axis, indices, rows)``: ``full`` with ``rows`` written at ``indices`` along ``axis`` (host-supplied)."""


@dataclass(frozen=True)
class LocalPlate:
    """The plate that is subsampled: its name, dim (negative), size, its sample sites,
    and every sample site of the program in program order."""

    name: str
    dim: int
    size: int
    sites: frozenset
    program_order: tuple = ()


def local_plate(
    name: str, frames: Mapping[str, Sequence[tuple]], num_data: int | None, batch_size: int | None, default_batch_size: Callable[[int], int]
) -> tuple[LocalPlate, int]:
    """Validate the subsampled plate from the sites' plate frames, and the batch size.

    Parameters
    ----------
    frames : dict
        Sample site name -> sequence of ``(plate name, dim, size)`` (from a host trace),
        in program order.
    num_data : int or None
        Expected plate size (``None``: take the plate's size).
    batch_size : int or None
        Requested minibatch size, in ``[1, plate size]``; ``None``:
        ``default_batch_size(plate size)``.

    Returns
    -------
    (plate, batch_size)
    """
    found = {f[0]: (f[1], f[2]) for fs in frames.values() for f in fs}
    if name not in found:
        raise ValueError(f"local_plate {name!r} is not a plate of the model; its plates are {sorted(found)}")
    dim, size = found[name]
    if num_data is not None and int(num_data) != int(size):
        raise ValueError(f"num_data={num_data} but plate {name!r} has size {size}")
    batch_size = int(default_batch_size(int(size))) if batch_size is None else int(batch_size)
    if not 1 <= batch_size <= int(size):
        raise ValueError(f"batch_size must be in [1, num_data={size}]; got {batch_size}")
    sites = frozenset(s for s, fs in frames.items() if any(f[0] == name for f in fs))
    return LocalPlate(name, int(dim), int(size), sites, tuple(frames)), batch_size


def check_indices(indices: Any, plate: LocalPlate) -> np.ndarray:
    """``indices`` as a NumPy int64 array, after checking they are distinct plate positions."""
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"minibatch indices must be a non-empty 1-D integer array; got dtype {indices.dtype}, shape {indices.shape}")
    if indices.min() < 0 or indices.max() >= plate.size:
        raise ValueError(f"minibatch indices must lie in [0, {plate.size}) (plate {plate.name!r}); got [{indices.min()}, {indices.max()}]")
    values, counts = np.unique(indices, return_counts=True)
    if values.size != indices.size:
        raise ValueError(f"minibatch indices must be distinct positions of plate {plate.name!r}; repeated: {values[counts > 1][:10].tolist()}")
    return indices.astype(np.int64)


def _plate_axis(shape: tuple, batch_ndim: int, plate: LocalPlate, what: str = "an array") -> int | None:
    """Axis of ``shape`` along the plate when its leading ``batch_ndim`` dims are plate dims
    and it has size ``N`` there; ``what`` names the array in the error."""
    axis = batch_ndim + plate.dim
    if axis < 0 or axis >= len(shape) or shape[axis] == 1:
        return None
    if shape[axis] != plate.size:
        raise ValueError(f"{what} of shape {shape} has size {shape[axis]} along plate {plate.name!r} (dim {plate.dim}); expected {plate.size} or 1")
    return axis


@dataclass(frozen=True)
class RowBlock:
    """The contiguous plate rows ``start, ..., start + size - 1``, usable wherever batch
    indices are (``start`` may be traced; ``size`` is static): arrays are cut by the host's
    ``cut(a, start, size, axis)`` (in jax a dynamic slice, where indices would need a gather)."""

    start: Any
    size: int
    cut: Callable[[Any, Any, int, int], Any]

    @property
    def shape(self) -> tuple:
        return (self.size,)


def _take(a: Any, batch_ndim: int, plate: LocalPlate, indices: Any) -> Any:
    if not hasattr(a, "shape"):
        return a
    axis = _plate_axis(tuple(a.shape), batch_ndim, plate)
    if axis is None:
        return a
    if isinstance(indices, RowBlock):
        return indices.cut(a, indices.start, indices.size, axis)
    return namespace(a).take(a, indices, axis=axis)


def _take_scale(scale: Any, plate: LocalPlate, indices: Any) -> Any:
    """A site's scale cut to the batch rows: it broadcasts against the site's batch shape
    from the right (a per-row multiplicity may have fewer dims than the batch)."""
    return _take(scale, len(getattr(scale, "shape", ())), plate, indices)


def _param_batch(dep: Dependency, term: Term, pname: str) -> int:
    """Number of leading plate dims of a dependency's arrays (its parameter's batch, less ``to_event`` dims)."""
    atom = _CONST_ATOM_NDIM.get((term.family, pname), 0) if dep.role == "const" else ROLE_ATOM_NDIM[dep.role]
    return len(dep.shape) - atom - term.reinterpreted_ndims


def check_batchable(plan: Plan, plate: LocalPlate) -> None:
    """Refuse a plan whose plate rows are coupled (see the module docstring); NumPy checks, once."""
    local = {n for n in plan.latents if n in plate.sites}
    for name in local:
        spec = plan.latents[name]
        if _plate_axis(tuple(spec.batch_shape), len(spec.batch_shape), plate, f"local site {name!r}") is None and plate.size > 1:
            raise ValueError(f"local site {name!r} has batch shape {spec.batch_shape}, without plate {plate.name!r} (size {plate.size}) at dim {plate.dim}")
    for term in plan.terms:
        if term.name not in plate.sites:
            for name in local:
                if touches(term, plan.latents[name]):
                    raise NotImplementedError(
                        f"NaturalGradientSVI cannot subsample plate {plate.name!r}: global site {term.name!r} depends on "
                        f"the local site {name!r}, so its rows are not independent given the globals. Put {term.name!r} "
                        f"inside plate {plate.name!r} (e.g. tokens as a plate nested in documents), subsample a plate "
                        f"that contains both, or fit the full data with CAVI"
                    )
            continue
        if _plate_axis(tuple(term.batch_shape), len(term.batch_shape), plate, f"site {term.name!r}") is None and plate.size > 1:
            raise ValueError(f"site {term.name!r} in plate {plate.name!r} has batch shape {term.batch_shape} without the plate at dim {plate.dim}")
        for pname, dep in term.params.items():
            if dep.latent in local:
                _check_own_rows(term, pname, dep, plan.latents[dep.latent], plate)


def _check_own_rows(term: Term, pname: str, dep: Dependency, spec: LatentSpec, plate: LocalPlate) -> None:
    """Row ``n`` of ``term`` must read row ``n`` of the local latent it depends on."""
    what = f"site {term.name!r} ({term.family} {pname}) reads the local site {spec.name!r}"
    batch = tuple(dep.shape[: _param_batch(dep, term, pname)])
    axis = _plate_axis(batch, len(batch), plate, f"parameter {pname!r} of site {term.name!r}")
    fix = f"; row n of {term.name!r} must read row n of {spec.name!r} (index it by the plate position), or fit the full data with CAVI"
    if dep.kind != "gather" or axis is None or tuple(np.shape(dep.index)) != batch:
        raise NotImplementedError(f"NaturalGradientSVI cannot subsample plate {plate.name!r}: {what} other than row by row ({dep.kind}){fix}")
    index = np.asarray(dep.index)
    rows = np.unravel_index(index, tuple(spec.batch_shape))[len(spec.batch_shape) + plate.dim]
    own = np.arange(plate.size).reshape((plate.size,) + (1,) * (len(batch) - axis - 1))
    if not np.array_equal(rows, np.broadcast_to(own, batch)):
        raise NotImplementedError(f"NaturalGradientSVI cannot subsample plate {plate.name!r}: {what} across plate rows{fix}")


def _renumber(index: Any, spec: LatentSpec, plate: LocalPlate, size: int) -> Any:
    """Flat rows of ``spec`` (full plate) -> flat rows of its batch version.

    ``index`` (the parameter's batch shape, already cut to the batch) reads, at batch
    position ``j``, row ``j`` of the plate (checked by :func:`check_batchable`); only the
    plate coordinate of the flat row changes (to ``j``), and the plate's size (to ``size``).
    """
    xp = namespace(index)
    stride = math.prod(spec.batch_shape[len(spec.batch_shape) + plate.dim + 1 :])
    own = xp.reshape(xp.arange(size, dtype=index.dtype), (size,) + (1,) * (-plate.dim - 1))
    return (index // (stride * plate.size)) * (stride * size) + own * stride + index % stride


def _batch_dependency(dep: Dependency, term: Term, pname: str, plan: Plan, plate: LocalPlate, indices: Any, size: int) -> Dependency:
    nb = _param_batch(dep, term, pname)
    batch = tuple(dep.shape[:nb])
    if _plate_axis(batch, nb, plate) is None:
        return dep
    shape = batch[: nb + plate.dim] + (size,) + tuple(dep.shape[nb + plate.dim + 1 :])
    take = lambda a: _take(a, nb, plate, indices)  # noqa: E731
    if dep.kind == "dense":  # jacobian (prod(batch), *atom, L) and offset (prod(batch), *atom): batch flattened
        def cut(a: Any) -> Any:
            xp = namespace(a)
            rows = take(xp.reshape(a, batch + tuple(a.shape[1:])))
            return xp.reshape(rows, (math.prod(shape[:nb]),) + tuple(rows.shape[nb:]))

        return replace(dep, jacobian=cut(dep.jacobian), offset=cut(dep.offset), shape=shape)
    if isinstance(dep.moments, SimplexMoments):
        moments = SimplexMoments(dep.moments.table, take(dep.moments.rows))
    elif isinstance(dep.moments, tuple):
        moments = tuple(take(m) for m in dep.moments)
    else:
        moments = take(dep.moments)
    index = take(dep.index)
    if dep.latent is not None and dep.latent in plate.sites:
        index = _renumber(index, plan.latents[dep.latent], plate, size)
    return replace(dep, moments=moments, index=index, coef=take(dep.coef), offset=take(dep.offset), log_coef=take(dep.log_coef), shape=shape)


def _batch_term(term: Term, plan: Plan, plate: LocalPlate, indices: Any, size: int) -> Term:
    kind, payload = term.value
    if kind != "latent":
        first = payload[0]
        nb = first.ndim - _VALUE_EVENT_NDIM.get(term.family, 0) - term.reinterpreted_ndims
        payload = tuple(_take(s, nb, plate, indices) for s in payload)
    params = {p: _batch_dependency(d, term, p, plan, plate, indices, size) for p, d in term.params.items()}
    nb = len(term.batch_shape)
    batch = term.batch_shape[: nb + plate.dim] + (size,) + term.batch_shape[nb + plate.dim + 1 :]
    return replace(term, params=params, value=(kind, payload), batch_shape=tuple(batch), scale=_take_scale(term.scale, plate, indices))


def _batch_latent(spec: LatentSpec, plate: LocalPlate, indices: Any, size: int) -> LatentSpec:
    nb = len(spec.batch_shape)
    axis = nb + plate.dim
    batch = tuple(spec.batch_shape[:axis]) + (size,) + tuple(spec.batch_shape[axis + 1 :])
    shape = batch + tuple(spec.shape[nb:])
    return replace(spec, batch_shape=batch, shape=shape, scale=_take_scale(spec.scale, plate, indices))


def batch_plan(plan: Plan, plate: LocalPlate, indices: Any) -> Plan:
    """The plan of the rows ``indices`` of the local plate (unit weights; see the module docstring).

    Parameters
    ----------
    plan : Plan
        The full plan, accepted by :func:`check_batchable`.
    indices : integer host array, shape (|B|,), or RowBlock
        Distinct plate positions (may be traced under ``jax.jit``: only its shape is static).
    """
    size = int(indices.shape[0])
    latents = {n: _batch_latent(s, plate, indices, size) if n in plate.sites else s for n, s in plan.latents.items()}
    terms = tuple(_batch_term(t, plan, plate, indices, size) if t.name in plate.sites else t for t in plan.terms)
    return replace(plan, latents=latents, terms=terms, blocks=None)


def gather_rows(plan: Plan, plate: LocalPlate, names: tuple, tree: Mapping[str, tuple], indices: Any) -> dict:
    """``tree`` (site -> tuple of arrays, e.g. ``eta`` or ``mu``) with the sites ``names`` cut to the batch rows."""
    out = dict(tree)
    for name in names:
        nb = len(plan.latents[name].batch_shape)
        out[name] = tuple(_take(a, nb, plate, indices) for a in tree[name])
    return out


def scatter_rows(plan: Plan, plate: LocalPlate, names: tuple, full: Mapping[str, tuple], rows: Mapping[str, tuple], indices: Any, scatter: Scatter) -> dict:
    """``full`` with the batch rows of the sites ``names`` replaced by ``rows`` (the inverse of :func:`gather_rows`)."""
    out = dict(full)
    for name in names:
        axis = len(plan.latents[name].batch_shape) + plate.dim
        out[name] = tuple(scatter(a, axis, indices, r) for a, r in zip(full[name], rows[name]))
    return out
